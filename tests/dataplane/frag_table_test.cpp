// IP fragments (dataplane/README.md "Fragments"): the fragment table on its own, then the real
// Pipeline on mbufs (EAL without hugepages): which fragments leave, byte for byte, and the drop
// counters by reason.
#include <gtest/gtest.h>

#include <rte_eal.h>
#include <rte_mbuf.h>

#include <cstring>
#include <vector>

#include "eal_test_env.hpp"
#include "packet_builder.hpp"
#include "zt/dataplane/frag_table.hpp"
#include "zt/dataplane/pipeline.hpp"
#include "zt/rules/policy.hpp"
#include "zt/rules/snapshot.hpp"

namespace {

using namespace zt;
using dp::FragTable;
using dp::Pipeline;
using rules::DropReason;
using test::Bytes;
using test::PacketBuilder;

rte_mempool* g_pool = nullptr;

const auto* const g_env =
    ::testing::AddGlobalTestEnvironment(new test::EalEnvironment({.program = "frag_table_test"}, &g_pool));

constexpr std::uint64_t kSecond = 1'000'000'000;  // the test clock ticks in ns
constexpr std::int64_t kNow = 1'800'000'000LL * 1'000'000'000LL;

// ---- the table on its own ----------------------------------------------------------------------

dp::IpLayer frag_layer(std::uint32_t id, std::uint16_t off, std::uint32_t len, bool first) {
  dp::IpLayer l;
  l.version = 4;
  l.proto = 17;
  l.src.b = {10, 1, 0, 1};
  l.dst.b = {10, 2, 0, 5};
  l.frag_id = id;
  l.frag_offset = off;
  l.l4_len = len;
  l.frag = first ? dp::FragKind::first : dp::FragKind::later;
  return l;
}

std::unique_ptr<FragTable> table(std::uint32_t capacity = 16, std::uint16_t max_frags = 8) {
  dp::FragConfig cfg;
  cfg.capacity = capacity;
  cfg.max_fragments = max_frags;
  cfg.timeout_seconds = 5;
  cfg.ticks_per_second = kSecond;
  auto t = FragTable::create(cfg);
  EXPECT_TRUE(t) << t.error();
  return std::move(*t);
}

TEST(FragTable, LaterFragmentFollowsTheDecidedFirstFragment) {
  auto t = table();
  dp::FlowKey k;
  k.port_lo = 53;
  const auto first = t->open_first(frag_layer(7, 0, 24, true), k, dp::KeyDir::hi_to_lo, 100);
  ASSERT_EQ(first.drop, DropReason::none);
  t->decide(first.slot, DropReason::none);
  const auto later = t->add_later(frag_layer(7, 24, 16, false), false, 101);
  ASSERT_EQ(later.drop, DropReason::none);
  const auto f = t->follow(later.slot);
  EXPECT_EQ(f.drop, DropReason::none);
  EXPECT_EQ(f.flow, k);
  EXPECT_EQ(f.dir, dp::KeyDir::hi_to_lo);
}

TEST(FragTable, LaterFragmentsOfADroppedFirstFragmentDropForTheSameReason) {
  auto t = table();
  const auto first = t->open_first(frag_layer(7, 0, 24, true), {}, dp::KeyDir::lo_to_hi, 100);
  t->decide(first.slot, DropReason::policy_deny);
  const auto later = t->add_later(frag_layer(7, 24, 16, true), true, 101);
  EXPECT_EQ(t->follow(later.slot).drop, DropReason::policy_deny);
}

TEST(FragTable, FragmentPastTheLastFragmentsEndOrASecondLastOnePoisonsTheDatagram) {
  auto t = table();
  const auto first = t->open_first(frag_layer(1, 0, 24, true), {}, dp::KeyDir::lo_to_hi, 100);
  t->decide(first.slot, DropReason::none);
  ASSERT_EQ(t->add_later(frag_layer(1, 48, 8, false), false, 100).drop, DropReason::none);
  EXPECT_EQ(t->add_later(frag_layer(1, 56, 8, false), true, 100).drop, DropReason::frag_overlap);
  // Poisoned: even a fragment that would fit is dropped now.
  EXPECT_EQ(t->add_later(frag_layer(1, 24, 24, false), true, 100).drop, DropReason::frag_overlap);

  const auto f2 = t->open_first(frag_layer(2, 0, 24, true), {}, dp::KeyDir::lo_to_hi, 100);
  t->decide(f2.slot, DropReason::none);
  ASSERT_EQ(t->add_later(frag_layer(2, 48, 8, false), false, 100).drop, DropReason::none);
  EXPECT_EQ(t->add_later(frag_layer(2, 24, 8, false), false, 100).drop, DropReason::frag_overlap);
}

TEST(FragTable, CompleteDatagramIsFreedAfterItsBurstAndExpiredOnesAreReclaimed) {
  auto t = table(2);
  const auto first = t->open_first(frag_layer(1, 0, 24, true), {}, dp::KeyDir::lo_to_hi, 100);
  t->decide(first.slot, DropReason::none);
  ASSERT_EQ(t->add_later(frag_layer(1, 24, 16, false), false, 100).drop, DropReason::none);
  EXPECT_EQ(t->size(), 1u);
  EXPECT_EQ(t->age(101, 2), 1u);  // complete: gone after the burst at 100
  EXPECT_EQ(t->size(), 0u);

  ASSERT_EQ(t->open_first(frag_layer(2, 0, 24, true), {}, dp::KeyDir::lo_to_hi, 200).drop, DropReason::none);
  ASSERT_EQ(t->open_first(frag_layer(3, 0, 24, true), {}, dp::KeyDir::lo_to_hi, 200).drop, DropReason::none);
  EXPECT_EQ(t->open_first(frag_layer(4, 0, 24, true), {}, dp::KeyDir::lo_to_hi, 300).drop,
            DropReason::frag_table_full);
  // Five seconds later both have expired: a new datagram reclaims an entry.
  EXPECT_EQ(t->open_first(frag_layer(4, 0, 24, true), {}, dp::KeyDir::lo_to_hi, 200 + 5 * kSecond + 1).drop,
            DropReason::none);
  EXPECT_EQ(t->add_later(frag_layer(2, 24, 8, false), false, 200 + 5 * kSecond + 1).drop,
            DropReason::frag_no_first);
}

TEST(FragTable, RejectsConfigurationsItCannotHonour) {
  dp::FragConfig cfg;
  cfg.ticks_per_second = kSecond;
  cfg.capacity = 0;
  auto t = FragTable::create(cfg);
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().find("capacity 0 out of range"), std::string::npos) << t.error();
  cfg.capacity = 8;
  cfg.timeout_seconds = 0;
  t = FragTable::create(cfg);
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().find("fragment timeout"), std::string::npos) << t.error();
}

