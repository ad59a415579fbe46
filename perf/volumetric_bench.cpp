// Volumetric filtering benchmark (issue 6): in-memory bursts of 32 through the real Pipeline
// (Pipeline::run, no ethdev) on one lcore, with a compiled policy, a key ring and the volumetric
// plan a published snapshot carries.
//
// Scenarios: legitimate tagged UDP flows (established, FULL 64 B inner, a fresh MAC each) alone,
// then with a flood of 10x their packet count mixed into the same bursts (about 3 legit : 29
// flood per burst): untagged UDP from spoofed random sources to a denied port; forged tags from
// one /24 (blocklisted after --vol-mac-fail-pps failures); forged tags from random sources (one
// MAC each, nothing to blocklist); a SYN flood from random sources to a port open to everyone
// (the flow table's watermark refuses it); and the three mixed. Printed per scenario: cycles per
// packet (all packets), Mpps of the mixed stream, and goodput retained (legitimate packets
// forwarded / sent; target >= 95 %). Then the cost of one packet from a blocklisted source
// (a heavy hitter's, dropped before the parser: target <= 60 cycles; a source listed for tag
// failures, refused after the flow lookup: no target) and the per-packet cost of our token bucket beside DPDK's rte_meter
// srTCM, in the same run. Median and spread (min-max) over --runs runs.
//
// Usage: volumetric_bench [--quick] [--runs N] [--legit N] [--only TEXT]
//   --legit: legitimate packets per pass; --only: scenarios whose name contains TEXT
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_mbuf.h>
#include <rte_meter.h>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "packet_builder.hpp"
#include "zt/crypto/keys.hpp"
#include "zt/crypto/mint.hpp"
#include "zt/dataplane/pipeline.hpp"
#include "zt/rules/policy.hpp"
#include "zt/rules/snapshot.hpp"

