#include <arpa/inet.h>

#include <charconv>
#include <cstring>

#include "zt/rules/types.hpp"

namespace zt::rules {

bool IpPrefix::contains(const IpAddress& a) const noexcept {
  if (a.v6 != addr.v6) return false;
  unsigned full = len / 8, rem = len % 8;
  if (std::memcmp(a.bytes.data(), addr.bytes.data(), full) != 0) return false;
  if (rem == 0) return true;
  auto mask = static_cast<std::uint8_t>(0xff << (8 - rem));
  return (a.bytes[full] & mask) == (addr.bytes[full] & mask);
}

std::optional<IpAddress> parse_address(std::string_view text) {
  if (text.empty() || text.size() > 63) return std::nullopt;
  std::string s(text);
  IpAddress a;
  if (s.find(':') != std::string::npos) {
    if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) != 1) return std::nullopt;
    a.v6 = true;
  } else {
    if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) != 1) return std::nullopt;
  }
  return a;
}

std::optional<IpPrefix> parse_prefix(std::string_view text, bool allow_host_bits) {
  auto slash = text.find('/');
  auto addr = parse_address(text.substr(0, slash));
  if (!addr) return std::nullopt;
  unsigned len = addr->bits();
  if (slash != std::string_view::npos) {
    auto digits = text.substr(slash + 1);
    if (digits.empty()) return std::nullopt;
    auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), len);
    if (ec != std::errc{} || p != digits.data() + digits.size() || len > addr->bits())
      return std::nullopt;
  }
  IpPrefix out{*addr, static_cast<std::uint8_t>(len)};
  for (unsigned bit = len; bit < addr->bits(); ++bit) {
    auto& byte = out.addr.bytes[bit / 8];
    auto m = static_cast<std::uint8_t>(0x80 >> (bit % 8));
    if (byte & m) {
      if (!allow_host_bits) return std::nullopt;
      byte = static_cast<std::uint8_t>(byte & ~m);
    }
  }
  return out;
}

std::string to_string(const IpAddress& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(a.v6 ? AF_INET6 : AF_INET, a.bytes.data(), buf, sizeof buf);
  return buf;
}

std::string to_string(const IpPrefix& p) { return to_string(p.addr) + "/" + std::to_string(p.len); }

IpAddress last_address(const IpPrefix& p) {
  IpAddress a = p.addr;
  for (unsigned bit = p.len; bit < a.bits(); ++bit)
    a.bytes[bit / 8] = static_cast<std::uint8_t>(a.bytes[bit / 8] | (0x80 >> (bit % 8)));
  return a;
}

std::optional<std::uint8_t> parse_proto(std::string_view name) {
  if (name == "tcp") return kProtoTcp;
  if (name == "udp") return kProtoUdp;
  if (name == "icmp") return kProtoIcmp;
  if (name == "icmpv6") return kProtoIcmpv6;
  return std::nullopt;
}

std::string proto_name(std::uint8_t proto) {
  switch (proto) {
    case kProtoTcp: return "tcp";
    case kProtoUdp: return "udp";
    case kProtoIcmp: return "icmp";
    case kProtoIcmpv6: return "icmpv6";
    default: return "proto-" + std::to_string(proto);
  }
}

std::string_view to_string(Disposition d) noexcept {
  switch (d) {
    case Disposition::allow: return "allow";
    case Disposition::deny: return "deny";
    case Disposition::audit: return "audit";
  }
  return "invalid";
}

}  // namespace zt::rules
