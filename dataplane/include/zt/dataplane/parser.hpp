// Strict, bounds-checked packet parser (DESIGN.md §4). It reads headers only, never writes, and
// either fills a ParsedPacket or names the DropReason that refuses the packet. Nothing is ever
// "passed unparsed".
//
// The core works on a contiguous byte window (`parse_frame`), so it needs no EAL and can be
// unit-tested and fuzzed on plain buffers. `parse_mbuf` (mbuf_parser.hpp) feeds it from a
// possibly multi-segment rte_mbuf.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "zt/rules/drop_reason.hpp"

namespace zt::dp {

using rules::DropReason;

// Headers beyond this many bytes from the start of the frame are not inspected; a header chain
// that needs more is dropped with header_chain_too_long. Large enough for QinQ + IPv6 with a
// long extension chain + UDP + Geneve with options + inner IPv6 + TCP with options.
inline constexpr std::size_t kParseWindow = 512;
// The IPv6 extension-header walk stops after this many headers (ipv6_ext_chain_too_long).
inline constexpr unsigned kMaxIpv6ExtHeaders = 8;

inline constexpr std::uint16_t kGenevePort = 6081;
inline constexpr std::uint16_t kTagOptionClass = 0xFFF0;
inline constexpr std::uint8_t kTagOptionType = 0x81;  // critical bit set
inline constexpr std::size_t kTagBodyLen = 32;

enum class FrameKind : std::uint8_t { arp, ip, geneve };
enum class FragKind : std::uint8_t { none, first, later };

// One IP address; IPv4 is stored in the first 4 bytes and the rest zero.
struct IpAddr {
  std::array<std::uint8_t, 16> b{};
  friend bool operator==(const IpAddr&, const IpAddr&) = default;
};

// An IP header and what follows it. Offsets count from the start of the frame.
struct IpLayer {
  std::uint16_t l3_off = 0;   // first byte of the IP header
  std::uint16_t l4_off = 0;   // first byte after the IP header and its extension headers
  std::uint32_t l4_len = 0;   // bytes of L4 (header + payload) as the IP lengths say; for a
                              // fragment, the part this fragment carries
  std::uint8_t version = 0;   // 4 or 6
  std::uint8_t proto = 0;     // final protocol (after the IPv6 extension chain)
  std::uint8_t ttl = 0;       // TTL / hop limit
  std::uint8_t tcp_flags = 0; // TCP only
  std::uint16_t sport = 0;    // TCP/UDP ports; ICMP: type in sport, code in dport
  std::uint16_t dport = 0;
  std::uint8_t l4_hdr_len = 0;  // TCP data offset * 4, UDP 8, ICMP 8 (0: opaque protocol)
  FragKind frag = FragKind::none;
  std::uint16_t frag_offset = 0;  // in bytes
  std::uint32_t frag_id = 0;
  bool ipv4_options = false;      // IPv4 header carried options
  std::uint8_t ipv6_ext_count = 0;
  IpAddr src, dst;

  friend bool operator==(const IpLayer&, const IpLayer&) = default;
};

struct ParsedPacket {
  std::uint32_t pkt_len = 0;      // whole frame
  std::uint16_t l2_len = 0;       // Ethernet + VLAN tags
  std::uint16_t ethertype = 0;    // after the VLAN tags
  std::uint8_t vlan_count = 0;
  std::array<std::uint16_t, 2> vlan_tci{};
  FrameKind kind = FrameKind::ip;
  IpLayer outer;                  // valid when kind is ip or geneve
  // Geneve only:
  std::uint16_t geneve_off = 0;   // first byte of the Geneve header
  std::uint16_t tag_off = 0;      // first byte of the 32-byte identity tag body; 0 if absent
  std::uint32_t vni = 0;
  IpLayer inner;                  // the encapsulated packet

  // The layer policy decides on: the inner packet of a Geneve frame, else the outer one.
  const IpLayer& flow() const noexcept { return kind == FrameKind::geneve ? inner : outer; }

  friend bool operator==(const ParsedPacket&, const ParsedPacket&) = default;
};

// Parses `window`, the first min(pkt_len, kParseWindow) bytes of a frame of `pkt_len` bytes.
// Returns DropReason::none and fills `out`, or the reason the frame must be dropped.
DropReason parse_frame(std::span<const std::uint8_t> window, std::uint32_t pkt_len,
                       ParsedPacket& out) noexcept;

// parse_frame is these two: the fast path for the common frame (Ethernet [+ one VLAN tag] / IPv4
// without options or IPv6 without extension headers, not a fragment / TCP or UDP [/ Geneve with
// the identity tag as its only option / IPv4|IPv6 / TCP|UDP]) returns true having filled `out`
// exactly as the full parser would (which then says DropReason::none); for any other frame, or
// any check that fails, it returns false and the full parser decides. Exposed for the tests
// that hold the two to the same answers and the benchmarks.
bool parse_frame_fast(std::span<const std::uint8_t> window, std::uint32_t pkt_len,
                      ParsedPacket& out) noexcept;
DropReason parse_frame_full(std::span<const std::uint8_t> window, std::uint32_t pkt_len,
                            ParsedPacket& out) noexcept;

}  // namespace zt::dp
