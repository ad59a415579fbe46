// libFuzzer target for the policy YAML loader (rules/src/loader.cpp) and what runs on every policy
// it accepts: the compiler, the offline `policy test` runner and the dataplane lookup.
//
// An input is up to four YAML files separated by a line "%%" (names p0.yaml, p1.yaml, ...: the
// loader merges them as it merges a policy directory). Checked:
//   - a refused policy has at least one diagnostic, each with a message and a file that was given
//     (or none), line/column >= 0: what an operator reads must point somewhere real;
//   - parsing is deterministic (same digest, same counts twice);
//   - an accepted and compiled policy answers the same verdict through classify() and
//     classify_burst() for keys built from its own identities, segments and ports, and every
//     verdict names a rule of the policy (or the default) and the compiled revision;
//   - run_tests() runs the policy's own tests without crashing and says "passed" exactly when the
//     decision's disposition is the expected one (and the rule, when one is named, matched).
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "zt/rules/policy.hpp"
#include "zt/rules/snapshot.hpp"
#include "zt/rules/tools.hpp"

namespace {

using namespace zt::rules;

void require(bool ok) {
  if (!ok) __builtin_trap();
}

std::vector<std::pair<std::string, std::string>> split_files(std::string_view in) {
  std::vector<std::pair<std::string, std::string>> files;
  while (files.size() < 4) {
    const auto cut = in.find("\n%%\n");
    const std::string_view part = cut == std::string_view::npos ? in : in.substr(0, cut);
    files.emplace_back("p" + std::to_string(files.size()) + ".yaml", std::string(part));
    if (cut == std::string_view::npos) break;
    in.remove_prefix(cut + 4);
  }
  return files;
}

void check_diagnostics(const std::vector<Diagnostic>& ds,
                       const std::vector<std::pair<std::string, std::string>>& files) {
  require(!ds.empty());
  for (const auto& d : ds) {
    require(!d.message.empty());
    require(d.where.line >= 0 && d.where.column >= 0);
    bool known = d.where.file.empty();
    for (const auto& f : files) known = known || d.where.file == f.first;
    require(known);
    require(!format(d).empty());
  }
}

void check_lookups(const PolicySnapshot& snap, std::uint64_t revision) {
  const Policy& p = snap.source();
  std::vector<IdentityId> sources{kUnauthenticated};
  for (const auto& i : p.identities) sources.push_back(i.id);
  std::vector<IpAddress> dsts{IpAddress::v4(0x0a000001)};
  for (const auto& s : p.segments)
    for (const auto& pre : s.prefixes) dsts.push_back(pre.addr);
  std::vector<std::uint16_t> ports{0, 80};
  std::vector<std::uint8_t> protos{kProtoTcp, kProtoUdp};
  for (const auto& r : p.rules) {
    for (const auto& pr : r.ports) {
      ports.push_back(pr.lo);
      ports.push_back(pr.hi);
    }
    for (auto proto : r.protos) protos.push_back(proto);
  }
  std::set<RuleId> rule_ids{kDefaultRule};
  for (const auto& r : p.rules) rule_ids.insert(r.id);

  std::vector<FlowKey> keys;
  for (auto s : sources)
    for (const auto& d : dsts)
      for (auto proto : protos)
        for (auto port : ports) {
          keys.push_back({.src = s, .dst = d, .proto = proto, .dport = port});
          if (keys.size() >= 4096) goto done;
        }
done:
  std::vector<Verdict> burst(keys.size());
  require(snap.classify_burst(keys, burst) == keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const Verdict one = snap.classify(keys[i]);
    require(one.rule_id == burst[i].rule_id && one.disposition == burst[i].disposition &&
            one.reason == burst[i].reason && one.segment == burst[i].segment &&
            one.rate_class == burst[i].rate_class && one.l7 == burst[i].l7);
    require(one.revision == revision);
    require(rule_ids.count(one.rule_id) == 1);
    require((one.disposition == Disposition::allow) == (one.reason == DropReason::none));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 16384) return 0;
  const auto files = split_files({reinterpret_cast<const char*>(data), size});
  auto policy = parse_policy(files);
  auto again = parse_policy(files);
  require(policy.has_value() == again.has_value());
  if (!policy) {
    check_diagnostics(policy.error(), files);
    require(policy.error().size() == again.error().size());
    return 0;
  }
  require(policy->digest == again->digest && policy->rules.size() == again->rules.size());
  constexpr std::uint64_t kRevision = 7;
  auto snap = compile(*policy, {.revision = kRevision});
  if (!snap) {
    check_diagnostics(snap.error(), files);
    return 0;
  }
  check_lookups(**snap, kRevision);
  for (const auto& r : run_tests(**snap)) {
    require(r.test != nullptr && (r.passed || !r.message.empty()));
    if (r.passed) require(r.got.disposition == r.test->expect);
  }
  return 0;
}
