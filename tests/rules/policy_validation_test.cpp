// Every validation error an operator can hit: the message and its file:line:column.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "zt/rules/policy.hpp"

namespace zt::rules {
namespace {

using ::testing::HasSubstr;

std::vector<std::string> errors_of(const std::string& yaml, const std::string& file = "p.yaml") {
  auto p = parse_policy({{file, yaml}});
  std::vector<std::string> out;
  if (!p)
    for (auto& d : p.error()) out.push_back(format(d));
  return out;
}

// The one error of `yaml`; fails the test if there is not exactly one.
std::string only_error(const std::string& yaml) {
  auto errs = errors_of(yaml);
  EXPECT_EQ(errs.size(), 1u) << ::testing::PrintToString(errs);
  return errs.empty() ? "" : errs[0];
}

const std::string kBase = R"(identities:
  - {id: 1001, name: web, labels: {app: web, env: prod}}
  - {id: 1002, name: db, labels: {app: db, env: dev}}
segments:
  - {name: zone-b, prefixes: [10.20.0.0/24], labels: {zone: b}}
)";

TEST(PolicyValidation, AcceptsAWellFormedPolicy) {
  EXPECT_TRUE(errors_of(kBase + R"(rules:
  - {id: 1, from: {labels: {app: web}}, to: {segments: [zone-b]}, proto: tcp, ports: [80], action: allow}
)").empty());
}

TEST(PolicyValidation, UnknownIdentityInSelectorNamesItAndSuggests) {
  auto e = only_error(kBase + R"(rules:
  - {id: 1, from: {identities: [wbe]}, to: any, action: allow}
)");
  EXPECT_THAT(e, HasSubstr("p.yaml:7:33: unknown identity 'wbe' (did you mean 'web'?)"));
  EXPECT_THAT(e, HasSubstr("declared identities: unauthenticated, web, db"));
}

TEST(PolicyValidation, UnknownSegmentInToSelector) {
  auto e = only_error(kBase + R"(rules:
  - {id: 1, from: any, to: {segments: [zone-c]}, action: allow}
)");
  EXPECT_THAT(e, HasSubstr("p.yaml:7:40: unknown segment 'zone-c' (did you mean 'zone-b'?); declared segments: zone-b"));
}

TEST(PolicyValidation, UnknownLabelKeyListsTheKeysInUse) {
  auto e = only_error(kBase + R"(rules:
  - {id: 1, from: {labels: {ap: web}}, to: any, action: allow}
)");
  EXPECT_THAT(e, HasSubstr("p.yaml:7:28: unknown label 'ap': no identity has it (did you mean 'app'?); "
                           "identity labels are: app, env"));
}

TEST(PolicyValidation, UnknownLabelValueListsKnownValues) {
  auto e = only_error(kBase + R"(rules:
  - {id: 1, from: any, to: {labels: {zone: c}}, action: allow}
)");
  EXPECT_THAT(e, HasSubstr("p.yaml:7:37: unknown label zone=c: no segment has it; known values of 'zone': b"));
}

TEST(PolicyValidation, LabelsThatNeverOccurTogetherMatchNothing) {
  auto e = only_error(kBase + R"(rules:
  - {id: 1, from: {labels: {app: web, env: dev}}, to: any, action: allow}
)");
  EXPECT_THAT(e, HasSubstr("p.yaml:7:28: labels {app=web, env=dev} match no identity"));
}

TEST(PolicyValidation, EmptySelectorMatchesNothing) {
  auto e = only_error(kBase + R"(rules:
  - {id: 1, from: {}, to: any, action: allow}
)");
  EXPECT_THAT(e, HasSubstr("p.yaml:7:19: empty 'from' selector matches nothing; name identities, labels or "
                           "segments, or write `any`"));
}

TEST(PolicyValidation, EmptyIdentityListMatchesNothing) {
  auto e = only_error(kBase + R"(rules:
  - {id: 1, from: {identities: []}, to: any, action: allow}
)");
  EXPECT_THAT(e, HasSubstr("p.yaml:7:32: empty 'identities' list in 'from' selector matches nothing"));
}

TEST(PolicyValidation, EmptyLabelsMatchNothing) {
  auto e = only_error(kBase + R"(rules:
  - {id: 1, from: any, to: {labels: {}}, action: allow}
)");
  EXPECT_THAT(e, HasSubstr("p.yaml:7:37: empty 'labels' in 'to' selector matches nothing"));
}

TEST(PolicyValidation, DuplicateIdentityIdPointsAtBothDeclarations) {
  auto e = only_error(R"(identities:
  - {id: 1001, name: web}
  - {id: 1001, name: web2}
)");
  EXPECT_THAT(e, HasSubstr("p.yaml:3:5: duplicate identity id 1001; already used by 'web' at p.yaml:2:5"));
}

TEST(PolicyValidation, DuplicateRuleId) {
  auto e = only_error(kBase + R"(rules:
  - {id: 5, from: any, to: any, action: allow}
  - {id: 5, from: any, to: any, action: deny}
)");
  EXPECT_THAT(e, HasSubstr("p.yaml:8:5: duplicate rule id 5; already used at p.yaml:7:5"));
}

TEST(PolicyValidation, ReservedAndInvalidIdentityIds) {
  auto errs = errors_of(R"(identities:
  - {id: 0, name: a}
  - {id: 2, name: b}
  - {id: 3000000000, name: c}
)");
  ASSERT_EQ(errs.size(), 3u);
  EXPECT_THAT(errs[0], HasSubstr("p.yaml:2:10: identity id 0 is invalid; use an id from 256 to 2147483647"));
  EXPECT_THAT(errs[1], HasSubstr("p.yaml:3:10: identity id 2 is reserved (1-255; 2 is the built-in 'unauthenticated')"));
  EXPECT_THAT(errs[2], HasSubstr("p.yaml:4:10: identity id 3000000000 is too large"));
}

TEST(PolicyValidation, OverlappingSegmentsWithConflictingLabels) {
  auto e = only_error(R"(segments:
  - {name: zone-b, prefixes: [10.20.0.0/16], labels: {zone: b}}
  - {name: odd-host, prefixes: [10.20.3.4/32], labels: {zone: c}}
)");
  EXPECT_THAT(e, HasSubstr("p.yaml:3:33: prefix 10.20.3.4/32 of segment 'odd-host' lies inside 10.20.0.0/16 of "
                           "segment 'zone-b' (p.yaml:2:31) but their labels conflict (zone=c vs zone=b)"));
}

TEST(PolicyValidation, NestedSegmentsWithCompatibleLabelsAreFine) {
  EXPECT_TRUE(errors_of(R"(segments:
  - {name: zone-b, prefixes: [10.20.0.0/16], labels: {zone: b}}
  - {name: db-host, prefixes: [10.20.3.4/32], labels: {zone: b, tier: db}}
)").empty());
}

TEST(PolicyValidation, SamePrefixInTwoSegments) {
  auto e = only_error(R"(segments:
  - {name: a, prefixes: [10.1.0.0/24]}
  - {name: b, prefixes: ['10.1.0.0/24']}
)");
  EXPECT_THAT(e, HasSubstr("p.yaml:3:26: prefix 10.1.0.0/24 is already in segment 'a' at p.yaml:2:26"));
}

TEST(PolicyValidation, BadPrefixAndHostBits) {
  auto errs = errors_of(R"(segments:
  - {name: a, prefixes: [10.1.0.300/24, 10.1.0.7/24, 'fd00::/129']}
)");
  ASSERT_EQ(errs.size(), 3u);
  EXPECT_THAT(errs[0], HasSubstr("p.yaml:2:26: '10.1.0.300/24' is not an IPv4 or IPv6 prefix; write e.g. 10.10.0.0/24"));
  EXPECT_THAT(errs[1], HasSubstr("p.yaml:2:41: prefix '10.1.0.7/24' has host bits set; did you mean 10.1.0.0/24?"));
  EXPECT_THAT(errs[2], HasSubstr("p.yaml:2:54: 'fd00::/129' is not an IPv4 or IPv6 prefix"));
}

TEST(PolicyValidation, ReversedPortRangeSuggestsTheRightOrder) {
  auto e = only_error(kBase + R"(rules:
  - {id: 1, from: any, to: any, proto: tcp, ports: [90-80], action: allow}
)");
  EXPECT_THAT(e, HasSubstr("p.yaml:7:53: port range 90-80 is reversed; write 80-90"));
}

TEST(PolicyValidation, PortOutOfRange) {
  auto e = only_error(kBase + R"(rules:
  - {id: 1, from: any, to: any, proto: udp, ports: [70000], action: allow}
)");
  EXPECT_THAT(e, HasSubstr("p.yaml:7:53: port '70000' is out of range; ports go from 0 to 65535"));
}

TEST(PolicyValidation, PortsNeedTcpOrUdp) {
  auto e = only_error(kBase + R"(rules:
  - {id: 1, from: any, to: any, proto: icmp, ports: [80], action: allow}
)");
  EXPECT_THAT(e, HasSubstr("p.yaml:7:53: ports need 'proto: tcp' or 'proto: udp'"));
}

TEST(PolicyValidation, PatternThatDoesNotCompileCarriesHyperscanText) {
  auto e = only_error(kBase + R"(rules:
  - id: 1
    from: any
    to: any
    proto: tcp
    action: allow
    l7: {paths: ['^/ok', '^/(unclosed']}
)");
  EXPECT_THAT(e, HasSubstr("p.yaml:12:26: pattern '^/(unclosed' does not compile: Missing close parenthesis"));
}

TEST(PolicyValidation, UnknownKeyListsAllowedKeysAndSuggests) {
  auto e = only_error(kBase + R"(rules:
  - {id: 1, from: any, to: any, prot: tcp, action: allow}
)");
  EXPECT_THAT(e, HasSubstr("p.yaml:7:33: unknown key 'prot' in rule (did you mean 'proto'?); allowed keys: id, "
                           "name, from, to, proto, ports, action, rate, l7, payload"));
}

TEST(PolicyValidation, UnknownTopLevelKey) {
  auto e = only_error("identitys: []\n");
  EXPECT_THAT(e, HasSubstr("p.yaml:1:1: unknown key 'identitys' in a policy file (did you mean 'identities'?)"));
}

TEST(PolicyValidation, MissingRequiredFields) {
  auto errs = errors_of(kBase + R"(rules:
  - {from: any, to: any}
)");
  ASSERT_EQ(errs.size(), 2u);
  EXPECT_THAT(errs[0], HasSubstr("p.yaml:7:5: rule needs an 'id'"));
  EXPECT_THAT(errs[1], HasSubstr("p.yaml:7:5: rule needs 'action: allow' or 'action: deny'"));
}

TEST(PolicyValidation, DefaultAllowIsRefused) {
  auto e = only_error("defaults: {action: allow}\n");
  EXPECT_THAT(e, HasSubstr("p.yaml:1:20: default action 'allow' is not supported: policy is default deny"));
}

TEST(PolicyValidation, RateOnDenyRuleIsRefused) {
  auto e = only_error(kBase + R"(rules:
  - {id: 1, from: any, to: any, action: deny, rate: {pps: 10}}
)");
  EXPECT_THAT(e, HasSubstr("p.yaml:7:53: a rate class limits allowed traffic; remove 'rate' from this deny rule"));
}

TEST(PolicyValidation, YamlSyntaxErrorHasItsLocation) {
  auto e = only_error("rules:\n  - {id: 1, from: any\n");
  EXPECT_THAT(e, HasSubstr("p.yaml:3:1: YAML syntax error"));
}

TEST(PolicyValidation, TestNamingAMissingRule) {
  auto e = only_error(kBase + R"(tests:
  - {from: web, to: 10.20.0.1, port: 80, expect: allow, rule: nope}
)");
  EXPECT_THAT(e, HasSubstr("p.yaml:7:5: test names rule 'nope', which does not exist"));
}

TEST(PolicyValidation, TestFromUnknownSource) {
  auto e = only_error(kBase + R"(tests:
  - {from: wbe, to: 10.20.0.1, port: 80, expect: allow}
)");
  EXPECT_THAT(e, HasSubstr("p.yaml:7:5: test source 'wbe' is neither a declared identity (did you mean 'web'?)"));
}

TEST(PolicyValidation, ReportsEveryErrorNotJustTheFirst) {
  auto errs = errors_of(kBase + R"(rules:
  - {id: 1, from: {identities: [nobody]}, to: any, action: allow}
  - {id: 2, from: any, to: any, proto: tcp, ports: [9-1], action: allow}
  - {id: 3, from: any, to: any, action: maybe}
)");
  ASSERT_EQ(errs.size(), 3u);
  EXPECT_THAT(errs[0], HasSubstr("p.yaml:8:53: port range 9-1 is reversed"));
  EXPECT_THAT(errs[1], HasSubstr("p.yaml:9:41: action 'maybe' is unknown; use allow or deny"));
  EXPECT_THAT(errs[2], HasSubstr("p.yaml:7:33: unknown identity 'nobody'"));
}

TEST(PolicyValidation, AnyCannotBeWrittenAsAnUnknownWord) {
  auto e = only_error(kBase + R"(rules:
  - {id: 1, from: all, to: any, action: allow}
)");
  EXPECT_THAT(e, HasSubstr("p.yaml:7:19: 'from' selector 'all' is unknown; write `any` or a mapping"));
}

TEST(PolicyValidation, DefaultsGivenTwiceAcrossFiles) {
  auto p = parse_policy({{"a.yaml", "defaults: {mode: audit}\n"}, {"b.yaml", "defaults: {mode: enforce}\n"}});
  ASSERT_FALSE(p.has_value());
  ASSERT_EQ(p.error().size(), 1u);
  EXPECT_EQ(format(p.error()[0]), "b.yaml:1:11: 'defaults' is already given at a.yaml:1:11; keep one defaults block");
}

TEST(PolicyValidation, ErrorsInADirectoryNameTheirFile) {
  auto p = load_policy(ZT_TESTDATA "/invalid-multi-file");
  ASSERT_FALSE(p.has_value());
  std::vector<std::string> errs;
  for (auto& d : p.error()) errs.push_back(format(d));
  ASSERT_EQ(errs.size(), 3u) << ::testing::PrintToString(errs);
  EXPECT_THAT(errs[0], HasSubstr("invalid-multi-file/b.yaml:4:69: port range 90-80 is reversed; write 80-90"));
  EXPECT_THAT(errs[1], HasSubstr("invalid-multi-file/b.yaml:2:5: duplicate identity id 1001; already used by 'web' at "));
  EXPECT_THAT(errs[1], HasSubstr("invalid-multi-file/a.yaml:2:5"));
  EXPECT_THAT(errs[2], HasSubstr("invalid-multi-file/b.yaml:4:33: unknown identity 'wbe' (did you mean 'web'?)"));
}

TEST(PolicyValidation, InvalidPolicyNeverProducesASnapshot) {
  auto snap = load_and_compile(ZT_TESTDATA "/invalid-multi-file");
  EXPECT_FALSE(snap.has_value());
}

TEST(PolicyValidation, MissingDirectoryAndEmptyDirectory) {
  auto a = load_policy(ZT_TESTDATA "/does-not-exist");
  ASSERT_FALSE(a.has_value());
  EXPECT_THAT(a.error()[0].message, HasSubstr("not a directory"));
  auto b = parse_policy({});
  ASSERT_FALSE(b.has_value());
  EXPECT_THAT(b.error()[0].message, HasSubstr("no policy files found"));
}

TEST(PolicyValidation, DigestDependsOnContentNotOnFileOrder) {
  auto a = parse_policy({{"a.yaml", kBase}, {"b.yaml", "tests: []\n"}});
  auto b = parse_policy({{"b.yaml", "tests: []\n"}, {"a.yaml", kBase}});
  auto c = parse_policy({{"a.yaml", kBase + "# changed\n"}, {"b.yaml", "tests: []\n"}});
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(a->digest, b->digest);
  EXPECT_NE(a->digest, c->digest);
  EXPECT_EQ(a->digest.size(), 64u);
}

}  // namespace
}  // namespace zt::rules
