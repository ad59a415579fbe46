// ztctl as a real process: exit codes and what an operator reads.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

using ::testing::HasSubstr;

struct Run {
  int status = -1;
  std::string out;  // stdout and stderr together
};

Run ztctl(const std::string& args) {
  const char* exe = std::getenv("ZTCTL");
  if (!exe) {
    ADD_FAILURE() << "ZTCTL is not set (meson test sets it)";
    return {};
  }
  std::string cmd = std::string(exe) + " " + args + " 2>&1";
  Run r;
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) return r;
  char buf[4096];
  std::size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) r.out.append(buf, n);
  int st = pclose(f);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

const std::string kExample = ZT_EXAMPLE_POLICY;
const std::string kData = ZT_TESTDATA;

TEST(Ztctl, PolicyTestPassesOnTheExample) {
  auto r = ztctl("policy test " + kExample);
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr(" passed, 0 failed"));
}

TEST(Ztctl, PolicyTestFailsOnAWrongTestAndNamesTheRule) {
  auto r = ztctl("policy test " + kData + "/wrong-test");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("FAIL "));
  EXPECT_THAT(r.out, HasSubstr("wrong-test/policy.yaml:11:5: test 'admin is open'"));
  EXPECT_THAT(r.out, HasSubstr("expected allow, got deny by rule 8 (no-admin)"));
  EXPECT_THAT(r.out, HasSubstr("1 passed, 1 failed"));
}

TEST(Ztctl, PolicyCheckPrintsASummary) {
  auto r = ztctl("policy check " + kExample);
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("policy is valid"));
  EXPECT_THAT(r.out, HasSubstr("digest:       sha256:"));
  EXPECT_THAT(r.out, HasSubstr("in audit mode"));
}

TEST(Ztctl, PolicyCheckJsonIsStructured) {
  auto r = ztctl("policy check --json " + kExample);
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("\"valid\": true"));
  EXPECT_THAT(r.out, HasSubstr("\"rules\": 7"));
}

TEST(Ztctl, PolicyCheckReportsEveryErrorWithItsLocation) {
  auto r = ztctl("policy check " + kData + "/invalid-multi-file");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("invalid-multi-file/b.yaml:4:69: port range 90-80 is reversed; write 80-90"));
  EXPECT_THAT(r.out, HasSubstr("invalid-multi-file/b.yaml:4:33: unknown identity 'wbe'"));
  EXPECT_THAT(r.out, HasSubstr("policy is invalid (3 errors); nothing was compiled"));
}

TEST(Ztctl, PolicyCheckJsonCarriesErrors) {
  auto r = ztctl("policy check --json " + kData + "/invalid-multi-file");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("\"valid\": false"));
  EXPECT_THAT(r.out, HasSubstr("\"line\": 4"));
  EXPECT_THAT(r.out, HasSubstr("\"column\": 69"));
}

TEST(Ztctl, PolicyTraceExplainsTheWinner) {
  auto r = ztctl("policy trace " + kExample + " --from client-a --to 10.10.0.2 --proto tcp --port 22");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("MATCH  rule 200 (no-ssh-from-clients)"));
  EXPECT_THAT(r.out, HasSubstr("deny beats allow"));
  EXPECT_THAT(r.out, HasSubstr("verdict: deny by rule 200 (no-ssh-from-clients)"));
}

TEST(Ztctl, PolicyTraceJson) {
  auto r = ztctl("policy trace --json " + kExample + " --from web-a --to 10.10.0.2 --port 5201");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("\"disposition\": \"allow\""));
  EXPECT_THAT(r.out, HasSubstr("\"rule_id\": 100"));
}

TEST(Ztctl, PolicyDiffListsChangedDecisions) {
  auto r = ztctl("policy diff " + kData + "/split-policy " + kData + "/changed-policy");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("web -> 10.20.0.0 tcp/443: deny by default deny (no rule matched)  =>  allow by rule 1 (web-http)"));
  auto strict = ztctl("policy diff --exit-code " + kData + "/split-policy " + kData + "/changed-policy");
  EXPECT_EQ(strict.status, 1);
  auto same = ztctl("policy diff --exit-code " + kData + "/split-policy " + kData + "/split-policy");
  EXPECT_EQ(same.status, 0) << same.out;
  EXPECT_THAT(same.out, HasSubstr("0 decisions changed"));
}

TEST(Ztctl, BadArgumentsExitTwoWithAClearMessage) {
  auto none = ztctl("");
  EXPECT_EQ(none.status, 2);
  auto unknown = ztctl("polcy check x");
  EXPECT_EQ(unknown.status, 2);
  EXPECT_THAT(unknown.out, HasSubstr("unknown command 'polcy check'"));
  auto missing = ztctl("policy check");
  EXPECT_EQ(missing.status, 2);
  EXPECT_THAT(missing.out, HasSubstr("ztctl policy check: missing the policy directory DIR"));
  auto port = ztctl("policy trace " + kExample + " --from web-a --to 10.10.0.2 --proto tcp");
  EXPECT_EQ(port.status, 2);
  EXPECT_THAT(port.out, HasSubstr("--port is required for tcp"));
  auto proto = ztctl("policy trace " + kExample + " --from web-a --to 10.10.0.2 --proto sctp --port 1");
  EXPECT_EQ(proto.status, 2);
  EXPECT_THAT(proto.out, HasSubstr("--proto 'sctp' is unknown"));
  auto opt = ztctl("policy test --frobnicate " + kExample);
  EXPECT_EQ(opt.status, 2);
  EXPECT_THAT(opt.out, HasSubstr("unrecognised option '--frobnicate'"));
}

TEST(Ztctl, HelpDocumentsEveryVerb) {
  auto r = ztctl("--help");
  EXPECT_EQ(r.status, 0);
  for (auto verb : {"policy check", "policy test", "policy trace", "policy diff"}) EXPECT_THAT(r.out, HasSubstr(verb));
  auto t = ztctl("policy trace --help");
  EXPECT_EQ(t.status, 0);
  EXPECT_THAT(t.out, HasSubstr("--from"));
  EXPECT_THAT(t.out, HasSubstr("--port"));
}

}  // namespace
