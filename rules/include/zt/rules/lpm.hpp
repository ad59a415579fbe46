// Longest-prefix match for IPv4 and IPv6 without DPDK: a multibit trie with a 16-bit root
// (65536 entries) and 8-bit levels below, built by controlled prefix expansion. An IPv4 lookup is
// at most 3 dependent loads, an IPv6 lookup at most 15; the root alone answers /16 and shorter.
// Immutable after build(); lookups are noexcept and allocation-free.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "zt/rules/types.hpp"

namespace zt::rules {

class Lpm {
 public:
  // Values must be in 1..2^31-1; 0 is "no match". Prefixes of the other family are ignored.
  static Lpm build(std::span<const std::pair<IpPrefix, std::uint32_t>> entries, bool v6);

  std::uint32_t lookup(const IpAddress& a) const noexcept {
    const std::uint32_t* t = table_.data();
    std::uint32_t e = t[(std::uint32_t{a.bytes[0]} << 8) | a.bytes[1]];
    for (unsigned i = 2; (e & kNode) != 0; ++i) e = t[kRootSize + (e & ~kNode) * 256 + a.bytes[i]];
    return e;
  }
  // IPv4 lookup of an address in host byte order (IpAddress::v4_host_order()); the same answer
  // as lookup() of that address, without an IpAddress: the root takes the top 16 bits, each
  // node level the next byte. Only for an Lpm built for IPv4.
  [[gnu::always_inline]] std::uint32_t lookup_v4(std::uint32_t a) const noexcept {
    const std::uint32_t* t = table_.data();
    std::uint32_t e = t[a >> 16];
    if ((e & kNode) != 0) {
      e = t[kRootSize + (e & ~kNode) * 256 + ((a >> 8) & 0xff)];
      if ((e & kNode) != 0) e = t[kRootSize + (e & ~kNode) * 256 + (a & 0xff)];
    }
    return e;
  }
  // The root entry a lookup of `a` reads first (for prefetching).
  const std::uint32_t* root_slot(const IpAddress& a) const noexcept {
    return &table_[(std::uint32_t{a.bytes[0]} << 8) | a.bytes[1]];
  }
  std::size_t memory_bytes() const noexcept { return table_.size() * sizeof(std::uint32_t); }
  bool empty() const noexcept { return table_.empty(); }

  Lpm() : table_(kRootSize, 0) {}

 private:
  static constexpr std::uint32_t kNode = 0x80000000u;
  static constexpr std::size_t kRootSize = 65536;
  std::vector<std::uint32_t> table_;  // root, then 256-entry nodes
};

}  // namespace zt::rules
