// Strict, bounds-checked packet parser (DESIGN.md §4). It reads headers only, never writes, and
// either fills a ParsedPacket or names the DropReason that refuses the packet. Nothing is ever
// "passed unparsed".
//
// The core works on a contiguous byte window (`parse_frame`), so it needs no EAL and can be
// unit-tested and fuzzed on plain buffers. `parse_mbuf` (mbuf_parser.hpp) feeds it from a
// possibly multi-segment rte_mbuf.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include <emmintrin.h>

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
// parse_frame with the fast path inlined into the caller (the pipeline's parse loop: no call per
// packet); the same answers. Defined at the end of this header.
inline DropReason parse_frame_inlined(std::span<const std::uint8_t> window, std::uint32_t pkt_len,
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


// ---- Inline fast path (dataplane/README.md "Fast path") ----
// In the header so the pipeline's parse loop inlines it (no call per packet); the full parser
// stays in parser.cpp. Nothing here is API: use parse_frame, parse_frame_inlined (hot loops) or
// parse_frame_fast.
namespace parser_detail {

constexpr std::uint16_t kEtherIpv4 = 0x0800;
constexpr std::uint16_t kEtherIpv6 = 0x86DD;
constexpr std::uint16_t kEtherArp = 0x0806;
constexpr std::uint16_t kEtherVlan = 0x8100;  // 802.1Q C-tag
constexpr std::uint16_t kEtherQinq = 0x88A8;  // 802.1ad S-tag

constexpr std::uint8_t kProtoIcmp = 1;
constexpr std::uint8_t kProtoTcp = 6;
constexpr std::uint8_t kProtoUdp = 17;
constexpr std::uint8_t kProtoIcmpv6 = 58;

constexpr std::uint8_t kIp6HopByHop = 0;
constexpr std::uint8_t kIp6Routing = 43;
constexpr std::uint8_t kIp6Fragment = 44;
constexpr std::uint8_t kIp6Ah = 51;
constexpr std::uint8_t kIp6DestOpts = 60;

constexpr std::uint32_t kEthHdrLen = 14;
constexpr std::uint32_t kVlanTagLen = 4;
constexpr std::uint32_t kArpFixedLen = 8;
constexpr std::uint32_t kIpv4HdrLen = 20;
constexpr std::uint32_t kIpv6HdrLen = 40;
constexpr std::uint32_t kIpv6FragHdrLen = 8;
constexpr std::uint32_t kAhMinLen = 12;  // next header, length, reserved, SPI, sequence number
constexpr std::uint32_t kTcpHdrLen = 20;
constexpr std::uint32_t kUdpHdrLen = 8;
constexpr std::uint32_t kIcmpHdrLen = 8;
constexpr std::uint32_t kGeneveHdrLen = 8;
constexpr std::uint32_t kGeneveOptHdrLen = 4;
constexpr std::uint32_t kMaxIpDatagram = 65535;

constexpr std::uint16_t load16(const std::uint8_t* p) noexcept {
  return static_cast<std::uint16_t>(p[0] << 8 | p[1]);
}
constexpr std::uint32_t load32(const std::uint8_t* p) noexcept {
  return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3];
}

// Flag combinations some stack sends. Without ACK only a SYN (opening) or a RST (refusing) is
// legitimate (RFC 9293: every segment after the SYN carries ACK); SYN+RST means different things to
// different receivers, which is what evasion wants. SYN+FIN is left to the flow table
// (`tcp_bad_state`), which refuses it in every state.
constexpr bool tcp_flags_plausible(std::uint8_t f) noexcept {
  constexpr std::uint8_t kSyn = 0x02, kRst = 0x04, kAck = 0x10;
  const bool syn = f & kSyn, rst = f & kRst, ack = f & kAck;
  if (syn && rst) return false;
  return ack || syn || rst;
}

inline void copy_addr(IpAddr& dst, const std::uint8_t* src, std::size_t n) noexcept {
  std::memcpy(dst.b.data(), src, n);
}

// An IPv4 address and its 12 zero bytes as one 16-byte store. The flow key reads the address
// as 16 bytes right after the parser wrote it; a 4-byte store over a cleared IpLayer cannot be
// forwarded to that load (it spans two stores), which stalls it until both reach the cache.
inline void set_v4_addr(IpAddr& dst, const std::uint8_t* src) noexcept {
  std::uint32_t a;
  std::memcpy(&a, src, 4);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(dst.b.data()), _mm_cvtsi32_si128(static_cast<int>(a)));
}

// What an accepted IPv4 header at `off` fills, in the full parser and the fast path alike.
[[gnu::always_inline]] inline void fill_ipv4(IpLayer& l, const std::uint8_t* p, std::uint32_t off, std::uint32_t hdr_len,
                      std::uint32_t total) noexcept {
  l.version = 4;
  l.l3_off = static_cast<std::uint16_t>(off);
  l.l4_off = static_cast<std::uint16_t>(off + hdr_len);
  l.l4_len = total - hdr_len;
  l.ttl = p[8];
  l.proto = p[9];
  set_v4_addr(l.src, p + 12);
  set_v4_addr(l.dst, p + 16);
}

