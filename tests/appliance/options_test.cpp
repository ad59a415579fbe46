// ztgate's options and the EAL arguments they turn into: what an operator types and what EAL
// is told, without starting EAL.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "options.hpp"
#include "zt/dataplane/runtime.hpp"

namespace {

using zt::appliance::parse_options;
using zt::dp::build_eal_args;
using zt::dp::Hugepages;
using zt::dp::RuntimeConfig;

auto parse(std::vector<std::string> args) {
  args.insert(args.begin(), "ztgate");
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  return parse_options(static_cast<int>(argv.size()), argv.data());
}

bool has_pair(const std::vector<std::string>& v, const std::string& a, const std::string& b) {
  for (std::size_t i = 0; i + 1 < v.size(); ++i)
    if (v[i] == a && v[i + 1] == b) return true;
  return false;
}

bool has(const std::vector<std::string>& v, const std::string& a) {
  return std::find(v.begin(), v.end(), a) != v.end();
}

TEST(EalArgs, VirtualDevicesWithoutHugepagesRunWithNoHugeNoPciAndNoSharedConfig) {
  RuntimeConfig c;
  c.ports = {"net_af_packet0,iface=zt-a1", "net_af_packet1,iface=zt-b1"};
  auto a = build_eal_args(c, /*hugepages_available=*/false);
  EXPECT_TRUE(has_pair(a, "-l", "0-1"));
  EXPECT_TRUE(has(a, "--no-huge"));
  EXPECT_TRUE(has(a, "--no-shconf"));
  EXPECT_TRUE(has(a, "--no-pci"));
  EXPECT_TRUE(has_pair(a, "-m", "256"));
  EXPECT_TRUE(has_pair(a, "--vdev", "net_af_packet0,iface=zt-a1"));
  EXPECT_TRUE(has_pair(a, "--vdev", "net_af_packet1,iface=zt-b1"));
  EXPECT_FALSE(has(a, "--in-memory"));  // EAL refuses it with --no-huge
}

TEST(EalArgs, PciPortsWithHugepagesAllowThoseDevicesAndUseTheFilePrefix) {
  RuntimeConfig c;
  c.ports = {"0000:03:00.0", "0000:03:00.1"};
  c.workers = 4;
  auto a = build_eal_args(c, /*hugepages_available=*/true);
  EXPECT_TRUE(has_pair(a, "-l", "0-4"));
  EXPECT_TRUE(has_pair(a, "-a", "0000:03:00.0"));
  EXPECT_TRUE(has_pair(a, "-a", "0000:03:00.1"));
  EXPECT_TRUE(has_pair(a, "--file-prefix", "ztgate"));
  EXPECT_FALSE(has(a, "--no-huge"));
  EXPECT_FALSE(has(a, "--no-pci"));
}

TEST(EalArgs, HugepagesOffWinsOverAMachineThatHasThem) {
  RuntimeConfig c;
  c.ports = {"net_null0", "net_null1"};
  c.hugepages = Hugepages::off;
  EXPECT_TRUE(has(build_eal_args(c, true), "--no-huge"));
  c.hugepages = Hugepages::on;
  EXPECT_FALSE(has(build_eal_args(c, false), "--no-huge"));
}

TEST(EalArgs, AnLcoreMapGoesToEalAsLcoresAndExtraArgumentsComeLast) {
  RuntimeConfig c;
  c.ports = {"net_null0", "net_null1"};
  c.lcores = "0@0,1@1,2@1";
  c.extra_eal_args = {"--huge-unlink"};
  auto a = build_eal_args(c, false);
  EXPECT_TRUE(has_pair(a, "--lcores", "0@0,1@1,2@1"));
  EXPECT_EQ(a.back(), "--huge-unlink");
}

TEST(PortName, IsTheVdevNameBeforeItsArgumentsOrThePciAddress) {
  EXPECT_EQ(zt::dp::port_name("net_pcap0,rx_pcap=a.pcap,tx_pcap=b.pcap"), "net_pcap0");
  EXPECT_EQ(zt::dp::port_name("net_null1"), "net_null1");
  EXPECT_EQ(zt::dp::port_name("0000:03:00.0"), "0000:03:00.0");
  EXPECT_TRUE(zt::dp::is_vdev("net_ring0"));
  EXPECT_FALSE(zt::dp::is_vdev("0000:03:00.0"));
}

TEST(Options, CommandLineGivesPortsWorkersAndOperationSettings) {
  auto r = parse({"--port-a", "net_null0", "--port-b", "net_null1", "--workers", "3", "--stats-file",
                  "/tmp/s.json", "--stop-when-idle", "250", "--hugepages", "off"});
  ASSERT_TRUE(r) << r.error();
  EXPECT_FALSE(r->exit_now);
  EXPECT_EQ(r->options.runtime.ports[0], "net_null0");
  EXPECT_EQ(r->options.runtime.workers, 3u);
  EXPECT_EQ(r->options.stats_file, "/tmp/s.json");
  EXPECT_EQ(r->options.stop_when_idle_ms, 250u);
  EXPECT_EQ(r->options.runtime.hugepages, Hugepages::off);
}

TEST(Options, ConfigFileFillsWhatTheCommandLineLeavesOutAndTheCommandLineWins) {
  const std::string path = ::testing::TempDir() + "ztgate_options_test.conf";
  {
    std::ofstream f(path);
    f << "port-a = net_null0\nport-b = net_null1\nworkers = 2\nmbufs = 8191\n";
  }
  auto r = parse({"--config", path, "--workers", "5"});
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->options.runtime.ports[1], "net_null1");
  EXPECT_EQ(r->options.runtime.mbufs, 8191u);
  EXPECT_EQ(r->options.runtime.workers, 5u);
}

