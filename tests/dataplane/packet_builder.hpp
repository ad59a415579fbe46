// Builds frames layer by layer for parser tests and benchmarks. Each layer is written as it is
// added; build() then fills in what depends on the layers after it (EtherType, IP protocol /
// next header, IPv4 total length and checksum, IPv6 payload length, UDP length, Geneve protocol
// type), unless the spec overrides that field to build a malformed packet.
//
//   auto frame = PacketBuilder{}.eth().ipv4().tcp({.dport = 443}).payload(100).build();
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace zt::test {

using Bytes = std::vector<std::uint8_t>;

struct Ipv4Spec {
  std::array<std::uint8_t, 4> src{10, 0, 0, 1};
  std::array<std::uint8_t, 4> dst{10, 0, 0, 2};
  std::uint8_t ttl = 64;
  std::uint16_t id = 0x1234;
  std::uint16_t frag_offset = 0;  // bytes; a multiple of 8
  bool more_fragments = false;
  bool dont_fragment = false;
  bool reserved_flag = false;
  Bytes options;  // raw option bytes; the caller pads them to a multiple of 4
  // Overrides for malformed packets; unset means "derive the correct value".
  std::optional<std::uint8_t> proto;
  std::optional<std::uint16_t> total_length;
  std::optional<std::uint8_t> version;
  std::optional<std::uint8_t> ihl_words;
  std::optional<std::uint16_t> checksum;
};

struct Ipv6Spec {
  std::array<std::uint8_t, 16> src{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  std::array<std::uint8_t, 16> dst{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
  std::uint8_t hop_limit = 64;
  std::optional<std::uint8_t> next_header;
  std::optional<std::uint16_t> payload_length;
  std::optional<std::uint8_t> version;
};

// A hop-by-hop (0), routing (43), destination options (60) or AH (51) header of `len` bytes
// (a multiple of 8; AH: a multiple of 4, at least 12).
struct Ipv6ExtSpec {
  std::uint8_t type = 60;
  std::size_t len = 8;
  std::uint8_t routing_type = 4;  // routing header only: 4 = segment routing
  std::optional<std::uint8_t> len_field;  // override the encoded length
};

struct Ipv6FragSpec {
  std::uint16_t offset = 0;  // bytes; a multiple of 8
  bool more_fragments = false;
  std::uint32_t id = 0xabcd;
};

struct TcpSpec {
  std::uint16_t sport = 40000;
  std::uint16_t dport = 443;
  std::uint8_t flags = 0x02;  // SYN
  Bytes options;              // padded by the caller to a multiple of 4
  std::optional<std::uint8_t> data_offset_words;
};

struct UdpSpec {
  std::uint16_t sport = 40000;
  std::uint16_t dport = 53;
  std::optional<std::uint16_t> length;
};

struct IcmpSpec {
  std::uint8_t type = 8;  // echo request (v4); use 128 for ICMPv6
  std::uint8_t code = 0;
};

struct GeneveOption {
  std::uint16_t cls = 0xFFF0;
  std::uint8_t type = 0x81;
  Bytes body = Bytes(32, 0xA5);  // a multiple of 4 bytes
  std::optional<std::uint8_t> len_words;  // override the encoded length
};

struct GeneveSpec {
  std::uint32_t vni = 0x123456;
  std::uint8_t version = 0;
  std::vector<GeneveOption> options;
  std::optional<std::uint16_t> protocol;       // default: from the next layer
  std::optional<std::uint8_t> opt_len_words;   // override the encoded option length
};

// The identity tag option (DESIGN.md §2) with a recognisable body.
inline GeneveOption tag_option() { return GeneveOption{}; }

class PacketBuilder {
 public:
  PacketBuilder& eth() {
    begin(Kind::eth, 0x6558);  // announced as Ethernet by Geneve
    put({0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0, 0});
    return *this;
  }
  PacketBuilder& vlan(std::uint16_t tpid, std::uint16_t tci) {
    begin(Kind::vlan, tpid);
    put16(tci);
    put16(0);
    return *this;
  }
  PacketBuilder& arp() {
    begin(Kind::raw, 0x0806);
    put({0, 1, 0x08, 0, 6, 4, 0, 1});  // Ethernet/IPv4 request
    put(Bytes(20, 0x11));                // sender MAC+IP, target MAC+IP
    return *this;
  }
  PacketBuilder& ipv4(const Ipv4Spec& s = {}) {
    begin(Kind::ipv4, 0x0800);
    const std::size_t ihl_words = s.ihl_words.value_or(static_cast<std::uint8_t>(
        5 + s.options.size() / 4));
    put(static_cast<std::uint8_t>(s.version.value_or(4) << 4 | (ihl_words & 0x0F)));
    put(0);
    put16(s.total_length.value_or(0));
    put16(s.id);
    put16(static_cast<std::uint16_t>((s.reserved_flag ? 0x8000 : 0) |
                                     (s.dont_fragment ? 0x4000 : 0) |
                                     (s.more_fragments ? 0x2000 : 0) | (s.frag_offset / 8)));
    put(s.ttl);
    put(s.proto.value_or(0));
    put16(s.checksum.value_or(0));
    put(s.src);
    put(s.dst);
    put(s.options);
    auto& l = layers_.back();
    l.fix_next = !s.proto;
    l.fix_len = !s.total_length;
    l.fix_csum = !s.checksum;
    return *this;
  }
  PacketBuilder& ipv6(const Ipv6Spec& s = {}) {
    begin(Kind::ipv6, 0x86DD);
    put(static_cast<std::uint8_t>(s.version.value_or(6) << 4));
    put({0, 0, 0});
    put16(s.payload_length.value_or(0));
    put(s.next_header.value_or(59));
    put(s.hop_limit);
    put(s.src);
    put(s.dst);
    auto& l = layers_.back();
    l.fix_next = !s.next_header;
    l.fix_len = !s.payload_length;
    return *this;
  }
  PacketBuilder& ipv6_ext(const Ipv6ExtSpec& s = {}) {
    begin(Kind::ipv6_ext, s.type);
    const std::size_t enc = s.type == 51 ? s.len / 4 - 2 : s.len / 8 - 1;
    put(59);
    put(s.len_field.value_or(static_cast<std::uint8_t>(enc)));
    Bytes rest(s.len - 2, 0);
    if (s.type == 43 && rest.size() >= 2) rest[0] = s.routing_type;
    if ((s.type == 0 || s.type == 60) && rest.size() >= 6) {
      rest[0] = 1;  // PadN option covering the rest of the header
      rest[1] = static_cast<std::uint8_t>(rest.size() - 2);
    }
    put(rest);
    return *this;
  }
  PacketBuilder& ipv6_frag(const Ipv6FragSpec& s = {}) {
    begin(Kind::ipv6_ext, 44);
    put(59);
    put(0);
    put16(static_cast<std::uint16_t>((s.offset & 0xFFF8) | (s.more_fragments ? 1 : 0)));
    put32(s.id);
    return *this;
  }
  PacketBuilder& tcp(const TcpSpec& s = {}) {
    begin(Kind::l4, 6);
    put16(s.sport);
    put16(s.dport);
    put32(1000);  // sequence
    put32(0);     // acknowledgement
    const std::size_t words = s.data_offset_words.value_or(
        static_cast<std::uint8_t>(5 + s.options.size() / 4));
    put(static_cast<std::uint8_t>(words << 4));
    put(s.flags);
    put16(65535);  // window
    put16(0);      // checksum (not the parser's business)
    put16(0);      // urgent pointer
    put(s.options);
    return *this;
  }
  PacketBuilder& udp(const UdpSpec& s = {}) {
    begin(Kind::udp, 17);
    put16(s.sport);
    put16(s.dport);
    put16(s.length.value_or(0));
    put16(0);
    layers_.back().fix_len = !s.length;
    return *this;
  }
  PacketBuilder& icmp(const IcmpSpec& s = {}) { return icmp_layer(1, s); }
  PacketBuilder& icmpv6(const IcmpSpec& s = {.type = 128}) { return icmp_layer(58, s); }
  PacketBuilder& geneve(const GeneveSpec& s = {}) {
    begin(Kind::geneve, 0);  // announced by the UDP port, not by a number
    std::size_t opt_bytes = 0;
    for (const auto& o : s.options) opt_bytes += 4 + o.body.size();
    const std::uint8_t opt_words =
        s.opt_len_words.value_or(static_cast<std::uint8_t>(opt_bytes / 4));
    put(static_cast<std::uint8_t>(s.version << 6 | (opt_words & 0x3F)));
    put(0);
    put16(s.protocol.value_or(0));
    put32(s.vni << 8);
    for (const auto& o : s.options) {
      put16(o.cls);
      put(o.type);
      put(o.len_words.value_or(static_cast<std::uint8_t>(o.body.size() / 4)));
      put(o.body);
    }
    layers_.back().fix_next = !s.protocol;
    return *this;
  }
  // Opaque bytes announced by the previous layer as `next_id` (an IP protocol or EtherType).
  PacketBuilder& raw(std::uint16_t next_id, const Bytes& bytes) {
    begin(Kind::raw, next_id);
    put(bytes);
    return *this;
  }
  // Upper-layer payload: counted by every length above it.
  PacketBuilder& payload(std::size_t n, std::uint8_t fill = 0x61) {
    begin(Kind::payload, 59);
    put(Bytes(n, fill));
    return *this;
  }
  // Bytes after the IP datagram (Ethernet padding or trailer): not counted by any length.
  PacketBuilder& padding(std::size_t n) {
    begin(Kind::padding, 0);
    put(Bytes(n, 0));
    return *this;
  }

  // Offset of the i-th layer added (0 = the first).
  std::size_t offset(std::size_t i) const { return layers_.at(i).off; }

  Bytes build() const {
    Bytes b = bytes_;
    std::size_t content_end = b.size();
    for (const auto& l : layers_)
      if (l.kind == Kind::padding) {
        content_end = l.off;
        break;
      }
    for (std::size_t i = layers_.size(); i-- > 0;) {
      const Layer& l = layers_[i];
      const Layer* next = i + 1 < layers_.size() && layers_[i + 1].kind != Kind::padding
                              ? &layers_[i + 1]
                              : nullptr;
      const std::uint16_t next_id = next ? next->next_id : 59;
      const auto len = static_cast<std::uint16_t>(content_end - l.off);
      switch (l.kind) {
        case Kind::eth:
          set16(b, l.off + 12, next_id);
          break;
        case Kind::vlan:
          set16(b, l.off + 2, next_id);
          break;
        case Kind::ipv4:
          if (l.fix_next) b[l.off + 9] = static_cast<std::uint8_t>(next_id);
          if (l.fix_len) set16(b, l.off + 2, len);
          if (l.fix_csum) {
            set16(b, l.off + 10, 0);
            set16(b, l.off + 10, ipv4_checksum({b.data() + l.off, (b[l.off] & 0x0Fu) * 4u}));
          }
          break;
        case Kind::ipv6:
          if (l.fix_next) b[l.off + 6] = static_cast<std::uint8_t>(next_id);
          if (l.fix_len) set16(b, l.off + 4, static_cast<std::uint16_t>(len - 40));
          break;
        case Kind::ipv6_ext:
          b[l.off] = static_cast<std::uint8_t>(next_id);
          break;
        case Kind::udp:
          if (l.fix_len) set16(b, l.off + 4, len);
          break;
        case Kind::geneve:
          if (l.fix_next) set16(b, l.off + 2, next_id);
          break;
        default:
          break;
      }
    }
    return b;
  }

  static std::uint16_t ipv4_checksum(std::span<const std::uint8_t> hdr) {
    std::uint32_t sum = 0;
    for (std::size_t i = 0; i + 1 < hdr.size(); i += 2)
      sum += static_cast<std::uint32_t>(hdr[i] << 8 | hdr[i + 1]);
    while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
    return static_cast<std::uint16_t>(~sum);
  }
  static void set16(Bytes& b, std::size_t off, std::uint16_t v) {
    b.at(off) = static_cast<std::uint8_t>(v >> 8);
    b.at(off + 1) = static_cast<std::uint8_t>(v);
  }

 private:
  enum class Kind : std::uint8_t { eth, vlan, ipv4, ipv6, ipv6_ext, l4, udp, geneve, raw, payload,
                                   padding };
  struct Layer {
    Kind kind;
    std::size_t off;
    std::uint16_t next_id;  // how the previous layer announces this one
    bool fix_next = true;
    bool fix_len = true;
    bool fix_csum = true;
  };

  PacketBuilder& icmp_layer(std::uint8_t proto, const IcmpSpec& s) {
    begin(Kind::l4, proto);
    put(s.type);
    put(s.code);
    put16(0);
    put32(0x00010001);  // identifier, sequence
    return *this;
  }
  void begin(Kind k, std::uint16_t next_id) { layers_.push_back({k, bytes_.size(), next_id}); }
  void put(std::uint8_t v) { bytes_.push_back(v); }
  void put(std::span<const std::uint8_t> v) { bytes_.insert(bytes_.end(), v.begin(), v.end()); }
  void put(std::initializer_list<std::uint8_t> v) { bytes_.insert(bytes_.end(), v); }
  void put16(std::uint16_t v) {
    put(static_cast<std::uint8_t>(v >> 8));
    put(static_cast<std::uint8_t>(v));
  }
  void put32(std::uint32_t v) {
    put16(static_cast<std::uint16_t>(v >> 16));
    put16(static_cast<std::uint16_t>(v));
  }

  Bytes bytes_;
  std::vector<Layer> layers_;
};

}  // namespace zt::test
