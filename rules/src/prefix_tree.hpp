// Nesting of a set of distinct prefixes: each prefix's immediate parent (the longest other prefix
// that contains it). Shared by the validator (conflicting labels) and the compiler (leaf chains).
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "zt/rules/types.hpp"

namespace zt::rules::detail {

inline constexpr std::int32_t kNoParent = -1;

// `prefixes` must be distinct. Returns parent index per prefix, or kNoParent.
inline std::vector<std::int32_t> prefix_parents(const std::vector<IpPrefix>& prefixes) {
  std::vector<std::int32_t> order(prefixes.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) {
    const auto &pa = prefixes[a], &pb = prefixes[b];
    if (pa.addr.v6 != pb.addr.v6) return !pa.addr.v6;
    if (pa.addr.bytes != pb.addr.bytes) return pa.addr.bytes < pb.addr.bytes;
    return pa.len < pb.len;
  });
  std::vector<std::int32_t> parent(prefixes.size(), kNoParent), stack;
  for (auto i : order) {
    while (!stack.empty() && !prefixes[stack.back()].contains(prefixes[i])) stack.pop_back();
    if (!stack.empty()) parent[i] = stack.back();
    stack.push_back(i);
  }
  return parent;
}

}  // namespace zt::rules::detail
