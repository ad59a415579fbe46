// Full-pipeline benchmark (issue 5, "Performance"): bursts of 32 through the real worker code
// (rte_eth_rx_burst → Pipeline::run → transmit_burst) on one lcore, over a net_ring port whose RX
// and TX share one ring, with a 1M-flow table and a compiled policy + key ring snapshot.
//
// Scenarios (sizes are the inner frame, i.e. what leaves after Geneve strip; tagged frames are
// 72 B longer on the wire: outer IPv4 20 + UDP 8 + Geneve 8 + tag option 36):
//   established tagged UDP/443 flows, HDR 64 B; FULL 64 / 512 / 1500 B; FULL IMIX 7:4:1;
//   new tagged flows (every packet a new 5-tuple, admitted);
//   forged-tag flood to an allowed destination (one MAC each) and to a denied one (no MAC);
//   untagged flood to a denied destination; last, the aging after a policy change (every flow of
//   the old revision decided again by the worker's aging, as on its idle polls).
//
// Each pass sends `--pass` packets (default 8192; 32 passes a run, 7 runs). The tags of
// established and new-flow passes are minted (OpenSSL) outside the timed region with fresh
// timestamps, because every accepted MAC is recorded by the replay filter. The benchmark clock (BurstClock, ns; also the flow table's ticks) advances by
// 200 ns per tagged packet (5 Mpps simulated) so the replay filter, sized for the production
// 15 Mpps, runs far from its false-drop bound. Established passes pick flows from a random
// permutation of the whole 1M pre-admitted set, so flow-table lookups miss the cache as in
// production. After every scenario the counters must show exactly the expected outcome
// (forwarded, admitted, dropped by the expected reason, MACs computed), else exit 1.
//
// Usage: pipeline_full_bench [--quick] [--runs N] [--flows N] [--pass N] [--passes N] [--only TEXT]
//                            [--stages] [--burst N] [--latency] [--latency-bursts N,...] [--help]
//   --only: run only the scenarios whose name contains TEXT (the pre-fill always runs)
//   --stages: switch the pipeline's stage timing on and print, per scenario, the cycles/packet of
//             each pass (parse, lookup, classify, verify, finish) and of tx; the TSC reads add a
//             few cycles per burst, so the totals are then slightly above the untimed figures.
//   --latency [--latency-bursts 8,16] [--burst N]: per-packet latency percentiles (see --help).
// It also prints how much of the process's memory sits in transparent huge pages
// (AnonHugePages of /proc/self/smaps) after set-up: the flow table and replay filter ask for them.
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_udp.h>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "zt/crypto/keys.hpp"
#include "zt/crypto/mint.hpp"
#include "zt/dataplane/mbuf_parser.hpp"
#include "zt/dataplane/pipeline.hpp"
#include "zt/dataplane/worker.hpp"
#include "zt/rules/policy.hpp"
#include "zt/rules/snapshot.hpp"
#include "bench_policy.hpp"

namespace {

const char* kHelp = R"(pipeline_full_bench: the full worker pipeline on one lcore (rx_burst -> Pipeline::run ->
transmit_burst over a net_ring port) with a 1M-flow table; cycles/packet and Mpps by scenario,
every scenario checked against the counters. Last, "aging after a policy change": the cycles
per flow and per idle-poll call of the worker's aging re-deciding every flow under a new revision,
beside a round with nothing to re-decide. See perf/README.md.

  --quick             smoke: 20k flows, passes of 4096, 2 passes, 3 runs
  --runs N            runs per scenario (default 7); figures are the median [min-max] of the runs
  --flows N           flows pre-admitted (default 1000000)
  --pass N            packets per pass (default 8192; 64..32768)
  --passes N          passes per run (default 32)
  --only TEXT         only the scenarios whose name contains TEXT
  --stages            per-stage cycles/packet (parse, lookup, classify, verify, finish)
  --burst N           packets asked of rte_eth_rx_burst per loop (1..32, default 32)
  --latency           after each main scenario's runs (HDR 64 B, FULL 64 B, FULL IMIX, new flows,
                      the floods), as many runs again with per-packet latency recorded: for every
                      packet, TSC cycles from its burst being handed to the pipeline (after
                      rte_eth_rx_burst) to Pipeline::run returning (the verdict) and, for forwarded
                      packets, to transmit_burst returning (the TX queue took it). Recorded in a
                      preallocated log-linear histogram (0.8 % buckets); printed as p50 / p90 /
                      p99 / p99.9 / max in cycles and ns, median [min-max] over the runs, beside
                      two baselines in the same process and harness: pass-through (no pipeline:
                      the measurement's own floor) and dp::parse_burst (parser, no policy). Also
                      HDR 64 B at the burst sizes of --latency-bursts. Three serialised TSC reads
                      per burst: the cyc/pkt of latency runs is a little above the plain runs'.
  --latency-bursts L  comma list of extra burst sizes for HDR 64 B under --latency (default 8,16;
                      at most 32: the pipeline decides at most 32 packets per call)
)";

using namespace zt;
using dp::kBurst;
using rules::DropReason;

