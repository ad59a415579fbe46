// Per-lcore flow table (DESIGN.md §4): one writer, no locks, fixed capacity set at start.
//
// A flow is keyed canonically — the (address, port) pair that sorts lower first — so a packet
// and its reply find the same entry; the entry remembers which side opened the flow.
// Layout: a bucket array of 64-byte lines, 8 slots each (16-bit signature + 32-bit entry index),
// and an entry array. Every key has two candidate buckets (the second derived from the first and
// the signature), so a lookup touches at most two bucket lines and, on a signature match, one
// entry. bulk lookups prefetch both stages for a whole burst before comparing anything.
// Aging is incremental: each call inspects a bounded number of buckets, so it never stalls a burst.
// The bucket hash is keyed with a per-table random secret (NH universal hash): an attacker who
// knows this code still cannot choose keys that share buckets.
#pragma once

#include <smmintrin.h>

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <expected>
#include <memory>
#include <span>
#include <string>
#include <type_traits>

#include "zt/dataplane/parser.hpp"

namespace zt::dp {

// 40 bytes: both endpoints, lower (address, port) first, plus protocol and family.
struct alignas(8) FlowKey {
  std::array<std::uint8_t, 16> addr_lo{};
  std::array<std::uint8_t, 16> addr_hi{};
  std::uint16_t port_lo = 0;
  std::uint16_t port_hi = 0;
  std::uint8_t proto = 0;
  std::uint8_t version = 0;
  std::uint16_t zone = 0;  // reserved for VLAN/segment scoping; 0 today
  // Three vector compares instead of a memcmp call (the key has no padding: every byte counts).
  friend bool operator==(const FlowKey& a, const FlowKey& b) noexcept {
    const auto* x = reinterpret_cast<const std::uint8_t*>(&a);
    const auto* y = reinterpret_cast<const std::uint8_t*>(&b);
    const __m128i d0 = _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x)),
                                     _mm_loadu_si128(reinterpret_cast<const __m128i*>(y)));
    const __m128i d1 = _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + 16)),
                                     _mm_loadu_si128(reinterpret_cast<const __m128i*>(y + 16)));
    std::uint64_t t0, t1;
    std::memcpy(&t0, x + 32, 8);
    std::memcpy(&t1, y + 32, 8);
    return _mm_testz_si128(_mm_or_si128(d0, d1), _mm_or_si128(d0, d1)) && t0 == t1;
  }
};
static_assert(sizeof(FlowKey) == 40);
static_assert(std::has_unique_object_representations_v<FlowKey>, "operator== compares raw bytes");

// Direction of a packet relative to the key: lo→hi or hi→lo.
enum class KeyDir : std::uint8_t { lo_to_hi = 0, hi_to_lo = 1 };

// Builds the canonical key of a parsed IP layer into `k` (every byte written, so `k` may be
// uninitialised storage) and says which way the packet goes. The lower (address, port) pair is
// the one whose address is smaller byte by byte (memcmp order), ports breaking a tie. ICMP has
// no ports (type/code are not ports): both are 0 in its key. Straight-line code: two 128-bit
// compares and conditional moves, no memcmp call, no branch on the packet's direction.
inline void make_flow_key_into(const IpLayer& l, FlowKey& k, KeyDir& dir) noexcept {
  __extension__ using U128 = unsigned __int128;
  std::uint64_t s[2], d[2];
  std::memcpy(s, l.src.b.data(), 16);
  std::memcpy(d, l.dst.b.data(), 16);
  // The addresses as big-endian 128-bit numbers compare as memcmp compares their bytes.
  const U128 sv = (U128{__builtin_bswap64(s[0])} << 64) | __builtin_bswap64(s[1]);
  const U128 dv = (U128{__builtin_bswap64(d[0])} << 64) | __builtin_bswap64(d[1]);
  const bool icmp = l.proto == 1 || l.proto == 58;
  const std::uint64_t sp = icmp ? 0U : l.sport, dp = icmp ? 0U : l.dport;
  const bool src_is_lo = (sv < dv) | ((sv == dv) & (sp <= dp));
  const std::uint64_t lo0 = src_is_lo ? s[0] : d[0], lo1 = src_is_lo ? s[1] : d[1];
  const std::uint64_t hi0 = src_is_lo ? d[0] : s[0], hi1 = src_is_lo ? d[1] : s[1];
  // The key's last 8 bytes as one little-endian word: port_lo, port_hi, proto, version, zone 0.
  const std::uint64_t tail = (src_is_lo ? sp | dp << 16 : dp | sp << 16) |
                             std::uint64_t{l.proto} << 32 | std::uint64_t{l.version} << 40;
  static_assert(offsetof(FlowKey, port_lo) == 32 && offsetof(FlowKey, proto) == 36 &&
                offsetof(FlowKey, version) == 37 && offsetof(FlowKey, zone) == 38);
  static_assert(std::endian::native == std::endian::little);
  auto* out = reinterpret_cast<std::uint8_t*>(&k);
  std::memcpy(out, &lo0, 8);
  std::memcpy(out + 8, &lo1, 8);
  std::memcpy(out + 16, &hi0, 8);
  std::memcpy(out + 24, &hi1, 8);
  std::memcpy(out + 32, &tail, 8);
  dir = src_is_lo ? KeyDir::lo_to_hi : KeyDir::hi_to_lo;
}

