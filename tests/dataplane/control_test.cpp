// The control API against a real worker loop: worker_main on lcore 1 polling two ring ports
// (rte_eth_from_rings: the test feeds each port's RX ring and reads its TX ring), commands
// through the worker's mailbox — flush and dump with filters, reset counters, stage timing,
// trace (including a full trace ring) — and a worker that does not answer.
#include <gtest/gtest.h>

#include <rte_eal.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "eal_test_env.hpp"
#include "packet_builder.hpp"
#include "zt/dataplane/control.hpp"
#include "zt/dataplane/pipeline.hpp"
#include "zt/dataplane/worker.hpp"
#include "zt/rules/policy.hpp"
#include "zt/rules/snapshot.hpp"

namespace {

using namespace zt;
using namespace std::chrono_literals;
using rules::DropReason;
using test::Bytes;
using test::PacketBuilder;

rte_mempool* g_pool = nullptr;
rte_ring* g_rx[2] = {};  // what the worker receives on port 0 / 1
rte_ring* g_tx[2] = {};  // what it sends out of port 0 / 1
std::uint16_t g_port[2] = {};
unsigned g_worker_lcore = 0;

// EAL on two lcores (the test drives a real worker on the second) and two ring-backed ports.
class EalEnvironment : public test::EalEnvironment {
 public:
  EalEnvironment()
      : test::EalEnvironment({.program = "control_test", .lcores = "0-1", .memory_mb = "256", .mbufs = 4095},
                             &g_pool) {}

 protected:
  void after_init() override {
    g_worker_lcore = rte_get_next_lcore(-1, 1, 0);
    ASSERT_LT(g_worker_lcore, RTE_MAX_LCORE) << "EAL gave no worker lcore";
    for (int p = 0; p < 2; ++p) {
      const std::string n = "ct" + std::to_string(p);
      g_rx[p] = rte_ring_create((n + "_rx").c_str(), 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
      g_tx[p] = rte_ring_create((n + "_tx").c_str(), 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
      ASSERT_TRUE(g_rx[p] && g_tx[p]);
      const int id = rte_eth_from_rings(n.c_str(), &g_rx[p], 1, &g_tx[p], 1, 0);
      ASSERT_GE(id, 0);
      g_port[p] = static_cast<std::uint16_t>(id);
      rte_eth_conf conf{};
      ASSERT_EQ(rte_eth_dev_configure(g_port[p], 1, 1, &conf), 0);
      ASSERT_EQ(rte_eth_rx_queue_setup(g_port[p], 0, 1024, 0, nullptr, g_pool), 0);
      ASSERT_EQ(rte_eth_tx_queue_setup(g_port[p], 0, 1024, 0, nullptr), 0);
      ASSERT_EQ(rte_eth_dev_start(g_port[p]), 0);
    }
  }
};
const auto* const g_env = ::testing::AddGlobalTestEnvironment(new EalEnvironment);

const char* kPolicy = R"(
identities:
  - {id: 1001, name: web, labels: {app: web}}
segments:
  - {name: zone-a, prefixes: [10.1.0.0/24], labels: {zone: a}}
  - {name: zone-b, prefixes: [10.2.0.0/24], labels: {zone: b}}
rules:
  - {id: 20, name: legacy-dns, from: {segments: [zone-a]}, to: {segments: [zone-b]}, proto: udp, ports: [53], action: allow}
  - {id: 30, name: no-telnet, from: {segments: [zone-a]}, to: {segments: [zone-b]}, proto: tcp, ports: [23], action: deny}
)";

std::shared_ptr<const dp::Snapshot> snapshot() {
  auto p = rules::parse_policy({{"policy.yaml", kPolicy}});
  EXPECT_TRUE(p.has_value());
  rules::CompileOptions o;
  o.revision = 7;
  auto s = rules::compile(*p, o);
  EXPECT_TRUE(s.has_value());
  auto snap = std::make_shared<dp::Snapshot>();
  snap->policy = *s;
  return snap;
}

std::array<std::uint8_t, 4> v4(int a, int b, int c, int d) {
  return {static_cast<std::uint8_t>(a), static_cast<std::uint8_t>(b), static_cast<std::uint8_t>(c),
          static_cast<std::uint8_t>(d)};
}
const auto A1 = v4(10, 1, 0, 1), A2 = v4(10, 1, 0, 2), B5 = v4(10, 2, 0, 5);

Bytes udp(std::array<std::uint8_t, 4> src, std::array<std::uint8_t, 4> dst, std::uint16_t sport, std::uint16_t dport) {
  return PacketBuilder{}.eth().ipv4({.src = src, .dst = dst}).udp({.sport = sport, .dport = dport}).payload(20).build();
}
Bytes syn(std::array<std::uint8_t, 4> src, std::array<std::uint8_t, 4> dst, std::uint16_t sport, std::uint16_t dport) {
  return PacketBuilder{}.eth().ipv4({.src = src, .dst = dst}).tcp({.sport = sport, .dport = dport, .flags = 0x02}).build();
}

rules::IpAddress addr(std::array<std::uint8_t, 4> a) {
  rules::IpAddress r;
  std::memcpy(r.bytes.data(), a.data(), 4);
  return r;
}

class ControlTest : public ::testing::Test {
 protected:
  void SetUp() override { make(dp::ControlConfig{}); }
  void TearDown() override { stop(); drain(); }

