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
  bool launched_ = false;
  bool eal_ready_ = false;
};

}  // namespace zt::dp
