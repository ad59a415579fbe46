// YAML → Policy, with validation. Every check records a Diagnostic and goes on, so one run
// reports every error an operator must fix. Nothing here builds lookup tables (compiler.cpp).
#include <hs/hs.h>
#include <openssl/evp.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <numeric>
#include <set>
#include <sstream>
#include <unordered_map>

#include "prefix_tree.hpp"
#include "zt/rules/policy.hpp"

namespace zt::rules {

std::string format(const Diagnostic& d) {
  return d.where.file + ":" + std::to_string(d.where.line) + ":" + std::to_string(d.where.column) +
         ": " + d.message;
}

namespace {

std::string where_str(const SourceLocation& w) {
  return w.file + ":" + std::to_string(w.line) + ":" + std::to_string(w.column);
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> prev2(b.size() + 1), prev(b.size() + 1), cur(b.size() + 1);
  std::iota(prev.begin(), prev.end(), 0);
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])  // transposition
        cur[j] = std::min(cur[j], prev2[j - 2] + 1);
    }
    prev2 = prev;
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// " (did you mean 'x'?)" when a candidate is close, else "".
std::string suggest(std::string_view word, const std::vector<std::string>& candidates) {
  // Close enough to be a typo: at most a third of the word, and never the whole word.
  std::string best;
  std::size_t best_d = std::max<std::size_t>(1, word.size() / 3) + 1;
  for (auto& c : candidates) {
    auto d = edit_distance(word, c);
    if (d < best_d && d < word.size()) best_d = d, best = c;
  }
  return best.empty() ? "" : " (did you mean '" + best + "'?)";
}

std::string join(const std::vector<std::string>& v, std::size_t limit = 12) {
  std::string out;
  for (std::size_t i = 0; i < v.size() && i < limit; ++i) out += (i ? ", " : "") + v[i];
  if (v.size() > limit) out += ", … (" + std::to_string(v.size() - limit) + " more)";
  return out;
}

const std::vector<std::string> kHttpMethods = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
                                               "CONNECT", "OPTIONS", "TRACE", "PATCH"};

class Reader {
 public:
  explicit Reader(std::vector<Diagnostic>& diags) : diags_(diags) {}
  std::string file;

  SourceLocation at(const YAML::Node& n) const {
    auto m = n.Mark();
    return {file, m.line + 1, m.column + 1};
  }
  void error(const SourceLocation& w, std::string msg) { diags_.push_back({w, std::move(msg)}); }
  void error(const YAML::Node& n, std::string msg) { error(at(n), std::move(msg)); }

  // Checks that `n` is a map whose keys are all in `allowed`.
  bool expect_map(const YAML::Node& n, std::string_view what, const std::vector<std::string>& allowed) {
    if (!n.IsMap()) {
      error(n, std::string(what) + " must be a mapping with keys: " + join(allowed));
      return false;
    }
    for (auto it = n.begin(); it != n.end(); ++it) {
      auto key = it->first.Scalar();
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
        error(it->first, "unknown key '" + key + "' in " + std::string(what) + suggest(key, allowed) +
                             "; allowed keys: " + join(allowed));
    }
    return true;
  }
  std::optional<std::string> scalar(const YAML::Node& n, std::string_view what) {
    if (!n.IsScalar()) {
      error(n, std::string(what) + " must be a single value");
      return std::nullopt;
    }
    return n.Scalar();
  }
  template <typename T>
  std::optional<T> integer(const YAML::Node& n, std::string_view what, T lo, T hi) {
    auto s = scalar(n, what);
    if (!s) return std::nullopt;
    T v{};
    auto [p, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
    if (ec != std::errc{} || p != s->data() + s->size() || v < lo || v > hi) {
      error(n, std::string(what) + " '" + *s + "' must be an integer from " + std::to_string(lo) +
                   " to " + std::to_string(hi));
      return std::nullopt;
    }
    return v;
  }
  std::vector<YAML::Node> list(const YAML::Node& n, std::string_view what) {
    std::vector<YAML::Node> out;
    if (n.IsScalar()) {
      out.push_back(n);
    } else if (n.IsSequence()) {
      for (auto e : n) out.push_back(e);
    } else {
      error(n, std::string(what) + " must be a value or a list of values");
    }
    return out;
  }
  std::optional<Labels> labels(const YAML::Node& n, std::string_view what) {
    if (!n.IsMap()) {
      error(n, std::string(what) + " must be a mapping like {app: web, env: prod}");
      return std::nullopt;
    }
    Labels out;
    for (auto it = n.begin(); it != n.end(); ++it) {
      if (!it->second.IsScalar()) {
        error(it->second, "label '" + it->first.Scalar() + "' must have a single value");
        continue;
      }
      out[it->first.Scalar()] = it->second.Scalar();
    }
    return out;
  }
  bool name_ok(const YAML::Node& n, const std::string& s, std::string_view what) {
    bool ok = !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
    });
    if (!ok) error(n, std::string(what) + " '" + s + "' may use only letters, digits, '-', '_' and '.'");
    return ok;
  }

 private:
  std::vector<Diagnostic>& diags_;
};