  void make(dp::ControlConfig cfg) {
    static int instance = 0;
    cfg.name = "ct" + std::to_string(++instance);
    dp::PipelineConfig pc;
    pc.flows.capacity = 40000;  // more entries than one step of a flow-table walk
    pc.flows.timeouts = dp::make_timeouts(rte_get_tsc_hz());
    pc.replay.packets_per_second = 1e5;
    auto p = dp::Pipeline::create(pc);
    ASSERT_TRUE(p) << p.error();
    pipe = std::move(*p);
    counters = std::make_unique<dp::WorkerCounters>();
    ch = std::move(*dp::SnapshotChannel::create(1));
    const dp::ControlWorker w{g_worker_lcore, 0, counters.get()};
    auto c = dp::Control::create(*ch, {&w, 1}, cfg);
    ASSERT_TRUE(c) << c.error();
    control = std::move(*c);
    control->publish(snapshot());
    ctx.lcore = g_worker_lcore;
    ctx.queue = 0;
    ctx.port_id[0] = g_port[0];
    ctx.port_id[1] = g_port[1];
    ctx.counters = counters.get();
    ctx.pipeline = pipe.get();
    ctx.snapshots = ch.get();
    ctx.mailbox = &control->mailbox(0);
    ctx.stop = &stop_flag;
  }
  void start() {
    stop_flag.store(false);
    ASSERT_EQ(rte_eal_remote_launch(dp::worker_main, &ctx, g_worker_lcore), 0);
    running = true;
  }
  void stop() {
    if (!running) return;
    stop_flag.store(true);
    rte_eal_wait_lcore(g_worker_lcore);
    running = false;
  }
  static void drain() {
    void* b[64];
    for (auto* r : {g_rx[0], g_rx[1], g_tx[0], g_tx[1]}) {
      unsigned k;
      while ((k = rte_ring_dequeue_burst(r, b, 64, nullptr)) != 0) rte_pktmbuf_free_bulk(reinterpret_cast<rte_mbuf**>(b), k);
    }
  }
  // Hands frames to port `port`'s RX and waits until the worker has received them all.
  void send(const std::vector<Bytes>& frames, unsigned port = 0) {
    const std::uint64_t want = counters->rx_packets[port].get() + frames.size();
    for (const auto& f : frames) {
      rte_mbuf* m = rte_pktmbuf_alloc(g_pool);
      ASSERT_NE(m, nullptr);
      std::memcpy(rte_pktmbuf_append(m, static_cast<std::uint16_t>(f.size())), f.data(), f.size());
      ASSERT_EQ(rte_ring_enqueue(g_rx[port], m), 0);
    }
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (counters->rx_packets[port].get() < want) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the worker did not receive the frames";
      std::this_thread::sleep_for(100us);
    }
  }
  // Frames that left through port `port`.
  static unsigned sent(unsigned port) {
    void* b[64];
    unsigned n = 0, k;
    while ((k = rte_ring_dequeue_burst(g_tx[port], b, 64, nullptr)) != 0) {
      n += k;
      rte_pktmbuf_free_bulk(reinterpret_cast<rte_mbuf**>(b), k);
    }
    return n;
  }
  std::vector<dp::FlowRecord> flows(const dp::FlowFilter& f = {}) {
    auto d = control->dump_flows(f, 100);
    EXPECT_TRUE(d) << d.error();
    return d ? d->flows : std::vector<dp::FlowRecord>{};
  }

