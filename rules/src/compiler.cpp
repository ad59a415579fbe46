// Policy → PolicySnapshot. See snapshot.hpp for the lookup this builds and rules/README.md for
// why it is shaped this way.
#include <hs/hs.h>

#include <algorithm>
#include <array>
#include <bit>
#include <iterator>
#include <map>
#include <numeric>
#include <string_view>
#include <unordered_map>

#include "prefix_tree.hpp"
#include "zt/rules/snapshot.hpp"

namespace zt::rules {

namespace {


constexpr std::uint32_t kProtoClasses = 5;  // tcp, udp, icmp, icmpv6, other
constexpr std::size_t kMaxCombos = 20'000'000;

std::vector<std::uint32_t> proto_classes(const Rule& r) {
  if (r.protos.empty()) return {0, 1, 2, 3, 4};
  std::vector<std::uint32_t> out;
  for (auto p : r.protos) {
    std::uint32_t c = p == kProtoTcp ? 0 : p == kProtoUdp ? 1 : p == kProtoIcmp ? 2 : p == kProtoIcmpv6 ? 3 : 4;
    if (std::find(out.begin(), out.end(), c) == out.end()) out.push_back(c);
  }
  return out;
}

bool labels_match(const Labels& want, const Labels& have) {
  for (auto& [k, v] : want) {
    auto it = have.find(k);
    if (it == have.end() || it->second != v) return false;
  }
  return true;
}

// Appends the items (identities or segments) whose labels contain every pair of `want`, looked
// up through the smallest posting list of the label index.
template <typename Items>
void add_label_matches(const Labels& want,
                       const std::map<std::pair<std::string, std::string>, std::vector<std::uint32_t>>& label_index,
                       const Items& items, std::vector<std::uint32_t>& matched) {
  const std::vector<std::uint32_t>* smallest = nullptr;
  for (const auto& kv : want) {
    auto it = label_index.find(kv);
    if (it == label_index.end()) return;
    if (!smallest || it->second.size() < smallest->size()) smallest = &it->second;
  }
  if (smallest)
    for (auto i : *smallest)
      if (labels_match(want, items[i].labels)) matched.push_back(i);
}

void sort_unique(std::vector<std::uint32_t>& v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
}

struct VecHash {
  std::size_t operator()(const std::vector<std::uint32_t>& v) const noexcept {
    std::uint64_t h = 0xcbf29ce484222325ull ^ v.size();
    for (auto x : v) h = (h ^ x) * 0x100000001b3ull;
    return static_cast<std::size_t>(h ^ (h >> 29));
  }
};

// Interns signatures (sorted vectors) as class ids 1..n; the empty signature is class 0.
struct ClassTable {
  std::unordered_map<std::vector<std::uint32_t>, std::uint32_t, VecHash> ids;
  std::vector<std::vector<std::uint32_t>> sigs{{}};
  std::uint32_t intern(std::vector<std::uint32_t>&& sig) {
    if (sig.empty()) return 0;
    auto [it, fresh] = ids.emplace(sig, static_cast<std::uint32_t>(sigs.size()));
    if (fresh) sigs.push_back(std::move(sig));
    return it->second;
  }
};

std::uint32_t next_pow2_shift(std::size_t count, std::uint32_t bits) {
  std::size_t cap = 16;
  while (cap < count * 2) cap <<= 1;
  return bits - static_cast<std::uint32_t>(std::countr_zero(cap));
}

}  // namespace

std::uint32_t source_specificity(const Selector& s) {
  if (s.any) return 0;
  std::uint32_t rank = 1000;
  if (s.labels) rank = std::min<std::uint32_t>(rank, 1 + static_cast<std::uint32_t>(s.labels->size()));
  return rank;
}

std::uint32_t port_span(const Rule& r) {
  if (r.ports.empty()) return 65536;
  std::uint32_t span = 0;
  for (auto& p : r.ports) span += std::uint32_t{p.hi} - p.lo + 1;
  return std::min<std::uint32_t>(span, 65536);
}

class SnapshotBuilder {
 public:
  SnapshotBuilder(const Policy& p, const CompileOptions& o) : policy_(p), opts_(o) {}

