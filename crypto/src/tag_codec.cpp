#include "zt/crypto/tag_codec.hpp"

#include <algorithm>
#include <cstring>

namespace zt::crypto {
namespace {

constexpr std::uint16_t kEtherIpv4 = 0x0800;
constexpr std::uint16_t kEtherIpv6 = 0x86DD;
constexpr std::uint8_t kProtoUdp = 17;

std::uint16_t rd16(const std::uint8_t* p) noexcept {
  return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}
void wr16(std::uint8_t* p, std::uint16_t v) noexcept {
  p[0] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v);
}

// One's-complement sum, folded later.
std::uint32_t csum_add(std::uint32_t sum, const std::uint8_t* p, std::size_t n) noexcept {
  for (; n > 1; n -= 2, p += 2) sum += rd16(p);
  if (n) sum += static_cast<std::uint32_t>(p[0]) << 8;
  return sum;
}
std::uint16_t csum_fold(std::uint32_t sum) noexcept {
  while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum);
}

}  // namespace

void encode_tag_fields(const TagFields& f, std::span<std::uint8_t, 16> out) noexcept {
  std::uint8_t* p = out.data();
  p[0] = static_cast<std::uint8_t>((f.version << 4) | (f.coverage == Coverage::full ? 1 : 0));
  p[1] = static_cast<std::uint8_t>(f.alg);
  p[2] = f.epoch;
  p[3] = f.generation;
  p[4] = static_cast<std::uint8_t>(f.identity >> 24);
  p[5] = static_cast<std::uint8_t>(f.identity >> 16);
  p[6] = static_cast<std::uint8_t>(f.identity >> 8);
  p[7] = static_cast<std::uint8_t>(f.identity);
  const std::uint64_t ts = f.timestamp_ns & kTimestampMask;
  for (int i = 0; i < 6; ++i) p[8 + i] = static_cast<std::uint8_t>(ts >> (40 - 8 * i));
  wr16(p + 14, f.lane);
}

void encode_tag_body(const Tag& t, std::span<std::uint8_t, kTagBodyLen> out) noexcept {
  encode_tag_fields(t.fields, out.first<16>());
  std::memcpy(out.data() + kTagMacOffset, t.mac.data(), kTagMacLen);
}

void encode_tag_option(const Tag& t, std::span<std::uint8_t, kTagOptionLen> out) noexcept {
  wr16(out.data(), kTagOptionClass);
  out[2] = kTagOptionType;
  out[3] = kTagOptionWords;  // R R R bits zero
  encode_tag_body(t, out.subspan<kTagOptionHdrLen, kTagBodyLen>());
}

TagReject decode_tag_option(std::span<const std::uint8_t> option, Tag& out) noexcept {
  if (option.size() < kTagOptionHdrLen) return TagReject::tag_truncated;
  if (rd16(option.data()) != kTagOptionClass) return TagReject::tag_bad_option_class;
  if (option[2] != kTagOptionType) return TagReject::tag_bad_option_type;
  if ((option[3] & 0x1F) != kTagOptionWords) return TagReject::tag_bad_option_length;
  return decode_tag_body(option.subspan(kTagOptionHdrLen), out);
}

std::size_t build_mac_input(std::span<const std::uint8_t, 16> fields, Coverage c,
                            const InnerView& in, std::span<std::uint8_t> out) noexcept {
  const std::size_t l4n = covered_l4_len(c, in.l4.size());
  if (l4n > kMaxCoveredL4Len || out.size() < 16 + kMaxPseudoHeaderLen + l4n) return 0;
  std::memcpy(out.data(), fields.data(), 16);
  if (in.ip_version == 4 && l4n == kHdrCoverageLen && in.l4.size() <= 0xFFFF) {
    // The common HDR shape (IPv4, >= 16 L4 bytes): three fixed-size blocks, no length-driven
    // copies. Same bytes as the general path below.
    std::uint8_t* p = out.data() + 16;
    std::memcpy(p, in.src.data(), 4);
    std::memcpy(p + 4, in.dst.data(), 4);
    p[8] = in.proto;
    wr16(p + 9, static_cast<std::uint16_t>(in.l4.size()));
    std::memset(p + 11, 0, 5);
    std::memcpy(p + 16, in.l4.data(), kHdrCoverageLen);
    return 48;
  }
  const std::size_t ph = write_pseudo_header(in, out.subspan<16, kMaxPseudoHeaderLen>());
  if (ph == 0) return 0;
  if (l4n) std::memcpy(out.data() + 16 + ph, in.l4.data(), l4n);
  return 16 + ph + l4n;
}

