#include "zt/dataplane/snapshot.hpp"

#include <rte_rcu_qsbr.h>

#include <cstdlib>

#include <fmt/format.h>

namespace zt::dp {

std::expected<std::unique_ptr<SnapshotChannel>, std::string> SnapshotChannel::create(unsigned readers) {
  if (readers == 0 || readers > RTE_MAX_LCORE)
    return std::unexpected(fmt::format("snapshot channel: {} readers out of range", readers));
  std::unique_ptr<SnapshotChannel> ch(new SnapshotChannel());
  const std::size_t sz = rte_rcu_qsbr_get_memsize(readers);
  const std::size_t rounded = (sz + RTE_CACHE_LINE_SIZE - 1) & ~std::size_t{RTE_CACHE_LINE_SIZE - 1};
  ch->qs_ = static_cast<rte_rcu_qsbr*>(std::aligned_alloc(RTE_CACHE_LINE_SIZE, rounded));
  if (ch->qs_ == nullptr || rte_rcu_qsbr_init(ch->qs_, readers) != 0)
    return std::unexpected("snapshot channel: cannot initialise the RCU state");
  for (unsigned r = 0; r < readers; ++r) rte_rcu_qsbr_thread_register(ch->qs_, r);
  return ch;
}

SnapshotChannel::~SnapshotChannel() { std::free(qs_); }

std::uint64_t SnapshotChannel::publish(std::shared_ptr<const Snapshot> s) {
  std::shared_ptr<const Snapshot> old = std::move(owner_);
  owner_ = std::move(s);
  current_.store(owner_.get(), std::memory_order_release);
  // Every reader online now either already sees the new pointer or is inside a burst that may
  // hold the old one: wait for each to report quiescence once more.
  const std::uint64_t token = rte_rcu_qsbr_start(qs_);
  rte_rcu_qsbr_check(qs_, token, true);
  old.reset();  // no worker can still hold it
  return ++published_;
}

void SnapshotChannel::online(unsigned reader) noexcept { rte_rcu_qsbr_thread_online(qs_, reader); }
void SnapshotChannel::offline(unsigned reader) noexcept { rte_rcu_qsbr_thread_offline(qs_, reader); }
void SnapshotChannel::quiescent(unsigned reader) noexcept { rte_rcu_qsbr_quiescent(qs_, reader); }

}  // namespace zt::dp
