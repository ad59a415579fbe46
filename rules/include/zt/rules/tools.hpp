// Offline tools behind `ztctl policy test/trace/diff`. They resolve names, then call the same
// PolicySnapshot::classify and check_l7 the dataplane calls; the per-rule explanation in a trace
// is extra commentary and is checked against that real lookup.
#pragma once

#include <expected>
#include <optional>
#include <string>
#include <vector>

#include "zt/rules/snapshot.hpp"

namespace zt::rules {

// Source as an operator writes it: identity name, numeric id, or an address (untagged source).
std::expected<IdentityId, std::string> resolve_source(const PolicySnapshot& snap, const std::string& from);

struct Decision {
  FlowKey key;
  Verdict verdict;
  std::optional<L7Result> l7;  // set when the request was checked against the rule's L7 program
  // Final disposition after L7 (an L7 refusal turns allow into deny, or audit in audit mode).
  Disposition disposition = Disposition::deny;
  DropReason reason = DropReason::none;
};

// Classifies (and, with `http`, runs L7) exactly as the dataplane would.
Decision decide(const PolicySnapshot& snap, const FlowKey& key, const std::optional<HttpRequest>& http,
                L7Scratch& scratch);

// "rule 10 (web-to-b)" or "default deny (no rule)".
std::string describe_rule(const PolicySnapshot& snap, RuleId id);

struct TestResult {
  const PolicyTest* test = nullptr;
  bool passed = false;
  Decision got;
  std::string message;  // "file:line:col: test 'x': expected allow, got deny by rule 7 (name)"
};
std::vector<TestResult> run_tests(const PolicySnapshot& snap);

struct TraceStep {
  const Rule* rule = nullptr;
  bool matched = false;
  std::string why;  // which part matched or did not
};
struct Trace {
  Decision decision;
  std::string source_name;
  std::vector<TraceStep> steps;  // every rule, in file order
  std::vector<std::string> conclusion;  // why the winner won
};
struct TraceQuery {
  std::string from;
  IpAddress to;
  std::uint8_t proto = kProtoTcp;
  std::uint16_t port = 0;
  std::optional<HttpRequest> http;
};
std::expected<Trace, std::string> trace(const PolicySnapshot& snap, const TraceQuery& q);

struct DiffChange {
  std::string source;  // identity name or "untagged from …"
  IdentityId source_id = 0;
  IpPrefix destination;  // the region of destinations (leaf prefix, or an address)
  IpAddress sample;      // the address actually classified
  std::uint8_t proto = 0;
  PortRange ports;
  Verdict before, after;
};
struct DiffResult {
  std::vector<DiffChange> changes;
  std::size_t evaluated = 0;
  bool truncated = false;  // stopped at `limit` evaluations
};
// Enumerates sources (identities of both, unauthenticated, untagged segment sources) ×
// destination regions (every prefix of both policies) × protocols × port intervals bounded by
// any rule's ports, and reports where disposition or deciding rule differ.
DiffResult diff(const PolicySnapshot& before, const PolicySnapshot& after, std::size_t limit = 50'000'000);

}  // namespace zt::rules
