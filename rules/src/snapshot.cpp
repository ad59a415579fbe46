// The lookup side of PolicySnapshot: classify (the dataplane's call), L7 and offline helpers.
#include <hs/hs.h>
#include <immintrin.h>

#include <algorithm>
#include <array>

#include "zt/rules/snapshot.hpp"

namespace zt::rules {

PolicySnapshot::~PolicySnapshot() {
  hs_free_database(path_db_);
  hs_free_database(deny_db_);
}

// The group-A hash is bucketed like the identity hash (snapshot.hpp, find_identity): four keys
// side by side per cache line, a bucket with a free slot ends the search.
[[gnu::always_inline]] inline std::uint32_t PolicySnapshot::find_combo(std::uint64_t key) const noexcept {
  std::size_t mask = combos_.size() - 1;
  std::size_t b = static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ull) >> combo_shift_);
  const __m128i want = _mm_set1_epi64x(static_cast<long long>(key)), zero = _mm_setzero_si128();
  // 64-bit equality in SSE2 (this library is built for the x86-64 baseline): both 32-bit halves.
  auto eq64 = [](__m128i a, __m128i b) {
    const __m128i e = _mm_cmpeq_epi32(a, b);
    return _mm_movemask_pd(_mm_castsi128_pd(_mm_and_si128(e, _mm_shuffle_epi32(e, _MM_SHUFFLE(2, 3, 0, 1)))));
  };
  for (;;) {
    const ComboBucket& bk = combos_[b];
    const __m128i k01 = _mm_load_si128(reinterpret_cast<const __m128i*>(bk.key));
    const __m128i k23 = _mm_load_si128(reinterpret_cast<const __m128i*>(bk.key + 2));
    const int hit = eq64(k01, want) | (eq64(k23, want) << 2);
    // A hit on key 0 (no group-A class) lands on an empty slot, whose table is 0: no rule.
    if (hit != 0) [[likely]]
      return bk.table[__builtin_ctz(static_cast<unsigned>(hit))];
    if ((eq64(k01, zero) | eq64(k23, zero)) != 0) return 0;
    b = (b + 1) & mask;
  }
}

[[gnu::always_inline]] inline std::uint32_t PolicySnapshot::port_lookup(std::uint32_t table,
                                                                        std::uint16_t port) const noexcept {
  const std::uint32_t* t = ports_.data() + table;
  std::uint32_t n = t[0];
  const std::uint32_t* starts = t + 1;
  if (n <= kSmallPortTable) [[likely]] {
    // Fixed width, padded with starts past 65535: count the starts <= port, no branches. Two
    // SSE2 compares of four starts each (starts and port fit in 17 bits, so signed is safe);
    // starts ascend, so the starts above `port` are the top bits of the mask and the count is
    // the number of trailing zero bits.
    static_assert(kSmallPortTable == 8);
    const __m128i p = _mm_set1_epi32(port);
    const int above = _mm_movemask_ps(_mm_castsi128_ps(
                          _mm_cmpgt_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(starts)), p))) |
                      (_mm_movemask_ps(_mm_castsi128_ps(
                           _mm_cmpgt_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(starts + 4)), p)))
                       << 4);
    const auto count = static_cast<std::uint32_t>(__builtin_ctz(static_cast<unsigned>(above) | 0x100u));
    return starts[kSmallPortTable + count - 1];
  }
  std::uint32_t lo = 0;
  while (n > 1) {  // largest i with starts[i] <= port
    std::uint32_t half = n / 2;
    lo = starts[lo + half] <= port ? lo + half : lo;
    n -= half;
  }
  return starts[t[0] + lo];
}

// The winning entry over the groups (0 = none). With kSkip (classify), a group is consulted
// only when the source and leaf share its reach bit: group A a destination-class bit, group B
// kReachDeclared, groups C and D kReachAnywhere; a group without it answers entry 0 anyway
// (exact, snapshot.hpp). Without (classify_all_groups, the reference) every group is read:
// class 0 rows and a missing combination lead to port table 0, which answers entry 0.
// Groups empty in the whole policy are skipped either way (the same branch for every key).
template <bool kSkip>
[[gnu::always_inline]] inline std::uint32_t PolicySnapshot::lookup_groups(const IdentitySlot& s, const LeafInfo& leaf,
                                                                         std::uint32_t p,
                                                                         std::uint16_t port) const noexcept {
  const std::uint32_t declared = (s.reach & kReachDeclared) >> 1;
  const std::uint32_t common = kSkip ? s.reach & leaf.reach : ~0u;
  std::uint32_t best = 0;
  if ((groups_ & kGroupA) && (common & ~(kReachAnywhere | kReachDeclared)) != 0)
    best = port_lookup(find_combo((std::uint64_t{s.src_a} << 32) | (std::uint64_t{leaf.dst_a} << 3) | p), port);
  if ((groups_ & kGroupB) && (common & kReachDeclared) != 0)
    best = std::max(best, port_lookup(group_b_[(leaf.dst_b * 8 + p) * 2 + declared], port));
  if ((common & kReachAnywhere) != 0) {
    if (groups_ & kGroupC) best = std::max(best, port_lookup(group_c_[s.src_c * 8 + p], port));
    if (groups_ & kGroupD) best = std::max(best, port_lookup(group_d_[p * 2 + declared], port));
  }
  return best;
}

