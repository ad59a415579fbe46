// ztgate's YAML config file: what it sets, that the command line wins, and errors that name the
// file, line and key. The example file shipped with the appliance must load.
#include <gtest/gtest.h>

#include <boost/program_options.hpp>

#include <filesystem>
#include <fstream>

#include "config/config_file.hpp"

namespace {

using namespace zt::appliance;
using namespace zt::appliance::config;

class ConfigFileTest : public ::testing::Test {
 protected:
  std::string write(const std::string& text) {
    path = (std::filesystem::temp_directory_path() /
            ("ztgate-config-test-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".yaml"))
               .string();
    std::ofstream(path) << text;
    return path;
  }
  void TearDown() override {
    if (!path.empty()) std::filesystem::remove(path);
  }
  std::string path;
};

constexpr const char* kGood = R"(# a complete appliance
ports:
  a: net_ring0
  b: net_ring1
  workers: 2
  promiscuous: false
policy:
  dir: /etc/ztgate/policy
  geneve: keep
  flows: 4096
eal:
  memory: 128
  args: [--log-level=lib.eal:debug, --no-telemetry]
operation:
  quiet: true
admin:
  socket: /run/ztgate/admin.sock
  group: ztadmin
  readonly_group: ztview
metrics:
  listen: 127.0.0.1:9310
volumetric:
  new_flows: 20000
flow_log:
  worker_rate: 300
  file: /var/log/ztgate/flows.jsonl
  syslog: true
  rate: 200
tunables:
  segments: {zone-b: audit}
  flow_timeouts: {tcp_established: 30m, udp: 45}
  log_level: info
  volumetric: {new_flows_pps: 5000}
)";

TEST_F(ConfigFileTest, AFileSetsTheSameOptionsAsTheCommandLineAndTheRest) {
  Options o;
  auto s = load_config(write(kGood), o);
  ASSERT_TRUE(s) << s.error();
  EXPECT_EQ(o.runtime.ports[0], "net_ring0");
  EXPECT_EQ(o.runtime.ports[1], "net_ring1");
  EXPECT_EQ(o.runtime.workers, 2u);
  EXPECT_FALSE(o.runtime.promiscuous);
  EXPECT_EQ(o.policy_dir, "/etc/ztgate/policy");
  EXPECT_EQ(o.runtime.geneve, zt::dp::GeneveMode::keep);
  EXPECT_EQ(o.runtime.flows, 4096u);
  EXPECT_EQ(o.runtime.memory_mb, 128u);
  EXPECT_EQ(o.runtime.extra_eal_args, (std::vector<std::string>{"--log-level=lib.eal:debug", "--no-telemetry"}));
  EXPECT_TRUE(o.quiet);
  EXPECT_EQ(o.admin.socket, "/run/ztgate/admin.sock");
  EXPECT_EQ(o.admin.admin_group, "ztadmin");
  EXPECT_EQ(o.admin.ro_group, "ztview");
  EXPECT_EQ(o.admin.metrics_listen, "127.0.0.1:9310");
  EXPECT_EQ(o.runtime.control.volumetric.new_flows_global, 20000u);
  EXPECT_EQ(o.runtime.control.volumetric.flow_log_rate, 300u);
  EXPECT_EQ(s->flow_log.file, "/var/log/ztgate/flows.jsonl");
  EXPECT_TRUE(s->flow_log.syslog);
  EXPECT_EQ(s->tunables.flow_log_rate, 200u);
  EXPECT_EQ(s->tunables.segment_mode.at("zone-b"), SegmentMode::audit);
  EXPECT_EQ(s->tunables.tcp_established_s, 1800u);
  EXPECT_EQ(s->tunables.udp_s, 45u);
  EXPECT_EQ(s->tunables.log_level, "info");
  EXPECT_EQ(s->tunables.volumetric.at("new_flows_pps"), "5000");
}

// How options.cpp combines them: argv stored first, the file's args second; po keeps the first.
TEST_F(ConfigFileTest, TheCommandLineOverridesTheFile) {
  auto cf = read_config(write(kGood));
  ASSERT_TRUE(cf) << cf.error();
  namespace po = boost::program_options;
  unsigned workers = 0;
  std::string port_a;
  po::options_description d;
  d.add_options()("workers", po::value(&workers))("port-a", po::value(&port_a))(
      "port-b", po::value<std::string>())("promiscuous", po::value<bool>())("policy", po::value<std::string>())(
      "geneve", po::value<std::string>())("flows", po::value<unsigned>())("memory", po::value<unsigned>())(
      "eal-arg", po::value<std::vector<std::string>>()->composing())("quiet", po::bool_switch());
  const char* argv[] = {"ztgate", "--workers=4"};
  po::variables_map vm;
  po::store(po::command_line_parser(2, argv).options(d).run(), vm);
  po::store(po::command_line_parser(cf->args).options(d).allow_unregistered().run(), vm);
  po::notify(vm);
  EXPECT_EQ(workers, 4u);
  EXPECT_EQ(port_a, "net_ring0");
}

TEST_F(ConfigFileTest, AnUnknownKeyIsNamedWithItsLineAndTheKeysAllowed) {
  Options o;
  auto s = load_config(write("ports:\n  a: net_ring0\n  b: net_ring1\n  worker: 2\n"), o);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error(), path + ":4: ports.worker: unknown key (expected a, b, workers, lcores, rx_desc, tx_desc, "
                              "mbufs, promiscuous in section ports)");
  s = load_config(write("port:\n  a: x\n"), o);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().find(path + ":1: port: unknown section"), std::string::npos) << s.error();
}