struct Parser {
  Policy policy;
  std::vector<Diagnostic> diags;
  Reader r{diags};
  std::optional<SourceLocation> defaults_seen;

  void parse_identity(const YAML::Node& n) {
    if (!r.expect_map(n, "identity", {"id", "name", "labels"})) return;
    Identity id;
    id.where = r.at(n);
    if (!n["id"]) r.error(n, "identity needs an 'id' (an integer from 256 to 2147483647)");
    if (!n["name"]) r.error(n, "identity needs a 'name'");
    if (n["id"]) {
      auto v = r.integer<std::uint64_t>(n["id"], "identity id", 0, ~std::uint64_t{0});
      if (v) {
        if (*v == 0)
          r.error(n["id"], "identity id 0 is invalid; use an id from 256 to 2147483647");
        else if (*v < kFirstDeclaredIdentity)
          r.error(n["id"], "identity id " + std::to_string(*v) +
                               " is reserved (1-255; 2 is the built-in 'unauthenticated'); use an id from "
                               "256 to 2147483647");
        else if (*v > kMaxDeclaredIdentity)
          r.error(n["id"], "identity id " + std::to_string(*v) +
                               " is too large; ids from 2147483648 are reserved for untagged segment "
                               "sources; use an id from 256 to 2147483647");
        else
          id.id = static_cast<IdentityId>(*v);
      }
    }
    if (n["name"]) {
      if (auto s = r.scalar(n["name"], "identity name"); s && r.name_ok(n["name"], *s, "identity name")) {
        id.name = *s;
        if (*s == "unauthenticated")
          r.error(n["name"], "'unauthenticated' is the built-in identity 2; choose another name");
      }
    }
    if (n["labels"])
      if (auto l = r.labels(n["labels"], "identity labels")) id.labels = *l;
    policy.identities.push_back(std::move(id));
  }

  void parse_segment(const YAML::Node& n) {
    if (!r.expect_map(n, "segment", {"name", "prefixes", "labels", "mode"})) return;
    Segment s;
    s.where = r.at(n);
    if (!n["name"]) r.error(n, "segment needs a 'name'");
    else if (auto v = r.scalar(n["name"], "segment name"); v && r.name_ok(n["name"], *v, "segment name"))
      s.name = *v;
    if (!n["prefixes"]) {
      r.error(n, "segment needs 'prefixes', a list like [10.10.0.0/24, fd00:10::/64]");
    } else {
      auto items = r.list(n["prefixes"], "segment prefixes");
      if (items.empty() && n["prefixes"].IsSequence())
        r.error(n["prefixes"], "segment prefixes are empty; list at least one prefix such as 10.10.0.0/24");
      for (auto& p : items) {
        if (!p.IsScalar()) { r.error(p, "a prefix must be a string like 10.10.0.0/24"); continue; }
        auto text = p.Scalar();
        auto pf = parse_prefix(text);
        if (!pf) {
          if (auto fixed = parse_prefix(text, true))
            r.error(p, "prefix '" + text + "' has host bits set; did you mean " + to_string(*fixed) + "?");
          else
            r.error(p, "'" + text + "' is not an IPv4 or IPv6 prefix; write e.g. 10.10.0.0/24 or fd00:10::/64");
          continue;
        }
        s.prefixes.push_back(*pf);
        s.prefix_where.push_back(r.at(p));
      }
    }
    if (n["labels"])
      if (auto l = r.labels(n["labels"], "segment labels")) s.labels = *l;
    if (n["mode"]) {
      if (auto m = r.scalar(n["mode"], "segment mode")) {
        if (*m == "enforce") s.mode = SegmentMode::enforce;
        else if (*m == "audit") s.mode = SegmentMode::audit;
        else r.error(n["mode"], "segment mode '" + *m + "' is unknown; use enforce or audit");
      }
    }
    policy.segments.push_back(std::move(s));
  }