TEST(Options, BadValuesAreRefusedWithAMessageNamingTheOption) {
  auto r = parse({"--port-a", "net_null0", "--port-b", "net_null1", "--workers", "many"});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("--workers"), std::string::npos) << r.error();

  r = parse({"--port-a", "net_null0", "--port-b", "net_null1", "--mbufs", "10"});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("--mbufs 10"), std::string::npos) << r.error();

  r = parse({"--port-a", "net_null0"});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("--port-b"), std::string::npos) << r.error();
}

TEST(Options, TagWindowAndEpochGraceDefaultToDesignValuesAndReachTheKeySettings) {
  auto r = parse({"--port-a", "net_null0", "--port-b", "net_null1"});
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->options.keys.tag_window_ms, 1000);
  EXPECT_EQ(r->options.keys.epoch_grace_ms, 5000);

  r = parse({"--port-a", "net_null0", "--port-b", "net_null1", "--tag-window-ms", "250", "--epoch-grace-ms", "0"});
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->options.keys.tag_window_ms, 250);
  EXPECT_EQ(r->options.keys.epoch_grace_ms, 0);
}

TEST(Options, BadTagWindowEpochGraceOrEpochLengthIsRefusedNamingTheOptionAndTheRange) {
  const std::vector<std::string> ports = {"--port-a", "net_null0", "--port-b", "net_null1"};
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--tag-window-ms", "0"}, "--tag-window-ms 0: expected 1 to 60000 milliseconds"},
      {{"--tag-window-ms", "90000"}, "--tag-window-ms 90000: expected 1 to 60000"},
      {{"--tag-window-ms", "soon"}, "--tag-window-ms"},
      {{"--epoch-grace-ms", "-1"}, "--epoch-grace-ms -1: expected 0 to less than --epoch-length (900 s)"},
      {{"--epoch-length", "60", "--epoch-grace-ms", "60000"}, "--epoch-grace-ms 60000: expected 0 to less than --epoch-length (60 s)"},
      {{"--epoch-length", "5"}, "--epoch-length 5: expected 10 to 86400 seconds"},
      {{"--manager", "h:1", "--state-dir", "s", "--psk-file", "p", "--tag-window-ms", "2000"},
       "--tag-window-ms does not apply with --manager"},
  };
  for (const auto& [extra, want] : cases) {
    auto args = ports;
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = parse(args);
    ASSERT_FALSE(r) << want;
    EXPECT_NE(r.error().find(want), std::string::npos) << r.error();
  }
}

TEST(PolicySource, RefusesATagWindowOrGraceOutsideItsRange) {
  zt::appliance::KeySettings k;
  k.tag_window_ms = 0;
  auto p = zt::appliance::PolicySource::create("/nonexistent", k);
  ASSERT_FALSE(p);
  EXPECT_NE(p.error().find("--tag-window-ms 0"), std::string::npos) << p.error();
  k.tag_window_ms = 1000;
  k.epoch_length_s = 10;
  k.epoch_grace_ms = 10000;
  p = zt::appliance::PolicySource::create("/nonexistent", k);
  ASSERT_FALSE(p);
  EXPECT_NE(p.error().find("--epoch-grace-ms 10000"), std::string::npos) << p.error();
}