TEST_F(ConfigFileTest, ABadValueIsNamedWithItsLineAndKey) {
  Options o;
  auto s = load_config(write("ports:\n  a: net_ring0\n  b: net_ring1\n  workers: 99\n"), o);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error(), path + ":4: ports.workers: --workers 99: expected 1 to 64");
  s = load_config(write("ports:\n  a: net_ring0\n  b: net_ring1\npolicy:\n  geneve: wrap\n"), o);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error(), path + ":5: policy.geneve: --geneve 'wrap': expected strip or keep");
  s = load_config(write("ports:\n  a: net_ring0\n  b: net_ring1\n  rx_desc: many\n"), o);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().find(path + ":4: ports.rx_desc: "), std::string::npos) << s.error();
  s = load_config(write("ports:\n  a: net_ring0\n  b: net_ring1\ntunables:\n  segments:\n    zone-a: monitor\n"), o);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error(), path + ":6: segment.zone-a.mode 'monitor': expected enforce or audit");
  s = load_config(write("ports:\n  a: [net_ring0]\n"), o);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error(), path + ":2: ports.a: expected a single value, not a list or map");
}

TEST_F(ConfigFileTest, AMissingRequiredSettingIsNamedByItsKey) {
  Options o;
  auto s = load_config(write("ports:\n  a: net_ring0\n"), o);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error(), path + ":2: ports.a: both --port-a and --port-b are required (see ztgate --help)");
  s = load_config(write("policy:\n  dir: /x\n"), o);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error(), path + ": both --port-a and --port-b are required (see ztgate --help) (key ports.a)");
}

TEST_F(ConfigFileTest, BrokenYamlAndAMissingFileAreReported) {
  Options o;
  auto s = load_config(write("ports:\n  a: [net_ring0\n  b: x\n"), o);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().find(path + ":"), std::string::npos);
  EXPECT_NE(s.error().find("not valid YAML"), std::string::npos) << s.error();
  s = load_config("/nonexistent/ztgate.yaml", o);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error(), "/nonexistent/ztgate.yaml: cannot read the config file");
}

TEST_F(ConfigFileTest, VolumetricTunablesGoThroughTheValidatorWhenGiven) {
  Options o;
  const auto v = [](std::string_view k, std::string_view) -> std::expected<void, std::string> {
    return std::unexpected("unknown volumetric key '" + std::string(k) + "'");
  };
  auto s = load_config(write("ports: {a: x, b: y}\ntunables:\n  volumetric:\n    floods: 3\n"), o, v);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error(), path + ":4: volumetric.floods: unknown volumetric key 'floods'");
}

TEST_F(ConfigFileTest, TheShippedExampleLoads) {
  Options o;
  auto s = load_config(ZT_EXAMPLE_CONFIG, o);
  ASSERT_TRUE(s) << s.error();
  EXPECT_FALSE(o.runtime.ports[0].empty());
  EXPECT_FALSE(o.admin.socket.empty());
  EXPECT_FALSE(s->flow_log.file.empty());
}

}  // namespace
