// Packet capture through the real pipeline (EAL without hugepages): the pcapng file opens in
// `tcpdump -r` and holds the packets with their verdicts; drops-only, --count, snaplen, a full
// ring counted as lost.
#include <gtest/gtest.h>

#include <rte_mbuf.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "eal_test_env.hpp"
#include "packet_builder.hpp"
#include "zt/dataplane/capture.hpp"
#include "zt/dataplane/pipeline.hpp"
#include "zt/rules/policy.hpp"
#include "zt/rules/snapshot.hpp"

namespace {

using namespace zt;
using test::Bytes;
using test::PacketBuilder;

rte_mempool* g_pool = nullptr;
const auto* const g_env = ::testing::AddGlobalTestEnvironment(
    new test::EalEnvironment({.program = "capture_test", .memory_mb = "256", .mbufs = 2047}, &g_pool));

constexpr std::int64_t kNow = 1'800'000'000LL * 1'000'000'000LL + 123'456'789;  // ns

const char* kPolicy = R"(
segments:
  - {name: zone-a, prefixes: [10.1.0.0/24], labels: {zone: a}}
  - {name: zone-b, prefixes: [10.2.0.0/24], labels: {zone: b}}
rules:
  - {id: 20, name: dns, from: {segments: [zone-a]}, to: {segments: [zone-b]}, proto: udp, ports: [53], action: allow}
  - {id: 30, name: no-telnet, from: {segments: [zone-a]}, to: {segments: [zone-b]}, proto: tcp, ports: [23], action: deny}
)";

Bytes udp(std::uint16_t dport, unsigned payload = 20) {
  return PacketBuilder{}.eth().ipv4({.src = {10, 1, 0, 1}, .dst = {10, 2, 0, 5}}).udp({.sport = 5000, .dport = dport})
      .payload(payload).build();
}
Bytes telnet_syn() {
  return PacketBuilder{}.eth().ipv4({.src = {10, 1, 0, 1}, .dst = {10, 2, 0, 5}}).tcp({.sport = 40000, .dport = 23, .flags = 0x02})
      .build();
}

// A pcapng file's packets: the captured bytes and the comment of each Enhanced Packet Block.
struct PcapngPacket {
  std::uint32_t iface = 0, caplen = 0, origlen = 0;
  Bytes data;
  std::string comment;
};
std::vector<PcapngPacket> read_pcapng(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const Bytes b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<PcapngPacket> out;
  auto u32 = [&](std::size_t at) { std::uint32_t v; std::memcpy(&v, &b[at], 4); return v; };
  auto u16 = [&](std::size_t at) { std::uint16_t v; std::memcpy(&v, &b[at], 2); return v; };
  for (std::size_t at = 0; at + 12 <= b.size();) {
    const auto type = u32(at), len = u32(at + 4);
    EXPECT_EQ(u32(at + len - 4), len) << "trailing length of the block at " << at;
    if (type == 6) {
      PcapngPacket p;
      p.iface = u32(at + 8);
      p.caplen = u32(at + 20);
      p.origlen = u32(at + 24);
      p.data.assign(b.begin() + static_cast<long>(at + 28), b.begin() + static_cast<long>(at + 28 + p.caplen));
      for (std::size_t o = at + 28 + ((p.caplen + 3) & ~3u); o + 4 <= at + len - 4;) {
        const auto code = u16(o), olen = u16(o + 2);
        if (code == 0) break;
        if (code == 1) p.comment.assign(reinterpret_cast<const char*>(&b[o + 4]), olen);
        o += 4 + ((olen + 3u) & ~3u);
      }
      out.push_back(std::move(p));
    }
    at += len;
  }
  return out;
}

// What `tcpdump -r` prints, one line per packet, and its exit status.
std::pair<int, std::vector<std::string>> tcpdump(const std::string& path) {
  std::vector<std::string> lines;
  FILE* f = ::popen(("tcpdump -nn -tt -r '" + path + "' 2>/dev/null").c_str(), "r");
  if (f == nullptr) return {-1, lines};
  char buf[512];
  while (std::fgets(buf, sizeof buf, f)) lines.emplace_back(buf);
  return {::pclose(f), lines};
}

class CaptureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static unsigned n = 0;
    dp::CaptureConfig cc;
    cc.name = "ct" + std::to_string(n++);
    cc.ring_depth = 8;
    cc.pool_size = 63;
    cc.max_snaplen = 256;
    auto c = dp::Capture::create(cc);
    ASSERT_TRUE(c) << c.error();
    cap = std::move(*c);
    dp::PipelineConfig pc;
    pc.flows.capacity = 1024;
    pc.flows.timeouts = dp::make_timeouts(1'000'000'000);
    pc.replay.packets_per_second = 1e5;
    auto p = dp::Pipeline::create(pc);
    ASSERT_TRUE(p) << p.error();
    pipe = std::move(*p);
    pipe->set_capture(&cap->tap(0));
    auto pol = rules::parse_policy({{"p.yaml", kPolicy}});
    ASSERT_TRUE(pol);
    auto s = rules::compile(*pol, {.revision = 1});
    ASSERT_TRUE(s);
    snap.policy = *s;
    file = (std::filesystem::temp_directory_path() / ("zt-capture-" + std::to_string(::getpid()) + ".pcapng")).string();
  }
  void TearDown() override { std::filesystem::remove(file); }

  unsigned run(const std::vector<Bytes>& frames) {
    std::vector<rte_mbuf*> m;
    for (const auto& f : frames) {
      rte_mbuf* b = rte_pktmbuf_alloc(g_pool);
      std::memcpy(rte_pktmbuf_append(b, static_cast<std::uint16_t>(f.size())), f.data(), f.size());
      m.push_back(b);
    }
    const auto keep = pipe->run(m.data(), static_cast<std::uint16_t>(m.size()), 0, &snap,
                                {static_cast<std::uint64_t>(kNow), kNow}, c);
    for (unsigned i = 0; i < keep; ++i) rte_pktmbuf_free(m[i]);
    return keep;
  }

  std::unique_ptr<dp::Capture> cap;
  std::unique_ptr<dp::Pipeline> pipe;
  dp::Snapshot snap;
  dp::WorkerCounters c;
  std::string file;
};

