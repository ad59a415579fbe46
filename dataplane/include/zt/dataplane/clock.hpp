// The dataplane's wall clock (dataplane/README.md "Clock"). Workers extrapolate it from the TSC,
// never a system call per burst, from an anchor (CLOCK_REALTIME, TSC) that the control side
// compares with CLOCK_REALTIME every ~100 ms and publishes again when the two disagree: an NTP
// step or slew, an operator's `date -s`, a TSC rate DPDK estimated slightly wrong. Workers pick a
// new anchor up between bursts through a seqlock: one load when nothing changed, never a wait.
//
// Replay safety does not live here: this clock follows the wall clock both ways. The verifier
// judges tags at max(this clock, the newest time its replay filter recorded a MAC at)
// (crypto/README.md "Replay filter"), so a step back cannot reopen time the filter has forgotten.
//
// Pure code with no DPDK, so the tests drive it with made-up TSC values.
#pragma once

#include <atomic>
#include <cstdint>

namespace zt::dp {

struct ClockAnchor {
  std::int64_t base_ns = 0;    // CLOCK_REALTIME (ns since the Unix epoch) at base_tsc
  std::uint64_t base_tsc = 0;
  friend bool operator==(const ClockAnchor&, const ClockAnchor&) = default;
};

// The wall time at `tsc` by anchor `a`. A `tsc` a little before base_tsc (read on another core
// just before the anchor was taken) gives a time a little before base_ns, not a wrap.
inline std::int64_t wall_at(const ClockAnchor& a, std::uint64_t tsc, double ns_per_tick) noexcept {
  const auto ticks = static_cast<std::int64_t>(tsc - a.base_tsc);
  return a.base_ns + static_cast<std::int64_t>(static_cast<double>(ticks) * ns_per_tick);
}

struct ClockFollowConfig {
  // Re-anchor when the TSC-derived clock is off the wall clock by more than this: follows NTP
  // slewing and an imprecise TSC rate as a saw-tooth of at most this amplitude.
  std::int64_t adjust_ns = 1'000'000;
  // A difference beyond this is a step of the wall clock: counted and logged as such.
  std::int64_t step_ns = 20'000'000;
};

enum class ClockChange : std::uint8_t { none, adjust, step };

struct ClockDecision {
  ClockChange change = ClockChange::none;
  // Wall clock minus the TSC-derived clock at the sample: > 0 the wall clock went forward.
  std::int64_t offset_ns = 0;
  ClockAnchor anchor;  // what the workers should extrapolate from (the current one if none)
};

// One sample on the control side: the wall clock read `wall_ns` at `tsc`, the workers'
// current anchor `cur`. Says whether to publish a new anchor, and whether that is a step.
inline ClockDecision follow_clock(const ClockAnchor& cur, std::int64_t wall_ns, std::uint64_t tsc,
                                  double ns_per_tick, const ClockFollowConfig& cfg = {}) noexcept {
  ClockDecision d;
  d.anchor = cur;
  d.offset_ns = wall_ns - wall_at(cur, tsc, ns_per_tick);
  const std::int64_t size = d.offset_ns < 0 ? -d.offset_ns : d.offset_ns;
  if (size <= cfg.adjust_ns) return d;
  d.change = size > cfg.step_ns ? ClockChange::step : ClockChange::adjust;
  d.anchor = {wall_ns, tsc};
  return d;
}

// The anchor every worker reads: one writer (the control side), any number of readers, no lock.
// A seqlock (even sequence: stable; odd: a write under way) over two atomics.
class ClockAnchorCell {
 public:
  void publish(const ClockAnchor& a) noexcept {
    const std::uint32_t s = seq_.load(std::memory_order_relaxed);
    seq_.store(s + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    ns_.store(a.base_ns, std::memory_order_relaxed);
    tsc_.store(a.base_tsc, std::memory_order_relaxed);
    seq_.store(s + 2, std::memory_order_release);
  }
  // 0 until the first publish; changes with every publish.
  std::uint32_t sequence() const noexcept { return seq_.load(std::memory_order_acquire); }
  // One attempt, no spinning: false when never published or a write is under way (the reader
  // keeps its anchor and tries again next time); else `out` and `seq` are the published pair.
  bool try_read(ClockAnchor& out, std::uint32_t& seq) const noexcept {
    const std::uint32_t s1 = seq_.load(std::memory_order_acquire);
    if (s1 == 0 || (s1 & 1U) != 0) return false;
    const ClockAnchor a{ns_.load(std::memory_order_relaxed), tsc_.load(std::memory_order_relaxed)};
    std::atomic_thread_fence(std::memory_order_acquire);
    if (seq_.load(std::memory_order_relaxed) != s1) return false;
    out = a;
    seq = s1;
    return true;
  }

 private:
  alignas(64) std::atomic<std::uint32_t> seq_{0};
  std::atomic<std::int64_t> ns_{0};
  std::atomic<std::uint64_t> tsc_{0};
};

// A worker's view of the clock: its copy of the anchor, refreshed between bursts.
class WorkerClock {
 public:
  // `cell` may be null: then `initial` is used for good (tests and benchmarks that drive a
  // worker without a Runtime).
  WorkerClock(const ClockAnchorCell* cell, ClockAnchor initial, double ns_per_tick) noexcept
      : cell_(cell), anchor_(initial), ns_per_tick_(ns_per_tick) {}
  // Between bursts: one load when nothing was published since the last refresh.
  void refresh() noexcept {
    if (cell_ != nullptr && cell_->sequence() != seq_) cell_->try_read(anchor_, seq_);
  }
  std::int64_t now_ns(std::uint64_t tsc) const noexcept { return wall_at(anchor_, tsc, ns_per_tick_); }
  const ClockAnchor& anchor() const noexcept { return anchor_; }

 private:
  const ClockAnchorCell* cell_;
  ClockAnchor anchor_;
  double ns_per_tick_;
  std::uint32_t seq_ = 0;
};

}  // namespace zt::dp
