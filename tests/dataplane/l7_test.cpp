// L7 inspection (dataplane/README.md "L7"): the real Pipeline on mbufs (EAL without hugepages)
// with a policy whose HTTP rule has methods, paths and deny patterns. What leaves, byte for
// byte, and the drop counters by reason: request lines allowed and refused, deny patterns split
// across segments and reordered, the inspection bound, the state pool and the scratch hand-off.
#include <gtest/gtest.h>

#include <rte_eal.h>
#include <rte_mbuf.h>

#include <cstring>
#include <string>
#include <vector>

#include "eal_test_env.hpp"
#include "packet_builder.hpp"
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

const auto* const g_env =
    ::testing::AddGlobalTestEnvironment(new test::EalEnvironment({.program = "l7_test"}, &g_pool));

constexpr std::uint64_t kSecond = 1'000'000'000;
constexpr std::int64_t kNow = 1'800'000'000LL * 1'000'000'000LL;

const char* kPolicy = R"(
segments:
  - {name: zone-a, prefixes: [10.1.0.0/24], labels: {zone: a}}
  - {name: zone-b, prefixes: [10.2.0.0/24], labels: {zone: b}}
  - {name: rollout, prefixes: [10.3.0.0/24], labels: {zone: rollout}, mode: audit}
rules:
  - {id: 10, name: http-b, from: {segments: [zone-a]}, to: {segments: [zone-b, rollout]}, proto: tcp, ports: [80], action: allow, l7: {methods: [GET, HEAD], paths: ['^/'], deny: ['(?i)/etc/passwd', '\.\./']}}
  - {id: 40, name: legacy-http, from: {segments: [zone-a]}, to: {segments: [zone-b]}, proto: tcp, ports: [8080], action: allow}
)";

std::shared_ptr<const dp::Snapshot> snapshot(std::string text = kPolicy, std::uint64_t revision = 1) {
  auto p = rules::parse_policy({{"policy.yaml", text}});
  EXPECT_TRUE(p.has_value());
  rules::CompileOptions o;
  o.revision = revision;
  auto s = rules::compile(*p, o);
  EXPECT_TRUE(s.has_value());
  auto snap = std::make_shared<dp::Snapshot>();
  snap->policy = *s;
  return snap;
}

using Ip4 = std::array<std::uint8_t, 4>;
const Ip4 A1{10, 1, 0, 1}, B5{10, 2, 0, 5}, R5{10, 3, 0, 5};
constexpr std::uint8_t SYN = 0x02, PSH = 0x08, ACK = 0x10;
constexpr std::uint32_t kIsn = 0x7ffffff0;  // the client's stream crosses 2^31: sequence maths

Bytes tcp(Ip4 src, Ip4 dst, std::uint16_t sport, std::uint16_t dport, std::uint8_t flags,
          std::uint32_t seq, const std::string& data = {}) {
  PacketBuilder b;
  b.eth().ipv4({.src = src, .dst = dst}).tcp({.sport = sport, .dport = dport, .flags = flags});
  if (!data.empty()) b.raw(59, Bytes(data.begin(), data.end()));
  Bytes f = b.build();
  const std::size_t at = b.offset(2) + 4;
  for (int i = 0; i < 4; ++i) f[at + i] = static_cast<std::uint8_t>(seq >> (24 - 8 * i));
  return f;
}

class L7Pipeline : public ::testing::Test {
 protected:
  void SetUp() override { make({}); }
  void make(dp::L7Config l7, bool prepare = true) {
    dp::PipelineConfig cfg;
    cfg.flows.capacity = 1024;
    cfg.flows.timeouts = dp::make_timeouts(kSecond);
    cfg.replay.packets_per_second = 1e4;
    cfg.frags.capacity = 16;
    cfg.frags.ticks_per_second = kSecond;
    cfg.l7 = l7;
    auto p = Pipeline::create(cfg);
    ASSERT_TRUE(p) << p.error();
    pipe = std::move(*p);
    c = std::make_unique<dp::WorkerCounters>();
    if (prepare) {
      ASSERT_TRUE(pipe->prepare(*snap));
    }
  }
  std::vector<Bytes> run(const std::vector<Bytes>& frames, unsigned port = 0) {
    std::vector<rte_mbuf*> m;
    for (const auto& f : frames) {
      rte_mbuf* b = rte_pktmbuf_alloc(g_pool);
      std::memcpy(rte_pktmbuf_append(b, static_cast<std::uint16_t>(f.size())), f.data(), f.size());
      m.push_back(b);
    }
    const auto keep = pipe->run(m.data(), static_cast<std::uint16_t>(m.size()), port, snap.get(),
                                {static_cast<std::uint64_t>(kNow), kNow}, *c);
    std::vector<Bytes> out;
    for (unsigned i = 0; i < keep; ++i) {
      const auto* p = rte_pktmbuf_mtod(m[i], const std::uint8_t*);
      out.emplace_back(p, p + rte_pktmbuf_pkt_len(m[i]));
      rte_pktmbuf_free(m[i]);
    }
    return out;
  }
  // One packet; whether it left.
  bool pass(const Bytes& f, unsigned port = 0) { return run({f}, port) == std::vector<Bytes>{f}; }
  std::uint64_t drops(DropReason r) const { return c->drops[static_cast<std::size_t>(r)].get(); }

