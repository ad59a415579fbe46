// Volumetric filtering (DESIGN.md §4, issue #6): floods must not starve authenticated traffic.
//
// Per worker, all memory sized at create(), nothing allocated, locked or logged on the fast path:
//   - token buckets per (identity, rate class) from the policy's rate classes, in packets and
//     bits per second, the appliance limit split evenly across workers. Checked before the MAC
//     (no consume), consumed only after the MAC passed: spoofed tags cannot spend a budget;
//   - three count-min sketches over fixed windows, blocked (a source's 4 counters share one
//     cache line), keyed by source prefix (/24 v4, /56 v6 by default): untagged and
//     invalid-tag packets, tag failures, new flows. Over the per-source
//     limit a packet drops (`source_rate_limited`); a heavy hitter (over `block_pps`) or a
//     forged-tag flooder (over `mac_fail_pps`) is put on the blocklist;
//   - a blocklist with expiry, checked right after the L3 source is read (before the parser,
//     the flow lookup and any policy): one hash probe per packet while any entry is live;
//   - new-flow admission: per-source and global new-flow rates, and a flow-table watermark above
//     which only MAC-verified identities open flows;
//   - a token bucket for the worker's flow-log records.
//
// The limits are a `VolumetricConfig` the control side turns into an immutable `VolumetricPlan`
// (per-worker, per-cycle numbers + the policy's rule → rate class map) published inside the
// Snapshot: changing a limit is a republish (Control::set_volumetric).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <expected>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "zt/rules/drop_reason.hpp"
#include "zt/rules/types.hpp"

namespace zt::rules {
class PolicySnapshot;
}

namespace zt::dp {

// Appliance-wide limits (split across workers by the plan). 0 turns a limit off.
struct VolumetricConfig {
  std::uint8_t v4_prefix = 24;          // source prefix an untagged/invalid source is counted by
  std::uint8_t v6_prefix = 56;
  std::uint32_t window_ms = 1000;       // counting window of the sketches
  std::uint64_t source_pps = 0;         // untagged + invalid-tag packets per source prefix per s
  std::uint64_t block_pps = 1'000'000;  // above this a source prefix is blocklisted (heavy hitter)
  std::uint64_t mac_fail_pps = 1000;    // tag failures per source prefix per s → blocklisted
  std::uint32_t block_ms = 60'000;      // how long a blocklist entry lasts
  std::uint64_t new_flows_per_source = 0;  // new flows per second per source (identity or prefix)
  std::uint64_t new_flows_global = 0;      // new flows per second, all sources
  // Share of the global new-flow budget unverified sources may use (the rest is kept for
  // MAC-verified identities), in percent.
  std::uint32_t unverified_new_flow_share = 50;
  std::uint32_t table_watermark_pct = 90;  // flow table fill above which only verified open flows
  std::uint32_t burst_ms = 1000;           // bucket depth: this much time at the rate
  std::uint32_t overload_ms = 100;         // full RX bursts this long = behind (0: never)
  std::uint64_t flow_log_rate = 1000;      // flow-log records per second per worker
};

// Checks ranges; the message names the ztgate option.
std::expected<void, std::string> validate(const VolumetricConfig& c);

// The immutable, per-worker form of a VolumetricConfig, built on the control path.
struct VolumetricPlan {
  VolumetricConfig cfg;
  const rules::PolicySnapshot* policy = nullptr;  // the policy its rate classes came from
  unsigned workers = 1;
  std::uint64_t tsc_hz = 1;
  std::uint64_t window_cycles = 1;
  std::uint64_t block_cycles = 1;
  std::uint64_t overload_cycles = 0;  // 0: off
  // Per worker, per window (0: off).
  std::uint32_t source_limit = 0, block_limit = 0, fail_limit = 0, new_flow_source_limit = 0;
  // Derived by make_volumetric_plan (the only way to build a plan) for the per-packet calls:
  // min(block_limit - 1, source_limit - 1), a limit of 0 wrapping to UINT32_MAX: a packet
  // estimate `est` (>= 1) crosses neither limit while est - 1 <= this;
  std::uint32_t below_limits = UINT32_MAX;
  // and the source prefix as hash input: (address bits & mask) ^ salt, from cfg.v4_prefix and
  // cfg.v6_prefix.
  std::uint32_t v4_mask = 0;
  std::uint64_t v4_salt = 0, v6_mask = 0, v6_salt = 0;
  // Per worker token buckets: per cycle, and depth.
  double new_flow_rate = 0, new_flow_depth = 0;  // rate 0: off
  double flow_log_rate = 0, flow_log_depth = 0;
  struct Meter {
    double pkt_rate = 0, pkt_depth = 0;  // packets per cycle; 0: no packet limit
    double bit_rate = 0, bit_depth = 0;  // bits per cycle; 0: no bit limit
  };
  std::vector<Meter> meters;  // by rate class index (PolicySnapshot::rate_classes())
  // rule id → rate class, sorted by rule id (rules with a rate class only).
  std::vector<std::pair<rules::RuleId, std::uint16_t>> rule_class;