  std::expected<SnapshotPtr, std::vector<Diagnostic>> build() {
    snap_.reset(new PolicySnapshot());
    snap_->policy_ = policy_;
    snap_->revision_ = opts_.revision;
    const auto& rules = policy_.rules;
    nid_ = policy_.identities.size();

    build_leaves();
    // Groups: A specific→specific, B any→specific, C specific→any, D any→any.
    group_.resize(rules.size());
    for (std::size_t r = 0; r < rules.size(); ++r)
      group_[r] = (rules[r].from.any ? 1 : 0) | (rules[r].to.any ? 2 : 0);
    match_sources();
    match_destinations();
    number_entries();
    build_port_filters();
    intern_classes();
    if (auto e = build_tables(); !e) return std::unexpected(e.error());
    build_identity_hash();
    if (auto e = build_l7(); !e) return std::unexpected(e.error());
    fill_stats();
    return SnapshotPtr(snap_.release());
  }

 private:
  // ---- destinations: one leaf per prefix, leaf 0 = outside every segment ----
  void build_leaves() {
    auto& s = *snap_;
    std::vector<std::uint32_t> seg_of;
    for (std::uint32_t i = 0; i < policy_.segments.size(); ++i)
      for (auto& p : policy_.segments[i].prefixes) s.leaf_prefix_.push_back(p), seg_of.push_back(i);
    auto parent = detail::prefix_parents(s.leaf_prefix_);
    s.leaves_.assign(s.leaf_prefix_.size() + 1, {});
    s.leaf_chain_.assign(s.leaf_prefix_.size() + 1, {});
    s.audit_outside_ = policy_.defaults.mode == SegmentMode::audit;
    s.leaves_[0].audit = s.audit_outside_;
    std::vector<std::pair<IpPrefix, std::uint32_t>> lpm_entries;
    for (std::uint32_t i = 0; i < s.leaf_prefix_.size(); ++i) {
      auto leaf = i + 1;
      for (std::int32_t q = static_cast<std::int32_t>(i); q != detail::kNoParent; q = parent[q])
        s.leaf_chain_[leaf].emplace_back(seg_of[q], s.leaf_prefix_[q].len);
      const auto& seg = policy_.segments[seg_of[i]];
      s.leaves_[leaf].segment = seg_of[i];
      s.leaves_[leaf].audit = seg.mode.value_or(policy_.defaults.mode) == SegmentMode::audit;
      lpm_entries.emplace_back(s.leaf_prefix_[i], leaf);
    }
    s.lpm4_ = Lpm::build(lpm_entries, false);
    s.lpm6_ = Lpm::build(lpm_entries, true);
  }

  // ---- sources: declared identities [0, n), unauthenticated n, then pseudo sources ----
  void match_sources() {
    auto& s = *snap_;
    const auto& rules = policy_.rules;
    std::unordered_map<std::string, std::uint32_t> seg_index, id_index;
    for (std::uint32_t i = 0; i < policy_.segments.size(); ++i) seg_index[policy_.segments[i].name] = i;
    for (std::uint32_t i = 0; i < nid_; ++i) id_index[policy_.identities[i].name] = i;
    id_index["unauthenticated"] = static_cast<std::uint32_t>(nid_);
    // Segments named as sources give the leaves inside them a pseudo identity.
    std::vector<bool> source_segment(policy_.segments.size());
    for (auto& r : rules)
      for (auto& name : r.from.segments) source_segment[seg_index.at(name)] = true;
    std::vector<std::vector<std::uint32_t>> seg_pseudo(policy_.segments.size());
    for (std::uint32_t leaf = 1; leaf < s.leaves_.size(); ++leaf) {
      bool named = false;
      for (auto [seg, len] : s.leaf_chain_[leaf]) named |= source_segment[seg];
      if (!named) continue;
      auto src = static_cast<std::uint32_t>(nid_ + 1 + pseudo_leaf_.size());
      pseudo_leaf_.push_back(leaf);
      for (auto [seg, len] : s.leaf_chain_[leaf])
        if (source_segment[seg]) seg_pseudo[seg].push_back(src);
    }
    nsrc_ = nid_ + 1 + pseudo_leaf_.size();
    // Label index over declared identities.
    std::map<std::pair<std::string, std::string>, std::vector<std::uint32_t>> label_index;
    for (std::uint32_t i = 0; i < nid_; ++i)
      for (auto& kv : policy_.identities[i].labels) label_index[kv].push_back(i);
    src_rules_a_.assign(nsrc_, {});
    src_rules_c_.assign(nsrc_, {});
    for (std::uint32_t r = 0; r < rules.size(); ++r) {
      if (rules[r].from.any) continue;
      const auto& sel = rules[r].from;
      std::vector<std::uint32_t> matched;
      for (auto& name : sel.identities) matched.push_back(id_index.at(name));
      for (auto& name : sel.segments) {
        auto& v = seg_pseudo[seg_index.at(name)];
        matched.insert(matched.end(), v.begin(), v.end());
      }
      if (sel.labels) add_label_matches(*sel.labels, label_index, policy_.identities, matched);
      sort_unique(matched);
      auto& target = group_[r] == 0 ? src_rules_a_ : src_rules_c_;
      for (auto src : matched) target[src].push_back(r);
    }
  }

