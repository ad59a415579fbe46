// Wire format of the identity tag (DESIGN.md §2): exact bytes, named rejects, Geneve packet.
#include <gtest/gtest.h>

#include "fixtures.hpp"
#include "zt/crypto/tag_codec.hpp"

namespace zt::crypto {
namespace {

using test::from_hex;
using test::to_hex;

Tag sample_tag() {
  Tag t;
  t.fields.coverage = Coverage::full;
  t.fields.alg = Alg::aes256_cmac;
  t.fields.epoch = 0xA7;
  t.fields.generation = 2;
  t.fields.identity = 0x01020304;
  t.fields.timestamp_ns = 0x0000BBCCDDEEFF11ull;
  t.fields.lane = 0x1234;
  for (std::size_t i = 0; i < 16; ++i) t.mac[i] = static_cast<std::uint8_t>(0xF0 + i);
  return t;
}

TEST(TagCodec, EncodesEveryFieldAtItsDesignOffset) {
  std::array<std::uint8_t, kTagBodyLen> b{};
  encode_tag_body(sample_tag(), b);
  EXPECT_EQ(to_hex(b),
            "1101a702"            // ver 1 | P=1, alg 1, epoch, generation
            "01020304"            // identity BE
            "bbccddeeff11"        // 48-bit timestamp BE
            "1234"                // lane
            "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
}

TEST(TagCodec, DecodeInvertsEncode) {
  std::array<std::uint8_t, kTagBodyLen> b{};
  const Tag in = sample_tag();
  encode_tag_body(in, b);
  Tag out;
  ASSERT_EQ(decode_tag_body(b, out), TagReject::none);
  EXPECT_EQ(out, in);
  Tag hdr = in;
  hdr.fields.coverage = Coverage::hdr;
  hdr.fields.alg = Alg::aes128_cmac;
  encode_tag_body(hdr, b);
  EXPECT_EQ(b[0], 0x10);
  ASSERT_EQ(decode_tag_body(b, out), TagReject::none);
  EXPECT_EQ(out, hdr);
}

TEST(TagCodec, TimestampIsTruncatedTo48Bits) {
  Tag t = sample_tag();
  t.fields.timestamp_ns = 0xFFFF'0000'0000'0001ull;
  std::array<std::uint8_t, kTagBodyLen> b{};
  encode_tag_body(t, b);
  Tag out;
  ASSERT_EQ(decode_tag_body(b, out), TagReject::none);
  EXPECT_EQ(out.fields.timestamp_ns, 1u);
}

TEST(TagCodec, RejectsShortBodyAsTruncated) {
  std::array<std::uint8_t, kTagBodyLen> b{};
  encode_tag_body(sample_tag(), b);
  Tag out;
  for (std::size_t n = 0; n < kTagBodyLen; ++n)
    EXPECT_EQ(decode_tag_body(std::span(b).first(n), out), TagReject::tag_truncated) << n;
}

TEST(TagCodec, RejectsUnknownVersion) {
  std::array<std::uint8_t, kTagBodyLen> b{};
  encode_tag_body(sample_tag(), b);
  Tag out;
  for (std::uint8_t v : {0, 2, 15}) {
    b[0] = static_cast<std::uint8_t>((v << 4) | 1);
    EXPECT_EQ(decode_tag_body(b, out), TagReject::tag_bad_version) << int(v);
  }
}

TEST(TagCodec, RejectsUnknownAlgorithm) {
  std::array<std::uint8_t, kTagBodyLen> b{};
  encode_tag_body(sample_tag(), b);
  Tag out;
  for (std::uint8_t a : {2, 3, 0x80, 0xFF}) {
    b[1] = a;
    EXPECT_EQ(decode_tag_body(b, out), TagReject::tag_bad_alg) << int(a);
  }
}

TEST(TagCodec, RejectsReservedFlagBits) {
  std::array<std::uint8_t, kTagBodyLen> b{};
  encode_tag_body(sample_tag(), b);
  Tag out;
  for (std::uint8_t f : {0x2, 0x4, 0x8}) {
    b[0] = static_cast<std::uint8_t>(0x10 | f | 1);
    EXPECT_EQ(decode_tag_body(b, out), TagReject::tag_bad_flags) << int(f);
  }
}

TEST(TagCodec, OptionCarriesClassTypeAndLength) {
  std::array<std::uint8_t, kTagOptionLen> o{};
  encode_tag_option(sample_tag(), o);
  EXPECT_EQ(to_hex(std::span(o).first(4)), "fff08108");
  Tag out;
  ASSERT_EQ(decode_tag_option(o, out), TagReject::none);
  EXPECT_EQ(out, sample_tag());
}

TEST(TagCodec, RejectsWrongOptionClassTypeLengthAndShortOption) {
  std::array<std::uint8_t, kTagOptionLen> o{};
  encode_tag_option(sample_tag(), o);
  Tag out;
  auto bad = o;
  bad[1] = 0xF1;
  EXPECT_EQ(decode_tag_option(bad, out), TagReject::tag_bad_option_class);
  bad = o;
  bad[2] = 0x01;  // critical bit cleared
  EXPECT_EQ(decode_tag_option(bad, out), TagReject::tag_bad_option_type);
  bad = o;
  bad[3] = 7;
  EXPECT_EQ(decode_tag_option(bad, out), TagReject::tag_bad_option_length);
  EXPECT_EQ(decode_tag_option(std::span(o).first(3), out), TagReject::tag_truncated);
  EXPECT_EQ(decode_tag_option(std::span(o).first(35), out), TagReject::tag_truncated);
}

TEST(TagCodec, PseudoHeaderBindsAddressesProtocolAndLength) {
  auto p4 = test::ipv4_packet(17, 20);
  InnerView v = test::view_of(p4);
  std::array<std::uint8_t, kMaxPseudoHeaderLen> ph{};
  ASSERT_EQ(write_pseudo_header(v, ph), 16u);
  EXPECT_EQ(to_hex(std::span(ph).first(16)), "0a0100050a0200091100" "1c" "0000000000");
  auto p6 = test::ipv6_packet(6, 100);
  v = test::view_of(p6);
  ASSERT_EQ(write_pseudo_header(v, ph), 48u);
  EXPECT_EQ(to_hex(ph),
            "fd000000000000000000000000000005"
            "fd000000000000000000000000000009"
            "060078" "00000000000000000000000000");
}

TEST(TagCodec, HdrCoverageTakesAtMostSixteenL4Bytes) {
  EXPECT_EQ(covered_l4_len(Coverage::hdr, 1480), 16u);
  EXPECT_EQ(covered_l4_len(Coverage::hdr, 8), 8u);
  EXPECT_EQ(covered_l4_len(Coverage::full, 1480), 1480u);
}

TEST(TagCodec, InnerParserWalksIpv6ExtensionHeadersAndRefusesFragments) {
  auto p = test::ipv6_packet(17, 10);
  // Insert an 8-byte hop-by-hop header before UDP.
  std::vector<std::uint8_t> q(p.begin(), p.begin() + 40);
  q[6] = 0;
  test::put16(q, 4, static_cast<std::uint16_t>(8 + 18));
  for (std::uint8_t b : {17, 0, 1, 4, 0, 0, 0, 0}) q.push_back(b);
  q.insert(q.end(), p.begin() + 40, p.end());
  InnerView v;
  ASSERT_EQ(parse_inner_ip(q, v), PacketError::none);
  EXPECT_EQ(v.proto, 17);
  EXPECT_EQ(v.l4.size(), 18u);
  EXPECT_EQ(v.l4.data(), q.data() + 48);
  auto f = test::ipv4_packet(17, 10);
  f[6] = 0x20;  // MF
  EXPECT_EQ(parse_inner_ip(f, v), PacketError::inner_fragment);
  f = test::ipv4_packet(17, 10);
  f[3] += 1;  // total length past the buffer
  EXPECT_EQ(parse_inner_ip(f, v), PacketError::truncated);
  std::vector<std::uint8_t> junk{0x50, 0, 0, 0};
  EXPECT_EQ(parse_inner_ip(junk, v), PacketError::bad_ip_version);
}

class GenevePacket : public ::testing::TestWithParam<int> {};

TEST_P(GenevePacket, BuildThenParseFindsTagAndInner) {
  OuterParams o;
  o.ip_version = static_cast<std::uint8_t>(GetParam());
  o.src = {192, 0, 2, 1};
  o.dst = {198, 51, 100, 2};
  o.vni = 0x123456;
  auto inner = test::ipv4_packet(6, 50);
  std::vector<std::uint8_t> pkt;
  ASSERT_EQ(build_geneve_packet(o, sample_tag(), inner, pkt), PacketError::none);
  EXPECT_EQ(pkt.size(), (o.ip_version == 4 ? 20u : 40u) + 8 + 8 + 36 + inner.size());
  GeneveView g;
  ASSERT_EQ(parse_geneve_packet(pkt, g), PacketError::none);
  EXPECT_EQ(g.outer_version, o.ip_version);
  EXPECT_EQ(g.vni, 0x123456u);
  EXPECT_EQ(g.protocol, 0x0800);
  EXPECT_TRUE(std::equal(g.inner.begin(), g.inner.end(), inner.begin(), inner.end()));
  Tag t;
  ASSERT_EQ(decode_tag_option(g.tag_option, t), TagReject::none);
  EXPECT_EQ(t, sample_tag());
}

INSTANTIATE_TEST_SUITE_P(OuterIpVersions, GenevePacket, ::testing::Values(4, 6));

std::vector<std::uint8_t> sample_geneve() {
  OuterParams o;
  o.src = {192, 0, 2, 1};
  o.dst = {198, 51, 100, 2};
  std::vector<std::uint8_t> pkt;
  EXPECT_EQ(build_geneve_packet(o, sample_tag(), test::ipv4_packet(17, 10), pkt),
            PacketError::none);
  return pkt;
}

TEST(GenevePacketParse, SkipsUnknownNonCriticalOptionButRefusesUnknownCriticalOne) {
  auto pkt = sample_geneve();
  // Prepend an unknown 4-byte option (class 0x0101, type 0x05, len 0) to the option area.
  std::vector<std::uint8_t> opt{0x01, 0x01, 0x05, 0x00};
  pkt.insert(pkt.begin() + 20 + 8 + 8, opt.begin(), opt.end());
  pkt[28] = static_cast<std::uint8_t>(pkt[28] + 1);  // Geneve opt len +1 word
  test::put16(pkt, 2, static_cast<std::uint16_t>(pkt.size()));
  test::put16(pkt, 24, static_cast<std::uint16_t>(pkt.size() - 20));
  GeneveView g;
  EXPECT_EQ(parse_geneve_packet(pkt, g), PacketError::none);
  pkt[20 + 8 + 8 + 2] = 0x85;  // now critical
  EXPECT_EQ(parse_geneve_packet(pkt, g), PacketError::geneve_unknown_critical_option);
}

TEST(GenevePacketParse, NamesMissingDuplicateAndMisSizedTags) {
  GeneveView g;
  auto pkt = sample_geneve();
  auto bad = pkt;
  bad[20 + 8 + 8 + 3] = 7;  // tag option 7 words
  EXPECT_EQ(parse_geneve_packet(bad, g), PacketError::tag_bad_option_length);
  bad = pkt;
  bad[20 + 8 + 8 + 2] = 0x01;  // not our type, not critical: skipped, so the tag is missing
  EXPECT_EQ(parse_geneve_packet(bad, g), PacketError::tag_missing);
  bad = pkt;
  std::vector<std::uint8_t> dup(pkt.begin() + 36, pkt.begin() + 72);
  bad.insert(bad.begin() + 72, dup.begin(), dup.end());
  bad[28] = static_cast<std::uint8_t>(bad[28] + 9);
  test::put16(bad, 2, static_cast<std::uint16_t>(bad.size()));
  test::put16(bad, 24, static_cast<std::uint16_t>(bad.size() - 20));
  EXPECT_EQ(parse_geneve_packet(bad, g), PacketError::tag_duplicate);
  bad = pkt;
  test::put16(bad, 22, 4789);
  EXPECT_EQ(parse_geneve_packet(bad, g), PacketError::not_geneve_port);
  bad = pkt;
  bad[28] |= 0x40;  // Geneve version 1
  EXPECT_EQ(parse_geneve_packet(bad, g), PacketError::geneve_bad_version);
  bad = pkt;
  test::put16(bad, 30, 0x86DD);  // says IPv6, carries IPv4
  EXPECT_EQ(parse_geneve_packet(bad, g), PacketError::geneve_inner_unsupported);
  EXPECT_EQ(parse_geneve_packet(std::span(pkt).first(50), g), PacketError::truncated);
}

TEST(TagReject, NamesAreDistinctAndPrintable) {
  for (std::size_t i = 0; i < kTagRejectCount; ++i)
    for (std::size_t j = i + 1; j < kTagRejectCount; ++j)
      EXPECT_NE(to_string(static_cast<TagReject>(i)), to_string(static_cast<TagReject>(j)));
  EXPECT_EQ(to_string(TagReject::tag_forged_mac), "tag_forged_mac");
}

}  // namespace
}  // namespace zt::crypto