  // Opens a connection from A1:sport to `dst`:dport; returns the client's next sequence number.
  std::uint32_t handshake(std::uint16_t sport, Ip4 dst = B5, std::uint16_t dport = 80) {
    EXPECT_TRUE(pass(tcp(A1, dst, sport, dport, SYN, kIsn)));
    EXPECT_TRUE(pass(tcp(dst, A1, dport, sport, SYN | ACK, 5000), 1));
    EXPECT_TRUE(pass(tcp(A1, dst, sport, dport, ACK, kIsn + 1)));
    return kIsn + 1;
  }
  // A client data segment at stream offset `off` (from the first payload byte).
  Bytes data(std::uint16_t sport, std::uint32_t off, const std::string& s, Ip4 dst = B5,
             std::uint16_t dport = 80) {
    return tcp(A1, dst, sport, dport, PSH | ACK, kIsn + 1 + off, s);
  }

  std::shared_ptr<const dp::Snapshot> snap = snapshot();
  std::unique_ptr<Pipeline> pipe;
  std::unique_ptr<dp::WorkerCounters> c;
};

TEST_F(L7Pipeline, AllowedGetPassesWithItsHandshakeAndReplies) {
  handshake(40000);
  EXPECT_TRUE(pass(data(40000, 0, "GET /index.html HTTP/1.1\r\nHost: b\r\n\r\n")));
  EXPECT_TRUE(pass(tcp(B5, A1, 80, 40000, PSH | ACK, 5001, "HTTP/1.1 200 OK\r\n\r\n"), 1));
  EXPECT_TRUE(pass(data(40000, 37, "", B5, 80)));  // a pure ACK
  EXPECT_EQ(c->dropped_total(), 0u);
  EXPECT_EQ(pipe->l7().stats().opened, 1u);
}

TEST_F(L7Pipeline, PostIsDeniedAndTheFlowIsCutBothWays) {
  handshake(40001);
  EXPECT_FALSE(pass(data(40001, 0, "POST /form HTTP/1.1\r\n\r\n")));
  EXPECT_FALSE(pass(tcp(B5, A1, 80, 40001, ACK, 5001), 1));
  EXPECT_FALSE(pass(data(40001, 0, "GET / HTTP/1.1\r\n\r\n")));  // no second try on this flow
  EXPECT_EQ(drops(DropReason::policy_l7_deny), 3u);
  EXPECT_EQ(c->dropped_total(), 3u);
  EXPECT_EQ(pipe->l7().in_use(), 0u);
  // A new connection is decided afresh.
  handshake(40002);
  EXPECT_TRUE(pass(data(40002, 0, "HEAD / HTTP/1.0\r\n\r\n")));
}

TEST_F(L7Pipeline, DenyPatternSplitAcrossTwoSegmentsIsFound) {
  handshake(40003);
  const std::string a = "GET / HTTP/1.1\r\nReferer: /etc/pa", b = "sswd\r\n\r\n";
  EXPECT_TRUE(pass(data(40003, 0, a)));
  EXPECT_FALSE(pass(data(40003, static_cast<std::uint32_t>(a.size()), b)));
  EXPECT_EQ(drops(DropReason::policy_l7_deny), 1u);
  // Split inside the request line itself: the partial line passes, the completing one does not.
  handshake(40004);
  EXPECT_TRUE(pass(data(40004, 0, "GET /a/.")));
  EXPECT_FALSE(pass(data(40004, 8, "./b HTTP/1.1\r\n\r\n")));
  EXPECT_EQ(drops(DropReason::policy_l7_deny), 2u);
}

TEST_F(L7Pipeline, ReorderedSegmentsCannotHideADenyPattern) {
  handshake(40005);
  const std::string a = "GET / HTTP/1.1\r\nX: ..", b = "/x\r\n\r\n";
  const auto second = data(40005, static_cast<std::uint32_t>(a.size()), b);
  EXPECT_FALSE(pass(second));  // ahead of the stream: dropped, the sender will retransmit
  EXPECT_EQ(drops(DropReason::l7_out_of_order), 1u);
  EXPECT_TRUE(pass(data(40005, 0, a)));
  EXPECT_FALSE(pass(second));  // in order now, and the pattern is whole
  EXPECT_EQ(drops(DropReason::policy_l7_deny), 1u);
}

TEST_F(L7Pipeline, OneByteSegmentsGiveTheSameVerdictAsOneSegment) {
  const std::string req = "GET /x HTTP/1.1\r\nA: ../\r\n\r\n";
  handshake(40006);
  EXPECT_FALSE(pass(data(40006, 0, req)));
  handshake(40007);
  std::size_t passed = 0;
  while (passed < req.size() &&
         pass(data(40007, static_cast<std::uint32_t>(passed), req.substr(passed, 1))))
    ++passed;
  EXPECT_EQ(passed, req.find("../") + 2);  // the byte that completes "../" is the one dropped
  EXPECT_EQ(drops(DropReason::policy_l7_deny), 2u);
}