  Selector parse_selector(const YAML::Node& n, bool is_from) {
    Selector sel;
    sel.where = r.at(n);
    std::string what = is_from ? "'from' selector" : "'to' selector";
    if (n.IsScalar()) {
      if (n.Scalar() == "any") sel.any = true;
      else
        r.error(n, what + " '" + n.Scalar() + "' is unknown; write `any` or a mapping with " +
                       (is_from ? "identities, labels or segments" : "segments or labels"));
      return sel;
    }
    std::vector<std::string> keys = is_from ? std::vector<std::string>{"identities", "labels", "segments"}
                                            : std::vector<std::string>{"segments", "labels"};
    if (!r.expect_map(n, what, keys)) return sel;
    if (n.size() == 0)
      r.error(n, "empty " + what + " matches nothing; name " +
                     (is_from ? "identities, labels or segments" : "segments or labels") + ", or write `any`");
    auto names = [&](const char* key, std::vector<std::string>& out, std::vector<SourceLocation>& where) {
      if (!n[key]) return;
      auto items = r.list(n[key], key);
      if (items.empty() && n[key].IsSequence())
        r.error(n[key], "empty '" + std::string(key) + "' list in " + what + " matches nothing");
      for (auto& i : items) {
        if (!i.IsScalar()) { r.error(i, std::string(key) + " entries must be names"); continue; }
        out.push_back(i.Scalar());
        where.push_back(r.at(i));
      }
    };
    if (is_from) names("identities", sel.identities, sel.identities_where);
    names("segments", sel.segments, sel.segments_where);
    if (n["labels"]) {
      sel.labels_where = r.at(n["labels"]);
      sel.labels = r.labels(n["labels"], "selector labels");
      if (sel.labels && sel.labels->empty())
        r.error(n["labels"], "empty 'labels' in " + what + " matches nothing; write labels like {app: web} or `any`");
    }
    return sel;
  }

  std::optional<PortRange> parse_port(const YAML::Node& n) {
    if (!n.IsScalar()) { r.error(n, "a port must be a number or a range like 8000-8080"); return std::nullopt; }
    auto s = n.Scalar();
    auto num = [&](std::string_view t) -> std::optional<std::uint32_t> {
      std::uint32_t v{};
      auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
      if (ec != std::errc{} || p != t.data() + t.size()) return std::nullopt;
      return v;
    };
    auto dash = s.find('-');
    auto lo = num(std::string_view(s).substr(0, dash));
    auto hi = dash == std::string::npos ? lo : num(std::string_view(s).substr(dash + 1));
    if (!lo || !hi) {
      r.error(n, "port '" + s + "' is not a port or range; write 80 or 8000-8080");
      return std::nullopt;
    }
    if (*lo > 65535 || *hi > 65535) {
      r.error(n, "port '" + s + "' is out of range; ports go from 0 to 65535");
      return std::nullopt;
    }
    if (*lo > *hi) {
      r.error(n, "port range " + s + " is reversed; write " + std::to_string(*hi) + "-" + std::to_string(*lo));
      return std::nullopt;
    }
    return PortRange{static_cast<std::uint16_t>(*lo), static_cast<std::uint16_t>(*hi)};
  }

