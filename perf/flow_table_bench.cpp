// Flow table benchmark: bulk lookup (bursts of 32, random keys, all hits) and insert cost of
// our per-lcore FlowTable beside DPDK's rte_hash (CRC hash, same 40-byte keys, bulk lookup) at
// 2^16 and 2^20 flows (2^22 with --big), in the same process. Median and spread over runs.
//
// Usage: flow_table_bench [--quick] [--big] [--runs N]
#include <rte_eal.h>
#include <rte_hash.h>
#include <rte_hash_crc.h>
#include <rte_cycles.h>

#include <fmt/format.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "zt/dataplane/flow_table.hpp"

namespace {

using namespace zt::dp;

struct Spread {
  double med, min, max;
};
Spread spread(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const auto n = v.size();
  return {n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2, v.front(), v.back()};
}

std::vector<FlowKey> make_keys(std::uint32_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<FlowKey> keys(n);
  for (auto& k : keys) {
    IpLayer l;
    l.version = 4;
    l.proto = 6;
    const std::uint64_t r = rng();
    for (int b = 0; b < 4; ++b) l.src.b[b] = static_cast<std::uint8_t>(r >> (8 * b));
    for (int b = 0; b < 4; ++b) l.dst.b[b] = static_cast<std::uint8_t>(r >> (32 + 8 * b));
    l.sport = static_cast<std::uint16_t>(rng());
    l.dport = static_cast<std::uint16_t>(rng());
    KeyDir d;
    k = make_flow_key(l, d);
  }
  return keys;
}

}  // namespace

int main(int argc, char** argv) {
  unsigned runs = 5;
  std::vector<unsigned> sizes_log2 = {16, 20};
  std::uint64_t lookups = 4'000'000;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      runs = 3;
      sizes_log2 = {12};
      lookups = 100'000;
    } else if (a == "--big") {
      sizes_log2.push_back(22);
    } else if (a == "--runs" && i + 1 < argc) {
      runs = std::max(1U, static_cast<unsigned>(std::stoul(argv[++i])));
    } else {
      fmt::print(stderr, "usage: flow_table_bench [--quick] [--big] [--runs N]\n");
      return 2;
    }
  }
  const char* eal[] = {"flow_table_bench", "-l", "0", "--no-huge", "--no-pci", "--no-shconf",
                       "-m", "2048", "--log-level=lib.*:error"};
  if (rte_eal_init(static_cast<int>(std::size(eal)), const_cast<char**>(eal)) < 0) {
    fmt::print(stderr, "flow_table_bench: EAL init failed\n");
    return 1;
  }
  const double hz = static_cast<double>(rte_get_tsc_hz());
  fmt::print("flow_table_bench: bulk lookups of 32 random present keys, {} runs, TSC {:.0f} MHz\n\n",
             runs, hz / 1e6);
  fmt::print("{:<10} {:<12} {:>14} {:>8} {:>8} {:>16} {:>12}\n", "flows", "table",
             "lookup cyc/key", "min", "max", "insert cyc/key", "memory MiB");

  for (unsigned lg : sizes_log2) {
    const std::uint32_t n = 1U << lg;
    const auto keys = make_keys(n, lg);
    std::mt19937_64 rng(7);
    std::vector<std::uint32_t> order(lookups);
    for (auto& o : order) o = static_cast<std::uint32_t>(rng() % n);
    std::vector<FlowKey> probe(lookups);
    for (std::size_t i = 0; i < lookups; ++i) probe[i] = keys[order[i]];

    FlowTableConfig cfg;
    cfg.capacity = n + n / 8;
    cfg.timeouts = make_timeouts(static_cast<std::uint64_t>(hz));
    auto ft = FlowTable::create(cfg);
    if (!ft) {
      fmt::print(stderr, "flow_table_bench: {}\n", ft.error());
      return 1;
    }
    std::uint64_t t0 = rte_rdtsc_precise();
    for (std::uint32_t i = 0; i < n; ++i) {
      FlowEntry* e;
      if ((*ft)->insert(keys[i], KeyDir::lo_to_hi, 3, 0, &e) != InsertResult::inserted) {
        fmt::print(stderr, "flow_table_bench: insert {} failed\n", i);
        return 1;
      }
    }
    const double ft_ins = static_cast<double>(rte_rdtsc_precise() - t0) / n;

    rte_hash_parameters hp{};
    const std::string hname = fmt::format("bench{}", lg);
    hp.name = hname.c_str();
    hp.entries = n + n / 8;
    hp.key_len = sizeof(FlowKey);
    hp.hash_func = rte_hash_crc;
    hp.socket_id = 0;
    rte_hash* h = rte_hash_create(&hp);
    if (h == nullptr) {
      fmt::print(stderr, "flow_table_bench: rte_hash_create failed for 2^{}\n", lg);
      return 1;
    }
    t0 = rte_rdtsc_precise();
    for (std::uint32_t i = 0; i < n; ++i)
      if (rte_hash_add_key_data(h, &keys[i], reinterpret_cast<void*>(std::uintptr_t{i} + 1)) != 0) {
        fmt::print(stderr, "flow_table_bench: rte_hash add {} failed\n", i);
        return 1;
      }
    const double rh_ins = static_cast<double>(rte_rdtsc_precise() - t0) / n;

    std::vector<double> ours, theirs;
    std::uint64_t misses = 0;
    for (unsigned r = 0; r < runs; ++r) {
      FlowEntry* out[32];
      t0 = rte_rdtsc_precise();
      for (std::size_t i = 0; i + 32 <= lookups; i += 32) {
        (*ft)->lookup_bulk(&probe[i], 32, out);
        misses += out[0] == nullptr;
      }
      ours.push_back(static_cast<double>(rte_rdtsc_precise() - t0) / static_cast<double>(lookups));

      const void* kp[32];
      void* data[32];
      t0 = rte_rdtsc_precise();
      for (std::size_t i = 0; i + 32 <= lookups; i += 32) {
        for (int j = 0; j < 32; ++j) kp[j] = &probe[i + j];
        std::uint64_t hits = 0;
        rte_hash_lookup_bulk_data(h, kp, 32, &hits, data);
        misses += hits != 0xFFFFFFFFULL;
      }
      theirs.push_back(static_cast<double>(rte_rdtsc_precise() - t0) / static_cast<double>(lookups));
    }
    if (misses != 0) {
      fmt::print(stderr, "flow_table_bench: {} lookups missed a present key\n", misses);
      return 1;
    }
    const auto o = spread(ours), t = spread(theirs);
    fmt::print("{:<10} {:<12} {:>14.1f} {:>8.1f} {:>8.1f} {:>16.1f} {:>12.1f}\n",
               fmt::format("2^{}", lg), "FlowTable", o.med, o.min, o.max, ft_ins,
               static_cast<double>((*ft)->memory_bytes()) / (1 << 20));
    fmt::print("{:<10} {:<12} {:>14.1f} {:>8.1f} {:>8.1f} {:>16.1f} {:>12}\n", "", "rte_hash",
               t.med, t.min, t.max, rh_ins, "-");
    fmt::print("{:<10} {:<12} {:>14.2f}\n\n", "", "ratio", o.med / t.med);
    rte_hash_free(h);
  }
  rte_eal_cleanup();
  return 0;
}
