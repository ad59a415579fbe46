// Volumetric filtering (DESIGN.md §4, issue #6): floods must not starve authenticated traffic.
//
// Per worker, all memory sized at create(), nothing allocated, locked or logged on the fast path:
//   - token buckets per (identity, rate class) from the policy's rate classes, in packets and
//     bits per second, the appliance limit split evenly across workers. Checked before the MAC
//     (no consume), consumed only after the MAC passed: spoofed tags cannot spend a budget;
//   - three count-min sketches over fixed windows, keyed by source prefix (/24 v4, /56 v6 by
//     default): untagged and invalid-tag packets, tag failures, new flows. Over the per-source
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

#include <array>
#include <cstdint>
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

class Volumetric {
 public:
  struct Sizing {
    std::uint32_t meters = 4096;      // (identity, rate class) buckets, power of two
    std::uint32_t blocklist = 4096;   // entries, power of two
    std::uint32_t sketch_width = 2048;  // counters per row, power of two (4 rows)
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

  // The new-flow sketch's key for a verified identity (distinct from every prefix key).
  std::uint64_t identity_key(std::uint32_t identity) const noexcept;

  // Whether any blocklist entry can still be live at `tsc`.
  bool blocklist_live(std::uint64_t tsc) const noexcept { return tsc < live_until_; }
  bool blocked(std::uint64_t key, std::uint64_t tsc) noexcept;

  // An untagged or invalid-tag packet from `src`: counts it; returns none, source_rate_limited
  // (over the per-source limit) or blocklisted (a heavy hitter; `added` if this packet listed it).
  rules::DropReason account_source(const SourceKey& src, const VolumetricPlan& p, std::uint64_t tsc,
                                   bool& added) noexcept;
  // A tag check failed for a packet from `src`: enough of them blocklist the source (true: this
  // failure listed it).
  bool tag_failed(const SourceKey& src, const VolumetricPlan& p, std::uint64_t tsc) noexcept;

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
  std::uint32_t sketch_add(std::uint32_t* sk, std::uint64_t key) noexcept;
  void note_top(const SourceKey& src, std::uint32_t est) noexcept;
  struct Bucket;
  Bucket* meter(std::uint32_t identity, std::uint16_t cls, const VolumetricPlan& p, std::uint64_t tsc) noexcept;
  Bucket& refilled(std::uint32_t identity, std::uint16_t cls, const VolumetricPlan& p, std::uint64_t tsc) noexcept;

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
  std::uint32_t sketch_mask_ = 0, block_mask_ = 0, meter_mask_ = 0;
  std::uint32_t* sketch_ = nullptr;  // 3 sketches × 4 rows × width
  std::uint32_t sketch_width_ = 0;
  BlockHot* block_hot_ = nullptr;
  BlockCold* block_cold_ = nullptr;
  Bucket* meters_ = nullptr;
  std::unique_ptr<Top[]> top_, top_prev_;
  std::uint32_t top_cap_ = 0, top_n_ = 0, top_prev_n_ = 0;
  std::uint64_t window_start_ = 0;
  std::uint64_t live_until_ = 0;
  double newflow_tokens_ = -1, flowlog_tokens_ = -1;
  std::uint64_t newflow_last_ = 0, flowlog_last_ = 0;
  std::uint64_t full_since_ = 0;
  bool was_overloaded_ = false;
};

}  // namespace zt::dp
