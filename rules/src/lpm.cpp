#include "zt/rules/lpm.hpp"

#include <algorithm>

namespace zt::rules {

Lpm Lpm::build(std::span<const std::pair<IpPrefix, std::uint32_t>> entries, bool v6) {
  std::vector<std::pair<IpPrefix, std::uint32_t>> sorted;
  for (auto& e : entries)
    if (e.first.addr.v6 == v6) sorted.push_back(e);
  // Shorter prefixes first: a longer one then overwrites (or pushes down into a node) what a
  // shorter one wrote, and a node is always created holding its parent's value.
  std::stable_sort(sorted.begin(), sorted.end(), [](auto& a, auto& b) { return a.first.len < b.first.len; });
  Lpm lpm;
  auto& t = lpm.table_;
  for (auto& [p, value] : sorted) {
    const auto& b = p.addr.bytes;
    if (p.len <= 16) {
      std::uint32_t first = (std::uint32_t{b[0]} << 8) | b[1];
      std::uint32_t count = 1u << (16 - p.len);
      std::fill(t.begin() + first, t.begin() + first + count, value);
      continue;
    }
    std::size_t slot = (std::uint32_t{b[0]} << 8) | b[1];
    unsigned depth_bits = 16;  // bits consumed once we step below `slot`
    for (unsigned level = 2;; ++level) {
      if ((t[slot] & kNode) == 0) {
        auto node = static_cast<std::uint32_t>((t.size() - kRootSize) / 256);
        std::uint32_t inherited = t[slot];
        t.resize(t.size() + 256, inherited);
        t[slot] = kNode | node;
      }
      std::size_t base = kRootSize + std::size_t(t[slot] & ~kNode) * 256;
      depth_bits += 8;
      if (p.len <= depth_bits) {
        unsigned span_bits = depth_bits - p.len;
        std::size_t first = base + (b[level] & ~((1u << span_bits) - 1));
        std::fill(t.begin() + first, t.begin() + first + (std::size_t{1} << span_bits), value);
        break;
      }
      slot = base + b[level];
    }
  }
  return lpm;
}

}  // namespace zt::rules
