// Per-lcore L7 inspection of flows admitted by a rule with `l7` (DESIGN.md §4; dataplane/README.md
// "L7").
//
// For such a flow the initiator's TCP byte stream is followed from its first payload byte, in
// sequence order, up to `bound` bytes:
//   - the HTTP request line (method SP target SP HTTP/x.y CRLF) must arrive whole within the
//     bound, else the flow is denied (policy_l7_deny): deny rather than guess;
//   - once it is whole, PolicySnapshot::check_l7 decides method, path and deny patterns, and the
//     deny patterns are decided again over everything received so far each time the stream
//     grows, so a pattern split across segments is found (see "Why a buffer, not a stream");
//   - segments ahead of the stream (a gap) are dropped (l7_out_of_order: the sender
//     retransmits); retransmitted bytes must equal what was inspected, else the flow is denied;
//   - the first denying packet is dropped and the flow is cut (kFlowCut: later packets of both
//     directions drop as policy_l7_deny until the entry ages out).
// Packets without payload pass by flow state. Beyond the bound the flow is no longer inspected.
//
// Why a buffer, not a stream: the rules module compiles block-mode databases only. Per-flow state
// is therefore the first `bound` bytes themselves (which the request line needs anyway), and each
// new segment rescans that prefix in block mode: exactly the matches a streaming scan of the
// same bytes would report, at a cost bounded by `bound` bytes per segment and `max_segments`
// segments per flow.
//
// Per-flow state comes from a pool fixed at creation (pool exhausted: l7_pool_full, the new
// flow is refused, never let through uninspected). Hyperscan scratch is prepared on the control
// path by prepare() before a snapshot is published and adopted by the worker, without
// allocating, on the first burst under that snapshot (no scratch for it: l7_not_ready).
#pragma once

#include <rte_mbuf.h>

#include <atomic>
#include <cstdint>
#include <expected>
#include <memory>
#include <span>
#include <string>

#include "zt/dataplane/flow_table.hpp"
#include "zt/dataplane/parser.hpp"
#include "zt/rules/snapshot.hpp"

namespace zt::dp {

struct L7Config {
  std::uint32_t flows = 4096;       // flows under inspection at once on this lcore
  std::uint16_t bound = 2048;       // initiator payload bytes inspected per flow
  std::uint16_t max_segments = 64;  // payload segments allowed before the bound is reached
};

// FlowEntry::flags bits owned by L7 (the pipeline keeps them across policy revisions).
inline constexpr std::uint8_t kFlowL7 = 0x80;      // under inspection: state in the pool
inline constexpr std::uint8_t kFlowL7Done = 0x40;  // inspected up to the bound and allowed
inline constexpr std::uint8_t kFlowCut = 0x20;     // denied by L7: every later packet drops
inline constexpr std::uint8_t kFlowL7Bits = kFlowL7 | kFlowL7Done | kFlowCut;

// One TCP segment of the initiator, as the inspector sees it.
struct L7Segment {
  std::uint32_t seq = 0;                  // TCP sequence number
  bool syn = false;                       // SYN consumes one sequence number before the data
  std::uint32_t payload_len = 0;          // the whole payload's length
  std::span<const std::uint8_t> payload;  // its first min(payload_len, bound) bytes
};

struct L7Stats {  // one writer (the worker); read by tests and the control path
  std::uint64_t opened = 0, finished = 0, denied = 0, audited = 0, pool_full = 0, reclaimed = 0;
};

class L7Inspector {
 public:
  static std::expected<std::unique_ptr<L7Inspector>, std::string> create(const L7Config& cfg);
  ~L7Inspector();
  L7Inspector(const L7Inspector&) = delete;
  L7Inspector& operator=(const L7Inspector&) = delete;

  // ---- control path (any thread but the worker's; not concurrently with itself) ----
  // Allocates Hyperscan scratch for `policy` and hands it to the worker, which adopts it the
  // first time it decides a burst under that policy. Call before publishing the snapshot.
  std::expected<void, std::string> prepare(std::shared_ptr<const rules::PolicySnapshot> policy);