// ---- the pipeline ----------------------------------------------------------------------------

const char* kPolicy = R"(
segments:
  - {name: zone-a, prefixes: [10.1.0.0/24, '2001:db8:a::/48'], labels: {zone: a}}
  - {name: zone-b, prefixes: [10.2.0.0/24, '2001:db8:b::/48'], labels: {zone: b}}
rules:
  - {id: 20, name: legacy-dns, from: {segments: [zone-a]}, to: {segments: [zone-b]}, proto: udp, ports: [53], action: allow}
  - {id: 30, name: no-syslog, from: {segments: [zone-a]}, to: {segments: [zone-b]}, proto: udp, ports: [514], action: deny}
)";

std::shared_ptr<const dp::Snapshot> snapshot() {
  auto p = rules::parse_policy({{"policy.yaml", kPolicy}});
  EXPECT_TRUE(p.has_value());
  rules::CompileOptions o;
  o.revision = 1;
  auto s = rules::compile(*p, o);
  EXPECT_TRUE(s.has_value());
  auto snap = std::make_shared<dp::Snapshot>();
  snap->policy = *s;
  return snap;
}

const std::array<std::uint8_t, 4> A1{10, 1, 0, 1}, B5{10, 2, 0, 5};

// Fragment of a UDP datagram to `dport` whose UDP part (header + payload) is `total` bytes:
// bytes [off, off + len) of it; the first one carries the UDP header.
Bytes frag4(std::uint16_t id, std::uint16_t off, std::uint16_t len, bool more,
            std::uint16_t dport = 53, std::uint16_t total = 64) {
  PacketBuilder b;
  b.eth();
  if (off == 0) {
    b.ipv4({.src = A1, .dst = B5, .id = id, .more_fragments = more})
        .udp({.sport = 40000, .dport = dport, .length = total})
        .payload(len - 8u, 0x30);
  } else {
    b.ipv4({.src = A1, .dst = B5, .id = id, .frag_offset = off, .more_fragments = more, .proto = 17})
        .payload(len, static_cast<std::uint8_t>(0x30 + off / 8));
  }
  return b.build();
}

