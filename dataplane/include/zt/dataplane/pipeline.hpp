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
#include "zt/dataplane/flow_table.hpp"
#include "zt/dataplane/burst.hpp"
#include "zt/dataplane/snapshot.hpp"

namespace zt::dp {

enum class GeneveMode : std::uint8_t {
  strip,  // decapsulate: the far zone sees the plain inner packet
  keep,   // forward the Geneve packet unchanged: the far agent decapsulates
};

struct PipelineConfig {
  FlowTableConfig flows;
  GeneveMode geneve = GeneveMode::strip;
  crypto::ReplayFilterConfig replay;
  std::string verifier_arch = "auto";
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
  std::uint16_t run(rte_mbuf** pkts, std::uint16_t n, unsigned in_port, const Snapshot* snap,
                    const BurstClock& clk, WorkerCounters& c) noexcept;

  // Ages a bounded slice of the flow table (call when idle or between bursts).
  unsigned age(std::uint64_t tsc, unsigned buckets) noexcept { return flows_->age(tsc, buckets); }
  FlowTable& flows() noexcept { return *flows_; }
  const crypto::Verifier& verifier() const noexcept { return verifier_; }

 private:
  Pipeline(std::unique_ptr<FlowTable> f, crypto::Verifier v, crypto::ReplayFilter r, GeneveMode m)
      : flows_(std::move(f)), verifier_(std::move(v)), replay_(std::move(r)), geneve_(m) {}
  std::unique_ptr<FlowTable> flows_;
  crypto::Verifier verifier_;
  crypto::ReplayFilter replay_;
  GeneveMode geneve_;
};

}  // namespace zt::dp