  // ---- worker (fast path: no allocation, no lock) ----
  // A new flow `e` admitted by `v` (v.l7 != kNoL7) on packet (m, l): takes state from the pool
  // and sets kFlowL7. Returns l7_pool_full or l7_not_ready when it cannot (caller refuses the
  // flow). The packet itself is inspected afterwards with inspect().
  // `flows` is consulted only to reclaim states of flows that are gone when the pool is empty.
  DropReason open(FlowEntry& e, const rules::Verdict& v, const rules::PolicySnapshot& policy,
                  const rte_mbuf* m, const IpLayer& l, FlowTable& flows) noexcept;
  // An initiator packet of a flow with kFlowL7. Returns none (forward) or the drop reason; on a
  // deny the flow is cut (kFlowCut) and its state returned to the pool.
  DropReason inspect(FlowEntry& e, const rules::PolicySnapshot& policy, std::uint64_t revision,
                     const rte_mbuf* m, const IpLayer& l) noexcept;
  // The same on an already extracted segment (unit tests; inspect() calls it).
  DropReason inspect_segment(FlowEntry& e, const rules::PolicySnapshot& policy,
                             std::uint64_t revision, const L7Segment& s) noexcept;
  // A flow re-admitted under a new revision by `v`: one that was never inspected but now needs
  // L7 cannot be inspected from its first byte, so it is cut (returns policy_l7_deny).
  static DropReason revised(FlowEntry& e, const rules::Verdict& v) noexcept;

  // Returns to the pool up to `n` states whose flow is gone from `flows` (aged out, erased).
  unsigned age(FlowTable& flows, unsigned n) noexcept;

  // Whether the worker holds scratch prepared for `policy` (adopting a staged one if needed).
  bool ready(const rules::PolicySnapshot* policy) noexcept;

  std::uint32_t in_use() const noexcept { return used_; }
  std::uint32_t capacity() const noexcept { return capacity_; }
  std::uint16_t bound() const noexcept { return bound_; }
  const L7Stats& stats() const noexcept { return stats_; }

 private:
  L7Inspector() = default;
  static constexpr std::uint32_t kNoL7State = 0xFFFFFFFFu;
  struct State;
  struct Staged;

  std::uint32_t find(const FlowEntry* e) const noexcept;
  std::uint32_t allocate(FlowTable& flows) noexcept;
  bool stale(std::uint32_t st, FlowTable& flows) const noexcept;
  void release(std::uint32_t st) noexcept;
  bool index_insert(const FlowEntry* e, std::uint32_t st) noexcept;
  std::uint32_t hash(const FlowEntry* e) const noexcept;
  DropReason deny(FlowEntry& e, std::uint32_t st) noexcept;
  DropReason finish(FlowEntry& e, std::uint32_t st) noexcept;

  State* states_ = nullptr;
  std::uint8_t* bufs_ = nullptr;      // bound_ bytes per state
  std::uint32_t* index_ = nullptr;    // state + 1 by FlowEntry address; 0 = empty
  std::uint32_t* free_ = nullptr;
  std::uint8_t* gather_ = nullptr;    // bound_ bytes: a multi-segment payload copied out
  std::uint32_t free_top_ = 0, used_ = 0, capacity_ = 0, index_mask_ = 0, cursor_ = 0;
  std::uint16_t bound_ = 0, max_segments_ = 0;
  void* mem_ = nullptr;
  L7Stats stats_;

  // Scratch hand-off: control stages, the worker adopts (exchange) and retires the old one,
  // which the control path frees at its next prepare() or at destruction.
  static constexpr unsigned kRetireSlots = 4;
  Staged* current_ = nullptr;  // worker-owned
  std::atomic<Staged*> staged_{nullptr};
  std::atomic<Staged*> retired_[kRetireSlots] = {};
};

}  // namespace zt::dp