  std::uint16_t rate_class_of(rules::RuleId rule) const noexcept;
};

// `policy` may be null (no rate classes). `tsc_hz`: rte_get_tsc_hz().
std::shared_ptr<const VolumetricPlan> make_volumetric_plan(const VolumetricConfig& cfg,
                                                           const rules::PolicySnapshot* policy,
                                                           unsigned workers, std::uint64_t tsc_hz);

// What `show volumetric` lists: a blocklist entry or a top talker of the current window.
struct VolumetricEntry {
  std::array<std::uint8_t, 16> prefix{};  // masked address; IPv4 in the first 4 bytes
  std::uint8_t version = 0;
  std::uint8_t prefix_len = 0;
  std::uint8_t reason = 0;      // blocklist: 1 heavy hitter, 2 tag failures, 3 added by control
  std::uint8_t pad = 0;
  std::uint32_t worker = 0;     // filled in by the control side
  std::uint64_t packets = 0;    // top talker: estimated packets this window; blocklist: drops
  std::uint64_t expires_in_ms = 0;  // blocklist: time left
};
enum class BlockReason : std::uint8_t { heavy_hitter = 1, tag_failures = 2 };

// A source as the volumetric layer names it: the masked prefix and a 64-bit hash key.
struct SourceKey {
  std::uint64_t key = 0;  // 0 never used (the hash sets bit 0)
  std::array<std::uint8_t, 16> prefix{};
  std::uint8_t version = 4;
  std::uint8_t len = 0;
};

// A source on the fast path: its hash key only, and the address its SourceKey (masked prefix)
// is made from when it is needed, i.e. when the source is listed or becomes a top talker.
// `addr` must stay valid for the call it is passed to.
struct SourceRef {
  std::uint64_t key = 0;
  const std::uint8_t* addr = nullptr;
  std::uint8_t version = 4;
};

class Volumetric {
 public:
  struct Sizing {
    std::uint32_t meters = 4096;      // (identity, rate class) buckets, power of two
    std::uint32_t blocklist = 4096;   // entries, power of two
    // Counters per row (4 rows), a power of two from 4 to 32768; width / 4 cache lines of 16
    // counters per sketch, a source's 4 counters in one line (dataplane/README "Volumetric").
    std::uint32_t sketch_width = 2048;
    std::uint32_t top = 16;           // top talkers kept per window
    std::uint64_t seed = 0;           // hash seed (0: random)
  };
  static std::expected<std::unique_ptr<Volumetric>, std::string> create(const Sizing& s);

  // Once per burst: rolls the sketch window over.
  void begin(const VolumetricPlan& p, std::uint64_t tsc) noexcept {
    if (tsc - window_start_ >= p.window_cycles) [[unlikely]] roll(tsc);
  }