namespace {

using namespace zt;
using rules::DropReason;
using test::Bytes;
using test::PacketBuilder;

constexpr std::int64_t kNow = (1'800'000'000LL + 300) * 1'000'000'000LL;
constexpr std::uint32_t kWeb = 1001;
constexpr unsigned kLegitFlows = 64;

const char* kPolicy = R"(
identities:
  - {id: 1001, name: web, labels: {app: web}}
segments:
  - {name: everywhere, prefixes: [0.0.0.0/0], labels: {scope: all}}
  - {name: zone-b, prefixes: [10.2.0.0/24], labels: {zone: b}}
rules:
  - {id: 1, name: web-to-b, from: {labels: {app: web}}, to: {segments: [zone-b]}, proto: udp, ports: [5201], action: allow, rate: {pps: 100000000}}
  - {id: 2, name: anyone-9090, from: {segments: [everywhere]}, to: {segments: [zone-b]}, proto: tcp, ports: [9090], action: allow}
)";

std::vector<std::uint8_t> master() { return std::vector<std::uint8_t>(32, 0x42); }
crypto::EpochPolicy epoch_policy() { return {}; }
std::uint64_t epoch_now() { return static_cast<std::uint64_t>((kNow - epoch_policy().origin_ns) / epoch_policy().length_ns); }

std::array<std::uint8_t, 4> v4(std::uint32_t a) {
  return {static_cast<std::uint8_t>(a >> 24), static_cast<std::uint8_t>(a >> 16), static_cast<std::uint8_t>(a >> 8),
          static_cast<std::uint8_t>(a)};
}

struct Minter {
  crypto::Minter m = std::move(*crypto::Minter::create());
  crypto::IdentityKey key;
  std::uint16_t lane = 0;
  Minter() {
    auto sv = crypto::derive_epoch_secret(master(), "bench", epoch_now());
    key = *crypto::derive_identity_key(*sv, kWeb, crypto::Alg::aes256_cmac);
  }
  // `inner` tagged by web, from outer source `outer_src`; `forge`: random MAC.
  Bytes tag(const Bytes& inner, std::uint32_t outer_src, std::int64_t ts, bool forge, std::mt19937_64& rng) {
    const std::span<const std::uint8_t> ip(inner.data() + 14, inner.size() - 14);
    crypto::InnerView view;
    crypto::parse_inner_ip(ip, view);
    crypto::TagFields f;
    f.timestamp_ns = crypto::tag_timestamp(epoch_policy(), epoch_now(), ts);
    f.lane = ++lane;
    crypto::Tag t;
    m.mint(key, f, view, t);
    if (forge)
      for (auto& b : t.mac) b = static_cast<std::uint8_t>(rng());
    crypto::OuterParams o;
    const auto s = v4(outer_src);
    std::copy(s.begin(), s.end(), o.src.begin());
    o.dst = {10, 2, 0, 100};
    std::vector<std::uint8_t> out;
    crypto::build_geneve_packet(o, t, ip, out);
    Bytes frame(inner.begin(), inner.begin() + 12);
    frame.push_back(0x08);
    frame.push_back(0x00);
    frame.insert(frame.end(), out.begin(), out.end());
    return frame;
  }
};

Bytes udp(std::uint32_t src, std::uint32_t dst, std::uint16_t sport, std::uint16_t dport, std::size_t payload = 22) {
  return PacketBuilder{}.eth().ipv4({.src = v4(src), .dst = v4(dst)}).udp({.sport = sport, .dport = dport}).payload(payload).build();
}
Bytes syn(std::uint32_t src, std::uint32_t dst, std::uint16_t sport, std::uint16_t dport) {
  return PacketBuilder{}.eth().ipv4({.src = v4(src), .dst = v4(dst)}).tcp({.sport = sport, .dport = dport, .flags = 0x02}).build();
}

constexpr std::uint32_t kB5 = 0x0a020005, kAgent = 0x0a010064;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
std::string spread(const std::vector<double>& v, int prec = 1) {
  const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
  return fmt::format("{:.{}f} [{:.{}f}-{:.{}f}]", median(v), prec, *lo, prec, *hi, prec);
}

enum class Flood { none, spoofed, forged_one, forged_random, syn, mixed };

struct Bench {
  rte_mempool* pool = nullptr;
  std::unique_ptr<dp::Pipeline> pipe;
  std::shared_ptr<dp::Snapshot> snap;
  dp::WorkerCounters c;
  Minter minter;
  std::mt19937_64 rng{42};
  std::int64_t ts = kNow - 500'000'000;  // tag timestamps: unique, inside the ±1 s window

  Bytes legit(unsigned i) {
    return minter.tag(udp(0x0a090000 + i % kLegitFlows, kB5, static_cast<std::uint16_t>(40000 + i % kLegitFlows), 5201),
                      kAgent, ts++, false, rng);
  }
  Bytes flood(Flood f, unsigned i) {
    if (f == Flood::mixed) f = static_cast<Flood>(1 + i % 4);
    const auto r = static_cast<std::uint32_t>(rng());
    switch (f) {
      case Flood::spoofed: return udp(r | 0x01000000, kB5, static_cast<std::uint16_t>(r >> 7), 53);
      case Flood::forged_one:
        return minter.tag(udp(0x0a0b0000 + (r & 0xff), kB5, static_cast<std::uint16_t>(r), 5201), 0x0a420001, ts++, true, rng);
      case Flood::forged_random:
        return minter.tag(udp(0x0a0b0000 + (r & 0xff), kB5, static_cast<std::uint16_t>(r), 5201), r | 0x01000000, ts++, true, rng);
      case Flood::syn: return syn(r | 0x01000000, kB5, static_cast<std::uint16_t>(r >> 9), 9090);
      default: return {};
    }
  }

