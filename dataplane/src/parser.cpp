// The strict packet parser (contract in parser.hpp, rules in dataplane/README.md "Parser").
//
// Every read goes through Reader::need(), which answers three ways: the bytes are there; the
// enclosing layer (frame, IP datagram, UDP datagram) really ends first, which is that layer's
// "truncated" reason; or they exist but lie past the inspection window (header_chain_too_long).
// No loop here runs over payload: the only loops walk VLAN tags (2), the IPv4 header (60 bytes),
// IPv6 extension headers (kMaxIpv6ExtHeaders) and Geneve options (252 bytes).
//
// No DPDK include on purpose: this file is also built by clang for libFuzzer.
#include "zt/dataplane/parser.hpp"

#include <algorithm>
#include <cstring>

namespace zt::dp {
namespace {

// Constants, load16/load32, fill_ipv4 and the fast path live in parser.hpp (parser_detail), so the
// pipeline inlines the fast path.
using namespace parser_detail;  // NOLINT(google-build-using-namespace)

// The bytes of one frame the parser may look at.
class Reader {
 public:
  Reader(std::span<const std::uint8_t> window, std::uint32_t pkt_len) noexcept
      : data_(window.data()),
        // A caller handing more than the contract says must not make us read past the frame
        // or inspect deeper than the window every other path gets.
        window_(static_cast<std::uint32_t>(
            std::min<std::size_t>({window.size(), pkt_len, kParseWindow}))) {}

  // [off, off + n) must lie inside the layer that ends at `end` (never past the frame) and
  // inside the window. Which of the two fails decides the reason.
  DropReason need(std::uint32_t off, std::uint32_t n, std::uint32_t end,
                  DropReason truncated) const noexcept {
    const std::uint32_t stop = off + n;
    if (stop > end) [[unlikely]]
      return truncated;
    if (stop > window_) [[unlikely]]
      return DropReason::header_chain_too_long;
    return DropReason::none;
  }

  const std::uint8_t* at(std::uint32_t off) const noexcept { return data_ + off; }
  std::uint32_t window() const noexcept { return window_; }