TEST_F(L7Pipeline, RetransmissionMustRepeatTheBytesAlreadyInspected) {
  handshake(40008);
  const std::string a = "GET /ok HTTP/1.1\r\n";
  EXPECT_TRUE(pass(data(40008, 0, a)));
  EXPECT_TRUE(pass(data(40008, 0, a)));  // an honest retransmission
  EXPECT_FALSE(pass(data(40008, 0, "GET /../ HTTP/1.1\r\n")));  // the same bytes, rewritten
  EXPECT_EQ(drops(DropReason::policy_l7_deny), 1u);
}

TEST_F(L7Pipeline, RequestLineNotWholeWithinTheBoundIsDenied) {
  make({.flows = 16, .bound = 128});
  handshake(40009);
  const std::string head = "GET /" + std::string(95, 'a');  // 100 bytes, no line end yet
  EXPECT_TRUE(pass(data(40009, 0, head)));
  EXPECT_FALSE(pass(data(40009, 100, std::string(40, 'b') + " HTTP/1.1\r\n")));
  EXPECT_EQ(drops(DropReason::policy_l7_deny), 1u);
  // Malformed: a line without the HTTP version is denied as soon as it ends.
  handshake(40010);
  EXPECT_FALSE(pass(data(40010, 0, "GET /x\r\n")));
  EXPECT_EQ(drops(DropReason::policy_l7_deny), 2u);
}

TEST_F(L7Pipeline, BytesBeyondTheBoundAreNotInspected) {
  make({.flows = 16, .bound = 128});
  handshake(40011);
  const std::string line = "GET / HTTP/1.1\r\n";
  EXPECT_TRUE(pass(data(40011, 0, line + std::string(128 - line.size(), 'h'))));
  EXPECT_EQ(pipe->l7().stats().finished, 1u);
  EXPECT_EQ(pipe->l7().in_use(), 0u);
  EXPECT_TRUE(pass(data(40011, 128, "/etc/passwd")));  // documented limit: past the bound
  EXPECT_EQ(c->dropped_total(), 0u);
}

TEST_F(L7Pipeline, FullStatePoolRefusesNewL7FlowsOnly) {
  make({.flows = 1});
  handshake(40012);
  EXPECT_FALSE(pass(tcp(A1, B5, 40013, 80, SYN, kIsn)));
  EXPECT_EQ(drops(DropReason::l7_pool_full), 1u);
  handshake(40014, B5, 8080);  // no L7 on this rule: unaffected
  // The first flow finishes (cut by a deny): its state returns and a new flow fits.
  EXPECT_FALSE(pass(data(40012, 0, "DELETE / HTTP/1.1\r\n")));
  handshake(40013);
  EXPECT_EQ(drops(DropReason::l7_pool_full), 1u);
}

TEST_F(L7Pipeline, WithoutPreparedScratchL7FlowsAreRefusedNotPassed) {
  make({}, /*prepare=*/false);
  EXPECT_FALSE(pass(tcp(A1, B5, 40015, 80, SYN, kIsn)));
  EXPECT_EQ(drops(DropReason::l7_not_ready), 1u);
  handshake(40016, B5, 8080);
  ASSERT_TRUE(pipe->prepare(*snap));
  handshake(40015);
}

TEST_F(L7Pipeline, AuditSegmentCountsTheWouldDenyAndPasses) {
  handshake(40017, R5);
  EXPECT_TRUE(pass(data(40017, 0, "POST / HTTP/1.1\r\n\r\n", R5)));
  EXPECT_EQ(pipe->l7().stats().audited, 1u);
  EXPECT_EQ(c->dropped_total(), 0u);
}

TEST_F(L7Pipeline, PolicyThatAddsL7ToALiveUninspectedFlowCutsIt) {
  handshake(40018, B5, 8080);
  EXPECT_TRUE(pass(data(40018, 0, "POST / HTTP/1.1\r\n\r\n", B5, 8080)));
  std::string text = kPolicy;
  text.replace(text.find("action: allow}"), 14,
               "action: allow, l7: {methods: [GET]}}");  // rule 40 gains L7
  ASSERT_NE(text.find("ports: [8080], action: allow, l7"), std::string::npos);
  snap = snapshot(text, 2);
  ASSERT_TRUE(pipe->prepare(*snap));
  EXPECT_FALSE(pass(data(40018, 19, "x", B5, 8080)));
  EXPECT_EQ(drops(DropReason::policy_l7_deny), 1u);
}

TEST_F(L7Pipeline, ScratchIsHandedOverAcrossManySnapshotsWithoutLeaks) {
  for (std::uint64_t rev = 2; rev < 40; ++rev) {
    snap = snapshot(kPolicy, rev);
    ASSERT_TRUE(pipe->prepare(*snap));
    const auto port = static_cast<std::uint16_t>(41000 + rev);
    handshake(port);
    EXPECT_TRUE(pass(data(port, 0, "GET / HTTP/1.1\r\n\r\n")));
  }
  EXPECT_EQ(c->dropped_total(), 0u);
}

}  // namespace