// Step 4, for a key that passed the reach test and the port filter (decide, snapshot.hpp).
std::uint32_t PolicySnapshot::lookup_entry(IdentitySlot src, const LeafInfo& leaf, std::uint32_t p,
                                           std::uint16_t port) const noexcept {
  return lookup_groups<true>(src, leaf, p, port);
}

Verdict PolicySnapshot::classify(const FlowKey& k) const noexcept {
  return decide<false>(find_identity(k.src), leaf_of(k.dst), k.proto, k.dport);
}

Verdict PolicySnapshot::classify_untagged(const IpAddress& src, const FlowKey& k, IdentityId& identity) const noexcept {
  const IdentitySlot s = untagged_[leaf_of(src)];
  identity = s.id;
  return decide<false>(s, leaf_of(k.dst), k.proto, k.dport);
}

Verdict PolicySnapshot::classify_all_groups(const FlowKey& k) const noexcept {
  const IdentitySlot src = find_identity(k.src);
  const LeafInfo& leaf = leaves_[leaf_of(k.dst)];
  std::uint32_t p = kProtoClass[k.proto];
  auto port = static_cast<std::uint16_t>(p < 2 ? k.dport : 0);
  return finish(lookup_groups<false>(src, leaf, p, port), leaf);
}

std::size_t PolicySnapshot::classify_burst(std::span<const FlowKey> keys, std::span<Verdict> out) const noexcept {
  std::size_t n = std::min(keys.size(), out.size());
  // Software pipeline over the burst: each stage issues the independent loads of every key
  // (prefetch) before the next stage consumes them, so cache misses of different keys overlap
  // instead of each key walking its dependent chain alone. Measured against a plain per-key
  // loop in rules/README.md. Keys that fail the reach test skip the combination and port stages.
  std::uint32_t src_c[kMaxBurst], declared[kMaxBurst], leaf[kMaxBurst], proto[kMaxBurst], table[kMaxBurst];
  std::uint64_t combo[kMaxBurst];
  std::uint16_t port[kMaxBurst];
  bool reached[kMaxBurst];
  for (std::size_t base = 0; base < n; base += kMaxBurst) {
    std::size_t m = std::min(kMaxBurst, n - base);
    const FlowKey* k = keys.data() + base;
    for (std::size_t i = 0; i < m; ++i) {
      __builtin_prefetch(&identities_[(k[i].src * 0x9E3779B1u) >> identity_shift_]);
      __builtin_prefetch(k[i].dst.v6 ? lpm6_.root_slot(k[i].dst) : lpm4_.root_slot(k[i].dst));
    }
    for (std::size_t i = 0; i < m; ++i) {
      leaf[i] = k[i].dst.v6 ? lpm6_.lookup(k[i].dst) : lpm4_.lookup(k[i].dst);
      __builtin_prefetch(&leaves_[leaf[i]]);
    }
    for (std::size_t i = 0; i < m; ++i) {
      const IdentitySlot s = find_identity(k[i].src);
      const LeafInfo& l = leaves_[leaf[i]];
      proto[i] = kProtoClass[k[i].proto];
      port[i] = static_cast<std::uint16_t>(proto[i] < 2 ? k[i].dport : 0);
      reached[i] = (s.reach & l.reach) != 0 &&
                   (proto[i] >= 2 || ((port_filter_[leaf[i] * 2 + proto[i]] >> (port[i] & 63)) & 1) != 0);
      if (!reached[i]) continue;
      std::uint32_t src_a = s.src_a;
      src_c[i] = s.src_c;
      declared[i] = (s.reach & kReachDeclared) >> 1;
      combo[i] = (std::uint64_t{src_a} << 32) | (std::uint64_t{l.dst_a} << 3) | proto[i];
      __builtin_prefetch(&combos_[static_cast<std::size_t>((combo[i] * 0x9E3779B97F4A7C15ull) >> combo_shift_)]);
    }
    for (std::size_t i = 0; i < m; ++i) {
      if (!reached[i]) continue;
      table[i] = find_combo(combo[i]);
      __builtin_prefetch(&ports_[table[i]]);
    }
    for (std::size_t i = 0; i < m; ++i) {
      const LeafInfo& l = leaves_[leaf[i]];
      if (!reached[i]) {
        out[base + i] = default_deny(l);
        continue;
      }
      std::uint32_t b = port_lookup(table[i], port[i]);
      if (groups_ & kGroupB) b = std::max(b, port_lookup(group_b_[(l.dst_b * 8 + proto[i]) * 2 + declared[i]], port[i]));
      if (groups_ & kGroupC) b = std::max(b, port_lookup(group_c_[src_c[i] * 8 + proto[i]], port[i]));
      if (groups_ & kGroupD) b = std::max(b, port_lookup(group_d_[proto[i] * 2 + declared[i]], port[i]));
      out[base + i] = finish(b, l);
    }
  }
  return n;
}