constexpr std::uint32_t kWeb = 1001;
// A fixed wall clock (ns), five minutes into a 15-minute key epoch.
constexpr std::int64_t kNow = (1'800'000'000LL + 300) * 1'000'000'000LL;
constexpr std::int64_t kNsPerTaggedPkt = 200;  // benchmark clock: 5 Mpps of accepted tags
constexpr std::uint16_t kAllowedPort = 443;    // rule 10: allow, payload: hdr (QUIC)
constexpr std::uint16_t kDeniedPort = 9999;    // no rule: default deny
constexpr std::uint32_t kForgedBase = 0x4000000;  // flow index ranges that never meet
constexpr std::uint32_t kDeniedBase = 0x8000000;
constexpr std::uint32_t kOpenPortBase = 0xC000000;

const char* kPolicy = zt::perf::kPipelineBenchPolicy;

std::uint64_t epoch_now() {
  const crypto::EpochPolicy p{};
  return static_cast<std::uint64_t>((kNow - p.origin_ns) / p.length_ns);
}

// Flow i's inner 5-tuple: source 172.16/12 + port (distinct for every i), destination in zone-b.
struct Tuple {
  std::uint32_t src, dst;
  std::uint16_t sport, dport;
};
Tuple tuple_of(std::uint32_t i, std::uint16_t dport) {
  const std::uint32_t h = i * 2654435761U;
  return {0xac100000U | (i & 0xfffff), 0x0a020000U | ((h >> 16) & 0xffff),
          static_cast<std::uint16_t>(1024 + (i >> 20)), dport};
}

// Writes a bare IPv4/UDP packet of `ip_len` bytes (≥ 28) into `out`.
void write_inner(std::uint8_t* out, const Tuple& t, std::uint16_t ip_len) {
  std::memset(out, 0, ip_len);
  auto* ip = reinterpret_cast<rte_ipv4_hdr*>(out);
  ip->version_ihl = 0x45;
  ip->total_length = rte_cpu_to_be_16(ip_len);
  ip->time_to_live = 64;
  ip->next_proto_id = IPPROTO_UDP;
  ip->src_addr = rte_cpu_to_be_32(t.src);
  ip->dst_addr = rte_cpu_to_be_32(t.dst);
  ip->hdr_checksum = rte_ipv4_cksum(ip);
  auto* u = reinterpret_cast<rte_udp_hdr*>(ip + 1);
  u->src_port = rte_cpu_to_be_16(t.sport);
  u->dst_port = rte_cpu_to_be_16(t.dport);
  u->dgram_len = rte_cpu_to_be_16(static_cast<std::uint16_t>(ip_len - sizeof(rte_ipv4_hdr)));
  for (std::uint16_t k = 28; k < ip_len; ++k) out[k] = static_cast<std::uint8_t>(k * 7 + t.src);
}

const std::uint8_t kMacs[12] = {2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1};

// Builds frames into mbufs (setup only: allocates, mints with OpenSSL).
class FrameWriter {
 public:
  FrameWriter() : minter_(std::move(*crypto::Minter::create())) {
    auto sv = crypto::derive_epoch_secret(std::vector<std::uint8_t>(32, 0x42), "bench", epoch_now());
    key_ = std::move(*crypto::derive_identity_key(*sv, kWeb, crypto::Alg::aes256_cmac));
  }

  // A tagged frame (Geneve with the tag, inner IPv4/UDP) whose inner frame is `size` bytes, tag
  // time `when`; `forge` flips one MAC bit. Returns the frame length.
  // `outer_src`: the outer IPv4 source (default: the one agent address of every legitimate flow).
  std::size_t tagged(std::uint8_t* buf, const Tuple& t, std::uint16_t size, crypto::Coverage cov,
                     std::int64_t when, bool forge, std::uint32_t outer_src = 0x0a010064) {
    const auto ip_len = static_cast<std::uint16_t>(size - RTE_ETHER_HDR_LEN);
    write_inner(inner_.data(), t, ip_len);
    const std::span<const std::uint8_t> inner_ip(inner_.data(), ip_len);
    crypto::InnerView view;
    if (crypto::parse_inner_ip(inner_ip, view) != crypto::PacketError::none) std::abort();
    crypto::TagFields f;
    f.coverage = cov;
    f.timestamp_ns = crypto::tag_timestamp(crypto::EpochPolicy{}, epoch_now(), when);
    crypto::Tag tag;
    if (minter_.mint(key_, f, view, tag) != crypto::TagReject::none) std::abort();
    if (forge) tag.mac[3] ^= 1;
    crypto::OuterParams outer;
    outer.src = {static_cast<std::uint8_t>(outer_src >> 24), static_cast<std::uint8_t>(outer_src >> 16),
                 static_cast<std::uint8_t>(outer_src >> 8), static_cast<std::uint8_t>(outer_src)};
    outer.dst = {10, 2, 0, 100};
    outer.src_port = static_cast<std::uint16_t>(49152 + (t.src & 0x3fff));  // RSS entropy
    if (crypto::build_geneve_packet(outer, tag, inner_ip, pkt_) != crypto::PacketError::none)
      std::abort();
    std::memcpy(buf, kMacs, 12);
    buf[12] = 0x08;
    buf[13] = 0x00;
    std::memcpy(buf + RTE_ETHER_HDR_LEN, pkt_.data(), pkt_.size());
    return RTE_ETHER_HDR_LEN + pkt_.size();
  }

  std::size_t untagged(std::uint8_t* buf, const Tuple& t, std::uint16_t size) {
    std::memcpy(buf, kMacs, 12);
    buf[12] = 0x08;
    buf[13] = 0x00;
    write_inner(buf + RTE_ETHER_HDR_LEN, t, static_cast<std::uint16_t>(size - RTE_ETHER_HDR_LEN));
    return size;
  }

 private:
  crypto::Minter minter_;
  crypto::IdentityKey key_;
  std::array<std::uint8_t, 2048> inner_{};
  std::vector<std::uint8_t> pkt_;
};

void fill_mbuf(rte_mbuf* m, const std::uint8_t* frame, std::size_t len) {
  rte_pktmbuf_reset(m);
  std::memcpy(rte_pktmbuf_mtod(m, std::uint8_t*), frame, len);
  m->data_len = static_cast<std::uint16_t>(len);
  m->pkt_len = static_cast<std::uint32_t>(len);
}

struct Stats {
  double median, min, max;
};
Stats summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const auto n = v.size();
  return {n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2, v.front(), v.back()};
}

// Per-packet latency (--latency): a log-linear histogram of TSC cycles, HdrHistogram's layout.
// Values below 2^kSubBits are exact; above, each power of two is split into 2^(kSubBits-1)
// buckets, so a value is known to within 1/2^(kSubBits-1) = 0.8 %. Preallocated (7424 counters,
// 58 KiB); record() only adds: no allocation, no branch on the value's size beyond one compare.
class LatencyHistogram {
 public:
  static constexpr unsigned kSubBits = 8;
  static constexpr unsigned kHalf = 1U << (kSubBits - 1);
  static constexpr unsigned kBuckets = (66 - kSubBits) * kHalf;

  static unsigned index_of(std::uint64_t v) noexcept {
    if (v < (std::uint64_t{1} << kSubBits)) return static_cast<unsigned>(v);
    const unsigned shift = static_cast<unsigned>(63 - __builtin_clzll(v)) - (kSubBits - 1);
    return shift * kHalf + static_cast<unsigned>(v >> shift);
  }
  // The highest value that falls in bucket i (what a percentile reports, as HdrHistogram does).
  static std::uint64_t highest_of(unsigned i) noexcept {
    if (i < 2 * kHalf) return i;
    const unsigned shift = i / kHalf - 1;
    const std::uint64_t sub = i % kHalf + kHalf;
    return ((sub + 1) << shift) - 1;
  }

  void record(std::uint64_t v, std::uint64_t count) noexcept {
    counts_[index_of(v)] += count;
    total_ += count;
    max_ = std::max(max_, v);
  }
  void reset() noexcept {
    counts_.fill(0);
    total_ = max_ = 0;
  }
  std::uint64_t total() const noexcept { return total_; }
  std::uint64_t max() const noexcept { return max_; }
  // The smallest recorded value v such that at least q (0..1] of the samples are <= v (to the
  // bucket's precision; never above the exact maximum). 0 when empty.
  std::uint64_t at(double q) const noexcept {
    if (total_ == 0) return 0;
    const auto want = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total_))));
    std::uint64_t seen = 0;
    for (unsigned i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= want) return std::min(highest_of(i), max_);
    }
    return max_;
  }

 private:
  std::array<std::uint64_t, kBuckets> counts_{};
  std::uint64_t total_ = 0, max_ = 0;
};

// The percentiles printed, in order (the last one is the maximum).
constexpr std::array<double, 5> kPercentiles = {0.50, 0.90, 0.99, 0.999, 1.0};
constexpr std::array<const char*, 5> kPercentileNames = {"p50", "p90", "p99", "p99.9", "max"};

