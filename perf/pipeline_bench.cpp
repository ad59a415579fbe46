// Parse-and-forward benchmark: bursts of 32 prebuilt mbufs through the worker's parser and
// forwarding path (parse_burst + transmit_burst, no policy) on one lcore, over a net_ring port
// whose RX and TX share one ring, so every forwarded mbuf comes round again. Beside it, in the same
// process and on the same port, the plain io loop (rx_burst → tx_burst, what testpmd io does):
// the framework floor. Prints cycles/packet and Mpps, median and spread over several runs.
//
// Usage: pipeline_bench [--quick] [--runs N] [--packets N] [--mbufs N]
//   --mbufs: frames in flight (default 8192, 16 MiB of buffers: every header a cache miss;
//            512 keeps them all in L2 and shows the compute cost alone)
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_tcp.h>
#include <rte_udp.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "zt/dataplane/worker.hpp"

namespace {

using zt::dp::kBurst;

struct FrameSpec {
  bool v6;
  bool tcp;
  std::uint16_t size;  // whole frame
};

// Writes one Ethernet/IP/TCP-or-UDP frame of spec.size bytes into m.
void build_frame(rte_mbuf* m, const FrameSpec& s, std::uint32_t flow) {
  auto* p = rte_pktmbuf_mtod(m, std::uint8_t*);
  std::memset(p, 0, s.size);
  auto* eth = reinterpret_cast<rte_ether_hdr*>(p);
  eth->dst_addr.addr_bytes[0] = 0x02;
  eth->src_addr.addr_bytes[0] = 0x02;
  eth->src_addr.addr_bytes[5] = 1;
  const std::uint16_t l3_len = s.size - sizeof(rte_ether_hdr);
  const std::uint16_t l4_hdr = s.tcp ? sizeof(rte_tcp_hdr) : sizeof(rte_udp_hdr);
  std::uint8_t* l4;
  std::uint16_t l4_len;
  if (!s.v6) {
    eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(eth + 1);
    ip->version_ihl = 0x45;
    ip->total_length = rte_cpu_to_be_16(l3_len);
    ip->time_to_live = 64;
    ip->next_proto_id = s.tcp ? IPPROTO_TCP : IPPROTO_UDP;
    ip->src_addr = rte_cpu_to_be_32(0x0a0a0000 | (flow & 0xffff));
    ip->dst_addr = rte_cpu_to_be_32(0x0a0b0000 | ((flow >> 4) & 0xffff));
    ip->hdr_checksum = rte_ipv4_cksum(ip);
    l4 = reinterpret_cast<std::uint8_t*>(ip + 1);
    l4_len = l3_len - sizeof(rte_ipv4_hdr);
  } else {
    eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV6);
    auto* ip = reinterpret_cast<rte_ipv6_hdr*>(eth + 1);
    ip->vtc_flow = rte_cpu_to_be_32(6U << 28);
    l4_len = l3_len - sizeof(rte_ipv6_hdr);
    ip->payload_len = rte_cpu_to_be_16(l4_len);
    ip->proto = s.tcp ? IPPROTO_TCP : IPPROTO_UDP;
    ip->hop_limits = 64;
    ip->src_addr[0] = 0xfd;
    std::memcpy(&ip->src_addr[12], &flow, 4);
    ip->dst_addr[0] = 0xfd;
    ip->dst_addr[15] = 2;
    l4 = reinterpret_cast<std::uint8_t*>(ip + 1);
  }
  if (s.tcp) {
    auto* t = reinterpret_cast<rte_tcp_hdr*>(l4);
    t->src_port = rte_cpu_to_be_16(static_cast<std::uint16_t>(1024 + flow % 60000));
    t->dst_port = rte_cpu_to_be_16(443);
    t->data_off = 5 << 4;
    t->tcp_flags = RTE_TCP_ACK_FLAG;
  } else {
    auto* u = reinterpret_cast<rte_udp_hdr*>(l4);
    u->src_port = rte_cpu_to_be_16(static_cast<std::uint16_t>(1024 + flow % 60000));
    u->dst_port = rte_cpu_to_be_16(53);
    u->dgram_len = rte_cpu_to_be_16(l4_len);
  }
  (void)l4_hdr;
  m->data_len = s.size;
  m->pkt_len = s.size;
}

struct Stats {
  double median, min, max;
};

Stats summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const auto n = v.size();
  const double med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  return {med, v.front(), v.back()};
}

enum class Loop { io, parse };

// Runs `packets` packets round the ring; returns TSC cycles per packet.
double run_once(Loop loop, std::uint16_t port, std::uint64_t packets, zt::dp::WorkerCounters& c) {
  rte_mbuf* pkts[kBurst];
  std::uint64_t done = 0;
  const std::uint64_t t0 = rte_rdtsc_precise();
  while (done < packets) {
    const std::uint16_t n = rte_eth_rx_burst(port, 0, pkts, kBurst);
    if (loop == Loop::parse) {
      const std::uint16_t keep = zt::dp::parse_burst(pkts, n, 0, c);
      zt::dp::transmit_burst(pkts, keep, port, 0, 1, c);
    } else {
      std::uint16_t sent = rte_eth_tx_burst(port, 0, pkts, n);
      for (std::uint16_t i = sent; i < n; ++i) rte_pktmbuf_free(pkts[i]);
    }
    done += n;
  }
  return static_cast<double>(rte_rdtsc_precise() - t0) / static_cast<double>(done);
}

}  // namespace

