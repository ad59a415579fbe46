// The policy language (DESIGN.md §3): the source model read from YAML files, its validator and
// the entry points that turn a directory of files into an immutable PolicySnapshot.
//
//   auto snap = zt::rules::load_and_compile("/etc/ztgate/policy", {.revision = 42});
//   if (!snap) for (auto& d : snap.error()) std::cerr << zt::rules::format(d) << '\n';
//
// Every function here is a setup/control path: it allocates and may take milliseconds.
#pragma once

#include <cstdint>
#include <expected>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "zt/rules/types.hpp"

namespace zt::rules {

// Where something was written: file and 1-based line and column.
struct SourceLocation {
  std::string file;
  int line = 0;
  int column = 0;
};

// One validation error: what is wrong and what would be right.
struct Diagnostic {
  SourceLocation where;
  std::string message;
};
// "file:line:column: message"
std::string format(const Diagnostic& d);

using Labels = std::map<std::string, std::string>;

struct Identity {
  IdentityId id = 0;
  std::string name;
  Labels labels;
  SourceLocation where;
};

enum class SegmentMode : std::uint8_t { enforce, audit };

struct Segment {
  std::string name;
  std::vector<IpPrefix> prefixes;
  std::vector<SourceLocation> prefix_where;
  Labels labels;
  std::optional<SegmentMode> mode;  // unset: defaults.mode
  SourceLocation where;
};

// A selector is a union of terms; an empty optional/vector means "term absent".
struct Selector {
  bool any = false;                     // `any`
  std::vector<std::string> identities;  // from only: identity names (incl. "unauthenticated")
  std::vector<std::string> segments;    // from: untagged sources inside; to: destinations inside
  std::optional<Labels> labels;         // identity labels (from) or segment labels (to)
  SourceLocation where;
  std::vector<SourceLocation> identities_where, segments_where;  // parallel to the name lists
  SourceLocation labels_where;
};

struct PortRange {
  std::uint16_t lo = 0, hi = 65535;
  friend bool operator==(const PortRange&, const PortRange&) = default;
};

struct RateClass {
  std::uint64_t pps = 0;  // 0: unlimited
  std::uint64_t bps = 0;
};

struct L7Spec {
  std::vector<std::string> methods;        // HTTP methods allowed (empty: any)
  std::vector<std::string> paths;          // Hyperscan regexes; the path must match one (empty: any)
  std::vector<std::string> deny;           // Hyperscan regexes; any match in the payload denies
  std::vector<SourceLocation> paths_where, deny_where;
};

enum class Action : std::uint8_t { allow, deny };

struct Rule {
  RuleId id = 0;
  std::string name;  // optional; tests and traces accept either
  Selector from, to;
  std::vector<std::uint8_t> protos;  // empty: any protocol
  std::vector<PortRange> ports;      // empty: all ports
  Action action = Action::deny;
  std::optional<RateClass> rate;
  std::optional<L7Spec> l7;
  bool payload_hdr = false;
  SourceLocation where;
};

struct Defaults {
  SegmentMode mode = SegmentMode::enforce;
  SourceLocation where;
};

struct HttpRequest {
  std::string method, path, body;
};

// One `tests:` entry: an expected verdict.
struct PolicyTest {
  std::string name;
  std::string from;  // identity name or id, or an address (an untagged source)
  IpAddress to;
  std::uint8_t proto = kProtoTcp;
  std::uint16_t port = 0;
  Disposition expect = Disposition::deny;
  std::optional<std::string> rule;  // rule name or id, or "default"
  std::optional<HttpRequest> http;
  SourceLocation where;
};

// The whole policy as written, merged from every file of a directory.
struct Policy {
  std::vector<Identity> identities;
  std::vector<Segment> segments;
  std::vector<Rule> rules;
  Defaults defaults;
  std::vector<PolicyTest> tests;
  std::vector<std::string> files;  // as read, sorted
  std::string digest;              // SHA-256 (hex) over the file names and contents
};

// Reads every *.yaml / *.yml file under `dir` (recursively, sorted by path), merges them and
// validates the result. Reports every error found, not just the first.
std::expected<Policy, std::vector<Diagnostic>> load_policy(const std::filesystem::path& dir);

// The same, from in-memory files (name, content); used by tests and by the manager.
std::expected<Policy, std::vector<Diagnostic>> parse_policy(
    const std::vector<std::pair<std::string, std::string>>& files);

// The "most specific allow wins" criteria, in the order they are compared (after deny beats
// allow): source specificity (identity/segment names 1000, labels 1 + their count, `any` 0; a
// union counts as its least specific term), destination prefix length, fewer ports, lower id.
std::uint32_t source_specificity(const Selector& from);
std::uint32_t port_span(const Rule& rule);  // ports covered (65536 when all)

class PolicySnapshot;
using SnapshotPtr = std::shared_ptr<const PolicySnapshot>;

struct CompileOptions {
  std::uint64_t revision = 0;  // assigned by the manager; 0 for offline use
};

// Compiles a validated policy. Fails (with diagnostics) only for problems that validation cannot
// see, such as a Hyperscan pattern that does not compile or a table exceeding its capacity.
std::expected<SnapshotPtr, std::vector<Diagnostic>> compile(const Policy& policy,
                                                            const CompileOptions& opts = {});

std::expected<SnapshotPtr, std::vector<Diagnostic>> load_and_compile(
    const std::filesystem::path& dir, const CompileOptions& opts = {});

}  // namespace zt::rules
