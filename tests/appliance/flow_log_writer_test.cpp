// The flow-log writer: the exact JSON lines an operator's SIEM receives, its rate limit and
// reopen after logrotate.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "flowlog/flow_log_writer.hpp"
#include "zt/rules/policy.hpp"

namespace {

using namespace zt;
using namespace zt::appliance::flowlog;
using namespace std::chrono_literals;

// 2026-11-24T07:30:00.123Z
constexpr std::int64_t kT = 1795505400LL * 1'000'000'000 + 123'456'789;

dp::FlowLogRecord deny_record() {
  dp::FlowLogRecord r;
  r.time_ns = kT;
  r.revision = 7;
  r.src = {10, 1, 0, 1};
  r.dst = {10, 2, 0, 5};
  r.sport = 40000;
  r.dport = 23;
  r.proto = 6;
  r.version = 4;
  r.identity = 2;
  r.rule_id = 30;
  r.has_rule = 1;
  r.reason = static_cast<std::uint16_t>(rules::DropReason::policy_deny);
  r.kind = dp::FlowLogKind::deny;
  r.worker = 1;
  return r;
}

Names test_names() {
  Names n;
  n.segment = [](const rules::IpAddress& a) -> std::string { return a.bytes[1] == 2 ? "zone-b" : ""; };
  n.identity = [](std::uint32_t id) -> std::string { return id == 2 ? "unauthenticated" : "web"; };
  return n;
}

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> v;
  for (std::string l; std::getline(in, l);) v.push_back(l);
  return v;
}

TEST(FlowLogFormat, ADenyRecordIsOneJsonLineWithEveryField) {
  EXPECT_EQ(format_line(deny_record(), test_names()),
            R"({"time":"2026-11-24T07:30:00.123Z","kind":"deny","src":"10.1.0.1","sport":40000,)"
            R"("dst":"10.2.0.5","dport":23,"proto":"tcp","identity":{"id":2,"name":"unauthenticated"},)"
            R"("segment":"zone-b","rule":30,"revision":7,"reason":"policy_deny","worker":1})");
}

TEST(FlowLogFormat, AnAuditRecordSaysWouldDenyAndV6AddressesAreWrittenShort) {
  auto r = deny_record();
  r.kind = dp::FlowLogKind::audit;
  r.reason = 0;
  r.has_rule = 0;
  r.version = 6;
  r.proto = 17;
  r.identity = 1001;
  r.src = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  r.dst = {0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10};
  r.dport = 53;
  EXPECT_EQ(format_line(r, test_names()),
            R"({"time":"2026-11-24T07:30:00.123Z","kind":"audit","src":"2001:db8::1","sport":40000,)"
            R"("dst":"2001:db8:1::10","dport":53,"proto":"udp","identity":{"id":1001,"name":"web"},)"
            R"("segment":null,"rule":null,"revision":7,"reason":"would_deny","worker":1})");
}

TEST(FlowLogFormat, WithoutNamesOnlyNumbersAreWritten) {
  auto r = deny_record();
  r.proto = 47;
  r.reason = static_cast<std::uint16_t>(rules::DropReason::policy_default_deny);
  EXPECT_EQ(format_line(r, {}),
            R"({"time":"2026-11-24T07:30:00.123Z","kind":"deny","src":"10.1.0.1","sport":40000,)"
            R"("dst":"10.2.0.5","dport":23,"proto":47,"identity":{"id":2,"name":null},)"
            R"("segment":null,"rule":30,"revision":7,"reason":"policy_default_deny","worker":1})");
}

TEST(FlowLogFormat, TimesBeforeTheSecondAndAtEpochAreRfc3339) {
  EXPECT_EQ(format_time(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(format_time(1'999'000'000), "1970-01-01T00:00:01.999Z");
}

TEST(FlowLogFormat, NamesFromAPolicyUseItsSegmentsAndIdentities) {
  auto p = rules::parse_policy({{"p.yaml", R"(
identities:
  - {id: 1001, name: web, labels: {app: web}}
segments:
  - {name: zone-b, prefixes: [10.2.0.0/24], labels: {zone: b}}
rules:
  - {id: 10, name: web-to-b, from: {labels: {app: web}}, to: {segments: [zone-b]}, proto: tcp, ports: [80], action: allow}
)"}});
  ASSERT_TRUE(p);
  auto s = rules::compile(*p, {});
  ASSERT_TRUE(s);
  const auto n = names_from(*s);
  auto r = deny_record();
  r.identity = 1001;
  const auto line = format_line(r, n);
  EXPECT_NE(line.find(R"("identity":{"id":1001,"name":"web"},"segment":"zone-b")"), std::string::npos) << line;
  r.dst = {192, 168, 0, 1};
  EXPECT_NE(format_line(r, n).find(R"("segment":null)"), std::string::npos);
}

class FlowLogWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = std::filesystem::temp_directory_path() / ("zt-flowlog-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    file = (dir / "flows.jsonl").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir); }
  std::chrono::steady_clock::time_point now() const { return std::chrono::steady_clock::time_point{} + t; }
  std::filesystem::path dir;
  std::string file;
  std::chrono::milliseconds t{1000};
};

TEST_F(FlowLogWriterTest, WritesOneLinePerRecordUpToItsRateAndCountsTheRest) {
  WriterConfig cfg{.file = file, .rate = 2};
  auto w = FlowLogWriter::create(cfg, [this] { return now(); });
  ASSERT_TRUE(w) << w.error();
  std::vector<dp::FlowLogRecord> recs(5, deny_record());
  EXPECT_EQ((*w)->write(recs, test_names()), 2u);
  auto lines = lines_of(file);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], format_line(recs[0], test_names()));
  EXPECT_EQ((*w)->stats().rate_limited, 3u);
  t += 500ms;  // one more token
  EXPECT_EQ((*w)->write(recs, test_names()), 1u);
  EXPECT_EQ(lines_of(file).size(), 3u);
  (*w)->set_rate(100);
  t += 1s;
  EXPECT_EQ((*w)->write(recs, test_names()), 5u);
  const auto st = (*w)->stats();
  EXPECT_EQ(st.written, 8u);
  EXPECT_EQ(st.rate_limited, 7u);
}

TEST_F(FlowLogWriterTest, ReopenStartsANewFileAfterLogrotateMovedTheOldOne) {
  auto w = FlowLogWriter::create({.file = file, .rate = 100}, [this] { return now(); });
  ASSERT_TRUE(w) << w.error();
  std::vector<dp::FlowLogRecord> one(1, deny_record());
  (*w)->write(one, {});
  const auto rotated = (dir / "flows.jsonl.1").string();
  std::filesystem::rename(file, rotated);
  (*w)->write(one, {});  // still into the moved file
  ASSERT_TRUE((*w)->reopen());
  (*w)->write(one, {});
  EXPECT_EQ(lines_of(rotated).size(), 2u);
  EXPECT_EQ(lines_of(file).size(), 1u);
}

TEST_F(FlowLogWriterTest, AnUnwritableFileIsRefusedNamingIt) {
  auto w = FlowLogWriter::create({.file = "/nonexistent-dir/flows.jsonl"});
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error(), "flow log '/nonexistent-dir/flows.jsonl': cannot open: No such file or directory");
  w = FlowLogWriter::create({});
  ASSERT_FALSE(w);
  EXPECT_NE(w.error().find("neither a file nor syslog"), std::string::npos);
}

}  // namespace
