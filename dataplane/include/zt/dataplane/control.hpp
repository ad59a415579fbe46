// The dataplane's control API (DESIGN.md §1, §4): the one header the control plane (admin
// socket, metrics, manager sync) uses to drive the workers. Three things cross from the control
// lcore to the workers, and nothing else:
//
//   - a policy/key snapshot, published by RCU pointer swap (`Control::publish`);
//   - counters, read without stopping anybody (`Control::counters`: a plain CounterSnapshot);
//   - commands, posted to a worker's mailbox: a single-producer single-consumer rte_ring
//     created at set-up, drained by the worker once per loop iteration, a bounded amount of work
//     per iteration (flow-table walks advance kFlowsPerStep entries at a time). The worker copies
//     what the control side asked for (a flow dump, trace records) into memory the control side
//     provided; the control side never reads a worker's flow table or pipeline state.
//
// Every command carries a sequence number; the worker publishes the last one it completed, so
// the control side waits with a deadline and says which worker did not answer instead of
// hanging. Memory a late worker may still write (a result, a dump buffer) stays alive until that
// worker reports the command done.
//
// All `Control` methods are for control threads (they may allocate, sleep and lock); none may
// be called from a worker lcore.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <expected>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "zt/dataplane/counters.hpp"
#include "zt/dataplane/flow_log.hpp"
#include "zt/dataplane/flow_table.hpp"
#include "zt/dataplane/snapshot.hpp"
#include "zt/dataplane/trace.hpp"
#include "zt/dataplane/volumetric.hpp"
#include "zt/rules/types.hpp"

struct rte_ring;

namespace zt::dp {

class Pipeline;

// Which flows a flush or a dump applies to; every field set must match, none set matches all.
struct FlowFilter {
  std::optional<std::uint32_t> identity;     // the identity that opened the flow
  std::optional<rules::IpAddress> address;   // either endpoint
  std::optional<std::uint16_t> port;         // either endpoint's port
  bool matches(const FlowEntry& e) const noexcept;
};

// One flow as a dump reports it, oriented from the side that opened it.
struct FlowRecord {
  std::array<std::uint8_t, 16> src{}, dst{};  // initiator, responder (IPv4 in the first 4 bytes)
  std::uint16_t sport = 0, dport = 0;
  std::uint8_t proto = 0;
  std::uint8_t version = 0;
  TcpState tcp = TcpState::none;
  std::uint32_t identity = 0;
  std::uint32_t rule_id = 0;
  std::uint32_t revision = 0;
  std::uint64_t packets_out = 0, packets_back = 0;  // initiator → responder, and back
  std::uint64_t bytes_out = 0, bytes_back = 0;
  std::uint64_t last_seen = 0;  // worker's clock (TSC)
  unsigned worker = 0;          // filled in by the control side
};
FlowRecord to_record(const FlowEntry& e) noexcept;

enum class CommandKind : std::uint8_t {
  flush_flows,     // erase the flows matching `filter`; result: how many
  dump_flows,      // copy up to `out_capacity` flows matching `filter` to `out`; result: how many
  reset_counters,  // zero every counter of the worker (the worker writes them, so it resets them)
  stage_timing,    // arg: 1 on, 0 off
  trace,           // arg: trace the next `arg` packets; 0 stops
  dump_blocklist,    // copy up to `out_capacity` live blocklist entries to `vol_out`
  dump_top_talkers,  // copy up to `out_capacity` top talkers (current window first) to `vol_out`
  clear_blocklist,   // remove entries inside filter.address/arg (no address: all); result: how many
  set_flow_timeouts, // replace the flow table's idle timeouts with `*timeouts` (between bursts)
};
std::string_view to_string(CommandKind k) noexcept;

// Written by the worker before it publishes the command as done.
struct CommandResult {
  std::uint64_t count = 0;
  bool truncated = false;  // dump: more flows matched than fitted
};

struct Command {
  std::uint64_t seq = 0;
  CommandKind kind = CommandKind::reset_counters;
  FlowFilter filter;
  std::uint64_t arg = 0;
  FlowRecord* out = nullptr;
  std::uint32_t out_capacity = 0;
  CommandResult* result = nullptr;
  VolumetricEntry* vol_out = nullptr;  // dump_blocklist, dump_top_talkers
  const FlowTimeouts* timeouts = nullptr;  // set_flow_timeouts (held by the control side until done)
};
static_assert(std::is_trivially_copyable_v<Command> && sizeof(Command) % 4 == 0);

// One worker's mailbox: its command ring, its trace ring, and the last command it completed.
class WorkerMailbox {
 public:
  static constexpr unsigned kCommandsPerLoop = 4;     // at most this many finish per iteration
  static constexpr std::uint32_t kFlowsPerStep = 16384;  // flow-table entries walked per iteration

