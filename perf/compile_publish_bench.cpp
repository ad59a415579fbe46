// Compile and publish a 10k-rule policy while workers forward (issue 7, "Figures").
//
// Worker lcores run the dataplane's worker loop (the same calls as dp::worker_main: acquire the
// snapshot, rte_eth_rx_burst, Pipeline::run, transmit_burst, age when idle, quiescent) plus one
// TSC read per iteration to record the longest gap between two consecutive iterations. Each
// worker forwards UDP flows that circulate forever through in-memory net_ring ports: port A's RX
// queue w and port B's TX queue w are the same ring, so every packet forwarded A→B comes back on
// A. The flows come from an untagged source segment that a rule allows, so every packet is
// decided by the policy (established flows; re-evaluated at once after each new revision).
//
// Meanwhile the control thread (the main lcore, as in ztgate), per run: generates a policy of
// --rules rules (rules_bench's shape: identities, segments, ports, allow/deny) plus the rule that
// allows the bench flows, parses and validates it (zt::rules::parse_policy), compiles it
// (zt::rules::compile), and publishes it (SnapshotChannel::publish: atomic swap, then the RCU
// wait until every worker passed a quiescent state, then the old snapshot is freed). It reports
// parse, compile and publish times and the longest worker gap during the run, beside the
// longest gap in an equally long window with no control work (the baseline: what the machine's
// own scheduling noise costs), median and spread over --runs runs.
//
// Exit 1 if a worker dropped a packet or stopped forwarding (the policy must keep the flows).
//
// Usage: compile_publish_bench [--quick] [--runs N] [--rules N] [--workers N]
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_udp.h>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "zt/dataplane/pipeline.hpp"
#include "zt/dataplane/snapshot.hpp"
#include "zt/dataplane/worker.hpp"
#include "zt/rules/policy.hpp"
#include "zt/rules/snapshot.hpp"

