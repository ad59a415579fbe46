// `ztctl policy check|test|trace|diff`: offline policy tools. They load a policy directory and
// call the same rules:: lookup the dataplane runs (see rules/include/zt/rules/tools.hpp).
#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include <iostream>
#include <optional>

#include "command.hpp"
#include "zt/rules/policy.hpp"
#include "zt/rules/snapshot.hpp"
#include "zt/rules/tools.hpp"

namespace po = boost::program_options;
using nlohmann::json;

namespace zt::ctl {
namespace {

using namespace zt::rules;

struct Parsed {
  po::variables_map vm;
  bool help = false;
};

// Parses verb options; on error prints a message naming the verb and returns nullopt.
std::optional<Parsed> parse(const std::string& verb, const std::vector<std::string>& args,
                            const po::options_description& opts, const po::positional_options_description& pos,
                            std::ostream& err) {
  Parsed p;
  try {
    po::store(po::command_line_parser(args).options(opts).positional(pos).run(), p.vm);
    p.help = p.vm.count("help") > 0;
    if (!p.help) po::notify(p.vm);
  } catch (const po::required_option& e) {
    // Positional arguments are options internally; name them as the synopsis does.
    auto name = e.get_option_name();
    std::string what = name == "--dir" ? "the policy directory DIR"
                       : name == "--before" ? "DIR1 (the policy before the change)"
                       : name == "--after" ? "DIR2 (the policy after the change)"
                                           : "option " + name;
    err << "ztctl " << verb << ": missing " << what << "; see `ztctl " << verb << " --help`\n";
    return std::nullopt;
  } catch (const po::error& e) {
    err << "ztctl " << verb << ": " << e.what() << "; see `ztctl " << verb << " --help`\n";
    return std::nullopt;
  }
  return p;
}

void print_help(std::ostream& out, const std::string& verb, const std::string& synopsis, const std::string& text,
                const po::options_description& opts) {
  out << "usage: ztctl " << verb << " " << synopsis << "\n\n" << text << "\n\n" << opts;
}

json diagnostics_json(const std::vector<Diagnostic>& diags) {
  json out = json::array();
  for (auto& d : diags)
    out.push_back({{"file", d.where.file}, {"line", d.where.line}, {"column", d.where.column}, {"message", d.message}});
  return out;
}

// Loads and compiles; on failure prints every diagnostic and returns nullptr.
SnapshotPtr load(const std::string& dir, std::uint64_t revision, bool as_json, std::ostream& out, std::ostream& err) {
  auto snap = load_and_compile(dir, {.revision = revision});
  if (snap) return *snap;
  if (as_json) {
    out << json{{"directory", dir}, {"valid", false}, {"errors", diagnostics_json(snap.error())}}.dump(2) << "\n";
  } else {
    for (auto& d : snap.error()) err << format(d) << "\n";
    err << dir << ": policy is invalid (" << snap.error().size() << (snap.error().size() == 1 ? " error" : " errors")
        << "); nothing was compiled\n";
  }
  return nullptr;
}

json verdict_json(const PolicySnapshot& snap, const Verdict& v) {
  json j{{"disposition", std::string(to_string(v.disposition))},
         {"rule_id", v.rule_id},
         {"rule", describe_rule(snap, v.rule_id)},
         {"revision", v.revision}};
  if (v.reason != DropReason::none) j["reason"] = std::string(rules::to_string(v.reason));
  if (v.segment != kNoSegment) j["segment"] = snap.source().segments[v.segment].name;
  if (v.rate_class != kNoRateClass) {
    auto rc = snap.rate_classes()[v.rate_class];
    j["rate"] = {{"pps", rc.pps}, {"bps", rc.bps}};
  }
  if (v.payload_hdr) j["payload"] = "hdr";
  return j;
}

const char* kDirHelp = "policy directory (every *.yaml / *.yml file under it, merged)";

int cmd_check(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  po::options_description opts("options");
  opts.add_options()("help,h", "this text")("json", "print the summary (or the errors) as JSON on stdout")(
      "revision", po::value<std::uint64_t>()->default_value(0), "revision number to stamp on the snapshot")(
      "dir", po::value<std::string>()->required(), kDirHelp);
  po::positional_options_description pos;
  pos.add("dir", 1);
  auto p = parse("policy check", args, opts, pos, err);
  if (!p) return kExitUsage;
  if (p->help) {
    print_help(out, "policy check", "DIR [--json] [--revision N]",
               "Validates and compiles the policy in DIR and prints a summary. Every error is printed as\n"
               "file:line:column: what is wrong and what would be right. Exit 0 if valid, 1 if not.",
               opts);
    return kExitOk;
  }
  bool as_json = p->vm.count("json") > 0;
  auto dir = p->vm["dir"].as<std::string>();
  auto snap = load(dir, p->vm["revision"].as<std::uint64_t>(), as_json, out, err);
  if (!snap) return kExitFailure;
  auto st = snap->stats();
  std::size_t audit = 0;
  for (auto& s : snap->source().segments)
    audit += s.mode.value_or(snap->source().defaults.mode) == SegmentMode::audit;
  if (as_json) {
    out << json{{"directory", dir},
                {"valid", true},
                {"files", snap->source().files},
                {"revision", snap->revision()},
                {"digest", "sha256:" + snap->digest()},
                {"identities", st.identities},
                {"segments", st.segments},
                {"audit_segments", audit},
                {"prefixes", st.prefixes},
                {"rules", st.rules},
                {"tests", snap->source().tests.size()},
                {"rate_classes", st.rate_classes},
                {"l7_patterns", st.l7_patterns},
                {"tables",
                 {{"source_classes", st.source_classes},
                  {"destination_classes", st.destination_classes},
                  {"combinations", st.combos},
                  {"port_tables", st.port_tables},
                  {"verdict_entries", st.verdict_entries},
                  {"memory_bytes", st.memory_bytes}}}}
                  .dump(2)
        << "\n";
    return kExitOk;
  }
  out << dir << ": policy is valid\n"
      << "  files:        " << snap->source().files.size() << "\n"
      << "  digest:       sha256:" << snap->digest() << "\n"
      << "  revision:     " << snap->revision() << "\n"
      << "  identities:   " << st.identities << "\n"
      << "  segments:     " << st.segments << " (" << st.prefixes << " prefixes, " << audit << " in audit mode)\n"
      << "  rules:        " << st.rules << " (" << st.rate_classes << " rate classes, " << st.l7_patterns
      << " L7 patterns)\n"
      << "  tests:        " << snap->source().tests.size() << " (run them with `ztctl policy test " << dir << "`)\n"
      << "  tables:       " << st.source_classes << " source classes, " << st.destination_classes
      << " destination classes, " << st.port_tables << " port tables, " << st.memory_bytes / 1024 << " KiB\n";
  return kExitOk;
}

int cmd_test(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  po::options_description opts("options");
  opts.add_options()("help,h", "this text")("json", "print every result as JSON on stdout")(
      "verbose,v", "print passing tests too")("dir", po::value<std::string>()->required(), kDirHelp);
  po::positional_options_description pos;
  pos.add("dir", 1);
  auto p = parse("policy test", args, opts, pos, err);
  if (!p) return kExitUsage;
  if (p->help) {
    print_help(out, "policy test", "DIR [--json] [--verbose]",
               "Runs every `tests:` entry of the policy through the dataplane's lookup and prints each\n"
               "failure with the rule that decided. Exit 0 if all pass, 1 if any fails or the policy is invalid.",
               opts);
    return kExitOk;
  }
  bool as_json = p->vm.count("json") > 0;
  auto dir = p->vm["dir"].as<std::string>();
  auto snap = load(dir, 0, as_json, out, err);
  if (!snap) return kExitFailure;
  auto results = run_tests(*snap);
  std::size_t failed = 0;
  json arr = json::array();
  for (auto& r : results) {
    failed += !r.passed;
    if (as_json) {
      json j{{"name", r.test->name},
             {"location", r.test->where.file + ":" + std::to_string(r.test->where.line) + ":" +
                              std::to_string(r.test->where.column)},
             {"passed", r.passed},
             {"expected", std::string(to_string(r.test->expect))},
             {"got", std::string(to_string(r.got.disposition))},
             {"verdict", verdict_json(*snap, r.got.verdict)}};
      if (!r.passed) j["message"] = r.message;
      arr.push_back(std::move(j));
    } else if (!r.passed) {
      out << "FAIL " << r.message << "\n";
    } else if (p->vm.count("verbose")) {
      out << "ok   " << (r.test->name.empty() ? r.test->from : r.test->name) << ": "
          << to_string(r.got.disposition) << " by " << describe_rule(*snap, r.got.verdict.rule_id) << "\n";
    }
  }
  if (as_json)
    out << json{{"directory", dir}, {"passed", results.size() - failed}, {"failed", failed}, {"tests", arr}}.dump(2)
        << "\n";
  else
    out << dir << ": " << results.size() - failed << " passed, " << failed << " failed\n";
  return failed ? kExitFailure : kExitOk;
}

std::optional<std::uint8_t> proto_arg(const std::string& s) {
  if (auto p = parse_proto(s)) return p;
  return std::nullopt;
}

int cmd_trace(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  po::options_description opts("options");
  opts.add_options()("help,h", "this text")("json", "print the trace as JSON on stdout")(
      "from", po::value<std::string>()->required(), "source: identity name or id, or an untagged source address")(
      "to", po::value<std::string>()->required(), "destination address")(
      "proto", po::value<std::string>()->default_value("tcp"), "tcp, udp, icmp or icmpv6")(
      "port", po::value<unsigned>(), "destination port (required for tcp and udp)")(
      "method", po::value<std::string>(), "HTTP method, to check the winning rule's L7 program")(
      "path", po::value<std::string>(), "HTTP path (with --method)")("dir", po::value<std::string>()->required(), kDirHelp);
  po::positional_options_description pos;
  pos.add("dir", 1);
  auto p = parse("policy trace", args, opts, pos, err);
  if (!p) return kExitUsage;
  if (p->help) {
    print_help(out, "policy trace", "DIR --from SRC --to ADDR [--proto P] [--port N] [--method M --path P] [--json]",
               "Explains one decision rule by rule: which rules match, which do not and why, and why the\n"
               "winner won (deny beats allow; among allows the most specific wins; default deny).\n"
               "The verdict itself comes from the dataplane's lookup.",
               opts);
    return kExitOk;
  }
  auto& vm = p->vm;
  auto proto = proto_arg(vm["proto"].as<std::string>());
  if (!proto) {
    err << "ztctl policy trace: --proto '" << vm["proto"].as<std::string>() << "' is unknown; use tcp, udp, icmp or icmpv6\n";
    return kExitUsage;
  }
  auto to = parse_address(vm["to"].as<std::string>());
  if (!to) {
    err << "ztctl policy trace: --to '" << vm["to"].as<std::string>() << "' is not an IPv4 or IPv6 address\n";
    return kExitUsage;
  }
  TraceQuery q{vm["from"].as<std::string>(), *to, *proto, 0, std::nullopt};
  if (*proto == kProtoTcp || *proto == kProtoUdp) {
    if (!vm.count("port")) {
      err << "ztctl policy trace: --port is required for " << proto_name(*proto) << "\n";
      return kExitUsage;
    }
    if (vm["port"].as<unsigned>() > 65535) {
      err << "ztctl policy trace: --port " << vm["port"].as<unsigned>() << " is out of range (0-65535)\n";
      return kExitUsage;
    }
    q.port = static_cast<std::uint16_t>(vm["port"].as<unsigned>());
  }
  if (vm.count("method") || vm.count("path"))
    q.http = HttpRequest{vm.count("method") ? vm["method"].as<std::string>() : "GET",
                         vm.count("path") ? vm["path"].as<std::string>() : "/", ""};
  bool as_json = vm.count("json") > 0;
  auto dir = vm["dir"].as<std::string>();
  auto snap = load(dir, 0, as_json, out, err);
  if (!snap) return kExitFailure;
  auto t = trace(*snap, q);
  if (!t) {
    err << "ztctl policy trace: " << t.error() << "\n";
    return kExitUsage;
  }
  if (as_json) {
    json steps = json::array();
    for (auto& s : t->steps)
      steps.push_back({{"rule_id", s.rule->id}, {"rule", describe_rule(*snap, s.rule->id)}, {"matched", s.matched}, {"why", s.why}});
    json j{{"source", t->source_name},
           {"source_id", t->decision.key.src},
           {"destination", to_string(q.to)},
           {"proto", proto_name(q.proto)},
           {"port", q.port},
           {"verdict", verdict_json(*snap, t->decision.verdict)},
           {"final", std::string(to_string(t->decision.disposition))},
           {"rules", steps},
           {"conclusion", t->conclusion}};
    if (t->decision.l7) j["l7"] = std::string(to_string(t->decision.l7->outcome));
    out << j.dump(2) << "\n";
    return kExitOk;
  }
  out << "flow: " << t->source_name << " (id " << t->decision.key.src << ") -> " << to_string(q.to);
  if (t->decision.verdict.segment != kNoSegment)
    out << " (segment " << snap->source().segments[t->decision.verdict.segment].name << ")";
  out << " " << proto_name(q.proto);
  if (*proto == kProtoTcp || *proto == kProtoUdp) out << "/" << q.port;
  out << "\n\nrules:\n";
  for (auto& s : t->steps)
    out << "  " << (s.matched ? "MATCH  " : "  -    ") << describe_rule(*snap, s.rule->id) << ": " << s.why << "\n";
  out << "\n";
  for (auto& c : t->conclusion) out << c << "\n";
  out << "\nverdict: " << to_string(t->decision.disposition) << " by " << describe_rule(*snap, t->decision.verdict.rule_id)
      << " (revision " << t->decision.verdict.revision << ")\n";
  return kExitOk;
}

int cmd_diff(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  po::options_description opts("options");
  opts.add_options()("help,h", "this text")("json", "print the changes as JSON on stdout")(
      "exit-code", "exit 1 when any decision changes (for CI)")(
      "limit", po::value<std::size_t>()->default_value(50'000'000), "stop after this many evaluated decisions")(
      "before", po::value<std::string>()->required(), "policy directory before the change")(
      "after", po::value<std::string>()->required(), "policy directory after the change");
  po::positional_options_description pos;
  pos.add("before", 1).add("after", 1);
  auto p = parse("policy diff", args, opts, pos, err);
  if (!p) return kExitUsage;
  if (p->help) {
    print_help(out, "policy diff", "DIR1 DIR2 [--json] [--exit-code] [--limit N]",
               "Lists the (source, destination, protocol, ports) decisions that differ between two policies.\n"
               "Enumerates identities, untagged segment sources and unauthenticated × every prefix's first and\n"
               "last address × tcp/udp port intervals bounded by any rule's ports, icmp and other protocols.",
               opts);
    return kExitOk;
  }
  bool as_json = p->vm.count("json") > 0;
  auto a = load(p->vm["before"].as<std::string>(), 0, as_json, out, err);
  auto b = load(p->vm["after"].as<std::string>(), 0, as_json, out, err);
  if (!a || !b) return kExitFailure;
  auto d = diff(*a, *b, p->vm["limit"].as<std::size_t>());
  auto ports_text = [](const DiffChange& c) {
    if (c.proto != kProtoTcp && c.proto != kProtoUdp) return proto_name(c.proto);
    return proto_name(c.proto) + "/" + std::to_string(c.ports.lo) +
           (c.ports.hi != c.ports.lo ? "-" + std::to_string(c.ports.hi) : "");
  };
  if (as_json) {
    json arr = json::array();
    for (auto& c : d.changes)
      arr.push_back({{"source", c.source},
                     {"destination", to_string(c.sample)},
                     {"proto", proto_name(c.proto)},
                     {"ports", {c.ports.lo, c.ports.hi}},
                     {"before", verdict_json(*a, c.before)},
                     {"after", verdict_json(*b, c.after)}});
    out << json{{"evaluated", d.evaluated}, {"truncated", d.truncated}, {"changes", arr}}.dump(2) << "\n";
  } else {
    for (auto& c : d.changes)
      out << c.source << " -> " << to_string(c.sample) << " " << ports_text(c) << ": " << to_string(c.before.disposition)
          << " by " << describe_rule(*a, c.before.rule_id) << "  =>  " << to_string(c.after.disposition) << " by "
          << describe_rule(*b, c.after.rule_id) << "\n";
    out << d.changes.size() << " decision" << (d.changes.size() == 1 ? "" : "s") << " changed (" << d.evaluated
        << " evaluated" << (d.truncated ? ", stopped at --limit" : "") << ")\n";
  }
  return p->vm.count("exit-code") && !d.changes.empty() ? kExitFailure : kExitOk;
}

}  // namespace

void register_policy_commands(Registry& registry) {
  registry.add({{"policy", "check"}, "DIR [--json]", "validate and compile a policy directory, print a summary", cmd_check});
  registry.add({{"policy", "test"}, "DIR [--json]", "run the policy's tests: entries; exit 1 on any failure", cmd_test});
  registry.add({{"policy", "trace"},
                "DIR --from SRC --to ADDR --proto P --port N [--json]",
                "explain one decision rule by rule",
                cmd_trace});
  registry.add({{"policy", "diff"}, "DIR1 DIR2 [--json] [--exit-code]", "list the decisions that differ between two policies",
                cmd_diff});
}

}  // namespace zt::ctl
