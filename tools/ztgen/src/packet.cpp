#include "packet.hpp"

#include <arpa/inet.h>

#include <algorithm>

#include <cstdio>

namespace zt::ztgen {

std::optional<Addr> parse_addr(std::string_view s) {
  const std::string str(s);
  Addr a;
  if (str.find(':') != std::string::npos) {
    a.version = 6;
    if (inet_pton(AF_INET6, str.c_str(), a.b.data()) != 1) return std::nullopt;
  } else {
    a.version = 4;
    if (inet_pton(AF_INET, str.c_str(), a.b.data()) != 1) return std::nullopt;
  }
  return a;
}

std::string to_string(const Addr& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(a.version == 6 ? AF_INET6 : AF_INET, a.b.data(), buf, sizeof buf);
  return buf;
}

std::optional<Mac> parse_mac(std::string_view s) {
  Mac m{};
  unsigned v[6];
  char tail = 0;
  if (std::sscanf(std::string(s).c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                  &tail) != 6)
    return std::nullopt;
  for (int i = 0; i < 6; ++i) m[i] = static_cast<std::uint8_t>(v[i]);
  return m;
}

std::uint32_t checksum_add(std::uint32_t sum, std::span<const std::uint8_t> d) noexcept {
  std::size_t i = 0;
  for (; i + 1 < d.size(); i += 2) sum += static_cast<std::uint32_t>(d[i] << 8 | d[i + 1]);
  if (i < d.size()) sum += static_cast<std::uint32_t>(d[i] << 8);
  return sum;
}

std::uint16_t checksum_fold(std::uint32_t sum) noexcept {
  while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum);
}

std::size_t l4_header_len(std::uint8_t proto) noexcept {
  switch (proto) {
    case kTcp: return 20;
    case kUdp:
    case kIcmp:
    case kIcmp6: return 8;
    default: return 0;
  }
}

Bytes build_l4(const Addr& src, const Addr& dst, const L4Spec& l4) {
  Bytes b(l4_header_len(l4.proto), 0);
  switch (l4.proto) {
    case kTcp:
      put16(b, 0, l4.sport);
      put16(b, 2, l4.dport);
      put16(b, 4, static_cast<std::uint16_t>(l4.seq >> 16));
      put16(b, 6, static_cast<std::uint16_t>(l4.seq));
      b[12] = 5 << 4;
      b[13] = l4.tcp_flags;
      put16(b, 14, 65535);
      break;
    case kUdp:
      put16(b, 0, l4.sport);
      put16(b, 2, l4.dport);
      put16(b, 4, static_cast<std::uint16_t>(8 + l4.payload.size()));
      break;
    case kIcmp:
    case kIcmp6:
      b[0] = l4.proto == kIcmp ? 8 : 128;  // echo request
      put16(b, 4, l4.sport);                // identifier
      put16(b, 6, 1);                       // sequence
      break;
    default: break;
  }
  b.insert(b.end(), l4.payload.begin(), l4.payload.end());
  const std::size_t csum_off = l4.proto == kTcp ? 16 : l4.proto == kUdp ? 6 : (l4.proto == kIcmp || l4.proto == kIcmp6) ? 2 : 0;
  if (l4_header_len(l4.proto) == 0) return b;
  std::uint32_t sum = 0;
  if (l4.proto != kIcmp) {  // every checksum but ICMPv4's covers the pseudo-header
    const std::size_t alen = src.version == 6 ? 16 : 4;
    sum = checksum_add(sum, {src.b.data(), alen});
    sum = checksum_add(sum, {dst.b.data(), alen});
    sum += l4.proto;
    sum += static_cast<std::uint32_t>(b.size());
  }
  sum = checksum_add(sum, b);
  std::uint16_t c = checksum_fold(sum);
  if (l4.proto == kUdp && c == 0) c = 0xFFFF;
  put16(b, csum_off, c);
  return b;
}

Bytes build_ip(const Addr& src, const Addr& dst, std::uint8_t proto, std::span<const std::uint8_t> payload,
               std::uint16_t ip_id, std::uint8_t ttl) {
  Bytes b;
  if (src.version == 6) {
    b.assign(40, 0);
    b[0] = 0x60;
    put16(b, 4, static_cast<std::uint16_t>(payload.size()));
    b[6] = proto;
    b[7] = ttl;
    std::copy(src.b.begin(), src.b.end(), b.begin() + 8);
    std::copy(dst.b.begin(), dst.b.end(), b.begin() + 24);
  } else {
    b.assign(20, 0);
    b[0] = 0x45;
    put16(b, 2, static_cast<std::uint16_t>(20 + payload.size()));
    put16(b, 4, ip_id);
    b[8] = ttl;
    b[9] = proto;
    std::copy_n(src.b.begin(), 4, b.begin() + 12);
    std::copy_n(dst.b.begin(), 4, b.begin() + 16);
    fix_ipv4_checksum(b, 0);
  }
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

Bytes build_ip_packet(const Addr& src, const Addr& dst, const L4Spec& l4, std::uint16_t ip_id) {
  L4Spec s = l4;
  if (src.version == 6 && s.proto == kIcmp) s.proto = kIcmp6;
  const Bytes seg = build_l4(src, dst, s);
  return build_ip(src, dst, s.proto, seg, ip_id);
}

Bytes build_eth(const Mac& dst, const Mac& src, std::uint16_t ethertype, std::span<const std::uint8_t> payload) {
  Bytes b(kEthLen, 0);
  std::copy(dst.begin(), dst.end(), b.begin());
  std::copy(src.begin(), src.end(), b.begin() + 6);
  put16(b, 12, ethertype);
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

void fix_ipv4_checksum(Bytes& b, std::size_t off) {
  put16(b, off + 10, 0);
  const std::size_t ihl = static_cast<std::size_t>(b.at(off) & 0x0F) * 4;
  put16(b, off + 10, checksum_fold(checksum_add(0, {b.data() + off, ihl})));
}

}  // namespace zt::ztgen
