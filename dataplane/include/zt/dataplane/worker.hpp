// The poll-mode worker: one per lcore, run to completion (DESIGN.md §4). Each worker owns one
// RX/TX queue pair on each of the two ports and forwards A→B and B→A through the pipeline.
#pragma once

#include <rte_mbuf.h>

#include <atomic>
#include <cstdint>

#include "zt/dataplane/burst.hpp"
#include "zt/dataplane/clock.hpp"
#include "zt/dataplane/control.hpp"
#include "zt/dataplane/counters.hpp"
#include "zt/dataplane/pipeline.hpp"
#include "zt/dataplane/snapshot.hpp"

namespace zt::dp {

// Parses a burst received on port index `in_port` and keeps what parses, with no policy: the
// parser-and-forwarding floor that perf/pipeline_bench compares the full pipeline against.
// Kept packets are compacted to the front of `pkts`; the others are freed and counted.
std::uint16_t parse_burst(rte_mbuf** pkts, std::uint16_t n, unsigned in_port,
                          WorkerCounters& c) noexcept;

// Sends `n` packets on (port_id, queue), retrying a bounded number of times when the queue is
// full; what still does not fit is freed and counted as tx_ring_full. Counts what was sent.
void transmit_burst(rte_mbuf** pkts, std::uint16_t n, std::uint16_t port_id, std::uint16_t queue,
                    unsigned out_port, WorkerCounters& c) noexcept;

struct WorkerContext {
  unsigned lcore = 0;
  std::uint16_t queue = 0;  // also this worker's reader index in the snapshot channel
  std::uint16_t port_id[kMaxPorts] = {};
  WorkerCounters* counters = nullptr;
  Pipeline* pipeline = nullptr;
  SnapshotChannel* snapshots = nullptr;
  WorkerMailbox* mailbox = nullptr;  // drained once per loop iteration; null: no commands
  const std::atomic<bool>* stop = nullptr;
  // Wall clock for tag freshness, extrapolated from the TSC (no system call per burst; clock.hpp).
  // The anchor published in `clock` (Runtime: re-published when the wall clock steps or drifts),
  // read between bursts; until its first publish, or with no cell, base_ns at base_tsc.
  const ClockAnchorCell* clock = nullptr;
  std::int64_t base_ns = 0;
  std::uint64_t base_tsc = 0;
};

// The lcore entry point (rte_eal_remote_launch); `arg` is a WorkerContext*.
int worker_main(void* arg) noexcept;

}  // namespace zt::dp