TEST_F(CaptureTest, NothingIsCopiedUntilACaptureStarts) {
  EXPECT_EQ(run({udp(53), telnet_syn()}), 1u);
  EXPECT_EQ(cap->tap(0).captured(), 0u);
  EXPECT_EQ(cap->poll(), 0u);
}

TEST_F(CaptureTest, TheFileOpensInTcpdumpAndHoldsEveryPacketWithItsVerdict) {
  ASSERT_TRUE(cap->start({.file = file, .port_names = {"zone-a", "zone-b"}}));
  const auto dns = udp(53), syn = telnet_syn();
  EXPECT_EQ(run({dns, syn}), 1u);
  EXPECT_EQ(cap->poll(), 2u);
  auto st = cap->stop();
  ASSERT_TRUE(st) << st.error();
  EXPECT_EQ(st->written, 2u);
  EXPECT_EQ(st->lost, 0u);
  EXPECT_FALSE(st->active);

  const auto [rc, lines] = tcpdump(file);
  EXPECT_EQ(rc, 0);
  ASSERT_EQ(lines.size(), 2u);
  // -tt: seconds since 1970 as stamped by the pipeline's clock (kNow, ns; tcpdump prints us).
  EXPECT_EQ(lines[0].rfind("1800000000.123456 IP 10.1.0.1.5000 > 10.2.0.5.53: ", 0), 0u) << lines[0];
  EXPECT_EQ(lines[1].rfind("1800000000.123456 IP 10.1.0.1.40000 > 10.2.0.5.23: Flags [S]", 0), 0u) << lines[1];

  const auto pk = read_pcapng(file);
  ASSERT_EQ(pk.size(), 2u);
  EXPECT_EQ(pk[0].data, dns);
  EXPECT_EQ(pk[0].comment, "forwarded (worker 0)");
  EXPECT_EQ(pk[1].data, syn);
  EXPECT_EQ(pk[1].comment, "dropped: policy_deny - an explicit deny rule matched the flow (worker 0)");
}

TEST_F(CaptureTest, DropsOnlyKeepsOnlyDroppedPacketsAndCountStopsTheCapture) {
  ASSERT_TRUE(cap->start({.file = file, .drops_only = true, .count = 2}));
  run({udp(53), telnet_syn(), udp(99)});  // forwarded, policy_deny, policy_default_deny
  run({udp(53), telnet_syn()});
  cap->poll();
  EXPECT_FALSE(cap->status().active);  // two written: done by itself
  EXPECT_EQ(cap->tap(0).captured(), 3u);  // the third copy was drained and discarded
  const auto pk = read_pcapng(file);
  ASSERT_EQ(pk.size(), 2u);
  EXPECT_NE(pk[0].comment.find("dropped: policy_deny"), std::string::npos);
  EXPECT_NE(pk[1].comment.find("dropped: policy_default_deny"), std::string::npos);
  EXPECT_EQ(tcpdump(file).second.size(), 2u);
  run({telnet_syn()});  // disarmed: not copied
  EXPECT_EQ(cap->tap(0).captured(), 3u);
}

TEST_F(CaptureTest, SnaplenCutsTheCopyAndKeepsTheOriginalLength) {
  ASSERT_TRUE(cap->start({.file = file, .snaplen = 64}));
  run({udp(53, 200)});
  ASSERT_TRUE(cap->stop());
  const auto pk = read_pcapng(file);
  ASSERT_EQ(pk.size(), 1u);
  EXPECT_EQ(pk[0].caplen, 64u);
  EXPECT_EQ(pk[0].origlen, udp(53, 200).size());
  EXPECT_EQ(tcpdump(file).first, 0);
}

TEST_F(CaptureTest, AFullRingLosesPacketsAndCountsThemWithoutBlocking) {
  ASSERT_TRUE(cap->start({.file = file}));
  std::vector<Bytes> burst(20, udp(53));
  run(burst);  // ring of 8 (+ rounding) and no drain in between
  const auto st = cap->stop();
  ASSERT_TRUE(st);
  EXPECT_GT(st->lost, 0u);
  EXPECT_EQ(st->written + st->lost, 20u);
  EXPECT_EQ(read_pcapng(file).size(), st->written);
}

TEST_F(CaptureTest, StartTwiceOrIntoAnUnwritablePathIsRefused) {
  auto e = cap->start({.file = "/nonexistent-dir/x.pcapng"});
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error(), "capture: cannot create '/nonexistent-dir/x.pcapng': No such file or directory");
  ASSERT_TRUE(cap->start({.file = file}));
  e = cap->start({.file = file});
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error(), "capture: already capturing to '" + file + "' (capture stop first)");
  e = cap->start({.file = file + "2", .snaplen = 4000});
  ASSERT_FALSE(e);
  ASSERT_TRUE(cap->stop());
  e = cap->start({.file = file, .snaplen = 4000});
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error(), "capture: snaplen 4000: expected 14 to 256");
}

}  // namespace
