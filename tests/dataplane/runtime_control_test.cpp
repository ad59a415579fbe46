// Runtime hands ztgate the control API for free: a Runtime on two net_null ports (EAL without
// hugepages, one worker lcore) answers commands through each worker's mailbox while it runs,
// and names the worker that cannot answer once stopped.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "zt/dataplane/runtime.hpp"

namespace {

using namespace std::chrono_literals;
using zt::rules::DropReason;

TEST(RuntimeControl, WorkersAnswerTheMailboxWhileRunningAndAreNamedWhenStopped) {
  zt::dp::RuntimeConfig cfg;
  cfg.ports = {"net_null0", "net_null1"};
  cfg.workers = 1;
  cfg.hugepages = zt::dp::Hugepages::off;
  cfg.mbufs = 4095;
  cfg.flows = 1024;
  cfg.replay_pps = 1e5;
  cfg.eal_log_level = "error";
  auto rt = zt::dp::Runtime::create(cfg);
  ASSERT_TRUE(rt) << rt.error();
  auto& r = **rt;
  ASSERT_TRUE(r.start());
  auto& c = r.control();
  ASSERT_TRUE(c.set_stage_timing(true));
  std::this_thread::sleep_for(20ms);  // net_null receives a burst on every poll
  ASSERT_TRUE(c.set_stage_timing(false));
  auto s = r.counters();
  ASSERT_EQ(s.workers.size(), 1u);
  EXPECT_GT(s.workers[0].stages[static_cast<std::size_t>(zt::dp::Stage::parse)].packets, 0u);
  EXPECT_GT(s.drops(DropReason::ethertype_unsupported), 0u);  // net_null's frames are zeros
  ASSERT_TRUE(c.reset_counters());
  EXPECT_EQ(r.counters().workers[0].stages[static_cast<std::size_t>(zt::dp::Stage::parse)].packets, 0u);
  r.stop();
  auto late = c.reset_counters(20ms);
  ASSERT_FALSE(late);
  EXPECT_NE(late.error().find("did not answer"), std::string::npos) << late.error();
}

}  // namespace