inline FlowKey make_flow_key(const IpLayer& l, KeyDir& dir) noexcept {
  FlowKey k;
  make_flow_key_into(l, k, dir);
  return k;
}

enum class TcpState : std::uint8_t {
  none = 0,      // not TCP
  syn_sent,      // initiator's SYN seen
  syn_received,  // responder's SYN-ACK seen
  established,   // initiator ACKed the SYN-ACK (or mid-stream pickup)
  fin_wait,      // one side sent FIN
  closing,       // both sides sent FIN
  closed,        // RST seen
};

std::string_view to_string(TcpState s) noexcept;

struct FlowEntry {
  FlowKey key;
  std::uint64_t last_seen = 0;     // caller's clock (ticks)
  std::uint64_t packets[2] = {};   // by KeyDir
  std::uint64_t bytes[2] = {};
  std::uint32_t identity = 0;      // the source identity that opened the flow
  std::uint32_t rule_id = 0;       // the rule that admitted it
  std::uint32_t revision = 0;      // the policy revision that admitted it
  KeyDir initiator = KeyDir::lo_to_hi;
  TcpState tcp = TcpState::none;
  std::uint8_t flags = 0;          // pipeline-owned bits
  std::uint8_t fin_seen = 0;       // bit per KeyDir
};

struct FlowTimeouts {  // in caller ticks
  std::uint64_t tcp_syn = 0;
  std::uint64_t tcp_established = 0;
  std::uint64_t tcp_closing = 0;
  std::uint64_t udp = 0;
  std::uint64_t icmp = 0;
  std::uint64_t other = 0;
};

// Timeouts in seconds (what operators configure), converted with `ticks_per_second`.
FlowTimeouts make_timeouts(std::uint64_t ticks_per_second, double tcp_syn = 20,
                           double tcp_established = 1800, double tcp_closing = 10,
                           double udp = 60, double icmp = 30, double other = 60);

struct FlowTableConfig {
  std::uint32_t capacity = 1 << 20;          // flows this lcore can hold
  std::uint32_t per_identity_quota = 0;      // flows one identity may hold here; 0: no quota
  FlowTimeouts timeouts;
};

enum class InsertResult : std::uint8_t { inserted, exists, table_full, quota_exceeded };

// What a TCP packet does to a flow.
enum class TcpVerdict : std::uint8_t { ok, invalid };

// FlowTable::age's optional hook, called for each unexpired flow of another revision than the
// one aging runs under: it decides the flow again under that revision and either restamps it
// (sets its revision: the flow stays, and counts as of that revision for all_flows_at) or
// answers true, and the flow is erased (revoked). So after one round under a new revision no
// flow of an older one is left, idle or not. Called by the owner, outside any burst.
// `budget`: a call of age() stops at the first bucket boundary after that many hook calls (0:
// no bound), so one call's work after a policy change stays short (a re-decision is a whole
// classify, several cache misses); the next call goes on from there.
struct StaleFlowHook {
  bool (*fn)(void* ctx, FlowEntry& e) noexcept = nullptr;  // true: erase it
  void* ctx = nullptr;
  unsigned budget = 0;
};

class FlowTable {
 public:
  static std::expected<std::unique_ptr<FlowTable>, std::string> create(const FlowTableConfig& cfg);
  ~FlowTable();
  FlowTable(const FlowTable&) = delete;
  FlowTable& operator=(const FlowTable&) = delete;

  // Looks up n keys (n <= 64); out[i] is the entry or nullptr. Prefetches both stages first.
  void lookup_bulk(const FlowKey* keys, unsigned n, FlowEntry** out) noexcept;
  // The table's keyed hash of `key` (bucket from the high half, signature from bits 8-23). Two
  // tables hash the same key differently: the key is drawn at random by create(). For tests.
  std::uint64_t hash_of(const FlowKey& key) const noexcept;
  FlowEntry* lookup(const FlowKey& key) noexcept;

  // Inserts a new flow; on success `*entry` points at it (zeroed but for key, identity,
  // initiator and last_seen). A full table first tries to reclaim an expired entry in the key's
  // buckets; it never evicts a live flow.
  InsertResult insert(const FlowKey& key, KeyDir initiator, std::uint32_t identity,
                      std::uint64_t now, FlowEntry** entry) noexcept;
  void erase(FlowEntry* e) noexcept;