  // One pass: `legit_n` legitimate packets and 10x flood, mixed; returns (cycles/packet, legit
  // forwarded fraction).
  std::pair<double, double> pass(Flood f, unsigned legit_n) {
    std::vector<Bytes> frames;
    std::vector<bool> is_legit;
    const unsigned flood_n = f == Flood::none ? 0 : legit_n * 10;
    unsigned li = 0, fi = 0;
    while (li < legit_n || fi < flood_n) {  // 3 legit : 29 flood per burst of 32
      for (unsigned k = 0; k < 32; ++k) {
        const bool take_legit = fi >= flood_n || (li < legit_n && (flood_n == 0 || k % 11 == 0));
        if (take_legit && li < legit_n) frames.push_back(legit(li++)), is_legit.push_back(true);
        else if (fi < flood_n) frames.push_back(flood(f, fi++)), is_legit.push_back(false);
      }
    }
    std::vector<rte_mbuf*> m(frames.size());
    std::vector<rte_mbuf*> sent;
    std::uint64_t cycles = 0, legit_fwd = 0;
    for (std::size_t at = 0; at < m.size(); at += 32) {
      // Filled just before its burst (untimed), as a PMD writes the mbufs it hands over: the
      // pipeline meets warm mbuf headers and data, not 11k frames gone cold since set-up.
      const auto n = static_cast<std::uint16_t>(std::min<std::size_t>(32, m.size() - at));
      for (std::size_t i = at; i < at + n; ++i) {
        m[i] = rte_pktmbuf_alloc(pool);
        std::memcpy(rte_pktmbuf_append(m[i], static_cast<std::uint16_t>(frames[i].size())), frames[i].data(),
                    frames[i].size());
      }
      rte_mbuf* burst[32];
      std::copy(m.begin() + static_cast<long>(at), m.begin() + static_cast<long>(at + n), burst);
      // Which of the burst are legitimate: the pipeline keeps forwarded packets in order.
      const std::uint64_t t0 = rte_rdtsc();
      const auto keep = pipe->run(burst, n, 0, snap.get(), {t0, kNow}, c);
      cycles += rte_rdtsc() - t0;
      for (unsigned k = 0; k < keep; ++k) {
        const auto* d = rte_pktmbuf_mtod(burst[k], const std::uint8_t*);
        legit_fwd += d[23] == 17 && d[36] == 0x14 && d[37] == 0x51;  // decapsulated UDP to 5201
        sent.push_back(burst[k]);
      }
    }
    for (auto* x : sent) rte_pktmbuf_free(x);
    return {static_cast<double>(cycles) / static_cast<double>(m.size()),
            legit_n ? static_cast<double>(legit_fwd) / legit_n : 1.0};
  }
};

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  unsigned runs = 7, legit_n = 1024;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") quick = true, runs = 3, legit_n = 128;
    else if (a == "--runs" && i + 1 < argc) runs = static_cast<unsigned>(std::stoul(argv[++i]));
    else if (a == "--legit" && i + 1 < argc) legit_n = static_cast<unsigned>(std::stoul(argv[++i]));
    else if (a == "--only" && i + 1 < argc) only = argv[++i];
    else {
      fmt::print(stderr, "usage: volumetric_bench [--quick] [--runs N] [--legit N] [--only TEXT]\n");
      return 2;
    }
  }
  const char* eal[] = {"volumetric_bench", "-l", "0", "--no-huge", "--no-pci", "--no-shconf", "-m", "512",
                       "--log-level=lib.*:error"};
  if (rte_eal_init(static_cast<int>(std::size(eal)), const_cast<char**>(eal)) < 0) {
    fmt::print(stderr, "volumetric_bench: EAL init failed\n");
    return 1;
  }
  Bench b;
  b.pool = rte_pktmbuf_pool_create("vb", 65535, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
  dp::PipelineConfig cfg;
  cfg.flows.capacity = 65536;
  cfg.flows.timeouts = dp::make_timeouts(rte_get_tsc_hz());
  cfg.replay.packets_per_second = 4e6;
  auto p = dp::Pipeline::create(cfg);
  if (!b.pool || !p) {
    fmt::print(stderr, "volumetric_bench: set-up failed: {}\n", p ? "mbuf pool" : p.error());
    return 1;
  }
  b.pipe = std::move(*p);
  auto pol = rules::compile(*rules::parse_policy({{"policy.yaml", kPolicy}}), {.revision = 1});
  std::vector<crypto::EpochSecret> svs{*crypto::derive_epoch_secret(master(), "bench", epoch_now())};
  b.snap = std::make_shared<dp::Snapshot>();
  const std::vector<std::uint32_t> ids{kWeb};
  b.snap->keys = *crypto::KeyRing::build(epoch_policy(), svs, ids);
  dp::VolumetricConfig vc;  // defaults: mac failures 1000/s per /24, watermark 90 %
  // Every burst here is full, so after 100 ms the worker would count as behind and shed every
  // new untagged flow (overload_shed): off, so each flood meets the mechanism it is aimed at.
  vc.overload_ms = 0;
  b.snap->volumetric = dp::make_volumetric_plan(vc, pol->get(), 1, rte_get_tsc_hz());
  b.snap->policy = *pol;
  const double hz = static_cast<double>(rte_get_tsc_hz());
  fmt::print("volumetric_bench: TSC {:.2f} GHz, {} runs, {} legitimate packets per pass (+10x flood)\n", hz / 1e9,
             runs, legit_n);
  b.pass(Flood::none, kLegitFlows);  // opens the legitimate flows

  struct Scenario {
    const char* name;
    Flood f;
  };
  const Scenario scenarios[] = {{"legit only (tagged, established)", Flood::none},
                                {"+10x untagged spoofed (denied port)", Flood::spoofed},
                                {"+10x forged tags, one /24", Flood::forged_one},
                                {"+10x forged tags, random sources", Flood::forged_random},
                                {"+10x SYN flood, random sources", Flood::syn},
                                {"+10x mixed (the four above)", Flood::mixed}};
  fmt::print("\n{:<40} {:>24} {:>20} {:>14}\n", "scenario", "cycles/pkt med [min-max]", "Mpps (all pkts)",
             "goodput kept");
  bool ok = true;
  for (const auto& s : scenarios) {
    if (!only.empty() && std::string(s.name).find(only) == std::string::npos) continue;
    std::vector<double> cpp, mpps, good;
    b.pass(s.f, legit_n);  // warm-up, not counted: first touches of table pages fault
    for (unsigned r = 0; r < runs; ++r) {
      const auto [cy, g] = b.pass(s.f, legit_n);
      cpp.push_back(cy);
      mpps.push_back(hz / cy / 1e6);
      good.push_back(100.0 * g);
    }
    fmt::print("{:<40} {:>24} {:>20} {:>13.1f}%\n", s.name, spread(cpp), spread(mpps, 2), median(good));
    ok = ok && median(good) >= 95.0;
  }
  std::string dropped;
  for (std::size_t r = 1; r < rules::kDropReasonCount; ++r)
    if (const auto v = b.c.drops[r].get(); v != 0)
      dropped += fmt::format("{}{} {}", dropped.empty() ? "" : ", ", rules::to_string(static_cast<DropReason>(r)), v);
  fmt::print("\n(drops: {}; blocklist entries added {}; flows in the table {} of {}, admitted {})\n", dropped,
             b.c.blocklist_added.get(), b.pipe->flows().size(), b.pipe->flows().capacity(), b.c.new_flows.get());

  // Cost of one packet from a blocklisted source: whole bursts of it. A heavy hitter's packets
  // are dropped before the parser; a source listed for tag failures keeps its established flows,
  // so its other packets are refused after parse and flow lookup (no MAC, no sketch).
  const auto listed_cost = [&](dp::BlockReason why, std::uint32_t src_addr, const Bytes& f, const char* what) {
    const auto& plan = *b.snap->volumetric;
    const auto src = v4(src_addr);
    b.pipe->volumetric().block(b.pipe->volumetric().source_key(src.data(), 4, plan), why, rte_rdtsc(),
                               rte_get_tsc_hz() * 3600);
    const unsigned n = quick ? 4096 : 32768;
    std::vector<double> cpp;
    for (unsigned r = 0; r < runs; ++r) {
      const std::uint64_t before = b.c.drops[static_cast<std::size_t>(DropReason::blocklisted)].get();
      std::uint64_t cycles = 0;
      for (unsigned at = 0; at < n; at += 32) {
        rte_mbuf* m[32];  // filled just before, untimed (see pass())
        for (auto*& x : m) {
          x = rte_pktmbuf_alloc(b.pool);
          std::memcpy(rte_pktmbuf_append(x, static_cast<std::uint16_t>(f.size())), f.data(), f.size());
        }
        const std::uint64_t t0 = rte_rdtsc();
        b.pipe->run(m, 32, 0, b.snap.get(), {t0, kNow}, b.c);
        cycles += rte_rdtsc() - t0;
      }
      cpp.push_back(static_cast<double>(cycles) / n);
      ok = ok && b.c.drops[static_cast<std::size_t>(DropReason::blocklisted)].get() - before == n;
    }
    fmt::print("{}, per packet (incl. mbuf free): {} cycles\n", what, spread(cpp));
  };
  fmt::print("\n");
  listed_cost(dp::BlockReason::heavy_hitter, 0x0a630001, udp(0x0a630001, kB5, 1, 53),
              "blocklisted source (heavy hitter: before the parser; target <= 60)");
  listed_cost(dp::BlockReason::tag_failures, 0x0a640001,
              b.minter.tag(udp(0x0a0b0001, kB5, 7, 5201), 0x0a640001, b.ts++, true, b.rng),
              "blocklisted source (tag failures: new flows refused after the flow lookup), forged tag");

  // Meter cost: our (identity, rate class) bucket vs rte_meter srTCM, one call per packet.
  {
    const auto& plan = *b.snap->volumetric;
    dp::Volumetric& vol = b.pipe->volumetric();
    rte_meter_srtcm_params prm{.cir = 1'000'000'000, .cbs = 1 << 20, .ebs = 1 << 20};
    rte_meter_srtcm_profile prof;
    rte_meter_srtcm_profile_config(&prof, &prm);
    std::vector<rte_meter_srtcm> m(64);
    for (auto& x : m) rte_meter_srtcm_config(&x, &prof);
    const unsigned n = quick ? 100'000 : 2'000'000;
    std::vector<double> ours, dpdk;
    unsigned green = 0, pass = 0;
    for (unsigned r = 0; r < runs; ++r) {
      std::uint64_t t0 = rte_rdtsc();
      for (unsigned i = 0; i < n; ++i) pass += vol.meter_consume(kWeb + (i & 63), 0, 64, plan, rte_rdtsc());
      ours.push_back(static_cast<double>(rte_rdtsc() - t0) / n);
      t0 = rte_rdtsc();
      for (unsigned i = 0; i < n; ++i)
        green += rte_meter_srtcm_color_blind_check(&m[i & 63], &prof, rte_rdtsc(), 64) == RTE_COLOR_GREEN;
      dpdk.push_back(static_cast<double>(rte_rdtsc() - t0) / n);
    }
    fmt::print("meter per packet (64 buckets, TSC read included): ours (pps + bps, check + consume) {} cycles, "
               "rte_meter srTCM {} cycles ({} / {} passed)\n",
               spread(ours), spread(dpdk), pass, green);
  }
  b.pipe.reset();  // its rings before EAL goes
  rte_eal_cleanup();
  if (!ok) {
    fmt::print(stderr, "volumetric_bench: goodput below 95 % or a blocklisted packet not dropped as such\n");
    return 1;
  }
  return 0;
}