  SourceKey source_key(const std::uint8_t* addr, std::uint8_t version, const VolumetricPlan& p) const noexcept;
  // The fast key only (no prefix kept): what the blocklist probe uses.
  std::uint64_t source_hash(const std::uint8_t* addr, std::uint8_t version, const VolumetricPlan& p) const noexcept;
  // What the per-packet calls below take: the hash, and the address for the rare prefix.
  SourceRef source(const std::uint8_t* addr, std::uint8_t version, const VolumetricPlan& p) const noexcept {
    return {source_hash(addr, version, p), addr, version};
  }

  // The new-flow sketch's key for a verified identity (distinct from every prefix key).
  std::uint64_t identity_key(std::uint32_t identity) const noexcept;

  // Whether any blocklist entry can still be live at `tsc`.
  bool blocklist_live(std::uint64_t tsc) const noexcept { return tsc < live_until_; }
  // What the blocklist says of a source key at `tsc` (dataplane/README.md "Blocklist"):
  //   drop:             listed as a heavy hitter (any reason but tag failures): every packet is
  //                     dropped before the parser (the entry's drop count is bumped here);
  //   established_only: listed for tag failures: only packets of flows already in the table pass
  //                     (the pipeline refuses the others after the flow lookup and then calls
  //                     count_listed_drop), so a spoofer who forges tags under an agent's outer
  //                     prefix takes that prefix's new flows, never its running ones.
  enum class Listed : std::uint8_t { no, drop, established_only };
  Listed listed(std::uint64_t key, std::uint64_t tsc) noexcept;
  bool blocked(std::uint64_t key, std::uint64_t tsc) noexcept { return listed(key, tsc) != Listed::no; }
  // A packet of an established_only source refused for not belonging to a flow: counted on its
  // entry (what `show volumetric` prints as the entry's drops).
  void count_listed_drop(std::uint64_t key, std::uint64_t tsc) noexcept;

  // An untagged or invalid-tag packet from `src`: counts it; returns none, source_rate_limited
  // (over the per-source limit) or blocklisted (a heavy hitter; `added` if this packet listed it).
  rules::DropReason account_source(const SourceRef& src, const VolumetricPlan& p, std::uint64_t tsc,
                                   bool& added) noexcept;
  // A tag check failed for a packet from `src`: enough of them blocklist the source (true: this
  // failure listed it).
  bool tag_failed(const SourceRef& src, const VolumetricPlan& p, std::uint64_t tsc) noexcept;
  // Prefetches the sketch lines a tag failure of `key` will count in (failures, then packets,
  // tag_failed then account_source), so that a burst's failures miss in parallel rather than
  // one after the other (the pipeline prefetches all of a burst's failures, then counts them).
  void prefetch_failure(std::uint64_t key) const noexcept {
    __builtin_prefetch(line(kFailsSketch, key), 1);
    prefetch_packets(key);
  }
  // The line account_source will count `key` in.
  void prefetch_packets(std::uint64_t key) const noexcept { __builtin_prefetch(line(kPktsSketch, key), 1); }

  // The current window's count-min estimates for a source key (packets, tag failures), and the
  // index of the cache line its counters share in each sketch (tests, benchmarks).
  std::uint32_t packets_estimate(std::uint64_t key) const noexcept;
  std::uint32_t failures_estimate(std::uint64_t key) const noexcept;
  std::uint32_t sketch_line(std::uint64_t key) const noexcept;

  // New-flow admission (after policy and MAC): none, new_flow_rate_limited or
  // admission_watermark. `source`: prefix key for unverified, identity-derived for verified.
  rules::DropReason admit(std::uint64_t source, bool verified, std::uint32_t flows_used,
                          std::uint32_t flows_capacity, const VolumetricPlan& p, std::uint64_t tsc) noexcept;

  // Identity meters: check (no consume) before the MAC, consume after it.
  bool meter_check(std::uint32_t identity, std::uint16_t cls, std::uint32_t bytes,
                   const VolumetricPlan& p, std::uint64_t tsc) noexcept;
  bool meter_consume(std::uint32_t identity, std::uint16_t cls, std::uint32_t bytes,
                     const VolumetricPlan& p, std::uint64_t tsc) noexcept;

  // One flow-log record's token.
  bool flow_log_token(const VolumetricPlan& p, std::uint64_t tsc) noexcept;

