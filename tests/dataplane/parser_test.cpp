// What the parser accepts, what it fills in, and the exact reason for every frame it refuses.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "packet_builder.hpp"
#include "parse_helpers.hpp"

namespace zt::test {
namespace {

using dp::FragKind;
using dp::FrameKind;
using dp::ParsedPacket;
using rules::DropReason;

constexpr std::uint8_t kTcp = 6, kUdp = 17, kIcmp = 1, kIcmpv6 = 58;

dp::IpAddr v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
  dp::IpAddr r;
  r.b[0] = a;
  r.b[1] = b;
  r.b[2] = c;
  r.b[3] = d;
  return r;
}

Bytes cut(Bytes b, std::size_t n) {
  b.resize(n);
  return b;
}

// A Geneve frame: outer IPv4/UDP to 6081, then `g`, then an inner IPv4/TCP packet.
PacketBuilder geneve_frame(const GeneveSpec& g) {
  PacketBuilder b;
  b.eth().ipv4().udp({.sport = 50000, .dport = dp::kGenevePort}).geneve(g);
  return b;
}

// ---------------------------------------------------------------------------------------------
// Accepted frames

TEST(Parser, ParsesTcpOverIpv4) {
  const auto f =
      PacketBuilder{}.eth().ipv4({.ttl = 33}).tcp({.sport = 40001, .dport = 443, .flags = 0x12})
          .payload(10).build();
  ParsedPacket p;
  ASSERT_EQ(parse(f, p), DropReason::none);
  EXPECT_EQ(p.kind, FrameKind::ip);
  EXPECT_EQ(p.pkt_len, f.size());
  EXPECT_EQ(p.l2_len, 14);
  EXPECT_EQ(p.ethertype, 0x0800);
  EXPECT_EQ(p.vlan_count, 0);
  const auto& o = p.outer;
  EXPECT_EQ(o.version, 4);
  EXPECT_EQ(o.l3_off, 14);
  EXPECT_EQ(o.l4_off, 34);
  EXPECT_EQ(o.l4_len, 30u);
  EXPECT_EQ(o.proto, kTcp);
  EXPECT_EQ(o.ttl, 33);
  EXPECT_EQ(o.sport, 40001);
  EXPECT_EQ(o.dport, 443);
  EXPECT_EQ(o.tcp_flags, 0x12);
  EXPECT_EQ(o.l4_hdr_len, 20);
  EXPECT_EQ(o.frag, FragKind::none);
  EXPECT_FALSE(o.ipv4_options);
  EXPECT_EQ(o.src, v4(10, 0, 0, 1));
  EXPECT_EQ(o.dst, v4(10, 0, 0, 2));
  EXPECT_EQ(&p.flow(), &p.outer);
}

TEST(Parser, ReportsTcpHeaderLengthIncludingOptions) {
  const auto f = PacketBuilder{}.eth().ipv4().tcp({.options = Bytes(12, 1)}).build();
  ParsedPacket p;
  ASSERT_EQ(parse(f, p), DropReason::none);
  EXPECT_EQ(p.outer.l4_hdr_len, 32);
  EXPECT_EQ(p.outer.l4_len, 32u);
}

TEST(Parser, StoresPortsInHostOrder) {
  const auto f = PacketBuilder{}.eth().ipv4().udp({.sport = 0x1234, .dport = 0xABCD}).build();
  ParsedPacket p;
  ASSERT_EQ(parse(f, p), DropReason::none);
  EXPECT_EQ(p.outer.sport, 0x1234);
  EXPECT_EQ(p.outer.dport, 0xABCD);
}

TEST(Parser, ParsesUdpOverIpv4) {
  const auto f = PacketBuilder{}.eth().ipv4().udp({.sport = 5353, .dport = 53}).payload(20).build();
  ParsedPacket p;
  ASSERT_EQ(parse(f, p), DropReason::none);
  EXPECT_EQ(p.outer.proto, kUdp);
  EXPECT_EQ(p.outer.sport, 5353);
  EXPECT_EQ(p.outer.dport, 53);
  EXPECT_EQ(p.outer.l4_hdr_len, 8);
  EXPECT_EQ(p.outer.l4_len, 28u);
}

TEST(Parser, ParsesIcmpTypeAndCodeIntoThePortFields) {
  const auto f = PacketBuilder{}.eth().ipv4().icmp({.type = 3, .code = 4}).payload(28).build();
  ParsedPacket p;
  ASSERT_EQ(parse(f, p), DropReason::none);
  EXPECT_EQ(p.outer.proto, kIcmp);
  EXPECT_EQ(p.outer.sport, 3);
  EXPECT_EQ(p.outer.dport, 4);
  EXPECT_EQ(p.outer.l4_hdr_len, 8);
}

TEST(Parser, ParsesTcpOverIpv6) {
  const auto f = PacketBuilder{}.eth().ipv6({.hop_limit = 7}).tcp({.dport = 22}).payload(5).build();
  ParsedPacket p;
  ASSERT_EQ(parse(f, p), DropReason::none);
  EXPECT_EQ(p.ethertype, 0x86DD);
  const auto& o = p.outer;
  EXPECT_EQ(o.version, 6);
  EXPECT_EQ(o.l3_off, 14);
  EXPECT_EQ(o.l4_off, 54);
  EXPECT_EQ(o.l4_len, 25u);
  EXPECT_EQ(o.proto, kTcp);
  EXPECT_EQ(o.ttl, 7);
  EXPECT_EQ(o.dport, 22);
  EXPECT_EQ(o.ipv6_ext_count, 0);
  EXPECT_EQ(o.src.b[0], 0x20);
  EXPECT_EQ(o.src.b[15], 1);
  EXPECT_EQ(o.dst.b[15], 2);
}

TEST(Parser, ParsesUdpOverIpv6) {
  const auto f = PacketBuilder{}.eth().ipv6().udp({.dport = 123}).payload(48).build();
  ParsedPacket p;
  ASSERT_EQ(parse(f, p), DropReason::none);
  EXPECT_EQ(p.outer.proto, kUdp);
  EXPECT_EQ(p.outer.dport, 123);
  EXPECT_EQ(p.outer.l4_len, 56u);
}

TEST(Parser, ParsesIcmpv6) {
  const auto f = PacketBuilder{}.eth().ipv6().icmpv6({.type = 135}).payload(16).build();
  ParsedPacket p;
  ASSERT_EQ(parse(f, p), DropReason::none);
  EXPECT_EQ(p.outer.proto, kIcmpv6);
  EXPECT_EQ(p.outer.sport, 135);
  EXPECT_EQ(p.outer.l4_hdr_len, 8);
}

TEST(Parser, ParsesSingleVlanTag) {
  const auto f = PacketBuilder{}.eth().vlan(0x8100, 0x2064).ipv4().udp().build();
  ParsedPacket p;
  ASSERT_EQ(parse(f, p), DropReason::none);
  EXPECT_EQ(p.vlan_count, 1);
  EXPECT_EQ(p.vlan_tci[0], 0x2064);
  EXPECT_EQ(p.l2_len, 18);
  EXPECT_EQ(p.ethertype, 0x0800);
  EXPECT_EQ(p.outer.l3_off, 18);
}

TEST(Parser, ParsesQinqTags) {
  const auto f =
      PacketBuilder{}.eth().vlan(0x88A8, 100).vlan(0x8100, 200).ipv6().tcp().build();
  ParsedPacket p;
  ASSERT_EQ(parse(f, p), DropReason::none);
  EXPECT_EQ(p.vlan_count, 2);
  EXPECT_EQ(p.vlan_tci[0], 100);
  EXPECT_EQ(p.vlan_tci[1], 200);
  EXPECT_EQ(p.l2_len, 22);
  EXPECT_EQ(p.outer.l3_off, 22);
  EXPECT_EQ(p.outer.proto, kTcp);
}

TEST(Parser, AcceptsArpRequest) {
  const auto f = PacketBuilder{}.eth().arp().padding(18).build();
  ParsedPacket p;
  ASSERT_EQ(parse(f, p), DropReason::none);
  EXPECT_EQ(p.kind, FrameKind::arp);
  EXPECT_EQ(p.ethertype, 0x0806);
}

TEST(Parser, AcceptsEthernetPaddingAfterTheDatagramWithoutCountingIt) {
  const auto f = PacketBuilder{}.eth().ipv4().udp().payload(2).padding(16).build();
  ParsedPacket p;
  ASSERT_EQ(parse(f, p), DropReason::none);
  EXPECT_EQ(p.pkt_len, 14u + 20 + 8 + 2 + 16);
  EXPECT_EQ(p.outer.l4_len, 10u);
}

TEST(Parser, AcceptsWellFormedIpv4Options) {
  // NOP, record route (type 7, length 7, pointer 4, one slot), end of list.
  const Bytes opts{1, 7, 7, 4, 0, 0, 0, 0};
  const auto f = PacketBuilder{}.eth().ipv4({.options = opts}).tcp().build();
  ParsedPacket p;
  ASSERT_EQ(parse(f, p), DropReason::none);
  EXPECT_TRUE(p.outer.ipv4_options);
  EXPECT_EQ(p.outer.l4_off, 14 + 28);
  EXPECT_EQ(p.outer.dport, 443);
}

TEST(Parser, ParsesFirstIpv4FragmentHoldingTheWholeTcpHeader) {
  const auto f = PacketBuilder{}.eth().ipv4({.id = 77, .more_fragments = true}).tcp().payload(12)
                     .build();
  ParsedPacket p;
  ASSERT_EQ(parse(f, p), DropReason::none);
  EXPECT_EQ(p.outer.frag, FragKind::first);
  EXPECT_EQ(p.outer.frag_id, 77u);
  EXPECT_EQ(p.outer.frag_offset, 0);
  EXPECT_EQ(p.outer.dport, 443);
}

TEST(Parser, ParsesLaterIpv4FragmentWithoutPorts) {
  const auto f =
      PacketBuilder{}.eth().ipv4({.id = 77, .frag_offset = 1480}).raw(kTcp, Bytes(16, 0xEE)).build();
  ParsedPacket p;
  ASSERT_EQ(parse(f, p), DropReason::none);
  EXPECT_EQ(p.outer.frag, FragKind::later);
  EXPECT_EQ(p.outer.frag_offset, 1480);
  EXPECT_EQ(p.outer.frag_id, 77u);
  EXPECT_EQ(p.outer.proto, kTcp);
  EXPECT_EQ(p.outer.sport, 0);
  EXPECT_EQ(p.outer.dport, 0);
  EXPECT_EQ(p.outer.l4_hdr_len, 0);
  EXPECT_EQ(p.outer.l4_len, 16u);
}

TEST(Parser, WalksIpv6ExtensionChainToTheUpperLayer) {
  const auto f = PacketBuilder{}
                     .eth()
                     .ipv6()
                     .ipv6_ext({.type = 0, .len = 8})    // hop-by-hop
                     .ipv6_ext({.type = 60, .len = 16})  // destination options
                     .ipv6_ext({.type = 43, .len = 24})  // segment routing
                     .ipv6_ext({.type = 51, .len = 24})  // AH
                     .ipv6_ext({.type = 60, .len = 8})   // destination options
                     .udp({.dport = 4789})
                     .build();
  ParsedPacket p;
  ASSERT_EQ(parse(f, p), DropReason::none);
  EXPECT_EQ(p.outer.ipv6_ext_count, 5);
  EXPECT_EQ(p.outer.proto, kUdp);
  EXPECT_EQ(p.outer.l4_off, 14 + 40 + 8 + 16 + 24 + 24 + 8);
  EXPECT_EQ(p.outer.l4_len, 8u);
  EXPECT_EQ(p.outer.dport, 4789);
}

TEST(Parser, AcceptsTheLongestExtensionChainTheWalkAllows) {
  PacketBuilder b;
  b.eth().ipv6();
  for (unsigned i = 0; i < dp::kMaxIpv6ExtHeaders; ++i) b.ipv6_ext({.type = 60});
  const auto f = b.tcp().build();
  ParsedPacket p;
  ASSERT_EQ(parse(f, p), DropReason::none);
  EXPECT_EQ(p.outer.ipv6_ext_count, dp::kMaxIpv6ExtHeaders);
  EXPECT_EQ(p.outer.proto, kTcp);
}

TEST(Parser, TreatsAtomicIpv6FragmentAsWholeDatagram) {
  const auto f = PacketBuilder{}.eth().ipv6().ipv6_frag({.offset = 0, .more_fragments = false})
                     .udp({.dport = 53}).payload(3).build();
  ParsedPacket p;
  ASSERT_EQ(parse(f, p), DropReason::none);
  EXPECT_EQ(p.outer.frag, FragKind::none);
  EXPECT_EQ(p.outer.ipv6_ext_count, 1);
  EXPECT_EQ(p.outer.dport, 53);
}

TEST(Parser, ParsesFirstIpv6FragmentHoldingWholeChainAndTcpHeader) {
  const auto f = PacketBuilder{}.eth().ipv6().ipv6_frag({.more_fragments = true, .id = 99})
                     .ipv6_ext({.type = 60}).tcp().payload(28).build();
  ParsedPacket p;
  ASSERT_EQ(parse(f, p), DropReason::none);
  EXPECT_EQ(p.outer.frag, FragKind::first);
  EXPECT_EQ(p.outer.frag_id, 99u);
  EXPECT_EQ(p.outer.proto, kTcp);
  EXPECT_EQ(p.outer.dport, 443);
  EXPECT_EQ(p.outer.ipv6_ext_count, 2);
}

TEST(Parser, ParsesLaterIpv6FragmentWithoutPorts) {
  const auto f = PacketBuilder{}.eth().ipv6().ipv6_frag({.offset = 1232, .id = 99})
                     .raw(kUdp, Bytes(100, 0xEE)).build();
  ParsedPacket p;
  ASSERT_EQ(parse(f, p), DropReason::none);
  EXPECT_EQ(p.outer.frag, FragKind::later);
  EXPECT_EQ(p.outer.frag_offset, 1232);
  EXPECT_EQ(p.outer.proto, kUdp);
  EXPECT_EQ(p.outer.sport, 0);
  EXPECT_EQ(p.outer.l4_hdr_len, 0);
  EXPECT_EQ(p.outer.l4_len, 100u);
}

TEST(Parser, ParsesOpaqueProtocolsWithoutPorts) {
  // ESP, GRE, SCTP, IP-in-IP: parsed as far as IP; the policy decides on the protocol alone.
  for (const std::uint8_t proto : {50, 47, 132, 4}) {
    SCOPED_TRACE(int{proto});
    for (const bool v6 : {false, true}) {
      PacketBuilder b;
      b.eth();
      v6 ? b.ipv6() : b.ipv4();
      const auto f = b.raw(proto, Bytes(24, 0x42)).build();
      ParsedPacket p;
      ASSERT_EQ(parse(f, p), DropReason::none);
      EXPECT_EQ(p.outer.proto, proto);
      EXPECT_EQ(p.outer.l4_hdr_len, 0);
      EXPECT_EQ(p.outer.sport, 0);
      EXPECT_EQ(p.outer.l4_len, 24u);
    }
  }
}

TEST(Parser, ParsesIpv6NoNextHeaderAsOpaque) {
  const auto f = PacketBuilder{}.eth().ipv6().payload(8).build();
  ParsedPacket p;
  ASSERT_EQ(parse(f, p), DropReason::none);
  EXPECT_EQ(p.outer.proto, 59);
  EXPECT_EQ(p.outer.l4_hdr_len, 0);
}

TEST(Parser, ParsesGeneveWithIdentityTagAndInnerTcp) {
  auto b = geneve_frame({.vni = 0xABCDEF, .options = {tag_option()}});
  const auto f = b.ipv4({.src = {192, 168, 1, 1}}).tcp({.dport = 8443}).payload(7).build();
  ParsedPacket p;
  ASSERT_EQ(parse(f, p), DropReason::none);
  EXPECT_EQ(p.kind, FrameKind::geneve);
  EXPECT_EQ(p.outer.dport, dp::kGenevePort);
  EXPECT_EQ(p.geneve_off, 14 + 20 + 8);
  EXPECT_EQ(p.vni, 0xABCDEFu);
  EXPECT_EQ(p.tag_off, p.geneve_off + 8 + 4);
  EXPECT_EQ(f[p.tag_off], 0xA5);
  EXPECT_EQ(p.inner.version, 4);
  EXPECT_EQ(p.inner.l3_off, p.geneve_off + 8 + 36);
  EXPECT_EQ(p.inner.src, v4(192, 168, 1, 1));
  EXPECT_EQ(p.inner.proto, kTcp);
  EXPECT_EQ(p.inner.dport, 8443);
  EXPECT_EQ(p.inner.l4_len, 27u);
  EXPECT_EQ(&p.flow(), &p.inner);
}

TEST(Parser, ParsesGeneveWithoutTagAsUntagged) {
  const auto f = geneve_frame({}).ipv4().udp({.dport = 53}).build();
  ParsedPacket p;
  ASSERT_EQ(parse(f, p), DropReason::none);
  EXPECT_EQ(p.kind, FrameKind::geneve);
  EXPECT_EQ(p.tag_off, 0);
  EXPECT_EQ(p.inner.dport, 53);
}

TEST(Parser, SkipsUnknownNonCriticalGeneveOptions) {
  const GeneveSpec g{.options = {{.cls = 0x0102, .type = 0x05, .body = Bytes(8, 0)},
                                 tag_option(),
                                 {.cls = 0xFFF0, .type = 0x01, .body = {}}}};
  const auto f = geneve_frame(g).ipv4().tcp().build();
  ParsedPacket p;
  ASSERT_EQ(parse(f, p), DropReason::none);
  EXPECT_EQ(p.tag_off, p.geneve_off + 8 + 12 + 4);
  EXPECT_EQ(p.inner.l3_off, p.geneve_off + 8 + 12 + 36 + 4);
}

TEST(Parser, ParsesGeneveOverIpv6WithInnerIpv6) {
  PacketBuilder b;
  b.eth().ipv6().udp({.dport = dp::kGenevePort}).geneve({.options = {tag_option()}});
  const auto f = b.ipv6().udp({.dport = 443}).payload(9).build();
  ParsedPacket p;
  ASSERT_EQ(parse(f, p), DropReason::none);
  EXPECT_EQ(p.kind, FrameKind::geneve);
  EXPECT_EQ(p.inner.version, 6);
  EXPECT_EQ(p.inner.proto, kUdp);
  EXPECT_EQ(p.inner.dport, 443);
  EXPECT_NE(p.tag_off, 0);
}

TEST(Parser, ReadsOnlyTheWindowOfAFrameLargerThanIt) {
  const auto f = PacketBuilder{}.eth().ipv4().tcp().payload(1400).build();
  ParsedPacket p;
  ASSERT_EQ(parse(f, p), DropReason::none);
  EXPECT_EQ(p.pkt_len, 1454u);
  EXPECT_EQ(p.outer.l4_len, 1420u);
}

TEST(Parser, AcceptsHeadersEndingInsideTheWindow) {
  // 14 + 40 + 436 (AH) + 20 (TCP) = 510 bytes of headers in a 1510-byte frame.
  const auto f = PacketBuilder{}.eth().ipv6().ipv6_ext({.type = 51, .len = 436})
                     .tcp().payload(1000).build();
  ParsedPacket p;
  ASSERT_EQ(parse(f, p), DropReason::none);
  EXPECT_EQ(p.outer.l4_off + p.outer.l4_hdr_len, 510);
}

TEST(Parser, AcceptsArpEndingExactlyAtTheWindowEdge) {
  // Hardware + protocol address lengths of 245 bytes: 14 + 8 + 2 * 245 = 512.
  Bytes arp{0, 1, 0x08, 0, 200, 45, 0, 1};
  arp.resize(8 + 2 * 245 + 100, 0);
  ParsedPacket p;
  EXPECT_EQ(parse(PacketBuilder{}.eth().raw(0x0806, arp).build(), p), DropReason::none);
  EXPECT_EQ(p.kind, FrameKind::arp);
  arp[5] = 46;  // one more byte of each address: 514 bytes, past the window
  EXPECT_EQ(parse(PacketBuilder{}.eth().raw(0x0806, arp).build()),
            DropReason::header_chain_too_long);
}

// ---------------------------------------------------------------------------------------------
// Layer 2 drops

TEST(Parser, DropsFrameShorterThanEthernetHeader) {
  EXPECT_EQ(parse(Bytes(13, 0)), DropReason::frame_runt);
  EXPECT_EQ(parse(Bytes{}), DropReason::frame_runt);
}

TEST(Parser, DropsVlanTagCutOffByEndOfFrame) {
  const auto f = PacketBuilder{}.eth().vlan(0x8100, 5).ipv4().build();
  EXPECT_EQ(parse(cut(f, 17)), DropReason::vlan_truncated);
}

TEST(Parser, DropsThirdVlanTag) {
  const auto f = PacketBuilder{}.eth().vlan(0x88A8, 1).vlan(0x8100, 2).vlan(0x8100, 3).ipv4()
                     .udp().build();
  EXPECT_EQ(parse(f), DropReason::vlan_too_deep);
}

TEST(Parser, DropsUnsupportedEthertype) {
  EXPECT_EQ(parse(PacketBuilder{}.eth().raw(0x88CC, Bytes(46, 0)).build()),  // LLDP
            DropReason::ethertype_unsupported);
  EXPECT_EQ(parse(PacketBuilder{}.eth().raw(0x8847, Bytes(46, 0)).build()),  // MPLS
            DropReason::ethertype_unsupported);
  EXPECT_EQ(parse(PacketBuilder{}.eth().vlan(0x8100, 1).raw(0x8864, Bytes(46, 0)).build()),
            DropReason::ethertype_unsupported);  // PPPoE session behind a VLAN tag
}

TEST(Parser, DropsArpShorterThanItsAddresses) {
  const auto f = PacketBuilder{}.eth().arp().build();
  EXPECT_EQ(parse(cut(f, 14 + 27)), DropReason::arp_truncated);
  EXPECT_EQ(parse(cut(f, 14 + 7)), DropReason::arp_truncated);
}

// ---------------------------------------------------------------------------------------------
// IPv4 drops

TEST(Parser, DropsIpv4HeaderCutOffByEndOfFrame) {
  const auto f = PacketBuilder{}.eth().ipv4().build();
  EXPECT_EQ(parse(cut(f, 14 + 19)), DropReason::ipv4_truncated);
}

TEST(Parser, DropsIpv4EthertypeCarryingAnotherIpVersion) {
  const auto f = PacketBuilder{}.eth().ipv4({.version = 6}).udp().build();
  EXPECT_EQ(parse(f), DropReason::ipv4_bad_version);
}

TEST(Parser, DropsIpv4HeaderLengthBelowTwentyBytes) {
  const auto f = PacketBuilder{}.eth().ipv4({.ihl_words = 4}).udp().build();
  EXPECT_EQ(parse(f), DropReason::ipv4_bad_ihl);
}

TEST(Parser, DropsIpv4HeaderLengthPastTotalLength) {
  const Bytes opts(40, 1);  // 40 NOPs: a 60-byte header
  const auto f = PacketBuilder{}.eth().ipv4({.options = opts, .total_length = 40}).build();
  EXPECT_EQ(parse(f), DropReason::ipv4_bad_ihl);
}

TEST(Parser, DropsIpv4TotalLengthLongerThanFrame) {
  const auto f = PacketBuilder{}.eth().ipv4().udp().payload(30).build();
  EXPECT_EQ(parse(cut(f, f.size() - 1)), DropReason::ipv4_bad_total_length);
}

TEST(Parser, DropsIpv4TotalLengthShorterThanHeader) {
  // TSO/GSO captures carry total length 0: never a datagram on the wire.
  const auto f = PacketBuilder{}.eth().ipv4({.total_length = 0}).udp().build();
  EXPECT_EQ(parse(f), DropReason::ipv4_bad_total_length);
}

TEST(Parser, DropsIpv4HeaderWithWrongChecksum) {
  auto f = PacketBuilder{}.eth().ipv4().udp().build();
  f[14 + 8] ^= 1;  // TTL changed after the checksum was computed
  EXPECT_EQ(parse(f), DropReason::ipv4_bad_checksum);
}

TEST(Parser, DropsIpv4OptionRunningPastTheHeader) {
  const Bytes opts{1, 7, 9, 4, 0, 0, 0, 0};  // record route claims 9 bytes, 7 remain
  EXPECT_EQ(parse(PacketBuilder{}.eth().ipv4({.options = opts}).udp().build()),
            DropReason::ipv4_bad_options);
}

TEST(Parser, DropsIpv4OptionWithLengthBelowTwo) {
  for (const std::uint8_t len : {0, 1}) {
    const Bytes opts{68, len, 0, 0};
    EXPECT_EQ(parse(PacketBuilder{}.eth().ipv4({.options = opts}).udp().build()),
              DropReason::ipv4_bad_options)
        << "length " << int{len};
  }
}

TEST(Parser, DropsIpv4OptionWhoseLengthByteIsMissing) {
  const Bytes opts{1, 1, 1, 68};  // timestamp type as the very last header byte
  EXPECT_EQ(parse(PacketBuilder{}.eth().ipv4({.options = opts}).udp().build()),
            DropReason::ipv4_bad_options);
}

TEST(Parser, DropsIpv4WithReservedFlagSet) {
  const auto f = PacketBuilder{}.eth().ipv4({.reserved_flag = true}).tcp().build();
  EXPECT_EQ(parse(f), DropReason::ipv4_reserved_flag);
}

TEST(Parser, DropsIpv4FragmentReachingPast65535Bytes) {
  const auto f = PacketBuilder{}.eth().ipv4({.frag_offset = 65528}).raw(kUdp, Bytes(16, 0))
                     .build();
  EXPECT_EQ(parse(f), DropReason::ipv4_bad_fragment);
}

TEST(Parser, DropsEmptyIpv4Fragment) {
  const auto f = PacketBuilder{}.eth().ipv4({.frag_offset = 64, .more_fragments = true})
                     .padding(26).build();
  EXPECT_EQ(parse(f), DropReason::ipv4_bad_fragment_size);
}

TEST(Parser, DropsNonLastIpv4FragmentNotAMultipleOfEightBytes) {
  const auto f = PacketBuilder{}.eth().ipv4({.more_fragments = true}).udp({.length = 1000})
                     .payload(4).build();
  EXPECT_EQ(parse(f), DropReason::ipv4_bad_fragment_size);
}

TEST(Parser, DropsTcpFragmentAtOffsetEightThatOverwritesTheHeader) {
  const auto f = PacketBuilder{}.eth().ipv4({.frag_offset = 8}).raw(kTcp, Bytes(16, 0)).build();
  EXPECT_EQ(parse(f), DropReason::ipv4_bad_fragment_size);
}

// ---------------------------------------------------------------------------------------------
// IPv6 drops

TEST(Parser, DropsIpv6HeaderCutOffByEndOfFrame) {
  const auto f = PacketBuilder{}.eth().ipv6().build();
  EXPECT_EQ(parse(cut(f, 14 + 39)), DropReason::ipv6_truncated);
}

TEST(Parser, DropsIpv6EthertypeCarryingAnotherIpVersion) {
  const auto f = PacketBuilder{}.eth().ipv6({.version = 4}).udp().build();
  EXPECT_EQ(parse(f), DropReason::ipv6_bad_version);
}

TEST(Parser, DropsIpv6PayloadLengthLongerThanFrame) {
  const auto f = PacketBuilder{}.eth().ipv6().udp().payload(8).build();
  EXPECT_EQ(parse(cut(f, f.size() - 1)), DropReason::ipv6_bad_payload_length);
}

TEST(Parser, DropsIpv6Jumbogram) {
  const auto f = PacketBuilder{}.eth().ipv6({.payload_length = 0}).ipv6_ext({.type = 0})
                     .udp().build();
  EXPECT_EQ(parse(f), DropReason::ipv6_jumbogram);
}

TEST(Parser, DropsIpv6ExtensionHeaderRunningPastThePayload) {
  const auto f = PacketBuilder{}.eth().ipv6().ipv6_ext({.type = 60, .len = 8, .len_field = 1})
                     .build();
  EXPECT_EQ(parse(f), DropReason::ipv6_ext_truncated);
}

TEST(Parser, DropsIpv6ExtensionHeaderWhoseLengthByteIsMissing) {
  const auto f = PacketBuilder{}.eth().ipv6({.next_header = 43}).raw(0, Bytes{59}).build();
  EXPECT_EQ(parse(f), DropReason::ipv6_ext_truncated);
}

TEST(Parser, DropsIpv6ExtensionChainLongerThanTheWalkAllows) {
  PacketBuilder b;
  b.eth().ipv6();
  for (unsigned i = 0; i <= dp::kMaxIpv6ExtHeaders; ++i) b.ipv6_ext({.type = 60});
  EXPECT_EQ(parse(b.tcp().build()), DropReason::ipv6_ext_chain_too_long);
}

TEST(Parser, DropsHopByHopHeaderThatIsNotFirst) {
  const auto f = PacketBuilder{}.eth().ipv6().ipv6_ext({.type = 60}).ipv6_ext({.type = 0})
                     .udp().build();
  EXPECT_EQ(parse(f), DropReason::ipv6_ext_misplaced);
}

TEST(Parser, DropsRepeatedIpv6FragmentHeader) {
  const auto f = PacketBuilder{}.eth().ipv6().ipv6_frag().ipv6_frag().udp().build();
  EXPECT_EQ(parse(f), DropReason::ipv6_bad_fragment);
}

TEST(Parser, DropsNonLastIpv6FragmentNotAMultipleOfEightBytes) {
  const auto f = PacketBuilder{}.eth().ipv6().ipv6_frag({.more_fragments = true})
                     .udp({.length = 1000}).payload(3).build();
  EXPECT_EQ(parse(f), DropReason::ipv6_bad_fragment);
}

TEST(Parser, DropsIpv6FragmentReachingPast65535Bytes) {
  const auto f = PacketBuilder{}.eth().ipv6().ipv6_frag({.offset = 65528})
                     .raw(kUdp, Bytes(16, 0)).build();
  EXPECT_EQ(parse(f), DropReason::ipv6_bad_fragment);
}

TEST(Parser, DropsEmptyIpv6Fragment) {
  const auto f = PacketBuilder{}.eth().ipv6().ipv6_frag({.offset = 8}).build();
  EXPECT_EQ(parse(f), DropReason::ipv6_bad_fragment);
}

TEST(Parser, DropsRoutingHeaderTypeZero) {
  const auto f = PacketBuilder{}.eth().ipv6().ipv6_ext({.type = 43, .len = 24, .routing_type = 0})
                     .tcp().build();
  EXPECT_EQ(parse(f), DropReason::ipv6_routing_type0);
}

TEST(Parser, DropsAuthenticationHeaderShorterThanItsFixedPart) {
  // Length field 0 says 8 bytes; AH's fixed fields alone take 12.
  const auto f = PacketBuilder{}.eth().ipv6().ipv6_ext({.type = 51, .len = 8, .len_field = 0})
                     .icmpv6().build();
  EXPECT_EQ(parse(f), DropReason::ipv6_bad_ext_header);
}

// ---------------------------------------------------------------------------------------------
// Fragments that cannot be judged

TEST(Parser, DropsFirstFragmentWithoutWholeTcpHeader) {
  const auto f = PacketBuilder{}.eth().ipv4({.more_fragments = true}).raw(kTcp, Bytes(16, 0))
                     .build();
  EXPECT_EQ(parse(f), DropReason::frag_first_too_short);
}

TEST(Parser, DropsFirstFragmentWithoutTheTcpOptions) {
  // Data offset says 32 bytes of header; the fragment carries 24.
  const auto f = PacketBuilder{}.eth().ipv4({.more_fragments = true})
                     .tcp({.data_offset_words = 8}).payload(4).build();
  EXPECT_EQ(parse(f), DropReason::frag_first_too_short);
}

TEST(Parser, DropsFirstIpv6FragmentWithoutWholeHeaderChain) {
  // RFC 7112: the destination options header continues into the next fragment.
  const auto f = PacketBuilder{}.eth().ipv6().ipv6_frag({.more_fragments = true})
                     .ipv6_ext({.type = 60, .len = 8, .len_field = 2}).build();
  EXPECT_EQ(parse(f), DropReason::frag_first_too_short);
}

TEST(Parser, DropsFirstIpv6FragmentWithoutWholeTcpHeader) {
  const auto f = PacketBuilder{}.eth().ipv6().ipv6_frag({.more_fragments = true})
                     .raw(kTcp, Bytes(16, 0)).build();
  EXPECT_EQ(parse(f), DropReason::frag_first_too_short);
}

TEST(Parser, DropsFirstIpv6FragmentWithoutWholeIcmpv6Header) {
  // Only reachable on IPv6 with a chain of odd length before the upper layer.
  const auto f = PacketBuilder{}.eth().ipv6().ipv6_frag({.more_fragments = true})
                     .ipv6_ext({.type = 51, .len = 12}).raw(kIcmpv6, Bytes(4, 0)).build();
  EXPECT_EQ(parse(f), DropReason::frag_first_too_short);
}

// ---------------------------------------------------------------------------------------------
// L4 drops

TEST(Parser, DropsTcpHeaderCutOffByEndOfDatagram) {
  const auto f = PacketBuilder{}.eth().ipv4().raw(kTcp, Bytes(19, 0x50)).build();
  EXPECT_EQ(parse(f), DropReason::tcp_truncated);
}

TEST(Parser, DropsTcpDataOffsetBelowFiveWords) {
  const auto f = PacketBuilder{}.eth().ipv4().tcp({.data_offset_words = 4}).build();
  EXPECT_EQ(parse(f), DropReason::tcp_bad_offset);
}

TEST(Parser, DropsTcpDataOffsetPastTheSegment) {
  const auto f = PacketBuilder{}.eth().ipv6().tcp({.data_offset_words = 15}).payload(8).build();
  EXPECT_EQ(parse(f), DropReason::tcp_bad_offset);
}

TEST(Parser, DropsUdpHeaderCutOffByEndOfDatagram) {
  const auto f = PacketBuilder{}.eth().ipv4().raw(kUdp, Bytes(7, 0)).build();
  EXPECT_EQ(parse(f), DropReason::udp_truncated);
}

TEST(Parser, DropsUdpLengthZero) {
  const auto f = PacketBuilder{}.eth().ipv6().udp({.length = 0}).payload(4).build();
  EXPECT_EQ(parse(f), DropReason::udp_bad_length);
}

TEST(Parser, DropsUdpLengthBelowItsHeader) {
  const auto f = PacketBuilder{}.eth().ipv4().udp({.length = 7}).build();
  EXPECT_EQ(parse(f), DropReason::udp_bad_length);
}

TEST(Parser, DropsUdpLengthDisagreeingWithIpPayload) {
  EXPECT_EQ(parse(PacketBuilder{}.eth().ipv4().udp({.length = 20}).payload(8).build()),
            DropReason::udp_bad_length);
  EXPECT_EQ(parse(PacketBuilder{}.eth().ipv4().udp({.length = 12}).payload(8).build()),
            DropReason::udp_bad_length);
}

TEST(Parser, DropsFirstFragmentWhoseUdpLengthFitsInsideIt) {
  // The datagram would end inside the first fragment, yet more fragments follow.
  const auto f = PacketBuilder{}.eth().ipv4({.more_fragments = true}).udp({.length = 16})
                     .payload(8).build();
  EXPECT_EQ(parse(f), DropReason::udp_bad_length);
}

TEST(Parser, DropsIcmpHeaderCutOffByEndOfDatagram) {
  EXPECT_EQ(parse(PacketBuilder{}.eth().ipv4().raw(kIcmp, Bytes(4, 8)).build()),
            DropReason::icmp_truncated);
  EXPECT_EQ(parse(PacketBuilder{}.eth().ipv6().raw(kIcmpv6, Bytes(7, 128)).build()),
            DropReason::icmp_truncated);
}

// ---------------------------------------------------------------------------------------------
// Geneve drops

TEST(Parser, DropsGeneveHeaderCutOffByEndOfDatagram) {
  const auto f = PacketBuilder{}.eth().ipv4().udp({.dport = dp::kGenevePort})
                     .raw(0, Bytes(7, 0)).build();
  EXPECT_EQ(parse(f), DropReason::geneve_truncated);
}

TEST(Parser, DropsGeneveOptionsRunningPastTheDatagram) {
  const auto f = geneve_frame({.opt_len_words = 20}).build();  // 80 option bytes, none sent
  EXPECT_EQ(parse(f), DropReason::geneve_truncated);
}

TEST(Parser, DropsGeneveVersionOtherThanZero) {
  const auto f = geneve_frame({.version = 1}).ipv4().tcp().build();
  EXPECT_EQ(parse(f), DropReason::geneve_bad_version);
}

TEST(Parser, DropsGeneveOptionRunningPastTheOptionArea) {
  GeneveOption o{.cls = 0x0102, .type = 0x01, .body = Bytes(4, 0), .len_words = 2};
  const auto f = geneve_frame({.options = {o}}).ipv4().tcp().build();
  EXPECT_EQ(parse(f), DropReason::geneve_bad_option);
}

TEST(Parser, DropsUnknownCriticalGeneveOption) {
  GeneveOption o{.cls = 0x0102, .type = 0x80, .body = Bytes(4, 0)};
  const auto f = geneve_frame({.options = {o}}).ipv4().tcp().build();
  EXPECT_EQ(parse(f), DropReason::geneve_unknown_critical_option);
}

TEST(Parser, DropsIdentityTagWithWrongLength) {
  for (const std::size_t body : {28u, 36u, 0u}) {
    GeneveOption o = tag_option();
    o.body.resize(body);
    const auto f = geneve_frame({.options = {o}}).ipv4().tcp().build();
    EXPECT_EQ(parse(f), DropReason::geneve_bad_tag_option) << body << " bytes";
  }
}

TEST(Parser, DropsSecondIdentityTag) {
  const auto f = geneve_frame({.options = {tag_option(), tag_option()}}).ipv4().tcp().build();
  EXPECT_EQ(parse(f), DropReason::geneve_bad_tag_option);
}

TEST(Parser, DropsGeneveCarryingEthernet) {
  PacketBuilder b = geneve_frame({.options = {tag_option()}});
  const auto f = b.eth().ipv4().tcp().build();  // protocol type 0x6558
  EXPECT_EQ(parse(f), DropReason::geneve_inner_unsupported);
}

TEST(Parser, DropsFragmentedInnerPacket) {
  const auto f = geneve_frame({.options = {tag_option()}}).ipv4({.more_fragments = true}).tcp()
                     .payload(12).build();
  EXPECT_EQ(parse(f), DropReason::geneve_inner_fragment);
  const auto g = geneve_frame({}).ipv6().ipv6_frag({.offset = 8}).raw(kTcp, Bytes(8, 0)).build();
  EXPECT_EQ(parse(g), DropReason::geneve_inner_fragment);
}

TEST(Parser, DropsFragmentedGeneveDatagram) {
  const auto f = PacketBuilder{}.eth().ipv4({.more_fragments = true})
                     .udp({.dport = dp::kGenevePort, .length = 1400}).geneve({}).payload(16)
                     .build();
  EXPECT_EQ(parse(f), DropReason::geneve_fragmented);
}

TEST(Parser, DropsGeneveInsideGeneve) {
  const auto f = geneve_frame({.options = {tag_option()}}).ipv4()
                     .udp({.dport = dp::kGenevePort}).geneve({}).ipv4().tcp().build();
  EXPECT_EQ(parse(f), DropReason::tunnel_nested);
}

TEST(Parser, DropsInnerPacketWhoseLengthDisagreesWithTheTunnel) {
  // Bytes after the inner datagram inside the UDP payload are not padding: lengths disagree.
  const auto f = geneve_frame({}).ipv4({.total_length = 40}).tcp().payload(4).build();
  EXPECT_EQ(parse(f), DropReason::ipv4_bad_total_length);
  const auto g = geneve_frame({}).ipv6({.payload_length = 20}).tcp().payload(4).build();
  EXPECT_EQ(parse(g), DropReason::ipv6_bad_payload_length);
}

// ---------------------------------------------------------------------------------------------
// The inspection window

TEST(Parser, DropsHeaderChainRunningPastTheWindow) {
  // 14 + 40 + 440 + 20: the TCP header ends 2 bytes past the 512-byte window.
  const auto f = PacketBuilder{}.eth().ipv6().ipv6_ext({.type = 51, .len = 440})
                     .tcp().payload(1000).build();
  EXPECT_EQ(parse(f), DropReason::header_chain_too_long);
}

TEST(Parser, NamesTheTruncationWhenTheFrameReallyEndsInsideTheWindow) {
  const auto f = PacketBuilder{}.eth().ipv6().ipv6_ext({.type = 51, .len = 440})
                     .raw(kTcp, Bytes(10, 0)).build();
  EXPECT_EQ(parse(f), DropReason::tcp_truncated);
}

TEST(Parser, DropsGeneveOptionsRunningPastTheWindow) {
  PacketBuilder b;
  b.eth().ipv6().ipv6_ext({.type = 60, .len = 256}).udp({.dport = dp::kGenevePort});
  const auto f = b.geneve({.options = {{.cls = 1, .type = 1, .body = Bytes(120, 0)},
                                       {.cls = 1, .type = 2, .body = Bytes(100, 0)}}})
                     .ipv4().tcp().payload(900).build();
  EXPECT_EQ(parse(f), DropReason::header_chain_too_long);
}

TEST(Parser, NeverReadsPastAWindowShorterThanTheContract) {
  // A caller handing fewer bytes than min(pkt_len, kParseWindow) gets header_chain_too_long,
  // not an out-of-bounds read.
  const auto f = PacketBuilder{}.eth().ipv4().tcp().payload(100).build();
  const Bytes window(f.begin(), f.begin() + 40);
  ParsedPacket p;
  EXPECT_EQ(dp::parse_frame(window, static_cast<std::uint32_t>(f.size()), p),
            DropReason::header_chain_too_long);
}

// ---------------------------------------------------------------------------------------------
// Evasion shapes (tests/component/test_evasion.py runs the same through the real ztgate)

TEST(Parser, DropsTtlZeroAndHopLimitZeroButAcceptsOne) {
  EXPECT_EQ(parse(PacketBuilder{}.eth().ipv4({.ttl = 0}).tcp().build()), DropReason::ip_ttl_zero);
  EXPECT_EQ(parse(PacketBuilder{}.eth().ipv6({.hop_limit = 0}).tcp().build()),
            DropReason::ip_ttl_zero);
  ParsedPacket p;
  EXPECT_EQ(parse(PacketBuilder{}.eth().ipv4({.ttl = 1}).tcp().build(), p), DropReason::none);
  EXPECT_EQ(p.outer.ttl, 1);
  EXPECT_EQ(parse(PacketBuilder{}.eth().ipv6({.hop_limit = 1}).tcp().build()), DropReason::none);
}

TEST(Parser, DropsTtlZeroInsideGeneve) {
  PacketBuilder b;
  b.eth().ipv4().udp({.sport = 50000, .dport = dp::kGenevePort}).geneve().ipv4({.ttl = 0}).tcp();
  EXPECT_EQ(parse(b.build()), DropReason::ip_ttl_zero);
}

TEST(Parser, DropsIpv4LooseAndStrictSourceRoutes) {
  for (const std::uint8_t type : {0x83, 0x89}) {
    const Bytes opts{1, type, 7, 4, 10, 0, 0, 3};  // NOP, then a route through 10.0.0.3
    EXPECT_EQ(parse(PacketBuilder{}.eth().ipv4({.options = opts}).tcp().build()),
              DropReason::ip_source_route)
        << "option " << int{type};
  }
}

TEST(Parser, DropsIpv6RoutingHeaderWithSegmentsLeftButAcceptsASpentOne) {
  for (const std::uint8_t rt : {2, 3, 4}) {
    auto f = PacketBuilder{}.eth().ipv6().ipv6_ext({.type = 43, .len = 24, .routing_type = rt})
                 .tcp().build();
    EXPECT_EQ(parse(f), DropReason::none) << "type " << int{rt} << ", segments left 0";
    f[14 + 40 + 3] = 1;  // segments left
    EXPECT_EQ(parse(f), DropReason::ip_source_route) << "type " << int{rt};
  }
}

TEST(Parser, DropsTcpFlagCombinationsNoStackSends) {
  constexpr int F = 0x01, S = 0x02, R = 0x04, P = 0x08, A = 0x10, U = 0x20;
  for (const int flags : {S | R, S | R | A, 0, F, F | P | U, P, U}) {
    EXPECT_EQ(parse(PacketBuilder{}.eth().ipv4().tcp({.flags = static_cast<std::uint8_t>(flags)}).build()),
              DropReason::tcp_bad_flags)
        << "flags 0x" << std::hex << flags;
  }
  // SYN+FIN parses: the flow table refuses it in every state (tcp_bad_state).
  for (const int flags : {S, S | A, A, F | A, R, R | A, P | A, S | F, S | 0xC0}) {
    EXPECT_EQ(parse(PacketBuilder{}.eth().ipv4().tcp({.flags = static_cast<std::uint8_t>(flags)}).build()), DropReason::none)
        << "flags 0x" << std::hex << flags;
  }
}

// ---------------------------------------------------------------------------------------------
// Fast path (dataplane/README.md "Fast path"): parse_frame = parse_frame_fast, else
// parse_frame_full. The fast path may only change the cost of a frame, never its answer.

// The answer of the fast path and of the full parser for one frame, each on its own window
// copy of exactly the window's size (AddressSanitizer sees any read past it).
struct BothParsers {
  bool fast_took = false;
  ParsedPacket fast, full;
  DropReason full_reason = DropReason::none, combined_reason = DropReason::none;
  ParsedPacket combined;
};

BothParsers parse_both(std::span<const std::uint8_t> frame, std::size_t window_bytes,
                       std::uint32_t pkt_len) {
  const std::vector<std::uint8_t> w(frame.begin(), frame.begin() + static_cast<long>(window_bytes));
  BothParsers b;
  b.fast_took = dp::parse_frame_fast(w, pkt_len, b.fast);
  b.full_reason = dp::parse_frame_full(w, pkt_len, b.full);
  b.combined_reason = dp::parse_frame(w, pkt_len, b.combined);
  return b;
}
BothParsers parse_both(std::span<const std::uint8_t> frame) {
  return parse_both(frame, std::min(frame.size(), dp::kParseWindow), static_cast<std::uint32_t>(frame.size()));
}

// parse_frame must answer exactly as the full parser, whichever path it took.
void expect_same_answer(const BothParsers& b, const std::string& what) {
  EXPECT_EQ(b.combined_reason, b.full_reason) << what;
  if (b.full_reason == DropReason::none) {
    EXPECT_TRUE(b.combined == b.full) << what << ": fields differ";
  }
  if (b.fast_took) {
    EXPECT_EQ(b.full_reason, DropReason::none) << what << ": fast path accepted a frame the full parser refuses";
    EXPECT_TRUE(b.fast == b.full) << what << ": fast path fields differ";
  }
}

// Every shape the fast path is for, as (name, frame).
std::vector<std::pair<std::string, Bytes>> fast_shapes() {
  const auto tag = GeneveSpec{.options = {tag_option()}};
  std::vector<std::pair<std::string, Bytes>> v;
  v.emplace_back("ipv4/tcp", PacketBuilder{}.eth().ipv4().tcp({.flags = 0x10}).payload(20).build());
  v.emplace_back("ipv4/tcp options", PacketBuilder{}.eth().ipv4().tcp({.options = Bytes(12, 1)}).build());
  v.emplace_back("ipv4 DF/udp", PacketBuilder{}.eth().ipv4({.dont_fragment = true}).udp().payload(5).build());
  v.emplace_back("ipv4 ttl 1/udp", PacketBuilder{}.eth().ipv4({.ttl = 1}).udp().build());
  v.emplace_back("ipv4/udp + Ethernet padding", PacketBuilder{}.eth().ipv4().udp().padding(18).build());
  v.emplace_back("ipv6/tcp", PacketBuilder{}.eth().ipv6().tcp({.flags = 0x12}).payload(7).build());
  v.emplace_back("ipv6/udp", PacketBuilder{}.eth().ipv6().udp().payload(100).build());
  v.emplace_back("vlan/ipv4/udp", PacketBuilder{}.eth().vlan(0x8100, 42).ipv4().udp().build());
  v.emplace_back("s-tag/ipv6/tcp", PacketBuilder{}.eth().vlan(0x88A8, 7).ipv6().tcp().build());
  v.emplace_back("geneve tag/ipv4/tcp",
                 PacketBuilder{}.eth().ipv4().udp({.dport = dp::kGenevePort}).geneve(tag).ipv4().tcp().payload(30).build());
  v.emplace_back("geneve tag/ipv4/udp 1400 B",
                 PacketBuilder{}.eth().ipv4().udp({.dport = dp::kGenevePort}).geneve(tag).ipv4().udp({.dport = 443}).payload(1400).build());
  v.emplace_back("geneve tag/ipv6/udp",
                 PacketBuilder{}.eth().ipv4().udp({.dport = dp::kGenevePort}).geneve(tag).ipv6().udp().payload(3).build());
  v.emplace_back("ipv6 geneve tag/ipv6/tcp",
                 PacketBuilder{}.eth().ipv6().udp({.dport = dp::kGenevePort}).geneve(tag).ipv6().tcp().build());
  v.emplace_back("vlan/geneve tag/ipv4/udp",
                 PacketBuilder{}.eth().vlan(0x8100, 5).ipv4().udp({.dport = dp::kGenevePort}).geneve(tag).ipv4().udp().build());
  return v;
}

TEST(ParserFastPath, TakesTheCommonFramesWithTheFullParsersFields) {
  for (const auto& [name, f] : fast_shapes()) {
    const auto b = parse_both(f);
    EXPECT_TRUE(b.fast_took) << name << " should take the fast path";
    EXPECT_EQ(b.full_reason, DropReason::none) << name;
    expect_same_answer(b, name);
  }
}

TEST(ParserFastPath, HandsEveryOtherFrameToTheFullParser) {
  const auto tag = GeneveSpec{.options = {tag_option()}};
  auto other_opt = tag_option();
  other_opt.cls = 0x0102;
  other_opt.type = 0x01;
  other_opt.body = Bytes(4, 0);
  auto critical = other_opt;
  critical.type = 0x85;
  const auto gen = [](const GeneveSpec& g) {
    PacketBuilder b;
    b.eth().ipv4().udp({.sport = 50000, .dport = dp::kGenevePort}).geneve(g);
    return b;
  };
  std::vector<std::pair<std::string, Bytes>> v;
  v.emplace_back("arp", PacketBuilder{}.eth().arp().build());
  v.emplace_back("two vlan tags", PacketBuilder{}.eth().vlan(0x88A8, 1).vlan(0x8100, 2).ipv4().udp().build());
  v.emplace_back("three vlan tags", PacketBuilder{}.eth().vlan(0x88A8, 1).vlan(0x8100, 2).vlan(0x8100, 3).ipv4().udp().build());
  v.emplace_back("ipv4 options", PacketBuilder{}.eth().ipv4({.options = {1, 1, 1, 0}}).tcp().build());
  v.emplace_back("ipv4 source route", PacketBuilder{}.eth().ipv4({.options = {0x83, 7, 4, 10, 0, 0, 9, 0}}).tcp().build());
  v.emplace_back("ipv4 first fragment", PacketBuilder{}.eth().ipv4({.more_fragments = true}).udp({.length = 200}).payload(32).build());
  v.emplace_back("ipv4 later fragment", PacketBuilder{}.eth().ipv4({.frag_offset = 64, .proto = 17}).payload(40).build());
  v.emplace_back("ipv4 reserved flag", PacketBuilder{}.eth().ipv4({.reserved_flag = true}).udp().build());
  v.emplace_back("ipv4 ttl 0", PacketBuilder{}.eth().ipv4({.ttl = 0}).udp().build());
  v.emplace_back("ipv4 bad checksum", PacketBuilder{}.eth().ipv4({.checksum = 0x1234}).udp().build());
  v.emplace_back("ipv4 total length past frame", PacketBuilder{}.eth().ipv4({.total_length = 200}).udp().build());
  v.emplace_back("ipv4 icmp", PacketBuilder{}.eth().ipv4().icmp().build());
  v.emplace_back("ipv4 opaque (gre)", PacketBuilder{}.eth().ipv4({.proto = 47}).payload(8).build());
  v.emplace_back("ipv6 dest opts/tcp", PacketBuilder{}.eth().ipv6().ipv6_ext().tcp().build());
  v.emplace_back("ipv6 atomic fragment/udp", PacketBuilder{}.eth().ipv6().ipv6_frag().udp().build());
  v.emplace_back("ipv6 icmpv6", PacketBuilder{}.eth().ipv6().icmpv6().build());
  v.emplace_back("ipv6 hop limit 0", PacketBuilder{}.eth().ipv6({.hop_limit = 0}).udp().build());
  v.emplace_back("ipv6 payload length 0", PacketBuilder{}.eth().ipv6({.payload_length = 0}).udp().build());
  v.emplace_back("tcp bad flags", PacketBuilder{}.eth().ipv4().tcp({.flags = 0x06}).build());
  v.emplace_back("tcp offset 4 words", PacketBuilder{}.eth().ipv4().tcp({.data_offset_words = 4}).build());
  v.emplace_back("tcp offset past segment", PacketBuilder{}.eth().ipv4().tcp({.data_offset_words = 15}).build());
  v.emplace_back("udp length disagrees", PacketBuilder{}.eth().ipv4().udp({.length = 9}).payload(4).build());
  v.emplace_back("geneve without options", gen({}).ipv4().tcp().build());
  v.emplace_back("geneve tag + another option", gen({.options = {tag_option(), other_opt}}).ipv4().tcp().build());
  v.emplace_back("geneve other option + tag", gen({.options = {other_opt, tag_option()}}).ipv4().tcp().build());
  v.emplace_back("geneve unknown critical option", gen({.options = {critical}}).ipv4().tcp().build());
  v.emplace_back("geneve two tags", gen({.options = {tag_option(), tag_option()}}).ipv4().tcp().build());
  v.emplace_back("geneve version 1", gen({.version = 1, .options = {tag_option()}}).ipv4().tcp().build());
  v.emplace_back("geneve inner ethernet", gen(tag).eth().ipv4().tcp().build());
  v.emplace_back("geneve inner fragment", gen(tag).ipv4({.more_fragments = true}).udp({.length = 100}).payload(16).build());
  v.emplace_back("geneve inner ipv4 options", gen(tag).ipv4({.options = {1, 1, 1, 0}}).udp().build());
  v.emplace_back("geneve inner icmp", gen(tag).ipv4().icmp().build());
  v.emplace_back("geneve inner ipv6 ext", gen(tag).ipv6().ipv6_ext().udp().build());
  v.emplace_back("geneve in geneve", gen(tag).ipv4().udp({.dport = dp::kGenevePort}).geneve(tag).ipv4().udp().build());
  v.emplace_back("geneve inner bad checksum", gen(tag).ipv4({.checksum = 1}).udp().build());
  v.emplace_back("geneve inner ttl 0", gen(tag).ipv4({.ttl = 0}).udp().build());
  v.emplace_back("geneve trailing byte after inner", gen(tag).ipv4({.total_length = 27}).udp({.length = 8}).build());
  v.emplace_back("geneve on a fragment", PacketBuilder{}.eth().ipv4({.more_fragments = true}).udp({.dport = dp::kGenevePort, .length = 300}).payload(64).build());
  v.emplace_back("runt", cut(PacketBuilder{}.eth().ipv4().udp().build(), 20));
  v.emplace_back("ipv4 header cut", cut(PacketBuilder{}.eth().ipv4().udp().build(), 30));
  for (const auto& [name, f] : v) {
    const auto b = parse_both(f);
    EXPECT_FALSE(b.fast_took) << name << " must go to the full parser";
    expect_same_answer(b, name);
  }
  // Headers past the inspection window: the full parser's header_chain_too_long.
  auto deep = gen(tag);
  deep.ipv6();
  for (int i = 0; i < 7; ++i) deep.ipv6_ext({.len = 64});
  const auto f = deep.tcp().build();
  const auto b = parse_both(f);
  EXPECT_FALSE(b.fast_took);
  EXPECT_EQ(b.combined_reason, DropReason::header_chain_too_long);
}

// Every byte of every fast-path frame's headers changed, and every truncation, with the window
// whole or cut short: the combined parser always gives the full parser's answer.
TEST(ParserFastPath, AgreesWithTheFullParserOnEveryMutationOfItsFrames) {
  int fast = 0, refused = 0;
  for (const auto& [name, frame] : fast_shapes()) {
    const std::size_t hdr = std::min<std::size_t>(frame.size(), 14 + 4 + 40 + 8 + 8 + 36 + 40 + 20 + 4);
    for (std::size_t i = 0; i < hdr; ++i) {
      for (const std::uint8_t x : {0x01, 0x10, 0x80, 0xFF}) {
        Bytes f = frame;
        f[i] ^= x;
        const auto b = parse_both(f);
        expect_same_answer(b, name + " byte " + std::to_string(i) + " ^ " + std::to_string(x));
        fast += b.fast_took;
        refused += b.full_reason != DropReason::none;
      }
    }
    for (std::size_t len = 0; len <= frame.size(); ++len) {
      expect_same_answer(parse_both(cut(frame, len)), name + " cut to " + std::to_string(len));
      // A window shorter than the frame it belongs to.
      expect_same_answer(parse_both(frame, std::min(len, dp::kParseWindow), static_cast<std::uint32_t>(frame.size())),
                         name + " window " + std::to_string(len));
    }
  }
  EXPECT_GT(fast, 0);     // both paths were exercised
  EXPECT_GT(refused, 0);
}

// The fast path tests the IPv4 checksum by divisibility (parser.hpp, ipv4_checksum20_ok), not by
// folding: on headers whose sums carry differently (addresses 0.0.0.0 to 255.255.255.255, every
// TTL class), of all 65,536 checksum values exactly the right one takes the fast path, and every
// other one is refused by parse_frame with the full parser's reason.
TEST(ParserFastPath, AcceptsExactlyTheRightIpv4ChecksumOutOfAllValues) {
  const std::vector<Ipv4Spec> headers = {
      {},
      {.src = {0, 0, 0, 0}, .dst = {0, 0, 0, 0}, .ttl = 1, .id = 0},
      {.src = {255, 255, 255, 255}, .dst = {255, 255, 255, 255}, .ttl = 255, .id = 0xFFFF, .dont_fragment = true},
      {.src = {192, 168, 255, 1}, .dst = {10, 255, 0, 255}, .ttl = 128, .id = 0x8001},
  };
  for (const Ipv4Spec& h : headers) {
    for (const bool outer : {true, false}) {
      PacketBuilder b;
      if (outer) {
        b.eth().ipv4(h).udp().payload(6);
      } else {
        b.eth().ipv4().udp({.dport = dp::kGenevePort}).geneve({.options = {tag_option()}}).ipv4(h).tcp({.flags = 0x10});
      }
      Bytes f = b.build();
      const std::size_t at = outer ? 14 + 10 : 14 + 20 + 8 + 8 + 36 + 10;  // the checksum field
      const std::uint16_t right = static_cast<std::uint16_t>(f[at] << 8 | f[at + 1]);
      int fast = 0;
      ParsedPacket pf, pc;
      for (std::uint32_t v = 0; v <= 0xFFFF; ++v) {
        f[at] = static_cast<std::uint8_t>(v >> 8);
        f[at + 1] = static_cast<std::uint8_t>(v);
        const bool took = dp::parse_frame_fast(f, static_cast<std::uint32_t>(f.size()), pf);
        fast += took;
        const DropReason r = dp::parse_frame(f, static_cast<std::uint32_t>(f.size()), pc);
        if (took != (v == right) || (v != right && r != DropReason::ipv4_bad_checksum) ||
            (v == right && r != DropReason::none)) {
          ADD_FAILURE() << (outer ? "outer" : "inner") << " checksum 0x" << std::hex << v << " (right 0x" << right
                        << "): fast path " << took << ", parse_frame " << rules::to_string(r);
          break;
        }
      }
      EXPECT_EQ(fast, 1);
    }
  }
}

}  // namespace
}  // namespace zt::test
