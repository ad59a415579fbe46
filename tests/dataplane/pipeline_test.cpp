// The pipeline on real mbufs in one process (EAL without hugepages): verdicts, counters and the
// bytes that leave, for untagged and tagged flows, policy revocation, audit mode and hitless
// snapshot swaps under traffic.
#include <gtest/gtest.h>

#include <rte_eal.h>
#include <rte_mbuf.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "eal_test_env.hpp"
#include "packet_builder.hpp"
#include "zt/crypto/keys.hpp"
#include "zt/crypto/mint.hpp"
#include "zt/dataplane/pipeline.hpp"
#include "zt/rules/policy.hpp"
#include "zt/rules/snapshot.hpp"

namespace {

using namespace zt;
using dp::Pipeline;
using rules::DropReason;
using test::Bytes;
using test::PacketBuilder;

rte_mempool* g_pool = nullptr;

const auto* const g_env = ::testing::AddGlobalTestEnvironment(
    new test::EalEnvironment({.program = "pipeline_test", .memory_mb = "256", .mbufs = 8191}, &g_pool));

constexpr std::uint32_t kWeb = 1001, kClient = 1002;
// A fixed wall clock (ns), five minutes into a 15-minute key epoch.
constexpr std::int64_t kNow = (1'800'000'000LL + 300) * 1'000'000'000LL;

const char* kPolicy = R"(
identities:
  - {id: 1001, name: web, labels: {app: web}}
  - {id: 1002, name: client, labels: {app: client}}
segments:
  - {name: zone-a, prefixes: [10.1.0.0/24], labels: {zone: a}}
  - {name: zone-b, prefixes: [10.2.0.0/24], labels: {zone: b}}
  - {name: rollout, prefixes: [10.3.0.0/24], labels: {zone: rollout}, mode: audit}
rules:
  - {id: 10, name: web-to-b, from: {labels: {app: web}}, to: {segments: [zone-b]}, proto: tcp, ports: [80], action: allow}
  - {id: 20, name: legacy-dns, from: {segments: [zone-a]}, to: {segments: [zone-b]}, proto: udp, ports: [53], action: allow}
  - {id: 30, name: no-telnet, from: {segments: [zone-a]}, to: {segments: [zone-b]}, proto: tcp, ports: [23], action: deny}
  - {id: 40, name: legacy-http, from: {segments: [zone-a]}, to: {segments: [zone-b]}, proto: tcp, ports: [8080], action: allow}
  - {id: 50, name: mdns-when-b, from: {segments: [zone-a]}, to: {segments: [zone-b]}, proto: udp, ports: [5353], action: allow}
)";

std::shared_ptr<const rules::PolicySnapshot> compile(std::string text, std::uint64_t revision,
                                                     std::vector<std::string> drop_rules = {}) {
  for (const auto& r : drop_rules) {
    const auto at = text.find("  - {id: " + r + ",");
    const auto end = text.find('\n', at);
    text.erase(at, end - at + 1);
  }
  auto p = rules::parse_policy({{"policy.yaml", text}});
  EXPECT_TRUE(p.has_value());
  rules::CompileOptions o;
  o.revision = revision;
  auto s = rules::compile(*p, o);
  EXPECT_TRUE(s.has_value());
  return *s;
}

std::vector<std::uint8_t> master() { return std::vector<std::uint8_t>(32, 0x42); }

crypto::EpochPolicy epoch_policy() { return {}; }  // 15-minute epochs from the Unix epoch

std::uint64_t epoch_now() {
  const auto p = epoch_policy();
  return static_cast<std::uint64_t>((kNow - p.origin_ns) / p.length_ns);
}

std::shared_ptr<const crypto::KeyRing> ring(const rules::PolicySnapshot& pol) {
  std::vector<crypto::EpochSecret> svs;
  for (auto e = epoch_now() - 1; e <= epoch_now() + 1; ++e)
    svs.push_back(*crypto::derive_epoch_secret(master(), "test", e));
  std::vector<std::uint32_t> ids;
  for (const auto& i : pol.source().identities) ids.push_back(i.id);
  return *crypto::KeyRing::build(epoch_policy(), svs, ids);
}

std::shared_ptr<const dp::Snapshot> snapshot(std::shared_ptr<const rules::PolicySnapshot> pol) {
  auto s = std::make_shared<dp::Snapshot>();
  s->keys = ring(*pol);
  s->policy = std::move(pol);
  return s;
}

std::array<std::uint8_t, 4> v4(int a, int b, int c, int d) {
  return {static_cast<std::uint8_t>(a), static_cast<std::uint8_t>(b), static_cast<std::uint8_t>(c),
          static_cast<std::uint8_t>(d)};
}

Bytes tcp(std::array<std::uint8_t, 4> src, std::array<std::uint8_t, 4> dst, std::uint16_t sport,
          std::uint16_t dport, std::uint8_t flags) {
  return PacketBuilder{}.eth().ipv4({.src = src, .dst = dst}).tcp({.sport = sport, .dport = dport, .flags = flags}).build();
}

Bytes udp(std::array<std::uint8_t, 4> src, std::array<std::uint8_t, 4> dst, std::uint16_t sport,
          std::uint16_t dport) {
  return PacketBuilder{}.eth().ipv4({.src = src, .dst = dst}).udp({.sport = sport, .dport = dport}).payload(20).build();
}

constexpr std::uint8_t SYN = 0x02, ACK = 0x10;

// A Geneve frame carrying `inner` (a frame from PacketBuilder) tagged by `identity`.
Bytes tagged(const Bytes& inner_frame, std::uint32_t identity, crypto::Coverage cov = crypto::Coverage::full,
             std::int64_t when = kNow, bool forge = false) {
  const std::span<const std::uint8_t> inner_ip(inner_frame.data() + 14, inner_frame.size() - 14);
  crypto::InnerView view;
  EXPECT_EQ(crypto::parse_inner_ip(inner_ip, view), crypto::PacketError::none);
  auto sv = crypto::derive_epoch_secret(master(), "test", epoch_now());
  auto key = crypto::derive_identity_key(*sv, identity, crypto::Alg::aes256_cmac);
  auto minter = crypto::Minter::create();
  crypto::TagFields f;
  f.coverage = cov;
  f.timestamp_ns = crypto::tag_timestamp(epoch_policy(), epoch_now(), when);
  crypto::Tag tag;
  EXPECT_EQ(minter->mint(*key, f, view, tag), crypto::TagReject::none);
  if (forge) tag.mac[3] ^= 1;
  crypto::OuterParams outer;
  outer.src = {10, 1, 0, 100};
  outer.dst = {10, 2, 0, 100};
  std::vector<std::uint8_t> ip;
  EXPECT_EQ(crypto::build_geneve_packet(outer, tag, inner_ip, ip), crypto::PacketError::none);
  Bytes frame(inner_frame.begin(), inner_frame.begin() + 12);
  frame.push_back(0x08);
  frame.push_back(0x00);
  frame.insert(frame.end(), ip.begin(), ip.end());
  return frame;
}

class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override { make_pipeline(dp::GeneveMode::strip); }

