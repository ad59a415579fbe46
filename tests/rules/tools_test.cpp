// L7 checks and the offline tools (policy test, trace, diff) on real policy directories.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "zt/rules/tools.hpp"

namespace zt::rules {
namespace {

using ::testing::HasSubstr;

SnapshotPtr load(const std::string& dir) {
  auto s = load_and_compile(dir);
  if (!s)
    for (auto& d : s.error()) ADD_FAILURE() << format(d);
  return s ? *s : nullptr;
}

IpAddress ip(const char* s) { return *parse_address(s); }

TEST(PolicyTests, ExampleLabPolicyPassesAllItsTests) {
  auto snap = load(ZT_EXAMPLE_POLICY);
  ASSERT_TRUE(snap);
  auto results = run_tests(*snap);
  EXPECT_GE(results.size(), 10u);
  for (auto& r : results) EXPECT_TRUE(r.passed) << r.message;
}

TEST(PolicyTests, SplitPolicyIsMergedAcrossFiles) {
  auto snap = load(ZT_TESTDATA "/split-policy");
  ASSERT_TRUE(snap);
  EXPECT_EQ(snap->source().files.size(), 3u);
  auto results = run_tests(*snap);
  ASSERT_EQ(results.size(), 2u);
  for (auto& r : results) EXPECT_TRUE(r.passed) << r.message;
}

TEST(PolicyTests, WrongTestFailsAndNamesTheDecidingRule) {
  auto snap = load(ZT_TESTDATA "/wrong-test");
  ASSERT_TRUE(snap);
  auto results = run_tests(*snap);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_TRUE(results[0].passed) << results[0].message;
  EXPECT_FALSE(results[1].passed);
  EXPECT_EQ(results[1].got.verdict.rule_id, 8u);
  EXPECT_THAT(results[1].message,
              HasSubstr("wrong-test/policy.yaml:11:5: test 'admin is open': web -> 10.20.0.5 tcp/8443: expected allow, "
                        "got deny by rule 8 (no-admin) at "));
  EXPECT_THAT(results[1].message, HasSubstr("wrong-test/policy.yaml:7:5"));
}

const std::string kL7 = R"(
identities: [{id: 1001, name: web, labels: {app: web}}]
segments: [{name: b, prefixes: [10.0.0.0/24]}]
rules:
  - id: 1
    from: any
    to: any
    proto: tcp
    ports: [80]
    action: allow
    l7: {methods: [GET], paths: ['^/api/', '^/health$'], deny: ['(?i)union\s+select']}
  - {id: 2, from: any, to: any, proto: tcp, ports: [81], action: allow, l7: {deny: ['\x90\x90\x90']}}
  - {id: 3, from: any, to: any, proto: tcp, ports: [82], action: allow, l7: {paths: ['^/x']}}
)";

struct L7Test : ::testing::Test {
  SnapshotPtr snap;
  L7Scratch scratch;
  void SetUp() override {
    auto p = parse_policy({{"l7.yaml", kL7}});
    ASSERT_TRUE(p.has_value()) << format(p.error()[0]);
    auto s = compile(*p);
    ASSERT_TRUE(s.has_value());
    snap = *s;
    ASSERT_TRUE(snap->prepare_scratch(scratch).has_value());
  }
  L7Outcome check(std::uint16_t port, std::string_view method, std::string_view path, std::string_view payload) {
    auto v = snap->classify({1001, ip("10.0.0.1"), kProtoTcp, port});
    EXPECT_NE(v.l7, kNoL7);
    return snap->check_l7(v, method, path, {reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()},
                          scratch)
        .outcome;
  }
};

TEST_F(L7Test, AllowsListedMethodAndPath) {
  EXPECT_EQ(check(80, "GET", "/api/v1/users", "GET /api/v1/users HTTP/1.1\r\n\r\n"), L7Outcome::allowed);
  EXPECT_EQ(check(80, "GET", "/health", "GET /health HTTP/1.1\r\n\r\n"), L7Outcome::allowed);
}

TEST_F(L7Test, RefusesOtherMethods) {
  EXPECT_EQ(check(80, "DELETE", "/api/x", "DELETE /api/x HTTP/1.1\r\n\r\n"), L7Outcome::method_not_allowed);
}

TEST_F(L7Test, RefusesPathsOutsideTheAllowList) {
  EXPECT_EQ(check(80, "GET", "/admin", "GET /admin HTTP/1.1\r\n\r\n"), L7Outcome::path_not_allowed);
  EXPECT_EQ(check(80, "GET", "/healthz", "GET /healthz HTTP/1.1\r\n\r\n"), L7Outcome::path_not_allowed);
}

TEST_F(L7Test, DenyPatternsMatchAnywhereInThePayload) {
  EXPECT_EQ(check(80, "GET", "/api/q", "GET /api/q?x=1 UNION  SELECT pw HTTP/1.1\r\n\r\n"), L7Outcome::deny_pattern);
  std::string nops = "POST /up HTTP/1.1\r\n\r\nAA\x90\x90\x90";
  EXPECT_EQ(check(81, "POST", "/up", nops), L7Outcome::deny_pattern);
  EXPECT_EQ(check(81, "POST", "/up", "POST /up HTTP/1.1\r\n\r\nAA\x90\x90"), L7Outcome::allowed);
}

TEST_F(L7Test, AScanThatCannotRunDeniesInsteadOfAllowing) {
  // A scratch never prepared for this snapshot: Hyperscan refuses the scan; the request must be
  // refused too (before, an unchecked hs_scan error read as "no deny pattern": fail open).
  L7Scratch unprepared;
  auto v = snap->classify({1001, ip("10.0.0.1"), kProtoTcp, 81});
  const std::string_view req = "POST /up HTTP/1.1\r\n\r\nAA\x90\x90\x90";
  const auto r = snap->check_l7(v, "POST", "/up", {reinterpret_cast<const std::uint8_t*>(req.data()), req.size()},
                                unprepared);
  EXPECT_EQ(r.outcome, L7Outcome::scan_error);
  auto v3 = snap->classify({1001, ip("10.0.0.1"), kProtoTcp, 82});
  EXPECT_EQ(snap->check_l7(v3, "GET", "/x1", {}, unprepared).outcome, L7Outcome::scan_error);
}

TEST_F(L7Test, PatternsOfOtherRulesDoNotLeakIn) {
  // Rule 3 allows only ^/x; rule 1's ^/api/ must not count for it.
  EXPECT_EQ(check(82, "GET", "/api/v1", "GET /api/v1 HTTP/1.1\r\n\r\n"), L7Outcome::path_not_allowed);
  EXPECT_EQ(check(82, "GET", "/x1", "GET /x1 HTTP/1.1\r\n\r\n"), L7Outcome::allowed);
}

TEST(Decide, L7RefusalIsAuditedWhereTheDestinationIsInAuditMode) {
  auto p = parse_policy({{"a.yaml", R"(
identities: [{id: 1001, name: web}]
defaults: {mode: audit}
rules: [{id: 1, from: any, to: any, proto: tcp, ports: [80], action: allow, l7: {methods: [GET]}}]
)"}});
  ASSERT_TRUE(p.has_value());
  auto snap = compile(*p);
  ASSERT_TRUE(snap.has_value());
  L7Scratch scratch;
  ASSERT_TRUE((*snap)->prepare_scratch(scratch).has_value());
  auto d = decide(**snap, {1001, ip("192.0.2.1"), kProtoTcp, 80}, HttpRequest{"POST", "/", ""}, scratch);
  EXPECT_EQ(d.verdict.rule_id, 1u);
  EXPECT_EQ(d.disposition, Disposition::audit);
  EXPECT_EQ(d.reason, DropReason::policy_l7_deny);
}

TEST(Trace, ExplainsEachRuleAndAgreesWithTheLookup) {
  auto snap = load(ZT_EXAMPLE_POLICY);
  ASSERT_TRUE(snap);
  auto t = trace(*snap, {"client-a", ip("10.10.0.2"), kProtoTcp, 22, std::nullopt});
  ASSERT_TRUE(t.has_value()) << t.error();
  EXPECT_EQ(t->decision.verdict.rule_id, 200u);
  EXPECT_EQ(t->decision.disposition, Disposition::deny);
  ASSERT_EQ(t->steps.size(), snap->source().rules.size());
  std::size_t matched = 0;
  for (auto& s : t->steps) {
    matched += s.matched;
    if (s.rule->id == 100) {
      EXPECT_EQ(s.why, "source client-a not selected by 'from'");
    }
    if (s.rule->id == 210) {
      EXPECT_EQ(s.why, "port 22 not listed");
    }
  }
  EXPECT_EQ(matched, 1u);
  ASSERT_FALSE(t->conclusion.empty());
  EXPECT_THAT(t->conclusion[0], HasSubstr("deny beats allow: rule 200 (no-ssh-from-clients) denies"));
  for (auto& c : t->conclusion) EXPECT_THAT(c, ::testing::Not(HasSubstr("INTERNAL ERROR")));
}

TEST(Trace, SaysWhichCriterionMadeTheWinnerMoreSpecific) {
  auto snap = load(ZT_EXAMPLE_POLICY);
  ASSERT_TRUE(snap);
  auto t = trace(*snap, {"web-a", ip("10.10.0.2"), kProtoTcp, 80, std::nullopt});
  ASSERT_TRUE(t.has_value()) << t.error();
  EXPECT_EQ(t->decision.verdict.rule_id, 110u);
  ASSERT_GE(t->conclusion.size(), 2u);
  EXPECT_EQ(t->conclusion[0], "no deny matches; the most specific allow wins: rule 110 (web-http-zone-b)");
  EXPECT_EQ(t->conclusion[1], "  it beats rule 100 (web-to-zone-b): fewer ports (1 vs 2)");
}

TEST(Trace, UnknownSourceIsAnError) {
  auto snap = load(ZT_EXAMPLE_POLICY);
  ASSERT_TRUE(snap);
  auto t = trace(*snap, {"nobody", ip("10.10.0.2"), kProtoTcp, 22, std::nullopt});
  ASSERT_FALSE(t.has_value());
  EXPECT_THAT(t.error(), HasSubstr("source 'nobody' is neither a declared identity"));
}

TEST(Diff, ReportsExactlyTheDecisionsThatChange) {
  auto a = load(ZT_TESTDATA "/split-policy");
  auto b = load(ZT_TESTDATA "/changed-policy");
  ASSERT_TRUE(a && b);
  auto d = diff(*a, *b);
  EXPECT_FALSE(d.truncated);
  ASSERT_FALSE(d.changes.empty());
  for (auto& c : d.changes) {
    EXPECT_EQ(c.source, "web");
    EXPECT_EQ(c.proto, kProtoTcp);
    EXPECT_EQ(c.ports.lo, 443);
    EXPECT_EQ(c.ports.hi, 443);
    EXPECT_EQ(c.before.disposition, Disposition::deny);
    EXPECT_EQ(c.after.disposition, Disposition::allow);
    EXPECT_EQ(c.after.rule_id, 1u);
  }
  EXPECT_TRUE(diff(*a, *a).changes.empty());
}

}  // namespace
}  // namespace zt::rules
