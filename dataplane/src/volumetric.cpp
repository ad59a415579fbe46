#include "zt/dataplane/volumetric.hpp"

#include <algorithm>
#include <cstring>
#include <random>

#include <fmt/format.h>

#include "zt/rules/snapshot.hpp"

namespace zt::dp {

namespace {

// Count-min rows per sketch, and counters per row inside a key's cache line.
constexpr unsigned kRows = 4, kRowSlots = 4;
constexpr unsigned kProbe = 8;
constexpr std::uint32_t kMinBitDepth = 8 * 1600;  // one full frame always fits a bit bucket

std::uint32_t per_window(std::uint64_t pps, const VolumetricConfig& c, unsigned workers) noexcept {
  if (pps == 0) return 0;
  const double v = static_cast<double>(pps) * c.window_ms / 1000.0 / workers;
  return static_cast<std::uint32_t>(std::clamp(v, 1.0, 4e9));
}

}  // namespace

std::expected<void, std::string> validate(const VolumetricConfig& c) {
  if (c.v4_prefix < 1 || c.v4_prefix > 32)
    return std::unexpected(fmt::format("--vol-v4-prefix {}: expected 1 to 32", c.v4_prefix));
  if (c.v6_prefix < 1 || c.v6_prefix > 64)
    return std::unexpected(fmt::format("--vol-v6-prefix {}: expected 1 to 64", c.v6_prefix));
  if (c.window_ms < 10 || c.window_ms > 60'000)
    return std::unexpected(fmt::format("--vol-window-ms {}: expected 10 to 60000", c.window_ms));
  if (c.block_ms < 1 || c.block_ms > 86'400'000)
    return std::unexpected(fmt::format("--vol-block-ms {}: expected 1 to 86400000 (a day)", c.block_ms));
  if (c.burst_ms < 1 || c.burst_ms > 60'000)
    return std::unexpected(fmt::format("--vol-burst-ms {}: expected 1 to 60000", c.burst_ms));
  if (c.table_watermark_pct > 100)
    return std::unexpected(fmt::format("--vol-table-watermark {}: expected 0 to 100 (percent)", c.table_watermark_pct));
  if (c.unverified_new_flow_share > 100)
    return std::unexpected(
        fmt::format("--vol-unverified-share {}: expected 0 to 100 (percent)", c.unverified_new_flow_share));
  if (c.overload_ms > 60'000)
    return std::unexpected(fmt::format("--vol-overload-ms {}: expected 0 (off) to 60000", c.overload_ms));
  return {};
}

std::uint16_t VolumetricPlan::rate_class_of(rules::RuleId rule) const noexcept {
  const auto it = std::lower_bound(rule_class.begin(), rule_class.end(), rule,
                                   [](const auto& e, rules::RuleId r) { return e.first < r; });
  return it != rule_class.end() && it->first == rule ? it->second : rules::kNoRateClass;
}

std::shared_ptr<const VolumetricPlan> make_volumetric_plan(const VolumetricConfig& cfg,
                                                           const rules::PolicySnapshot* policy,
                                                           unsigned workers, std::uint64_t tsc_hz) {
  auto p = std::make_shared<VolumetricPlan>();
  workers = std::max(workers, 1U);
  tsc_hz = std::max<std::uint64_t>(tsc_hz, 1);
  const double hz = static_cast<double>(tsc_hz), w = workers, burst_s = cfg.burst_ms / 1000.0;
  p->cfg = cfg;
  p->policy = policy;
  p->workers = workers;
  p->tsc_hz = tsc_hz;
  p->window_cycles = std::max<std::uint64_t>(1, tsc_hz / 1000 * cfg.window_ms);
  p->block_cycles = std::max<std::uint64_t>(1, tsc_hz / 1000 * cfg.block_ms);
  p->overload_cycles = tsc_hz / 1000 * cfg.overload_ms;
  p->source_limit = per_window(cfg.source_pps, cfg, workers);
  p->block_limit = per_window(cfg.block_pps, cfg, workers);
  p->fail_limit = per_window(cfg.mac_fail_pps, cfg, workers);
  p->new_flow_source_limit = per_window(cfg.new_flows_per_source, cfg, workers);
  p->below_limits = std::min(p->block_limit - 1, p->source_limit - 1);  // 0 (off) wraps to UINT32_MAX
  // The same prefix bits as ever (1..32 / 1..64 after validate; clamped so no shift overflows).
  const unsigned l4 = std::min<unsigned>(cfg.v4_prefix, 32), l6 = std::min<unsigned>(cfg.v6_prefix, 64);
  p->v4_mask = l4 == 0 ? 0 : ~std::uint32_t{0} << (32 - l4);
  p->v4_salt = (std::uint64_t{4} << 56) ^ (std::uint64_t{cfg.v4_prefix} << 48);
  p->v6_mask = l6 == 0 ? 0 : ~std::uint64_t{0} << (64 - l6);
  p->v6_salt = std::uint64_t{cfg.v6_prefix} * 0x9E3779B97F4A7C15ULL;
  if (cfg.new_flows_global != 0) {
    p->new_flow_rate = static_cast<double>(cfg.new_flows_global) / w / hz;
    p->new_flow_depth = std::max(1.0, static_cast<double>(cfg.new_flows_global) / w * burst_s);
  }
  if (cfg.flow_log_rate != 0) {
    p->flow_log_rate = static_cast<double>(cfg.flow_log_rate) / hz;
    p->flow_log_depth = std::max(1.0, static_cast<double>(cfg.flow_log_rate) * burst_s);
  }
  if (policy != nullptr) {
    for (const rules::RateClass& rc : policy->rate_classes()) {
      VolumetricPlan::Meter m;
      if (rc.pps != 0) {
        m.pkt_rate = static_cast<double>(rc.pps) / w / hz;
        m.pkt_depth = std::max(1.0, static_cast<double>(rc.pps) / w * burst_s);
      }
      if (rc.bps != 0) {
        m.bit_rate = static_cast<double>(rc.bps) / w / hz;
        m.bit_depth = std::max<double>(kMinBitDepth, static_cast<double>(rc.bps) / w * burst_s);
      }
      p->meters.push_back(m);
    }
    for (const rules::VerdictEntry& e : policy->verdict_entries())
      if (!e.deny && e.rate_class != rules::kNoRateClass) p->rule_class.emplace_back(e.rule_id, e.rate_class);
    std::sort(p->rule_class.begin(), p->rule_class.end());
    p->rule_class.erase(std::unique(p->rule_class.begin(), p->rule_class.end(),
                                    [](const auto& a, const auto& b) { return a.first == b.first; }),
                        p->rule_class.end());
  }
  return p;
}

// ---- the per-worker state -------------------------------------------------------------------

std::expected<std::unique_ptr<Volumetric>, std::string> Volumetric::create(const Sizing& s) {
  const auto pow2 = [](std::uint32_t v) { return v != 0 && (v & (v - 1)) == 0; };
  if (!pow2(s.meters) || !pow2(s.blocklist) || !pow2(s.sketch_width) || s.sketch_width < kRowSlots ||
      s.sketch_width > 32768 || s.blocklist < kProbe || s.meters < kProbe || s.top == 0)
    return std::unexpected(fmt::format(
        "volumetric tables: meters {}, blocklist {} (powers of two, at least {}), sketch width {} "
        "(a power of two from 4 to 32768), top {} (at least 1)",
        s.meters, s.blocklist, kProbe, s.sketch_width, s.top));
  std::unique_ptr<Volumetric> v(new Volumetric());
  v->seed_ = s.seed != 0 ? s.seed : (std::uint64_t{std::random_device{}()} << 32) | std::random_device{}();
  v->sketch_lines_ = s.sketch_width / kRowSlots;
  v->line_mask_ = v->sketch_lines_ - 1;
  v->block_mask_ = s.blocklist - 1;
  v->meter_mask_ = s.meters - 1;
  v->sketch_ = new (std::nothrow) SketchLine[std::size_t{kSketchCount} * v->sketch_lines_]();
  v->block_hot_ = new (std::nothrow) BlockHot[s.blocklist]();
  v->block_cold_ = new (std::nothrow) BlockCold[s.blocklist]();
  v->meters_ = new (std::nothrow) Bucket[s.meters]();
  v->top_ = std::unique_ptr<Top[]>(new (std::nothrow) Top[s.top]);
  v->top_prev_ = std::unique_ptr<Top[]>(new (std::nothrow) Top[s.top]);
  if (!v->sketch_ || !v->block_hot_ || !v->block_cold_ || !v->meters_ || !v->top_ || !v->top_prev_)
    return std::unexpected("volumetric tables: out of memory");
  v->top_cap_ = s.top;
  return v;
}

Volumetric::~Volumetric() {
  delete[] sketch_;
  delete[] block_hot_;
  delete[] block_cold_;
  delete[] meters_;
}

void Volumetric::roll(std::uint64_t tsc) noexcept {
  std::memset(static_cast<void*>(sketch_), 0, sizeof(SketchLine) * kSketchCount * sketch_lines_);
  std::swap(top_, top_prev_);
  top_prev_n_ = top_n_;
  top_n_ = 0;
  window_start_ = tsc;
  fails_in_window_ = 0;
}

std::uint64_t Volumetric::identity_key(std::uint32_t identity) const noexcept {
  return detail::mix((std::uint64_t{0x1d} << 56 | identity) ^ seed_) | 1;
}

SourceKey Volumetric::source_key(const std::uint8_t* addr, std::uint8_t version,
                                 const VolumetricPlan& p) const noexcept {
  SourceKey k;
  k.version = version;
  k.len = version == 4 ? p.cfg.v4_prefix : p.cfg.v6_prefix;
  k.key = source_hash(addr, version, p);
  // The masked prefix as whole words (every untagged packet of a new flow gets here; it was a
  // byte loop with a clamp per byte). Bytes past the address stay zero.
  if (version == 4) {
    const std::uint32_t m = k.len == 0 ? 0 : k.len >= 32 ? ~std::uint32_t{0} : ~std::uint32_t{0} << (32 - k.len);
    std::uint32_t a;
    std::memcpy(&a, addr, 4);
    a &= __builtin_bswap32(m);  // the address is big-endian in memory
    std::memcpy(k.prefix.data(), &a, 4);
  } else {
    const auto mask64 = [](int bits) {
      return bits <= 0 ? std::uint64_t{0} : bits >= 64 ? ~std::uint64_t{0} : ~std::uint64_t{0} << (64 - bits);
    };
    std::uint64_t w[2];
    std::memcpy(w, addr, 16);
    w[0] &= __builtin_bswap64(mask64(k.len));
    w[1] &= __builtin_bswap64(mask64(k.len - 64));
    std::memcpy(k.prefix.data(), w, 16);
  }
  return k;
}

std::uint32_t Volumetric::live_block_slot(std::uint64_t key, std::uint64_t tsc) const noexcept {
  std::uint32_t h = static_cast<std::uint32_t>(key >> 1) & block_mask_;
  for (unsigned i = 0; i < kProbe; ++i, h = (h + 1) & block_mask_) {
    const BlockHot& b = block_hot_[h];
    if (b.key == key) return b.expires > tsc ? h : kNoSlot;
    if (b.key == 0) return kNoSlot;
  }
  return kNoSlot;
}

Volumetric::Listed Volumetric::listed(std::uint64_t key, std::uint64_t tsc) noexcept {
  const std::uint32_t h = live_block_slot(key, tsc);
  if (h == kNoSlot) return Listed::no;
  BlockCold& cold = block_cold_[h];
  if (cold.reason == static_cast<std::uint8_t>(BlockReason::tag_failures)) return Listed::established_only;
  ++cold.drops;
  return Listed::drop;
}

void Volumetric::count_listed_drop(std::uint64_t key, std::uint64_t tsc) noexcept {
  if (const std::uint32_t h = live_block_slot(key, tsc); h != kNoSlot) ++block_cold_[h].drops;
}

bool Volumetric::block(const SourceKey& src, BlockReason why, std::uint64_t tsc, std::uint64_t cycles) noexcept {
  std::uint32_t h = static_cast<std::uint32_t>(src.key >> 1) & block_mask_;
  std::uint32_t at = UINT32_MAX, oldest = h;
  for (unsigned i = 0; i < kProbe; ++i, h = (h + 1) & block_mask_) {
    const BlockHot& b = block_hot_[h];
    if (b.key == src.key) {
      at = h;
      break;
    }
    if (at == UINT32_MAX && (b.key == 0 || b.expires <= tsc)) at = h;
    if (b.expires < block_hot_[oldest].expires) oldest = h;
    if (b.key == 0) break;  // nothing further in this chain
  }
  if (at == UINT32_MAX) at = oldest;  // all live: the one closest to expiry goes
  BlockHot& hot = block_hot_[at];
  BlockCold& cold = block_cold_[at];
  const bool added = hot.key != src.key || hot.expires <= tsc;
  if (added) cold.drops = 0;
  hot.key = src.key;
  hot.expires = tsc + cycles;
  cold.prefix = src.prefix;
  cold.version = src.version;
  cold.len = src.len;
  // Only a tag-failure entry (the weak kind: established flows pass) takes a new reason while
  // live: a heavy hitter listed again for tag failures stays one, dropped before the parser.
  if (added || cold.reason == static_cast<std::uint8_t>(BlockReason::tag_failures))
    cold.reason = static_cast<std::uint8_t>(why);
  live_until_ = std::max(live_until_, hot.expires);
  return added;
}

// The sketches are blocked count-min sketches: sketch_add and row_slot (volumetric.hpp), error
// bound in dataplane/README.md "Volumetric".
std::uint32_t Volumetric::sketch_estimate(const SketchLine& l, std::uint64_t key) noexcept {
  std::uint32_t est = UINT32_MAX;
  for (unsigned r = 0; r < kRows; ++r) est = std::min(est, l.c[row_slot(key, r)]);
  return est;
}

std::uint32_t Volumetric::packets_estimate(std::uint64_t key) const noexcept {
  return sketch_estimate(*line(kPktsSketch, key), key);
}
std::uint32_t Volumetric::failures_estimate(std::uint64_t key) const noexcept {
  return sketch_estimate(*line(kFailsSketch, key), key);
}
std::uint32_t Volumetric::sketch_line(std::uint64_t key) const noexcept {
  return static_cast<std::uint32_t>(key >> 24) & line_mask_;
}

// Only the sources that get onto the list are named (their masked prefix built): every 64th
// packet of a source, and only when it enters the list or replaces one.
void Volumetric::note_top(const SourceRef& src, std::uint32_t est, const VolumetricPlan& p) noexcept {
  std::uint32_t min_at = 0;
  for (std::uint32_t i = 0; i < top_n_; ++i) {
    if (top_[i].src.key == src.key) {
      top_[i].est = est;
      return;
    }
    if (top_[i].est < top_[min_at].est) min_at = i;
  }
  if (top_n_ < top_cap_) {
    top_[top_n_++] = {source_key(src.addr, src.version, p), est};
  } else if (top_[min_at].est < est) {
    top_[min_at] = {source_key(src.addr, src.version, p), est};
  }
}

rules::DropReason Volumetric::account_rare(const SourceRef& src, std::uint32_t est, const VolumetricPlan& p,
                                           std::uint64_t tsc, bool& added) noexcept {
  if ((est & 63) == 0) note_top(src, est, p);  // amortised: every 64th packet of a source
  if (p.block_limit != 0 && est > p.block_limit) {
    added = block_source(src, BlockReason::heavy_hitter, p, tsc);
    return rules::DropReason::blocklisted;
  }
  if (p.source_limit != 0 && est > p.source_limit) return rules::DropReason::source_rate_limited;
  return rules::DropReason::none;
}

bool Volumetric::block_source(const SourceRef& src, BlockReason why, const VolumetricPlan& p,
                              std::uint64_t tsc) noexcept {
  return block(source_key(src.addr, src.version, p), why, tsc, p.block_cycles);
}

rules::DropReason Volumetric::admit(std::uint64_t source, bool verified, std::uint32_t flows_used,
                                    std::uint32_t flows_capacity, const VolumetricPlan& p,
                                    std::uint64_t tsc) noexcept {
  if (!verified && p.cfg.table_watermark_pct < 100 &&
      std::uint64_t{flows_used} * 100 >= std::uint64_t{flows_capacity} * p.cfg.table_watermark_pct)
    return rules::DropReason::admission_watermark;
  if (p.new_flow_source_limit != 0 &&
      sketch_add(*line(kNewFlowsSketch, source), source) > p.new_flow_source_limit)
    return rules::DropReason::new_flow_rate_limited;
  if (p.new_flow_rate != 0) {
    if (newflow_tokens_ < 0) newflow_tokens_ = p.new_flow_depth, newflow_last_ = tsc;
    newflow_tokens_ = std::min(p.new_flow_depth, newflow_tokens_ + static_cast<double>(tsc - newflow_last_) * p.new_flow_rate);
    newflow_last_ = tsc;
    // Unverified sources may not take the part of the budget kept for verified identities.
    const double reserve = verified ? 0.0 : p.new_flow_depth * (100 - p.cfg.unverified_new_flow_share) / 100.0;
    if (newflow_tokens_ - 1.0 < reserve) return rules::DropReason::new_flow_rate_limited;
    newflow_tokens_ -= 1.0;
  }
  return rules::DropReason::none;
}

Volumetric::Bucket* Volumetric::meter(std::uint32_t identity, std::uint16_t cls, const VolumetricPlan& p,
                                      std::uint64_t tsc) noexcept {
  const std::uint64_t key = ((std::uint64_t{identity} << 16) | cls) + 1;
  std::uint32_t h = static_cast<std::uint32_t>(detail::mix(key ^ seed_)) & meter_mask_;
  std::uint32_t oldest = h;
  for (unsigned i = 0; i < kProbe; ++i, h = (h + 1) & meter_mask_) {
    Bucket& b = meters_[h];
    if (b.key == key) return &b;
    if (b.key == 0) {
      oldest = h;
      break;
    }
    if (b.last < meters_[oldest].last) oldest = h;
  }
  // A new bucket starts full; reusing the stalest one is what a long-idle bucket would be anyway.
  Bucket& b = meters_[oldest];
  const VolumetricPlan::Meter& m = p.meters[cls];
  b.key = key;
  b.last = tsc;
  b.pkts = m.pkt_depth;
  b.bits = m.bit_depth;
  return &b;
}

namespace {
inline void refill(double& tokens, double rate, double depth, std::uint64_t dt) noexcept {
  if (rate != 0) tokens = std::min(depth, tokens + static_cast<double>(dt) * rate);
}
}  // namespace

// The identity's bucket for rate class `cls`, refilled up to `tsc`; whether `bytes` more fit.
Volumetric::Bucket& Volumetric::refilled(std::uint32_t identity, std::uint16_t cls, const VolumetricPlan& p,
                                         std::uint64_t tsc) noexcept {
  Bucket& b = *meter(identity, cls, p, tsc);
  const VolumetricPlan::Meter& m = p.meters[cls];
  const std::uint64_t dt = tsc - b.last;
  refill(b.pkts, m.pkt_rate, m.pkt_depth, dt);
  refill(b.bits, m.bit_rate, m.bit_depth, dt);
  b.last = tsc;
  return b;
}

namespace {
inline bool fits(double pkts, double bits, const VolumetricPlan::Meter& m, std::uint32_t bytes) noexcept {
  return (m.pkt_rate == 0 || pkts >= 1.0) && (m.bit_rate == 0 || bits >= 8.0 * bytes);
}
}  // namespace

bool Volumetric::meter_check(std::uint32_t identity, std::uint16_t cls, std::uint32_t bytes,
                             const VolumetricPlan& p, std::uint64_t tsc) noexcept {
  if (cls >= p.meters.size()) return true;
  const Bucket& b = refilled(identity, cls, p, tsc);
  return fits(b.pkts, b.bits, p.meters[cls], bytes);
}

bool Volumetric::meter_consume(std::uint32_t identity, std::uint16_t cls, std::uint32_t bytes,
                               const VolumetricPlan& p, std::uint64_t tsc) noexcept {
  if (cls >= p.meters.size()) return true;
  Bucket& b = refilled(identity, cls, p, tsc);
  const VolumetricPlan::Meter& m = p.meters[cls];
  if (!fits(b.pkts, b.bits, m, bytes)) return false;
  if (m.pkt_rate != 0) b.pkts -= 1.0;
  if (m.bit_rate != 0) b.bits -= 8.0 * bytes;
  return true;
}

bool Volumetric::flow_log_token(const VolumetricPlan& p, std::uint64_t tsc) noexcept {
  if (p.flow_log_rate == 0) return false;
  if (flowlog_tokens_ < 0) flowlog_tokens_ = p.flow_log_depth, flowlog_last_ = tsc;
  refill(flowlog_tokens_, p.flow_log_rate, p.flow_log_depth, tsc - flowlog_last_);
  flowlog_last_ = tsc;
  if (flowlog_tokens_ < 1.0) return false;
  flowlog_tokens_ -= 1.0;
  return true;
}

bool Volumetric::overloaded(unsigned n, unsigned full, const VolumetricPlan& p, std::uint64_t tsc) noexcept {
  if (p.overload_cycles == 0 || n < full) {
    full_since_ = 0;
    return false;
  }
  if (full_since_ == 0) full_since_ = tsc;
  return tsc - full_since_ >= p.overload_cycles;
}

unsigned Volumetric::dump_blocklist(VolumetricEntry* out, unsigned cap, std::uint64_t tsc,
                                    std::uint64_t tsc_hz) const noexcept {
  unsigned n = 0;
  for (std::uint32_t i = 0; i <= block_mask_ && n < cap; ++i) {
    const BlockHot& h = block_hot_[i];
    if (h.key == 0 || h.expires <= tsc) continue;
    const BlockCold& c = block_cold_[i];
    VolumetricEntry& e = out[n++];
    e = VolumetricEntry{};
    e.prefix = c.prefix;
    e.version = c.version;
    e.prefix_len = c.len;
    e.reason = c.reason;
    e.packets = c.drops;
    e.expires_in_ms = static_cast<std::uint64_t>(static_cast<double>(h.expires - tsc) * 1000.0 / static_cast<double>(tsc_hz));
  }
  return n;
}

unsigned Volumetric::dump_top(VolumetricEntry* out, unsigned cap) const noexcept {
  unsigned n = 0;
  const auto put = [&](const Top& t) {
    VolumetricEntry& e = out[n++];
    e = VolumetricEntry{};
    e.prefix = t.src.prefix;
    e.version = t.src.version;
    e.prefix_len = t.src.len;
    e.packets = t.est;
  };
  for (std::uint32_t i = 0; i < top_n_ && n < cap; ++i) put(top_[i]);
  // The previous window's, for sources not (yet) seen in this one.
  for (std::uint32_t i = 0; i < top_prev_n_ && n < cap; ++i) {
    bool seen = false;
    for (std::uint32_t j = 0; j < top_n_; ++j) seen = seen || top_[j].src.key == top_prev_[i].src.key;
    if (!seen) put(top_prev_[i]);
  }
  return n;
}

unsigned Volumetric::clear_blocklist(const std::uint8_t* addr, std::uint8_t version, std::uint8_t len,
                                     std::uint64_t tsc) noexcept {
  unsigned n = 0;
  for (std::uint32_t i = 0; i <= block_mask_; ++i) {
    BlockHot& h = block_hot_[i];
    if (h.key == 0 || h.expires == 0) continue;
    const BlockCold& c = block_cold_[i];
    bool match = version == 0;
    if (!match && c.version == version) {  // either prefix inside the other
      match = true;
      const unsigned bits = std::min(c.len, len);
      for (unsigned b = 0; b < bits && match; ++b)
        match = ((c.prefix[b / 8] ^ addr[b / 8]) & (0x80 >> (b % 8))) == 0;
    }
    if (!match) continue;
    n += h.expires > tsc;
    h.expires = 0;  // the key stays: probe chains through it remain intact
  }
  if (version == 0) {
    std::memset(static_cast<void*>(block_hot_), 0, sizeof(BlockHot) * (block_mask_ + 1));
    live_until_ = 0;
  }
  return n;
}

}  // namespace zt::dp