std::string_view to_string(PacketError e) noexcept {
  switch (e) {
    case PacketError::none: return "none";
    case PacketError::truncated: return "truncated";
    case PacketError::bad_ip_version: return "bad_ip_version";
    case PacketError::bad_ip_header: return "bad_ip_header";
    case PacketError::inner_fragment: return "inner_fragment";
    case PacketError::not_udp: return "not_udp";
    case PacketError::not_geneve_port: return "not_geneve_port";
    case PacketError::bad_udp_length: return "bad_udp_length";
    case PacketError::geneve_bad_version: return "geneve_bad_version";
    case PacketError::geneve_bad_option: return "geneve_bad_option";
    case PacketError::geneve_unknown_critical_option: return "geneve_unknown_critical_option";
    case PacketError::geneve_inner_unsupported: return "geneve_inner_unsupported";
    case PacketError::tag_missing: return "tag_missing";
    case PacketError::tag_duplicate: return "tag_duplicate";
    case PacketError::tag_bad_option_length: return "tag_bad_option_length";
    case PacketError::too_large: return "too_large";
  }
  return "invalid";
}

namespace {

// Locates the L4 segment of an IP packet: version, addresses, final protocol, l4 span.
PacketError parse_ip(std::span<const std::uint8_t> ip, InnerView& out, bool allow_fragment,
                     std::uint16_t* frag_info) noexcept {
  if (ip.empty()) return PacketError::truncated;
  const std::uint8_t ver = ip[0] >> 4;
  out.src = {};
  out.dst = {};
  if (ver == 4) {
    if (ip.size() < 20) return PacketError::truncated;
    const std::size_t ihl = std::size_t{ip[0] & 0x0Fu} * 4;
    const std::size_t total = rd16(ip.data() + 2);
    if (ihl < 20 || total < ihl) return PacketError::bad_ip_header;
    if (total > ip.size()) return PacketError::truncated;
    const std::uint16_t frag = rd16(ip.data() + 6);
    if (frag_info) *frag_info = frag;
    if (!allow_fragment && (frag & 0x3FFF) != 0) return PacketError::inner_fragment;
    out.ip_version = 4;
    out.proto = ip[9];
    std::memcpy(out.src.data(), ip.data() + 12, 4);
    std::memcpy(out.dst.data(), ip.data() + 16, 4);
    out.l4 = ip.subspan(ihl, total - ihl);
    return PacketError::none;
  }
  if (ver == 6) {
    if (ip.size() < 40) return PacketError::truncated;
    const std::size_t plen = rd16(ip.data() + 4);
    if (plen == 0) return PacketError::bad_ip_header;  // jumbogram: unsupported
    if (40 + plen > ip.size()) return PacketError::truncated;
    std::uint8_t nh = ip[6];
    std::size_t off = 40;
    const std::size_t end = 40 + plen;
    for (int n = 0; n < 8; ++n) {
      if (nh == 0 || nh == 43 || nh == 60) {
        if (nh == 0 && off != 40) return PacketError::bad_ip_header;
        if (off + 8 > end) return PacketError::bad_ip_header;
        const std::size_t len = (std::size_t{ip[off + 1]} + 1) * 8;
        if (off + len > end) return PacketError::bad_ip_header;
        nh = ip[off];
        off += len;
        continue;
      }
      if (nh == 44) {
        if (!allow_fragment) return PacketError::inner_fragment;
        return PacketError::bad_ip_header;
      }
      out.ip_version = 6;
      out.proto = nh;
      std::memcpy(out.src.data(), ip.data() + 8, 16);
      std::memcpy(out.dst.data(), ip.data() + 24, 16);
      out.l4 = ip.subspan(off, end - off);
      return PacketError::none;
    }
    return PacketError::bad_ip_header;
  }
  return PacketError::bad_ip_version;
}

}  // namespace

PacketError parse_inner_ip(std::span<const std::uint8_t> ip, InnerView& out) noexcept {
  return parse_ip(ip, out, false, nullptr);
}