namespace {

using namespace zt;
using Clock = std::chrono::steady_clock;

constexpr unsigned kFlowsPerWorker = 64;
constexpr unsigned kPacketsPerWorker = 512;  // circulating; the loop ring holds 1024
constexpr std::uint16_t kBenchPort = 5000;
constexpr double kStallUs = 50.0;  // the bound on a worker stall

// The worker's probe: one writer (the worker) for max_gap/seen/iterations, the control thread
// writes `window` to start a new measurement window.
struct alignas(64) Probe {
  std::atomic<std::uint64_t> window{0};
  std::atomic<std::uint64_t> seen{0};
  std::atomic<std::uint64_t> max_gap{0};
  std::atomic<std::uint64_t> iterations{0};
  std::atomic<std::uint64_t> stalls{0};  // gaps above kStallUs in the window
  std::uint64_t stall_tsc = 0;           // kStallUs in TSC ticks (set before launch)
};

struct Worker {
  dp::WorkerContext ctx;
  Probe* probe = nullptr;
};

int bench_worker(void* arg) noexcept {
  auto& w = *static_cast<Worker*>(arg);
  auto& ctx = w.ctx;
  auto& c = *ctx.counters;
  rte_mbuf* pkts[dp::kBurst];
  const double ns_per_tick = 1e9 / static_cast<double>(rte_get_tsc_hz());
  std::uint64_t prev = rte_rdtsc(), my_window = ~0ULL, max_gap = 0, iterations = 0, stalls = 0;
  ctx.snapshots->online(ctx.queue);
  while (!ctx.stop->load(std::memory_order_relaxed)) {
    const dp::Snapshot* snap = ctx.snapshots->acquire();
    const std::uint64_t tsc = rte_rdtsc();
    // The probe: the only line that is not dp::worker_main's.
    if (const std::uint64_t win = w.probe->window.load(std::memory_order_relaxed); win != my_window) {
      my_window = win;
      max_gap = stalls = 0;
      w.probe->max_gap.store(0, std::memory_order_relaxed);
      w.probe->stalls.store(0, std::memory_order_relaxed);
      w.probe->seen.store(win, std::memory_order_release);
    } else {
      if (tsc - prev > max_gap) {
        max_gap = tsc - prev;
        w.probe->max_gap.store(max_gap, std::memory_order_relaxed);
      }
      if (tsc - prev > w.probe->stall_tsc) w.probe->stalls.store(++stalls, std::memory_order_relaxed);
    }
    prev = tsc;
    w.probe->iterations.store(++iterations, std::memory_order_relaxed);
    const dp::BurstClock clk{tsc, ctx.base_ns + static_cast<std::int64_t>(static_cast<double>(tsc - ctx.base_tsc) * ns_per_tick)};
    bool idle = true;
    for (unsigned in = 0; in < dp::kMaxPorts; ++in) {
      const unsigned out = in ^ 1U;
      const std::uint16_t n = rte_eth_rx_burst(ctx.port_id[in], ctx.queue, pkts, dp::kBurst);
      if (n == 0) continue;
      idle = false;
      const std::uint16_t keep = ctx.pipeline->run(pkts, n, in, snap, clk, c);
      if (keep != 0) dp::transmit_burst(pkts, keep, ctx.port_id[out], ctx.queue, out, c);
      c.busy_cycles.add(rte_rdtsc() - tsc);
    }
    if (idle) {
      c.idle_polls.inc();
      ctx.pipeline->age(tsc, 64);
    }
    ctx.snapshots->quiescent(ctx.queue);
  }
  ctx.snapshots->offline(ctx.queue);
  return 0;
}

// rules_bench's synthetic shape, plus zone-a/zone-b and the rule that allows the bench flows.
std::string make_policy(std::size_t nrules, std::mt19937& rng) {
  const std::size_t nid = std::max<std::size_t>(64, nrules / 8), nseg = std::max<std::size_t>(64, nrules / 8);
  std::string y = "identities:\n";
  y.reserve(nrules * 120);
  for (std::size_t i = 0; i < nid; ++i) y += fmt::format("  - {{id: {}, name: i{}}}\n", 10000 + i, i);
  y += "segments:\n  - {name: zone-a, prefixes: ['192.168.1.0/24']}\n  - {name: zone-b, prefixes: ['192.168.2.0/24']}\n";
  std::set<std::pair<std::uint32_t, unsigned>> used;
  for (std::size_t n = 0; n < nseg;) {
    const unsigned len = 20 + static_cast<unsigned>(rng() % 13);
    std::uint32_t a = (10U << 24) | (rng() & 0xffffff);
    a &= len == 32 ? ~0U : ~((1U << (32 - len)) - 1);
    if (!used.emplace(a, len).second) continue;
    y += fmt::format("  - {{name: s{}, prefixes: ['{}.{}.{}.{}/{}']}}\n", n++, a >> 24, (a >> 16) & 255, (a >> 8) & 255,
                     a & 255, len);
  }
  y += fmt::format("rules:\n  - {{id: 1, name: bench, from: {{segments: [zone-a]}}, to: {{segments: [zone-b]}}, proto: udp, "
                   "ports: [{}], action: allow}}\n",
                   kBenchPort);
  for (std::size_t r = 1; r < nrules; ++r) {
    const auto shape = rng() % 20;
    const std::string from = shape != 0 ? fmt::format("{{identities: [i{}]}}", rng() % nid) : "any";
    const std::string to = shape != 1 ? fmt::format("{{segments: [s{}]}}", rng() % nseg) : "any";
    std::string ports;
    switch (shape < 2 ? 9 : rng() % 10) {
      case 0: case 1: break;
      case 2: case 3: case 4: {
        const auto lo = 1024 + rng() % 60000;
        ports = fmt::format(", ports: [{}-{}]", lo, lo + rng() % 1000);
        break;
      }
      default: ports = fmt::format(", ports: [{}]", rng() % 2 ? rng() % 1024 : rng() % 65536);
    }
    y += fmt::format("  - {{id: {}, from: {}, to: {}, proto: {}{}, action: {}}}\n", r + 1, from, to,
                     rng() % 3 ? "tcp" : "udp", ports, rng() % 5 ? "allow" : "deny");
  }
  return y;
}

rte_mbuf* udp_frame(rte_mempool* pool, std::uint32_t src, std::uint32_t dst, std::uint16_t sport) {
  rte_mbuf* m = rte_pktmbuf_alloc(pool);
  if (m == nullptr) return nullptr;
  constexpr std::uint16_t kPayload = 64;
  const std::uint16_t len = sizeof(rte_ether_hdr) + sizeof(rte_ipv4_hdr) + sizeof(rte_udp_hdr) + kPayload;
  auto* p = rte_pktmbuf_mtod(m, std::uint8_t*);
  std::memset(p, 0, len);
  auto* eth = reinterpret_cast<rte_ether_hdr*>(p);
  eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
  eth->src_addr.addr_bytes[0] = 0x02;
  eth->dst_addr.addr_bytes[0] = 0x02;
  eth->dst_addr.addr_bytes[5] = 0x01;
  auto* ip = reinterpret_cast<rte_ipv4_hdr*>(eth + 1);
  ip->version_ihl = 0x45;
  ip->total_length = rte_cpu_to_be_16(len - sizeof(rte_ether_hdr));
  ip->time_to_live = 64;
  ip->next_proto_id = IPPROTO_UDP;
  ip->src_addr = rte_cpu_to_be_32(src);
  ip->dst_addr = rte_cpu_to_be_32(dst);
  ip->hdr_checksum = rte_ipv4_cksum(ip);
  auto* udp = reinterpret_cast<rte_udp_hdr*>(ip + 1);
  udp->src_port = rte_cpu_to_be_16(sport);
  udp->dst_port = rte_cpu_to_be_16(kBenchPort);
  udp->dgram_len = rte_cpu_to_be_16(sizeof(rte_udp_hdr) + kPayload);
  m->data_len = m->pkt_len = len;
  return m;
}

struct Stats {
  double median = 0, min = 0, max = 0;
};
Stats stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back()};
}

}  // namespace