  // `name` makes the ring names unique (EAL names, at most 24 characters); the rings hold
  // exactly `depth` commands and `trace_depth` trace records.
  static std::expected<std::unique_ptr<WorkerMailbox>, std::string> create(
      const std::string& name, unsigned depth, unsigned trace_depth);
  ~WorkerMailbox();
  WorkerMailbox(const WorkerMailbox&) = delete;
  WorkerMailbox& operator=(const WorkerMailbox&) = delete;

  // Worker side, once per loop iteration: starts or continues the pending commands, bounded.
  // Returns how many completed. Never blocks, allocates or makes a system call.
  unsigned service(Pipeline& p, WorkerCounters& c) noexcept;

  // Control side (one producer).
  bool post(const Command& cmd) noexcept;
  std::uint64_t done() const noexcept { return done_.load(std::memory_order_acquire); }
  unsigned drain_trace(TraceRecord* out, unsigned max) noexcept;
  rte_ring* trace_ring() const noexcept { return trace_; }

 private:
  WorkerMailbox() = default;
  bool step(Pipeline& p, WorkerCounters& c) noexcept;  // true: the current command is complete

  rte_ring* cmds_ = nullptr;
  rte_ring* trace_ = nullptr;
  // Worker-owned.
  Command cur_{};
  bool busy_ = false;
  std::uint32_t cursor_ = 0;
  // Written by the worker, read by the control side: its own line.
  alignas(64) std::atomic<std::uint64_t> done_{0};
};

// What the control side knows of one worker.
struct ControlWorker {
  unsigned lcore = 0;
  unsigned queue = 0;
  WorkerCounters* counters = nullptr;
  // Its pipeline, prepared for every snapshot before it is published (the L7 scratch); may be
  // null (a worker without L7 state, in tests).
  Pipeline* pipeline = nullptr;
};

struct ControlConfig {
  unsigned mailbox_depth = 64;     // commands that can wait in a worker's mailbox
  unsigned trace_depth = 4096;     // trace records a worker's trace ring holds until drained
  std::string name = "zt";         // prefix of the ring names (unique per process)
  std::chrono::milliseconds timeout{2000};  // default wait for a worker's answer
  VolumetricConfig volumetric;     // limits attached to every published snapshot (volumetric.hpp)
};

class Control {
 public:
  static std::expected<std::unique_ptr<Control>, std::string> create(
      SnapshotChannel& snapshots, std::span<const ControlWorker> workers, const ControlConfig& cfg = {});
  ~Control();

  // Ports whose hardware counters counters() adds (index 0 = zone A side); optional.
  void set_ports(const std::array<std::uint16_t, kMaxPorts>& ids,
                 const std::array<std::string, kMaxPorts>& names);

  // Snapshot: prepares every worker's pipeline for it (Pipeline::prepare: Hyperscan scratch,
  // allocated here and not on the fast path), then see SnapshotChannel::publish (returns once no
  // worker can use the previous one). A worker whose preparation failed refuses L7 flows
  // (l7_not_ready) under this snapshot; the reason is kept in last_prepare_error().
  void publish(std::shared_ptr<const Snapshot> s);
  std::string last_prepare_error() const;
  std::shared_ptr<const Snapshot> snapshot() const;

  CounterSnapshot counters() const;

  unsigned worker_count() const noexcept { return static_cast<unsigned>(workers_.size()); }
  // The mailbox worker `w` drains (WorkerContext::mailbox).
  WorkerMailbox& mailbox(unsigned w) noexcept { return *workers_[w].mailbox; }

  // Commands to every worker; each waits for every worker's answer up to `timeout` (default:
  // ControlConfig::timeout) and fails naming every worker that did not answer.
  std::expected<std::uint64_t, std::string> flush_flows(const FlowFilter& f = {},
                                                        std::optional<std::chrono::milliseconds> timeout = {});
  // At most `max` flows in all, in worker order; `truncated` says more matched.
  struct FlowDump {
    std::vector<FlowRecord> flows;
    bool truncated = false;
  };
  std::expected<FlowDump, std::string> dump_flows(const FlowFilter& f, std::size_t max,
                                                  std::optional<std::chrono::milliseconds> timeout = {});
  std::expected<void, std::string> reset_counters(std::optional<std::chrono::milliseconds> timeout = {});
  std::expected<void, std::string> set_stage_timing(bool on, std::optional<std::chrono::milliseconds> timeout = {});
  // Trace the next `packets` packets on each worker (0: stop).
  std::expected<void, std::string> trace(std::uint64_t packets,
                                         std::optional<std::chrono::milliseconds> timeout = {});
  // Moves up to `max` trace records (each worker's in order) into `out`; returns how many.
  std::size_t drain_trace(std::vector<TraceRecord>& out, std::size_t max = SIZE_MAX);