TEST(Options, ManagerModeTakesHostPortStateDirPskAndEnrolmentSettings) {
  auto r = parse({"--port-a", "net_null0", "--port-b", "net_null1", "--manager", "10.0.0.5:7443", "--state-dir",
                  "/var/lib/ztgate", "--psk-file", "/etc/ztgate/psk", "--enrol-token", "zt1-abc", "--manager-ca",
                  "/etc/ztgate/ca.pem", "--enrol-port", "8444"});
  ASSERT_TRUE(r) << r.error();
  const auto& m = r->options.manager;
  EXPECT_TRUE(m.enabled());
  EXPECT_EQ(m.host, "10.0.0.5");
  EXPECT_EQ(m.port, 7443);
  EXPECT_EQ(m.enrol_port, 8444);
  EXPECT_EQ(m.state_dir, "/var/lib/ztgate");
  EXPECT_EQ(m.psk_file, "/etc/ztgate/psk");
  EXPECT_EQ(m.enrol_token, "zt1-abc");
  EXPECT_EQ(m.ca_file, "/etc/ztgate/ca.pem");
  EXPECT_EQ(m.tls_groups, "X25519:P-256");
  EXPECT_TRUE(r->options.policy_dir.empty());

  r = parse({"--port-a", "net_null0", "--port-b", "net_null1", "--manager", "[::1]:7443", "--state-dir", "s",
             "--psk-file", "p"});
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->options.manager.host, "::1");

  const std::string path = ::testing::TempDir() + "ztgate_manager_options_test.conf";
  {
    std::ofstream f(path);
    f << "port-a = net_null0\nport-b = net_null1\nmanager = 127.0.0.1:7443\nstate-dir = /s\npsk-file = /p\n";
  }
  r = parse({"--config", path});
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->options.manager.port, 7443);
  EXPECT_EQ(r->options.manager.psk_file, "/p");

  r = parse({"--port-a", "net_null0", "--port-b", "net_null1"});
  ASSERT_TRUE(r) << r.error();
  EXPECT_FALSE(r->options.manager.enabled());
}

TEST(Options, ManagerModeRefusesConflictsAndBadValuesNamingTheOption) {
  const std::vector<std::string> ports = {"--port-a", "net_null0", "--port-b", "net_null1"};
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--manager", "h:1", "--state-dir", "s", "--psk-file", "p", "--policy", "dir"},
       "--manager and --policy are mutually exclusive"},
      {{"--manager", "h:1", "--state-dir", "s", "--psk-file", "p", "--key-master", "k"}, "--key-master"},
      {{"--manager", "h:1", "--state-dir", "s"}, "--psk-file"},
      {{"--manager", "h:1", "--psk-file", "p"}, "--state-dir"},
      {{"--manager", "h", "--state-dir", "s", "--psk-file", "p"}, "--manager 'h'"},
      {{"--manager", ":7443", "--state-dir", "s", "--psk-file", "p"}, "--manager ':7443'"},
      {{"--manager", "h:0", "--state-dir", "s", "--psk-file", "p"}, "--manager 'h:0'"},
      {{"--manager", "h:70000", "--state-dir", "s", "--psk-file", "p"}, "--manager 'h:70000'"},
      {{"--manager", "h:12x", "--state-dir", "s", "--psk-file", "p"}, "--manager 'h:12x'"},
      {{"--manager", "h:1", "--state-dir", "s", "--psk-file", "p", "--enrol-port", "0"}, "--enrol-port"},
      {{"--state-dir", "s"}, "--state-dir is only meaningful with --manager"},
      {{"--enrol-token", "t"}, "--enrol-token is only meaningful with --manager"},
  };
  for (const auto& [extra, want] : cases) {
    auto args = ports;
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = parse(args);
    ASSERT_FALSE(r) << want;
    EXPECT_NE(r.error().find(want), std::string::npos) << r.error();
  }
}

TEST(Options, HelpAndVersionExitAtOnce) {
  auto r = parse({"--help"});
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->exit_now);
  EXPECT_NE(r->text.find("--stop-when-idle"), std::string::npos);
  EXPECT_NE(r->text.find("--manager"), std::string::npos);
  EXPECT_NE(r->text.find("--psk-file"), std::string::npos);
  EXPECT_NE(r->text.find("--tag-window-ms"), std::string::npos);
  EXPECT_NE(r->text.find("--epoch-grace-ms"), std::string::npos);
  r = parse({"--version"});
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->exit_now);
  EXPECT_EQ(r->text.rfind("ztgate ", 0), 0u);
}

}  // namespace