IdentityId PolicySnapshot::resolve_untagged(const IpAddress& src) const noexcept {
  return untagged_[leaf_of(src)].id;
}

bool PolicySnapshot::is_declared_identity(IdentityId id) const noexcept {
  return (find_identity(id).reach & kReachDeclared) != 0;
}

std::uint32_t PolicySnapshot::segment_of(const IpAddress& a) const noexcept {
  return leaves_[a.v6 ? lpm6_.lookup(a) : lpm4_.lookup(a)].segment;
}

// ---- L7 ---------------------------------------------------------------------------------------

L7Scratch::L7Scratch(L7Scratch&& o) noexcept : scratch_(std::exchange(o.scratch_, nullptr)) {}
L7Scratch& L7Scratch::operator=(L7Scratch&& o) noexcept {
  if (this != &o) {
    hs_free_scratch(scratch_);
    scratch_ = std::exchange(o.scratch_, nullptr);
  }
  return *this;
}
L7Scratch::~L7Scratch() { hs_free_scratch(scratch_); }

std::string_view to_string(L7Outcome o) noexcept {
  switch (o) {
    case L7Outcome::allowed: return "allowed";
    case L7Outcome::method_not_allowed: return "method not allowed";
    case L7Outcome::path_not_allowed: return "path matches no allowed pattern";
    case L7Outcome::deny_pattern: return "payload matches a deny pattern";
    case L7Outcome::scan_error: return "pattern scan failed (denied: fail closed)";
  }
  return "invalid";
}

std::expected<void, std::string> PolicySnapshot::prepare_scratch(L7Scratch& scratch) const {
  for (auto* db : {path_db_, deny_db_}) {
    if (!db) continue;
    if (hs_alloc_scratch(db, &scratch.scratch_) != HS_SUCCESS)
      return std::unexpected(std::string("cannot allocate Hyperscan scratch space"));
  }
  return {};
}

std::size_t PolicySnapshot::l7_database_bytes() const noexcept {
  std::size_t total = 0;
  for (auto* db : {path_db_, deny_db_}) {
    std::size_t sz = 0;
    if (db && hs_database_size(db, &sz) == HS_SUCCESS) total += sz;
  }
  return total;
}

namespace {
struct ScanContext {
  const std::vector<std::uint32_t>* owner;
  const std::vector<std::uint32_t>* local;
  std::uint32_t program;
  bool hit = false;
  std::uint32_t pattern = 0;
};
int on_match(unsigned id, unsigned long long, unsigned long long, unsigned, void* ctx) {
  auto* c = static_cast<ScanContext*>(ctx);
  if ((*c->owner)[id] != c->program) return 0;
  c->hit = true;
  c->pattern = (*c->local)[id];
  return 1;  // stop: one match decides
}
}  // namespace