  std::unique_ptr<dp::Pipeline> pipe;
  std::unique_ptr<dp::WorkerCounters> counters;
  std::unique_ptr<dp::SnapshotChannel> ch;
  std::unique_ptr<dp::Control> control;
  dp::WorkerContext ctx;
  std::atomic<bool> stop_flag{false};
  bool running = false;
};

TEST_F(ControlTest, FlushWithAFilterRemovesOnlyTheMatchingFlows) {
  start();
  send({udp(A1, B5, 1000, 53), udp(A1, B5, 1001, 53), udp(A2, B5, 1000, 53)});
  ASSERT_EQ(flows().size(), 3u);

  auto n = control->flush_flows({.address = addr(A2)});
  ASSERT_TRUE(n) << n.error();
  EXPECT_EQ(*n, 1u);
  auto left = flows();
  ASSERT_EQ(left.size(), 2u);
  for (const auto& f : left) EXPECT_EQ(std::memcmp(f.src.data(), A1.data(), 4), 0);

  n = control->flush_flows({.port = 1001});
  ASSERT_TRUE(n) << n.error();
  EXPECT_EQ(*n, 1u);
  left = flows();
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].sport, 1000);

  n = control->flush_flows({.identity = 12345});  // nobody
  ASSERT_TRUE(n) << n.error();
  EXPECT_EQ(*n, 0u);
  EXPECT_EQ(flows().size(), 1u);

  // A flushed flow's next packet is a new flow again: decided and admitted anew.
  send({udp(A2, B5, 1000, 53)});
  EXPECT_EQ(counters->new_flows.get(), 4u);
  n = control->flush_flows();
  ASSERT_TRUE(n) << n.error();
  EXPECT_EQ(*n, 2u);
  EXPECT_TRUE(flows().empty());
}

TEST_F(ControlTest, DumpFlowsIsBoundedAndReportsEachFlowFromItsInitiator) {
  start();
  send({udp(A1, B5, 2000, 53), udp(A1, B5, 2001, 53), udp(A1, B5, 2002, 53)});
  send({udp(B5, A1, 53, 2000)}, 1);  // a reply
  auto d = control->dump_flows({}, 2);
  ASSERT_TRUE(d) << d.error();
  EXPECT_EQ(d->flows.size(), 2u);
  EXPECT_TRUE(d->truncated);
  auto one = flows({.port = 2000});
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(std::memcmp(one[0].src.data(), A1.data(), 4), 0);
  EXPECT_EQ(std::memcmp(one[0].dst.data(), B5.data(), 4), 0);
  EXPECT_EQ(one[0].sport, 2000);
  EXPECT_EQ(one[0].dport, 53);
  EXPECT_EQ(one[0].proto, 17);
  EXPECT_EQ(one[0].rule_id, 20u);
  EXPECT_EQ(one[0].revision, 7u);
  EXPECT_EQ(one[0].packets_out, 1u);
  EXPECT_EQ(one[0].packets_back, 1u);
  EXPECT_FALSE(control->dump_flows({}, 10)->truncated);
}

TEST_F(ControlTest, ResetCountersIsDoneByTheWorkerAndCountingStartsAgain) {
  start();
  send({udp(A1, B5, 3000, 53), udp(A1, B5, 3001, 53), syn(A1, B5, 3002, 23)});
  auto s = control->counters();
  EXPECT_EQ(s.rx_total(), 3u);
  EXPECT_EQ(s.drops(DropReason::policy_deny), 1u);
  ASSERT_FALSE(s.rules().empty());
  ASSERT_TRUE(control->reset_counters());
  s = control->counters();
  EXPECT_EQ(s.rx_total(), 0u);
  EXPECT_EQ(s.tx_total(), 0u);
  EXPECT_EQ(s.dropped_total(), 0u);
  EXPECT_TRUE(s.rules().empty());
  EXPECT_EQ(s.identity_class(dp::IdentityClass::segment).packets, 0u);
  send({udp(A1, B5, 3000, 53), udp(A1, B5, 3000, 53)});
  s = control->counters();
  EXPECT_EQ(s.rx_total(), 2u);
  ASSERT_EQ(s.rules().size(), 1u);
  EXPECT_EQ(s.rules()[0].id, 20u);
  EXPECT_EQ(s.rules()[0].packets_forwarded, 2u);
  EXPECT_EQ(s.rules()[0].flows_admitted, 0u);  // the flow survived the reset; only counts went
}

