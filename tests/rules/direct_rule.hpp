// Test reference for the classifier: evaluate every rule of a snapshot's source policy directly
// (no tables) and pick the winner by priority. Shared by classifier_test and
// classifier_differential_test.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>

#include "zt/rules/snapshot.hpp"

namespace zt::rules::test {

inline RuleId direct_rule(const PolicySnapshot& s, const FlowKey& k) {
  std::uint32_t best = 0;
  RuleId id = kDefaultRule;
  const auto& rules = s.source().rules;
  for (std::size_t i = 0; i < rules.size(); ++i) {
    const auto& r = rules[i];
    if (!s.rule_matches_source(i, k.src)) continue;
    auto depth = s.rule_matches_destination(i, k.dst);
    if (!depth) continue;
    if (!r.protos.empty() && std::find(r.protos.begin(), r.protos.end(), k.proto) == r.protos.end()) continue;
    bool ported = k.proto == kProtoTcp || k.proto == kProtoUdp;
    if (ported && !r.ports.empty() &&
        std::none_of(r.ports.begin(), r.ports.end(), [&](auto& p) { return p.lo <= k.dport && k.dport <= p.hi; }))
      continue;
    auto e = s.entry_of(i, *depth);
    EXPECT_TRUE(e.has_value()) << "rule " << r.id << " matches but has no entry";
    if (e && *e > best) best = *e, id = r.id;
  }
  return id;
}

}  // namespace zt::rules::test
