// Burst-loop constants shared by the worker and the pipeline.
#pragma once

#include <cstdint>

namespace zt::dp {

inline constexpr std::uint16_t kBurst = 32;
inline constexpr unsigned kPrefetchAhead = 4;
inline constexpr unsigned kTxRetries = 8;

}  // namespace zt::dp
