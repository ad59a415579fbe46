// Writes the seed corpus for pipeline_fuzz: short conversations in its record format
// ([ctl][len lo][len hi][frame]; ctl bit 0 = port, bits 1-2 = extra cuts, bit 3 = end of burst,
// bit 4 = switch policy revision and age): allowed and denied untagged flows with their replies,
// a tagged flow of `web` minted at the fuzz target's clock (so it verifies), forged and HDR tags,
// fragments, VLANs, IPv6, an L7 request, flows across a revision switch.
//   pipeline_seeds OUT_DIR [IGNORED]
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "../dataplane/packet_builder.hpp"
#include "pipeline_fuzz_world.hpp"
#include "zt/crypto/mint.hpp"
#include "zt/crypto/tag_codec.hpp"

namespace fs = std::filesystem;
using zt::test::Bytes;
using zt::test::PacketBuilder;
using namespace zt;

namespace {

struct Frame {
  Bytes bytes;
  unsigned port = 0;
  unsigned cuts = 0;
  bool end = false;
  bool switch_revision = false;  // ctl bit 4: after this frame, the other revision, then aging
};

Bytes record(const std::vector<Frame>& frames) {
  Bytes out;
  for (const auto& f : frames) {
    out.push_back(static_cast<std::uint8_t>(f.port | (f.cuts << 1) | (f.end ? 8 : 0) | (f.switch_revision ? 16 : 0)));
    out.push_back(static_cast<std::uint8_t>(f.bytes.size()));
    out.push_back(static_cast<std::uint8_t>(f.bytes.size() >> 8));
    out.insert(out.end(), f.bytes.begin(), f.bytes.end());
  }
  return out;
}

Bytes tcp4(std::array<std::uint8_t, 4> s, std::array<std::uint8_t, 4> d, std::uint16_t sp,
           std::uint16_t dp, std::uint8_t flags, std::size_t payload = 0) {
  return PacketBuilder{}.eth().ipv4({.src = s, .dst = d}).tcp({.sport = sp, .dport = dp, .flags = flags})
      .payload(payload).build();
}

// `inner_frame` (Ethernet + IP) tagged by `identity` at the fuzz target's clock.
Bytes tagged(const Bytes& inner_frame, std::uint32_t identity, crypto::Coverage cov, bool forge) {
  const std::span<const std::uint8_t> inner_ip(inner_frame.data() + 14, inner_frame.size() - 14);
  crypto::InnerView view;
  if (crypto::parse_inner_ip(inner_ip, view) != crypto::PacketError::none) std::abort();
  auto sv = crypto::derive_epoch_secret(fuzz::master(), "test", fuzz::epoch_now());
  auto key = crypto::derive_identity_key(*sv, identity, crypto::Alg::aes256_cmac);
  auto minter = crypto::Minter::create();
  crypto::TagFields f;
  f.coverage = cov;
  f.timestamp_ns = crypto::tag_timestamp(fuzz::epoch_policy(), fuzz::epoch_now(), fuzz::kNow);
  crypto::Tag tag;
  if (minter->mint(*key, f, view, tag) != crypto::TagReject::none) std::abort();
  if (forge) tag.mac[3] ^= 1;
  crypto::OuterParams outer;
  outer.src = {10, 1, 0, 100};
  outer.dst = {10, 2, 0, 100};
  std::vector<std::uint8_t> ip;
  if (crypto::build_geneve_packet(outer, tag, inner_ip, ip) != crypto::PacketError::none) std::abort();
  Bytes frame(inner_frame.begin(), inner_frame.begin() + 12);
  frame.push_back(0x08);
  frame.push_back(0x00);
  frame.insert(frame.end(), ip.begin(), ip.end());
  return frame;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  const fs::path out = argv[1];
  fs::create_directories(out);
  int written = 0;
  auto seed = [&](const std::vector<Frame>& frames) {
    const Bytes b = record(frames);
    std::ofstream(out / ("seed-" + std::to_string(written++)), std::ios::binary)
        .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  };
  const std::array<std::uint8_t, 4> A1{10, 1, 0, 1}, B5{10, 2, 0, 5}, R5{10, 3, 0, 5}, X9{192, 168, 9, 9};
  constexpr std::uint8_t SYN = 0x02, ACK = 0x10, PSH = 0x08;

  // Allowed untagged TCP flow with its reply and data, cut into segments.
  seed({{tcp4(A1, B5, 40000, 8080, SYN), 0, 1, true},
        {tcp4(B5, A1, 8080, 40000, SYN | ACK), 1, 2, true},
        {tcp4(A1, B5, 40000, 8080, ACK | PSH, 100), 0, 3, true}});
  // Denied: explicit, default, from outside, to the audit segment.
  seed({{tcp4(A1, B5, 40001, 23, SYN), 0, 0, false}, {tcp4(A1, B5, 40002, 9999, SYN), 0, 1, false},
        {tcp4(X9, B5, 40003, 8080, SYN), 0, 0, false}, {tcp4(A1, R5, 40004, 22, SYN), 0, 2, true}});
  // UDP DNS and ICMP echo.
  seed({{PacketBuilder{}.eth().ipv4({.src = A1, .dst = B5}).udp({.sport = 5353, .dport = 53}).payload(30).build(), 0, 1, true},
        {PacketBuilder{}.eth().ipv4({.src = B5, .dst = A1}).udp({.sport = 53, .dport = 5353}).payload(60).build(), 1, 0, true},
        {PacketBuilder{}.eth().ipv4({.src = A1, .dst = B5}).icmp().payload(16).build(), 0, 1, true}});
  // IPv6 and VLANs.
  seed({{PacketBuilder{}.eth().ipv6({.src = {0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1},
                                     .dst = {0xfd, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5}})
              .tcp({.sport = 40000, .dport = 8080, .flags = SYN}).build(), 0, 1, true},
        {PacketBuilder{}.eth().vlan(0x88A8, 1).vlan(0x8100, 2).ipv4({.src = A1, .dst = B5})
              .tcp({.sport = 40010, .dport = 8080, .flags = SYN}).build(), 0, 2, true}});
  // Fragments: first fragment with the whole header, then a later one; an overlapping one.
  seed({{PacketBuilder{}.eth().ipv4({.src = A1, .dst = B5, .id = 7, .more_fragments = true})
              .udp({.sport = 5353, .dport = 53, .length = 64}).payload(32).build(), 0, 1, false},
        {PacketBuilder{}.eth().ipv4({.src = A1, .dst = B5, .id = 7, .frag_offset = 40}).raw(17, Bytes(24, 0x55)).build(), 0, 0, false},
        {PacketBuilder{}.eth().ipv4({.src = A1, .dst = B5, .id = 7, .frag_offset = 32}).raw(17, Bytes(24, 0x66)).build(), 0, 1, true}});
  // L7: an allowed request and a traversal, each after a handshake.
  const std::string get = "GET /api/v1 HTTP/1.1\r\nHost: b\r\n\r\n";
  const std::string bad = "GET /api/../etc/passwd HTTP/1.1\r\n\r\n";
  for (const auto* req : {&get, &bad}) {
    Bytes data = PacketBuilder{}.eth().ipv4({.src = A1, .dst = B5}).tcp({.sport = 41000, .dport = 8000, .flags = ACK | PSH}).build();
    data.insert(data.end(), req->begin(), req->end());
    // The IPv4 total length and checksum for the appended request (the TCP checksum is not
    // checked by ztgate).
    const std::size_t iplen = data.size() - 14;
    data[16] = static_cast<std::uint8_t>(iplen >> 8);
    data[17] = static_cast<std::uint8_t>(iplen);
    // The request follows the SYN: its sequence number is the SYN's + 1.
    for (int i = 41, carry = 1; i >= 38 && carry; --i) carry = ++data[i] == 0;
    data[24] = data[25] = 0;
    std::uint32_t sum = 0;
    for (std::size_t i = 14; i < 34; i += 2) sum += (std::uint32_t{data[i]} << 8) | data[i + 1];
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    data[24] = static_cast<std::uint8_t>(~sum >> 8);
    data[25] = static_cast<std::uint8_t>(~sum);
    seed({{tcp4(A1, B5, 41000, 8000, SYN), 0, 0, true},
          {tcp4(B5, A1, 8000, 41000, SYN | ACK), 1, 0, true},
          {data, 0, 2, true}});
  }
  // Tagged flows of `web` (valid FULL, valid HDR, forged), a replay of the valid one.
  const Bytes web = PacketBuilder{}.eth().ipv4({.src = {10, 9, 0, 1}, .dst = B5})
                        .udp({.sport = 40000, .dport = 443}).payload(40).build();
  const Bytes web_tcp = tcp4({10, 9, 0, 1}, B5, 40001, 80, SYN);
  const Bytes full = tagged(web, fuzz::kWeb, crypto::Coverage::full, false);
  // (ztgate refuses a tagged frame split over mbuf segments: tagged_frame_segmented; the
  // verified ones are single-segment.)
  seed({{full, 0, 0, true}, {full, 0, 0, true}, {full, 0, 2, true}});  // accepted, replay, segmented
  seed({{tagged(web, fuzz::kWeb, crypto::Coverage::hdr, false), 0, 0, true},
        {tagged(web_tcp, fuzz::kWeb, crypto::Coverage::full, false), 0, 3, true}});
  seed({{tagged(web, fuzz::kWeb, crypto::Coverage::full, true), 0, 0, true}});
  seed({{tagged(web, 1002, crypto::Coverage::full, false), 0, 0, true}});  // client: no rule
  // Flows open under revision 1, then revision 2 and an aging round (8080 now under L7: cut;
  // ICMP revoked; DNS restamped), their next packets, and back to revision 1.
  {
    const Bytes dns = PacketBuilder{}.eth().ipv4({.src = A1, .dst = B5}).udp({.sport = 5353, .dport = 53}).payload(30).build();
    const Bytes ping = PacketBuilder{}.eth().ipv4({.src = A1, .dst = B5}).icmp().payload(8).build();
    seed({{tcp4(A1, B5, 40010, 8080, SYN), 0, 0, false},
          {dns, 0, 0, false},
          {ping, 0, 0, true, true},
          {tcp4(B5, A1, 8080, 40010, SYN | ACK), 1, 0, true},
          {dns, 0, 0, false},
          {ping, 0, 0, true, true},
          {dns, 0, 1, true}});
  }
  // ARP, and a frame too short to parse.
  seed({{PacketBuilder{}.eth().arp().padding(18).build(), 0, 0, false}, {Bytes(10, 0), 0, 0, true}});
  std::printf("%d seeds in %s\n", written, out.c_str());
  return 0;
}