PacketError build_geneve_packet(const OuterParams& outer, const Tag& tag,
                                std::span<const std::uint8_t> inner_ip,
                                std::vector<std::uint8_t>& out) {
  out.clear();
  InnerView iv;
  if (PacketError e = parse_inner_ip(inner_ip, iv); e != PacketError::none) return e;
  // Only the IP packet itself is carried (trailing bytes past the IP length are dropped).
  const std::size_t inner_len =
      static_cast<std::size_t>(iv.l4.data() + iv.l4.size() - inner_ip.data());
  const std::size_t ip_hdr = outer.ip_version == 4 ? 20 : outer.ip_version == 6 ? 40 : 0;
  if (ip_hdr == 0) return PacketError::bad_ip_version;
  const std::size_t geneve_len = 8 + kTagOptionLen;
  const std::size_t udp_len = 8 + geneve_len + inner_len;
  const std::size_t total = ip_hdr + udp_len;
  if (udp_len > 0xFFFF || (outer.ip_version == 4 && total > 0xFFFF)) return PacketError::too_large;
  out.assign(total, 0);
  std::uint8_t* p = out.data();
  std::uint32_t sum = 0;
  if (outer.ip_version == 4) {
    p[0] = 0x45;
    wr16(p + 2, static_cast<std::uint16_t>(total));
    wr16(p + 6, 0x4000);  // DF: the tunnel must not be fragmented in flight
    p[8] = outer.ttl;
    p[9] = kProtoUdp;
    std::memcpy(p + 12, outer.src.data(), 4);
    std::memcpy(p + 16, outer.dst.data(), 4);
    wr16(p + 10, csum_fold(csum_add(0, p, 20)));
    sum = csum_add(sum, p + 12, 8);
  } else {
    p[0] = 0x60;
    wr16(p + 4, static_cast<std::uint16_t>(udp_len));
    p[6] = kProtoUdp;
    p[7] = outer.ttl;
    std::memcpy(p + 8, outer.src.data(), 16);
    std::memcpy(p + 24, outer.dst.data(), 16);
    sum = csum_add(sum, p + 8, 32);
  }
  std::uint8_t* u = p + ip_hdr;
  wr16(u, outer.src_port);
  wr16(u + 2, kGenevePort);
  wr16(u + 4, static_cast<std::uint16_t>(udp_len));
  std::uint8_t* g = u + 8;
  g[0] = static_cast<std::uint8_t>(kTagOptionLen / 4);  // Ver=0 | Opt Len (words)
  g[1] = 0x40;                                           // O=0, C=1: a critical option follows
  wr16(g + 2, iv.ip_version == 4 ? kEtherIpv4 : kEtherIpv6);
  g[4] = static_cast<std::uint8_t>(outer.vni >> 16);
  g[5] = static_cast<std::uint8_t>(outer.vni >> 8);
  g[6] = static_cast<std::uint8_t>(outer.vni);
  encode_tag_option(tag, std::span<std::uint8_t, kTagOptionLen>(g + 8, kTagOptionLen));
  std::memcpy(g + geneve_len, inner_ip.data(), inner_len);
  sum += kProtoUdp;
  sum += static_cast<std::uint32_t>(udp_len);
  sum = csum_add(sum, u, udp_len);
  std::uint16_t c = csum_fold(sum);
  wr16(u + 6, c == 0 ? 0xFFFF : c);
  return PacketError::none;
}

PacketError parse_geneve_packet(std::span<const std::uint8_t> ip, GeneveView& out) noexcept {
  out = GeneveView{};
  InnerView ov;
  std::uint16_t frag = 0;
  if (PacketError e = parse_ip(ip, ov, true, &frag); e != PacketError::none) {
    return e == PacketError::inner_fragment ? PacketError::bad_ip_header : e;
  }
  if (ov.ip_version == 4 && (frag & 0x3FFF) != 0) return PacketError::bad_ip_header;
  if (ov.proto != kProtoUdp) return PacketError::not_udp;
  const std::span<const std::uint8_t> udp = ov.l4;
  if (udp.size() < 8) return PacketError::truncated;
  if (rd16(udp.data() + 2) != kGenevePort) return PacketError::not_geneve_port;
  if (rd16(udp.data() + 4) != udp.size()) return PacketError::bad_udp_length;
  const std::span<const std::uint8_t> gen = udp.subspan(8);
  if (gen.size() < 8) return PacketError::truncated;
  if ((gen[0] >> 6) != 0) return PacketError::geneve_bad_version;
  const std::size_t opt_len = std::size_t{gen[0] & 0x3Fu} * 4;
  if (8 + opt_len > gen.size()) return PacketError::truncated;
  const std::uint16_t proto = rd16(gen.data() + 2);
  out.outer_version = ov.ip_version;
  out.protocol = proto;
  out.vni = (std::uint32_t{gen[4]} << 16) | (std::uint32_t{gen[5]} << 8) | gen[6];
  const std::span<const std::uint8_t> opts = gen.subspan(8, opt_len);
  std::size_t off = 0;
  bool found = false;
  while (off < opts.size()) {
    if (off + 4 > opts.size()) return PacketError::geneve_bad_option;
    const std::uint16_t cls = rd16(opts.data() + off);
    const std::uint8_t type = opts[off + 2];
    const std::size_t len = std::size_t{opts[off + 3] & 0x1Fu} * 4;
    if (off + 4 + len > opts.size()) return PacketError::geneve_bad_option;
    if (cls == kTagOptionClass && type == kTagOptionType) {
      if (found) return PacketError::tag_duplicate;
      if (len != kTagBodyLen) return PacketError::tag_bad_option_length;
      found = true;
      out.tag_option = opts.subspan(off, kTagOptionLen);
      out.tag_body = opts.subspan(off + 4, kTagBodyLen);
    } else if (type & 0x80) {
      return PacketError::geneve_unknown_critical_option;
    }
    off += 4 + len;
  }
  if (!found) return PacketError::tag_missing;
  const std::span<const std::uint8_t> inner = gen.subspan(8 + opt_len);
  if (inner.empty()) return PacketError::truncated;
  const std::uint8_t iver = inner[0] >> 4;
  if (!((proto == kEtherIpv4 && iver == 4) || (proto == kEtherIpv6 && iver == 6)))
    return PacketError::geneve_inner_unsupported;
  out.inner = inner;
  return PacketError::none;
}

}  // namespace zt::crypto