class FragPipeline : public ::testing::Test {
 protected:
  void SetUp() override { make(dp::FragConfig{}); }
  void make(dp::FragConfig fc) {
    dp::PipelineConfig cfg;
    cfg.flows.capacity = 1024;
    cfg.flows.timeouts = dp::make_timeouts(kSecond);
    cfg.replay.packets_per_second = 1e4;
    fc.ticks_per_second = kSecond;
    cfg.frags = fc;
    cfg.l7.flows = 16;
    auto p = Pipeline::create(cfg);
    ASSERT_TRUE(p) << p.error();
    pipe = std::move(*p);
    c = std::make_unique<dp::WorkerCounters>();
  }
  std::vector<Bytes> run(const std::vector<Bytes>& frames, std::int64_t now = kNow) {
    std::vector<rte_mbuf*> m;
    for (const auto& f : frames) {
      rte_mbuf* b = rte_pktmbuf_alloc(g_pool);
      std::memcpy(rte_pktmbuf_append(b, static_cast<std::uint16_t>(f.size())), f.data(), f.size());
      m.push_back(b);
    }
    const auto keep = pipe->run(m.data(), static_cast<std::uint16_t>(m.size()), 0, snap.get(),
                                {static_cast<std::uint64_t>(now), now}, *c);
    std::vector<Bytes> out;
    for (unsigned i = 0; i < keep; ++i) {
      const auto* p = rte_pktmbuf_mtod(m[i], const std::uint8_t*);
      out.emplace_back(p, p + rte_pktmbuf_pkt_len(m[i]));
      rte_pktmbuf_free(m[i]);
    }
    return out;
  }
  std::uint64_t drops(DropReason r) const { return c->drops[static_cast<std::size_t>(r)].get(); }

  std::shared_ptr<const dp::Snapshot> snap = snapshot();
  std::unique_ptr<Pipeline> pipe;
  std::unique_ptr<dp::WorkerCounters> c;
};

TEST_F(FragPipeline, InOrderFragmentsOfAnAllowedFlowAreForwardedAndCountOnItsFlow) {
  const auto f0 = frag4(1, 0, 24, true), f1 = frag4(1, 24, 24, true), f2 = frag4(1, 48, 16, false);
  EXPECT_EQ(run({f0, f1, f2}), (std::vector<Bytes>{f0, f1, f2}));  // one burst
  const auto g0 = frag4(2, 0, 24, true), g1 = frag4(2, 24, 24, true), g2 = frag4(2, 48, 16, false);
  EXPECT_EQ(run({g0}), std::vector<Bytes>{g0});  // one burst each
  EXPECT_EQ(run({g1}), std::vector<Bytes>{g1});
  EXPECT_EQ(run({g2}), std::vector<Bytes>{g2});
  EXPECT_EQ(c->dropped_total(), 0u);
  EXPECT_EQ(c->new_flows.get(), 1u);
  std::uint64_t packets = 0;
  pipe->flows().for_each([&](const dp::FlowEntry& e) {
    packets += e.packets[0] + e.packets[1];
    return true;
  });
  EXPECT_EQ(packets, 6u);
}

