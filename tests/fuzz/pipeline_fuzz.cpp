// libFuzzer target for the packet verdict path: the real zt::dp::Pipeline (parse, flow table,
// policy, tag verification, replay filter, fragments, L7, strip) on real mempool mbufs, every
// frame cut into a chain of 1-4 segments at input-chosen places.
//
// Input: records [ctl][len lo][len hi][len bytes of frame]...; ctl bit 0 = ingress port (0 zone-a
// side, 1 zone-b side), bits 1-2 = extra cuts, bit 3 = end the burst after this frame, bit 4 =
// then publish the other policy revision (pipeline_fuzz_world.hpp: 1 <-> 2) and age the whole
// flow table under it, as the worker does between bursts. At most
// 64 frames, bursts of at most 32. Each input runs on a fresh Pipeline at a fixed clock, so a
// tag minted by pipeline_seeds at that time verifies (and mutating it exercises the rejects).
// Checked after every burst:
//   - accounting: rx counter grew by the burst, forwarded + dropped (by reason) = received;
//   - default deny: a forwarded frame parses and touches zone-b or the audit segment (the
//     policy allows nothing else; replies of allowed flows come back from zone-b);
//   - forwarded frames are well-formed chains (pkt_len = sum of data_len);
//   - after a revision switch and a whole aging round under it: every flow left in the table is
//     of the new revision (the sweep re-decided or revoked each older one) and all_flows_at says so;
// and after the input: no mbuf is left out of the pool (nothing leaked or held).
#include <rte_eal.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <vector>

#include "pipeline_fuzz_world.hpp"
#include "zt/dataplane/parser.hpp"
#include "zt/dataplane/pipeline.hpp"

