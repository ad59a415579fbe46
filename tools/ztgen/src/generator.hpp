// ztgen's generator: from a Config, the frames of every requested traffic kind, in order, handed
// to a sink with their capture time. Tags are minted with zt::crypto (keys derived from the same
// master secret, domain and epoch length as ztgate's --key-master/--key-domain/--epoch-length).
// Deterministic: the same Config (seed and time base included) gives the same bytes.
#pragma once

#include <cstdint>
#include <expected>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "packet.hpp"
#include "zt/crypto/tag_codec.hpp"

namespace zt::ztgen {

enum class Kind : std::uint8_t {
  valid,             // tagged, authentic, current epoch, fresh
  forged,            // tagged, one MAC bit flipped
  replayed,          // exact copies of the valid frames written before
  tag_stripped,      // the inner packets of the valid frames written before, untagged
  expired,           // tagged with the key of epoch e-2
  future,            // tagged with the key of epoch e+2
  unknown_identity,  // tagged, authentic, by an identity the policy does not know
  hdr,               // tagged with HDR coverage
  untagged,          // plain packets from --src
  spoofed,           // untagged, random source address and port
  syn_flood,         // TCP SYN, random source address and port
  forged_flood,      // tagged (current epoch, --identity), random MAC, random sources
  malformed,         // the malformed-frame set, cycled
  fragments,         // the fragment set, cycled
  ipv6_ext,          // the IPv6 extension-header set, cycled
};

struct KindInfo {
  Kind kind;
  std::string_view name;
  std::string_view what;
};
std::span<const KindInfo> kind_table() noexcept;
std::optional<Kind> kind_from_string(std::string_view s) noexcept;
std::string_view to_string(Kind k) noexcept;
// Frame names of a set kind (malformed, fragments, ipv6_ext), in the order they are written;
// empty for the other kinds.
std::vector<std::string_view> set_frame_names(Kind k);

struct KindRequest {
  Kind kind = Kind::valid;
  std::optional<std::uint64_t> count;  // unset: --count (set kinds: the whole set once)
};

struct Config {
  std::vector<KindRequest> kinds;
  std::uint64_t count = 1;         // packets per kind unless the kind names its own
  std::uint32_t flows = 1;         // distinct 5-tuples per flow kind
  std::size_t size = 64;           // Ethernet frame size of the plain (inner) packet, w/o FCS
  Addr src, dst;                   // inner (or plain) addresses
  Addr src6, dst6;                 // IPv6 addresses of the IPv6 sets when src/dst are IPv4
  std::optional<Addr> outer_src, outer_dst;  // default: src, dst
  std::uint16_t sport = 40000;     // first source port; each flow kind takes the next --flows
  std::uint16_t dport = 80;
  std::uint8_t proto = kTcp;
  std::uint8_t tcp_flags = 0x02;
  std::uint32_t identity = 1001;
  std::uint32_t unknown_identity = 0x7FFFFFFF;
  std::vector<std::uint8_t> master;  // empty: no tagged kinds allowed
  std::string domain = "lab";
  std::int64_t epoch_length_s = 900;
  crypto::Coverage coverage = crypto::Coverage::full;
  crypto::Alg alg = crypto::Alg::aes256_cmac;
  std::uint16_t lane = 0;
  std::uint32_t vni = 0;
  std::int64_t time_base_ns = 0;   // the first packet's time (tag timestamp and capture time)
  std::int64_t interval_ns = 1000; // time between consecutive packets
  std::uint64_t seed = 1;
  Mac src_mac{0x02, 0, 0, 0, 0, 0x0a};
  Mac dst_mac{0x02, 0, 0, 0, 0, 0x0b};
};

struct Summary {
  std::vector<std::pair<Kind, std::uint64_t>> written;  // packets per kind, in request order
  std::uint64_t total = 0;
  std::int64_t epoch = -1;                               // current epoch at the time base
};

using Sink = std::function<void(std::span<const std::uint8_t> frame, std::int64_t time_ns)>;

// Validates the config (errors name the option) and writes every frame to `sink`.
std::expected<Summary, std::string> generate(const Config& cfg, const Sink& sink);

// The master secret file format ztgate's --key-master reads: hex, whitespace ignored, >= 32 bytes.
std::expected<std::vector<std::uint8_t>, std::string> read_hex_secret(const std::string& path);

}  // namespace zt::ztgen