// The frame nearly every packet is: Ethernet [+ one VLAN tag] / IPv4 without options or IPv6
// without extension headers, not a fragment / TCP or UDP [/ Geneve whose only option is the
// identity tag / the same again inside]. These helpers accept such a frame only when every check
// the full parser makes on it passes, and then fill exactly the fields the full parser fills;
// anything else (another shape, or a check that fails) answers false and the full parser decides,
// reason and all. So the fast path can change the cost of a packet, never its verdict
// (ParserFastPath.* compare both on every shape either takes).

// `d` is the window (`win` bytes, already clamped as Reader does). [off, off + n) inside both the
// enclosing layer (`end`) and the window.
[[gnu::always_inline]] inline bool fits(std::uint32_t off, std::uint32_t n, std::uint32_t end, std::uint32_t win) noexcept {
  const std::uint32_t stop = off + n;
  return stop <= end && stop <= win;
}

// One's-complement sum of a 20-byte IPv4 header is 0xFFFF: five 32-bit words added in 64 bits and
// folded (the sum does not depend on byte order, so native loads are fine).
[[gnu::always_inline]] inline bool ipv4_checksum20_ok(const std::uint8_t* p) noexcept {
  std::uint32_t w[5];
  std::memcpy(w, p, sizeof w);
  const std::uint64_t sum = std::uint64_t{w[0]} + w[1] + w[2] + w[3] + w[4];
  // Folding with end-around carry keeps the value mod 0xFFFF (2^16 = 1 mod 0xFFFF) and gives
  // 0xFFFF for any non-zero multiple of it: so "folds to 0xFFFF" is "non-zero and divisible by
  // 0xFFFF". GCC 12 tests that with a multiply in most inlined copies but with a 64-bit DIV in
  // run_burst's; the explicit inverse-multiply test measured no different there (perf/README
  // part 8), so it is left to the compiler.
  return sum != 0 && sum % 0xFFFFu == 0;
}

// TCP or UDP of a whole (unfragmented) datagram, as parse_l4 with `first` false.
[[gnu::always_inline]] inline bool fast_l4(const std::uint8_t* d, std::uint32_t win, IpLayer& l) noexcept {
  const std::uint32_t off = l.l4_off;
  const std::uint32_t end = off + l.l4_len;
  const std::uint8_t* p = d + off;
  if (l.proto == kProtoUdp) {
    if (!fits(off, kUdpHdrLen, end, win)) return false;
    if (load16(p + 4) != l.l4_len) return false;  // l4_len >= 8 here, so ulen >= 8 too
    l.sport = load16(p);
    l.dport = load16(p + 2);
    l.l4_hdr_len = kUdpHdrLen;
    return true;
  }
  if (l.proto == kProtoTcp) {
    if (!fits(off, kTcpHdrLen, end, win)) return false;
    const std::uint32_t doff = (p[12] >> 4) * 4u;
    if (doff < kTcpHdrLen || !fits(off, doff, end, win)) return false;
    if (!tcp_flags_plausible(p[13])) return false;
    l.sport = load16(p);
    l.dport = load16(p + 2);
    l.tcp_flags = p[13];
    l.l4_hdr_len = static_cast<std::uint8_t>(doff);
    return true;
  }
  return false;
}

// IPv4 without options and not a fragment, or IPv6 without extension headers, then TCP/UDP.
// `exact` as for parse_ipv4 / parse_ipv6.
[[gnu::always_inline]] inline bool fast_ip(const std::uint8_t* d, std::uint32_t win, bool v6, std::uint32_t off,
                    std::uint32_t end, bool exact, IpLayer& l) noexcept {
  const std::uint8_t* p = d + off;
  const std::uint32_t room = end - off;
  if (!v6) {
    if (!fits(off, kIpv4HdrLen, end, win) || p[0] != 0x45) return false;
    const std::uint32_t total = load16(p + 2);
    if (total < kIpv4HdrLen || (exact ? total != room : total > room)) return false;
    // Not a fragment, reserved flag clear (DF may be set); TTL 0 goes to the full parser.
    if ((load16(p + 6) & 0xBFFFu) != 0 || p[8] == 0) return false;
    if (!ipv4_checksum20_ok(p)) return false;
    fill_ipv4(l, p, off, kIpv4HdrLen, total);
  } else {
    if (!fits(off, kIpv6HdrLen, end, win) || (p[0] >> 4) != 6) return false;
    const std::uint32_t plen = load16(p + 4);
    if (plen == 0 || (exact ? kIpv6HdrLen + plen != room : kIpv6HdrLen + plen > room)) return false;
    if (p[7] == 0 || (p[6] != kProtoTcp && p[6] != kProtoUdp)) return false;
    l.version = 6;
    l.l3_off = static_cast<std::uint16_t>(off);
    l.l4_off = static_cast<std::uint16_t>(off + kIpv6HdrLen);
    l.l4_len = plen;
    l.ttl = p[7];
    l.proto = p[6];
    copy_addr(l.src, p + 8, 16);
    copy_addr(l.dst, p + 24, 16);
  }
  return fast_l4(d, win, l);
}

