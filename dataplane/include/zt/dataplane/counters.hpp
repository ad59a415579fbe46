// Per-lcore counters: one writer each (the worker that owns them), read by the control lcore
// without stopping anybody (DESIGN.md §4). Relaxed atomics compile to plain loads and stores on
// x86-64; they only make the cross-thread read well defined.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "zt/rules/drop_reason.hpp"

namespace zt::dp {

inline constexpr unsigned kMaxPorts = 2;  // zone A side, zone B side

// A counter with exactly one writer.
class Counter {
 public:
  void add(std::uint64_t n) noexcept { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  void inc() noexcept { add(1); }
  std::uint64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }
  void reset() noexcept { v_.store(0, std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

// What one worker (one RX/TX queue pair per port) counted. Cache-line aligned so two workers
// never share a line.
struct alignas(64) WorkerCounters {
  std::array<Counter, kMaxPorts> rx_packets;  // received on port p, queue = this worker's
  std::array<Counter, kMaxPorts> rx_bytes;
  std::array<Counter, kMaxPorts> tx_packets;  // sent out of port p
  std::array<Counter, kMaxPorts> tx_bytes;
  std::array<Counter, rules::kDropReasonCount> drops;  // by reason
  Counter new_flows;      // flows admitted
  Counter audit_flows;    // flows admitted only because their segment is in audit mode
  Counter revoked_flows;  // established flows cut because a new policy revision denies them
  Counter idle_polls;  // polls of both ports that found nothing
  Counter busy_cycles; // TSC cycles spent on polls that found packets

  std::uint64_t dropped_total() const noexcept {
    std::uint64_t s = 0;
    for (const auto& d : drops) s += d.get();
    return s;
  }
};

// A plain copy of every worker's counters, taken by the control lcore.
struct CounterSnapshot {
  struct Worker {
    unsigned lcore = 0;
    unsigned queue = 0;
    std::array<std::uint64_t, kMaxPorts> rx_packets{}, rx_bytes{}, tx_packets{}, tx_bytes{};
    std::array<std::uint64_t, rules::kDropReasonCount> drops{};
    std::uint64_t busy_cycles = 0;
    std::uint64_t new_flows = 0, audit_flows = 0, revoked_flows = 0;
  };
  struct Port {
    std::string name;
    std::uint64_t hw_ipackets = 0, hw_opackets = 0, hw_imissed = 0, hw_ierrors = 0,
                  hw_oerrors = 0, hw_rx_nombuf = 0;
  };
  std::vector<Worker> workers;
  std::vector<Port> ports;

  std::uint64_t rx_total() const noexcept;
  std::uint64_t tx_total() const noexcept;
  std::uint64_t dropped_total() const noexcept;
  std::uint64_t drops(rules::DropReason r) const noexcept;
};

CounterSnapshot::Worker copy_worker(const WorkerCounters& c, unsigned lcore, unsigned queue);

// Human-readable table, as printed by ztgate on exit.
std::string format_counters(const CounterSnapshot& s);
// JSON, for scripts and tests (`ztgate --stats-file`).
std::string counters_to_json(const CounterSnapshot& s);

}  // namespace zt::dp