  void parse_rule(const YAML::Node& n) {
    if (!r.expect_map(n, "rule", {"id", "name", "from", "to", "proto", "ports", "action", "rate", "l7", "payload"}))
      return;
    Rule rule;
    rule.where = r.at(n);
    if (!n["id"]) r.error(n, "rule needs an 'id' (an integer from 1 to 2147483647) so verdicts can name it");
    else if (auto v = r.integer<std::uint32_t>(n["id"], "rule id", 1, 0x7fffffff)) rule.id = *v;
    if (n["name"])
      if (auto v = r.scalar(n["name"], "rule name"); v && r.name_ok(n["name"], *v, "rule name")) rule.name = *v;
    if (!n["from"]) r.error(n, "rule needs 'from' (a selector, or `any`)");
    else rule.from = parse_selector(n["from"], true);
    if (!n["to"]) r.error(n, "rule needs 'to' (a selector, or `any`)");
    else rule.to = parse_selector(n["to"], false);
    if (n["proto"]) {
      for (auto& p : r.list(n["proto"], "proto")) {
        if (!p.IsScalar()) { r.error(p, "proto must be tcp, udp, icmp, icmpv6 or any"); continue; }
        if (p.Scalar() == "any") { rule.protos.clear(); break; }
        if (auto v = parse_proto(p.Scalar())) rule.protos.push_back(*v);
        else r.error(p, "protocol '" + p.Scalar() + "' is unknown; use tcp, udp, icmp, icmpv6 or any");
      }
    }
    if (n["ports"]) {
      auto items = r.list(n["ports"], "ports");
      if (items.empty() && n["ports"].IsSequence())
        r.error(n["ports"], "empty 'ports' list matches nothing; list ports or omit 'ports' for all ports");
      for (auto& p : items)
        if (auto pr = parse_port(p)) rule.ports.push_back(*pr);
      bool port_proto = !rule.protos.empty() && std::all_of(rule.protos.begin(), rule.protos.end(), [](auto p) {
        return p == kProtoTcp || p == kProtoUdp;
      });
      if (!port_proto)
        r.error(n["ports"], "ports need 'proto: tcp' or 'proto: udp' (or [tcp, udp]); other protocols have no ports");
    }
    if (!n["action"]) {
      r.error(n, "rule needs 'action: allow' or 'action: deny'");
    } else if (auto a = r.scalar(n["action"], "action")) {
      if (*a == "allow") rule.action = Action::allow;
      else if (*a == "deny") rule.action = Action::deny;
      else r.error(n["action"], "action '" + *a + "' is unknown; use allow or deny");
    }
    if (n["rate"]) {
      const auto& rn = n["rate"];
      if (r.expect_map(rn, "rate", {"pps", "bps"})) {
        RateClass rc;
        if (rn["pps"]) rc.pps = r.integer<std::uint64_t>(rn["pps"], "rate pps", 1, 1'000'000'000'000).value_or(0);
        if (rn["bps"]) rc.bps = r.integer<std::uint64_t>(rn["bps"], "rate bps", 1, 10'000'000'000'000).value_or(0);
        if (!rn["pps"] && !rn["bps"]) r.error(rn, "rate needs 'pps', 'bps' or both");
        rule.rate = rc;
      }
      if (rule.action == Action::deny) r.error(rn, "a rate class limits allowed traffic; remove 'rate' from this deny rule");
    }
    if (n["l7"]) {
      const auto& ln = n["l7"];
      if (r.expect_map(ln, "l7", {"methods", "paths", "deny"})) {
        L7Spec l7;
        if (ln["methods"])
          for (auto& m : r.list(ln["methods"], "l7 methods")) {
            if (!m.IsScalar()) continue;
            auto it = std::find(kHttpMethods.begin(), kHttpMethods.end(), m.Scalar());
            if (it == kHttpMethods.end())
              r.error(m, "HTTP method '" + m.Scalar() + "' is unknown" + suggest(m.Scalar(), kHttpMethods) +
                             "; use one of " + join(kHttpMethods));
            else l7.methods.push_back(m.Scalar());
          }
        auto patterns = [&](const char* key, std::vector<std::string>& out, std::vector<SourceLocation>& where) {
          if (!ln[key]) return;
          for (auto& p : r.list(ln[key], key)) {
            if (!p.IsScalar() || p.Scalar().empty()) { r.error(p, std::string("l7 ") + key + " entries must be non-empty patterns"); continue; }
            out.push_back(p.Scalar());
            where.push_back(r.at(p));
          }
        };
        patterns("paths", l7.paths, l7.paths_where);
        patterns("deny", l7.deny, l7.deny_where);
        if (ln.size() == 0) r.error(ln, "empty 'l7' does nothing; give methods, paths or deny patterns, or remove it");
        rule.l7 = std::move(l7);
      }
      if (rule.action == Action::deny) r.error(ln, "L7 checks refine allowed traffic; remove 'l7' from this deny rule");
      if (rule.protos != std::vector<std::uint8_t>{kProtoTcp})
        r.error(ln, "L7 (HTTP) checks need 'proto: tcp'");
    }
    if (n["payload"]) {
      if (auto p = r.scalar(n["payload"], "payload")) {
        if (*p == "hdr") rule.payload_hdr = true;
        else if (*p != "full") r.error(n["payload"], "payload '" + *p + "' is unknown; use hdr or full");
      }
      if (rule.payload_hdr && rule.action == Action::deny)
        r.error(n["payload"], "'payload: hdr' relaxes tag coverage for allowed traffic; remove it from this deny rule");
    }
    policy.rules.push_back(std::move(rule));
  }

