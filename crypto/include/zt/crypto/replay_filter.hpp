// Duplicate suppression for identity tags (DESIGN.md §2), one instance per worker lcore.
//
// Three rotating blocked Bloom filters keyed on the tag's MAC. Time is cut into periods of the tag
// time window W; filter (p mod 3) records period p. A lookup checks periods p, p-1, p-2 and inserts
// into p, so a MAC stays visible for at least 2W: exactly the span in which a copy of an accepted
// tag can still pass the ±W freshness check.
//
// Blocked: a key selects one 64-byte block per filter, and all k bits sit inside it, so a check
// touches one cache line per filter; the three filters' blocks of a key are adjacent in memory
// (one 192-byte group, same page), so a lookup is one TLB translation and one burst of DRAM reads. Each block carries the period it belongs to in its last 32
// bits (480 bits remain for the filter); a block stamped with an older period reads as empty and is
// cleared on the next insert, so rotation costs nothing: no sweeping memset on the fast path.
//
// Hashing: block and bit positions come from a multiply-fold hash of the MAC mixed with a 256-bit
// secret seed, so a sender that holds a valid key cannot aim many MACs at one block (it cannot
// predict where they land).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "zt/crypto/error.hpp"

namespace zt::crypto {

struct ReplayFilterConfig {
  double packets_per_second = 15e6;           // accepted tags per second this lcore must hold
  std::int64_t window_ns = 1'000'000'000;     // the tag time window W (rotation period)
  double false_drop_rate = 1e-4;              // bound on a fresh tag being taken for a replay
};

struct ReplayFilterSizing {
  std::size_t blocks_per_filter = 0;
  unsigned k = 0;                             // bits set per key
  double false_drop_rate = 0;                 // computed bound (all three filters full)
  std::size_t bytes = 0;                      // memory of all three filters
};

// Smallest filter meeting the config: blocked-Bloom false-positive rate computed exactly
// (Poisson block loads), summed over the three filters, each holding pps * W keys.
ReplayFilterSizing size_replay_filter(const ReplayFilterConfig& cfg) noexcept;

class ReplayFilter {
 public:
  static constexpr std::size_t kFilters = 3;
  static constexpr unsigned kBlockBits = 480;

  // Allocates and zeroes the filters (setup path). The seed comes from OpenSSL's RAND_bytes
  // unless given (tests pass one to be reproducible).
  static Result<ReplayFilter> create(const ReplayFilterConfig& cfg);
  static Result<ReplayFilter> create(const ReplayFilterConfig& cfg,
                                     std::span<const std::uint8_t, 32> seed);
  ReplayFilter(ReplayFilter&&) noexcept;
  ReplayFilter& operator=(ReplayFilter&&) noexcept;
  ~ReplayFilter();

  // True if `mac` was recorded in this or the two previous periods (a replay); otherwise records
  // it in the current period and returns false.
  bool check_and_insert(std::span<const std::uint8_t, 16> mac, std::int64_t now_ns) noexcept;
  // The newest time a MAC was recorded at (INT64_MIN before the first). A lookup at an earlier
  // time would miss the periods after it, so whoever judges tags must not judge them earlier
  // than this when the clock steps back: the Verifier uses max(now, newest_ns()).
  std::int64_t newest_ns() const noexcept { return newest_ns_; }
  // True if `mac` is recorded (no insert).
  bool contains(std::span<const std::uint8_t, 16> mac, std::int64_t now_ns) const noexcept;
  // Prefetches the blocks `mac` maps to (issue before the MAC work of a burst).
  void prefetch(const std::uint8_t* mac) const noexcept;

  const ReplayFilterSizing& sizing() const noexcept { return sizing_; }
  // W: a MAC stays recorded for at least 2W, so tags are fresh for at most ±W where this filter
  // guards them (the verifier narrows the key ring's window to it).
  std::int64_t window_ns() const noexcept { return window_ns_; }

 private:
  struct Probe {
    std::size_t block;
    std::array<std::uint64_t, 8> mask;
  };
  ReplayFilter() = default;
  Probe probe(const std::uint8_t* mac) const noexcept;
  // Whether the key of `pr` is set in period `p` or the two before it.
  bool recorded(const Probe& pr, std::uint64_t p) const noexcept;
  std::uint64_t period(std::int64_t now_ns) const noexcept;
  // The three filters are interleaved: block b of filter f is line 3b + f, so one key's three
  // lines are adjacent (one page, one TLB entry, one DRAM row) and fetched together.
  std::uint64_t* line(std::size_t block, std::uint64_t period) const noexcept {
    return mem_ + (block * kFilters + period % kFilters) * 8;
  }

  ReplayFilterSizing sizing_{};
  std::int64_t window_ns_ = 0;
  std::int64_t newest_ns_ = INT64_MIN;
  std::int64_t period_at_ = INT64_MIN;  // the time period_of_ is the period of (check_and_insert)
  std::uint64_t period_of_ = 0;
  std::array<std::uint64_t, 4> seed_{};
  std::uint64_t* mem_ = nullptr;   // kFilters * blocks * 8 words, 64-byte aligned
  std::size_t mem_bytes_ = 0;
};

}  // namespace zt::crypto
