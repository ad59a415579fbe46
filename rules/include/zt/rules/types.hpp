// The shared vocabulary of policy decisions: identity ids, addresses, flow keys and verdicts.
// Everything here is plain data, usable from the dataplane fast path and from offline tools.
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "zt/rules/drop_reason.hpp"

namespace zt::rules {

// Source identity as carried in the tag (DESIGN.md §2): 0 invalid, 1-255 reserved,
// 2 = unauthenticated. Declared identities use 256..kMaxDeclaredIdentity.
using IdentityId = std::uint32_t;
inline constexpr IdentityId kInvalidIdentity = 0;
inline constexpr IdentityId kUnauthenticated = 2;
inline constexpr IdentityId kFirstDeclaredIdentity = 256;
inline constexpr IdentityId kMaxDeclaredIdentity = 0x7fffffff;
// Untagged sources inside a segment that some rule names as a source get a pseudo identity from
// this range (see PolicySnapshot::resolve_untagged). No tag may ever claim one.
inline constexpr IdentityId kFirstSegmentSourceIdentity = 0x80000000u;

constexpr bool is_segment_source_identity(IdentityId id) noexcept {
  return id >= kFirstSegmentSourceIdentity;
}

// Rule id 0 means "no rule matched": the verdict came from the defaults.
using RuleId = std::uint32_t;
inline constexpr RuleId kDefaultRule = 0;

// An IPv4 or IPv6 address; IPv4 lives in bytes[0..3] (network order), the rest is zero.
struct IpAddress {
  std::array<std::uint8_t, 16> bytes{};
  bool v6 = false;
  friend bool operator==(const IpAddress&, const IpAddress&) = default;
  friend auto operator<=>(const IpAddress&, const IpAddress&) = default;

  static constexpr IpAddress v4(std::uint32_t host_order) noexcept {
    IpAddress a;
    a.bytes[0] = static_cast<std::uint8_t>(host_order >> 24);
    a.bytes[1] = static_cast<std::uint8_t>(host_order >> 16);
    a.bytes[2] = static_cast<std::uint8_t>(host_order >> 8);
    a.bytes[3] = static_cast<std::uint8_t>(host_order);
    return a;
  }
  constexpr std::uint32_t v4_host_order() const noexcept {
    return (std::uint32_t{bytes[0]} << 24) | (std::uint32_t{bytes[1]} << 16) |
           (std::uint32_t{bytes[2]} << 8) | std::uint32_t{bytes[3]};
  }
  constexpr unsigned bits() const noexcept { return v6 ? 128 : 32; }
};

// Four bytes of an IPv4 address in network order (a packet header's, IpAddress::bytes) as the
// host-order number PolicySnapshot's IPv4 entries take: one load and a byte swap.
inline std::uint32_t v4_host_order(const std::uint8_t* network_order) noexcept {
  std::uint32_t v;
  std::memcpy(&v, network_order, sizeof v);
  if constexpr (std::endian::native == std::endian::little) v = __builtin_bswap32(v);
  return v;
}

struct IpPrefix {
  IpAddress addr;  // host bits are zero
  std::uint8_t len = 0;
  friend bool operator==(const IpPrefix&, const IpPrefix&) = default;
  bool contains(const IpAddress& a) const noexcept;
  bool contains(const IpPrefix& p) const noexcept { return p.len >= len && contains(p.addr); }
};

// "10.0.0.1", "fd00::1"
std::optional<IpAddress> parse_address(std::string_view text);
// "10.0.0.0/24", "fd00:10::/64"; a bare address is a host prefix. Host bits must be zero
// unless allow_host_bits (they are then cleared).
std::optional<IpPrefix> parse_prefix(std::string_view text, bool allow_host_bits = false);
std::string to_string(const IpAddress& a);
std::string to_string(const IpPrefix& p);
// Last address of the prefix.
IpAddress last_address(const IpPrefix& p);

// IP protocol numbers the language names.
inline constexpr std::uint8_t kProtoIcmp = 1;
inline constexpr std::uint8_t kProtoTcp = 6;
inline constexpr std::uint8_t kProtoUdp = 17;
inline constexpr std::uint8_t kProtoIcmpv6 = 58;
std::optional<std::uint8_t> parse_proto(std::string_view name);
std::string proto_name(std::uint8_t proto);

// What the dataplane asks for a new flow.
struct FlowKey {
  IdentityId src = kInvalidIdentity;  // from the tag, or resolve_untagged() for untagged packets
  IpAddress dst;
  std::uint8_t proto = 0;
  std::uint16_t dport = 0;  // TCP/UDP destination port; ignored for other protocols
};

enum class Disposition : std::uint8_t {
  allow = 0,  // forward
  deny = 1,   // drop (reason tells explicit vs default)
  audit = 2,  // would be denied, but the destination segment is in audit mode: forward, log, count
};
std::string_view to_string(Disposition d) noexcept;

inline constexpr std::uint16_t kNoRateClass = 0xffff;
inline constexpr std::uint16_t kNoL7 = 0xffff;
inline constexpr std::uint32_t kNoSegment = 0xffffffff;

// The answer for one flow. Every verdict names the rule and the policy revision behind it.
struct Verdict {
  std::uint64_t revision = 0;
  RuleId rule_id = kDefaultRule;
  std::uint32_t segment = kNoSegment;  // index of the most specific destination segment
  std::uint16_t rate_class = kNoRateClass;  // index into PolicySnapshot::rate_classes()
  std::uint16_t l7 = kNoL7;  // index of the rule's L7 program (allow verdicts only)
  Disposition disposition = Disposition::deny;
  bool payload_hdr = false;  // rule permits HDR payload coverage (DESIGN.md §2)
  // Why a deny/audit would drop: policy_deny (explicit rule) or policy_default_deny; none on allow.
  DropReason reason = DropReason::none;
};

}  // namespace zt::rules