  void make_pipeline(dp::GeneveMode mode) {
    dp::PipelineConfig cfg;
    cfg.flows.capacity = 4096;
    cfg.flows.timeouts = dp::make_timeouts(1'000'000'000);  // the test clock ticks in ns
    cfg.geneve = mode;
    cfg.replay.packets_per_second = 1e5;
    auto p = Pipeline::create(cfg);
    ASSERT_TRUE(p) << p.error();
    pipe = std::move(*p);
  }

  // Runs one burst; returns the frames that would leave, and fills `drops` by reason.
  std::vector<Bytes> run(const std::vector<Bytes>& frames, const dp::Snapshot* snap,
                         unsigned in_port = 0, std::int64_t now = kNow) {
    std::vector<rte_mbuf*> m;
    for (const auto& f : frames) {
      rte_mbuf* b = rte_pktmbuf_alloc(g_pool);
      std::memcpy(rte_pktmbuf_append(b, static_cast<std::uint16_t>(f.size())), f.data(), f.size());
      m.push_back(b);
    }
    const auto keep = pipe->run(m.data(), static_cast<std::uint16_t>(m.size()), in_port, snap,
                                {static_cast<std::uint64_t>(now), now}, c);
    std::vector<Bytes> out;
    for (unsigned i = 0; i < keep; ++i) {
      const auto* p = rte_pktmbuf_mtod(m[i], const std::uint8_t*);
      out.emplace_back(p, p + rte_pktmbuf_pkt_len(m[i]));
      rte_pktmbuf_free(m[i]);
    }
    return out;
  }
  std::uint64_t drops(DropReason r) const { return c.drops[static_cast<std::size_t>(r)].get(); }

  std::unique_ptr<Pipeline> pipe;
  dp::WorkerCounters c;
};

const auto A1 = v4(10, 1, 0, 1), B5 = v4(10, 2, 0, 5), R5 = v4(10, 3, 0, 5);

TEST_F(PipelineTest, UntaggedFlowAllowedBySourceSegmentPassesAndRepliesFollowFlowState) {
  auto snap = snapshot(compile(kPolicy, 1));
  const auto syn = tcp(A1, B5, 40000, 8080, SYN);
  EXPECT_EQ(run({syn}, snap.get(), 0), std::vector<Bytes>{syn});
  const auto synack = tcp(B5, A1, 8080, 40000, SYN | ACK);
  EXPECT_EQ(run({synack}, snap.get(), 1), std::vector<Bytes>{synack});
  const auto ack = tcp(A1, B5, 40000, 8080, ACK);
  EXPECT_EQ(run({ack}, snap.get(), 0), std::vector<Bytes>{ack});
  EXPECT_EQ(c.new_flows.get(), 1u);
  EXPECT_EQ(c.dropped_total(), 0u);
  EXPECT_EQ(pipe->flows().size(), 1u);
}

TEST_F(PipelineTest, DefaultDenyAndExplicitDenyDropWithTheirReasonsAndLeaveNoFlow) {
  auto snap = snapshot(compile(kPolicy, 1));
  EXPECT_TRUE(run({tcp(A1, B5, 40000, 9999, SYN)}, snap.get()).empty());
  EXPECT_EQ(drops(DropReason::policy_default_deny), 1u);
  EXPECT_TRUE(run({tcp(A1, B5, 40000, 23, SYN)}, snap.get()).empty());
  EXPECT_EQ(drops(DropReason::policy_deny), 1u);
  EXPECT_EQ(pipe->flows().size(), 0u);
}

TEST_F(PipelineTest, TcpWithoutSynForAnUnknownFlowIsDropped) {
  auto snap = snapshot(compile(kPolicy, 1));
  EXPECT_TRUE(run({tcp(A1, B5, 40000, 8080, ACK)}, snap.get()).empty());
  EXPECT_EQ(drops(DropReason::tcp_no_syn), 1u);
}

TEST_F(PipelineTest, ASpoofedReplyWithNoFlowIsDropped) {
  auto snap = snapshot(compile(kPolicy, 1));
  EXPECT_TRUE(run({tcp(B5, A1, 8080, 40000, SYN | ACK)}, snap.get(), 1).empty());
  EXPECT_EQ(c.dropped_total(), 1u);
  EXPECT_EQ(pipe->flows().size(), 0u);
}

TEST_F(PipelineTest, WithoutAPolicyEveryIpPacketIsDroppedAndArpPasses) {
  const auto arp = PacketBuilder{}.eth().arp().build();
  EXPECT_EQ(run({udp(A1, B5, 1000, 53), arp}, nullptr), std::vector<Bytes>{arp});
  EXPECT_EQ(drops(DropReason::no_policy), 1u);
}

TEST_F(PipelineTest, ATaggedFlowPassesDecapsulatedInStripMode) {
  auto snap = snapshot(compile(kPolicy, 1));
  const auto inner = tcp(v4(10, 9, 9, 9), B5, 41000, 80, SYN);
  const auto out = run({tagged(inner, kWeb)}, snap.get());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], inner);  // outer MACs + the inner packet, byte for byte
  EXPECT_EQ(pipe->verifier().mac_count(), 1u);
}