  void parse_defaults(const YAML::Node& n) {
    if (defaults_seen) {
      r.error(n, "'defaults' is already given at " + where_str(*defaults_seen) + "; keep one defaults block");
      return;
    }
    defaults_seen = r.at(n);
    policy.defaults.where = r.at(n);
    if (!r.expect_map(n, "defaults", {"mode", "action"})) return;
    if (n["mode"])
      if (auto m = r.scalar(n["mode"], "default mode")) {
        if (*m == "enforce") policy.defaults.mode = SegmentMode::enforce;
        else if (*m == "audit") policy.defaults.mode = SegmentMode::audit;
        else r.error(n["mode"], "default mode '" + *m + "' is unknown; use enforce or audit");
      }
    if (n["action"])
      if (auto a = r.scalar(n["action"], "default action"); a && *a != "deny")
        r.error(n["action"], "default action '" + *a + "' is not supported: policy is default deny (zero trust); "
                             "write allow rules for what must pass");
  }

  void parse_test(const YAML::Node& n) {
    if (!r.expect_map(n, "test", {"name", "from", "to", "proto", "port", "expect", "rule", "http"})) return;
    PolicyTest t;
    t.where = r.at(n);
    if (n["name"]) t.name = r.scalar(n["name"], "test name").value_or("");
    if (!n["from"]) r.error(n, "test needs 'from': an identity name or id, or an untagged source address");
    else t.from = r.scalar(n["from"], "test from").value_or("");
    if (!n["to"]) r.error(n, "test needs 'to': a destination address such as 10.10.0.2");
    else if (auto s = r.scalar(n["to"], "test to")) {
      if (auto a = parse_address(*s)) t.to = *a;
      else r.error(n["to"], "test destination '" + *s + "' is not an IPv4 or IPv6 address");
    }
    if (n["proto"])
      if (auto s = r.scalar(n["proto"], "test proto")) {
        if (auto p = parse_proto(*s)) t.proto = *p;
        else r.error(n["proto"], "protocol '" + *s + "' is unknown; use tcp, udp, icmp or icmpv6");
      }
    if (n["port"]) {
      if (auto v = r.integer<std::uint32_t>(n["port"], "test port", 0, 65535)) t.port = static_cast<std::uint16_t>(*v);
    } else if (t.proto == kProtoTcp || t.proto == kProtoUdp) {
      r.error(n, "test needs 'port' for " + proto_name(t.proto));
    }
    if (!n["expect"]) r.error(n, "test needs 'expect: allow', 'expect: deny' or 'expect: audit'");
    else if (auto e = r.scalar(n["expect"], "expect")) {
      if (*e == "allow") t.expect = Disposition::allow;
      else if (*e == "deny") t.expect = Disposition::deny;
      else if (*e == "audit") t.expect = Disposition::audit;
      else r.error(n["expect"], "expected verdict '" + *e + "' is unknown; use allow, deny or audit");
    }
    if (n["rule"]) t.rule = r.scalar(n["rule"], "test rule");
    if (n["http"]) {
      const auto& h = n["http"];
      if (r.expect_map(h, "test http", {"method", "path", "body"})) {
        HttpRequest req;
        req.method = h["method"] ? r.scalar(h["method"], "http method").value_or("") : "GET";
        req.path = h["path"] ? r.scalar(h["path"], "http path").value_or("") : "/";
        if (h["body"]) req.body = r.scalar(h["body"], "http body").value_or("");
        t.http = std::move(req);
      }
    }
    policy.tests.push_back(std::move(t));
  }

