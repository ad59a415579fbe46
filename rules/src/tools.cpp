#include "zt/rules/tools.hpp"

#include <algorithm>
#include <charconv>
#include <set>

namespace zt::rules {

std::expected<IdentityId, std::string> resolve_source(const PolicySnapshot& snap, const std::string& from) {
  if (auto id = snap.identity_by_name(from)) return *id;
  if (auto a = parse_address(from)) return snap.resolve_untagged(*a);
  IdentityId v{};
  auto [p, ec] = std::from_chars(from.data(), from.data() + from.size(), v);
  if (ec == std::errc{} && p == from.data() + from.size() && v != 0) return v;
  return std::unexpected("source '" + from + "' is neither a declared identity, an identity id nor an IP address");
}

Decision decide(const PolicySnapshot& snap, const FlowKey& key, const std::optional<HttpRequest>& http,
                L7Scratch& scratch) {
  Decision d;
  d.key = key;
  d.verdict = snap.classify(key);
  d.disposition = d.verdict.disposition;
  d.reason = d.verdict.reason;
  if (http && d.verdict.disposition == Disposition::allow && d.verdict.l7 != kNoL7) {
    std::string payload = http->method + " " + http->path + " HTTP/1.1\r\n\r\n" + http->body;
    d.l7 = snap.check_l7(d.verdict, http->method, http->path,
                         {reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()}, scratch);
    if (d.l7->outcome != L7Outcome::allowed) {
      const auto& pol = snap.source();
      auto mode = d.verdict.segment != kNoSegment ? pol.segments[d.verdict.segment].mode.value_or(pol.defaults.mode)
                                                  : pol.defaults.mode;
      bool audit = mode == SegmentMode::audit;
      d.disposition = audit ? Disposition::audit : Disposition::deny;
      d.reason = DropReason::policy_l7_deny;
    }
  }
  return d;
}

std::string describe_rule(const PolicySnapshot& snap, RuleId id) {
  if (id == kDefaultRule) return "default deny (no rule matched)";
  auto* r = snap.rule_by_id(id);
  std::string s = "rule " + std::to_string(id);
  if (r && !r->name.empty()) s += " (" + r->name + ")";
  return s;
}

namespace {
std::string loc(const SourceLocation& w) {
  return w.file + ":" + std::to_string(w.line) + ":" + std::to_string(w.column);
}
std::string flow_text(const PolicySnapshot& snap, const FlowKey& k, std::uint16_t port) {
  std::string s = snap.identity_name(k.src) + " -> " + to_string(k.dst) + " " + proto_name(k.proto);
  if (k.proto == kProtoTcp || k.proto == kProtoUdp) s += "/" + std::to_string(port);
  return s;
}
}  // namespace

std::vector<TestResult> run_tests(const PolicySnapshot& snap) {
  std::vector<TestResult> out;
  L7Scratch scratch;
  auto prepared = snap.prepare_scratch(scratch);
  for (const auto& t : snap.source().tests) {
    TestResult r;
    r.test = &t;
    std::string label = "test" + (t.name.empty() ? std::string() : " '" + t.name + "'");
    auto src = resolve_source(snap, t.from);
    if (!src || !prepared) {
      r.message = loc(t.where) + ": " + label + ": " + (src ? prepared.error() : src.error());
      out.push_back(std::move(r));
      continue;
    }
    FlowKey key{*src, t.to, t.proto, t.port};
    r.got = decide(snap, key, t.http, scratch);
    bool rule_ok = true;
    if (t.rule) {
      auto want = *t.rule;
      auto* rule = snap.rule_by_id(r.got.verdict.rule_id);
      rule_ok = want == "default" ? r.got.verdict.rule_id == kDefaultRule
                                  : rule && (want == std::to_string(rule->id) || want == rule->name);
    }
    r.passed = r.got.disposition == t.expect && rule_ok;
    if (!r.passed) {
      r.message = loc(t.where) + ": " + label + ": " + flow_text(snap, key, t.port) + ": expected " +
                  std::string(to_string(t.expect)) + (t.rule ? " by rule " + *t.rule : "") + ", got " +
                  std::string(to_string(r.got.disposition)) + " by " + describe_rule(snap, r.got.verdict.rule_id);
      if (r.got.l7 && r.got.l7->outcome != L7Outcome::allowed)
        r.message += " (L7: " + std::string(to_string(r.got.l7->outcome)) + ")";
      if (auto* rule = snap.rule_by_id(r.got.verdict.rule_id)) r.message += " at " + loc(rule->where);
    }
    out.push_back(std::move(r));
  }
  return out;
}

std::expected<Trace, std::string> trace(const PolicySnapshot& snap, const TraceQuery& q) {
  auto src = resolve_source(snap, q.from);
  if (!src) return std::unexpected(src.error());
  L7Scratch scratch;
  if (auto p = snap.prepare_scratch(scratch); !p) return std::unexpected(p.error());
  Trace t;
  FlowKey key{*src, q.to, q.proto, q.port};
  t.decision = decide(snap, key, q.http, scratch);
  t.source_name = snap.identity_name(*src);
  const auto& rules = snap.source().rules;
  bool ported = q.proto == kProtoTcp || q.proto == kProtoUdp;
  std::uint32_t best_entry = 0;
  const Rule* best = nullptr;
  std::vector<std::pair<std::uint32_t, const Rule*>> matched;
  for (std::size_t i = 0; i < rules.size(); ++i) {
    const auto& r = rules[i];
    TraceStep step{&r, false, {}};
    auto dst_depth = snap.rule_matches_destination(i, q.to);
    bool proto_ok = r.protos.empty() || std::find(r.protos.begin(), r.protos.end(), q.proto) != r.protos.end();
    bool port_ok = !ported || r.ports.empty() ||
                   std::any_of(r.ports.begin(), r.ports.end(), [&](auto& p) { return p.lo <= q.port && q.port <= p.hi; });
    if (!snap.rule_matches_source(i, *src)) step.why = "source " + t.source_name + " not selected by 'from'";
    else if (!dst_depth) step.why = "destination " + to_string(q.to) + " not selected by 'to'";
    else if (!proto_ok) step.why = "protocol " + proto_name(q.proto) + " not listed";
    else if (!port_ok) step.why = "port " + std::to_string(q.port) + " not listed";
    else {
      step.matched = true;
      auto e = snap.entry_of(i, *dst_depth).value_or(0);
      step.why = std::string(r.action == Action::deny ? "matches (deny)" : "matches (allow)") +
                 ", destination via /" + std::to_string(*dst_depth) + ", priority " + std::to_string(e);
      matched.emplace_back(e, &r);
      if (e >= best_entry) best_entry = e, best = &r;
    }
    t.steps.push_back(std::move(step));
  }
  const auto& v = t.decision.verdict;
  if (!best) {
    t.conclusion.push_back("no rule matches: default deny");
  } else if (best->action == Action::deny) {
    t.conclusion.push_back("deny beats allow: " + describe_rule(snap, best->id) + " denies");
  } else {
    std::sort(matched.rbegin(), matched.rend());
    t.conclusion.push_back("no deny matches; the most specific allow wins: " + describe_rule(snap, best->id));
    auto depth_of = [&](const Rule* r) {
      return snap.rule_matches_destination(static_cast<std::size_t>(r - rules.data()), q.to).value_or(0);
    };
    for (std::size_t k = 1; k < matched.size(); ++k) {
      const Rule* loser = matched[k].second;
      std::string why;
      auto ws = source_specificity(best->from), ls = source_specificity(loser->from);
      auto wd = depth_of(best), ld = depth_of(loser);
      auto wp = port_span(*best), lp = port_span(*loser);
      if (ws != ls)
        why = "more specific source (" + std::to_string(ws) + " vs " + std::to_string(ls) +
              "; names 1000, labels 1+count, any 0)";
      else if (wd != ld)
        why = "longer destination prefix (/" + std::to_string(wd) + " vs /" + std::to_string(ld) + ")";
      else if (wp != lp)
        why = "fewer ports (" + std::to_string(wp) + " vs " + std::to_string(lp) + ")";
      else
        why = "lower rule id (" + std::to_string(best->id) + " vs " + std::to_string(loser->id) + ")";
      t.conclusion.push_back("  it beats " + describe_rule(snap, loser->id) + ": " + why);
    }
  }
  if ((best ? best->id : kDefaultRule) != v.rule_id)
    t.conclusion.push_back("INTERNAL ERROR: the explanation picks " + describe_rule(snap, best ? best->id : 0) +
                           " but the lookup decided " + describe_rule(snap, v.rule_id) + "; please report this");
  if (v.disposition == Disposition::audit)
    t.conclusion.push_back("destination segment is in audit mode: the deny is logged and counted, not enforced");
  if (t.decision.l7)
    t.conclusion.push_back("L7: " + std::string(to_string(t.decision.l7->outcome)));
  return t;
}

DiffResult diff(const PolicySnapshot& before, const PolicySnapshot& after, std::size_t limit) {
  DiffResult res;
  struct Source {
    std::string name;
    IdentityId a, b;
  };
  std::vector<Source> sources;
  std::set<IdentityId> ids;
  for (auto* s : {&before, &after})
    for (auto& i : s->source().identities) ids.insert(i.id);
  for (auto id : ids) {
    auto name = before.identity_name(id);
    if (name.starts_with("unknown")) name = after.identity_name(id);
    sources.push_back({name, id, id});
  }
  sources.push_back({"unauthenticated", kUnauthenticated, kUnauthenticated});
  std::set<IpAddress> samples;
  for (auto* s : {&before, &after})
    for (auto& p : s->prefixes()) samples.insert(p.addr), samples.insert(last_address(p));
  samples.insert(IpAddress::v4(0));
  IpAddress v6zero;
  v6zero.v6 = true;
  samples.insert(v6zero);
  for (auto& a : samples) {
    auto sa = before.resolve_untagged(a), sb = after.resolve_untagged(a);
    if (is_segment_source_identity(sa) || is_segment_source_identity(sb))
      sources.push_back({"untagged from " + to_string(a), sa, sb});
  }
  std::vector<std::uint32_t> bounds{0};
  for (auto* s : {&before, &after})
    for (auto& r : s->source().rules)
      for (auto& p : r.ports) {
        bounds.push_back(p.lo);
        if (p.hi < 65535) bounds.push_back(p.hi + 1u);
      }
  std::sort(bounds.begin(), bounds.end());
  bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
  for (auto& src : sources)
    for (auto& dst : samples)
      for (std::uint8_t proto : {kProtoTcp, kProtoUdp, dst.v6 ? kProtoIcmpv6 : kProtoIcmp, std::uint8_t{47}}) {
        bool ported = proto == kProtoTcp || proto == kProtoUdp;
        std::size_t n = ported ? bounds.size() : 1;
        for (std::size_t i = 0; i < n; ++i) {
          if (++res.evaluated > limit) {
            res.truncated = true;
            return res;
          }
          auto port = static_cast<std::uint16_t>(ported ? bounds[i] : 0);
          auto hi = static_cast<std::uint16_t>(ported && i + 1 < n ? bounds[i + 1] - 1 : 65535);
          auto va = before.classify({src.a, dst, proto, port});
          auto vb = after.classify({src.b, dst, proto, port});
          if (va.disposition == vb.disposition && va.rule_id == vb.rule_id) continue;
          if (!res.changes.empty()) {
            auto& last = res.changes.back();
            if (last.source == src.name && last.sample == dst && last.proto == proto && last.ports.hi + 1u == port &&
                last.before.rule_id == va.rule_id && last.after.rule_id == vb.rule_id &&
                last.before.disposition == va.disposition && last.after.disposition == vb.disposition) {
              last.ports.hi = hi;
              continue;
            }
          }
          res.changes.push_back({src.name, src.a, IpPrefix{dst, static_cast<std::uint8_t>(dst.bits())}, dst, proto,
                                 PortRange{port, hi}, va, vb});
        }
      }
  return res;
}

}  // namespace zt::rules