  void match_destinations() {
    auto& s = *snap_;
    const auto& rules = policy_.rules;
    std::unordered_map<std::string, std::uint32_t> seg_index;
    for (std::uint32_t i = 0; i < policy_.segments.size(); ++i) seg_index[policy_.segments[i].name] = i;
    std::vector<std::vector<std::uint32_t>> seg_rules(policy_.segments.size());
    std::map<std::pair<std::string, std::string>, std::vector<std::uint32_t>> label_index;
    for (std::uint32_t i = 0; i < policy_.segments.size(); ++i)
      for (auto& kv : policy_.segments[i].labels) label_index[kv].push_back(i);
    for (std::uint32_t r = 0; r < rules.size(); ++r) {
      if (rules[r].to.any) continue;
      const auto& sel = rules[r].to;
      std::vector<std::uint32_t> matched;
      for (auto& name : sel.segments) matched.push_back(seg_index.at(name));
      if (sel.labels) add_label_matches(*sel.labels, label_index, policy_.segments, matched);
      sort_unique(matched);
      for (auto seg : matched) seg_rules[seg].push_back(r);
    }
    leaf_rules_.assign(s.leaves_.size(), {});
    std::unordered_map<std::uint32_t, std::uint8_t> depth;
    for (std::uint32_t leaf = 1; leaf < s.leaves_.size(); ++leaf) {
      depth.clear();
      for (auto [seg, len] : s.leaf_chain_[leaf])
        for (auto r : seg_rules[seg]) {
          auto [it, fresh] = depth.emplace(r, len);
          if (!fresh) it->second = std::max(it->second, len);
        }
      leaf_rules_[leaf].assign(depth.begin(), depth.end());
      std::sort(leaf_rules_[leaf].begin(), leaf_rules_[leaf].end());
    }
  }