 private:
  const std::uint8_t* data_;
  std::uint32_t window_;
};

#define ZT_TRY(expr)                                             \
  do {                                                           \
    if (const DropReason r_ = (expr); r_ != DropReason::none) \
      [[unlikely]] return r_;                                    \
  } while (0)

bool ipv4_checksum_ok(const std::uint8_t* p, std::uint32_t len) noexcept {
  std::uint32_t sum = 0;
  for (std::uint32_t i = 0; i < len; i += 2) sum += load16(p + i);
  sum = (sum & 0xFFFF) + (sum >> 16);
  sum = (sum & 0xFFFF) + (sum >> 16);
  return sum == 0xFFFF;
}

constexpr std::uint8_t kOptLsrr = 0x83;  // loose source and record route (RFC 791)
constexpr std::uint8_t kOptSsrr = 0x89;  // strict source and record route

// Options are walked so a length that runs past the header is caught. Source routes are refused:
// the packet's real destination is the last address of the option, not the header's, so policy
// would judge the wrong flow (RFC 7126 §4.3-4.4 advises dropping them). Other options are left
// to policy (the worker sees ipv4_options).
DropReason check_ipv4_options(const std::uint8_t* hdr, std::uint32_t ihl) noexcept {
  std::uint32_t i = kIpv4HdrLen;
  while (i < ihl) {
    const std::uint8_t type = hdr[i];
    if (type == 0) break;  // end of option list: the rest is padding
    if (type == 1) {       // no-operation
      ++i;
      continue;
    }
    if (i + 1 >= ihl) return DropReason::ipv4_bad_options;
    const std::uint32_t len = hdr[i + 1];
    if (len < 2 || i + len > ihl) return DropReason::ipv4_bad_options;
    if (type == kOptLsrr || type == kOptSsrr) return DropReason::ip_source_route;
    i += len;
  }
  return DropReason::none;
}

// An IPv4 header at `off` in a region ending at `end`. `exact`: the datagram must fill the region
// (an encapsulated packet); otherwise bytes after it are Ethernet padding and allowed.
DropReason parse_ipv4(const Reader& r, std::uint32_t off, std::uint32_t end, bool exact,
                      IpLayer& l) noexcept {
  ZT_TRY(r.need(off, kIpv4HdrLen, end, DropReason::ipv4_truncated));
  const std::uint8_t* p = r.at(off);
  if ((p[0] >> 4) != 4) return DropReason::ipv4_bad_version;
  const std::uint32_t ihl = (p[0] & 0x0Fu) * 4;
  if (ihl < kIpv4HdrLen) return DropReason::ipv4_bad_ihl;
  const std::uint32_t total = load16(p + 2);
  if (total < kIpv4HdrLen) return DropReason::ipv4_bad_total_length;
  if (ihl > total) return DropReason::ipv4_bad_ihl;
  const std::uint32_t room = end - off;
  if (exact ? total != room : total > room) return DropReason::ipv4_bad_total_length;
  if (off + ihl > r.window()) return DropReason::header_chain_too_long;
  if (!ipv4_checksum_ok(p, ihl)) return DropReason::ipv4_bad_checksum;
  // A bump in the wire does not decrement TTL, so 1 passes (the next hop decides); 0 was never
  // forwarded by a router and only exists to confuse whoever inspects it.
  if (p[8] == 0) return DropReason::ip_ttl_zero;
  if (ihl > kIpv4HdrLen) {
    ZT_TRY(check_ipv4_options(p, ihl));
    l.ipv4_options = true;
  }

  fill_ipv4(l, p, off, ihl, total);

  const std::uint16_t frag_field = load16(p + 6);
  if ((frag_field & 0x8000) != 0) return DropReason::ipv4_reserved_flag;
  const bool more = (frag_field & 0x2000) != 0;
  const std::uint32_t frag_off = (frag_field & 0x1FFFu) * 8;
  if (more || frag_off != 0) {
    l.frag_id = load16(p + 4);
    l.frag_offset = static_cast<std::uint16_t>(frag_off);
    if (frag_off + l.l4_len > kMaxIpDatagram) return DropReason::ipv4_bad_fragment;
    // Empty fragments and non-last fragments of odd size have no legitimate sender; an offset of
    // 8 into TCP rewrites the header flags of the first fragment (RFC 1858 overlap attack).
    if (l.l4_len == 0 || (more && l.l4_len % 8 != 0) || (l.proto == kProtoTcp && frag_off == 8))
      return DropReason::ipv4_bad_fragment_size;
    l.frag = frag_off == 0 ? FragKind::first : FragKind::later;
  }
  return DropReason::none;
}

constexpr bool is_ipv6_ext(std::uint8_t nh) noexcept {
  return nh == kIp6HopByHop || nh == kIp6Routing || nh == kIp6Fragment || nh == kIp6Ah ||
         nh == kIp6DestOpts;
}

// An IPv6 header at `off` and its extension chain; `exact` as for parse_ipv4.
DropReason parse_ipv6(const Reader& r, std::uint32_t off, std::uint32_t end, bool exact,
                      IpLayer& l) noexcept {
  ZT_TRY(r.need(off, kIpv6HdrLen, end, DropReason::ipv6_truncated));
  const std::uint8_t* p = r.at(off);
  if ((p[0] >> 4) != 6) return DropReason::ipv6_bad_version;
  const std::uint32_t plen = load16(p + 4);
  if (plen == 0) return DropReason::ipv6_jumbogram;
  const std::uint32_t room = end - off;
  if (exact ? kIpv6HdrLen + plen != room : kIpv6HdrLen + plen > room)
    return DropReason::ipv6_bad_payload_length;

  if (p[7] == 0) return DropReason::ip_ttl_zero;  // as for IPv4

  l.version = 6;
  l.l3_off = static_cast<std::uint16_t>(off);
  l.ttl = p[7];
  copy_addr(l.src, p + 8, 16);
  copy_addr(l.dst, p + 24, 16);

  const std::uint32_t dgram_end = off + kIpv6HdrLen + plen;
  std::uint32_t cur = off + kIpv6HdrLen;
  std::uint8_t nh = p[6];
  bool seen_frag = false;
  while (is_ipv6_ext(nh)) {
    if (l.ipv6_ext_count == kMaxIpv6ExtHeaders) return DropReason::ipv6_ext_chain_too_long;
    if (nh == kIp6HopByHop && l.ipv6_ext_count != 0) return DropReason::ipv6_ext_misplaced;
    // RFC 7112: a first fragment must carry the whole chain, so a short one is refused as such.
    const DropReason short_reason = l.frag == FragKind::first ? DropReason::frag_first_too_short
                                                              : DropReason::ipv6_ext_truncated;
    ++l.ipv6_ext_count;
    if (nh == kIp6Fragment) {
      if (seen_frag) return DropReason::ipv6_bad_fragment;
      seen_frag = true;
      ZT_TRY(r.need(cur, kIpv6FragHdrLen, dgram_end, short_reason));
      const std::uint8_t* q = r.at(cur);
      nh = q[0];
      const std::uint16_t field = load16(q + 2);
      const std::uint32_t frag_off = field & 0xFFF8u;
      const bool more = (field & 1u) != 0;
      cur += kIpv6FragHdrLen;
      if (frag_off == 0 && !more) continue;  // atomic fragment: a whole datagram (RFC 6946)
      const std::uint32_t frag_len = dgram_end - cur;
      if (frag_off + frag_len > kMaxIpDatagram || frag_len == 0 || (more && frag_len % 8 != 0))
        return DropReason::ipv6_bad_fragment;
      l.frag_id = load32(q + 4);
      l.frag_offset = static_cast<std::uint16_t>(frag_off);
      if (frag_off != 0) {
        // The rest is the middle of a datagram; its headers are in the first fragment.
        l.frag = FragKind::later;
        break;
      }
      l.frag = FragKind::first;
      continue;
    }
    ZT_TRY(r.need(cur, 2, dgram_end, short_reason));
    const std::uint8_t* q = r.at(cur);
    const std::uint32_t len = nh == kIp6Ah ? (q[1] + 2u) * 4 : (q[1] + 1u) * 8;
    if (nh == kIp6Ah && len < kAhMinLen) return DropReason::ipv6_bad_ext_header;
    ZT_TRY(r.need(cur, len, dgram_end, short_reason));
    if (nh == kIp6Routing && q[2] == 0) return DropReason::ipv6_routing_type0;
    // Any other routing header with segments left sends the packet on to an address policy
    // never looked at (SRv6, RPL, Mobile IPv6): the IPv6 form of a source route. (A routing
    // header is at least 8 bytes, checked just above.)
    if (nh == kIp6Routing && q[3] != 0) return DropReason::ip_source_route;
    nh = q[0];
    cur += len;
  }
  l.proto = nh;
  l.l4_off = static_cast<std::uint16_t>(cur);
  l.l4_len = dgram_end - cur;
  return DropReason::none;
}

// The L4 header of a whole datagram, or of the first fragment of one: then the header must be
// whole in this fragment (RFC 1858, RFC 7112) and the UDP length covers the whole datagram.
DropReason parse_l4(const Reader& r, IpLayer& l) noexcept {
  const bool first = l.frag == FragKind::first;
  const std::uint32_t off = l.l4_off;
  const std::uint32_t end = off + l.l4_len;
  switch (l.proto) {
    case kProtoTcp: {
      ZT_TRY(r.need(off, kTcpHdrLen, end,
                    first ? DropReason::frag_first_too_short : DropReason::tcp_truncated));
      const std::uint8_t* p = r.at(off);
      const std::uint32_t doff = (p[12] >> 4) * 4u;
      if (doff < kTcpHdrLen) return DropReason::tcp_bad_offset;
      ZT_TRY(r.need(off, doff, end,
                    first ? DropReason::frag_first_too_short : DropReason::tcp_bad_offset));
      l.sport = load16(p);
      l.dport = load16(p + 2);
      l.tcp_flags = p[13];
      if (!tcp_flags_plausible(l.tcp_flags)) return DropReason::tcp_bad_flags;
      l.l4_hdr_len = static_cast<std::uint8_t>(doff);
      return DropReason::none;
    }
    case kProtoUdp: {
      ZT_TRY(r.need(off, kUdpHdrLen, end,
                    first ? DropReason::frag_first_too_short : DropReason::udp_truncated));
      const std::uint8_t* p = r.at(off);
      const std::uint32_t ulen = load16(p + 4);
      if (ulen < kUdpHdrLen) return DropReason::udp_bad_length;
      // A first fragment holds only part of the datagram the UDP length describes.
      if (first ? ulen <= l.l4_len : ulen != l.l4_len) return DropReason::udp_bad_length;
      l.sport = load16(p);
      l.dport = load16(p + 2);
      l.l4_hdr_len = kUdpHdrLen;
      return DropReason::none;
    }
    case kProtoIcmp:
    case kProtoIcmpv6: {
      // ICMP belongs to IPv4 and ICMPv6 to IPv6; the other pairing is just an opaque protocol.
      if ((l.proto == kProtoIcmp) != (l.version == 4)) return DropReason::none;
      ZT_TRY(r.need(off, kIcmpHdrLen, end,
                    first ? DropReason::frag_first_too_short : DropReason::icmp_truncated));
      const std::uint8_t* p = r.at(off);
      l.sport = p[0];  // type
      l.dport = p[1];  // code
      l.l4_hdr_len = kIcmpHdrLen;
      return DropReason::none;
    }
    default:
      return DropReason::none;  // opaque (ESP, GRE, SCTP, no next header, ...): no ports
  }
}

// An IP packet of either version and its L4 header (none for a non-first fragment).
DropReason parse_ip(const Reader& r, bool v6, std::uint32_t off, std::uint32_t end, bool exact,
                    IpLayer& l) noexcept {
  ZT_TRY(v6 ? parse_ipv6(r, off, end, exact, l) : parse_ipv4(r, off, end, exact, l));
  if (l.frag == FragKind::later) return DropReason::none;
  return parse_l4(r, l);
}

// The Geneve header and options after the outer UDP header, then the inner packet.
DropReason parse_geneve(const Reader& r, ParsedPacket& out) noexcept {
  const std::uint32_t off = out.outer.l4_off + kUdpHdrLen;
  const std::uint32_t end = out.outer.l4_off + out.outer.l4_len;
  ZT_TRY(r.need(off, kGeneveHdrLen, end, DropReason::geneve_truncated));
  const std::uint8_t* p = r.at(off);
  if ((p[0] >> 6) != 0) return DropReason::geneve_bad_version;
  const std::uint32_t opt_len = (p[0] & 0x3Fu) * 4;
  const std::uint16_t inner_type = load16(p + 2);
  out.kind = FrameKind::geneve;
  out.geneve_off = static_cast<std::uint16_t>(off);
  out.vni = load32(p + 4) >> 8;

  const std::uint32_t opt_start = off + kGeneveHdrLen;
  const std::uint32_t opt_end = opt_start + opt_len;
  ZT_TRY(r.need(opt_start, opt_len, end, DropReason::geneve_truncated));
  if (inner_type != kEtherIpv4 && inner_type != kEtherIpv6)
    return DropReason::geneve_inner_unsupported;

  // Option area and option lengths are both whole 4-byte words, so an option header always fits
  // once `cur < opt_end`; only the body can overrun.
  for (std::uint32_t cur = opt_start; cur < opt_end;) {
    const std::uint8_t* q = r.at(cur);
    const std::uint16_t cls = load16(q);
    const std::uint8_t type = q[2];
    const std::uint32_t len = kGeneveOptHdrLen + (q[3] & 0x1Fu) * 4;
    if (len > opt_end - cur) return DropReason::geneve_bad_option;
    if (cls == kTagOptionClass && type == kTagOptionType) {
      if (len != kGeneveOptHdrLen + kTagBodyLen || out.tag_off != 0)
        return DropReason::geneve_bad_tag_option;
      out.tag_off = static_cast<std::uint16_t>(cur + kGeneveOptHdrLen);
    } else if ((type & 0x80) != 0) {
      return DropReason::geneve_unknown_critical_option;  // RFC 8926 §3.5: must not be ignored
    }
    cur += len;
  }

  IpLayer& in = out.inner;
  const bool v6 = inner_type == kEtherIpv6;
  ZT_TRY(v6 ? parse_ipv6(r, opt_end, end, true, in) : parse_ipv4(r, opt_end, end, true, in));
  // The tag is bound to a whole inner packet; reassembling inside a tunnel is not offered.
  if (in.frag != FragKind::none) return DropReason::geneve_inner_fragment;
  ZT_TRY(parse_l4(r, in));
  if (in.proto == kProtoUdp && in.dport == kGenevePort) return DropReason::tunnel_nested;
  return DropReason::none;
}

}  // namespace

bool parse_frame_fast(std::span<const std::uint8_t> window, std::uint32_t pkt_len,
                      ParsedPacket& out) noexcept {
  return parser_detail::fast_frame(window, pkt_len, out);
}

DropReason parse_frame(std::span<const std::uint8_t> window, std::uint32_t pkt_len,
                       ParsedPacket& out) noexcept {
  return parse_frame_inlined(window, pkt_len, out);
}

DropReason parse_frame_full(std::span<const std::uint8_t> window, std::uint32_t pkt_len,
                            ParsedPacket& out) noexcept {
  out = ParsedPacket{};
  out.pkt_len = pkt_len;
  const Reader r(window, pkt_len);

  ZT_TRY(r.need(0, kEthHdrLen, pkt_len, DropReason::frame_runt));
  std::uint16_t ethertype = load16(r.at(12));
  std::uint32_t off = kEthHdrLen;
  while (ethertype == kEtherVlan || ethertype == kEtherQinq) {
    if (out.vlan_count == out.vlan_tci.size()) return DropReason::vlan_too_deep;
    ZT_TRY(r.need(off, kVlanTagLen, pkt_len, DropReason::vlan_truncated));
    out.vlan_tci[out.vlan_count++] = load16(r.at(off));
    ethertype = load16(r.at(off + 2));
    off += kVlanTagLen;
  }
  out.l2_len = static_cast<std::uint16_t>(off);
  out.ethertype = ethertype;

  switch (ethertype) {
    case kEtherIpv4:
    case kEtherIpv6:
      ZT_TRY(parse_ip(r, ethertype == kEtherIpv6, off, pkt_len, false, out.outer));
      break;
    case kEtherArp: {
      out.kind = FrameKind::arp;
      ZT_TRY(r.need(off, kArpFixedLen, pkt_len, DropReason::arp_truncated));
      const std::uint8_t* p = r.at(off);
      // Fixed part, then sender and target hardware and protocol addresses.
      return r.need(off, kArpFixedLen + 2u * (p[4] + p[5]), pkt_len, DropReason::arp_truncated);
    }
    default:
      return DropReason::ethertype_unsupported;
  }

  const IpLayer& o = out.outer;
  // A non-first fragment has no ports, so it never matches here; the worker holds it to its
  // datagram's verdict.
  if (o.proto != kProtoUdp || o.dport != kGenevePort) return DropReason::none;
  if (o.frag != FragKind::none) return DropReason::geneve_fragmented;
  return parse_geneve(r, out);
}

#undef ZT_TRY

}  // namespace zt::dp
