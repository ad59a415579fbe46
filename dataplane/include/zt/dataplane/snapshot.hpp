// What the workers decide by: the compiled policy and the key ring, published together by the
// control lcore as one immutable snapshot (DESIGN.md §4). Publishing swaps one atomic pointer;
// the previous snapshot is released only after rte_rcu_qsbr shows that every worker has passed a
// quiescent state (the end of a burst), so no packet ever sees half a policy or freed memory.
#pragma once

#include <atomic>
#include <climits>
#include <cstdint>
#include <expected>
#include <memory>
#include <string>

#include "zt/crypto/key_ring.hpp"
#include "zt/dataplane/volumetric.hpp"
#include "zt/rules/snapshot.hpp"

struct rte_rcu_qsbr;

namespace zt::dp {

struct Snapshot {
  std::shared_ptr<const rules::PolicySnapshot> policy;  // null: no policy, new flows fail closed
  std::shared_ptr<const crypto::KeyRing> keys;          // null: every tag fails (tag_no_key)
  // The policy's bundle or keys expired without a newer update (manager unreachable): flows
  // admitted before keep following their state, every new flow is refused (policy_expired).
  bool expired = false;
  // When it expires (unix ns; max: never): the workers compare it with their burst clock, so a
  // bundle or keys running out fail closed on time even while the control thread that marks the
  // snapshot `expired` is stalled (tests/component/test_resilience.py).
  std::int64_t expires_ns = INT64_MAX;
  // Volumetric limits for this snapshot (Control::publish attaches the current ones when null;
  // null at the worker: no volumetric filtering, no flow logs).
  std::shared_ptr<const VolumetricPlan> volumetric;
  std::uint64_t revision() const noexcept { return policy ? policy->revision() : 0; }
};

class SnapshotChannel {
 public:
  // `readers`: how many workers will read (each registers with its reader index).
  static std::expected<std::unique_ptr<SnapshotChannel>, std::string> create(unsigned readers);
  ~SnapshotChannel();
  SnapshotChannel(const SnapshotChannel&) = delete;
  SnapshotChannel& operator=(const SnapshotChannel&) = delete;

  // Control side: makes `s` current, waits until every online reader has finished the burst
  // that may still use the previous one, then releases the previous one. Returns how many
  // snapshots have been published so far.
  std::uint64_t publish(std::shared_ptr<const Snapshot> s);
  std::shared_ptr<const Snapshot> current_owner() const { return owner_; }

  // Worker side.
  const Snapshot* acquire() const noexcept { return current_.load(std::memory_order_acquire); }
  void online(unsigned reader) noexcept;
  void offline(unsigned reader) noexcept;
  void quiescent(unsigned reader) noexcept;

 private:
  SnapshotChannel() = default;
  std::atomic<const Snapshot*> current_{nullptr};
  std::shared_ptr<const Snapshot> owner_;  // keeps `current_` alive
  rte_rcu_qsbr* qs_ = nullptr;
  std::uint64_t published_ = 0;
};

}  // namespace zt::dp
