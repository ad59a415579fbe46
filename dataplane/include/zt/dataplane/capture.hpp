// Packet capture (`ztctl capture start FILE [--drops-only] [--count N]`, `capture stop`).
//
// Worker side: each worker's Pipeline holds a CaptureTap (Pipeline::set_capture, once at
// set-up). While a capture is armed, the pipeline offers every packet it decided, with its
// verdict, at the end of the burst (dropped ones before they are freed, forwarded ones as they
// leave, i.e. after a Geneve strip). The tap copies at most `snaplen` bytes into an mbuf of a
// preallocated capture pool and enqueues it on the worker's own SPSC rte_ring; an empty pool or
// a full ring loses the packet and counts it (`lost`). It never waits, allocates from the heap,
// locks or makes a system call; disarmed, it costs one relaxed atomic load per packet.
//
// Control side: Capture owns the pool, the rings and the taps; start() opens a pcapng file
// and arms the taps, poll() moves queued copies into the file (call it every few ms from a
// control thread), stop() disarms, drains and closes. Each packet is an Enhanced Packet Block
// on the interface of the port it arrived on, with its verdict in a comment ("dropped:
// policy_deny — an explicit deny rule matched the flow" / "forwarded") and the direction flag
// inbound. The pcapng writer is ours (rte_pcapng in 22.11 has no per-packet comment).
#pragma once

#include <rte_mbuf.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <expected>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "zt/rules/drop_reason.hpp"

struct rte_ring;
struct rte_mempool;

namespace zt::dp {

// Stored in the private area of each captured copy.
struct CaptureMeta {
  std::int64_t time_ns = 0;   // the burst's wall clock
  std::uint32_t orig_len = 0; // frame length before the snap
  std::uint16_t drop = 0;     // rules::DropReason; 0 = forwarded
  std::uint8_t port = 0;      // port index it arrived on
  std::uint8_t worker = 0;
};

class CaptureTap {
 public:
  // Worker side, per packet: copies `m` if a capture is armed and wants it. noexcept, bounded.
  void offer(const rte_mbuf* m, rules::DropReason drop, unsigned in_port, std::int64_t now_ns) noexcept {
    const std::uint32_t mode = mode_.load(std::memory_order_relaxed);
    if ((mode & kArmed) == 0) [[likely]]
      return;
    if ((mode & kDropsOnly) != 0 && drop == rules::DropReason::none) return;
    copy(m, drop, in_port, now_ns, mode >> kSnapShift);
  }

  // Read by the control side (single writer: the worker).
  std::uint64_t captured() const noexcept { return captured_.load(std::memory_order_relaxed); }
  std::uint64_t lost() const noexcept { return lost_.load(std::memory_order_relaxed); }

 private:
  friend class Capture;
  static constexpr std::uint32_t kArmed = 1, kDropsOnly = 2, kSnapShift = 16;
  void copy(const rte_mbuf* m, rules::DropReason drop, unsigned in_port, std::int64_t now_ns,
            std::uint32_t snaplen) noexcept;

  std::atomic<std::uint32_t> mode_{0};  // kArmed | kDropsOnly | snaplen << kSnapShift
  rte_ring* ring_ = nullptr;
  rte_mempool* pool_ = nullptr;
  std::uint8_t worker_ = 0;
  alignas(64) std::atomic<std::uint64_t> captured_{0}, lost_{0};
};

struct CaptureConfig {
  std::string name = "zt";            // EAL object name prefix (unique per process)
  unsigned workers = 1;
  unsigned ring_depth = 1024;         // copies a worker can queue before the writer drains them
  unsigned pool_size = 4095;          // copy mbufs shared by all workers
  std::uint16_t max_snaplen = 2048;   // data room of a copy: the largest snaplen start() accepts
  int socket = -1;                    // NUMA socket of pool and rings (-1: any)
};

struct CaptureRequest {
  std::string file;               // pcapng output (created or truncated, mode 0640)
  bool drops_only = false;        // only packets the pipeline dropped
  std::uint64_t count = 0;        // stop after writing this many (0: until stop())
  std::uint16_t snaplen = 0;      // bytes kept per packet (0: CaptureConfig::max_snaplen)
  std::vector<std::string> port_names;  // one pcapng interface per port (default: port0, port1)
};

struct CaptureStatus {
  bool active = false;
  std::string file;
  bool drops_only = false;
  std::uint64_t count = 0;     // requested (0: unlimited)
  std::uint64_t written = 0;   // packets in the file
  std::uint64_t lost = 0;      // copies lost since start: pool empty or ring full
  std::uint64_t write_errors = 0;
  std::string error;           // the last write error, if any
};

class Capture {
 public:
  static std::expected<std::unique_ptr<Capture>, std::string> create(const CaptureConfig& cfg);
  ~Capture();
  Capture(const Capture&) = delete;
  Capture& operator=(const Capture&) = delete;

  // The tap worker `w` installs in its pipeline (Pipeline::set_capture).
  CaptureTap& tap(unsigned w) noexcept { return *taps_[w]; }
  unsigned workers() const noexcept { return static_cast<unsigned>(taps_.size()); }

  // Control side (thread-safe). start fails if a capture is running or the file cannot be made.
  std::expected<void, std::string> start(const CaptureRequest& r);
  // Writes the queued copies; returns how many. Stops the capture by itself once `count` are
  // written (status().active turns false). Call periodically while active.
  std::size_t poll();
  // Disarms, writes what is queued, closes the file; returns the final status.
  std::expected<CaptureStatus, std::string> stop();
  CaptureStatus status() const;

 private:
  Capture() = default;
  std::size_t drain_locked(bool write);
  void finish_locked();
  void disarm() noexcept;
  bool write_packet(const rte_mbuf* m, const CaptureMeta& meta);

  CaptureConfig cfg_;
  rte_mempool* pool_ = nullptr;
  std::vector<std::unique_ptr<CaptureTap>> taps_;
  mutable std::mutex mu_;
  std::FILE* out_ = nullptr;
  CaptureStatus st_;
  std::vector<std::uint64_t> lost_at_start_;
  std::uint32_t snaplen_ = 0;
  unsigned interfaces_ = 0;
};

}  // namespace zt::dp
