// The compiled, immutable policy (DESIGN.md §3). Built once by compile(), shared read-only by
// every worker lcore (published by RCU pointer swap), never modified after construction.
//
// Lookup (classify): key = (source identity, destination address, protocol, destination port).
//   1. source identity → its rule classes and reach mask (bucketed hash, one cache line);
//   2. destination → LPM leaf → destination classes, most specific segment, audit flag;
//   3. reach test: a 32-bit mask of the source against one of the leaf; no common bit means
//      no rule of any group can match (exact, computed at compile time), so the answer is the
//      default deny without touching a port table; then, for TCP and UDP, the leaf's port
//      filter: a 64-bit mask with the bit (port & 63) of every port any rule that can reach
//      the leaf covers with that protocol; bit clear = no rule can match, the default deny again;
//   4. otherwise, per rule group whose reach bit the source and leaf share, (source class,
//      destination class, protocol) → a port table; a binary search in it gives a verdict
//      entry. Verdict entries are numbered in priority order, so the winner is simply the
//      largest entry number over the (at most four) groups.
// Untagged packets: classify_untagged() takes the source address instead of an identity; the
// source leaf holds its untagged identity's slot (compile time), so no identity hash lookup.
// IPv4: classify_v4() / classify_untagged_v4() take host-order numbers and are inline (below);
// steps 1-3 and the verdict happen in the caller, step 4 is one call (lookup_entry).
// See rules/README.md for the design and measurements.
#pragma once

#include <emmintrin.h>

#include <array>
#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "zt/rules/lpm.hpp"
#include "zt/rules/policy.hpp"
#include "zt/rules/types.hpp"

struct hs_database;
struct hs_scratch;

namespace zt::rules {

inline constexpr std::size_t kMaxBurst = 32;

// Per-lcore Hyperscan scratch space. Prepare it with PolicySnapshot::prepare_scratch() on the
// control path (at start-up, and again for every newly published snapshot before workers use
// it: that call grows the scratch if the new databases need more); check_l7 never allocates.
class L7Scratch {
 public:
  L7Scratch() = default;
  L7Scratch(L7Scratch&&) noexcept;
  L7Scratch& operator=(L7Scratch&&) noexcept;
  L7Scratch(const L7Scratch&) = delete;
  L7Scratch& operator=(const L7Scratch&) = delete;
  ~L7Scratch();

 private:
  friend class PolicySnapshot;
  hs_scratch* scratch_ = nullptr;
};

// scan_error: Hyperscan refused the scan (no or wrong scratch, a database error): a deny, since a
// pattern that could not be searched for cannot be ruled out.
enum class L7Outcome : std::uint8_t { allowed, method_not_allowed, path_not_allowed, deny_pattern, scan_error };
std::string_view to_string(L7Outcome o) noexcept;

struct L7Result {
  L7Outcome outcome = L7Outcome::allowed;
  std::uint32_t pattern = 0;  // index into the rule's paths/deny list that decided (deny_pattern)
};

// A verdict entry: one (rule, destination depth) pair, in priority order.
struct VerdictEntry {
  RuleId rule_id = kDefaultRule;
  std::uint32_t rule_index = 0;  // into Policy::rules
  std::uint16_t rate_class = kNoRateClass;
  std::uint16_t l7 = kNoL7;
  std::uint8_t depth = 0;  // prefix length of the destination segment the rule matched through
  bool deny = true;
  bool payload_hdr = false;
};

struct SnapshotStats {
  std::size_t rules = 0, identities = 0, segments = 0, prefixes = 0;
  std::size_t source_classes = 0, destination_classes = 0, port_tables = 0, combos = 0;
  std::size_t verdict_entries = 0, l7_patterns = 0, rate_classes = 0;
  std::size_t memory_bytes = 0;
};

class PolicySnapshot {
 public:
  ~PolicySnapshot();
  PolicySnapshot(const PolicySnapshot&) = delete;
  PolicySnapshot& operator=(const PolicySnapshot&) = delete;

  std::uint64_t revision() const noexcept { return revision_; }
  const std::string& digest() const noexcept { return policy_.digest; }
  const Policy& source() const noexcept { return policy_; }
  SnapshotStats stats() const noexcept { return stats_; }