  // Verdict entries (rule, depth) in priority order: every deny above every allow; then source
  // specificity, destination prefix length, narrower ports, lower rule id. Entry 0 = default.
  void number_entries() {
    auto& s = *snap_;
    const auto& rules = policy_.rules;
    std::vector<std::uint64_t> pairs;  // (rule << 8) | depth
    for (auto& lr : leaf_rules_)
      for (auto [r, d] : lr) pairs.push_back((std::uint64_t{r} << 8) | d);
    for (std::uint32_t r = 0; r < rules.size(); ++r)
      if (rules[r].to.any) pairs.push_back(std::uint64_t{r} << 8);
    std::sort(pairs.begin(), pairs.end());
    pairs.erase(std::unique(pairs.begin(), pairs.end()), pairs.end());
    std::vector<std::uint32_t> rank(rules.size()), span(rules.size());
    for (std::uint32_t r = 0; r < rules.size(); ++r) rank[r] = source_specificity(rules[r].from), span[r] = port_span(rules[r]);
    auto key = [&](std::uint64_t pr) {
      auto r = static_cast<std::uint32_t>(pr >> 8);
      auto d = static_cast<std::uint32_t>(pr & 0xff);
      return std::tuple{rules[r].action == Action::deny, rank[r], d, 65536 - span[r], 0x7fffffffu - rules[r].id};
    };
    std::vector<std::uint64_t> ordered = pairs;
    std::sort(ordered.begin(), ordered.end(), [&](auto a, auto b) { return key(a) < key(b); });
    // Rate classes, deduplicated.
    std::map<std::pair<std::uint64_t, std::uint64_t>, std::uint16_t> rates;
    rule_rate_.assign(rules.size(), kNoRateClass);
    rule_l7_.assign(rules.size(), kNoL7);
    for (std::uint32_t r = 0; r < rules.size(); ++r) {
      if (rules[r].rate) {
        auto k = std::pair{rules[r].rate->pps, rules[r].rate->bps};
        auto [it, fresh] = rates.emplace(k, static_cast<std::uint16_t>(s.rate_classes_.size()));
        if (fresh) s.rate_classes_.push_back(*rules[r].rate);
        rule_rate_[r] = it->second;
      }
      if (rules[r].l7) rule_l7_[r] = static_cast<std::uint16_t>(l7_rules_.size()), l7_rules_.push_back(r);
    }
    s.entries_.assign(1, VerdictEntry{});
    for (auto pr : ordered) {
      auto r = static_cast<std::uint32_t>(pr >> 8);
      VerdictEntry e;
      e.rule_id = rules[r].id;
      e.rule_index = r;
      e.depth = static_cast<std::uint8_t>(pr & 0xff);
      e.deny = rules[r].action == Action::deny;
      e.payload_hdr = rules[r].payload_hdr;
      e.rate_class = e.deny ? kNoRateClass : rule_rate_[r];
      e.l7 = e.deny ? kNoL7 : rule_l7_[r];
      s.entry_index_.emplace_back(pr, static_cast<std::uint32_t>(s.entries_.size()));
      s.entries_.push_back(e);
    }
    std::sort(s.entry_index_.begin(), s.entry_index_.end());
  }

  // Port filters (snapshot.hpp port_filter_): per leaf, for TCP and UDP, the bits
  // (port & 63) of every port a rule that can reach the leaf covers. Rules towards `any` reach
  // every leaf; the others reach the leaves leaf_rules_ lists. Exact: a clear bit means no rule
  // of any group matches the port there, whatever the source.
  void build_port_filters() {
    auto& s = *snap_;
    const auto& rules = policy_.rules;
    std::vector<std::array<std::uint64_t, kProtoClasses>> of_rule(rules.size());
    for (std::uint32_t r = 0; r < rules.size(); ++r) {
      std::uint64_t ports = 0;
      if (rules[r].ports.empty()) ports = ~0ull;
      for (auto& pr : rules[r].ports) {
        if (std::uint32_t{pr.hi} - pr.lo >= 63) {
          ports = ~0ull;
          break;
        }
        for (std::uint32_t q = pr.lo; q <= pr.hi; ++q) ports |= 1ull << (q & 63);
      }
      of_rule[r].fill(0);
      for (auto p : proto_classes(rules[r])) of_rule[r][p] = ports;
    }
    std::array<std::uint64_t, kProtoClasses> anywhere{};
    for (std::uint32_t r = 0; r < rules.size(); ++r)
      if (rules[r].to.any)
        for (std::uint32_t p = 0; p < kProtoClasses; ++p) anywhere[p] |= of_rule[r][p];
    s.port_filter_.assign(s.leaves_.size() * 2, 0);
    for (std::uint32_t leaf = 0; leaf < s.leaves_.size(); ++leaf) {
      auto f = anywhere;
      for (auto [r, d] : leaf_rules_[leaf])
        for (std::uint32_t p = 0; p < kProtoClasses; ++p) f[p] |= of_rule[r][p];
      s.port_filter_[leaf * 2] = f[0], s.port_filter_[leaf * 2 + 1] = f[1];
    }
  }

  std::uint32_t entry(std::uint32_t r, std::uint8_t d) const {
    auto k = (std::uint64_t{r} << 8) | d;
    auto it = std::lower_bound(snap_->entry_index_.begin(), snap_->entry_index_.end(), std::pair{k, 0u});
    return it->second;
  }

