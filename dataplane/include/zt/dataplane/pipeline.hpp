// The per-lcore pipeline (DESIGN.md §4): run to completion over a burst of up to 32 packets.
//
//   parse → flow key → flow-table bulk lookup →
//   new flow:         claimed identity (tag fields, no MAC yet; untagged: the segment's or
//                     `unauthenticated`) → policy classify (a deny costs no crypto) →
//   every tagged pkt: batched MAC verify + replay filter (continuous validation) →
//   finish:           admit the new flow (TCP must open with a SYN; capacity, quota) or follow
//                     the flow (TCP state, revision check: a flow admitted under an older policy
//                     revision is decided again, so revoking access cuts it on its next packet) →
//   forward (Geneve strip or keep) or drop with a reason.
//
// Volumetric filtering (volumetric.hpp, with the snapshot's VolumetricPlan) threads through
// it: blocklist before the parser; per-source counts, overload shedding and the rate-class
// check (no consume) in classify; tag failures counted in verify; admission and token
// consumption in finish. Refused and audited new flows go to the flow-log ring.
//
// One Pipeline per worker lcore; it owns the flow table, the IPsec-MB verifier and the replay
// filter of that lcore. Nothing here allocates, locks, logs or makes a system call.
#pragma once

#include <rte_mbuf.h>

#include <cstdint>
#include <expected>
#include <memory>
#include <string>

#include "zt/crypto/replay_filter.hpp"
#include "zt/crypto/verifier.hpp"
#include "zt/dataplane/counters.hpp"
#include "zt/dataplane/flow_log.hpp"
#include "zt/dataplane/flow_table.hpp"
#include "zt/dataplane/frag_table.hpp"
#include "zt/dataplane/l7_inspect.hpp"
#include "zt/dataplane/burst.hpp"
#include "zt/dataplane/snapshot.hpp"
#include "zt/dataplane/trace.hpp"
#include "zt/dataplane/volumetric.hpp"

struct rte_ring;

namespace zt::dp {

class CaptureTap;

enum class GeneveMode : std::uint8_t {
  strip,  // decapsulate: the far zone sees the plain inner packet
  keep,   // forward the Geneve packet unchanged: the far agent decapsulates
};

struct PipelineConfig {
  FlowTableConfig flows;
  GeneveMode geneve = GeneveMode::strip;
  crypto::ReplayFilterConfig replay;
  std::string verifier_arch = "auto";
  FragConfig frags;  // IP fragments: datagrams followed, fragments each, lifetime
  L7Config l7;       // L7: flows under inspection, bytes inspected per flow
  Volumetric::Sizing volumetric;  // meters, blocklist, sketches (limits: Snapshot::volumetric)
  // Records the flow-log ring holds until drained; 0: no ring, no flow logs. A ring is an EAL
  // object: destroy the Pipeline before rte_eal_cleanup.
  unsigned flow_log_depth = 0;
};

// The time a burst is decided at: the TSC for flow aging, wall-clock ns for tag freshness.
struct BurstClock {
  std::uint64_t tsc = 0;
  std::int64_t now_ns = 0;
};

class Pipeline {
 public:
  static std::expected<std::unique_ptr<Pipeline>, std::string> create(const PipelineConfig& cfg);

  // Decides a burst received on port index `in_port` under snapshot `snap` (may be null: no
  // policy). Packets to forward are compacted to the front of `pkts` in arrival order (and
  // decapsulated in strip mode); their count is returned. The rest are freed and counted.
  // Counts by rule (`c.rules`: flow decisions, packets forwarded / dropped) and by identity
  // class (`c.classes`); with stage timing on, the cycles of each pass (`c.stages`).
  std::uint16_t run(rte_mbuf** pkts, std::uint16_t n, unsigned in_port, const Snapshot* snap,
                    const BurstClock& clk, WorkerCounters& c) noexcept {
    return stage_timing_ ? run_burst<true>(pkts, n, in_port, snap, clk, c)
                         : run_burst<false>(pkts, n, in_port, snap, clk, c);
  }

