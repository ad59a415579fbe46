// Per-lcore counters: one writer each (the worker that owns them), read by the control lcore
// without stopping anybody (DESIGN.md §4). Relaxed atomics compile to plain loads and stores on
// x86-64; they only make the cross-thread read well defined.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "zt/rules/drop_reason.hpp"
#include "zt/rules/types.hpp"

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

// Who sent a packet, as far as the worker could tell (DESIGN.md §2, §3). The class of an
// untagged packet of an established flow is that of the identity that opened the flow, so the
// replies to a verified identity's flow count as `verified`.
#define ZT_IDENTITY_CLASSES(X)                                                                  \
  X(verified, "tagged, the tag verified (MAC and replay), or a reply in such a flow")            \
  X(unverified, "tagged, dropped before its tag was verified (deny, no policy, ...)")           \
  X(segment, "untagged, from a segment a rule names as a source")                              \
  X(unauthenticated, "untagged, from no named segment")                                        \
  X(invalid, "failed a tag check (decode, MAC, replay, key, identity, tag missing)")           \
  X(none, "not an IP packet the policy decides (unparseable, ARP)")

enum class IdentityClass : std::uint8_t {
#define ZT_IC_ENUM(name, desc) name,
  ZT_IDENTITY_CLASSES(ZT_IC_ENUM)
#undef ZT_IC_ENUM
      count_,
};
inline constexpr std::size_t kIdentityClassCount = static_cast<std::size_t>(IdentityClass::count_);
std::string_view to_string(IdentityClass c) noexcept;
std::string_view describe(IdentityClass c) noexcept;

// Per-stage cycle counters (like VPP's `show runtime`), only written while stage timing is on.
// The pipeline's passes (pipeline.hpp) plus the worker's transmit.
#define ZT_STAGES(X)                                                                             \
  X(parse, "parse every packet, build flow keys")                                                \
  X(lookup, "flow-table bulk lookup")                                                            \
  X(classify, "identity and policy for new flows")                                               \
  X(verify, "batched tag MAC verification and replay filter")                                   \
  X(finish, "admit / follow / forward-or-drop, counters")                                        \
  X(tx, "transmit (with bounded retry)")

enum class Stage : std::uint8_t {
#define ZT_ST_ENUM(name, desc) name,
  ZT_STAGES(ZT_ST_ENUM)
#undef ZT_ST_ENUM
      count_,
};
inline constexpr std::size_t kStageCount = static_cast<std::size_t>(Stage::count_);
std::string_view to_string(Stage s) noexcept;

// Per-rule counters: a fixed number of slots per worker, keyed by rule id (ids are stable
// across policy revisions, indices into a snapshot are not), so a rule that survives a new
// revision keeps its counts. Rule ids seen beyond kRuleSlots land in one overflow slot.
inline constexpr std::uint32_t kRuleSlots = 4096;

struct RuleSlot {
  std::atomic<std::uint32_t> rule_id{0};
  Counter flows_admitted;     // new flows this rule admitted (allow or audit)
  Counter flows_denied;       // flow decisions this rule denied (new flows, revoked flows)
  Counter packets_forwarded;  // packets of its flows the pipeline forwarded
  Counter packets_dropped;    // packets decided by it that were dropped (any reason)
};

class RuleCounters {
 public:
  // The slot counting `rule` (the worker only). Never allocates: a rule id that finds no free
  // slot within a bounded probe gets the overflow slot.
  RuleSlot& slot(rules::RuleId rule) noexcept {
    std::uint32_t h = (rule * 0x9E3779B1u) >> (32 - kIndexBits);
    for (unsigned probe = 0; probe < kMaxProbe; ++probe, h = (h + 1) & (kIndexSize - 1)) {
      const std::uint16_t at = index_[h];
      if (at == 0) return claim(rule, h);
      if (slots_[at - 1].rule_id.load(std::memory_order_relaxed) == rule) return slots_[at - 1];
    }
    return overflow_;
  }
  // Worker only: zero every count and forget every rule id.
  void reset() noexcept;

  // Readers (any thread): slots [0, used()) are in use; re-read rule_id after the counts to
  // detect a concurrent reset.
  std::uint32_t used() const noexcept { return used_.load(std::memory_order_acquire); }
  const RuleSlot& at(std::uint32_t i) const noexcept { return slots_[i]; }
  const RuleSlot& overflow() const noexcept { return overflow_; }

 private:
  static constexpr unsigned kIndexBits = 13;  // 8192 index entries: at most half full
  static constexpr std::uint32_t kIndexSize = 1u << kIndexBits;
  static constexpr unsigned kMaxProbe = 32;
  RuleSlot& claim(rules::RuleId rule, std::uint32_t h) noexcept;

  std::array<std::uint16_t, kIndexSize> index_{};  // slot + 1; 0 = empty
  std::array<RuleSlot, kRuleSlots> slots_;
  RuleSlot overflow_;
  std::atomic<std::uint32_t> used_{0};
};

struct StageCounter {
  Counter calls;    // bursts
  Counter packets;  // packets of those bursts (so per-stage cycles/packet add up)
  Counter cycles;   // TSC cycles
};

struct ClassCounter {
  Counter packets;
  Counter dropped;
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
  std::array<ClassCounter, kIdentityClassCount> classes;  // by identity class
  std::array<StageCounter, kStageCount> stages;            // while stage timing is on
  Counter trace_records;  // trace records written to the trace ring
  Counter trace_lost;     // trace records dropped because the trace ring was full
  Counter commands;       // mailbox commands completed
  // Volumetric filtering (volumetric.hpp); its drops are counted by reason above.
  Counter blocklist_added;       // source prefixes put on the blocklist
  Counter overload_bursts;       // bursts decided while the worker was behind
  Counter flow_logs;             // flow-log records written to the flow-log ring
  Counter flow_logs_suppressed;  // flow-log records lost: rate limit or full ring
  RuleCounters rules;     // by rule id

  // Zeroes every counter; call only from the one writer (the worker, on a reset command).
  void reset() noexcept;

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
    struct Rule {
      rules::RuleId id = 0;
      bool overflow = false;  // rules that found no slot of their own, together
      std::uint64_t flows_admitted = 0, flows_denied = 0, packets_forwarded = 0, packets_dropped = 0;
    };
    std::vector<Rule> rules;  // slots in use, then the overflow slot if it counted anything
    struct Class {
      std::uint64_t packets = 0, dropped = 0;
    };
    std::array<Class, kIdentityClassCount> classes{};
    struct StageCycles {
      std::uint64_t calls = 0, packets = 0, cycles = 0;
    };
    std::array<StageCycles, kStageCount> stages{};
    std::uint64_t trace_records = 0, trace_lost = 0, commands = 0;
    std::uint64_t blocklist_added = 0, overload_bursts = 0, flow_logs = 0, flow_logs_suppressed = 0;
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
  // Summed over workers, by rule id (ascending; the overflow slot last, if it counted anything).
  std::vector<Worker::Rule> rules() const;
  Worker::Class identity_class(IdentityClass k) const noexcept;
};

CounterSnapshot::Worker copy_worker(const WorkerCounters& c, unsigned lcore, unsigned queue);

// Human-readable table, as printed by ztgate on exit.
std::string format_counters(const CounterSnapshot& s);
// JSON, for scripts and tests (`ztgate --stats-file`).
std::string counters_to_json(const CounterSnapshot& s);

}  // namespace zt::dp
