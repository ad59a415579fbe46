// Frame building for ztgen: addresses, Ethernet, IPv4/IPv6, TCP/UDP/ICMP with correct lengths and
// checksums. Malformed frames are made by building a correct one and then breaking one field, so
// every hostile frame differs from a good one in exactly the way its name says.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace zt::ztgen {

using Bytes = std::vector<std::uint8_t>;

inline constexpr std::uint8_t kTcp = 6, kUdp = 17, kIcmp = 1, kIcmp6 = 58;
inline constexpr std::uint16_t kEtherIpv4 = 0x0800, kEtherIpv6 = 0x86DD;
inline constexpr std::size_t kEthLen = 14;

struct Addr {
  std::uint8_t version = 4;
  std::array<std::uint8_t, 16> b{};  // IPv4 in the first 4 bytes
  friend bool operator==(const Addr&, const Addr&) = default;
};
std::optional<Addr> parse_addr(std::string_view s);
std::string to_string(const Addr& a);

using Mac = std::array<std::uint8_t, 6>;
std::optional<Mac> parse_mac(std::string_view s);

// The L4 part of a packet to build.
struct L4Spec {
  std::uint8_t proto = kTcp;   // tcp, udp, icmp (icmpv6 over IPv6) or any other number (opaque)
  std::uint16_t sport = 40000;
  std::uint16_t dport = 80;
  std::uint8_t tcp_flags = 0x02;
  std::uint32_t seq = 1;
  Bytes payload;
};

// Internet checksum of `data` added to `sum` (not yet complemented).
std::uint32_t checksum_add(std::uint32_t sum, std::span<const std::uint8_t> data) noexcept;
std::uint16_t checksum_fold(std::uint32_t sum) noexcept;

// L4 header + payload with its checksum (pseudo-header of src/dst).
Bytes build_l4(const Addr& src, const Addr& dst, const L4Spec& l4);
// Length of the L4 header build_l4 writes for `proto`.
std::size_t l4_header_len(std::uint8_t proto) noexcept;
// Fixed IPv4 header (20 bytes, checksum filled) or IPv6 header (40 bytes) in front of `payload`
// of protocol / next header `proto`.
Bytes build_ip(const Addr& src, const Addr& dst, std::uint8_t proto, std::span<const std::uint8_t> payload,
               std::uint16_t ip_id = 1, std::uint8_t ttl = 64);
// A whole IP packet: IP header + build_l4.
Bytes build_ip_packet(const Addr& src, const Addr& dst, const L4Spec& l4, std::uint16_t ip_id = 1);
// Ethernet header (no FCS) in front of `payload`.
Bytes build_eth(const Mac& dst, const Mac& src, std::uint16_t ethertype, std::span<const std::uint8_t> payload);
// Recomputes the IPv4 header checksum of the header at `off`.
void fix_ipv4_checksum(Bytes& b, std::size_t off);

inline void put16(Bytes& b, std::size_t off, std::uint16_t v) {
  b.at(off) = static_cast<std::uint8_t>(v >> 8);
  b.at(off + 1) = static_cast<std::uint8_t>(v);
}
inline std::uint16_t get16(const Bytes& b, std::size_t off) {
  return static_cast<std::uint16_t>(b.at(off) << 8 | b.at(off + 1));
}

}  // namespace zt::ztgen
