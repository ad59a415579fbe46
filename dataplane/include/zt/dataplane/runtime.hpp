// EAL, ports and workers: everything ztgate needs to move packets between its two ports.
// Set-up returns std::expected with a message that names the option to change.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <expected>
#include <memory>
#include <string>
#include <vector>

#include "zt/dataplane/capture.hpp"
#include "zt/dataplane/clock.hpp"
#include "zt/dataplane/control.hpp"
#include "zt/dataplane/counters.hpp"
#include "zt/dataplane/pipeline.hpp"
#include "zt/dataplane/snapshot.hpp"
#include "zt/dataplane/worker.hpp"

namespace zt::dp {

enum class Hugepages : std::uint8_t { auto_detect, on, off };

struct RuntimeConfig {
  // Device specs: a DPDK virtual device ("net_af_packet0,iface=veth0", "net_pcap0,rx_pcap=f")
  // or a PCI address ("0000:03:00.0"). Index 0 is the zone A side, 1 the zone B side.
  std::array<std::string, kMaxPorts> ports;
  unsigned workers = 1;          // worker lcores; each owns one RX/TX queue pair per port
  std::string lcores;            // EAL lcore list; empty: "0-<workers>" (main + workers);
                                 // with '@' an lcore-to-CPU map ("0@0,1@1,2@1")
  Hugepages hugepages = Hugepages::auto_detect;
  unsigned memory_mb = 256;      // EAL memory when running without hugepages
  std::string file_prefix = "ztgate";
  unsigned mbufs = 16383;        // mbuf pool size (per socket)
  std::uint16_t rx_desc = 1024;
  std::uint16_t tx_desc = 1024;
  bool promiscuous = true;       // a bump in the wire forwards frames for any MAC
  std::string eal_log_level = "notice";
  std::vector<std::string> extra_eal_args;  // passed to rte_eal_init verbatim, last
  // Pipeline (per worker).
  std::uint32_t flows = 1U << 20;   // flow table capacity per worker
  std::uint32_t flow_quota = 0;     // flows one identity may hold per worker; 0: no quota
  GeneveMode geneve = GeneveMode::strip;
  double replay_pps = 15e6;         // accepted tags per second the replay filter is sized for
  // The replay filter's window W (it remembers a MAC for at least 2W). Tags are fresh for at
  // most ±W whatever the key ring says (the verifier narrows to it); memory grows with pps × W.
  std::int64_t tag_window_ns = 1'000'000'000;
  unsigned flow_log_depth = 4096;   // flow-log records a worker's ring holds until drained
  // Control API (control.hpp): mailbox and trace ring depths, default command timeout.
  ControlConfig control;
};

// How the dataplane's clock has followed the wall clock (Runtime::poll_clock).
struct ClockStatus {
  std::uint64_t checks = 0;       // samples of CLOCK_REALTIME against the TSC-derived clock
  std::uint64_t adjustments = 0;  // re-anchors within ClockFollowConfig::step_ns (drift, slew)
  std::uint64_t steps = 0;        // re-anchors beyond it: the wall clock stepped
  std::int64_t last_step_ns = 0;  // size of the last step, > 0 forward
  std::int64_t last_step_unix_ns = 0;  // the wall clock just after it (0: none yet)
  std::int64_t offset_ns = 0;     // wall minus dataplane clock at the last check, before it acted
};

// True when `spec` names a virtual device rather than a PCI address.
bool is_vdev(const std::string& spec) noexcept;
// The ethdev name EAL gives the port created from `spec`.
std::string port_name(const std::string& spec);
// The argv ztgate passes to rte_eal_init (without argv[0]).
std::vector<std::string> build_eal_args(const RuntimeConfig& cfg, bool hugepages_available);
// Whether this machine has hugepages reserved (HugePages_Total > 0 in /proc/meminfo).
bool hugepages_reserved();

class Runtime {
 public:
  // Initialises EAL, the mbuf pool and both ports. Call once per process.
  static std::expected<std::unique_ptr<Runtime>, std::string> create(const RuntimeConfig& cfg);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Launches one worker per worker lcore.
  std::expected<void, std::string> start();
  // Stops the workers, waits for them, stops the ports. Idempotent.
  void stop();

  // The control loop calls this often (every 20 ms in ztgate); every ~100 ms it compares
  // CLOCK_REALTIME with the workers' TSC-derived clock and publishes a new anchor when they
  // differ by more than 1 ms (ClockFollowConfig): workers follow from their next burst, forward
  // and back. Returns a line for the operator's log when the wall clock stepped (> 20 ms; at
  // most 5 lines at once, then one every 10 s; steps left out are counted in the next), else an
  // empty string.
  std::string poll_clock();
  ClockStatus clock_status() const noexcept;

  // Makes `s` the snapshot every worker decides by, hitlessly (RCU); returns once no worker
  // can still be using the previous one, which is then released.
  void publish(std::shared_ptr<const Snapshot> s) { control_->publish(std::move(s)); }
  std::shared_ptr<const Snapshot> snapshot() const { return control_->snapshot(); }

  CounterSnapshot counters() const { return control_->counters(); }
  // Everything the control plane does to the workers (commands, trace, counters, publish).
  Control& control() noexcept { return *control_; }
  // Packet capture to pcapng (start/poll/stop from a control thread; capture.hpp).
  Capture& capture() noexcept { return *capture_; }
  unsigned worker_count() const noexcept { return static_cast<unsigned>(contexts_.size()); }
  const std::array<std::string, kMaxPorts>& port_names() const noexcept { return names_; }

 private:
  Runtime() = default;
  std::expected<void, std::string> setup_port(unsigned index, const RuntimeConfig& cfg);

  std::array<std::uint16_t, kMaxPorts> port_ids_{};
  std::array<std::string, kMaxPorts> names_;
  std::array<bool, kMaxPorts> port_started_{};
  struct rte_mempool* pool_ = nullptr;
  std::vector<WorkerContext> contexts_;
  std::unique_ptr<WorkerCounters[]> counters_;
  std::vector<std::unique_ptr<Pipeline>> pipelines_;
  std::unique_ptr<SnapshotChannel> snapshots_;
  std::unique_ptr<Control> control_;
  std::unique_ptr<Capture> capture_;
  std::atomic<bool> stop_{false};
  // The workers' clock: one anchor for all, written by poll_clock (one control thread).
  ClockAnchorCell clock_;
  ClockAnchor anchor_;
  std::uint64_t next_clock_check_tsc_ = 0;
  std::uint64_t last_log_tsc_ = 0;
  double log_tokens_ = 5;
  std::uint64_t unlogged_steps_ = 0;
  std::int64_t tag_window_ns_ = 0;
  std::atomic<std::uint64_t> clock_checks_{0}, clock_adjustments_{0}, clock_steps_{0};
  std::atomic<std::int64_t> clock_last_step_ns_{0}, clock_last_step_at_{0}, clock_offset_ns_{0};
  bool launched_ = false;
  bool eal_ready_ = false;
};

}  // namespace zt::dp