int main(int argc, char** argv) {
  unsigned runs = 7;
  unsigned mbufs = 8192;
  std::uint64_t packets = 4'000'000;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--quick") {
      runs = 3;
      packets = 100'000;
    } else if (a == "--runs" && i + 1 < argc) {
      runs = static_cast<unsigned>(std::stoul(argv[++i]));
    } else if (a == "--packets" && i + 1 < argc) {
      packets = std::stoull(argv[++i]);
    } else if (a == "--mbufs" && i + 1 < argc) {
      mbufs = std::clamp<unsigned>(static_cast<unsigned>(std::stoul(argv[++i])), 64, 16384);
    } else {
      fmt::print(stderr, "usage: pipeline_bench [--quick] [--runs N] [--packets N] [--mbufs N]\n");
      return 2;
    }
  }
  if (runs < 1) runs = 1;

  const char* eal[] = {"pipeline_bench", "-l", "0", "--no-huge", "--no-pci", "--no-shconf",
                       "-m", "512", "--log-level=lib.*:error"};
  if (rte_eal_init(static_cast<int>(std::size(eal)), const_cast<char**>(eal)) < 0) {
    fmt::print(stderr, "pipeline_bench: EAL init failed\n");
    return 1;
  }
  const unsigned kMbufs = mbufs;
  rte_mempool* pool = rte_pktmbuf_pool_create("bench", 16384 + 1024, 256, 0,
                                              RTE_MBUF_DEFAULT_BUF_SIZE, 0);
  rte_ring* ring = rte_ring_create("bench_ring", 16384, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
  if (pool == nullptr || ring == nullptr) {
    fmt::print(stderr, "pipeline_bench: cannot allocate the pool or ring\n");
    return 1;
  }
  const int port_rc = rte_eth_from_ring(ring);
  if (port_rc < 0) {
    fmt::print(stderr, "pipeline_bench: cannot create the net_ring port\n");
    return 1;
  }
  const auto port = static_cast<std::uint16_t>(port_rc);
  rte_eth_conf conf{};
  if (rte_eth_dev_configure(port, 1, 1, &conf) != 0 ||
      rte_eth_rx_queue_setup(port, 0, 1024, 0, nullptr, pool) != 0 ||
      rte_eth_tx_queue_setup(port, 0, 1024, 0, nullptr) != 0 || rte_eth_dev_start(port) != 0) {
    fmt::print(stderr, "pipeline_bench: cannot start the net_ring port\n");
    return 1;
  }

  struct Mix {
    const char* name;
    std::vector<FrameSpec> specs;
  };
  const std::vector<Mix> mixes = {
      {"64 B  (v4/v6 x tcp/udp)", {{false, true, 64}, {false, false, 64}, {true, true, 78}, {true, false, 66}}},
      {"512 B (v4/v6 x tcp/udp)", {{false, true, 512}, {false, false, 512}, {true, true, 512}, {true, false, 512}}},
      {"mixed (all of the above)", {{false, true, 64}, {true, false, 512}, {false, false, 512}, {true, true, 78},
                                    {false, true, 512}, {false, false, 64}, {true, false, 66}, {true, true, 512}}},
  };

  const double hz = static_cast<double>(rte_get_tsc_hz());
  fmt::print("pipeline_bench: 1 lcore, bursts of {}, {} mbufs in flight, {} runs of {} packets, "
             "TSC {:.0f} MHz\n\n", kBurst, kMbufs, runs, packets, hz / 1e6);
  fmt::print("{:<26} {:<9} {:>12} {:>10} {:>10} {:>10}\n", "frames", "loop", "cycles/pkt", "min",
             "max", "Mpps");

  for (const auto& mix : mixes) {
    std::vector<rte_mbuf*> all(kMbufs);
    if (rte_pktmbuf_alloc_bulk(pool, all.data(), kMbufs) != 0) {
      fmt::print(stderr, "pipeline_bench: mbuf allocation failed\n");
      return 1;
    }
    for (unsigned i = 0; i < kMbufs; ++i) build_frame(all[i], mix.specs[i % mix.specs.size()], i * 2654435761U);
    if (rte_ring_enqueue_bulk(ring, reinterpret_cast<void**>(all.data()), kMbufs, nullptr) != kMbufs) {
      fmt::print(stderr, "pipeline_bench: ring enqueue failed\n");
      return 1;
    }
    zt::dp::WorkerCounters counters;
    std::vector<double> io, pipe;
    run_once(Loop::parse, port, packets / 4, counters);  // warm-up
    for (unsigned r = 0; r < runs; ++r) {  // interleaved, so drift hits both alike
      io.push_back(run_once(Loop::io, port, packets, counters));
      pipe.push_back(run_once(Loop::parse, port, packets, counters));
    }
    const std::uint64_t dropped = counters.dropped_total();
    for (auto [name, v] : {std::pair{"io", summarize(io)}, std::pair{"parse+fwd", summarize(pipe)}})
      fmt::print("{:<26} {:<9} {:>12.1f} {:>10.1f} {:>10.1f} {:>10.2f}\n", mix.name, name, v.median,
                 v.min, v.max, hz / v.median / 1e6);
    const auto p = summarize(pipe), b = summarize(io);
    fmt::print("{:<26} {:<9} {:>12.1f}   (parse+fwd minus io: parser + accounting per packet)\n\n",
               "", "delta", p.median - b.median);
    if (dropped != 0) {
      fmt::print(stderr, "pipeline_bench: the parser dropped {} of the prebuilt frames\n", dropped);
      return 1;
    }
    // Drain the ring back into the pool for the next mix.
    unsigned got = 0;
    while (got < kMbufs) {
      rte_mbuf* b2[kBurst];
      const std::uint16_t n = rte_eth_rx_burst(port, 0, b2, kBurst);
      if (n == 0) break;
      rte_pktmbuf_free_bulk(b2, n);
      got += n;
    }
  }
  rte_eth_dev_stop(port);
  rte_eth_dev_close(port);
  rte_eal_cleanup();
  return 0;
}