TEST_F(FragPipeline, FragmentsOfADeniedFlowAreDroppedLikeTheirFirstFragment) {
  EXPECT_TRUE(run({frag4(1, 0, 24, true, 514), frag4(1, 24, 24, true), frag4(1, 48, 16, false)}).empty());
  EXPECT_EQ(drops(DropReason::policy_deny), 3u);
  EXPECT_TRUE(run({frag4(2, 0, 24, true, 999)}).empty());
  EXPECT_TRUE(run({frag4(2, 24, 40, false)}).empty());
  EXPECT_EQ(drops(DropReason::policy_default_deny), 2u);
  EXPECT_EQ(c->new_flows.get(), 0u);
}

TEST_F(FragPipeline, OverlappingFragmentIsDroppedAndPoisonsItsDatagramInEitherOrder) {
  // [0,24) [24,48) then [32,56) overlapping the second; the rest [48..) never passes.
  const auto a0 = frag4(1, 0, 24, true), a1 = frag4(1, 24, 24, true), a2 = frag4(1, 32, 24, true);
  EXPECT_EQ(run({a0, a1}), (std::vector<Bytes>{a0, a1}));
  EXPECT_TRUE(run({a2}).empty());
  EXPECT_TRUE(run({frag4(1, 56, 8, false)}).empty());
  // The same two the other way round: [32,56) passes, then [24,48) overlaps it.
  const auto b0 = frag4(2, 0, 24, true), b2 = frag4(2, 32, 24, true), b1 = frag4(2, 24, 24, true);
  EXPECT_EQ(run({b0, b2}), (std::vector<Bytes>{b0, b2}));
  EXPECT_TRUE(run({b1}).empty());
  EXPECT_TRUE(run({frag4(2, 56, 8, false)}).empty());
  // Overlapping the first fragment's bytes (the RFC 1858 rewrite of its header region).
  const auto c0 = frag4(3, 0, 24, true);
  EXPECT_EQ(run({c0}), std::vector<Bytes>{c0});
  EXPECT_TRUE(run({frag4(3, 16, 48, false)}).empty());
  EXPECT_EQ(drops(DropReason::frag_overlap), 5u);
  EXPECT_EQ(c->dropped_total(), 5u);
}

TEST_F(FragPipeline, DuplicateFragmentOrDuplicateFirstFragmentIsDropped) {
  const auto f0 = frag4(1, 0, 24, true), f1 = frag4(1, 24, 24, true);
  EXPECT_EQ(run({f0, f1, f1}), (std::vector<Bytes>{f0, f1}));
  EXPECT_TRUE(run({frag4(1, 48, 16, false)}).empty());  // poisoned
  const auto g0 = frag4(2, 0, 24, true);
  EXPECT_EQ(run({g0}), std::vector<Bytes>{g0});
  EXPECT_TRUE(run({g0}).empty());
  EXPECT_TRUE(run({frag4(2, 24, 40, false)}).empty());
  EXPECT_EQ(drops(DropReason::frag_overlap), 4u);
}

