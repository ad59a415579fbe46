// The poll-mode worker: one per lcore, run to completion (DESIGN.md §4). Each worker owns one
// RX/TX queue pair on each of the two ports and forwards A→B and B→A through the pipeline.
#pragma once

#include <rte_mbuf.h>

#include <atomic>
#include <cstdint>

#include "zt/dataplane/counters.hpp"

namespace zt::dp {

inline constexpr std::uint16_t kBurst = 32;
inline constexpr unsigned kPrefetchAhead = 4;
inline constexpr unsigned kTxRetries = 8;

// Runs the pipeline over a burst received on port index `in_port` (0 or 1). Packets to forward
// are compacted to the front of `pkts` in arrival order and their count returned; the others
// are freed and counted by drop reason in `c`. Also counts the received packets and bytes.
std::uint16_t pipeline_burst(rte_mbuf** pkts, std::uint16_t n, unsigned in_port,
                             WorkerCounters& c) noexcept;

// Sends `n` packets on (port_id, queue), retrying a bounded number of times when the queue is
// full; what still does not fit is freed and counted as tx_ring_full. Counts what was sent.
void transmit_burst(rte_mbuf** pkts, std::uint16_t n, std::uint16_t port_id, std::uint16_t queue,
                    unsigned out_port, WorkerCounters& c) noexcept;

struct WorkerContext {
  unsigned lcore = 0;
  std::uint16_t queue = 0;
  std::uint16_t port_id[kMaxPorts] = {};
  WorkerCounters* counters = nullptr;
  const std::atomic<bool>* stop = nullptr;
};

// The lcore entry point (rte_eal_remote_launch); `arg` is a WorkerContext*.
int worker_main(void* arg) noexcept;

}  // namespace zt::dp
