// Fuzz target: the identity-tag codec (crypto/src/tag_codec.cpp) on arbitrary bytes. Exercises the
// Geneve packet parser, the option and body decoders and the inner-IP parser, and checks that a
// decoded tag re-encodes to the very bytes it came from and that the MAC-input builder stays in
// bounds. Built by tests/fuzz/run-fuzz.sh with the sources in tag_decoder.sources.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "zt/crypto/tag_codec.hpp"

using namespace zt::crypto;

namespace {

void check_tag_roundtrip(std::span<const std::uint8_t> option) {
  Tag t;
  if (decode_tag_option(option, t) != TagReject::none) return;
  std::uint8_t again[kTagOptionLen];
  encode_tag_option(t, std::span<std::uint8_t, kTagOptionLen>(again, kTagOptionLen));
  // Byte 3 may carry the three reserved R bits; everything else must round-trip exactly.
  if (std::memcmp(again, option.data(), 3) != 0 ||
      std::memcmp(again + 4, option.data() + 4, kTagBodyLen) != 0)
    std::abort();
}

void check_inner(std::span<const std::uint8_t> ip, std::span<const std::uint8_t> fields) {
  InnerView v;
  if (parse_inner_ip(ip, v) != PacketError::none) return;
  if (v.l4.data() < ip.data() || v.l4.data() + v.l4.size() > ip.data() + ip.size()) std::abort();
  static std::vector<std::uint8_t> buf(kMaxMacInputLen);
  for (Coverage c : {Coverage::hdr, Coverage::full}) {
    const std::size_t n = build_mac_input(fields.first<16>(), c, v, buf);
    if (n > buf.size()) std::abort();
    if (n && std::memcmp(buf.data(), fields.data(), 16) != 0) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> in(data, size);
  static const std::uint8_t kZero[16] = {};
  const std::span<const std::uint8_t> fields =
      size >= 16 ? in.first(16) : std::span<const std::uint8_t>(kZero, 16);

  GeneveView g;
  if (parse_geneve_packet(in, g) == PacketError::none) {
    if (g.tag_option.size() != kTagOptionLen || g.tag_body.size() != kTagBodyLen) std::abort();
    check_tag_roundtrip(g.tag_option);
    check_inner(g.inner, g.tag_body.first(16));
  }
  // The same bytes as a bare option, a bare body and a bare inner packet.
  check_tag_roundtrip(in);
  Tag t;
  (void)decode_tag_body(in, t);
  check_inner(in, fields);
  return 0;
}