  // Volumetric filtering (volumetric.hpp, dataplane/README.md "Volumetric").
  // The limits in force; set_volumetric validates, then republishes the current snapshot with
  // them (every worker uses the new limits from its next burst; buckets and blocklist are kept).
  VolumetricConfig volumetric() const;
  std::expected<void, std::string> set_volumetric(const VolumetricConfig& cfg);
  // Live blocklist entries of every worker (each entry names its worker).
  std::expected<std::vector<VolumetricEntry>, std::string> blocklist(
      std::size_t max = 4096, std::optional<std::chrono::milliseconds> timeout = {});
  // Top talkers among untagged / invalid-tag sources, summed over workers by prefix, largest
  // first (estimated packets in the current window, else the previous one).
  std::expected<std::vector<VolumetricEntry>, std::string> top_talkers(
      std::size_t max = 16, std::optional<std::chrono::milliseconds> timeout = {});
  // Removes blocklist entries overlapping `prefix` (inside it or holding it; none: all);
  // returns how many live ones.
  std::expected<std::uint64_t, std::string> clear_blocklist(
      std::optional<rules::IpPrefix> prefix = {}, std::optional<std::chrono::milliseconds> timeout = {});
  // Flow idle timeouts (in TSC ticks, see make_timeouts): every worker's flow table uses `t`
  // from its next loop iteration on, for the flows it holds and the ones it creates. Validates
  // (every timeout at least one tick); fails naming every worker that did not answer. Once
  // posted, `t` is what flow_timeouts() reports: the workers that answered use it, and a late
  // worker does once it drains its mailbox (a worker whose mailbox was full never gets it).
  std::expected<void, std::string> set_flow_timeouts(const FlowTimeouts& t,
                                                     std::optional<std::chrono::milliseconds> timeout = {});
  // The timeouts last passed to set_flow_timeouts; nullopt before the first call (the workers
  // then use what their FlowTableConfig said).
  std::optional<FlowTimeouts> flow_timeouts() const;

  // Moves up to `max` flow-log records (each worker's in order, `worker` filled in) into `out`.
  std::size_t drain_flow_logs(std::vector<FlowLogRecord>& out, std::size_t max = SIZE_MAX);

  // The single-worker form the commands above are built on. Wait for every ticket posted: the
  // result stays held until then (or, after a timed-out wait, until the worker completes it).
  struct Ticket {
    unsigned worker = 0;
    std::uint64_t seq = 0;
    CommandKind kind = CommandKind::reset_counters;
  };
  struct Reply {
    CommandResult result;
    std::vector<FlowRecord> flows;  // dump_flows
    std::vector<VolumetricEntry> entries;  // dump_blocklist, dump_top_talkers
  };
  // `timeouts`: set_flow_timeouts only (copied; the copy lives until the worker is done).
  std::expected<Ticket, std::string> post(unsigned worker, CommandKind kind, const FlowFilter& f = {},
                                          std::uint64_t arg = 0, std::uint32_t dump_capacity = 0,
                                          const FlowTimeouts* timeouts = nullptr);
  std::expected<Reply, std::string> wait(const Ticket& t, std::chrono::steady_clock::time_point deadline);

 private:
  struct Pending {
    std::uint64_t seq = 0;
    std::unique_ptr<CommandResult> result;
    std::unique_ptr<FlowRecord[]> out;
    std::unique_ptr<VolumetricEntry[]> vol_out;
    std::unique_ptr<FlowTimeouts> timeouts;  // set_flow_timeouts: read by the worker
    bool abandoned = false;  // its wait timed out: freed once the worker reports it done
  };
  struct Worker {
    ControlWorker info;
    std::unique_ptr<WorkerMailbox> mailbox;
    std::uint64_t next_seq = 1;
    std::vector<Pending> pending;  // posted, not yet done: their memory stays until then
  };
  Control(SnapshotChannel& s, ControlConfig cfg) : snapshots_(&s), cfg_(std::move(cfg)) {}
  void reap(Worker& w);
  std::string who(unsigned w) const;
  template <typename OnReply>
  std::expected<void, std::string> all(CommandKind kind, const FlowFilter& f, std::uint64_t arg,
                                       std::uint32_t dump_capacity,
                                       std::optional<std::chrono::milliseconds> timeout, OnReply&& on_reply);

  SnapshotChannel* snapshots_;
  ControlConfig cfg_;
  std::vector<Worker> workers_;
  std::string prepare_error_;  // guarded by publish_mu_
  std::optional<FlowTimeouts> flow_timeouts_;  // guarded by publish_mu_
  void publish_locked(std::shared_ptr<const Snapshot> s);  // publish_mu_ held
  std::array<std::uint16_t, kMaxPorts> port_ids_{};
  std::array<std::string, kMaxPorts> port_names_;
  mutable std::mutex publish_mu_;
  std::recursive_mutex command_mu_;  // post/wait may be called alone or under all()
};

}  // namespace zt::dp