  // The dataplane lookup. noexcept, no allocation, no locks.
  Verdict classify(const FlowKey& key) const noexcept;
  // Same answers as classify(), for a burst: keys are processed kMaxBurst at a time in stages
  // with prefetch. Returns the number of verdicts written (min(keys.size(), out.size())).
  std::size_t classify_burst(std::span<const FlowKey> keys, std::span<Verdict> out) const noexcept;
  // The lookup without the shortcuts (reach test, port filter, group skipping): every group's
  // port table is consulted for every key. Same answers as classify(), by construction; kept as
  // the reference the differential test holds classify(), classify_burst() and
  // classify_untagged() to. Not for the dataplane.
  Verdict classify_all_groups(const FlowKey& key) const noexcept;
  // For an untagged packet from `src`: the same answer as classify() of `key` with
  // key.src = resolve_untagged(src) (key.src is ignored), and that identity in `identity`,
  // with one identity lookup less (the source leaf carries its untagged identity's classes).
  Verdict classify_untagged(const IpAddress& src, const FlowKey& key, IdentityId& identity) const noexcept;
  // IPv4 entries for the dataplane: the same answers as classify() and classify_untagged() of
  // the IPv4 key, with the addresses in host byte order (v4_host_order() of a header's bytes),
  // so the caller builds no IpAddress or FlowKey. Defined inline below: what a flood gets (the
  // default deny by the reach test or the port filter) is decided in the caller without a
  // call; only a key that passes both calls the group lookup.
  Verdict classify_v4(IdentityId src, std::uint32_t dst, std::uint8_t proto, std::uint16_t dport) const noexcept;
  Verdict classify_untagged_v4(std::uint32_t src, std::uint32_t dst, std::uint8_t proto, std::uint16_t dport,
                               IdentityId& identity) const noexcept;

  // Whether a TCP/UDP IPv4 packet src:sport -> dst:dport can belong to any flow this revision
  // could have admitted, in either direction (rules/README.md "Packets no flow can hold"):
  // false only when no rule of any source covers (dst's leaf, proto, dport) nor (src's leaf,
  // proto, sport) — the port filters of classify step 3 — and neither leaf is in audit mode.
  // Then classify() of that key from any identity, and of its reverse, is a deny: the packet is
  // neither a new flow this policy admits nor a reply of one, so the dataplane need not look
  // for it in the flow table. Other protocols (no port filter): always true. Inline, two LPM
  // lookups and two mask tests.
  bool may_hold_flow_v4(std::uint32_t src, std::uint32_t dst, std::uint8_t proto, std::uint16_t sport,
                        std::uint16_t dport) const noexcept;

  // The identity an untagged packet from `src` carries: the pseudo identity of the most
  // specific segment chain that a rule names as a source, else kUnauthenticated.
  IdentityId resolve_untagged(const IpAddress& src) const noexcept;
  // Whether a tag may claim this id (declared in this policy).
  bool is_declared_identity(IdentityId id) const noexcept;

  // Index of the most specific segment holding `a`, or kNoSegment.
  std::uint32_t segment_of(const IpAddress& a) const noexcept;
  std::span<const RateClass> rate_classes() const noexcept { return rate_classes_; }
  std::span<const VerdictEntry> verdict_entries() const noexcept { return entries_; }

  // L7 for a verdict whose `l7 != kNoL7`: method allow-list, path patterns (one must match the
  // path), deny patterns (none may match `payload`). noexcept; uses only `scratch`.
  L7Result check_l7(const Verdict& v, std::string_view method, std::string_view path,
                    std::span<const std::uint8_t> payload, L7Scratch& scratch) const noexcept;
  // Allocates or grows `scratch` for this snapshot's databases (control path).
  std::expected<void, std::string> prepare_scratch(L7Scratch& scratch) const;
  std::size_t l7_database_bytes() const noexcept;

  // ---- offline helpers (trace, test, diff): slow, allocate, never used by the dataplane ----
  std::optional<IdentityId> identity_by_name(std::string_view name) const;
  std::string identity_name(IdentityId id) const;
  const Rule* rule_by_id(RuleId id) const;
  // Whether rule `index`'s from/to selector matches; for `to`, the matched depth.
  bool rule_matches_source(std::size_t index, IdentityId src) const;
  std::optional<std::uint8_t> rule_matches_destination(std::size_t index, const IpAddress& dst) const;
  // Position of (rule, depth) in priority order, if such an entry exists.
  std::optional<std::uint32_t> entry_of(std::size_t rule_index, std::uint8_t depth) const;
  // All prefixes of the policy in leaf order (for diff enumeration).
  std::span<const IpPrefix> prefixes() const noexcept { return leaf_prefix_; }