// Frames the parser's fast path takes and frames only the full parser takes, forwarded and
// dropped, in one full burst: the forwarded ones leave in arrival order, each drop has its reason,
// and every dropped mbuf is back in the pool (drops are freed in bulk after the burst).
TEST_F(PipelineTest, AFullBurstOfFastAndFullParserFramesKeepsOrderAndReturnsEveryDropToThePool) {
  auto snap = snapshot(compile(kPolicy, 1));
  const unsigned before = rte_mempool_avail_count(g_pool);
  std::vector<Bytes> in, want;
  const auto inner = tcp(v4(10, 9, 9, 9), B5, 41000, 80, SYN);
  in.push_back(tagged(inner, kWeb));  // fast path, Geneve: forwarded decapsulated
  want.push_back(inner);
  for (std::uint16_t i = 0; i < 7; ++i) {
    const auto allowed = udp(A1, B5, static_cast<std::uint16_t>(1000 + i), 53);  // fast path, rule 20
    const auto options = PacketBuilder{}.eth().ipv4({.src = A1, .dst = B5, .options = {1, 1, 1, 0}})
                             .udp({.sport = static_cast<std::uint16_t>(2000 + i), .dport = 53}).payload(4).build();
    const auto denied = udp(A1, B5, static_cast<std::uint16_t>(3000 + i), 9999);  // fast path, no rule
    const auto bad_sum = PacketBuilder{}.eth().ipv4({.src = A1, .dst = B5, .checksum = 0x1234})
                             .udp({.dport = 53}).build();  // full parser's drop
    in.insert(in.end(), {allowed, denied, options, bad_sum});
    want.push_back(allowed);
    want.push_back(options);  // IPv4 options are left to policy: the full parser, then rule 20
  }
  ASSERT_EQ(in.size(), 29u);
  EXPECT_EQ(run(in, snap.get()), want);
  EXPECT_EQ(drops(DropReason::policy_default_deny), 7u);
  EXPECT_EQ(drops(DropReason::ipv4_bad_checksum), 7u);
  EXPECT_EQ(c.dropped_total(), 14u);
  EXPECT_EQ(c.new_flows.get(), 15u);
  EXPECT_EQ(rte_mempool_avail_count(g_pool), before);
}

// Drops go back to the pool in one put when every one is plain (pipeline.cpp free_dropped);
// a burst holding a drop someone else still references, or a chain, takes the general free:
// the shared mbuf survives with one reference less and the chain's every segment returns.
TEST_F(PipelineTest, DropsHeldElsewhereOrChainedAreFreedByTheGeneralPath) {
  auto snap = snapshot(compile(kPolicy, 1));
  const unsigned before = rte_mempool_avail_count(g_pool);
  const auto burst = [&](unsigned shared_at, bool chain_last) {
    std::vector<rte_mbuf*> m;
    for (std::uint16_t i = 0; i < 8; ++i) {
      const auto f = udp(A1, B5, static_cast<std::uint16_t>(5000 + i), 9999);  // default deny
      rte_mbuf* b = rte_pktmbuf_alloc(g_pool);
      std::memcpy(rte_pktmbuf_append(b, static_cast<std::uint16_t>(f.size())), f.data(), f.size());
      m.push_back(b);
    }
    if (chain_last) {  // a second segment holding 4 bytes of padding after the frame
      rte_mbuf* tail = rte_pktmbuf_alloc(g_pool);
      std::memset(rte_pktmbuf_append(tail, 4), 0, 4);
      EXPECT_EQ(rte_pktmbuf_chain(m.back(), tail), 0);
    }
    rte_mbuf* shared = shared_at < m.size() ? m[shared_at] : nullptr;
    if (shared != nullptr) rte_mbuf_refcnt_update(shared, 1);
    EXPECT_EQ(pipe->run(m.data(), static_cast<std::uint16_t>(m.size()), 0, snap.get(), {kNow, kNow}, c), 0u);
    return shared;
  };
  rte_mbuf* shared = burst(3, false);
  ASSERT_NE(shared, nullptr);
  EXPECT_EQ(rte_mbuf_refcnt_read(shared), 1u);  // the pipeline's reference is gone, ours is not
  EXPECT_EQ(rte_mempool_avail_count(g_pool), before - 1);
  rte_pktmbuf_free(shared);
  EXPECT_EQ(rte_mempool_avail_count(g_pool), before);
  EXPECT_EQ(burst(99, true), nullptr);
  EXPECT_EQ(rte_mempool_avail_count(g_pool), before);  // both segments of the chain returned
  burst(99, false);
  EXPECT_EQ(rte_mempool_avail_count(g_pool), before);
  EXPECT_EQ(drops(DropReason::policy_default_deny), 24u);
  EXPECT_EQ(c.dropped_total(), 24u);
}