  void intern_classes() {
    auto& s = *snap_;
    for (std::uint32_t leaf = 0; leaf < s.leaves_.size(); ++leaf) {
      std::vector<std::uint32_t> a, b;
      for (auto [r, d] : leaf_rules_[leaf]) (group_[r] == 0 ? a : b).push_back(entry(r, d));
      std::sort(a.begin(), a.end());
      std::sort(b.begin(), b.end());
      s.leaves_[leaf].dst_a = dst_a_.intern(std::move(a));
      s.leaves_[leaf].dst_b = dst_b_.intern(std::move(b));
      s.leaves_[leaf].reach = PolicySnapshot::kReachAnywhere |
                              (s.leaves_[leaf].dst_b ? PolicySnapshot::kReachDeclared : 0) |
                              PolicySnapshot::reach_bit_of_class(s.leaves_[leaf].dst_a);
    }
    src_a_of_.resize(nsrc_);
    src_c_of_.resize(nsrc_);
    for (std::size_t src = 0; src < nsrc_; ++src) {
      src_a_of_[src] = src_a_.intern(std::move(src_rules_a_[src]));
      src_c_of_[src] = src_c_.intern(std::move(src_rules_c_[src]));
    }
  }

  // Small tables are padded to the fixed width port_lookup scans (starts past any port).
  static void pad_small(std::vector<std::uint32_t>& starts, std::vector<std::uint32_t>& winners) {
    if (starts.size() > PolicySnapshot::kSmallPortTable) return;
    starts.resize(PolicySnapshot::kSmallPortTable, 0x10000);
    winners.resize(PolicySnapshot::kSmallPortTable, 0);
  }

  // One port table per distinct list of entries; identical tables are shared.
  std::uint32_t port_table(std::vector<std::uint32_t>& ents, std::uint32_t proto_class) {
    auto& s = *snap_;
    std::sort(ents.begin(), ents.end());
    ents.erase(std::unique(ents.begin(), ents.end()), ents.end());
    bool ported = proto_class < 2;
    std::vector<std::uint32_t> bounds{0};
    if (ported)
      for (auto e : ents)
        for (auto& pr : policy_.rules[s.entries_[e].rule_index].ports) {
          bounds.push_back(pr.lo);
          if (pr.hi < 65535) bounds.push_back(pr.hi + 1u);
        }
    std::sort(bounds.begin(), bounds.end());
    bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
    std::vector<std::uint32_t> starts, winners;
    for (auto b : bounds) {
      std::uint32_t best = 0;
      for (auto e : ents) {
        const auto& rule = policy_.rules[s.entries_[e].rule_index];
        bool covers = !ported || rule.ports.empty() ||
                      std::any_of(rule.ports.begin(), rule.ports.end(), [&](auto& pr) { return pr.lo <= b && b <= pr.hi; });
        if (covers) best = std::max(best, e);
      }
      if (!winners.empty() && winners.back() == best) continue;
      starts.push_back(b);
      winners.push_back(best);
    }
    if (starts.size() == 1 && winners[0] == 0) return 0;
    pad_small(starts, winners);
    std::vector<std::uint32_t> table{static_cast<std::uint32_t>(starts.size() <= PolicySnapshot::kSmallPortTable
                                                                   ? std::count_if(starts.begin(), starts.end(), [](auto x) { return x <= 65535; })
                                                                   : starts.size())};
    table.insert(table.end(), starts.begin(), starts.end());
    table.insert(table.end(), winners.begin(), winners.end());
    auto [it, fresh] = tables_.emplace(table, static_cast<std::uint32_t>(s.ports_.size()));
    if (fresh) s.ports_.insert(s.ports_.end(), table.begin(), table.end());
    return it->second;
  }