 private:
  friend class SnapshotBuilder;
  PolicySnapshot() = default;

  // Port tables with at most this many intervals are stored padded to it and scanned without
  // branches; larger ones are binary searched.
  static constexpr std::uint32_t kSmallPortTable = 8;

  // Reach masks (classify step 3). A key can match a rule only if the source's mask and the
  // leaf's mask share a bit:
  //   kReachAnywhere: source side, the source has a group C row or is declared and group D is
  //                   not empty (rules that reach every destination); set in every leaf;
  //   kReachDeclared: source side, a declared identity (group B needs one, and so does D);
  //                   leaf side, the leaf has group B entries;
  //   bits 2..31:     group A, leaf side the bit of its destination class (class % 30),
  //                   source side the bits of every destination class its source class has a
  //                   combination with. More than 30 classes share bits: a shared bit only
  //                   sends a key down the full lookup, never changes an answer.
  static constexpr std::uint32_t kReachAnywhere = 1, kReachDeclared = 2, kReachClassBits = 30;
  static constexpr std::uint32_t reach_bit_of_class(std::uint32_t dst_a) noexcept {
    return dst_a == 0 ? 0 : std::uint32_t{4} << (dst_a % kReachClassBits);
  }

  // What the lookup knows of a source; all zero for an identity the policy does not know.
  struct IdentitySlot {
    IdentityId id;        // 0 = empty
    std::uint32_t src_a;  // source class in group A (0 = none)
    std::uint32_t src_c;  // source class in group C
    std::uint32_t reach;  // reach mask; bit kReachDeclared = a declared identity
  };
  // Four slots in one cache line, field by field, so one SIMD compare finds the id.
  struct alignas(64) IdentityBucket {
    IdentityId id[4];  // 0 = empty
    std::uint32_t src_a[4], src_c[4], reach[4];
  };
  struct LeafInfo {  // 24 bytes (measured: smaller or line-aligned leaves were slower)
    std::uint32_t dst_a = 0, dst_b = 0;
    std::uint32_t segment = kNoSegment;
    std::uint32_t reach = kReachAnywhere;
    bool audit = false;
    std::uint32_t unused = 0;
  };
  // Group A hash bucket: four (source class, destination class, protocol) keys side by side
  // (one cache line), so two SSE2 compares find the key.
  struct alignas(64) ComboBucket {
    std::uint64_t key[4];  // 0 = empty
    std::uint32_t table[4];
    std::uint32_t pad[4];
  };

  std::uint32_t port_lookup(std::uint32_t table, std::uint16_t port) const noexcept;
  IdentitySlot find_identity(IdentityId id) const noexcept;
  std::uint32_t find_combo(std::uint64_t key) const noexcept;
  Verdict finish(std::uint32_t entry, const LeafInfo& leaf) const noexcept;
  Verdict default_deny(const LeafInfo& leaf) const noexcept;
  template <bool kSkip>
  [[gnu::always_inline]] std::uint32_t lookup_groups(const IdentitySlot& src, const LeafInfo& leaf, std::uint32_t proto,
                              std::uint16_t port) const noexcept;
  // Steps 3-4 for a source already looked up and the destination's leaf: reach test, port
  // filter and the verdict inline. With kCallGroups (the IPv4 entries, inlined into the
  // dataplane) the groups are one call, lookup_entry, which a flood never makes and which returns
  // the winning entry in a register (p = protocol class, kProtoClass; port 0 for protocols
  // without ports); without (classify, classify_untagged: already a call) they are inline.
  template <bool kCallGroups>
  Verdict decide(const IdentitySlot& src, std::uint32_t leaf, std::uint8_t proto, std::uint16_t dport) const noexcept;
  [[gnu::noinline]] std::uint32_t lookup_entry(IdentitySlot src, const LeafInfo& leaf, std::uint32_t p,
                                               std::uint16_t port) const noexcept;
  // Protocol → class of the per-protocol tables: TCP 0, UDP 1 (the two with ports and port
  // filters), ICMP 2, ICMPv6 3, anything else 4.
  static constexpr std::array<std::uint8_t, 256> kProtoClass = [] {
    std::array<std::uint8_t, 256> t{};
    t.fill(4);
    t[kProtoTcp] = 0;
    t[kProtoUdp] = 1;
    t[kProtoIcmp] = 2;
    t[kProtoIcmpv6] = 3;
    return t;
  }();
  std::uint32_t leaf_of(const IpAddress& a) const noexcept { return a.v6 ? lpm6_.lookup(a) : lpm4_.lookup(a); }