namespace {

using namespace zt;

void require(bool ok) {
  if (!ok) __builtin_trap();
}

rte_mempool* g_pool = nullptr;
std::shared_ptr<const dp::Snapshot> g_snap, g_snap2;  // revisions 1 and 2

bool in_v4(const dp::IpAddr& a, std::uint8_t b0, std::uint8_t b1, std::uint8_t b2) {
  return a.b[0] == b0 && a.b[1] == b1 && a.b[2] == b2;
}
bool protected_side(const dp::IpLayer& l) {
  if (l.version == 4) {
    for (const auto* a : {&l.src, &l.dst})
      if (in_v4(*a, 10, 2, 0) || in_v4(*a, 10, 3, 0)) return true;
    return false;
  }
  for (const auto* a : {&l.src, &l.dst})  // fd00:2::/64
    if (a->b[0] == 0xfd && a->b[1] == 0 && a->b[2] == 0 && a->b[3] == 2 && a->b[4] == 0 &&
        a->b[5] == 0 && a->b[6] == 0 && a->b[7] == 0)
      return true;
  return false;
}

// A chain of mempool mbufs holding `frame`, cut before each offset of `cuts` (increasing).
rte_mbuf* chain_of(const std::uint8_t* frame, std::size_t size, std::vector<std::size_t> cuts) {
  cuts.push_back(size);
  rte_mbuf* head = nullptr;
  std::size_t start = 0;
  for (std::size_t stop : cuts) {
    while (start < stop) {
      const std::size_t n = std::min<std::size_t>(stop - start, 2000);
      rte_mbuf* m = rte_pktmbuf_alloc(g_pool);
      require(m != nullptr);
      std::memcpy(rte_pktmbuf_append(m, static_cast<std::uint16_t>(n)), frame + start, n);
      if (head == nullptr) {
        head = m;
      } else {
        require(rte_pktmbuf_chain(head, m) == 0);
      }
      start += n;
    }
  }
  return head;
}

void check_forwarded(rte_mbuf* m) {
  std::uint32_t sum = 0;
  unsigned segs = 0;
  for (rte_mbuf* s = m; s != nullptr; s = s->next, ++segs) sum += s->data_len;
  require(sum == rte_pktmbuf_pkt_len(m) && segs == m->nb_segs);
  std::vector<std::uint8_t> flat(rte_pktmbuf_pkt_len(m));
  const auto* p = static_cast<const std::uint8_t*>(
      rte_pktmbuf_read(m, 0, static_cast<std::uint32_t>(flat.size()), flat.data()));
  require(p != nullptr || flat.empty());
  if (p != flat.data() && !flat.empty()) std::memcpy(flat.data(), p, flat.size());
  const std::size_t w = std::min<std::size_t>(flat.size(), dp::kParseWindow);
  dp::ParsedPacket pp;
  const auto reason = dp::parse_frame({flat.data(), w}, static_cast<std::uint32_t>(flat.size()), pp);
  require(reason == rules::DropReason::none);
  if (pp.kind == dp::FrameKind::arp) return;
  require(protected_side(pp.outer));
  if (pp.kind == dp::FrameKind::geneve) require(protected_side(pp.inner));
}

std::uint64_t rx_total(const dp::WorkerCounters& c) {
  std::uint64_t n = 0;
  for (const auto& r : c.rx_packets) n += r.get();
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* argv[] = {"pipeline_fuzz", "-l", "0", "--no-huge", "--no-pci", "--no-shconf",
                        "-m", "256", "--log-level=lib.*:error", "--no-telemetry"};
  require(rte_eal_init(static_cast<int>(std::size(argv)), const_cast<char**>(argv)) >= 0);
  g_pool = rte_pktmbuf_pool_create("fuzz", 1023, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
  require(g_pool != nullptr);
  g_snap = zt::fuzz::pipeline_snapshot();
  g_snap2 = zt::fuzz::pipeline_snapshot(2);
  require(g_snap != nullptr && g_snap2 != nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  dp::PipelineConfig cfg;
  cfg.flows.capacity = 256;
  cfg.flows.timeouts = dp::make_timeouts(1'000'000'000);  // the clock ticks in ns
  cfg.replay.packets_per_second = 1e4;
  cfg.frags.capacity = 64;
  cfg.frags.ticks_per_second = 1'000'000'000;
  cfg.l7.flows = 64;
  cfg.geneve = dp::GeneveMode::strip;
  auto pipe = dp::Pipeline::create(cfg);
  require(pipe.has_value());
  if (auto r = (*pipe)->prepare(*g_snap); !r) require(false);
  dp::WorkerCounters c{};

  std::array<rte_mbuf*, 32> burst{};
  std::uint16_t n = 0;
  unsigned port = 0, frames = 0;
  std::int64_t now = zt::fuzz::kNow;
  const dp::Snapshot* snap = g_snap.get();
  auto flush = [&] {
    if (n == 0) return;
    const std::uint64_t rx0 = rx_total(c), drop0 = c.dropped_total();
    const dp::BurstClock clk{static_cast<std::uint64_t>(now), now};
    const std::uint16_t keep = (*pipe)->run(burst.data(), n, port, snap, clk, c);
    require(keep <= n);
    require(rx_total(c) - rx0 == n);
    require(c.dropped_total() - drop0 + keep == n);
    for (std::uint16_t i = 0; i < keep; ++i) {
      check_forwarded(burst[i]);
      rte_pktmbuf_free(burst[i]);
    }
    n = 0;
    now += 1000;  // 1 µs per burst: well inside the tag window
  };

  std::size_t at = 0;
  while (at + 3 <= size && frames < 64) {
    const std::uint8_t ctl = data[at];
    std::size_t len = data[at + 1] | (std::size_t{data[at + 2]} << 8);
    at += 3;
    len = std::min(len, size - at);
    if (len == 0) continue;
    if ((ctl & 1u) != port) flush();  // a burst comes from one port
    port = ctl & 1u;
    std::vector<std::size_t> cuts;
    const unsigned extra = (ctl >> 1) & 3u;
    for (unsigned k = 0; k < extra && len > 1; ++k) {
      const std::size_t cut = 1 + (data[at + (k * 7) % len] * 131u + k * 29u) % (len - 1);
      if (cuts.empty() || cut > cuts.back()) cuts.push_back(cut);
    }
    burst[n++] = chain_of(data + at, len, cuts);
    at += len;
    ++frames;
    if ((ctl & 8u) != 0 || n == burst.size()) flush();
    if ((ctl & 16u) != 0) {
      flush();
      snap = snap == g_snap.get() ? g_snap2.get() : g_snap.get();
      if (auto r = (*pipe)->prepare(*snap); !r) require(false);
      dp::FlowTable& flows = (*pipe)->flows();
      // Re-decisions are bounded per call (32): 8 calls re-decide the whole 256-flow table and
      // still leave at least one whole round under the new revision.
      for (int k = 0; k < 8; ++k) (*pipe)->age(static_cast<std::uint64_t>(now), 2 * flows.bucket_count(), snap, &c);
      const auto rev = static_cast<std::uint32_t>(snap->revision());
      require(flows.all_flows_at(rev));
      flows.for_each([rev](const dp::FlowEntry& e) {
        require(e.revision == rev);
        return true;
      });
    }
  }
  flush();
  static const bool verbose = std::getenv("ZT_FUZZ_VERBOSE") != nullptr;
  if (verbose) {  // which verdicts a seed reaches: ZT_FUZZ_VERBOSE=1 pipeline_fuzz SEED_DIR -runs=0
    std::fprintf(stderr, "frames %u forwarded %llu dropped:", frames,
                 static_cast<unsigned long long>(rx_total(c) - c.dropped_total()));
    for (std::size_t r = 0; r < rules::kDropReasonCount; ++r)
      if (c.drops[r].get() != 0)
        std::fprintf(stderr, " %s=%llu", std::string(rules::to_string(static_cast<rules::DropReason>(r))).c_str(),
                     static_cast<unsigned long long>(c.drops[r].get()));
    std::fprintf(stderr, "\n");
  }
  pipe->reset();
  require(rte_mempool_in_use_count(g_pool) == 0);  // nothing leaked, nothing held
  return 0;
}