  // Ages up to `buckets` buckets from a rotating cursor; returns how many flows expired.
  // `revision`: the policy revision the owner runs under (low 32 bits, as FlowEntry::revision),
  // or kUnknownRevision. A full round of the cursor that started under revision R, saw only
  // flows of R and was given R throughout makes all_flows_at(R) true (see there).
  static constexpr std::uint64_t kUnknownRevision = ~std::uint64_t{0};
  // `stale` (optional, with a known revision): see StaleFlowHook.
  unsigned age(std::uint64_t now, unsigned buckets, std::uint64_t revision = kUnknownRevision,
               StaleFlowHook stale = StaleFlowHook{}) noexcept;
  // Every flow in the table was admitted or last re-decided under `revision` (low 32 bits): a
  // whole aging round under it found nothing else, and flows entered since carry the revision
  // their packet ran under, which is `revision` as long as it is still the current one.
  // Conservative: false until such a round completes after each change of revision. The
  // pipeline skips the flow lookup for packets no flow of the current policy can hold only
  // then (a flow of an older revision must still be found, to be re-decided and erased).
  bool all_flows_at(std::uint32_t revision) const noexcept { return clean_valid_ && clean_rev_ == revision; }
  std::uint32_t bucket_count() const noexcept { return bucket_mask_ + 1; }
  bool expired(const FlowEntry& e, std::uint64_t now) const noexcept;

  // Updates the TCP state of `e` for a packet with `tcp_flags` going `dir`.
  static TcpVerdict track_tcp(FlowEntry& e, KeyDir dir, std::uint8_t tcp_flags) noexcept;

  // Removes every flow (control command); returns how many.
  std::uint32_t clear() noexcept;

  std::uint32_t size() const noexcept { return used_; }
  std::uint32_t capacity() const noexcept { return capacity_; }
  std::uint32_t identity_flows(std::uint32_t identity) const noexcept;
  std::size_t memory_bytes() const noexcept { return mem_bytes_; }
  const FlowTimeouts& timeouts() const noexcept { return timeouts_; }
  // The owner only (the worker, between bursts: a control command): the new timeouts apply to
  // every flow from the next aging or lookup on, including flows already in the table (a flow
  // idle longer than its new timeout expires at the next aging pass).
  void set_timeouts(const FlowTimeouts& t) noexcept;

  // Visits the live flows among entries [from, from + count): control commands walk the table a
  // bounded slice per worker loop iteration. `f(FlowEntry&)` may erase the entry it is given;
  // it returns false to stop. Returns where to continue (capacity() once the walk is complete).
  template <typename F>
  std::uint32_t visit(std::uint32_t from, std::uint32_t count, F&& f) {
    const std::uint32_t end = from >= capacity_ || count > capacity_ - from ? capacity_ : from + count;
    for (std::uint32_t i = from; i < end; ++i)
      if (live_[i] && !f(entries_[i])) return i + 1;
    return end;
  }

  // Visits every live flow (control path: show flows); `f` returns false to stop.
  template <typename F>
  void for_each(F&& f) const {
    for (std::uint32_t i = 0; i < capacity_; ++i)
      if (live_[i] && !f(entries_[i])) return;
  }

 private:
  FlowTable() = default;
  struct Bucket;
  struct QuotaSlot {
    std::uint32_t identity;
    std::uint32_t count;
  };

  std::uint64_t hash(const FlowKey& k) const noexcept;
  std::uint32_t alt_bucket(std::uint32_t bucket, std::uint16_t sig) const noexcept;
  bool quota_add(std::uint32_t identity, int delta) noexcept;
  void remove_at(Bucket& b, unsigned slot) noexcept;

  // NH key: 10 32-bit words added to the key's 10 words (words 10-11 stay 0), then mixed.
  alignas(16) std::uint32_t hash_key_[12] = {};
  Bucket* buckets_ = nullptr;
  FlowEntry* entries_ = nullptr;
  std::uint8_t* live_ = nullptr;
  std::uint32_t* free_ = nullptr;  // stack of free entry indices
  QuotaSlot* quota_ = nullptr;
  std::uint32_t free_top_ = 0;
  std::uint32_t bucket_mask_ = 0;
  std::uint32_t quota_mask_ = 0;
  std::uint32_t capacity_ = 0;
  std::uint32_t used_ = 0;
  std::uint32_t quota_limit_ = 0;
  std::uint32_t age_cursor_ = 0;
  // all_flows_at(): the round in progress (its revision, whether it is still clean) and the
  // last completed clean round's revision.
  std::uint32_t round_rev_ = 0, clean_rev_ = 0;
  bool round_clean_ = false, clean_valid_ = false;
  FlowTimeouts timeouts_;
  void* mem_ = nullptr;
  std::size_t mem_bytes_ = 0;
};

}  // namespace zt::dp
