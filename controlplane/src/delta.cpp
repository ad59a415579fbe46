#include "zt/controlplane/delta.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <vector>

#include <fmt/format.h>

namespace zt::cp {

namespace {

// ---- canonical forms: equal text <=> same meaning --------------------------------------------

std::string labels_text(const std::map<std::string, std::string>& l) {
  std::string s = "{";
  for (const auto& [k, v] : l) s += fmt::format("{}{}={}", s.size() > 1 ? "," : "", k, v);
  return s + "}";
}

template <class ProtoMap>
std::map<std::string, std::string> sorted(const ProtoMap& m) {
  return {m.begin(), m.end()};
}

template <class Seq>
std::string list_text(const Seq& v) {
  std::string s = "[";
  for (const auto& x : v) s += fmt::format("{}{}", s.size() > 1 ? "," : "", x);
  return s + "]";
}

pb::IdentityEntry identity_entry(const rules::Identity& i) {
  pb::IdentityEntry e;
  e.set_id(i.id);
  e.set_name(i.name);
  for (const auto& [k, v] : i.labels) (*e.mutable_labels())[k] = v;
  return e;
}

std::string entry_text(const pb::IdentityEntry& e) {
  return fmt::format("name={} labels={}", e.name(), labels_text(sorted(e.labels())));
}

pb::SegmentEntry segment_entry(const rules::Segment& s, rules::SegmentMode dflt) {
  pb::SegmentEntry e;
  e.set_name(s.name);
  std::vector<std::string> prefixes;
  for (const auto& p : s.prefixes) prefixes.push_back(rules::to_string(p));
  std::sort(prefixes.begin(), prefixes.end());
  prefixes.erase(std::unique(prefixes.begin(), prefixes.end()), prefixes.end());
  for (auto& p : prefixes) e.add_prefixes(std::move(p));
  for (const auto& [k, v] : s.labels) (*e.mutable_labels())[k] = v;
  e.set_mode(s.mode.value_or(dflt) == rules::SegmentMode::audit ? pb::SEGMENT_MODE_AUDIT : pb::SEGMENT_MODE_ENFORCE);
  return e;
}

std::string entry_text(const pb::SegmentEntry& e) {
  std::vector<std::string> prefixes(e.prefixes().begin(), e.prefixes().end());
  std::sort(prefixes.begin(), prefixes.end());
  const char* mode = e.mode() == pb::SEGMENT_MODE_AUDIT ? "audit" : e.mode() == pb::SEGMENT_MODE_ENFORCE ? "enforce" : "unspecified";
  return fmt::format("prefixes={} labels={} mode={}", list_text(prefixes), labels_text(sorted(e.labels())), mode);
}

std::string selector_text(const rules::Selector& s) {
  auto ids = s.identities;
  auto segs = s.segments;
  std::sort(ids.begin(), ids.end());
  std::sort(segs.begin(), segs.end());
  return fmt::format("any={} identities={} segments={} labels={}", s.any, list_text(ids), list_text(segs),
                     s.labels ? labels_text(*s.labels) : "none");
}

// Everything that decides what a rule does (not where it is written).
std::string rule_text(const rules::Rule& r) {
  std::vector<unsigned> protos(r.protos.begin(), r.protos.end());
  std::sort(protos.begin(), protos.end());
  std::vector<std::string> ports;
  for (const auto& p : r.ports) ports.push_back(fmt::format("{}-{}", p.lo, p.hi));
  std::sort(ports.begin(), ports.end());
  std::string l7 = "none";
  if (r.l7) l7 = fmt::format("methods={} paths={} deny={}", list_text(r.l7->methods), list_text(r.l7->paths), list_text(r.l7->deny));
  return fmt::format("name={} from=({}) to=({}) protos={} ports={} action={} rate={} l7=({}) payload_hdr={}", r.name,
                     selector_text(r.from), selector_text(r.to), list_text(protos), list_text(ports),
                     r.action == rules::Action::allow ? "allow" : "deny",
                     r.rate ? fmt::format("{}pps/{}bps", r.rate->pps, r.rate->bps) : std::string("none"), l7,
                     r.payload_hdr);
}

std::string identity_display(std::uint32_t id, const std::string& name) { return fmt::format("{} ({})", name, id); }

// ---- the check, one resource kind at a time ------------------------------------------------

enum class Change : std::uint8_t { none, upsert, added, changed, removed };

bool matches(Change truth, Change claim) {
  if (claim == Change::upsert) return truth == Change::added || truth == Change::changed;
  return truth == claim;
}

const char* claim_words(Change c) {
  switch (c) {
    case Change::none: return "does not list";
    case Change::upsert: return "upserts";
    case Change::added: return "lists as added";
    case Change::changed: return "lists as changed";
    case Change::removed: return "removes";
  }
  return "?";
}

// One kind of resource (identity, segment, rule) keyed by K. `base`/`next` map a key to its
// canonical text; `claims` are what the delta says (with the text it gives for upserts).
template <class K>
struct Side {
  std::map<K, std::string> base, next;
  std::map<K, std::string> display;  // how a person names the key
  std::map<K, std::pair<Change, std::string>> claims;
};

template <class K>
std::expected<void, Refusal> check_kind(const char* kind, const char* field, Side<K>& s, std::uint64_t b, std::uint64_t n) {
  std::set<K> keys;
  for (const auto& [k, _] : s.base) keys.insert(k);
  for (const auto& [k, _] : s.next) keys.insert(k);
  for (const auto& [k, _] : s.claims) keys.insert(k);
  for (const K& k : keys) {
    const auto bi = s.base.find(k);
    const auto ni = s.next.find(k);
    const bool in_b = bi != s.base.end(), in_n = ni != s.next.end();
    Change truth = Change::none;
    if (in_n && !in_b) truth = Change::added;
    else if (in_b && !in_n) truth = Change::removed;
    else if (in_b && in_n && bi->second != ni->second) truth = Change::changed;
    const auto ci = s.claims.find(k);
    const Change claim = ci == s.claims.end() ? Change::none : ci->second.first;
    const auto di = s.display.find(k);
    const std::string who = fmt::format("{} {}", kind, di != s.display.end() ? di->second : fmt::format("{}", k));
    const std::string resource = fmt::format("delta.{}[{}]", field, k);
    auto refuse = [&](std::string msg) { return std::unexpected(Refusal{pb::NACK_CODE_DELTA_MISMATCH, std::move(msg), resource}); };
    if (!matches(truth, claim)) {
      std::string fact;
      switch (truth) {
        case Change::none:
          fact = in_b ? fmt::format("it is unchanged between revisions {} and {}", b, n)
                      : fmt::format("neither revision {} nor {} declares it", b, n);
          break;
        case Change::added: fact = fmt::format("it was added in revision {} ({})", n, ni->second); break;
        case Change::changed:
          fact = fmt::format("it changed between revisions {} and {} (from {} to {})", b, n, bi->second, ni->second);
          break;
        case Change::removed: fact = fmt::format("it was removed in revision {}", n); break;
        case Change::upsert: break;
      }
      return refuse(fmt::format("the delta {} {}, but {}", claim_words(claim), who, fact));
    }
    if (claim == Change::upsert && ci->second.second != ni->second)
      return refuse(fmt::format("the delta upserts {} as {}, but revision {} declares {}", who, ci->second.second, n, ni->second));
  }
  return {};
}

template <class K>
std::expected<void, Refusal> claim(Side<K>& s, const char* kind, const char* field, const K& k, Change c, std::string text = {}) {
  if (!s.claims.emplace(k, std::pair{c, std::move(text)}).second)
    return std::unexpected(Refusal{pb::NACK_CODE_DELTA_MISMATCH, fmt::format("the delta lists {} {} more than once", kind, k),
                                   fmt::format("delta.{}[{}]", field, k)});
  return {};
}

Side<std::uint32_t> identity_side(const rules::Policy& base, const rules::Policy& next) {
  Side<std::uint32_t> s;
  for (const auto& i : base.identities) {
    s.base[i.id] = entry_text(identity_entry(i));
    s.display[i.id] = identity_display(i.id, i.name);
  }
  for (const auto& i : next.identities) {
    s.next[i.id] = entry_text(identity_entry(i));
    s.display[i.id] = identity_display(i.id, i.name);
  }
  return s;
}

Side<std::string> segment_side(const rules::Policy& base, const rules::Policy& next) {
  Side<std::string> s;
  for (const auto& g : base.segments) s.base[g.name] = entry_text(segment_entry(g, base.defaults.mode));
  for (const auto& g : next.segments) s.next[g.name] = entry_text(segment_entry(g, next.defaults.mode));
  return s;
}

Side<std::uint32_t> rule_side(const rules::Policy& base, const rules::Policy& next) {
  Side<std::uint32_t> s;
  for (const auto& r : base.rules) {
    s.base[r.id] = rule_text(r);
    s.display[r.id] = r.name.empty() ? fmt::format("{}", r.id) : fmt::format("{} ({})", r.id, r.name);
  }
  for (const auto& r : next.rules) {
    s.next[r.id] = rule_text(r);
    s.display[r.id] = r.name.empty() ? fmt::format("{}", r.id) : fmt::format("{} ({})", r.id, r.name);
  }
  return s;
}

}  // namespace

pb::PolicyDelta compute_delta(const rules::Policy& base, std::uint64_t base_revision, const rules::Policy& next,
                              std::uint64_t revision) {
  pb::PolicyDelta d;
  d.set_base_revision(base_revision);
  d.set_base_source_digest(base.digest);
  d.set_revision(revision);
  d.set_source_digest(next.digest);

  std::map<std::uint32_t, pb::IdentityEntry> bi, ni;
  for (const auto& i : base.identities) bi[i.id] = identity_entry(i);
  for (const auto& i : next.identities) ni[i.id] = identity_entry(i);
  for (const auto& [id, e] : ni)
    if (auto it = bi.find(id); it == bi.end() || entry_text(it->second) != entry_text(e)) *d.mutable_identities()->add_upserted() = e;
  for (const auto& [id, e] : bi)
    if (!ni.contains(id)) d.mutable_identities()->add_removed(id);

  std::map<std::string, pb::SegmentEntry> bs, ns;
  for (const auto& g : base.segments) bs[g.name] = segment_entry(g, base.defaults.mode);
  for (const auto& g : next.segments) ns[g.name] = segment_entry(g, next.defaults.mode);
  for (const auto& [name, e] : ns)
    if (auto it = bs.find(name); it == bs.end() || entry_text(it->second) != entry_text(e)) *d.mutable_segments()->add_upserted() = e;
  for (const auto& [name, e] : bs)
    if (!ns.contains(name)) d.mutable_segments()->add_removed(name);

  auto rs = rule_side(base, next);
  for (const auto& [id, t] : rs.next) {
    auto it = rs.base.find(id);
    if (it == rs.base.end()) d.mutable_rules()->add_added(id);
    else if (it->second != t) d.mutable_rules()->add_changed(id);
  }
  for (const auto& [id, t] : rs.base)
    if (!rs.next.contains(id)) d.mutable_rules()->add_removed(id);
  return d;
}

std::expected<void, Refusal> check_delta(const pb::PolicyDelta& d, const rules::Policy& base, std::uint64_t base_revision,
                                         const rules::Policy& next, std::uint64_t revision) {
  auto header = [](std::string msg, const char* field) {
    return std::unexpected(Refusal{pb::NACK_CODE_DELTA_MISMATCH, std::move(msg), field});
  };
  if (d.base_revision() != base_revision)
    return header(fmt::format("the delta starts from revision {}, not from the enforced revision {}", d.base_revision(), base_revision),
                  "delta.base_revision");
  if (d.revision() != revision)
    return header(fmt::format("the delta leads to revision {}, but the pushed bundle is revision {}", d.revision(), revision),
                  "delta.revision");
  if (d.base_source_digest() != base.digest)
    return header(fmt::format("the delta's base source digest {} is not that of the enforced revision {} ({})",
                              d.base_source_digest().substr(0, 16), base_revision, base.digest.substr(0, 16)),
                  "delta.base_source_digest");
  if (d.source_digest() != next.digest)
    return header(fmt::format("the delta's source digest {} is not that of the pushed bundle ({})", d.source_digest().substr(0, 16),
                              next.digest.substr(0, 16)),
                  "delta.source_digest");

  auto ids = identity_side(base, next);
  for (const auto& e : d.identities().upserted()) {
    if (!ids.display.contains(e.id())) ids.display[e.id()] = identity_display(e.id(), e.name());
    if (auto r = claim(ids, "identity", "identities", e.id(), Change::upsert, entry_text(e)); !r) return r;
  }
  for (auto id : d.identities().removed())
    if (auto r = claim(ids, "identity", "identities", id, Change::removed); !r) return r;
  if (auto r = check_kind("identity", "identities", ids, base_revision, revision); !r) return r;

  auto segs = segment_side(base, next);
  for (const auto& e : d.segments().upserted())
    if (auto r = claim(segs, "segment", "segments", e.name(), Change::upsert, entry_text(e)); !r) return r;
  for (const auto& name : d.segments().removed())
    if (auto r = claim(segs, "segment", "segments", name, Change::removed); !r) return r;
  if (auto r = check_kind("segment", "segments", segs, base_revision, revision); !r) return r;

  auto rls = rule_side(base, next);
  for (auto id : d.rules().added())
    if (auto r = claim(rls, "rule", "rules", id, Change::added); !r) return r;
  for (auto id : d.rules().removed())
    if (auto r = claim(rls, "rule", "rules", id, Change::removed); !r) return r;
  for (auto id : d.rules().changed())
    if (auto r = claim(rls, "rule", "rules", id, Change::changed); !r) return r;
  return check_kind("rule", "rules", rls, base_revision, revision);
}

std::string describe_delta(const pb::PolicyDelta& d, const rules::Policy& base) {
  std::map<std::uint32_t, std::string> base_ids;
  for (const auto& i : base.identities) base_ids[i.id] = i.name;
  std::set<std::string> base_segs;
  for (const auto& g : base.segments) base_segs.insert(g.name);
  std::vector<std::string> items;
  for (const auto& e : d.identities().upserted())
    items.push_back(fmt::format("{}identity {}", base_ids.contains(e.id()) ? '~' : '+', identity_display(e.id(), e.name())));
  for (auto id : d.identities().removed()) {
    auto it = base_ids.find(id);
    items.push_back(fmt::format("-identity {}", identity_display(id, it != base_ids.end() ? it->second : "?")));
  }
  for (const auto& e : d.segments().upserted())
    items.push_back(fmt::format("{}segment {}", base_segs.contains(e.name()) ? '~' : '+', e.name()));
  for (const auto& name : d.segments().removed()) items.push_back(fmt::format("-segment {}", name));
  items.push_back(fmt::format("rules +{} -{} ~{}", d.rules().added_size(), d.rules().removed_size(), d.rules().changed_size()));
  std::string out = fmt::format("delta from {}: ", d.base_revision());
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + items[i];
  return out;
}

}  // namespace zt::cp