  std::uint64_t revision_ = 0;
  Policy policy_;
  SnapshotStats stats_;

  // classifier
  std::vector<IdentityBucket> identities_;  // power-of-two count, bucketed open addressing
  std::uint32_t identity_shift_ = 32;        // bucket = (id * 0x9E3779B1) >> shift
  Lpm lpm4_, lpm6_;
  std::vector<LeafInfo> leaves_;  // [0] = outside every segment
  // Port filters (classify step 3), read only when the reach test passes: [leaf * 2 + p] for
  // p = TCP, UDP, bit (port & 63) set when some rule of any group that can reach the leaf covers
  // that port with that protocol (all ones for a rule without ports or with a range of 64 or
  // more). Port-less protocols are not filtered.
  std::vector<std::uint64_t> port_filter_;
  // Per leaf, as a source: the identity untagged packets from it carry (a segment-source pseudo
  // identity, else kUnauthenticated) with its classes and reach, as find_identity would give.
  std::vector<IdentitySlot> untagged_;
  std::vector<ComboBucket> combos_;  // group A hash
  std::uint32_t combo_shift_ = 64;   // bucket = (key * 0x9E3779B97F4A7C15) >> shift
  std::vector<std::uint32_t> group_b_;  // [(dst_b * 8 + proto) * 2 + declared]
  std::vector<std::uint32_t> group_c_;  // [src_c * 8 + proto]
  std::vector<std::uint32_t> group_d_;  // [proto * 2 + declared]
  static constexpr std::uint8_t kGroupA = 1, kGroupB = 2, kGroupC = 4, kGroupD = 8;
  std::uint8_t groups_ = 0;  // groups with at least one port table
  std::vector<std::uint32_t> ports_;    // port tables: n, starts, entries (see port_lookup); 0 = none
  std::vector<VerdictEntry> entries_;   // [0] = default deny
  std::vector<RateClass> rate_classes_;
  bool audit_outside_ = false;

  // offline helpers
  std::vector<IpPrefix> leaf_prefix_;
  std::vector<std::vector<std::pair<std::uint32_t, std::uint8_t>>> leaf_chain_;  // (segment, len)
  std::vector<std::pair<std::uint64_t, std::uint32_t>> entry_index_;  // ((rule<<8)|depth) → entry

  // L7
  struct L7Program {
    std::vector<std::string> methods;
    bool has_paths = false, has_deny = false;
  };
  std::vector<L7Program> l7_;
  std::vector<std::uint32_t> path_owner_, deny_owner_;  // pattern id → l7 program
  std::vector<std::uint32_t> path_local_, deny_local_;  // pattern id → index within the rule
  hs_database* path_db_ = nullptr;
  hs_database* deny_db_ = nullptr;
};

// ---- the inline part of the lookup (classify_v4 and classify_untagged_v4 are the dataplane's) ----

// Identity hash: bucketed, an entry lives in the 4-slot bucket its hash names, or (when that
// bucket was full at insertion) in a later one. A bucket with a free slot ends the search, so
// the common case checks one bucket; the four ids sit side by side: one SSE2 compare finds the
// id (or a free slot).
[[gnu::always_inline]] inline PolicySnapshot::IdentitySlot PolicySnapshot::find_identity(IdentityId id) const noexcept {
  const std::size_t mask = identities_.size() - 1;
  std::size_t b = (id * 0x9E3779B1u) >> identity_shift_;
  const __m128i want = _mm_set1_epi32(static_cast<int>(id));
  for (;;) {
    const IdentityBucket& bk = identities_[b];
    const __m128i ids = _mm_load_si128(reinterpret_cast<const __m128i*>(bk.id));
    const int hit = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(ids, want)));
    const int open = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(ids, _mm_setzero_si128())));
    if (hit != 0 && id != 0) [[likely]] {
      const int j = __builtin_ctz(static_cast<unsigned>(hit));
      return {id, bk.src_a[j], bk.src_c[j], bk.reach[j]};
    }
    if (open != 0) return {0, 0, 0, 0};
    b = (b + 1) & mask;
  }
}