  void parse_file(const std::string& name, const std::string& text) {
    r.file = name;
    YAML::Node root;
    try {
      root = YAML::Load(text);
    } catch (const YAML::ParserException& e) {
      r.error(SourceLocation{name, e.mark.line + 1, e.mark.column + 1}, "YAML syntax error: " + e.msg);
      return;
    }
    if (root.IsNull()) return;  // an empty file contributes nothing
    if (!r.expect_map(root, "a policy file", {"identities", "segments", "rules", "defaults", "tests"})) return;
    auto each = [&](const char* key, auto fn) {
      if (!root[key]) return;
      if (!root[key].IsSequence()) {
        r.error(root[key], std::string("'") + key + "' must be a list");
        return;
      }
      for (auto e : root[key]) (this->*fn)(e);
    };
    each("identities", &Parser::parse_identity);
    each("segments", &Parser::parse_segment);
    each("rules", &Parser::parse_rule);
    if (root["defaults"]) parse_defaults(root["defaults"]);
    each("tests", &Parser::parse_test);
  }

  // ---- cross-file checks --------------------------------------------------------------------

  void check_identities() {
    std::unordered_map<IdentityId, const Identity*> by_id;
    std::unordered_map<std::string, const Identity*> by_name;
    for (auto& i : policy.identities) {
      if (i.id) {
        auto [it, fresh] = by_id.emplace(i.id, &i);
        if (!fresh)
          r.error(i.where, "duplicate identity id " + std::to_string(i.id) + "; already used by '" +
                               it->second->name + "' at " + where_str(it->second->where) + "; ids must be unique");
      }
      if (!i.name.empty()) {
        auto [it, fresh] = by_name.emplace(i.name, &i);
        if (!fresh)
          r.error(i.where, "duplicate identity name '" + i.name + "'; already declared at " +
                               where_str(it->second->where));
      }
    }
  }

  void check_segments() {
    std::unordered_map<std::string, const Segment*> by_name;
    for (auto& s : policy.segments) {
      if (s.name.empty()) continue;
      auto [it, fresh] = by_name.emplace(s.name, &s);
      if (!fresh)
        r.error(s.where, "duplicate segment name '" + s.name + "'; already declared at " + where_str(it->second->where));
    }
    // Every prefix once; nested prefixes must not disagree on a label.
    std::vector<IpPrefix> prefixes;
    std::vector<std::pair<const Segment*, std::size_t>> owner;
    std::map<std::pair<bool, std::array<std::uint8_t, 17>>, std::size_t> seen;
    for (auto& s : policy.segments)
      for (std::size_t k = 0; k < s.prefixes.size(); ++k) {
        std::array<std::uint8_t, 17> key{};
        std::copy(s.prefixes[k].addr.bytes.begin(), s.prefixes[k].addr.bytes.end(), key.begin());
        key[16] = s.prefixes[k].len;
        auto [it, fresh] = seen.emplace(std::pair{s.prefixes[k].addr.v6, key}, owner.size());
        if (!fresh) {
          auto& [os, ok] = owner[it->second];
          r.error(s.prefix_where[k], "prefix " + to_string(s.prefixes[k]) + " is already in segment '" + os->name +
                                         "' at " + where_str(os->prefix_where[ok]) +
                                         "; a prefix belongs to one segment (nest a longer prefix instead)");
          continue;
        }
        prefixes.push_back(s.prefixes[k]);
        owner.emplace_back(&s, k);
      }
    auto parent = detail::prefix_parents(prefixes);
    for (std::size_t i = 0; i < prefixes.size(); ++i) {
      auto [seg, k] = owner[i];
      for (auto p = parent[i]; p != detail::kNoParent; p = parent[p]) {
        auto [outer, ok] = owner[p];
        if (outer == seg) continue;
        for (auto& [key, value] : seg->labels) {
          auto it = outer->labels.find(key);
          if (it != outer->labels.end() && it->second != value) {
            r.error(seg->prefix_where[k],
                    "prefix " + to_string(prefixes[i]) + " of segment '" + seg->name + "' lies inside " +
                        to_string(prefixes[p]) + " of segment '" + outer->name + "' (" + where_str(outer->prefix_where[ok]) +
                        ") but their labels conflict (" + key + "=" + value + " vs " + key + "=" + it->second +
                        "); give both the same value or drop the label from one");
          }
        }
      }
    }
  }

