// Identity tag wire format v1 (DESIGN.md §2): the 32-byte Geneve option body, the option around
// it, the MAC-input layout, and the whole Geneve packet around an inner IP packet.
//
// Pure byte work: no OpenSSL, no IPsec-MB, no <expected> (this header is compiled into the fuzz
// target with clang-14, whose libstdc++-12 <expected> is unusable). Every function is noexcept
// and bounds-checked; decoders name the reason they refuse their input.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

namespace zt::crypto {

inline constexpr std::uint8_t kTagVersion = 1;
inline constexpr std::size_t kTagBodyLen = 32;
inline constexpr std::size_t kTagMacOffset = 16;
inline constexpr std::size_t kTagMacLen = 16;
inline constexpr std::size_t kTagOptionHdrLen = 4;
inline constexpr std::size_t kTagOptionLen = kTagOptionHdrLen + kTagBodyLen;
inline constexpr std::uint16_t kTagOptionClass = 0xFFF0;  // experimental range
inline constexpr std::uint8_t kTagOptionType = 0x81;      // critical bit | 1
inline constexpr std::uint8_t kTagOptionWords = 8;        // body length in 4-byte words
inline constexpr std::uint16_t kGenevePort = 6081;
inline constexpr std::uint64_t kTimestampMask = (std::uint64_t{1} << 48) - 1;
// Identities 0 (invalid) and 1-255 (reserved; 2 = unauthenticated) never appear in a tag.
inline constexpr std::uint32_t kFirstTagIdentity = 256;
// HDR coverage MACs this many leading bytes of the L4 segment.
inline constexpr std::size_t kHdrCoverageLen = 16;
// Longest L4 segment a tag may cover (FULL); longer inner packets are refused (tag_too_long)
// rather than MACed partially. Covers 9000-byte jumbo frames with room to spare.
inline constexpr std::size_t kMaxCoveredL4Len = 16384;
// Pseudo-header: src, dst, protocol, L4 length (u16 BE), zero-padded to a block: 16 B for IPv4,
// 48 B for IPv6.
inline constexpr std::size_t kMaxPseudoHeaderLen = 48;
inline constexpr std::size_t kMaxMacInputLen = 16 + kMaxPseudoHeaderLen + kMaxCoveredL4Len;

enum class Alg : std::uint8_t { aes128_cmac = 0, aes256_cmac = 1 };
enum class Coverage : std::uint8_t { hdr = 0, full = 1 };

constexpr std::size_t key_len(Alg a) noexcept { return a == Alg::aes128_cmac ? 16 : 32; }
constexpr std::string_view to_string(Alg a) noexcept {
  return a == Alg::aes128_cmac ? "aes128-cmac" : "aes256-cmac";
}
constexpr std::string_view to_string(Coverage c) noexcept {
  return c == Coverage::full ? "full" : "hdr";
}

// Why a tag is refused. Every name except `none` is also a zt::rules::DropReason of the same
// name (rules/include/zt/rules/drop_reason.hpp, "identity tag" block): crypto/ may not include
// rules/ (DESIGN.md §1), so the dataplane maps by name (drop_reason_from_string(to_string(r))),
// and tests/crypto asserts that every name here has its drop reason.
#define ZT_TAG_REJECTS(X)                                                                     \
  X(tag_truncated, "identity tag body shorter than 32 bytes")                                \
  X(tag_bad_option_class, "tag option class is not 0xFFF0")                                  \
  X(tag_bad_option_type, "tag option type is not 0x81")                                      \
  X(tag_bad_option_length, "tag option length is not 8 words")                               \
  X(tag_bad_version, "identity tag version is not 1")                                        \
  X(tag_bad_alg, "identity tag names an unknown MAC algorithm")                              \
  X(tag_bad_flags, "identity tag sets reserved flag bits")                                   \
  X(tag_bad_identity, "identity tag carries identity 0 or a reserved identity (1-255)")      \
  X(tag_alg_not_allowed, "identity tag uses AES-128-CMAC where only AES-256-CMAC is accepted") \
  X(tag_hdr_not_allowed, "identity tag covers only the L4 header where FULL is required")    \
  X(tag_expired_epoch, "identity tag key epoch is older than the current epoch plus grace")   \
  X(tag_future_epoch, "identity tag key epoch is further ahead than the acceptance window")  \
  X(tag_no_key, "no key loaded for the identity tag's epoch")                                \
  X(tag_stale_generation, "identity tag key generation differs from the loaded one")         \
  X(tag_time_window, "identity tag timestamp outside the freshness window")                  \
  X(tag_unknown_identity, "identity tag names an identity the appliance does not know")      \
  X(tag_too_long, "inner L4 segment longer than a tag may cover")                            \
  X(tag_forged_mac, "identity tag MAC does not verify")                                      \
  X(tag_replayed, "identity tag seen before within the freshness window")

enum class TagReject : std::uint8_t {
  none = 0,
#define ZT_TAG_REJECT_ENUM(name, desc) name,
  ZT_TAG_REJECTS(ZT_TAG_REJECT_ENUM)
#undef ZT_TAG_REJECT_ENUM
      count_,
};

inline constexpr std::size_t kTagRejectCount = static_cast<std::size_t>(TagReject::count_);

constexpr std::string_view to_string(TagReject r) noexcept {
  constexpr std::array<std::string_view, kTagRejectCount> names{{
      "none",
#define ZT_TAG_REJECT_NAME(name, desc) #name,
      ZT_TAG_REJECTS(ZT_TAG_REJECT_NAME)
#undef ZT_TAG_REJECT_NAME
  }};
  auto i = static_cast<std::size_t>(r);
  return i < kTagRejectCount ? names[i] : std::string_view{"invalid"};
}

// The 16 metadata bytes of the body (bytes 0-15).
struct TagFields {
  std::uint8_t version = kTagVersion;
  Coverage coverage = Coverage::full;
  Alg alg = Alg::aes256_cmac;
  std::uint8_t epoch = 0;        // low 8 bits of the key epoch number
  std::uint8_t generation = 0;   // emergency re-key counter within the epoch
  std::uint32_t identity = 0;
  std::uint64_t timestamp_ns = 0;  // 48 bits, ns since the start of the key epoch
  std::uint16_t lane = 0;
  friend bool operator==(const TagFields&, const TagFields&) = default;
};

struct Tag {
  TagFields fields;
  std::array<std::uint8_t, kTagMacLen> mac{};
  friend bool operator==(const Tag&, const Tag&) = default;
};

// Writes bytes 0-15 of the body (the MAC is not touched). timestamp_ns is truncated to 48 bits.
void encode_tag_fields(const TagFields& f, std::span<std::uint8_t, 16> out) noexcept;
void encode_tag_body(const Tag& t, std::span<std::uint8_t, kTagBodyLen> out) noexcept;
// Decodes a body's fields (bytes 0-15; the MAC is left where it is). Refuses: tag_truncated
// (fewer than 32 bytes), tag_bad_version, tag_bad_alg, tag_bad_flags. Bytes past 32 are ignored
// (callers pass exactly the option body). Inline: it runs once per packet on the verify path.
inline TagReject decode_tag_fields(std::span<const std::uint8_t> body, TagFields& f) noexcept {
  if (body.size() < kTagBodyLen) return TagReject::tag_truncated;
  const std::uint8_t* p = body.data();
  const std::uint8_t version = p[0] >> 4;
  const std::uint8_t flags = p[0] & 0x0F;
  if (version != kTagVersion) return TagReject::tag_bad_version;
  if (p[1] > static_cast<std::uint8_t>(Alg::aes256_cmac)) return TagReject::tag_bad_alg;
  if (flags & 0x0E) return TagReject::tag_bad_flags;
  f.version = version;
  f.coverage = (flags & 1) ? Coverage::full : Coverage::hdr;
  f.alg = static_cast<Alg>(p[1]);
  f.epoch = p[2];
  f.generation = p[3];
  f.identity = (std::uint32_t{p[4]} << 24) | (std::uint32_t{p[5]} << 16) |
               (std::uint32_t{p[6]} << 8) | std::uint32_t{p[7]};
  std::uint64_t w;  // bytes 8-15: timestamp (48) | lane (16), big-endian
  std::memcpy(&w, p + 8, 8);
  w = __builtin_bswap64(w);
  f.timestamp_ns = w >> 16;
  f.lane = static_cast<std::uint16_t>(w);
  return TagReject::none;
}
// Decodes a body: the fields as decode_tag_fields, and the MAC.
inline TagReject decode_tag_body(std::span<const std::uint8_t> body, Tag& out) noexcept {
  const TagReject r = decode_tag_fields(body, out.fields);
  if (r == TagReject::none) std::memcpy(out.mac.data(), body.data() + kTagMacOffset, kTagMacLen);
  return r;
}

// The whole option: class(2) type(1) R|len(1) body(32).
void encode_tag_option(const Tag& t, std::span<std::uint8_t, kTagOptionLen> out) noexcept;
// Refuses tag_truncated (fewer than 4 + 32 bytes), tag_bad_option_class/type/length, then the
// body reasons.
TagReject decode_tag_option(std::span<const std::uint8_t> option, Tag& out) noexcept;

// What the MAC binds of the inner packet: the pseudo-header fields and the L4 segment.
struct InnerView {
  std::uint8_t ip_version = 4;             // 4 or 6
  std::array<std::uint8_t, 16> src{};      // IPv4 in the first 4 bytes
  std::array<std::uint8_t, 16> dst{};
  std::uint8_t proto = 0;                  // final protocol (after IPv6 extension headers)
  std::span<const std::uint8_t> l4;        // whole L4 segment (header + payload)
};

// Writes the pseudo-header (src, dst, proto, u16 BE L4 length, zero pad) and returns its
// length (16 for IPv4, 48 for IPv6), or 0 if ip_version is neither or l4 exceeds 65535 bytes.
// Inline: the verifier writes one per tag; IPv4's is two 8-byte stores.
static_assert(std::endian::native == std::endian::little, "write_pseudo_header packs a word little-endian");
[[gnu::always_inline]] inline std::size_t write_pseudo_header(const InnerView& in,
                                       std::span<std::uint8_t, kMaxPseudoHeaderLen> out) noexcept {
  if (in.l4.size() > 0xFFFF) return 0;
  const auto l4len = static_cast<std::uint16_t>(in.l4.size());
  std::uint8_t* p = out.data();
  if (in.ip_version == 4) {
    std::memcpy(p, in.src.data(), 4);
    std::memcpy(p + 4, in.dst.data(), 4);
    // proto | L4 length big-endian | zero pad, as one little-endian word (x86-64 only target)
    const std::uint64_t tail = std::uint64_t{in.proto} | (std::uint64_t{l4len} >> 8 << 8) |
                               (std::uint64_t{l4len & 0xFFu} << 16);
    std::memcpy(p + 8, &tail, 8);
    return 16;
  }
  if (in.ip_version != 6) return 0;
  std::memcpy(p, in.src.data(), 16);
  std::memcpy(p + 16, in.dst.data(), 16);
  std::memset(p + 32, 0, 16);
  p[32] = in.proto;
  p[33] = static_cast<std::uint8_t>(l4len >> 8);
  p[34] = static_cast<std::uint8_t>(l4len);
  return 48;
}
// Number of L4 bytes the MAC covers.
constexpr std::size_t covered_l4_len(Coverage c, std::size_t l4_len) noexcept {
  return c == Coverage::full ? l4_len : (l4_len < kHdrCoverageLen ? l4_len : kHdrCoverageLen);
}
// Assembles the whole MAC input (body bytes 0-15 || pseudo-header || covered L4) into `out`,
// which must hold kMaxMacInputLen bytes. Returns its length, or 0 when the inner view is
// unusable or the covered L4 is longer than kMaxCoveredL4Len.
std::size_t build_mac_input(std::span<const std::uint8_t, 16> fields, Coverage c,
                            const InnerView& in, std::span<std::uint8_t> out) noexcept;

// Packet-level errors (building and parsing the Geneve packet around the inner IP packet).
enum class PacketError : std::uint8_t {
  none = 0,
  truncated,                 // headers run past the buffer
  bad_ip_version,            // neither IPv4 nor IPv6
  bad_ip_header,             // IHL, total/payload length or extension chain malformed
  inner_fragment,            // inner packet is a fragment (the tag covers whole L4 only)
  not_udp,                   // outer packet is not UDP
  not_geneve_port,           // UDP destination port is not 6081
  bad_udp_length,            // UDP length disagrees with the IP payload
  geneve_bad_version,        // Geneve version is not 0
  geneve_bad_option,         // an option runs past the option area
  geneve_unknown_critical_option,
  geneve_inner_unsupported,  // protocol type is neither 0x0800 nor 0x86DD (or disagrees)
  tag_missing,               // no identity tag option
  tag_duplicate,             // the tag option appears twice
  tag_bad_option_length,     // the tag option is not 8 words
  too_large,                 // the built packet would exceed 65535 bytes
};
std::string_view to_string(PacketError e) noexcept;

// Parses a bare inner IP packet (IPv4 or IPv6, walking hop-by-hop/routing/destination-options
// headers) into the MAC's view of it. `ip` must start at the IP header; trailing bytes past the
// IP length are ignored.
PacketError parse_inner_ip(std::span<const std::uint8_t> ip, InnerView& out) noexcept;

struct OuterParams {
  std::uint8_t ip_version = 4;
  std::array<std::uint8_t, 16> src{};
  std::array<std::uint8_t, 16> dst{};
  std::uint16_t src_port = 49152;  // senders vary it per flow for RSS entropy
  std::uint8_t ttl = 64;
  std::uint32_t vni = 0;           // 24 bits
};

// Appends outer IPv4/IPv6 + UDP/6081 + Geneve (one option: the tag) + `inner_ip` to `out`
// (cleared first). IPv4 header checksum and UDP checksum are filled in. Setup-side helper for
// ztagent, ztgen and tests (it allocates).
PacketError build_geneve_packet(const OuterParams& outer, const Tag& tag,
                                std::span<const std::uint8_t> inner_ip,
                                std::vector<std::uint8_t>& out);

struct GeneveView {
  std::uint8_t outer_version = 0;
  std::uint32_t vni = 0;
  std::uint16_t protocol = 0;                  // 0x0800 or 0x86DD
  std::span<const std::uint8_t> tag_option;    // the 36-byte option (header + body)
  std::span<const std::uint8_t> tag_body;      // its 32-byte body
  std::span<const std::uint8_t> inner;         // the inner IP packet
};

// Parses outer IP + UDP/6081 + Geneve, locating the tag option. Unknown non-critical options are
// skipped; unknown critical options refuse the packet (RFC 8926).
PacketError parse_geneve_packet(std::span<const std::uint8_t> ip, GeneveView& out) noexcept;

}  // namespace zt::crypto