// The verdict of entry `e` (0 = no rule: the default deny) towards `leaf`.
[[gnu::always_inline]] inline Verdict PolicySnapshot::finish(std::uint32_t e, const LeafInfo& leaf) const noexcept {
  const VerdictEntry& entry = entries_[e];
  Verdict v;
  v.revision = revision_;
  v.rule_id = entry.rule_id;
  v.segment = leaf.segment;
  if (entry.deny) {  // entry 0 (no rule) is a deny too
    v.disposition = leaf.audit ? Disposition::audit : Disposition::deny;
    v.reason = e == 0 ? DropReason::policy_default_deny : DropReason::policy_deny;
  } else {
    v.disposition = Disposition::allow;
    v.rate_class = entry.rate_class;
    v.l7 = entry.l7;
    v.payload_hdr = entry.payload_hdr;
  }
  return v;
}

// No rule can match (classify step 3): entry 0 with the leaf's segment and mode, exactly what
// finish(0, leaf) gives, without loading the entry.
[[gnu::always_inline]] inline Verdict PolicySnapshot::default_deny(const LeafInfo& leaf) const noexcept {
  Verdict v;
  v.revision = revision_;
  v.segment = leaf.segment;
  v.disposition = leaf.audit ? Disposition::audit : Disposition::deny;
  v.reason = DropReason::policy_default_deny;
  return v;
}

template <bool kCallGroups>
[[gnu::always_inline]] inline Verdict PolicySnapshot::decide(const IdentitySlot& src, std::uint32_t l,
                                                             std::uint8_t proto, std::uint16_t dport) const noexcept {
  const LeafInfo& leaf = leaves_[l];
  // Reach test: a source with no rule towards anything in this leaf is denied here (floods of
  // untagged or unknown sources to protected destinations end at this line).
  if ((src.reach & leaf.reach) == 0) return default_deny(leaf);
  const std::uint32_t p = kProtoClass[proto];
  std::uint16_t port = 0;
  if (p < 2) {
    // Port filter: no rule towards this leaf names this port with this protocol (floods of
    // sources that have rules here, to closed ports, end at this line).
    if (((port_filter_[l * 2 + p] >> (dport & 63)) & 1) == 0) return default_deny(leaf);
    port = dport;
  }
  if constexpr (kCallGroups)
    return finish(lookup_entry(src, leaf, p, port), leaf);
  else
    return finish(lookup_groups<true>(src, leaf, p, port), leaf);
}

[[gnu::always_inline]] inline Verdict PolicySnapshot::classify_v4(IdentityId src, std::uint32_t dst,
                                                                  std::uint8_t proto,
                                                                  std::uint16_t dport) const noexcept {
  return decide<true>(find_identity(src), lpm4_.lookup_v4(dst), proto, dport);
}

[[gnu::always_inline]] inline Verdict PolicySnapshot::classify_untagged_v4(std::uint32_t src, std::uint32_t dst,
                                                                           std::uint8_t proto, std::uint16_t dport,
                                                                           IdentityId& identity) const noexcept {
  const IdentitySlot s = untagged_[lpm4_.lookup_v4(src)];
  identity = s.id;
  return decide<true>(s, lpm4_.lookup_v4(dst), proto, dport);
}

[[gnu::always_inline]] inline bool PolicySnapshot::may_hold_flow_v4(std::uint32_t src, std::uint32_t dst,
                                                                     std::uint8_t proto, std::uint16_t sport,
                                                                     std::uint16_t dport) const noexcept {
  const std::uint32_t p = kProtoClass[proto];
  if (p >= 2) return true;
  const std::uint32_t ls = lpm4_.lookup_v4(src), ld = lpm4_.lookup_v4(dst);
  const bool fwd = ((port_filter_[ld * 2 + p] >> (dport & 63)) & 1) != 0;
  const bool rev = ((port_filter_[ls * 2 + p] >> (sport & 63)) & 1) != 0;
  return fwd | rev | leaves_[ld].audit | leaves_[ls].audit;
}

}  // namespace zt::rules
