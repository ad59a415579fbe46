#include "zt/dataplane/worker.hpp"

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_prefetch.h>

#include "zt/dataplane/mbuf_parser.hpp"

namespace zt::dp {

std::uint16_t parse_burst(rte_mbuf** pkts, std::uint16_t n, unsigned in_port,
                          WorkerCounters& c) noexcept {
  std::array<std::uint8_t, kParseWindow> scratch;
  ParsedPacket parsed;
  std::uint64_t bytes = 0;
  std::uint16_t keep = 0;

  // Two-stage prefetch: every mbuf header of the burst now (they hold the data pointers), then
  // packet data kPrefetchAhead packets ahead of the parser.
  for (unsigned i = 0; i < n; ++i) rte_prefetch0(pkts[i]);
  for (unsigned i = 0; i < n && i < kPrefetchAhead; ++i)
    rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void*));

  for (std::uint16_t i = 0; i < n; ++i) {
    if (i + kPrefetchAhead < n) rte_prefetch0(rte_pktmbuf_mtod(pkts[i + kPrefetchAhead], void*));
    rte_mbuf* m = pkts[i];
    bytes += rte_pktmbuf_pkt_len(m);
    const DropReason r = parse_mbuf(m, parsed, scratch);
    if (r == DropReason::none) [[likely]] {
      pkts[keep++] = m;
    } else {
      c.drops[static_cast<std::size_t>(r)].inc();
      rte_pktmbuf_free(m);
    }
  }
  c.rx_packets[in_port].add(n);
  c.rx_bytes[in_port].add(bytes);
  return keep;
}

void transmit_burst(rte_mbuf** pkts, std::uint16_t n, std::uint16_t port_id, std::uint16_t queue,
                    unsigned out_port, WorkerCounters& c) noexcept {
  std::uint64_t bytes = 0;
  for (std::uint16_t i = 0; i < n; ++i) bytes += rte_pktmbuf_pkt_len(pkts[i]);

  std::uint16_t sent = 0;
  for (unsigned t = 0; sent < n && t < kTxRetries; ++t)
    sent += rte_eth_tx_burst(port_id, queue, pkts + sent, n - sent);

  if (sent < n) [[unlikely]] {
    for (std::uint16_t i = sent; i < n; ++i) {
      bytes -= rte_pktmbuf_pkt_len(pkts[i]);
      rte_pktmbuf_free(pkts[i]);
    }
    c.drops[static_cast<std::size_t>(DropReason::tx_ring_full)].add(n - sent);
  }
  c.tx_packets[out_port].add(sent);
  c.tx_bytes[out_port].add(bytes);
}

int worker_main(void* arg) noexcept {
  auto& ctx = *static_cast<WorkerContext*>(arg);
  auto& c = *ctx.counters;
  rte_mbuf* pkts[kBurst];
  WorkerClock clock(ctx.clock, {ctx.base_ns, ctx.base_tsc}, 1e9 / static_cast<double>(rte_get_tsc_hz()));
  constexpr unsigned kAgeBucketsWhenIdle = 64, kAgeEveryBusy = 7;  // a mask: every 8th
  unsigned busy_iterations = 0;

  ctx.snapshots->online(ctx.queue);
  while (!ctx.stop->load(std::memory_order_relaxed)) {
    // One snapshot for the whole iteration; quiescent only after the last packet decided by it.
    const Snapshot* snap = ctx.snapshots->acquire();
    clock.refresh();  // a re-anchored wall clock (step, drift) takes effect from this burst on
    const std::uint64_t tsc = rte_rdtsc();
    const BurstClock clk{tsc, clock.now_ns(tsc)};
    bool idle = true;
    for (unsigned in = 0; in < kMaxPorts; ++in) {
      const unsigned out = in ^ 1U;
      const std::uint16_t n = rte_eth_rx_burst(ctx.port_id[in], ctx.queue, pkts, kBurst);
      if (n == 0) continue;
      idle = false;
      const std::uint16_t keep = ctx.pipeline->run(pkts, n, in, snap, clk, c);
      if (keep != 0) {
        if (ctx.pipeline->stage_timing()) [[unlikely]] {
          const std::uint64_t t0 = rte_rdtsc();
          transmit_burst(pkts, keep, ctx.port_id[out], ctx.queue, out, c);
          StageCounter& st = c.stages[static_cast<std::size_t>(Stage::tx)];
          st.calls.inc();
          st.packets.add(keep);
          st.cycles.add(rte_rdtsc() - t0);
        } else {
          transmit_burst(pkts, keep, ctx.port_id[out], ctx.queue, out, c);
        }
      }
      c.busy_cycles.add(rte_rdtsc() - tsc);
    }
    if (idle) {
      c.idle_polls.inc();
      ctx.pipeline->age(tsc, kAgeBucketsWhenIdle, snap, &c);
    } else if ((++busy_iterations & kAgeEveryBusy) == 0) {
      // A worker that is never idle still reaps expired flows (identity quotas, `show flows`):
      // one bucket every 8th busy iteration. Each occupied slot costs a miss on its entry (a
      // 1M-flow table has 2^18 buckets of ~4 flows): ~50 cycles an iteration, about one cycle
      // per packet; the table is swept in about 14 s at 150k full iterations/s. At the
      // admission watermark the pipeline ages one bucket per burst on top (pipeline.cpp).
      ctx.pipeline->age(tsc, 1, snap, &c);
    }
    if (ctx.mailbox != nullptr) ctx.mailbox->service(*ctx.pipeline, c);
    ctx.snapshots->quiescent(ctx.queue);
  }
  ctx.snapshots->offline(ctx.queue);
  return 0;
}

}  // namespace zt::dp