TEST_F(PipelineTest, KeepModeForwardsTheGenevePacketUnchanged) {
  make_pipeline(dp::GeneveMode::keep);
  auto snap = snapshot(compile(kPolicy, 1));
  const auto frame = tagged(tcp(v4(10, 9, 9, 9), B5, 41000, 80, SYN), kWeb);
  EXPECT_EQ(run({frame}, snap.get()), std::vector<Bytes>{frame});
}

TEST_F(PipelineTest, ForgedReplayedAndStaleTagsAreDroppedEachWithItsReason) {
  auto snap = snapshot(compile(kPolicy, 1));
  const auto inner = tcp(v4(10, 9, 9, 9), B5, 41000, 80, SYN);
  EXPECT_TRUE(run({tagged(inner, kWeb, crypto::Coverage::full, kNow, /*forge=*/true)}, snap.get()).empty());
  EXPECT_EQ(drops(DropReason::tag_forged_mac), 1u);
  const auto good = tagged(tcp(v4(10, 9, 9, 9), B5, 41001, 80, SYN), kWeb);
  EXPECT_EQ(run({good}, snap.get()).size(), 1u);
  EXPECT_TRUE(run({good}, snap.get()).empty());  // the very same packet again
  EXPECT_EQ(drops(DropReason::tag_replayed), 1u);
  const auto old = tagged(tcp(v4(10, 9, 9, 9), B5, 41002, 80, SYN), kWeb, crypto::Coverage::full,
                          kNow - 5'000'000'000LL);
  EXPECT_TRUE(run({old}, snap.get()).empty());
  EXPECT_EQ(drops(DropReason::tag_time_window), 1u);
  const auto hdr = tagged(tcp(v4(10, 9, 9, 9), B5, 41003, 80, SYN), kWeb, crypto::Coverage::hdr);
  EXPECT_TRUE(run({hdr}, snap.get()).empty());
  EXPECT_EQ(drops(DropReason::tag_hdr_not_allowed), 1u);
}

TEST_F(PipelineTest, APolicyDenyOfATaggedPacketCostsNoMac) {
  auto snap = snapshot(compile(kPolicy, 1));
  // client may not reach port 80 of zone-b: decided from the tag's claimed identity alone.
  EXPECT_TRUE(run({tagged(tcp(v4(10, 9, 9, 9), B5, 41000, 80, SYN), kClient)}, snap.get()).empty());
  EXPECT_EQ(drops(DropReason::policy_default_deny), 1u);
  EXPECT_EQ(pipe->verifier().mac_count(), 0u);
}

TEST_F(PipelineTest, AnUntaggedPacketOnATaggedFlowFromItsInitiatorIsDropped) {
  auto snap = snapshot(compile(kPolicy, 1));
  const auto src = v4(10, 9, 9, 9);
  ASSERT_EQ(run({tagged(tcp(src, B5, 41000, 80, SYN), kWeb)}, snap.get()).size(), 1u);
  EXPECT_EQ(run({tcp(B5, src, 80, 41000, SYN | ACK)}, snap.get(), 1).size(), 1u);  // reply: untagged is fine
  EXPECT_TRUE(run({tcp(src, B5, 41000, 80, ACK)}, snap.get()).empty());
  EXPECT_EQ(drops(DropReason::tag_missing), 1u);
}

TEST_F(PipelineTest, AnUntaggedCopyInTheSameBurstAsTheTaggedOpenerIsDropped) {
  // Both would be allowed alone (web by its tag, zone-a untagged by rule 40): the copy finds the
  // flow the tagged SYN opened a moment earlier in this burst and is held to it.
  auto snap = snapshot(compile(std::string(kPolicy) +
                                   "  - {id: 60, name: web-8080, from: {labels: {app: web}}, to: {segments: [zone-b]}, "
                                   "proto: tcp, ports: [8080], action: allow}\n",
                               1));
  const auto syn = tcp(A1, B5, 40000, 8080, SYN);
  const auto out = run({tagged(syn, kWeb), syn}, snap.get());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], syn);  // the decapsulated tagged SYN; the untagged copy is gone
  EXPECT_EQ(drops(DropReason::tag_missing), 1u);
  EXPECT_EQ(c.new_flows.get(), 1u);
}

TEST_F(PipelineTest, RevokingTheRuleCutsTheEstablishedFlowOnItsNextPacket) {
  auto v1 = snapshot(compile(kPolicy, 1));
  ASSERT_EQ(run({tcp(A1, B5, 40000, 8080, SYN)}, v1.get()).size(), 1u);
  ASSERT_EQ(run({tcp(B5, A1, 8080, 40000, SYN | ACK)}, v1.get(), 1).size(), 1u);
  auto v2 = snapshot(compile(kPolicy, 2, {"40"}));
  EXPECT_TRUE(run({tcp(A1, B5, 40000, 8080, ACK)}, v2.get()).empty());
  EXPECT_EQ(drops(DropReason::policy_default_deny), 1u);
  EXPECT_EQ(c.revoked_flows.get(), 1u);
  EXPECT_EQ(pipe->flows().size(), 0u);
  // A flow the new revision still allows keeps going across the change.
  ASSERT_EQ(run({udp(A1, B5, 1000, 53)}, v1.get()).size(), 1u);
  EXPECT_EQ(run({udp(A1, B5, 1000, 53)}, v2.get()).size(), 1u);
}