L7Result PolicySnapshot::check_l7(const Verdict& v, std::string_view method, std::string_view path,
                                  std::span<const std::uint8_t> payload, L7Scratch& scratch) const noexcept {
  if (v.l7 == kNoL7 || v.l7 >= l7_.size()) return {};
  const auto& prog = l7_[v.l7];
  if (!prog.methods.empty() && std::find(prog.methods.begin(), prog.methods.end(), method) == prog.methods.end())
    return {L7Outcome::method_not_allowed, 0};
  if (prog.has_paths) {
    ScanContext c{&path_owner_, &path_local_, v.l7};
    const hs_error_t e =
        hs_scan(path_db_, path.data(), static_cast<unsigned>(path.size()), 0, scratch.scratch_, on_match, &c);
    if (e != HS_SUCCESS && e != HS_SCAN_TERMINATED) return {L7Outcome::scan_error, 0};
    if (!c.hit) return {L7Outcome::path_not_allowed, 0};
  }
  if (prog.has_deny) {
    ScanContext c{&deny_owner_, &deny_local_, v.l7};
    const hs_error_t e = hs_scan(deny_db_, reinterpret_cast<const char*>(payload.data()),
                                 static_cast<unsigned>(payload.size()), 0, scratch.scratch_, on_match, &c);
    if (e != HS_SUCCESS && e != HS_SCAN_TERMINATED) return {L7Outcome::scan_error, 0};
    if (c.hit) return {L7Outcome::deny_pattern, c.pattern};
  }
  return {};
}

// ---- offline helpers ------------------------------------------------------------------------

std::optional<IdentityId> PolicySnapshot::identity_by_name(std::string_view name) const {
  if (name == "unauthenticated") return kUnauthenticated;
  for (auto& i : policy_.identities)
    if (i.name == name) return i.id;
  return std::nullopt;
}

std::string PolicySnapshot::identity_name(IdentityId id) const {
  if (id == kUnauthenticated) return "unauthenticated";
  if (is_segment_source_identity(id)) {
    std::uint32_t leaf = id - kFirstSegmentSourceIdentity;
    if (leaf < leaf_prefix_.size() + 1 && leaf > 0)
      return "untagged from " + to_string(leaf_prefix_[leaf - 1]) + " (segment " +
             policy_.segments[leaves_[leaf].segment].name + ")";
  }
  for (auto& i : policy_.identities)
    if (i.id == id) return i.name;
  return "unknown identity " + std::to_string(id);
}

const Rule* PolicySnapshot::rule_by_id(RuleId id) const {
  for (auto& r : policy_.rules)
    if (r.id == id) return &r;
  return nullptr;
}

bool PolicySnapshot::rule_matches_source(std::size_t index, IdentityId src) const {
  const auto& sel = policy_.rules[index].from;
  if (sel.any) return is_declared_identity(src);
  for (auto& name : sel.identities)
    if (identity_by_name(name) == src) return true;
  if (is_segment_source_identity(src)) {
    std::uint32_t leaf = src - kFirstSegmentSourceIdentity;
    if (leaf < leaf_chain_.size())
      for (auto [seg, len] : leaf_chain_[leaf])
        if (std::find(sel.segments.begin(), sel.segments.end(), policy_.segments[seg].name) != sel.segments.end())
          return true;
  }
  if (sel.labels)
    for (auto& i : policy_.identities)
      if (i.id == src &&
          std::all_of(sel.labels->begin(), sel.labels->end(), [&](auto& kv) {
            auto it = i.labels.find(kv.first);
            return it != i.labels.end() && it->second == kv.second;
          }))
        return true;
  return false;
}

std::optional<std::uint8_t> PolicySnapshot::rule_matches_destination(std::size_t index, const IpAddress& dst) const {
  const auto& sel = policy_.rules[index].to;
  if (sel.any) return 0;
  auto leaf = dst.v6 ? lpm6_.lookup(dst) : lpm4_.lookup(dst);
  std::optional<std::uint8_t> depth;
  for (auto [seg, len] : leaf_chain_[leaf]) {
    const auto& s = policy_.segments[seg];
    bool hit = std::find(sel.segments.begin(), sel.segments.end(), s.name) != sel.segments.end();
    if (!hit && sel.labels)
      hit = std::all_of(sel.labels->begin(), sel.labels->end(), [&](auto& kv) {
        auto it = s.labels.find(kv.first);
        return it != s.labels.end() && it->second == kv.second;
      });
    if (hit) depth = std::max<std::uint8_t>(depth.value_or(0), len);
  }
  return depth;
}

std::optional<std::uint32_t> PolicySnapshot::entry_of(std::size_t rule_index, std::uint8_t depth) const {
  auto k = (std::uint64_t{rule_index} << 8) | depth;
  auto it = std::lower_bound(entry_index_.begin(), entry_index_.end(), std::pair{k, 0u});
  if (it == entry_index_.end() || it->first != k) return std::nullopt;
  return it->second;
}

}  // namespace zt::rules
