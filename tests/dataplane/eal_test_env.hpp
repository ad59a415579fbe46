// The EAL a dataplane test program runs in: no hugepages, no PCI, no shared config, one mbuf
// pool for the whole program, rte_eal_cleanup at the end. A test program registers one with
//   const auto* const g_env = ::testing::AddGlobalTestEnvironment(new zt::test::EalEnvironment({...}, &g_pool));
// and may derive from it to set up more (ports, rings) in `after_init`.
#pragma once

#include <gtest/gtest.h>
#include <rte_eal.h>
#include <rte_mbuf.h>

#include <iterator>

namespace zt::test {

struct EalConfig {
  const char* program;        // argv[0]; also the mbuf pool's name
  const char* lcores = "0";   // EAL -l
  const char* memory_mb = "128";
  unsigned mbufs = 1023;
};

class EalEnvironment : public ::testing::Environment {
 public:
  EalEnvironment(EalConfig cfg, rte_mempool** pool) : cfg_(cfg), pool_(pool) {}
  void SetUp() override {
    const char* argv[] = {cfg_.program, "-l", cfg_.lcores, "--no-huge", "--no-pci", "--no-shconf",
                          "-m", cfg_.memory_mb, "--log-level=lib.*:error"};
    ASSERT_GE(rte_eal_init(static_cast<int>(std::size(argv)), const_cast<char**>(argv)), 0);
    *pool_ = rte_pktmbuf_pool_create(cfg_.program, cfg_.mbufs, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
    ASSERT_NE(*pool_, nullptr);
    after_init();
  }
  void TearDown() override { rte_eal_cleanup(); }

 protected:
  virtual void after_init() {}

 private:
  EalConfig cfg_;
  rte_mempool** pool_;
};

}  // namespace zt::test