// Packets no rule covers in either direction skip the flow table (dataplane/README.md "Packets
// no flow can hold"), but only once an aging round has shown every flow to be of the current
// revision: a flow of an older revision on a port the new one closes entirely is still found,
// re-decided and erased; after that, floods to closed ports are decided as before and an
// allowed flow's replies still follow flow state.
TEST_F(PipelineTest, AFlowOnAPortTheNewRevisionClosesIsStillFoundAndRevoked) {
  auto v1 = snapshot(compile(kPolicy, 1));
  ASSERT_EQ(run({tcp(A1, B5, 40000, 8080, SYN)}, v1.get()).size(), 1u);
  ASSERT_EQ(run({tcp(B5, A1, 8080, 40000, SYN | ACK)}, v1.get(), 1).size(), 1u);
  pipe->age(kNow, pipe->flows().bucket_count());  // a clean round under revision 1
  ASSERT_TRUE(pipe->flows().all_flows_at(1));
  // Revision 2 has no TCP rule towards zone-b on 8080 & 63 (rule 10's 80 shares that bit).
  auto v2 = snapshot(compile(kPolicy, 2, {"10", "40"}));
  EXPECT_TRUE(v2->policy->may_hold_flow_v4(0x0a010001, 0x0a020005, 6, 40000, 8080) == false);
  EXPECT_TRUE(run({tcp(A1, B5, 40000, 8080, ACK)}, v2.get()).empty());
  EXPECT_EQ(drops(DropReason::policy_default_deny), 1u);
  EXPECT_EQ(c.revoked_flows.get(), 1u);
  EXPECT_EQ(pipe->flows().size(), 0u);
  // An allowed flow under revision 2, then a clean round: the shortcut is on.
  ASSERT_EQ(run({udp(A1, B5, 1000, 53)}, v2.get()).size(), 1u);
  pipe->age(kNow, pipe->flows().bucket_count());
  ASSERT_TRUE(pipe->flows().all_flows_at(2));
  EXPECT_EQ(run({udp(B5, A1, 53, 1000)}, v2.get(), 1).size(), 1u);  // its reply
  EXPECT_TRUE(run({tcp(A1, B5, 40001, 8080, SYN), udp(A1, B5, 1001, 9999)}, v2.get()).empty());
  EXPECT_EQ(drops(DropReason::policy_default_deny), 3u);
  EXPECT_EQ(c.new_flows.get(), 2u);
  EXPECT_EQ(pipe->flows().size(), 1u);
}

