// Burst-loop constants shared by the worker and the pipeline.
#pragma once

#include <cstdint>

namespace zt::dp {

inline constexpr std::uint16_t kBurst = 32;
// Frames are prefetched this many packets ahead of the parser. 8 rather than 4 (2026-11-25,
// pipeline_full_bench, 3 alternated rounds each): forged-tag flood to an allowed destination
// 305-311 -> 297-301 cycles/packet (parse stage -5), untagged flood 108-121 -> 107-110,
// established HDR 64 B unchanged (491-521 either way, memory-bound).
inline constexpr unsigned kPrefetchAhead = 8;
inline constexpr unsigned kTxRetries = 8;

}  // namespace zt::dp