int main(int argc, char** argv) {
  unsigned runs = 5, workers = 1;
  std::size_t nrules = 10'000;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      runs = 2;
    } else if (a == "--runs" && i + 1 < argc) {
      runs = static_cast<unsigned>(std::stoul(argv[++i]));
    } else if (a == "--rules" && i + 1 < argc) {
      nrules = std::stoul(argv[++i]);
    } else if (a == "--workers" && i + 1 < argc) {
      workers = static_cast<unsigned>(std::stoul(argv[++i]));
    } else {
      fmt::print(stderr, "usage: compile_publish_bench [--quick] [--runs N] [--rules N] [--workers N]\n");
      return 2;
    }
  }
  runs = std::max(runs, 1U);
  workers = std::clamp(workers, 1U, 8U);
  nrules = std::max<std::size_t>(nrules, 10);

  const std::string lcores = fmt::format("0-{}", workers);
  const char* eal[] = {"compile_publish_bench", "-l", lcores.c_str(), "--no-huge", "--no-pci", "--no-shconf",
                       "-m", "512", "--log-level=lib.*:error"};
  if (rte_eal_init(static_cast<int>(std::size(eal)), const_cast<char**>(eal)) < 0) {
    fmt::print(stderr, "compile_publish_bench: EAL init failed (needs {} cores for --workers {})\n", workers + 1, workers);
    return 1;
  }
  rte_mempool* pool = rte_pktmbuf_pool_create("cpbench", 4096 * workers + 2047, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
  if (pool == nullptr) {
    fmt::print(stderr, "compile_publish_bench: cannot allocate the mbuf pool\n");
    return 1;
  }
  // Port A: RX = loop[w], TX = sink[w]; port B: RX = empty[w], TX = loop[w].
  std::vector<rte_ring*> loop(workers), sink(workers), empty(workers);
  for (unsigned w = 0; w < workers; ++w) {
    loop[w] = rte_ring_create(fmt::format("cp_loop{}", w).c_str(), 1024, 0, 0);
    sink[w] = rte_ring_create(fmt::format("cp_sink{}", w).c_str(), 1024, 0, 0);
    empty[w] = rte_ring_create(fmt::format("cp_empty{}", w).c_str(), 1024, 0, 0);
    if (!loop[w] || !sink[w] || !empty[w]) {
      fmt::print(stderr, "compile_publish_bench: cannot create rings\n");
      return 1;
    }
  }
  const int pa = rte_eth_from_rings("cp_port_a", loop.data(), workers, sink.data(), workers, 0);
  const int pb = rte_eth_from_rings("cp_port_b", empty.data(), workers, loop.data(), workers, 0);
  if (pa < 0 || pb < 0) {
    fmt::print(stderr, "compile_publish_bench: cannot create the net_ring ports\n");
    return 1;
  }
  for (int port : {pa, pb}) {
    rte_eth_conf conf{};
    bool ok = rte_eth_dev_configure(static_cast<std::uint16_t>(port), static_cast<std::uint16_t>(workers),
                                    static_cast<std::uint16_t>(workers), &conf) == 0;
    for (unsigned q = 0; ok && q < workers; ++q)
      ok = rte_eth_rx_queue_setup(static_cast<std::uint16_t>(port), static_cast<std::uint16_t>(q), 1024, 0, nullptr, pool) == 0 &&
           rte_eth_tx_queue_setup(static_cast<std::uint16_t>(port), static_cast<std::uint16_t>(q), 1024, 0, nullptr) == 0;
    if (!ok || rte_eth_dev_start(static_cast<std::uint16_t>(port)) != 0) {
      fmt::print(stderr, "compile_publish_bench: cannot start the net_ring ports\n");
      return 1;
    }
  }

  auto channel = dp::SnapshotChannel::create(workers);
  if (!channel) {
    fmt::print(stderr, "compile_publish_bench: {}\n", channel.error());
    return 1;
  }
  std::mt19937 rng(7);
  std::uint64_t revision = 1;
  auto build = [&](std::size_t n, double* t_parse, double* t_compile) -> std::shared_ptr<dp::Snapshot> {
    const std::string yaml = make_policy(n, rng);
    const auto t0 = Clock::now();
    auto parsed = rules::parse_policy({{"policy.yaml", yaml}});
    const auto t1 = Clock::now();
    if (!parsed) {
      fmt::print(stderr, "compile_publish_bench: generated policy refused: {}\n", rules::format(parsed.error().front()));
      return nullptr;
    }
    auto compiled = rules::compile(*parsed, {.revision = ++revision});
    const auto t2 = Clock::now();
    if (!compiled) {
      fmt::print(stderr, "compile_publish_bench: generated policy does not compile: {}\n", rules::format(compiled.error().front()));
      return nullptr;
    }
    if (t_parse) *t_parse = std::chrono::duration<double, std::milli>(t1 - t0).count();
    if (t_compile) *t_compile = std::chrono::duration<double, std::milli>(t2 - t1).count();
    auto s = std::make_shared<dp::Snapshot>();
    s->policy = std::move(*compiled);
    return s;
  };
  auto first = build(nrules, nullptr, nullptr);
  if (!first) return 1;
  (*channel)->publish(first);
  first.reset();

  std::atomic<bool> stop{false};
  auto counters = std::make_unique<dp::WorkerCounters[]>(workers);
  std::vector<std::unique_ptr<dp::Pipeline>> pipelines;
  std::vector<Worker> ws(workers);
  std::vector<Probe> probes(workers);
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  for (unsigned w = 0; w < workers; ++w) {
    dp::PipelineConfig pc;
    pc.flows.capacity = 4096;
    pc.flows.timeouts = dp::make_timeouts(rte_get_tsc_hz());
    auto p = dp::Pipeline::create(pc);
    if (!p) {
      fmt::print(stderr, "compile_publish_bench: pipeline: {}\n", p.error());
      return 1;
    }
    pipelines.push_back(std::move(*p));
    auto& ctx = ws[w].ctx;
    ctx.queue = static_cast<std::uint16_t>(w);
    ctx.port_id[0] = static_cast<std::uint16_t>(pa);
    ctx.port_id[1] = static_cast<std::uint16_t>(pb);
    ctx.counters = &counters[w];
    ctx.pipeline = pipelines.back().get();
    ctx.snapshots = channel->get();
    ctx.stop = &stop;
    ctx.base_ns = static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
    ctx.base_tsc = rte_rdtsc();
    ws[w].probe = &probes[w];
    probes[w].stall_tsc = static_cast<std::uint64_t>(kStallUs * 1e-6 * static_cast<double>(rte_get_tsc_hz()));
    // Seed the loop: kFlowsPerWorker flows from zone-a to zone-b, kPacketsPerWorker packets.
    for (unsigned i = 0; i < kPacketsPerWorker; ++i) {
      rte_mbuf* m = udp_frame(pool, 0xC0A80100 + 1 + (i % kFlowsPerWorker) % 200, 0xC0A80201,
                              static_cast<std::uint16_t>(10000 + w * 1000 + i % kFlowsPerWorker));
      if (m == nullptr || rte_ring_enqueue(loop[w], m) != 0) {
        fmt::print(stderr, "compile_publish_bench: cannot seed the ring\n");
        return 1;
      }
    }
  }
  unsigned launched = 0;
  unsigned lcore = 0;
  RTE_LCORE_FOREACH_WORKER(lcore) {
    if (launched < workers) rte_eal_remote_launch(bench_worker, &ws[launched++], lcore);
  }

  auto tx_total = [&] {
    std::uint64_t t = 0;
    for (unsigned i = 0; i < workers; ++i) t += counters[i].tx_packets[1].get();
    return t;
  };
  auto drops_total = [&] {
    std::uint64_t t = 0;
    for (unsigned i = 0; i < workers; ++i)
      for (const auto& d : counters[i].drops) t += d.get();
    return t;
  };
  // Start a window on every worker (wait until each saw it), return the start.
  std::uint64_t window = 0;
  auto open_window = [&] {
    ++window;
    for (auto& p : probes) p.window.store(window, std::memory_order_relaxed);
    for (auto& p : probes)
      while (p.seen.load(std::memory_order_acquire) != window) std::this_thread::yield();
  };
  auto stall_count = [&] {
    std::uint64_t n = 0;
    for (auto& p : probes) n += p.stalls.load(std::memory_order_relaxed);
    return static_cast<double>(n);
  };
  auto max_gap_us = [&] {
    std::uint64_t g = 0;
    for (auto& p : probes) g = std::max(g, p.max_gap.load(std::memory_order_relaxed));
    return static_cast<double>(g) * 1e6 / static_cast<double>(rte_get_tsc_hz());
  };

  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // warm up: flows established
  fmt::print("compile_publish_bench: {} rules, {} worker(s) forwarding {} circulating packets each on net_ring, "
             "{} runs (control thread on the main lcore)\n",
             nrules, workers, kPacketsPerWorker, runs);
  fmt::print("(gaps: longest time between two worker loop iterations; stalls/s: gaps above {:.0f} us per second; "
             "baseline: same length, control thread asleep)\n", kStallUs);
  fmt::print("{:>4} {:>9} {:>11} {:>11} {:>12} {:>10} {:>13} {:>12} {:>9}\n", "run", "parse ms", "compile ms", "publish ms",
             "max gap us", "stalls/s", "base gap us", "base stalls/s", "fwd Mpps");
  std::vector<double> parse_ms, compile_ms, publish_ms, gaps, base_gaps, mpps, stalls, base_stalls;
  bool failed = false;
  for (unsigned r = 0; r < runs; ++r) {
    double tp = 0, tc = 0;
    open_window();
    const auto t0 = Clock::now();
    const std::uint64_t tx0 = tx_total();
    auto snap = build(nrules, &tp, &tc);
    if (!snap) return 1;
    const auto t_pub = Clock::now();
    (*channel)->publish(std::move(snap));
    const auto t_end = Clock::now();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // the re-evaluation bursts after the swap
    const double gap = max_gap_us();
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    const double stall_rate = stall_count() / secs;
    const double fwd = static_cast<double>(tx_total() - tx0) / secs / 1e6;
    // Baseline: a window as long, with the control thread asleep.
    open_window();
    const auto base_len = std::min<Clock::duration>(Clock::now() - t0, std::chrono::seconds(5));
    const auto b0 = Clock::now();
    std::this_thread::sleep_for(base_len);
    const double base = max_gap_us();
    const double base_rate = stall_count() / std::chrono::duration<double>(Clock::now() - b0).count();
    const double tpub = std::chrono::duration<double, std::milli>(t_end - t_pub).count();
    parse_ms.push_back(tp), compile_ms.push_back(tc), publish_ms.push_back(tpub), gaps.push_back(gap),
        base_gaps.push_back(base), mpps.push_back(fwd), stalls.push_back(stall_rate), base_stalls.push_back(base_rate);
    fmt::print("{:>4} {:>9.1f} {:>11.1f} {:>11.3f} {:>12.1f} {:>10.1f} {:>13.1f} {:>12.1f} {:>9.2f}\n", r + 1, tp, tc, tpub, gap,
               stall_rate, base, base_rate, fwd);
    if (fwd <= 0.0) failed = true;
  }
  stop.store(true);
  rte_eal_mp_wait_lcore();
  const std::uint64_t drops = drops_total();
  auto row = [](const char* what, const std::vector<double>& v, const char* unit) {
    const auto s = stats(v);
    fmt::print("  {:<34} median {:>9.2f} {}  (min {:.2f}, max {:.2f})\n", what, s.median, unit, s.min, s.max);
  };
  fmt::print("summary over {} runs ({} rules):\n", runs, nrules);
  row("parse + validate", parse_ms, "ms");
  row("compile", compile_ms, "ms");
  row("publish (swap + RCU wait + free)", publish_ms, "ms");
  row("longest worker gap during the run", gaps, "us");
  row("longest worker gap, idle control", base_gaps, "us");
  row("gaps > 50 us per second, run", stalls, "/s");
  row("gaps > 50 us per second, idle control", base_stalls, "/s");
  row("forwarded during the run", mpps, "Mpps");
  const double worst = stats(gaps).max;
  fmt::print("  target: no worker stall above 50 us: {} (worst {:.1f} us; with the control thread asleep the worst "
             "was {:.1f} us: gaps that long are the OS scheduling other work on the worker's CPU)\n",
             worst <= kStallUs ? "met" : "NOT met", worst, stats(base_gaps).max);
  if (drops != 0 || failed) {
    fmt::print(stderr, "compile_publish_bench: FAIL: {} packets dropped, forwarding {}\n", drops,
               failed ? "stopped" : "continued");
    return 1;
  }
  rte_eal_cleanup();
  return 0;
}