  // Per-stage cycle counters on or off (the owning worker only: its mailbox). Off costs one
  // predictable branch per burst and no TSC read.
  void set_stage_timing(bool on) noexcept { stage_timing_ = on; }
  bool stage_timing() const noexcept { return stage_timing_; }
  // Trace the next `packets` packets into `ring` (an SP rte_ring of TraceRecord elements);
  // 0 stops tracing. The owning worker only.
  void trace(std::uint64_t packets, rte_ring* ring) noexcept {
    trace_left_ = ring != nullptr ? packets : 0;
    trace_ring_ = ring;
  }
  std::uint64_t trace_left() const noexcept { return trace_left_; }
  // Packet capture (capture.hpp): the tap this worker offers every decided packet to; set once
  // at set-up (null: none). The owning worker only.
  void set_capture(CaptureTap* tap) noexcept { capture_ = tap; }

  // Ages a bounded slice of the flow table (call when idle or between bursts; returns how many
  // flows expired). Fragment entries and L7 states of gone flows are reclaimed along the way.
  // With `snap` (the snapshot the caller's bursts run under) and its policy, each flow of
  // another revision the slice meets is decided again as its next packet would be: restamped
  // if the policy still allows it, else erased and counted in `c` as a revoked flow (by the
  // denying rule), so revoking access also cuts idle flows, one aging round after the
  // snapshot is published. Without: flows of other revisions wait for their next packet.
  unsigned age(std::uint64_t tsc, unsigned buckets, const Snapshot* snap = nullptr,
               WorkerCounters* c = nullptr) noexcept;
  // Control path, before `s` is published: prepares this worker's L7 (Hyperscan) scratch for
  // its policy; the worker adopts it without allocating on its first burst under `s`.
  std::expected<void, std::string> prepare(const Snapshot& s) { return l7_->prepare(s.policy); }
  FlowTable& flows() noexcept { return *flows_; }
  FragTable& frags() noexcept { return *frags_; }
  L7Inspector& l7() noexcept { return *l7_; }
  const crypto::Verifier& verifier() const noexcept { return verifier_; }
  // Per-worker volumetric state (the owning worker only: its mailbox).
  Volumetric& volumetric() noexcept { return *vol_; }
  // Control side (the single consumer): moves up to `max` flow-log records into `out`.
  unsigned drain_flow_logs(FlowLogRecord* out, unsigned max) noexcept;

  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

 private:
  // The flow-table part of age() (the pipeline's own aging at the admission watermark).
  unsigned age_flows(std::uint64_t tsc, unsigned buckets, const Snapshot* snap, WorkerCounters* c) noexcept;
  Pipeline(std::unique_ptr<FlowTable> f, crypto::Verifier v, crypto::ReplayFilter r, GeneveMode m)
      : flows_(std::move(f)), verifier_(std::move(v)), replay_(std::move(r)), geneve_(m) {}
  // `tag_listed` gets bit i for kept packet i whose source is listed for tag failures
  // (established flows only; its key in `tag_listed_key[i]`).
  std::uint16_t drop_blocklisted(rte_mbuf** pkts, std::uint16_t n, unsigned in_port,
                                 const VolumetricPlan& vp, std::uint64_t tsc, WorkerCounters& c,
                                 std::uint32_t& tag_listed, std::uint64_t* tag_listed_key) noexcept;
  template <bool kTimed>
  std::uint16_t run_burst(rte_mbuf** pkts, std::uint16_t n, unsigned in_port, const Snapshot* snap,
                          const BurstClock& clk, WorkerCounters& c) noexcept;

  std::unique_ptr<FlowTable> flows_;
  std::unique_ptr<FragTable> frags_;
  std::unique_ptr<L7Inspector> l7_;
  crypto::Verifier verifier_;
  crypto::ReplayFilter replay_;
  GeneveMode geneve_;
  bool stage_timing_ = false;
  std::uint64_t trace_left_ = 0;
  std::uint64_t trace_seq_ = 0;
  rte_ring* trace_ring_ = nullptr;
  CaptureTap* capture_ = nullptr;
  std::unique_ptr<Volumetric> vol_;
  // The revision of the last burst's snapshot (FlowTable::age: all_flows_at), or unknown.
  std::uint64_t last_revision_ = FlowTable::kUnknownRevision;
  rte_ring* flow_log_ = nullptr;  // SP/SC ring of FlowLogRecord; null: no flow logs
};

}  // namespace zt::dp