TEST_F(ControlTest, StageTimingIsSwitchedOnAndOffThroughTheMailbox) {
  start();
  send({udp(A1, B5, 4000, 53)});
  auto s = control->counters();
  for (const auto& st : s.workers[0].stages) EXPECT_EQ(st.calls, 0u);
  ASSERT_TRUE(control->set_stage_timing(true));
  std::vector<Bytes> eight;
  for (std::uint16_t k = 0; k < 8; ++k) eight.push_back(udp(A1, B5, static_cast<std::uint16_t>(4100 + k), 53));
  send(eight);
  // rx is counted inside the pipeline: wait for the transmit that follows it.
  for (auto deadline = std::chrono::steady_clock::now() + 5s; counters->tx_packets[1].get() < 9;)
    ASSERT_LT(std::chrono::steady_clock::now(), deadline);
  ASSERT_TRUE(control->set_stage_timing(false));  // answered after the burst's loop iteration
  s = control->counters();
  const auto& st = s.workers[0].stages;
  for (auto k : {dp::Stage::parse, dp::Stage::lookup, dp::Stage::classify, dp::Stage::verify, dp::Stage::finish, dp::Stage::tx}) {
    EXPECT_EQ(st[static_cast<std::size_t>(k)].packets, 8u) << dp::to_string(k);
    EXPECT_GE(st[static_cast<std::size_t>(k)].calls, 1u) << dp::to_string(k);
    EXPECT_GT(st[static_cast<std::size_t>(k)].cycles, 0u) << dp::to_string(k);
  }
  send(eight);
  const auto after = control->counters().workers[0].stages;
  for (std::size_t k = 0; k < dp::kStageCount; ++k) EXPECT_EQ(after[k].cycles, st[k].cycles);
  EXPECT_EQ(sent(1), 17u);
}

TEST_F(ControlTest, TraceRecordsTheNextPacketsWithTheirDecisionsThenStops) {
  start();
  ASSERT_TRUE(control->trace(3));
  send({udp(A1, B5, 5000, 53), syn(A1, B5, 5001, 23), udp(A1, B5, 5002, 53), udp(A1, B5, 5003, 53)});
  send({udp(A1, B5, 5004, 53)});
  std::vector<dp::TraceRecord> t;
  for (auto deadline = std::chrono::steady_clock::now() + 5s; t.size() < 3;) {
    control->drain_trace(t);
    ASSERT_LT(std::chrono::steady_clock::now(), deadline);
  }
  control->drain_trace(t);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0].seq, 1u);
  EXPECT_EQ(t[0].port, 0);
  EXPECT_EQ(std::memcmp(t[0].src.data(), A1.data(), 4), 0);
  EXPECT_EQ(std::memcmp(t[0].dst.data(), B5.data(), 4), 0);
  EXPECT_EQ(t[0].sport, 5000);
  EXPECT_EQ(t[0].dport, 53);
  EXPECT_EQ(t[0].proto, 17);
  EXPECT_EQ(t[0].revision, 7u);
  EXPECT_TRUE(t[0].forwarded());
  EXPECT_EQ(t[0].rule_id, 20u);
  EXPECT_EQ(t[0].cls, dp::IdentityClass::segment);
  EXPECT_TRUE(t[0].steps & dp::kStepClassified);
  EXPECT_TRUE(t[0].steps & dp::kStepAdmitted);
  EXPECT_FALSE(t[1].forwarded());
  EXPECT_EQ(t[1].drop_reason(), DropReason::policy_deny);
  EXPECT_EQ(t[1].rule_id, 30u);
  EXPECT_EQ(t[1].dport, 23);
  EXPECT_EQ(t[2].sport, 5002);
  const auto s = control->counters();
  EXPECT_EQ(s.workers[0].trace_records, 3u);
  EXPECT_EQ(s.workers[0].trace_lost, 0u);
}

TEST_F(ControlTest, AFullTraceRingDropsAndCountsRecordsAndNeverHoldsUpTraffic) {
  dp::ControlConfig cfg;
  cfg.trace_depth = 4;
  make(cfg);
  start();
  ASSERT_TRUE(control->trace(10));
  std::vector<Bytes> ten;
  for (std::uint16_t k = 0; k < 10; ++k) ten.push_back(udp(A1, B5, static_cast<std::uint16_t>(6000 + k), 53));
  send(ten);
  for (auto deadline = std::chrono::steady_clock::now() + 5s; counters->tx_packets[1].get() < 10;)
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "traffic waited for the trace reader";
  const auto s = control->counters();
  EXPECT_EQ(s.workers[0].trace_records, 4u);
  EXPECT_EQ(s.workers[0].trace_lost, 6u);
  std::vector<dp::TraceRecord> t;
  EXPECT_EQ(control->drain_trace(t), 4u);
  ASSERT_EQ(t.size(), 4u);
  EXPECT_EQ(t[3].seq, 4u);
  EXPECT_NE(dp::format_counters(s).find("6 lost"), std::string::npos);
}