  std::expected<void, std::vector<Diagnostic>> build_tables() {
    auto& s = *snap_;
    const auto& rules = policy_.rules;
    // Offset 0 is the table of "no rule": one interval from port 0 answering entry 0.
    std::vector<std::uint32_t> none_starts{0}, none_winners{0};
    pad_small(none_starts, none_winners);
    s.ports_.assign(1, 1);
    s.ports_.insert(s.ports_.end(), none_starts.begin(), none_starts.end());
    s.ports_.insert(s.ports_.end(), none_winners.begin(), none_winners.end());
    std::vector<std::vector<std::uint32_t>> protos(rules.size());
    for (std::uint32_t r = 0; r < rules.size(); ++r) protos[r] = proto_classes(rules[r]);
    // Group A: (source class, destination class, proto) → entries.
    std::vector<std::vector<std::uint32_t>> classes_of_rule(rules.size());
    for (std::uint32_t c = 1; c < src_a_.sigs.size(); ++c)
      for (auto r : src_a_.sigs[c]) classes_of_rule[r].push_back(c);
    std::size_t combos = 0;
    for (std::uint32_t d = 1; d < dst_a_.sigs.size(); ++d)
      for (auto e : dst_a_.sigs[d]) combos += classes_of_rule[s.entries_[e].rule_index].size() * protos[s.entries_[e].rule_index].size();
    if (combos > kMaxCombos)
      return std::unexpected(std::vector<Diagnostic>{{policy_.rules.empty() ? SourceLocation{} : policy_.rules[0].where,
          "policy too complex: " + std::to_string(combos) + " (source, destination, protocol) combinations exceed the limit of " +
          std::to_string(kMaxCombos) + "; select with shared labels instead of many overlapping selectors"}});
    std::unordered_map<std::uint64_t, std::vector<std::uint32_t>> combo;
    combo.reserve(combos);
    src_a_reach_.assign(src_a_.sigs.size(), 0);
    for (std::uint32_t d = 1; d < dst_a_.sigs.size(); ++d)
      for (auto e : dst_a_.sigs[d]) {
        auto r = s.entries_[e].rule_index;
        for (auto c : classes_of_rule[r])
          for (auto p : protos[r]) combo[(std::uint64_t{c} << 32) | (std::uint64_t{d} << 3) | p].push_back(e);
      }
    s.combo_shift_ = next_pow2_shift(combo.size(), 64) + 2;  // at most half full, buckets of 4
    s.combos_.assign(std::size_t{1} << (64 - s.combo_shift_), PolicySnapshot::ComboBucket{});
    std::size_t mask = s.combos_.size() - 1;
    for (auto& [key, ents] : combo) {
      auto t = port_table(ents, static_cast<std::uint32_t>(key & 7));
      if (!t) continue;
      // First free slot from the bucket the hash names on (find_combo stops at a free slot).
      auto b = static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ull) >> s.combo_shift_);
      std::size_t j = 0;
      for (;; b = (b + 1) & mask) {
        auto& keys = s.combos_[b].key;
        j = static_cast<std::size_t>(std::find(std::begin(keys), std::end(keys), 0u) - std::begin(keys));
        if (j < 4) break;
      }
      s.combos_[b].key[j] = key;
      s.combos_[b].table[j] = t;
      s.groups_ |= PolicySnapshot::kGroupA;
      src_a_reach_[key >> 32] |= PolicySnapshot::reach_bit_of_class(static_cast<std::uint32_t>(key) >> 3);
    }
    stats_combos_ = combo.size();
    // Group B: from any (declared identities only) to destination classes.
    s.group_b_.assign(dst_b_.sigs.size() * 16, 0);
    for (std::uint32_t d = 1; d < dst_b_.sigs.size(); ++d) {
      std::vector<std::vector<std::uint32_t>> per_proto(kProtoClasses);
      for (auto e : dst_b_.sigs[d])
        for (auto p : protos[s.entries_[e].rule_index]) per_proto[p].push_back(e);
      for (std::uint32_t p = 0; p < kProtoClasses; ++p)
        if (!per_proto[p].empty()) s.group_b_[(d * 8 + p) * 2 + 1] = port_table(per_proto[p], p);
      s.groups_ |= PolicySnapshot::kGroupB;
    }
    // Group C: source classes to anywhere.
    s.group_c_.assign(src_c_.sigs.size() * 8, 0);
    for (std::uint32_t c = 1; c < src_c_.sigs.size(); ++c) {
      std::vector<std::vector<std::uint32_t>> per_proto(kProtoClasses);
      for (auto r : src_c_.sigs[c])
        for (auto p : protos[r]) per_proto[p].push_back(entry(r, 0));
      for (std::uint32_t p = 0; p < kProtoClasses; ++p)
        if (!per_proto[p].empty()) s.group_c_[c * 8 + p] = port_table(per_proto[p], p);
      s.groups_ |= PolicySnapshot::kGroupC;
    }
    // Group D: any to any.
    s.group_d_.assign(16, 0);
    std::vector<std::vector<std::uint32_t>> per_proto(kProtoClasses);
    for (std::uint32_t r = 0; r < rules.size(); ++r)
      if (group_[r] == 3)
        for (auto p : protos[r]) per_proto[p].push_back(entry(r, 0));
    for (std::uint32_t p = 0; p < kProtoClasses; ++p)
      if (!per_proto[p].empty()) s.group_d_[p * 2 + 1] = port_table(per_proto[p], p), s.groups_ |= PolicySnapshot::kGroupD;
    return {};
  }

  void build_identity_hash() {
    auto& s = *snap_;
    // Reach mask (snapshot.hpp): which destinations any rule of this source can touch.
    const bool any_to_any = (s.groups_ & PolicySnapshot::kGroupD) != 0;
    auto slot = [&](IdentityId id, std::size_t src, bool declared) {
      std::uint32_t reach = src_a_reach_[src_a_of_[src]];
      if (src_c_of_[src] != 0 || (declared && any_to_any)) reach |= PolicySnapshot::kReachAnywhere;
      if (declared) reach |= PolicySnapshot::kReachDeclared;
      return PolicySnapshot::IdentitySlot{id, src_a_of_[src], src_c_of_[src], reach};
    };
    std::vector<PolicySnapshot::IdentitySlot> slots;
    for (std::uint32_t i = 0; i < nid_; ++i) slots.push_back(slot(policy_.identities[i].id, i, true));
    slots.push_back(slot(kUnauthenticated, nid_, false));
    // Each leaf as an untagged source: its pseudo identity's slot, else unauthenticated's.
    s.untagged_.assign(s.leaves_.size(), slots.back());
    for (std::size_t k = 0; k < pseudo_leaf_.size(); ++k) {
      slots.push_back(slot(kFirstSegmentSourceIdentity + pseudo_leaf_[k], nid_ + 1 + k, false));
      s.untagged_[pseudo_leaf_[k]] = slots.back();
    }
    // At most half full: 2^(32 - shift) slots in buckets of 4, first free slot from the bucket
    // the hash names on (find_identity stops at the first bucket with a free slot).
    s.identity_shift_ = next_pow2_shift(slots.size(), 32) + 2;
    s.identities_.assign(std::size_t{1} << (32 - s.identity_shift_), PolicySnapshot::IdentityBucket{});
    std::size_t mask = s.identities_.size() - 1;
    for (auto& slot : slots) {
      std::size_t b = (slot.id * 0x9E3779B1u) >> s.identity_shift_;
      std::size_t j = 0;
      for (;; b = (b + 1) & mask) {
        auto& ids = s.identities_[b].id;
        j = static_cast<std::size_t>(std::find(std::begin(ids), std::end(ids), 0u) - std::begin(ids));
        if (j < 4) break;
      }
      auto& bk = s.identities_[b];
      bk.id[j] = slot.id, bk.src_a[j] = slot.src_a, bk.src_c[j] = slot.src_c, bk.reach[j] = slot.reach;
    }
  }

  std::expected<void, std::vector<Diagnostic>> build_l7() {
    auto& s = *snap_;
    for (auto r : l7_rules_) {
      const auto& l7 = *policy_.rules[r].l7;
      s.l7_.push_back({l7.methods, !l7.paths.empty(), !l7.deny.empty()});
    }
    auto compile_db = [&](bool deny, hs_database*& db, std::vector<std::uint32_t>& owner,
                          std::vector<std::uint32_t>& local) -> std::optional<Diagnostic> {
      std::vector<const char*> exprs;
      std::vector<unsigned> flags, ids;
      std::vector<SourceLocation> where;
      for (std::uint32_t prog = 0; prog < l7_rules_.size(); ++prog) {
        const auto& l7 = *policy_.rules[l7_rules_[prog]].l7;
        const auto& pats = deny ? l7.deny : l7.paths;
        const auto& wh = deny ? l7.deny_where : l7.paths_where;
        for (std::uint32_t k = 0; k < pats.size(); ++k) {
          ids.push_back(static_cast<unsigned>(exprs.size()));
          exprs.push_back(pats[k].c_str());
          flags.push_back(HS_FLAG_SINGLEMATCH | (deny ? HS_FLAG_DOTALL : 0u));
          owner.push_back(prog);
          local.push_back(k);
          where.push_back(k < wh.size() ? wh[k] : policy_.rules[l7_rules_[prog]].where);
        }
      }
      if (exprs.empty()) return std::nullopt;
      hs_compile_error_t* err = nullptr;
      if (hs_compile_multi(exprs.data(), flags.data(), ids.data(), static_cast<unsigned>(exprs.size()),
                           HS_MODE_BLOCK, nullptr, &db, &err) != HS_SUCCESS) {
        Diagnostic d{err && err->expression >= 0 ? where[err->expression] : where.front(),
                     std::string("pattern does not compile: ") + (err ? err->message : "unknown error")};
        hs_free_compile_error(err);
        return d;
      }
      return std::nullopt;
    };
    std::vector<Diagnostic> diags;
    if (auto d = compile_db(false, s.path_db_, s.path_owner_, s.path_local_)) diags.push_back(*d);
    if (auto d = compile_db(true, s.deny_db_, s.deny_owner_, s.deny_local_)) diags.push_back(*d);
    if (!diags.empty()) return std::unexpected(diags);
    return {};
  }

  void fill_stats() {
    auto& s = *snap_;
    auto& st = s.stats_;
    st.rules = policy_.rules.size();
    st.identities = nid_;
    st.segments = policy_.segments.size();
    st.prefixes = s.leaf_prefix_.size();
    st.source_classes = src_a_.sigs.size() + src_c_.sigs.size() - 2;
    st.destination_classes = dst_a_.sigs.size() + dst_b_.sigs.size() - 2;
    st.port_tables = tables_.size();
    st.combos = stats_combos_;
    st.verdict_entries = s.entries_.size() - 1;
    st.l7_patterns = s.path_owner_.size() + s.deny_owner_.size();
    st.rate_classes = s.rate_classes_.size();
    st.memory_bytes = s.lpm4_.memory_bytes() + s.lpm6_.memory_bytes() +
                      s.identities_.size() * sizeof(PolicySnapshot::IdentityBucket) +
                      s.leaves_.size() * (sizeof(PolicySnapshot::LeafInfo) + sizeof(PolicySnapshot::IdentitySlot)) +
                      s.port_filter_.size() * 8 +
                      s.combos_.size() * sizeof(PolicySnapshot::ComboBucket) +
                      (s.group_b_.size() + s.group_c_.size() + s.group_d_.size() + s.ports_.size()) * 4 +
                      s.entries_.size() * sizeof(VerdictEntry) + s.l7_database_bytes();
  }

  const Policy& policy_;
  CompileOptions opts_;
  std::unique_ptr<PolicySnapshot> snap_;
  std::size_t nid_ = 0, nsrc_ = 0, stats_combos_ = 0;
  std::vector<std::uint8_t> group_;
  std::vector<std::uint32_t> pseudo_leaf_;
  std::vector<std::vector<std::uint32_t>> src_rules_a_, src_rules_c_;
  std::vector<std::vector<std::pair<std::uint32_t, std::uint8_t>>> leaf_rules_;
  std::vector<std::uint16_t> rule_rate_, rule_l7_;
  std::vector<std::uint32_t> l7_rules_;
  ClassTable src_a_, src_c_, dst_a_, dst_b_;
  std::vector<std::uint32_t> src_a_of_, src_c_of_;
  std::vector<std::uint32_t> src_a_reach_;  // per group-A source class: reach bits of its combinations
  std::unordered_map<std::vector<std::uint32_t>, std::uint32_t, VecHash> tables_;
};

std::expected<SnapshotPtr, std::vector<Diagnostic>> compile(const Policy& policy, const CompileOptions& opts) {
  return SnapshotBuilder(policy, opts).build();
}

std::expected<SnapshotPtr, std::vector<Diagnostic>> load_and_compile(const std::filesystem::path& dir,
                                                                     const CompileOptions& opts) {
  auto policy = load_policy(dir);
  if (!policy) return std::unexpected(policy.error());
  return compile(*policy, opts);
}

}  // namespace zt::rules