  template <typename T>
  void check_label_selector(const Selector& sel, const std::vector<T>& items, std::string_view kind) {
    if (!sel.labels || sel.labels->empty()) return;
    std::map<std::string, std::set<std::string>> known;
    for (auto& i : items)
      for (auto& [k, v] : i.labels) known[k].insert(v);
    bool all_known = true;
    for (auto& [k, v] : *sel.labels) {
      auto it = known.find(k);
      if (it == known.end()) {
        std::vector<std::string> keys;
        for (auto& [kk, _] : known) keys.push_back(kk);
        r.error(sel.labels_where, "unknown label '" + k + "': no " + std::string(kind) + " has it" + suggest(k, keys) +
                                      (keys.empty() ? "; no " + std::string(kind) + " has labels"
                                                    : "; " + std::string(kind) + " labels are: " + join(keys)));
        all_known = false;
      } else if (!it->second.contains(v)) {
        std::vector<std::string> values(it->second.begin(), it->second.end());
        r.error(sel.labels_where, "unknown label " + k + "=" + v + ": no " + std::string(kind) + " has it" +
                                      suggest(v, values) + "; known values of '" + k + "': " + join(values));
        all_known = false;
      }
    }
    if (!all_known) return;
    bool any = std::any_of(items.begin(), items.end(), [&](const T& i) {
      return std::all_of(sel.labels->begin(), sel.labels->end(), [&](auto& kv) {
        auto it = i.labels.find(kv.first);
        return it != i.labels.end() && it->second == kv.second;
      });
    });
    if (!any) {
      std::string text;
      for (auto& [k, v] : *sel.labels) text += (text.empty() ? "" : ", ") + k + "=" + v;
      r.error(sel.labels_where, "labels {" + text + "} match no " + std::string(kind) +
                                    " (each label exists, but never together); fix the labels or the selector");
    }
  }

  void check_rules() {
    std::vector<std::string> identity_names{"unauthenticated"}, segment_names;
    for (auto& i : policy.identities) identity_names.push_back(i.name);
    for (auto& s : policy.segments) segment_names.push_back(s.name);
    std::set<std::string> id_set(identity_names.begin(), identity_names.end());
    std::set<std::string> seg_set(segment_names.begin(), segment_names.end());
    std::unordered_map<RuleId, const Rule*> by_id;
    std::unordered_map<std::string, const Rule*> by_name;
    for (auto& rule : policy.rules) {
      if (rule.id) {
        auto [it, fresh] = by_id.emplace(rule.id, &rule);
        if (!fresh)
          r.error(rule.where, "duplicate rule id " + std::to_string(rule.id) + "; already used at " +
                                  where_str(it->second->where) + "; rule ids must be unique");
      }
      if (!rule.name.empty()) {
        auto [it, fresh] = by_name.emplace(rule.name, &rule);
        if (!fresh)
          r.error(rule.where, "duplicate rule name '" + rule.name + "'; already used at " + where_str(it->second->where));
      }
      for (std::size_t k = 0; k < rule.from.identities.size(); ++k)
        if (!id_set.contains(rule.from.identities[k]))
          r.error(rule.from.identities_where[k], "unknown identity '" + rule.from.identities[k] + "'" +
                                                     suggest(rule.from.identities[k], identity_names) +
                                                     "; declared identities: " + join(identity_names));
      for (auto* sel : {&rule.from, &rule.to})
        for (std::size_t k = 0; k < sel->segments.size(); ++k)
          if (!seg_set.contains(sel->segments[k]))
            r.error(sel->segments_where[k], "unknown segment '" + sel->segments[k] + "'" +
                                                suggest(sel->segments[k], segment_names) +
                                                (segment_names.empty() ? "; no segment is declared"
                                                                       : "; declared segments: " + join(segment_names)));
      check_label_selector(rule.from, policy.identities, "identity");
      check_label_selector(rule.to, policy.segments, "segment");
      if (rule.l7) check_patterns(*rule.l7);
    }
  }