TEST_F(PipelineTest, ASnapshotPastItsExpiryRefusesNewFlowsByItselfAndKeepsEstablishedOnes) {
  // The worker compares the snapshot's expiry with its burst clock: no control thread has to
  // mark it expired for new flows to fail closed on time.
  auto s = std::make_shared<dp::Snapshot>(*snapshot(compile(kPolicy, 1)));
  s->expires_ns = kNow + 1'000'000;
  ASSERT_EQ(run({tcp(A1, B5, 40000, 8080, SYN)}, s.get(), 0, kNow).size(), 1u);
  ASSERT_EQ(run({tcp(B5, A1, 8080, 40000, SYN | ACK)}, s.get(), 1, kNow + 999'999).size(), 1u);
  EXPECT_TRUE(run({tcp(A1, B5, 40001, 8080, SYN)}, s.get(), 0, kNow + 1'000'000).empty());
  EXPECT_EQ(drops(DropReason::policy_expired), 1u);
  const auto ack = tcp(A1, B5, 40000, 8080, ACK);
  EXPECT_EQ(run({ack}, s.get(), 0, kNow + 2'000'000), std::vector<Bytes>{ack});
  EXPECT_EQ(c.new_flows.get(), 1u);
  EXPECT_EQ(c.dropped_total(), 1u);
}

TEST_F(PipelineTest, AnAuditSegmentForwardsWhatItWouldDenyAndCountsIt) {
  auto snap = snapshot(compile(kPolicy, 1));
  const auto syn = tcp(A1, R5, 40000, 9999, SYN);
  EXPECT_EQ(run({syn}, snap.get()), std::vector<Bytes>{syn});
  EXPECT_EQ(c.audit_flows.get(), 1u);
  EXPECT_EQ(c.dropped_total(), 0u);
}

TEST_F(PipelineTest, AFullFlowTableRefusesNewFlowsAndKeepsEstablishedOnes) {
  dp::PipelineConfig cfg;
  cfg.flows.capacity = 64;
  cfg.flows.timeouts = dp::make_timeouts(1'000'000'000);
  cfg.replay.packets_per_second = 1e5;
  pipe = std::move(*Pipeline::create(cfg));
  auto snap = snapshot(compile(kPolicy, 1));
  for (std::uint16_t p = 0; p < 64; ++p) ASSERT_EQ(run({udp(A1, B5, 2000 + p, 53)}, snap.get()).size(), 1u);
  EXPECT_TRUE(run({udp(A1, B5, 3000, 53)}, snap.get()).empty());
  EXPECT_EQ(drops(DropReason::flow_table_full), 1u);
  EXPECT_EQ(run({udp(A1, B5, 2000, 53)}, snap.get()).size(), 1u);
}

TEST(PipelineSwap, ThousandsOfPolicySwapsUnderTrafficNeverMixTwoRevisionsInABurst) {
  // Revision A allows udp/53 only; B also udp/5353. Each burst holds one new flow to each port:
  // decided by A it forwards exactly the first, by B exactly both. Anything else is a packet
  // decided by a mix of revisions or dropped by the swap itself.
  auto a = snapshot(compile(kPolicy, 1, {"50"}));
  auto b = snapshot(compile(kPolicy, 2));
  auto ch = std::move(*dp::SnapshotChannel::create(1));
  ch->publish(a);
  dp::PipelineConfig cfg;
  cfg.flows.capacity = 256;
  cfg.flows.timeouts = dp::make_timeouts(1);  // every flow expires after 1 tick: new each burst
  cfg.replay.packets_per_second = 1e5;
  auto pipe = std::move(*Pipeline::create(cfg));
  dp::WorkerCounters c;
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> bursts{0};
  std::uint64_t bad = 0, saw_a = 0, saw_b = 0;
  const Bytes f[2] = {udp(A1, B5, 1024, 53), udp(A1, B5, 1024, 5353)};
  std::thread worker([&] {
    ch->online(0);
    std::uint64_t tick = 10;
    while (!stop.load()) {
      const dp::Snapshot* s = ch->acquire();
      rte_mbuf* m[2];
      for (int i = 0; i < 2; ++i) {
        m[i] = rte_pktmbuf_alloc(g_pool);
        std::memcpy(rte_pktmbuf_append(m[i], static_cast<std::uint16_t>(f[i].size())), f[i].data(), f[i].size());
      }
      tick += 10;
      const auto keep = pipe->run(m, 2, 0, s, {tick, kNow}, c);
      pipe->age(tick + 10, 64);  // every bucket: the flows are gone before the next burst
      const bool is_a = keep == 1 && rte_pktmbuf_pkt_len(m[0]) == f[0].size() &&
                        std::memcmp(rte_pktmbuf_mtod(m[0], void*), f[0].data(), f[0].size()) == 0;
      const bool is_b = keep == 2;
      saw_a += is_a;
      saw_b += is_b;
      bad += !(is_a || is_b);
      for (unsigned i = 0; i < keep; ++i) rte_pktmbuf_free(m[i]);
      ++bursts;
      ch->quiescent(0);
    }
    ch->offline(0);
  });
  // Publish only once the worker is online and moving, so every swap happens under traffic
  // (publish waits for online readers only).
  while (bursts.load() < 16) std::this_thread::yield();
  for (int i = 0; i < 2000; ++i) ch->publish(i % 2 ? a : b);
  const std::uint64_t during = bursts.load();
  stop.store(true);
  worker.join();
  EXPECT_EQ(bad, 0u) << "of " << bursts.load() << " bursts";
  EXPECT_GE(during, 2000u) << "each publish waits for the worker to pass a burst";
  EXPECT_GT(saw_a, 0u);
  EXPECT_GT(saw_b, 0u);
  EXPECT_EQ(c.drops[static_cast<std::size_t>(DropReason::policy_default_deny)].get(), saw_a);
  EXPECT_EQ(c.dropped_total(), saw_a);  // nothing but revision A's deny of 5353
}

// ---- counters by rule, by identity class, and per stage -----------------------------------

dp::CounterSnapshot::Worker::Rule rule_counts(const dp::WorkerCounters& c, rules::RuleId id) {
  dp::CounterSnapshot s;
  s.workers.push_back(dp::copy_worker(c, 1, 0));
  for (const auto& r : s.rules())
    if (!r.overflow && r.id == id) return r;
  return {};
}

dp::CounterSnapshot::Worker::Class class_counts(const dp::WorkerCounters& c, dp::IdentityClass k) {
  return dp::copy_worker(c, 1, 0).classes[static_cast<std::size_t>(k)];
}

TEST_F(PipelineTest, CountsFlowDecisionsAndPacketsByRuleIncludingTheDefaultRule) {
  auto snap = snapshot(compile(kPolicy, 1));
  ASSERT_EQ(run({tcp(A1, B5, 40000, 8080, SYN)}, snap.get()).size(), 1u);
  ASSERT_EQ(run({tcp(B5, A1, 8080, 40000, SYN | ACK)}, snap.get(), 1).size(), 1u);
  ASSERT_EQ(run({tcp(A1, B5, 40000, 8080, ACK)}, snap.get()).size(), 1u);
  EXPECT_TRUE(run({tcp(A1, B5, 40000, 8080, SYN | 0x01)}, snap.get()).empty());  // SYN+FIN
  EXPECT_TRUE(run({tcp(A1, B5, 40001, 23, SYN), tcp(A1, B5, 40002, 23, SYN)}, snap.get()).empty());
  EXPECT_TRUE(run({tcp(A1, B5, 40003, 9999, SYN)}, snap.get()).empty());

  const auto allow = rule_counts(c, 40);
  EXPECT_EQ(allow.flows_admitted, 1u);
  EXPECT_EQ(allow.flows_denied, 0u);
  EXPECT_EQ(allow.packets_forwarded, 3u);  // SYN, SYN-ACK (the reply counts under its flow's rule), ACK
  EXPECT_EQ(allow.packets_dropped, 1u);    // the SYN+FIN: tcp_bad_state
  const auto telnet = rule_counts(c, 30);
  EXPECT_EQ(telnet.flows_denied, 2u);
  EXPECT_EQ(telnet.packets_dropped, 2u);
  EXPECT_EQ(telnet.flows_admitted, 0u);
  const auto dflt = rule_counts(c, rules::kDefaultRule);
  EXPECT_EQ(dflt.flows_denied, 1u);
  EXPECT_EQ(dflt.packets_dropped, 1u);

  // --stats-file: the keys component tests read keep their shape; the new ones sit beside them.
  dp::CounterSnapshot s;
  s.workers.push_back(dp::copy_worker(c, 1, 0));
  const auto j = nlohmann::json::parse(dp::counters_to_json(s));
  EXPECT_EQ(j["drops"]["policy_deny"], 2);
  EXPECT_EQ(j["drops"]["tcp_bad_state"], 1);
  EXPECT_EQ(j["flows"]["admitted"], 1);
  EXPECT_EQ(j["rules"]["40"]["packets_forwarded"], 3);
  EXPECT_EQ(j["rules"]["30"]["flows_denied"], 2);
  EXPECT_EQ(j["rules"]["0"]["flows_denied"], 1);
  EXPECT_EQ(j["identity_classes"]["segment"]["packets"], 7);
  const auto text = dp::format_counters(s);
  EXPECT_NE(text.find("default"), std::string::npos) << text;
  EXPECT_NE(text.find("identity class"), std::string::npos) << text;
}

TEST_F(PipelineTest, RuleCountsSurviveANewRevisionThatMovesTheRuleToAnotherIndex) {
  auto v1 = snapshot(compile(kPolicy, 1));
  std::string text = kPolicy;
  const auto at = text.find("rules:\n") + 7;
  text.insert(at, "  - {id: 5, name: first, from: {segments: [zone-a]}, to: {segments: [zone-b]}, proto: udp, ports: [9], action: allow}\n");
  auto v2 = snapshot(compile(text, 2, {"40"}));
  ASSERT_EQ(run({udp(A1, B5, 1000, 53)}, v1.get()).size(), 1u);
  ASSERT_EQ(run({tcp(A1, B5, 40000, 8080, SYN)}, v1.get()).size(), 1u);
  ASSERT_EQ(run({udp(A1, B5, 1000, 53)}, v2.get()).size(), 1u);  // decided again: still rule 20
  EXPECT_TRUE(run({tcp(B5, A1, 8080, 40000, SYN | ACK)}, v2.get(), 1).empty());  // rule 40 is gone
  const auto dns = rule_counts(c, 20);
  EXPECT_EQ(dns.flows_admitted, 1u);
  EXPECT_EQ(dns.packets_forwarded, 2u);
  const auto gone = rule_counts(c, 40);
  EXPECT_EQ(gone.flows_admitted, 1u);
  EXPECT_EQ(gone.packets_forwarded, 1u);
  const auto dflt = rule_counts(c, rules::kDefaultRule);
  EXPECT_EQ(dflt.flows_denied, 1u);  // the revocation is a decision of the default rule
  EXPECT_EQ(dflt.packets_dropped, 1u);
}

// Aging with the current snapshot decides flows of older revisions again, idle ones included:
// a revoked flow leaves the table (counted by the denying rule) without sending a packet, one
// still allowed takes the new revision, and the no-flow shortcut is on after that one round.
TEST_F(PipelineTest, AgingUnderANewRevisionCutsARevokedIdleFlowAndRestampsAnAllowedOne) {
  auto v1 = snapshot(compile(kPolicy, 1));
  ASSERT_EQ(run({tcp(A1, B5, 40000, 8080, SYN), udp(A1, B5, 1000, 53)}, v1.get()).size(), 2u);
  ASSERT_EQ(pipe->flows().size(), 2u);
  // Revision 2 drops rules 10 and 40 (8080 closed entirely); neither flow sends a packet.
  auto v2 = snapshot(compile(kPolicy, 2, {"10", "40"}));
  pipe->age(kNow, pipe->flows().bucket_count(), v2.get(), &c);
  EXPECT_EQ(c.revoked_flows.get(), 1u);
  EXPECT_EQ(rule_counts(c, rules::kDefaultRule).flows_denied, 1u);  // decided by the default deny
  ASSERT_EQ(pipe->flows().size(), 1u);
  pipe->flows().for_each([](const dp::FlowEntry& f) {
    EXPECT_EQ(f.revision, 2u);
    EXPECT_EQ(f.rule_id, 20u);
    return true;
  });
  EXPECT_TRUE(pipe->flows().all_flows_at(2));
  // The cut flow's next packet finds nothing; the allowed one goes on, replies too, and is not
  // decided (or counted) again.
  EXPECT_TRUE(run({tcp(A1, B5, 40000, 8080, ACK)}, v2.get()).empty());
  EXPECT_EQ(drops(DropReason::policy_default_deny), 1u);
  EXPECT_EQ(run({udp(A1, B5, 1000, 53)}, v2.get()).size(), 1u);
  EXPECT_EQ(run({udp(B5, A1, 53, 1000)}, v2.get(), 1).size(), 1u);
  EXPECT_EQ(c.revoked_flows.get(), 1u);
  EXPECT_EQ(rule_counts(c, 20).packets_forwarded, 3u);
  // Aging without a snapshot (as before) never re-decides: a flow of revision 2 under a
  // revision 3 that denies it stays until its next packet.
  auto v3 = snapshot(compile(kPolicy, 3, {"10", "20", "40"}));
  pipe->age(kNow, pipe->flows().bucket_count());
  EXPECT_EQ(pipe->flows().size(), 1u);
  EXPECT_TRUE(run({udp(A1, B5, 1000, 53)}, v3.get()).empty());
  EXPECT_EQ(c.revoked_flows.get(), 2u);
}

TEST_F(PipelineTest, CountsPacketsAndDropsByIdentityClass) {
  auto snap = snapshot(compile(kPolicy, 1));
  const auto src = v4(10, 9, 9, 9);
  ASSERT_EQ(run({tagged(tcp(src, B5, 41000, 80, SYN), kWeb)}, snap.get()).size(), 1u);
  ASSERT_EQ(run({tcp(B5, src, 80, 41000, SYN | ACK)}, snap.get(), 1).size(), 1u);  // reply, untagged
  EXPECT_TRUE(run({tagged(tcp(src, B5, 41001, 80, SYN), kWeb, crypto::Coverage::full, kNow, true)}, snap.get()).empty());
  EXPECT_TRUE(run({tcp(src, B5, 41000, 80, ACK)}, snap.get()).empty());  // tag_missing
  EXPECT_TRUE(run({tagged(tcp(src, B5, 41002, 80, SYN), kClient)}, snap.get()).empty());  // denied before any MAC
  ASSERT_EQ(run({udp(A1, B5, 1000, 53)}, snap.get()).size(), 1u);
  EXPECT_TRUE(run({udp(src, B5, 1000, 53)}, snap.get()).empty());  // from no named segment
  const auto arp = PacketBuilder{}.eth().arp().build();
  ASSERT_EQ(run({arp}, snap.get()).size(), 1u);
  EXPECT_TRUE(run({Bytes(10, 0)}, snap.get()).empty());  // runt

  using K = dp::IdentityClass;
  EXPECT_EQ(class_counts(c, K::verified).packets, 2u);
  EXPECT_EQ(class_counts(c, K::verified).dropped, 0u);
  EXPECT_EQ(class_counts(c, K::invalid).packets, 2u);  // forged MAC, tag missing
  EXPECT_EQ(class_counts(c, K::invalid).dropped, 2u);
  EXPECT_EQ(class_counts(c, K::unverified).packets, 1u);
  EXPECT_EQ(class_counts(c, K::unverified).dropped, 1u);
  EXPECT_EQ(class_counts(c, K::segment).packets, 1u);
  EXPECT_EQ(class_counts(c, K::segment).dropped, 0u);
  EXPECT_EQ(class_counts(c, K::unauthenticated).packets, 1u);
  EXPECT_EQ(class_counts(c, K::unauthenticated).dropped, 1u);
  EXPECT_EQ(class_counts(c, K::none).packets, 2u);
  EXPECT_EQ(class_counts(c, K::none).dropped, 1u);
  std::uint64_t sum = 0, dropped = 0;
  for (const auto& k : dp::copy_worker(c, 1, 0).classes) sum += k.packets, dropped += k.dropped;
  EXPECT_EQ(sum, c.rx_packets[0].get() + c.rx_packets[1].get());
  EXPECT_EQ(dropped, c.dropped_total());
}

TEST(RuleCounters, RulesBeyondTheSlotsShareTheOverflowSlotAndAResetFreesTheSlots) {
  auto c = std::make_unique<dp::WorkerCounters>();
  for (rules::RuleId id = 1; id <= dp::kRuleSlots; ++id) c->rules.slot(id * 7).packets_forwarded.inc();
  c->rules.slot(7).packets_forwarded.inc();  // still its own slot
  c->rules.slot(999'999).packets_dropped.inc();
  c->rules.slot(1'000'001).packets_dropped.inc();
  auto w = dp::copy_worker(*c, 1, 0);
  ASSERT_EQ(w.rules.size(), dp::kRuleSlots + 1);
  EXPECT_EQ(w.rules.front().id, 7u);
  EXPECT_EQ(w.rules.front().packets_forwarded, 2u);
  EXPECT_TRUE(w.rules.back().overflow);
  EXPECT_EQ(w.rules.back().packets_dropped, 2u);
  c->reset();
  EXPECT_TRUE(dp::copy_worker(*c, 1, 0).rules.empty());
  c->rules.slot(999'999).packets_dropped.inc();  // a slot of its own again
  w = dp::copy_worker(*c, 1, 0);
  ASSERT_EQ(w.rules.size(), 1u);
  EXPECT_EQ(w.rules[0].id, 999'999u);
  EXPECT_FALSE(w.rules[0].overflow);
}

TEST_F(PipelineTest, StageCountersStayAtZeroWhenOffAndCountEveryBurstWhenOn) {
  auto snap = snapshot(compile(kPolicy, 1));
  const auto burst = [&](std::uint16_t base) {
    std::vector<Bytes> v;
    for (std::uint16_t k = 0; k < 4; ++k) v.push_back(udp(A1, B5, static_cast<std::uint16_t>(base + k), 53));
    return run(v, snap.get()).size();
  };
  ASSERT_EQ(burst(1000), 4u);
  for (const auto& st : c.stages) EXPECT_EQ(st.calls.get() + st.packets.get() + st.cycles.get(), 0u);
  pipe->set_stage_timing(true);
  ASSERT_EQ(burst(2000), 4u);
  ASSERT_EQ(burst(1000), 4u);  // established
  for (auto s : {dp::Stage::parse, dp::Stage::lookup, dp::Stage::classify, dp::Stage::verify, dp::Stage::finish}) {
    const auto& st = c.stages[static_cast<std::size_t>(s)];
    EXPECT_EQ(st.calls.get(), 2u) << dp::to_string(s);
    EXPECT_EQ(st.packets.get(), 8u) << dp::to_string(s);
    EXPECT_GT(st.cycles.get(), 0u) << dp::to_string(s);
  }
  EXPECT_EQ(c.stages[static_cast<std::size_t>(dp::Stage::tx)].calls.get(), 0u);  // the worker's
  pipe->set_stage_timing(false);
  const auto before = c.stages[static_cast<std::size_t>(dp::Stage::parse)].cycles.get();
  ASSERT_EQ(burst(3000), 4u);
  EXPECT_EQ(c.stages[static_cast<std::size_t>(dp::Stage::parse)].calls.get(), 2u);
  EXPECT_EQ(c.stages[static_cast<std::size_t>(dp::Stage::parse)].cycles.get(), before);
  dp::CounterSnapshot s;
  s.workers.push_back(dp::copy_worker(c, 1, 0));
  EXPECT_NE(dp::format_counters(s).find("cycles/pkt"), std::string::npos);
  EXPECT_EQ(nlohmann::json::parse(dp::counters_to_json(s))["stages"]["parse"]["packets"], 8);
}

}  // namespace