  // Overload: call with every burst's size; true while RX bursts have been full for longer
  // than the plan's overload time.
  bool overloaded(unsigned n, unsigned full, const VolumetricPlan& p, std::uint64_t tsc) noexcept;

  // Worker side, for the control commands.
  unsigned dump_blocklist(VolumetricEntry* out, unsigned cap, std::uint64_t tsc, std::uint64_t tsc_hz) const noexcept;
  unsigned dump_top(VolumetricEntry* out, unsigned cap) const noexcept;
  // Removes the entries overlapping prefix addr/len (inside it, or holding it); version 0: all.
  // Returns how many live entries it removed.
  unsigned clear_blocklist(const std::uint8_t* addr, std::uint8_t version, std::uint8_t len,
                           std::uint64_t tsc) noexcept;
  // Adds `src` for `cycles` (tests, and the worker itself); true if it was not listed already.
  bool block(const SourceKey& src, BlockReason why, std::uint64_t tsc, std::uint64_t cycles) noexcept;

  ~Volumetric();

 private:
  Volumetric() = default;
  void roll(std::uint64_t tsc) noexcept;
  // One 64-byte line: 4 rows of 4 counters; a key counts in one counter of each row.
  struct alignas(64) SketchLine {
    std::uint32_t c[16];
  };
  // The three sketches interleaved by line: [line][sketch], so a source's packet and failure
  // lines are neighbours.
  static constexpr unsigned kPktsSketch = 0, kFailsSketch = 1, kNewFlowsSketch = 2, kSketchCount = 3;
  // Row r's counter in the line: 2 bits of the key from bit 56 + 2r, apart from the line's bits
  // (24..): one key never counts twice in a row, and two keys sharing a line collide in each row
  // independently (dataplane/README.md "Volumetric").
  static unsigned row_slot(std::uint64_t key, unsigned r) noexcept {
    return r * 4 + (static_cast<unsigned>(key >> (56 + 2 * r)) & 3);
  }
  SketchLine* line(unsigned sketch, std::uint64_t key) const noexcept {
    return sketch_ + std::size_t{static_cast<std::uint32_t>(key >> 24) & line_mask_} * kSketchCount + sketch;
  }
  static std::uint32_t sketch_add(SketchLine& l, std::uint64_t key) noexcept;
  static std::uint32_t sketch_estimate(const SketchLine& l, std::uint64_t key) noexcept;
  void note_top(const SourceRef& src, std::uint32_t est, const VolumetricPlan& p) noexcept;
  // The rare ends of account_source / tag_failed, out of line: a 64th packet (top list), a limit
  // crossed (the SourceKey is built only here).
  [[gnu::cold]] rules::DropReason account_rare(const SourceRef& src, std::uint32_t est, const VolumetricPlan& p,
                                               std::uint64_t tsc, bool& added) noexcept;
  [[gnu::cold]] bool block_source(const SourceRef& src, BlockReason why, const VolumetricPlan& p,
                                  std::uint64_t tsc) noexcept;
  struct Bucket;
  Bucket* meter(std::uint32_t identity, std::uint16_t cls, const VolumetricPlan& p, std::uint64_t tsc) noexcept;
  Bucket& refilled(std::uint32_t identity, std::uint16_t cls, const VolumetricPlan& p, std::uint64_t tsc) noexcept;

  // The blocklist slot holding `key`, live at `tsc`, or kNoSlot (one probe chain).
  static constexpr std::uint32_t kNoSlot = ~std::uint32_t{0};
  std::uint32_t live_block_slot(std::uint64_t key, std::uint64_t tsc) const noexcept;
  struct BlockHot {
    std::uint64_t key;      // 0: empty
    std::uint64_t expires;  // tsc
  };
  struct BlockCold {
    std::array<std::uint8_t, 16> prefix;
    std::uint8_t version, len, reason, pad;
    std::uint32_t pad2;
    std::uint64_t drops;
  };
  struct Bucket {
    std::uint64_t key;  // identity << 16 | class, + 1; 0: empty
    std::uint64_t last;
    double pkts, bits;
  };
  struct Top {
    SourceKey src;
    std::uint32_t est = 0;
  };