// Checks the histogram against values whose percentiles are known; false (and a message) if off.
bool histogram_self_test() {
  auto h = std::make_unique<LatencyHistogram>();
  for (std::uint64_t v = 1; v <= 100'000; ++v) h->record(v, 1);  // uniform 1..100000
  h->record(3'000'000, 1);                                        // one outlier
  const std::array<double, 5> want = {50'000, 90'000, 99'000, 99'900, 3'000'000};
  bool ok = h->total() == 100'001 && h->at(0.0) == 1 && h->at(1e-9) == 1;
  for (std::size_t k = 0; k < kPercentiles.size(); ++k) {
    const double got = static_cast<double>(h->at(kPercentiles[k]));
    ok = ok && got >= want[k] && got <= want[k] * (1 + 1.0 / LatencyHistogram::kHalf);
  }
  // Exact below 2^kSubBits; bucket bounds contiguous and increasing.
  for (std::uint64_t v = 0; v < 256; ++v) ok = ok && LatencyHistogram::index_of(v) == v;
  for (unsigned i = 1; i + 1 < LatencyHistogram::kBuckets; ++i)
    ok = ok && LatencyHistogram::index_of(LatencyHistogram::highest_of(i)) == i &&
         LatencyHistogram::index_of(LatencyHistogram::highest_of(i) + 1) == i + 1;
  if (!ok) fmt::print(stderr, "pipeline_full_bench: latency histogram self-test failed\n");
  return ok;
}

// What the timed loop records with --latency: per packet, the cycles from the moment its burst
// was handed over (after rte_eth_rx_burst returned) until the verdict (Pipeline::run returned)
// and, for forwarded packets, until transmit_burst returned (the TX queue accepted them).
// Bursts slower than `stall_cycles` (100 µs: far above any burst's work) are also counted: on a
// shared machine they are the kernel running another task on the benchmark's CPU.
struct LatencyRecorder {
  LatencyHistogram verdict, tx;
  std::uint64_t stall_cycles = 0, stalled_bursts = 0;
};

// Stage cycles so far (only counted while stage timing is on).
std::array<std::uint64_t, dp::kStageCount> stage_cycles(const dp::WorkerCounters& c) {
  std::array<std::uint64_t, dp::kStageCount> v{};
  for (std::size_t s = 0; s < dp::kStageCount; ++s) v[s] = c.stages[s].cycles.get();
  return v;
}

// "parse 40.1, lookup 80.2, ...": the cycles/packet of each stage between two readings.
std::string stage_line(const std::array<std::uint64_t, dp::kStageCount>& a,
                       const std::array<std::uint64_t, dp::kStageCount>& z, std::uint64_t pkts) {
  std::string out;
  for (std::size_t s = 0; s < dp::kStageCount; ++s) {
    if (z[s] == a[s]) continue;
    out += fmt::format("{}{} {:.1f}", out.empty() ? "" : ", ", dp::to_string(static_cast<dp::Stage>(s)),
                       static_cast<double>(z[s] - a[s]) / static_cast<double>(pkts));
  }
  return out;
}

// kB of this process's memory in transparent huge pages (0 if /proc/self/smaps is unreadable).
long anon_huge_kb() {
  std::FILE* f = std::fopen("/proc/self/smaps", "r");
  if (f == nullptr) return -1;
  char line[256];
  long total = 0, kb = 0;
  while (std::fgets(line, sizeof line, f) != nullptr)
    if (std::sscanf(line, "AnonHugePages: %ld kB", &kb) == 1) total += kb;
  std::fclose(f);
  return total;
}

// What the counters must show after a scenario.
struct Totals {
  std::uint64_t rx = 0, tx = 0, drops = 0, new_flows = 0, macs = 0;
  std::array<std::uint64_t, rules::kDropReasonCount> by_reason{};
};
Totals totals(const dp::WorkerCounters& c, const dp::Pipeline& p) {
  Totals t;
  t.rx = c.rx_packets[0].get();
  t.tx = c.tx_packets[1].get();
  t.drops = c.dropped_total();
  t.new_flows = c.new_flows.get();
  t.macs = p.verifier().mac_count();
  for (std::size_t r = 0; r < rules::kDropReasonCount; ++r) t.by_reason[r] = c.drops[r].get();
  return t;
}

struct Bench {
  std::uint16_t port = 0;
  rte_ring* ring = nullptr;
  rte_mempool* pool = nullptr;
  dp::Pipeline* pipe = nullptr;
  const dp::Snapshot* snap = nullptr;
  dp::WorkerCounters c;
  FrameWriter w;
  std::int64_t now = kNow;
  // Floods only: how far the pipeline's TSC (which the volumetric sketches' one-second window
  // runs on) is ahead of `now`; see frame_pass.
  std::uint64_t flood_tsc = 0;
  std::vector<std::uint8_t> buf = std::vector<std::uint8_t>(4096);
  std::uint16_t burst = kBurst;      // packets asked of rte_eth_rx_burst (the pipeline takes <= 32)
  LatencyRecorder* lat = nullptr;    // --latency: per-packet timestamps into these histograms
  // What the timed loop runs between RX and TX: the pipeline, or a baseline in its place.
  enum class Stage : std::uint8_t { pipeline, parse_only, pass_through } stage = Stage::pipeline;

  // Takes n mbufs: those the last pass forwarded (still in the ring), topped up from the pool.
  std::vector<rte_mbuf*> take(unsigned n) {
    std::vector<rte_mbuf*> v(n);
    unsigned got = rte_ring_dequeue_burst(ring, reinterpret_cast<void**>(v.data()), n, nullptr);
    drain();  // nothing of the last pass may be received again
    if (got < n && rte_pktmbuf_alloc_bulk(pool, v.data() + got, n - got) != 0) {
      fmt::print(stderr, "pipeline_full_bench: mbuf pool exhausted\n");
      std::exit(1);
    }
    return v;
  }
  void load(std::vector<rte_mbuf*>& v) {
    if (rte_ring_enqueue_bulk(ring, reinterpret_cast<void**>(v.data()), static_cast<unsigned>(v.size()),
                              nullptr) != v.size()) {
      fmt::print(stderr, "pipeline_full_bench: ring enqueue failed\n");
      std::exit(1);
    }
  }
  // The timed part: n packets from the ring through rx → Pipeline::run → transmit_burst.
  std::uint64_t timed(unsigned n, dp::BurstClock clk) {
    return lat != nullptr ? timed_loop<true>(n, clk) : timed_loop<false>(n, clk);
  }
  std::uint16_t decide(rte_mbuf** pkts, std::uint16_t got, const dp::BurstClock& clk) noexcept {
    switch (stage) {
      case Stage::pipeline: return pipe->run(pkts, got, 0, snap, clk, c);
      case Stage::parse_only: return dp::parse_burst(pkts, got, 0, c);
      case Stage::pass_through: return got;
    }
    return got;
  }
  template <bool kLatency>
  std::uint64_t timed_loop(unsigned n, const dp::BurstClock& clk) {
    rte_mbuf* pkts[kBurst];
    unsigned done = 0;
    const std::uint64_t t0 = rte_rdtsc_precise();
    while (done < n) {
      const std::uint16_t got = rte_eth_rx_burst(port, 0, pkts, static_cast<std::uint16_t>(std::min<unsigned>(burst, n - done)));
      if (got == 0) break;
      if constexpr (kLatency) {
        // Serialised TSC reads (rte_rdtsc_precise: a fence, then rdtsc) so the pipeline's work
        // cannot drift across them; every packet of the burst is decided, and leaves, together.
        const std::uint64_t handed = rte_rdtsc_precise();
        const std::uint16_t keep = decide(pkts, got, clk);
        const std::uint64_t decided = rte_rdtsc_precise();
        dp::transmit_burst(pkts, keep, port, 0, 1, c);
        const std::uint64_t sent = rte_rdtsc_precise();
        lat->verdict.record(decided - handed, got);
        lat->stalled_bursts += decided - handed > lat->stall_cycles;
        if (keep != 0) lat->tx.record(sent - handed, keep);
      } else {
        const std::uint16_t keep = decide(pkts, got, clk);
        dp::transmit_burst(pkts, keep, port, 0, 1, c);
      }
      done += got;
    }
    const std::uint64_t t1 = rte_rdtsc_precise();
    if (done != n) {
      fmt::print(stderr, "pipeline_full_bench: ring ran dry after {} of {} packets\n", done, n);
      std::exit(1);
    }
    return t1 - t0;
  }
  dp::BurstClock clock() const { return {static_cast<std::uint64_t>(now), now}; }
  // Drains whatever the ring holds back into the pool.
  void drain() {
    void* b[256];
    unsigned k;
    while ((k = rte_ring_dequeue_burst(ring, b, 256, nullptr)) != 0)
      rte_pktmbuf_free_bulk(reinterpret_cast<rte_mbuf**>(b), k);
  }
};

// One pass of tagged packets, flows[j] with inner size size_of(j); tags fresh (minted now).
template <typename SizeOf>
std::uint64_t tagged_pass(Bench& b, const std::vector<std::uint32_t>& flows, SizeOf size_of,
                          crypto::Coverage cov) {
  const auto n = static_cast<unsigned>(flows.size());
  auto v = b.take(n);
  for (unsigned j = 0; j < n; ++j) {
    const auto len = b.w.tagged(b.buf.data(), tuple_of(flows[j], kAllowedPort), size_of(j), cov,
                                b.now + j, false);
    fill_mbuf(v[j], b.buf.data(), len);
  }
  b.load(v);
  auto clk = b.clock();
  clk.now_ns += n;  // every tag of the pass is within the window
  clk.tsc = static_cast<std::uint64_t>(clk.now_ns);
  const std::uint64_t cyc = b.timed(n, clk);
  b.now += static_cast<std::int64_t>(n) * kNsPerTaggedPkt;
  return cyc;
}

// One pass of prebuilt frames (floods: everything is dropped, so the mbufs are refilled).
std::uint64_t frame_pass(Bench& b, const std::vector<std::vector<std::uint8_t>>& frames) {
  auto v = b.take(static_cast<unsigned>(frames.size()));
  for (std::size_t j = 0; j < frames.size(); ++j) fill_mbuf(v[j], frames[j].data(), frames[j].size());
  b.load(v);
  // The wall clock stands still (the forged tags were minted for it), but the TSC moves on by
  // 1/32 s a pass: the volumetric sketches' window rolls every 32 passes (8192 packets each), so
  // one window counts ~262k failures or untagged packets, not a whole run's. Without it the
  // run's millions land in one window and saturate the sketches (2048 counters a row): every
  // /24 would cross the 1000 failures/s limit and be blocklisted — which is what a worker
  // fed more than ~2M spoofed tag failures a second does (perf/README.md "Floods").
  b.flood_tsc += 31'250'000;
  auto clk = b.clock();
  clk.tsc += b.flood_tsc;
  return b.timed(static_cast<unsigned>(frames.size()), clk);
}

// Removes the flows the last new-flow pass admitted (their decapsulated frames are in the ring),
// so the table stays at the pre-filled size.
void erase_forwarded(Bench& b) {
  std::vector<rte_mbuf*> v(rte_ring_count(b.ring));
  const unsigned n = rte_ring_dequeue_bulk(b.ring, reinterpret_cast<void**>(v.data()),
                                           static_cast<unsigned>(v.size()), nullptr);
  std::array<std::uint8_t, dp::kParseWindow> scratch;
  for (unsigned j = 0; j < n; ++j) {
    dp::ParsedPacket pp;
    if (dp::parse_mbuf(v[j], pp, scratch) != DropReason::none) continue;
    dp::KeyDir dir;
    const dp::FlowKey k = dp::make_flow_key(pp.outer, dir);
    if (auto* e = b.pipe->flows().lookup(k)) b.pipe->flows().erase(e);
  }
  if (n != 0) rte_ring_enqueue_bulk(b.ring, reinterpret_cast<void**>(v.data()), n, nullptr);
}

struct Result {
  std::string name;
  Stats cyc;
  double target = 0;  // cycles/pkt; 0: none
  std::string note;
  std::string stages;  // --stages: cycles/packet per pass
};

// --latency: one scenario's percentiles until one end point, over the runs.
struct LatencyRow {
  std::string name;
  const char* until;  // "verdict" (Pipeline::run returned) or "tx" (transmit_burst returned)
  unsigned burst;
  Stats cyc_per_pkt;  // the same runs' throughput (timestamps included)
  std::array<Stats, kPercentiles.size()> pct;  // cycles; median [min-max] of the runs
  std::uint64_t samples;  // packets recorded per run
  Stats stalled;          // bursts per run over 100 µs until the verdict (preempted)
};

// Runs `runs` runs of `passes` calls of one_pass() (which returns the pass's timed cycles) with
// the recorder on, and appends a "verdict" row and, if anything was forwarded, a "tx" row.
template <typename Pass>
void latency_runs(Bench& b, std::vector<LatencyRow>& out, const std::string& name, unsigned runs,
                  unsigned passes, unsigned pass, Pass one_pass) {
  auto rec = std::make_unique<LatencyRecorder>();  // before the runs: nothing allocates inside
  rec->stall_cycles = rte_get_tsc_hz() / 10'000;
  std::array<std::array<std::vector<double>, kPercentiles.size()>, 2> pct;
  std::vector<double> cpp, stalled;
  std::array<std::uint64_t, 2> samples{};
  b.lat = rec.get();
  for (unsigned r = 0; r < runs; ++r) {
    rec->verdict.reset();
    rec->tx.reset();
    rec->stalled_bursts = 0;
    std::uint64_t cyc = 0;
    for (unsigned p = 0; p < passes; ++p) cyc += one_pass();
    cpp.push_back(static_cast<double>(cyc) / (passes * pass));
    stalled.push_back(static_cast<double>(rec->stalled_bursts));
    const LatencyHistogram* h[2] = {&rec->verdict, &rec->tx};
    for (unsigned e = 0; e < 2; ++e) {
      samples[e] = h[e]->total();
      if (samples[e] == 0) continue;
      for (std::size_t k = 0; k < kPercentiles.size(); ++k)
        pct[e][k].push_back(static_cast<double>(h[e]->at(kPercentiles[k])));
    }
  }
  b.lat = nullptr;
  const char* until[2] = {"verdict", "tx"};
  for (unsigned e = 0; e < 2; ++e) {
    if (pct[e][0].empty()) continue;
    LatencyRow row{name, until[e], b.burst, summarize(cpp), {}, samples[e], summarize(stalled)};
    for (std::size_t k = 0; k < kPercentiles.size(); ++k) row.pct[k] = summarize(pct[e][k]);
    out.push_back(std::move(row));
  }
}

// The replay filter is a Bloom filter: a fresh tag is taken for a replay with a probability its
// sizing bounds (sized for 1e-4 at 15 Mpps; ≈ 1e-8 per tag at this benchmark's rate, ≈ 0.07 per
// full run, which failed about one full run in 10-20 while this check was exact). In a scenario
// that must forward every packet (established flows, or new flows: a new flow's tag is checked
// against the filter too, and a false drop there also admits one flow fewer), up to
// kFalseReplays `tag_replayed` drops are reported as false drops instead of failing the run;
// more is a fault and fails it.
constexpr std::uint64_t kFalseReplays = 2;

bool check(const char* what, const Totals& a, const Totals& z, std::uint64_t pkts,
           std::uint64_t tx, std::uint64_t new_flows, std::uint64_t macs, DropReason reason) {
  std::uint64_t drops = z.drops - a.drops;
  std::uint64_t want_drops = pkts - tx;
  const auto r = static_cast<std::size_t>(reason);
  const auto rp = static_cast<std::size_t>(DropReason::tag_replayed);
  std::uint64_t false_replays = 0;
  if (want_drops == 0 && (new_flows == 0 || new_flows == pkts) && macs == pkts &&
      z.by_reason[rp] - a.by_reason[rp] <= kFalseReplays)
    false_replays = z.by_reason[rp] - a.by_reason[rp];
  const std::uint64_t want_new = new_flows == 0 ? 0 : new_flows - false_replays;
  bool ok = z.rx - a.rx == pkts && z.tx - a.tx + false_replays == tx && drops == want_drops + false_replays &&
            z.new_flows - a.new_flows == want_new && z.macs - a.macs == macs &&
            (want_drops == 0 || z.by_reason[r] - a.by_reason[r] == want_drops);
  if (ok && false_replays != 0)
    fmt::print(stderr, "pipeline_full_bench: {}: {} of {} fresh tags taken for replays (Bloom false drops, "
               "allowed up to {})\n", what, false_replays, pkts, kFalseReplays);
  if (!ok) {
    fmt::print(stderr,
               "pipeline_full_bench: {}: WRONG PATH: rx {} (want {}), tx {} (want {}), drops {} "
               "(want {} as {}), new flows {} (want {}), MACs {} (want {})\n",
               what, z.rx - a.rx, pkts, z.tx - a.tx, tx, drops, want_drops,
               rules::to_string(reason), z.new_flows - a.new_flows, new_flows, z.macs - a.macs,
               macs);
    for (std::size_t i = 0; i < rules::kDropReasonCount; ++i)
      if (z.by_reason[i] != a.by_reason[i])
        fmt::print(stderr, "    drop {}: {}\n", rules::to_string(static_cast<DropReason>(i)),
                   z.by_reason[i] - a.by_reason[i]);
  }
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  unsigned runs = 7, pass = 8192, passes = 32;
  std::uint32_t nflows = 1'000'000;
  std::string only;
  bool stages = false, latency = false;
  unsigned burst = kBurst;
  std::vector<unsigned> sweep = {8, 16};  // --latency: HDR 64 B again at these burst sizes
  auto number = [](const char* flag, const char* text, unsigned lo, unsigned hi) {
    char* end = nullptr;
    const unsigned long v = std::strtoul(text, &end, 10);
    if (end == text || *end != '\0' || v < lo || v > hi) {
      fmt::print(stderr, "pipeline_full_bench: {} takes a number from {} to {}, not '{}'\n", flag, lo, hi, text);
      std::exit(2);
    }
    return static_cast<unsigned>(v);
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      fmt::print("{}", kHelp);
      return 0;
    } else if (a == "--latency") {
      latency = true;
    } else if (a == "--burst" && i + 1 < argc) {
      burst = number("--burst", argv[++i], 1, kBurst);
    } else if (a == "--latency-bursts" && i + 1 < argc) {
      sweep.clear();
      for (std::string_view list = argv[++i]; !list.empty();) {
        const auto comma = list.find(',');
        const std::string item(list.substr(0, comma));
        if (!item.empty()) sweep.push_back(number("--latency-bursts", item.c_str(), 1, kBurst));
        list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
      }
    } else if (a == "--quick") {
      runs = 3, pass = 4096, passes = 2, nflows = 20'000;
    } else if (a == "--runs" && i + 1 < argc) {
      runs = static_cast<unsigned>(std::stoul(argv[++i]));
    } else if (a == "--flows" && i + 1 < argc) {
      nflows = static_cast<std::uint32_t>(std::stoul(argv[++i]));
    } else if (a == "--pass" && i + 1 < argc) {
      pass = static_cast<unsigned>(std::stoul(argv[++i]));
    } else if (a == "--only" && i + 1 < argc) {
      only = argv[++i];
    } else if (a == "--passes" && i + 1 < argc) {
      passes = static_cast<unsigned>(std::stoul(argv[++i]));
    } else if (a == "--stages") {
      stages = true;
    } else {
      fmt::print(stderr, "usage: pipeline_full_bench [--quick] [--runs N] [--flows N] [--pass N] [--passes N] "
                         "[--only TEXT] [--stages] [--burst N] [--latency] [--latency-bursts N,...] (--help)\n");
      return 2;
    }
  }
  runs = std::max(runs, 1U);
  passes = std::max(passes, 1U);
  pass = std::clamp(pass, 64U, 32768U) / kBurst * kBurst;
  nflows = std::max(nflows, pass);

  const char* eal[] = {"pipeline_full_bench", "-l", "0", "--no-huge", "--no-pci", "--no-shconf",
                       "-m", "512", "--log-level=lib.*:error"};
  if (rte_eal_init(static_cast<int>(std::size(eal)), const_cast<char**>(eal)) < 0) {
    fmt::print(stderr, "pipeline_full_bench: EAL init failed\n");
    return 1;
  }
  Bench b;
  b.pool = rte_pktmbuf_pool_create("fullbench", 2 * 32768 + 2047, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
  b.ring = rte_ring_create("fullbench_ring", 65536, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
  if (b.pool == nullptr || b.ring == nullptr) {
    fmt::print(stderr, "pipeline_full_bench: cannot allocate the pool or ring\n");
    return 1;
  }
  const int port_rc = rte_eth_from_ring(b.ring);
  if (port_rc < 0) {
    fmt::print(stderr, "pipeline_full_bench: cannot create the net_ring port\n");
    return 1;
  }
  b.port = static_cast<std::uint16_t>(port_rc);
  rte_eth_conf conf{};
  if (rte_eth_dev_configure(b.port, 1, 1, &conf) != 0 ||
      rte_eth_rx_queue_setup(b.port, 0, 1024, 0, nullptr, b.pool) != 0 ||
      rte_eth_tx_queue_setup(b.port, 0, 1024, 0, nullptr) != 0 || rte_eth_dev_start(b.port) != 0) {
    fmt::print(stderr, "pipeline_full_bench: cannot start the net_ring port\n");
    return 1;
  }

  // Policy + key ring, as the control lcore would publish them.
  auto parsed = rules::parse_policy({{"policy.yaml", kPolicy}});
  if (!parsed) {
    fmt::print(stderr, "pipeline_full_bench: policy does not parse\n");
    return 1;
  }
  // The benchmark's policy as revision `revision`: null (said on stderr) if it does not compile.
  auto compile_at = [&parsed](std::uint64_t revision) -> std::shared_ptr<const rules::PolicySnapshot> {
    rules::CompileOptions co;
    co.revision = revision;
    auto p = rules::compile(*parsed, co);
    if (p) return *p;
    fmt::print(stderr, "pipeline_full_bench: policy revision {} does not compile\n", revision);
    return nullptr;
  };
  auto policy = compile_at(1);
  if (!policy) return 1;
  std::vector<crypto::EpochSecret> svs;
  for (auto e = epoch_now() - 1; e <= epoch_now() + 1; ++e)
    svs.push_back(*crypto::derive_epoch_secret(std::vector<std::uint8_t>(32, 0x42), "bench", e));
  std::vector<std::uint32_t> ids;
  for (const auto& id : policy->source().identities) ids.push_back(id.id);
  auto keys = crypto::KeyRing::build(crypto::EpochPolicy{}, svs, ids);
  if (!keys) {
    fmt::print(stderr, "pipeline_full_bench: key ring: {}\n", keys.error().message);
    return 1;
  }
  auto snap = std::make_shared<dp::Snapshot>();
  snap->policy = policy;
  snap->keys = *keys;
  // The volumetric limits ztgate runs with when none are set (its snapshots always carry a plan):
  // untagged and invalid-tag packets are counted per source prefix, as in the appliance. The
  // benchmark clock counts ns, so the plan's "TSC" runs at 1 GHz. One change: overload shedding
  // is off (every burst here is full, so after 100 ms of benchmark time the worker would count as
  // behind and shed new untagged flows before the policy, a cheaper path than the one measured).
  dp::VolumetricConfig vc;
  vc.overload_ms = 0;
  snap->volumetric = dp::make_volumetric_plan(vc, snap->policy.get(), 1, 1'000'000'000);
  b.snap = snap.get();

  dp::PipelineConfig pc;
  pc.flows.capacity = nflows + std::max(nflows / 4, 2 * pass);  // room for a new-flow pass
  pc.flows.timeouts = dp::make_timeouts(1'000'000'000);  // the benchmark clock ticks in ns
  pc.geneve = dp::GeneveMode::strip;
  pc.replay.packets_per_second = 15e6;  // ztgate's default (--replay-pps)
  auto pipe = dp::Pipeline::create(pc);
  if (!pipe) {
    fmt::print(stderr, "pipeline_full_bench: {}\n", pipe.error());
    return 1;
  }
  b.pipe = pipe->get();
  b.pipe->set_stage_timing(stages);
  b.burst = static_cast<std::uint16_t>(burst);
  if (latency && !histogram_self_test()) return 1;
  const double hz = static_cast<double>(rte_get_tsc_hz());

  fmt::print("pipeline_full_bench: 1 lcore, bursts of {}, verifier {}, TSC {:.0f} MHz\n",
             burst, b.pipe->verifier().arch(), hz / 1e6);
  fmt::print("flow table: {} flows pre-admitted (capacity {}, {} MiB); {} runs of {} passes x {} "
             "packets; each established pass = {} distinct flows drawn from the whole table\n",
             nflows, pc.flows.capacity, b.pipe->flows().memory_bytes() >> 20, runs, passes, pass, pass);
  fmt::print("replay filter {} MiB; transparent huge pages in use by the process: {} MiB\n",
             crypto::size_replay_filter(pc.replay).bytes >> 20, anon_huge_kb() >> 10);

  // Pre-fill: admit nflows distinct tagged flows through the pipeline itself.
  {
    const Totals a = totals(b.c, *b.pipe);
    std::vector<std::uint32_t> f;
    for (std::uint32_t i = 0; i < nflows; i += pass) {
      f.clear();
      for (std::uint32_t k = i; k < std::min(nflows, i + pass); ++k) f.push_back(k);
      tagged_pass(b, f, [](unsigned) { return std::uint16_t{64}; }, crypto::Coverage::full);
    }
    const Totals z = totals(b.c, *b.pipe);
    if (!check("pre-fill", a, z, nflows, nflows, nflows, nflows, DropReason::none)) return 1;
    if (b.pipe->flows().size() != nflows) {
      fmt::print(stderr, "pipeline_full_bench: table holds {} flows, want {}\n", b.pipe->flows().size(), nflows);
      return 1;
    }
  }

  std::vector<Result> results;
  auto wanted = [&](const char* name) { return std::string_view(name).find(only) != std::string_view::npos; };
  std::mt19937 rng(12345);
  std::vector<std::uint32_t> perm(nflows);
  std::iota(perm.begin(), perm.end(), 0U);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::size_t perm_pos = 0;
  auto next_flows = [&](unsigned n) {
    std::vector<std::uint32_t> f(n);
    for (unsigned j = 0; j < n; ++j) {
      if (perm_pos == perm.size()) {
        std::shuffle(perm.begin(), perm.end(), rng);
        perm_pos = 0;
      }
      f[j] = perm[perm_pos++];
    }
    return f;
  };

  // Framework floor in the same process: the plain io loop on the same port (no pipeline).
  if (wanted("io loop (ring), no pipeline: floor")) {
    std::vector<std::vector<std::uint8_t>> frames(pass, std::vector<std::uint8_t>(64));
    for (unsigned j = 0; j < pass; ++j) b.w.untagged(frames[j].data(), tuple_of(j, kAllowedPort), 64);
    auto v = b.take(pass);
    for (unsigned j = 0; j < pass; ++j) fill_mbuf(v[j], frames[j].data(), 64);
    b.load(v);
    std::vector<double> io;
    for (unsigned r = 0; r < runs; ++r) {
      std::uint64_t cyc = 0;
      for (unsigned p = 0; p < passes; ++p) {
        rte_mbuf* pk[kBurst];
        unsigned done = 0;
        const std::uint64_t t0 = rte_rdtsc_precise();
        while (done < pass) {
          const std::uint16_t n = rte_eth_rx_burst(b.port, 0, pk, kBurst);
          const std::uint16_t s = rte_eth_tx_burst(b.port, 0, pk, n);
          for (std::uint16_t k = s; k < n; ++k) rte_pktmbuf_free(pk[k]);
          done += n;
        }
        cyc += rte_rdtsc_precise() - t0;
      }
      io.push_back(static_cast<double>(cyc) / (passes * pass));
    }
    b.drain();
    results.push_back({"io loop (ring), no pipeline: floor", summarize(io), 0, ""});
  }

  // --latency baselines, same harness and port, the pipeline replaced by: nothing (pass-through:
  // the floor of the measurement itself, TSC reads + net_ring TX), then the parser-and-forwarding
  // floor of pipeline_bench (dp::parse_burst, no policy). Untagged 64 B frames, all forwarded.
  std::vector<LatencyRow> lat_rows;
  if (latency) {
    std::vector<std::vector<std::uint8_t>> frames(pass, std::vector<std::uint8_t>(64));
    for (unsigned j = 0; j < pass; ++j) b.w.untagged(frames[j].data(), tuple_of(j, kAllowedPort), 64);
    for (const auto stage : {Bench::Stage::pass_through, Bench::Stage::parse_only}) {
      b.stage = stage;
      const Totals a = totals(b.c, *b.pipe);
      frame_pass(b, frames);  // warm-up
      latency_runs(b, lat_rows,
                   stage == Bench::Stage::pass_through ? "baseline: pass-through (no pipeline)"
                                                       : "baseline: parse_burst (parser, no policy)",
                   runs, passes, pass, [&] { return frame_pass(b, frames); });
      const Totals z = totals(b.c, *b.pipe);
      const std::uint64_t n = std::uint64_t{pass} * (1 + runs * passes);
      if (z.tx - a.tx != n || (stage == Bench::Stage::parse_only && !check("parse_burst", a, z, n, n, 0, 0, DropReason::none))) {
        fmt::print(stderr, "pipeline_full_bench: latency baseline did not forward every packet\n");
        return 1;
      }
    }
    b.stage = Bench::Stage::pipeline;
    b.drain();
  }

  // Established tagged flows.
  struct Est {
    const char* name;
    crypto::Coverage cov;
    std::uint16_t (*size_of)(unsigned);
    double target;
    bool lat;  // --latency: measured
  };
  const Est est[] = {
      {"established tagged, HDR, 64 B", crypto::Coverage::hdr, [](unsigned) { return std::uint16_t{64}; }, 300, true},
      {"established tagged, FULL, 64 B", crypto::Coverage::full, [](unsigned) { return std::uint16_t{64}; }, 0, true},
      {"established tagged, FULL, 512 B", crypto::Coverage::full, [](unsigned) { return std::uint16_t{512}; }, 0, false},
      {"established tagged, FULL, 1500 B", crypto::Coverage::full, [](unsigned) { return std::uint16_t{1500}; }, 0, false},
      // Simple IMIX 7:4:1 (64/576/1500 B), interleaved.
      {"established tagged, FULL, IMIX 7:4:1", crypto::Coverage::full,
       [](unsigned j) {
         constexpr std::uint16_t k[12] = {64, 576, 64, 64, 576, 64, 1500, 64, 576, 64, 64, 576};
         return k[j % 12];
       }, 0, true},
  };
  for (const auto& s : est) {
    if (!wanted(s.name)) continue;
    const Totals a = totals(b.c, *b.pipe);
    const auto st0 = stage_cycles(b.c);
    std::vector<double> v;
    tagged_pass(b, next_flows(pass), s.size_of, s.cov);  // warm-up
    for (unsigned r = 0; r < runs; ++r) {
      std::uint64_t cyc = 0;
      for (unsigned p = 0; p < passes; ++p) cyc += tagged_pass(b, next_flows(pass), s.size_of, s.cov);
      v.push_back(static_cast<double>(cyc) / (passes * pass));
    }
    std::uint64_t n = std::uint64_t{pass} * (1 + runs * passes);
    if (latency && s.lat) {
      auto one = [&] { return tagged_pass(b, next_flows(pass), s.size_of, s.cov); };
      latency_runs(b, lat_rows, s.name, runs, passes, pass, one);
      n += std::uint64_t{pass} * runs * passes;
      if (s.cov == crypto::Coverage::hdr)  // the effect of the burst size, HDR 64 B only
        for (const unsigned bs : sweep) {
          if (bs == burst) continue;  // measured just above
          b.burst = static_cast<std::uint16_t>(bs);
          latency_runs(b, lat_rows, s.name, runs, passes, pass, one);
          n += std::uint64_t{pass} * runs * passes;
        }
      b.burst = static_cast<std::uint16_t>(burst);
    }
    const Totals z = totals(b.c, *b.pipe);
    if (!check(s.name, a, z, n, n, 0, n, DropReason::none)) return 1;
    results.push_back({s.name, summarize(v), s.target, "", stage_line(st0, stage_cycles(b.c), n)});
  }
  b.drain();

  // New tagged flows: every packet a never-seen 5-tuple, admitted; erased again outside the timing.
  if (wanted("new tagged flows, FULL, 64 B (admitted)")) {
    const Totals a = totals(b.c, *b.pipe);
    const auto st0 = stage_cycles(b.c);
    std::uint32_t next = nflows;
    std::vector<double> v;
    for (unsigned r = 0; r <= runs; ++r) {  // r == 0: warm-up
      std::uint64_t cyc = 0;
      for (unsigned p = 0; p < passes; ++p) {
        std::vector<std::uint32_t> f(pass);
        std::iota(f.begin(), f.end(), next);
        next += pass;
        cyc += tagged_pass(b, f, [](unsigned) { return std::uint16_t{64}; }, crypto::Coverage::full);
        erase_forwarded(b);
      }
      if (r != 0) v.push_back(static_cast<double>(cyc) / (passes * pass));
    }
    std::uint64_t n = std::uint64_t{pass} * passes * (1 + runs);
    if (latency) {
      latency_runs(b, lat_rows, "new tagged flows, FULL, 64 B (admitted)", runs, passes, pass, [&] {
        std::vector<std::uint32_t> f(pass);
        std::iota(f.begin(), f.end(), next);
        next += pass;
        const std::uint64_t cyc = tagged_pass(b, f, [](unsigned) { return std::uint16_t{64}; }, crypto::Coverage::full);
        erase_forwarded(b);
        return cyc;
      });
      n += std::uint64_t{pass} * passes * runs;
    }
    const Totals z = totals(b.c, *b.pipe);
    if (!check("new tagged flows", a, z, n, n, n, n, DropReason::none)) return 1;
    if (b.pipe->flows().size() != nflows) {
      fmt::print(stderr, "pipeline_full_bench: table holds {} flows after new-flow runs, want {}\n",
                 b.pipe->flows().size(), nflows);
      return 1;
    }
    const auto st = summarize(v);
    results.push_back({"new tagged flows, FULL, 64 B (admitted)", st, 0,
                       fmt::format("{:.2f} M flows/s (target >= 1)", hz / st.median / 1e6),
                       stage_line(st0, stage_cycles(b.c), n)});
    b.drain();
  }

  // Floods: prebuilt frames (the MAC of a forged tag is never recorded, so they can be resent).
  struct Flood {
    const char* name;
    bool tagged;
    std::uint32_t base;
    std::uint16_t dport;
    DropReason reason;
    bool mac;  // one MAC per packet expected
    double target;
  };
  // The worker ages its table round and round (idle polls, every 8th busy iteration); the
  // benchmark calls Pipeline::run without that loop. One full round here, untimed, as the
  // worker's would have made by now: after it every flow is known to be of the current
  // revision, which lets packets no flow can hold skip the flow table (dataplane/README.md
  // "Packets no flow can hold"). Nothing expires: the flows' last packets are recent.
  if (b.pipe->flows().size() != 0) {
    const std::uint32_t before = b.pipe->flows().size();
    b.pipe->age(static_cast<std::uint64_t>(b.now), b.pipe->flows().bucket_count());
    if (b.pipe->flows().size() != before) {
      fmt::print(stderr, "pipeline_full_bench: the aging round expired {} flows\n", before - b.pipe->flows().size());
      return 1;
    }
  }
  const Flood floods[] = {
      {"forged-tag flood, allowed dst (1 MAC each)", true, kForgedBase, kAllowedPort, DropReason::tag_forged_mac, true, 120},
      {"forged-tag flood, denied dst (no MAC)", true, kDeniedBase, kDeniedPort, DropReason::policy_default_deny, false, 120},
      {"untagged flood, denied dst", false, kDeniedBase, kDeniedPort, DropReason::policy_default_deny, false, 80},
      // The same flood to a port rules towards zone-b name (udp/443, allowed for `web`): no
      // shortcut before the flow table, the reach test denies it in classify. No target: shown
      // so that the closed-port figure above is not read as every untagged flood's.
      {"untagged flood, port open to others", false, kOpenPortBase, kAllowedPort, DropReason::policy_default_deny, false, 0},
  };
  for (const auto& s : floods) {
    if (!wanted(s.name)) continue;
    std::vector<std::vector<std::uint8_t>> frames(pass);
    for (unsigned j = 0; j < pass; ++j) {
      frames[j].resize(256);
      // A spoofed flood: packets from 65,536 /24s of 44.0.0.0/8 (outside every segment; the
      // outer source for a forged tag), so the volumetric sketches see no heavy hitter and no
      // MAC-failure flooder (a /24 meets ~60 failures in a whole run, the limit is 1000) and
      // every packet takes the whole path; a flood from few sources is blocklisted instead
      // (volumetric_bench: "blocklisted"). The benchmark clock stands still during a flood, so
      // the sketches' one-second window never rolls over: this spread keeps the counts honest.
      Tuple t = tuple_of(s.base + j, s.dport);
      const std::uint32_t spoofed = 0x2c000000U | (((j * 2654435761U) >> 8) & 0xffff00U) | (j & 0xff);
      if (!s.tagged) t.src = spoofed;
      const std::size_t len = s.tagged ? b.w.tagged(frames[j].data(), t, 64, crypto::Coverage::full, b.now + j, true, spoofed)
                                       : b.w.untagged(frames[j].data(), t, 64);
      frames[j].resize(len);
    }
    const Totals a = totals(b.c, *b.pipe);
    const auto st0 = stage_cycles(b.c);
    std::vector<double> v;
    frame_pass(b, frames);  // warm-up
    for (unsigned r = 0; r < runs; ++r) {
      std::uint64_t cyc = 0;
      for (unsigned p = 0; p < passes; ++p) cyc += frame_pass(b, frames);
      v.push_back(static_cast<double>(cyc) / (passes * pass));
    }
    std::uint64_t n = std::uint64_t{pass} * (1 + runs * passes);
    if (latency) {
      latency_runs(b, lat_rows, s.name, runs, passes, pass, [&] { return frame_pass(b, frames); });
      n += std::uint64_t{pass} * runs * passes;
    }
    const Totals z = totals(b.c, *b.pipe);
    if (!check(s.name, a, z, n, 0, 0, s.mac ? n : 0, s.reason)) return 1;
    results.push_back({s.name, summarize(v), s.target, fmt::format("all dropped: {}", rules::to_string(s.reason)),
                       stage_line(st0, stage_cycles(b.c), n)});
  }

  // A policy change: the worker's aging decides every flow of the old revision again
  // (dataplane/README.md "Revoking idle flows"), 64 buckets a call as on its idle polls, over one
  // whole sweep of the table. Baseline in the same run: the same sweep again, nothing left to
  // re-decide (plain aging: the entry misses alone). Revision 2 is the same policy, so every
  // flow is restamped and none revoked; checked.
  std::string policy_change;
  if (wanted("aging after a policy change") && b.pipe->flows().size() != 0) {
    auto policy2 = compile_at(2);
    if (!policy2) return 1;
    auto snap2 = std::make_shared<dp::Snapshot>();
    snap2->policy = policy2;
    snap2->keys = snap->keys;
    snap2->volumetric = dp::make_volumetric_plan(vc, snap2->policy.get(), 1, 1'000'000'000);
    dp::FlowTable& ft = b.pipe->flows();
    const std::uint32_t before = ft.size();
    const std::uint64_t revoked0 = b.c.revoked_flows.get();
    constexpr unsigned kSlice = 64;  // worker.cpp: kAgeBucketsWhenIdle
    // Calls until `done`: the first sweep until every flow is of revision 2 (a call stops early
    // once it has re-decided its budget of flows), the baseline for one whole round.
    auto sweep = [&](std::vector<double>& per_call, auto done) {
      unsigned expired = 0;
      std::uint64_t total = 0;
      const std::size_t cap = 4 * ft.bucket_count() / kSlice + before + 16;
      while (!done() && per_call.size() < cap) {
        const std::uint64_t t0 = rte_rdtsc_precise();
        expired += b.pipe->age(static_cast<std::uint64_t>(b.now), kSlice, snap2.get(), &b.c);
        const std::uint64_t t = rte_rdtsc_precise() - t0;
        per_call.push_back(static_cast<double>(t));
        total += t;
      }
      return std::pair{expired, total};
    };
    std::vector<double> redecide_calls, plain_calls;
    const auto [exp1, cyc1] = sweep(redecide_calls, [&] { return ft.all_flows_at(2); });
    const auto [exp2, cyc2] = sweep(plain_calls, [&] { return plain_calls.size() * kSlice >= ft.bucket_count(); });
    if (exp1 + exp2 != 0 || ft.size() != before || b.c.revoked_flows.get() != revoked0 || !ft.all_flows_at(2)) {
      fmt::print(stderr, "pipeline_full_bench: aging after a policy change: WRONG PATH: expired {}, flows {} (want "
                 "{}), revoked {}, all flows at revision 2: {}\n", exp1 + exp2, ft.size(), before,
                 b.c.revoked_flows.get() - revoked0, ft.all_flows_at(2));
      return 1;
    }
    const auto r = summarize(redecide_calls), q = summarize(plain_calls);
    policy_change = fmt::format(
        "aging after a policy change ({} flows, all still allowed, each re-decided once): {:.1f} cycles per flow, "
        "{} calls of up to {} buckets (an idle poll's; at most ~32 re-decisions a call) until every flow is of "
        "the new revision, per call median {:.2f} us, max {:.2f} us. One round with nothing to re-decide "
        "(baseline): {:.1f} cycles per flow, {} calls, per call median {:.2f} us, max {:.2f} us\n",
        before, static_cast<double>(cyc1) / before, redecide_calls.size(), kSlice, r.median / hz * 1e6,
        r.max / hz * 1e6, static_cast<double>(cyc2) / before, plain_calls.size(), q.median / hz * 1e6,
        q.max / hz * 1e6);
  }

  fmt::print("\n{:<44} {:>10} {:>8} {:>8} {:>11} {:>8}  {}\n", "scenario", "cycles/pkt", "min", "max",
             "Mpps/lcore", "target", "");
  bool missed = false;
  for (const auto& r : results) {
    std::string tgt = r.target > 0 ? fmt::format("<= {:.0f}", r.target) : "";
    std::string verdict = r.target > 0 ? (r.cyc.median <= r.target ? "met" : "MISSED") : "";
    if (verdict == "MISSED") missed = true;
    fmt::print("{:<44} {:>10.1f} {:>8.1f} {:>8.1f} {:>11.2f} {:>8}  {} {}\n", r.name, r.cyc.median,
               r.cyc.min, r.cyc.max, hz / r.cyc.median / 1e6, tgt, verdict, r.note);
    if (!r.stages.empty()) fmt::print("{:<44} stages, cycles/pkt: {}\n", "", r.stages);
  }
  auto cost = [&](std::string_view name) {
    for (const auto& r : results)
      if (r.name == name) return r.cyc.median;
    return 0.0;
  };
  if (const double nf = cost("new tagged flows, FULL, 64 B (admitted)"); nf > 0 && hz / nf < 1e6) missed = true;

  if (!lat_rows.empty()) {
    fmt::print("\nlatency per packet, cycles (--latency; median of {} runs [min-max of the runs]): from the TSC "
               "after rte_eth_rx_burst returned to Pipeline::run returned (until verdict) or to transmit_burst "
               "returned (until tx, forwarded packets only); a burst's packets are decided and sent together, so "
               "each gets its burst's time; stalled: bursts per run over 100 us until the verdict (the kernel ran "
               "something else on this CPU), median of the runs\n", runs);
    fmt::print("{:<44} {:<7} {:>5} {:>8}", "scenario", "until", "burst", "cyc/pkt");
    for (const char* name : kPercentileNames) fmt::print("  {:<21}", name);
    fmt::print(" {:>9} {:>8}\n", "pkts/run", "stalled");
    for (const auto& r : lat_rows) {
      fmt::print("{:<44} {:<7} {:>5} {:>8.1f}", r.name, r.until, r.burst, r.cyc_per_pkt.median);
      for (const auto& p : r.pct) fmt::print("  {:<21}", fmt::format("{:.0f} [{:.0f}-{:.0f}]", p.median, p.min, p.max));
      fmt::print(" {:>9} {:>8.0f}\n", r.samples, r.stalled.median);
    }
    fmt::print("\nlatency per packet, ns at {:.0f} MHz (medians of the runs)\n", hz / 1e6);
    fmt::print("{:<44} {:<7} {:>5}", "scenario", "until", "burst");
    for (const char* name : kPercentileNames) fmt::print(" {:>9}", name);
    fmt::print("\n");
    for (const auto& r : lat_rows) {
      fmt::print("{:<44} {:<7} {:>5}", r.name, r.until, r.burst);
      for (const auto& p : r.pct) fmt::print(" {:>9.0f}", p.median / hz * 1e9);
      fmt::print("\n");
    }
  }

  // 100 Gbit/s arithmetic at the measured per-packet costs.
  auto lcores = [&](double mpps, double cyc) { return mpps * 1e6 * cyc / hz; };
  const double hdr64 = cost("established tagged, HDR, 64 B"), full64 = cost("established tagged, FULL, 64 B"),
               imix = cost("established tagged, FULL, IMIX 7:4:1");
  if (hdr64 > 0 || full64 > 0 || imix > 0)
    fmt::print("\n100 Gbit/s: 64 B line rate = 148.81 Mpps; simple IMIX 7:4:1 (64/576/1500 B, mean "
               "353.8 B) = 33.4 Mpps (rates of the inner frames; the Geneve+tag overhead of 72 B "
               "lowers the wire packet rate, so these are upper bounds)\n");
  if (hdr64 > 0)
    fmt::print("  64 B, HDR tags:   {:.1f} cycles/pkt -> {:.1f} lcores (ceil {})\n", hdr64,
               lcores(148.81, hdr64), std::ceil(lcores(148.81, hdr64)));
  if (full64 > 0)
    fmt::print("  64 B, FULL tags:  {:.1f} cycles/pkt -> {:.1f} lcores (ceil {})\n", full64,
               lcores(148.81, full64), std::ceil(lcores(148.81, full64)));
  if (imix > 0)
    fmt::print("  IMIX, FULL tags:  {:.1f} cycles/pkt (measured IMIX mix) -> {:.1f} lcores (ceil {})\n",
               imix, lcores(33.4, imix), std::ceil(lcores(33.4, imix)));
  if (!policy_change.empty()) fmt::print("\n{}", policy_change);
  if (missed) fmt::print("\nsome targets were missed (see MISSED above)\n");
  fmt::print("\nall scenarios verified by counters (forwarded / admitted / dropped by the expected "
             "reason / MACs computed)\n");
  b.drain();
  rte_eth_dev_stop(b.port);
  rte_eth_dev_close(b.port);
  rte_eal_cleanup();
  return 0;
}