TEST_F(FragPipeline, NonFirstFragmentBeforeItsFirstIsDroppedNothingIsHeld) {
  const auto f0 = frag4(1, 0, 24, true), f1 = frag4(1, 24, 24, true), f2 = frag4(1, 48, 16, false);
  EXPECT_EQ(run({f1, f0, f2}), (std::vector<Bytes>{f0, f2}));  // same burst, f1 came first
  EXPECT_TRUE(run({frag4(9, 24, 40, false)}).empty());        // a datagram never opened
  EXPECT_EQ(drops(DropReason::frag_no_first), 2u);
  // Expired: a later fragment five seconds after its first one has nothing to follow.
  const auto g0 = frag4(2, 0, 24, true);
  EXPECT_EQ(run({g0}), std::vector<Bytes>{g0});
  EXPECT_TRUE(run({frag4(2, 24, 40, false)}, kNow + 5 * static_cast<std::int64_t>(kSecond) + 1).empty());
  EXPECT_EQ(drops(DropReason::frag_no_first), 3u);
}

TEST_F(FragPipeline, DatagramWithMoreFragmentsThanTheBoundIsDropped) {
  make({.capacity = 16, .max_fragments = 3});
  const auto f0 = frag4(1, 0, 16, true, 53, 80), f1 = frag4(1, 16, 16, true), f2 = frag4(1, 32, 16, true);
  EXPECT_EQ(run({f0, f1, f2}), (std::vector<Bytes>{f0, f1, f2}));
  EXPECT_TRUE(run({frag4(1, 48, 16, true), frag4(1, 64, 16, false)}).empty());
  EXPECT_EQ(drops(DropReason::frag_too_many), 2u);
}

TEST_F(FragPipeline, FullTableRefusesNewFragmentedDatagramsButNotWholePackets) {
  make({.capacity = 2});
  const auto a = frag4(1, 0, 24, true), b = frag4(2, 0, 24, true);
  EXPECT_EQ(run({a, b}), (std::vector<Bytes>{a, b}));
  EXPECT_TRUE(run({frag4(3, 0, 24, true)}).empty());
  EXPECT_TRUE(run({frag4(3, 24, 40, false)}).empty());  // its first was refused
  EXPECT_EQ(drops(DropReason::frag_table_full), 1u);
  EXPECT_EQ(drops(DropReason::frag_no_first), 1u);
  const auto whole = PacketBuilder{}.eth().ipv4({.src = A1, .dst = B5}).udp({.dport = 53}).payload(20).build();
  EXPECT_EQ(run({whole}), std::vector<Bytes>{whole});
  // Completing datagram 1 frees its entry (after its burst): datagram 3 now fits.
  const auto a_end = frag4(1, 24, 40, false), c0 = frag4(3, 0, 24, true);
  EXPECT_EQ(run({a_end}), std::vector<Bytes>{a_end});
  EXPECT_EQ(run({c0}, kNow + 1), std::vector<Bytes>{c0});
}

TEST_F(FragPipeline, Ipv6FragmentsFollowTheirFirstFragmentByThirtyTwoBitId) {
  const dp::IpAddr unused{};
  (void)unused;
  const std::array<std::uint8_t, 16> src{0x20, 0x01, 0x0d, 0xb8, 0, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  const std::array<std::uint8_t, 16> dst{0x20, 0x01, 0x0d, 0xb8, 0, 0x0b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5};
  const auto first = PacketBuilder{}.eth().ipv6({.src = src, .dst = dst})
                         .ipv6_frag({.offset = 0, .more_fragments = true, .id = 0x12345678})
                         .udp({.dport = 53, .length = 48}).payload(16).build();
  auto later = [&](std::uint32_t id) {
    return PacketBuilder{}.eth().ipv6({.src = src, .dst = dst})
        .ipv6_frag({.offset = 24, .more_fragments = false, .id = id})
        .raw(17, Bytes(24, 0x55)).build();
  };
  const auto l1 = later(0x12345678);
  EXPECT_EQ(run({first}), std::vector<Bytes>{first});
  EXPECT_TRUE(run({later(0x00005678)}).empty());  // same low 16 bits, another datagram
  EXPECT_EQ(run({l1}), std::vector<Bytes>{l1});
  EXPECT_EQ(drops(DropReason::frag_no_first), 1u);
  EXPECT_EQ(c->dropped_total(), 1u);
}

}  // namespace