  std::uint64_t seed_ = 0;
  std::uint32_t line_mask_ = 0, block_mask_ = 0, meter_mask_ = 0;
  SketchLine* sketch_ = nullptr;  // (width / 4) lines × 3 sketches
  std::uint32_t sketch_lines_ = 0;
  BlockHot* block_hot_ = nullptr;
  BlockCold* block_cold_ = nullptr;
  Bucket* meters_ = nullptr;
  std::unique_ptr<Top[]> top_, top_prev_;
  std::uint32_t top_cap_ = 0, top_n_ = 0, top_prev_n_ = 0;
  std::uint64_t window_start_ = 0;
  std::uint64_t fails_in_window_ = 0;  // tag failures counted this window (tag_failed's noise floor)
  std::uint64_t live_until_ = 0;
  double newflow_tokens_ = -1, flowlog_tokens_ = -1;
  std::uint64_t newflow_last_ = 0, flowlog_last_ = 0;
  std::uint64_t full_since_ = 0;
  bool was_overloaded_ = false;
};

// ---- the per-packet calls, inline (the pipeline makes them for every untagged new-flow packet
// and every tag failure) ----------------------------------------------------------------------

namespace detail {
inline std::uint64_t mix(std::uint64_t x) noexcept {  // splitmix64 finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}
}  // namespace detail

inline std::uint64_t Volumetric::source_hash(const std::uint8_t* addr, std::uint8_t version,
                                             const VolumetricPlan& p) const noexcept {
  std::uint64_t bits;
  if (version == 4) {
    std::uint32_t a;
    std::memcpy(&a, addr, 4);
    bits = (__builtin_bswap32(a) & p.v4_mask) ^ p.v4_salt;
  } else {  // the first 64 bits: v6 prefixes are at most /64 (validate)
    std::uint64_t a;
    std::memcpy(&a, addr, 8);
    bits = (__builtin_bswap64(a) & p.v6_mask) ^ p.v6_salt;
  }
  return detail::mix(bits ^ seed_) | 1;
}

inline std::uint32_t Volumetric::sketch_add(SketchLine& l, std::uint64_t key) noexcept {
  std::uint32_t est = UINT32_MAX;
#pragma GCC unroll 4
  for (unsigned r = 0; r < 4; ++r) {
    std::uint32_t& cnt = l.c[row_slot(key, r)];
    cnt += cnt < UINT32_MAX;  // saturates: never wraps to an under-count
    est = std::min(est, cnt);
  }
  return est;
}

inline rules::DropReason Volumetric::account_source(const SourceRef& src, const VolumetricPlan& p,
                                                    std::uint64_t tsc, bool& added) noexcept {
  added = false;
  const std::uint32_t est = sketch_add(*line(kPktsSketch, src.key), src.key);
  if ((est & 63) != 0 && est - 1 <= p.below_limits) [[likely]]  // neither limit crossed
    return rules::DropReason::none;
  return account_rare(src, est, p, tsc, added);
}

inline bool Volumetric::tag_failed(const SourceRef& src, const VolumetricPlan& p, std::uint64_t tsc) noexcept {
  if (p.fail_limit == 0) return false;
  ++fails_in_window_;
  const std::uint32_t est = sketch_add(*line(kFailsSketch, src.key), src.key);
  if (est <= p.fail_limit) [[likely]] return false;
  // Judged above the window's noise floor: every counter of a row carries on average N / w
  // failures of other sources (N this window, w counters a row). A spoofed flood of more than
  // ~w x limit failures a second would otherwise push every failing /24 (and an innocent agent
  // with one failed tag) over the limit (dataplane/README.md "Volumetric", "Noise floor").
  if (est - p.fail_limit <= 2 * fails_in_window_ / (std::uint64_t{4} * sketch_lines_)) return false;
  return block_source(src, BlockReason::tag_failures, p, tsc);
}

}  // namespace zt::dp
