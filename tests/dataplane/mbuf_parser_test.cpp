// parse_mbuf must give exactly what parse_frame gives on the same bytes laid out contiguously,
// wherever the segment boundaries fall (inside a header, inside a field, at the window edge).
#include <gtest/gtest.h>

#include <array>
#include <string>

#include "mbuf_chain.hpp"
#include "packet_builder.hpp"
#include "parse_helpers.hpp"
#include "zt/dataplane/mbuf_parser.hpp"

namespace zt::test {
namespace {

using dp::ParsedPacket;
using rules::DropReason;

struct Case {
  std::string name;
  Bytes frame;
};

std::vector<Case> cases() {
  std::vector<Case> c;
  c.push_back({"ipv4 tcp", PacketBuilder{}.eth().ipv4().tcp().payload(30).build()});
  c.push_back({"qinq ipv6 chain udp", PacketBuilder{}.eth().vlan(0x88A8, 1).vlan(0x8100, 2)
                                          .ipv6().ipv6_ext({.type = 0}).ipv6_ext({.type = 43,
                                          .len = 24}).udp().payload(5).build()});
  c.push_back({"geneve tag inner tcp",
               PacketBuilder{}.eth().ipv4().udp({.dport = dp::kGenevePort})
                   .geneve({.options = {tag_option()}}).ipv6().tcp().payload(20).build()});
  c.push_back({"frame larger than window",
               PacketBuilder{}.eth().ipv6().ipv6_ext({.type = 60, .len = 200}).tcp()
                   .payload(400).build()});
  c.push_back({"chain past window", PacketBuilder{}.eth().ipv6().ipv6_ext({.type = 51,
                                        .len = 440}).tcp().payload(100).build()});
  c.push_back({"first fragment too short", PacketBuilder{}.eth().ipv4({.more_fragments = true})
                                               .raw(6, Bytes(16, 0)).build()});
  c.push_back({"bad ipv4 checksum", PacketBuilder{}.eth().ipv4({.checksum = 1}).udp().build()});
  c.push_back({"arp", PacketBuilder{}.eth().arp().padding(18).build()});
  return c;
}

void expect_same_as_contiguous(const Case& c, std::span<const std::size_t> cuts) {
  ParsedPacket want;
  const DropReason want_reason = parse(c.frame, want);
  const MbufChain chain(c.frame, cuts);
  std::array<std::uint8_t, dp::kParseWindow> scratch{};
  ParsedPacket got;
  const DropReason got_reason = dp::parse_mbuf(chain.head(), got, scratch);
  ASSERT_EQ(got_reason, want_reason);
  ASSERT_TRUE(got == want);
}

// Cut points after the window behave alike (those bytes are never read); stop a little after it.
std::size_t last_cut(const Bytes& f) { return std::min(f.size() - 1, dp::kParseWindow + 8); }

TEST(MbufParser, MatchesContiguousParseForEveryTwoSegmentSplit) {
  for (const auto& c : cases()) {
    SCOPED_TRACE(c.name);
    for (std::size_t i = 1; i <= last_cut(c.frame); ++i) {
      SCOPED_TRACE("cut at " + std::to_string(i));
      const std::array<std::size_t, 1> cuts{i};
      expect_same_as_contiguous(c, cuts);
      if (HasFatalFailure()) return;
    }
  }
}

TEST(MbufParser, MatchesContiguousParseForEveryThreeSegmentSplit) {
  for (const auto& c : cases()) {
    SCOPED_TRACE(c.name);
    const std::size_t last = last_cut(c.frame);
    // Far apart cut pairs add nothing the two-segment test did not see; keep the run short.
    const std::size_t stride = c.frame.size() > 200 ? 7 : 1;
    for (std::size_t i = 1; i < last; i += stride) {
      for (std::size_t j = i + 1; j <= last; j += stride) {
        SCOPED_TRACE("cuts at " + std::to_string(i) + ", " + std::to_string(j));
        const std::array<std::size_t, 2> cuts{i, j};
        expect_same_as_contiguous(c, cuts);
        if (HasFatalFailure()) return;
      }
    }
  }
}

TEST(MbufParser, ReadsASingleSegmentInPlaceWithoutCopying) {
  const auto f = PacketBuilder{}.eth().ipv4().tcp().payload(30).build();
  const MbufChain chain(f, {});
  std::array<std::uint8_t, dp::kParseWindow> scratch;
  scratch.fill(0xCC);
  ParsedPacket p;
  ASSERT_EQ(dp::parse_mbuf(chain.head(), p, scratch), DropReason::none);
  EXPECT_EQ(p.outer.dport, 443);
  for (const auto b : scratch) ASSERT_EQ(b, 0xCC);
}

TEST(MbufParser, GathersAHeaderSplitAcrossSegments) {
  const auto f = PacketBuilder{}.eth().ipv4().tcp({.dport = 8080}).payload(30).build();
  const std::array<std::size_t, 2> cuts{14 + 20 + 1, 14 + 20 + 3};  // inside the dport field
  const MbufChain chain(f, cuts);
  std::array<std::uint8_t, dp::kParseWindow> scratch{};
  ParsedPacket p;
  ASSERT_EQ(dp::parse_mbuf(chain.head(), p, scratch), DropReason::none);
  EXPECT_EQ(p.outer.dport, 8080);
}

}  // namespace
}  // namespace zt::test