  void check_patterns(const L7Spec& l7) {
    auto check = [&](const std::vector<std::string>& pats, const std::vector<SourceLocation>& where, unsigned flags) {
      for (std::size_t k = 0; k < pats.size(); ++k) {
        hs_expr_info_t* info = nullptr;
        hs_compile_error_t* err = nullptr;
        if (hs_expression_info(pats[k].c_str(), flags, &info, &err) != HS_SUCCESS) {
          r.error(where[k], "pattern '" + pats[k] + "' does not compile: " + (err ? err->message : "unknown error") +
                                "; patterns are Hyperscan (PCRE-like) regular expressions");
          hs_free_compile_error(err);
        } else {
          std::free(info);
        }
      }
    };
    check(l7.paths, l7.paths_where, HS_FLAG_SINGLEMATCH);
    check(l7.deny, l7.deny_where, HS_FLAG_SINGLEMATCH | HS_FLAG_DOTALL);
  }

  void check_tests() {
    std::set<std::string> names{"unauthenticated"}, rule_refs{"default"};
    for (auto& i : policy.identities) names.insert(i.name), names.insert(std::to_string(i.id));
    for (auto& rule : policy.rules) {
      rule_refs.insert(std::to_string(rule.id));
      if (!rule.name.empty()) rule_refs.insert(rule.name);
    }
    std::vector<std::string> identity_names{"unauthenticated"};
    for (auto& i : policy.identities) identity_names.push_back(i.name);
    for (auto& t : policy.tests) {
      if (!t.from.empty() && !names.contains(t.from) && !parse_address(t.from))
        r.error(t.where, "test source '" + t.from + "' is neither a declared identity" + suggest(t.from, identity_names) +
                             " nor an IP address (an untagged source)");
      if (t.rule && !rule_refs.contains(*t.rule))
        r.error(t.where, "test names rule '" + *t.rule + "', which does not exist; give a rule name or id, or 'default'");
    }
  }
};

std::string sha256_hex(const std::vector<std::pair<std::string, std::string>>& files) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  for (auto& [name, text] : files) {
    std::string header = name + '\0' + std::to_string(text.size()) + '\0';
    EVP_DigestUpdate(ctx.get(), header.data(), header.size());
    EVP_DigestUpdate(ctx.get(), text.data(), text.size());
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) out += kHex[md[i] >> 4], out += kHex[md[i] & 15];
  return out;
}

}  // namespace

std::expected<Policy, std::vector<Diagnostic>> parse_policy(
    const std::vector<std::pair<std::string, std::string>>& files_in) {
  auto files = files_in;
  std::sort(files.begin(), files.end());
  Parser p;
  if (files.empty()) {
    p.diags.push_back({{"(policy)", 0, 0}, "no policy files found; a policy is one or more *.yaml files"});
    return std::unexpected(p.diags);
  }
  for (auto& [name, text] : files) {
    p.parse_file(name, text);
    p.policy.files.push_back(name);
  }
  p.check_identities();
  p.check_segments();
  p.check_rules();
  p.check_tests();
  if (!p.diags.empty()) return std::unexpected(std::move(p.diags));
  p.policy.digest = sha256_hex(files);
  return std::move(p.policy);
}

std::expected<Policy, std::vector<Diagnostic>> load_policy(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    return std::unexpected(std::vector<Diagnostic>{
        {{dir.string(), 0, 0}, "not a directory; give the directory that holds the policy *.yaml files"}});
  std::vector<std::pair<std::string, std::string>> files;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    auto ext = it->path().extension();
    if (!it->is_regular_file() || (ext != ".yaml" && ext != ".yml")) continue;
    std::ifstream in(it->path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    if (!in) return std::unexpected(std::vector<Diagnostic>{{{it->path().string(), 0, 0}, "cannot read the file"}});
    files.emplace_back(it->path().string(), ss.str());
  }
  if (ec) return std::unexpected(std::vector<Diagnostic>{{{dir.string(), 0, 0}, "cannot list: " + ec.message()}});
  if (files.empty())
    return std::unexpected(std::vector<Diagnostic>{
        {{dir.string(), 0, 0}, "no *.yaml or *.yml files here; a policy is one or more YAML files"}});
  auto policy = parse_policy(files);
  if (policy) {
    // The digest names files relative to the policy directory, so it depends on content only.
    for (auto& [name, text] : files) name = fs::path(name).lexically_relative(dir).generic_string();
    std::sort(files.begin(), files.end());
    policy->digest = sha256_hex(files);
  }
  return policy;
}

}  // namespace zt::rules