// Geneve whose only option is the identity tag, then an inner IPv4/IPv6 TCP/UDP packet that is
// not itself Geneve: parse_geneve's answer for that shape.
[[gnu::always_inline]] inline bool fast_geneve(const std::uint8_t* d, std::uint32_t win, ParsedPacket& out) noexcept {
  const std::uint32_t off = out.outer.l4_off + kUdpHdrLen;
  const std::uint32_t end = out.outer.l4_off + out.outer.l4_len;
  constexpr std::uint32_t kOpts = kGeneveOptHdrLen + kTagBodyLen;
  if (!fits(off, kGeneveHdrLen + kOpts, end, win)) return false;
  const std::uint8_t* p = d + off;
  // Version 0 and 9 words of options (the tag option alone). The O and C bits in p[1] are not
  // checked by the full parser either.
  if (p[0] != kOpts / 4) return false;
  const std::uint16_t inner_type = load16(p + 2);
  if (inner_type != kEtherIpv4 && inner_type != kEtherIpv6) return false;
  const std::uint8_t* q = p + kGeneveHdrLen;
  if (load16(q) != kTagOptionClass || q[2] != kTagOptionType || (q[3] & 0x1Fu) != kTagBodyLen / 4)
    return false;
  const std::uint32_t inner_off = off + kGeneveHdrLen + kOpts;
  if (!fast_ip(d, win, inner_type == kEtherIpv6, inner_off, end, true, out.inner)) return false;
  if (out.inner.proto == kProtoUdp && out.inner.dport == kGenevePort) return false;  // nested
  out.kind = FrameKind::geneve;
  out.geneve_off = static_cast<std::uint16_t>(off);
  out.vni = load32(p + 4) >> 8;
  out.tag_off = static_cast<std::uint16_t>(off + kGeneveHdrLen + kGeneveOptHdrLen);
  return true;
}

// The whole fast path, inlined into parse_frame (no call per layer) and parse_frame_fast.
[[gnu::always_inline]] inline bool fast_frame(std::span<const std::uint8_t> window, std::uint32_t pkt_len,
                                              ParsedPacket& out) noexcept {
  const auto win = static_cast<std::uint32_t>(std::min<std::size_t>({window.size(), pkt_len, kParseWindow}));
  const std::uint8_t* d = window.data();
  if (win < kEthHdrLen + kIpv4HdrLen) return false;
  // A new member of ParsedPacket or IpLayer must be cleared here too (IpLayer{} covers IpLayer).
  static_assert(sizeof(ParsedPacket) == 144 && sizeof(IpLayer) == 60, "clear the new member below");
  // Member by member rather than `out = ParsedPacket{}`: GCC turns that 140-byte clear into
  // `rep stos`, whose start-up alone costs tens of cycles a packet; two 60-byte IpLayer clears
  // and a few scalars are plain vector stores.
  out.pkt_len = pkt_len;
  out.vlan_count = 0;
  out.vlan_tci = {};
  out.kind = FrameKind::ip;
  out.outer = IpLayer{};
  out.geneve_off = 0;
  out.tag_off = 0;
  out.vni = 0;
  out.inner = IpLayer{};
  std::uint16_t ethertype = load16(d + 12);
  std::uint32_t off = kEthHdrLen;
  if (ethertype == kEtherVlan || ethertype == kEtherQinq) {
    out.vlan_tci[0] = load16(d + kEthHdrLen);
    ethertype = load16(d + kEthHdrLen + 2);
    out.vlan_count = 1;
    off += kVlanTagLen;
  }
  if (ethertype != kEtherIpv4 && ethertype != kEtherIpv6) return false;
  out.l2_len = static_cast<std::uint16_t>(off);
  out.ethertype = ethertype;
  if (!fast_ip(d, win, ethertype == kEtherIpv6, off, pkt_len, false, out.outer)) return false;
  if (out.outer.proto != kProtoUdp || out.outer.dport != kGenevePort) return true;
  return fast_geneve(d, win, out);
}

}  // namespace parser_detail

[[gnu::always_inline]] inline DropReason parse_frame_inlined(std::span<const std::uint8_t> window,
                                                            std::uint32_t pkt_len, ParsedPacket& out) noexcept {
  if (parser_detail::fast_frame(window, pkt_len, out)) [[likely]]
    return DropReason::none;
  return parse_frame_full(window, pkt_len, out);
}

}  // namespace zt::dp