TEST_F(ControlTest, AWorkerThatDoesNotAnswerIsNamedAndItsLateAnswerIsHarmless) {
  dp::ControlConfig cfg;
  cfg.mailbox_depth = 2;
  make(cfg);
  // The worker is not running: nobody drains the mailbox.
  auto r = control->reset_counters(30ms);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("worker 0 (lcore " + std::to_string(g_worker_lcore) + ") did not answer"), std::string::npos)
      << r.error();
  EXPECT_NE(r.error().find("reset counters"), std::string::npos) << r.error();
  // A dump's buffer must outlive the wait: the worker writes it whenever it gets there.
  auto d = control->dump_flows({}, 50, 30ms);
  ASSERT_FALSE(d);
  auto full = control->set_stage_timing(true, 30ms);
  ASSERT_FALSE(full);
  EXPECT_NE(full.error().find("takes no more"), std::string::npos) << full.error();

  start();
  for (auto deadline = std::chrono::steady_clock::now() + 5s; control->mailbox(0).done() < 2;)
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the late commands were never answered";
  send({udp(A1, B5, 7000, 53)});
  auto n = control->flush_flows({}, 2000ms);  // answered after the two late ones
  ASSERT_TRUE(n) << n.error();
  EXPECT_EQ(*n, 1u);
  EXPECT_EQ(control->counters().workers[0].commands, 3u);
  EXPECT_FALSE(pipe->stage_timing());  // the refused command never reached the worker
}

}  // namespace

TEST_F(ControlTest, ShorterUdpTimeoutSetLiveAgesAUdpFlowOutAfterItAndNotBefore) {
  start();
  const std::uint64_t hz = rte_get_tsc_hz();
  // The table starts with the default 60 s UDP timeout; 0.5 s from now on, other protocols as before.
  const dp::FlowTimeouts t = dp::make_timeouts(hz, 20, 1800, 10, 0.5, 30, 60);
  auto r = control->set_flow_timeouts(t);
  ASSERT_TRUE(r) << r.error();
  ASSERT_TRUE(control->flow_timeouts().has_value());
  EXPECT_EQ(control->flow_timeouts()->udp, hz / 2);

  const auto t0 = std::chrono::steady_clock::now();
  send({udp(A1, B5, 3000, 53)});
  ASSERT_EQ(flows().size(), 1u) << "the flow must outlive the first dump (its timeout is 0.5 s)";
  std::chrono::steady_clock::duration gone{};
  while (true) {
    std::this_thread::sleep_for(20ms);
    if (flows().empty()) {
      gone = std::chrono::steady_clock::now() - t0;
      break;
    }
    ASSERT_LT(std::chrono::steady_clock::now() - t0, 5s) << "the UDP flow never idled out after 0.5 s";
  }
  EXPECT_GE(gone, 500ms) << "the flow went before its 0.5 s idle timeout";
  // Its next packet is a new flow, decided anew.
  send({udp(A1, B5, 3000, 53)});
  EXPECT_EQ(counters->new_flows.get(), 2u);
  EXPECT_EQ(pipe->flows().timeouts().udp, hz / 2);
  EXPECT_EQ(pipe->flows().timeouts().tcp_established, 1800 * hz);
}

TEST_F(ControlTest, FlowTimeoutsAreValidatedAndAWorkerThatDoesNotAnswerIsNamed) {
  dp::FlowTimeouts t = dp::make_timeouts(rte_get_tsc_hz());
  t.icmp = 0;
  auto r = control->set_flow_timeouts(t);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("the icmp timeout is 0 ticks"), std::string::npos) << r.error();
  EXPECT_FALSE(control->flow_timeouts().has_value()) << "a refused change is not recorded";

  t.icmp = 5 * rte_get_tsc_hz();  // the worker is not running yet: it cannot answer
  r = control->set_flow_timeouts(t, 50ms);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("set flow timeouts"), std::string::npos) << r.error();
  EXPECT_NE(r.error().find("worker 0 (lcore"), std::string::npos) << r.error();
  start();  // the late worker applies it once it runs
  r = control->set_flow_timeouts(t);
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(pipe->flows().timeouts().icmp, 5 * rte_get_tsc_hz());
}
