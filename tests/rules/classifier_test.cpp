// The lookup the dataplane calls: verdict, deciding rule, reason, revision.
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "zt/rules/lpm.hpp"
#include "zt/rules/snapshot.hpp"
#include "direct_rule.hpp"

namespace zt::rules {
namespace {

SnapshotPtr compile_yaml(const std::string& yaml, std::uint64_t revision = 0) {
  auto p = parse_policy({{"p.yaml", yaml}});
  if (!p) {
    for (auto& d : p.error()) ADD_FAILURE() << format(d);
    return nullptr;
  }
  auto s = compile(*p, {.revision = revision});
  if (!s) {
    for (auto& d : s.error()) ADD_FAILURE() << format(d);
    return nullptr;
  }
  return *s;
}

IpAddress ip(const char* s) { return *parse_address(s); }

const std::string kPolicy = R"(
identities:
  - {id: 1001, name: web, labels: {app: web, env: prod}}
  - {id: 1002, name: web-dev, labels: {app: web, env: dev}}
  - {id: 1003, name: db, labels: {app: db}}
segments:
  - {name: zone-b, prefixes: [10.20.0.0/16, 'fd00:20::/64'], labels: {zone: b}}
  - {name: b-db, prefixes: [10.20.5.0/24], labels: {tier: db}}
  - {name: quarantine, prefixes: [10.30.0.0/24], labels: {zone: q}, mode: audit}
  - {name: legacy, prefixes: [192.168.1.0/24], labels: {zone: legacy}}
rules:
  - {id: 10, name: web-wide, from: {labels: {app: web}}, to: {labels: {zone: b}}, proto: tcp, ports: [1-1000], action: allow, rate: {pps: 100}}
  - {id: 11, name: web-80, from: {labels: {app: web}}, to: {labels: {zone: b}}, proto: tcp, ports: [80], action: allow}
  - {id: 12, name: prod-web-80, from: {labels: {app: web, env: prod}}, to: {labels: {zone: b}}, proto: tcp, ports: [80], action: allow, payload: hdr}
  - {id: 13, name: web-db-80, from: {labels: {app: web}}, to: {segments: [b-db]}, proto: tcp, ports: [80], action: allow}
  - {id: 20, name: no-telnet, from: any, to: any, proto: tcp, ports: [23], action: deny}
  - {id: 21, name: web-dev-no-443, from: {identities: [web-dev]}, to: {segments: [zone-b]}, proto: tcp, ports: [443], action: deny}
  - {id: 30, name: db-anything, from: {identities: [db]}, to: any, action: allow}
  - {id: 40, name: legacy-dns, from: {segments: [legacy]}, to: {segments: [zone-b]}, proto: udp, ports: [53], action: allow}
  - {id: 41, name: unauth-ping, from: {identities: [unauthenticated]}, to: {segments: [zone-b]}, proto: icmp, action: allow}
  - {id: 50, name: any-quarantine, from: any, to: {segments: [quarantine]}, proto: tcp, ports: [9000], action: allow}
)";

struct ClassifierTest : ::testing::Test {
  SnapshotPtr snap = compile_yaml(kPolicy, 42);
  Verdict v(IdentityId src, const char* dst, std::uint8_t proto, std::uint16_t port) {
    return snap->classify({src, ip(dst), proto, port});
  }
};

TEST_F(ClassifierTest, AllowCarriesRuleRevisionRateAndSegment) {
  auto r = v(1002, "10.20.0.9", kProtoTcp, 500);
  EXPECT_EQ(r.disposition, Disposition::allow);
  EXPECT_EQ(r.rule_id, 10u);
  EXPECT_EQ(r.revision, 42u);
  EXPECT_EQ(r.reason, DropReason::none);
  ASSERT_NE(r.rate_class, kNoRateClass);
  EXPECT_EQ(snap->rate_classes()[r.rate_class].pps, 100u);
  EXPECT_EQ(snap->source().segments[r.segment].name, "zone-b");
}

TEST_F(ClassifierTest, DefaultDenyNamesNoRule) {
  auto r = v(1001, "10.20.0.9", kProtoTcp, 2000);
  EXPECT_EQ(r.disposition, Disposition::deny);
  EXPECT_EQ(r.rule_id, kDefaultRule);
  EXPECT_EQ(r.reason, DropReason::policy_default_deny);
  EXPECT_EQ(r.revision, 42u);
}

TEST_F(ClassifierTest, DenyBeatsAnyAllow) {
  auto r = v(1003, "10.20.0.9", kProtoTcp, 23);  // db-anything allows, no-telnet denies
  EXPECT_EQ(r.disposition, Disposition::deny);
  EXPECT_EQ(r.rule_id, 20u);
  EXPECT_EQ(r.reason, DropReason::policy_deny);
  auto d = v(1002, "10.20.0.9", kProtoTcp, 443);
  EXPECT_EQ(d.rule_id, 21u);
  EXPECT_EQ(d.disposition, Disposition::deny);
}

TEST_F(ClassifierTest, NarrowerPortsWin) {
  EXPECT_EQ(v(1002, "10.20.0.9", kProtoTcp, 80).rule_id, 11u);  // 80 beats 1-1000
}

TEST_F(ClassifierTest, MoreSpecificSourceWins) {
  auto r = v(1001, "10.20.0.9", kProtoTcp, 80);  // {app: web, env: prod} beats {app: web}
  EXPECT_EQ(r.rule_id, 12u);
  EXPECT_TRUE(r.payload_hdr);
}

TEST_F(ClassifierTest, LongerDestinationPrefixWinsAndNestedSegmentsInheritRules) {
  // 10.20.5.7 is in b-db (/24) inside zone-b (/16): zone-b rules still apply there.
  EXPECT_EQ(v(1002, "10.20.5.7", kProtoTcp, 80).rule_id, 13u);
  EXPECT_EQ(v(1002, "10.20.5.7", kProtoTcp, 81).rule_id, 10u);
  EXPECT_EQ(snap->source().segments[snap->segment_of(ip("10.20.5.7"))].name, "b-db");
  // Source specificity is compared before destination depth.
  EXPECT_EQ(v(1001, "10.20.5.7", kProtoTcp, 80).rule_id, 12u);
}

TEST_F(ClassifierTest, IPv6DestinationsUseTheirOwnTable) {
  EXPECT_EQ(v(1002, "fd00:20::1234", kProtoTcp, 80).rule_id, 11u);
  EXPECT_EQ(v(1002, "fd00:21::1", kProtoTcp, 80).rule_id, kDefaultRule);
}

TEST_F(ClassifierTest, AuditSegmentTurnsDenyIntoAudit) {
  auto r = v(1001, "10.30.0.5", kProtoTcp, 22);
  EXPECT_EQ(r.disposition, Disposition::audit);
  EXPECT_EQ(r.reason, DropReason::policy_default_deny);
  EXPECT_EQ(v(1001, "10.30.0.5", kProtoTcp, 9000).disposition, Disposition::allow);
  auto explicit_deny = v(1001, "10.30.0.5", kProtoTcp, 23);
  EXPECT_EQ(explicit_deny.disposition, Disposition::audit);
  EXPECT_EQ(explicit_deny.rule_id, 20u);
}

TEST_F(ClassifierTest, AnyMeansDeclaredIdentitiesOnly) {
  EXPECT_EQ(v(kUnauthenticated, "10.30.0.5", kProtoTcp, 9000).rule_id, kDefaultRule);
  EXPECT_EQ(v(777777, "10.30.0.5", kProtoTcp, 9000).rule_id, kDefaultRule);  // unknown tag id
  EXPECT_EQ(v(kUnauthenticated, "10.20.1.1", kProtoIcmp, 0).rule_id, 41u);
}

TEST_F(ClassifierTest, UntaggedSourcesInANamedSegmentGetItsPseudoIdentity) {
  auto legacy = snap->resolve_untagged(ip("192.168.1.20"));
  EXPECT_TRUE(is_segment_source_identity(legacy));
  EXPECT_FALSE(snap->is_declared_identity(legacy));
  EXPECT_EQ(snap->classify({legacy, ip("10.20.0.1"), kProtoUdp, 53}).rule_id, 40u);
  EXPECT_EQ(snap->classify({legacy, ip("10.20.0.1"), kProtoUdp, 54}).rule_id, kDefaultRule);
  // Elsewhere an untagged packet is unauthenticated: legacy-dns does not apply.
  auto other = snap->resolve_untagged(ip("172.16.0.1"));
  EXPECT_EQ(other, kUnauthenticated);
  EXPECT_EQ(snap->classify({other, ip("10.20.0.1"), kProtoUdp, 53}).rule_id, kDefaultRule);
  // Tagged traffic is not matched by the segment rule.
  EXPECT_EQ(v(1001, "10.20.0.1", kProtoUdp, 53).rule_id, kDefaultRule);
}

TEST_F(ClassifierTest, ProtocolAnyCoversOtherProtocols) {
  EXPECT_EQ(v(1003, "8.8.8.8", 47, 0).rule_id, 30u);  // GRE, outside every segment
  EXPECT_EQ(v(1001, "8.8.8.8", 47, 0).rule_id, kDefaultRule);
}

TEST_F(ClassifierTest, BurstGivesTheSameVerdictsAsSingleLookups) {
  std::mt19937 rng(7);
  const IdentityId ids[] = {1001, 1002, 1003, 2, 5555};
  const char* dsts[] = {"10.20.0.9", "10.20.5.1", "10.30.0.5", "fd00:20::9", "8.8.8.8"};
  std::vector<FlowKey> keys;
  for (int i = 0; i < 100; ++i)
    keys.push_back({ids[rng() % 5], ip(dsts[rng() % 5]), rng() % 2 ? kProtoTcp : kProtoUdp,
                    static_cast<std::uint16_t>(rng() % 1200)});
  std::vector<Verdict> out(keys.size());
  ASSERT_EQ(snap->classify_burst(keys, out), keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) {
    auto one = snap->classify(keys[i]);
    EXPECT_EQ(out[i].rule_id, one.rule_id) << i;
    EXPECT_EQ(out[i].disposition, one.disposition) << i;
  }
}

TEST(Classifier, EmptyPolicyDeniesEverything) {
  auto snap = compile_yaml("identities: [{id: 300, name: a}]\n");
  ASSERT_TRUE(snap);
  auto r = snap->classify({300, ip("10.0.0.1"), kProtoTcp, 80});
  EXPECT_EQ(r.disposition, Disposition::deny);
  EXPECT_EQ(r.reason, DropReason::policy_default_deny);
}

TEST(Classifier, DefaultAuditModeAppliesOutsideSegments) {
  auto snap = compile_yaml("defaults: {mode: audit}\n");
  ASSERT_TRUE(snap);
  EXPECT_EQ(snap->classify({300, ip("10.0.0.1"), kProtoTcp, 80}).disposition, Disposition::audit);
}

TEST(Classifier, TablesAgreeWithDirectRuleEvaluationOnARandomPolicy) {
  std::mt19937 rng(1234);
  std::string y = "identities:\n";
  const char* apps[] = {"web", "db", "cache", "batch"};
  for (int i = 0; i < 40; ++i)
    y += "  - {id: " + std::to_string(1000 + i) + ", name: id" + std::to_string(i) + ", labels: {app: " +
         apps[rng() % 4] + ", tier: t" + std::to_string(rng() % 3) + "}}\n";
  y += "segments:\n";
  std::set<std::pair<std::uint32_t, int>> used;
  for (int i = 0; i < 20; ++i) {
    int len = 0;
    std::uint32_t a = 0;
    do {  // distinct prefixes that often nest
      len = 16 + static_cast<int>(rng() % 17);
      a = (10u << 24) | ((rng() % 4) << 16) | (rng() & 0xffff);
      a &= len == 32 ? ~0u : ~((1u << (32 - len)) - 1);
    } while (!used.emplace(a, len).second);
    // Label keys never share a value-space, so nesting never conflicts.
    y += "  - {name: s" + std::to_string(i) + ", prefixes: ['" + to_string(IpAddress::v4(a)) + "/" +
         std::to_string(len) + "'], labels: {n" + std::to_string(i) + ": x, k" + std::to_string(rng() % 3) + ": y}}\n";
  }
  y += "rules:\n";
  for (int i = 0; i < 120; ++i) {
    std::string from, to;
    switch (rng() % 4) {
      case 0: from = "any"; break;
      case 1: from = "{identities: [id" + std::to_string(rng() % 40) + "]}"; break;
      case 2: from = std::string("{labels: {app: ") + apps[rng() % 4] + "}}"; break;
      default: from = "{segments: [s" + std::to_string(rng() % 20) + "]}";
    }
    switch (rng() % 3) {
      case 0: to = "any"; break;
      case 1: to = "{segments: [s" + std::to_string(rng() % 20) + "]}"; break;
      default: to = "{labels: {k" + std::to_string(rng() % 3) + ": y}}";
    }
    int lo = static_cast<int>(rng() % 200), hi = lo + static_cast<int>(rng() % 3 ? 0 : rng() % 50);
    y += "  - {id: " + std::to_string(i + 1) + ", from: " + from + ", to: " + to + ", proto: " +
         (rng() % 2 ? "tcp" : "udp") + ", ports: [" + std::to_string(lo) + "-" + std::to_string(hi) +
         "], action: " + (rng() % 4 ? "allow" : "deny") + "}\n";
  }
  auto p = parse_policy({{"random.yaml", y}});
  ASSERT_TRUE(p.has_value()) << format(p.error()[0]);
  auto snap = compile(*p);
  ASSERT_TRUE(snap.has_value());
  auto& s = **snap;
  std::vector<IdentityId> sources{kUnauthenticated, 99999};
  for (int i = 0; i < 40; ++i) sources.push_back(1000 + i);
  for (auto& seg : p->segments) sources.push_back(s.resolve_untagged(seg.prefixes[0].addr));
  int checked = 0;
  for (int n = 0; n < 20000; ++n) {
    FlowKey k{sources[rng() % sources.size()],
              IpAddress::v4((10u << 24) | ((rng() % 4) << 16) | (rng() & 0xffff)),
              rng() % 2 ? kProtoTcp : kProtoUdp, static_cast<std::uint16_t>(rng() % 260)};
    ASSERT_EQ(s.classify(k).rule_id, test::direct_rule(s, k))
        << s.identity_name(k.src) << " -> " << to_string(k.dst) << " " << proto_name(k.proto) << "/" << k.dport;
    ++checked;
  }
  EXPECT_EQ(checked, 20000);
}

TEST(Lpm, MatchesTheLongestPrefixAgainstALinearScan) {
  std::mt19937 rng(99);
  for (bool v6 : {false, true}) {
    std::vector<std::pair<IpPrefix, std::uint32_t>> entries;
    for (std::uint32_t i = 1; i <= 400; ++i) {
      IpAddress a;
      a.v6 = v6;
      for (auto& b : a.bytes) b = static_cast<std::uint8_t>(rng() % 4);  // dense, so prefixes nest
      if (!v6) std::fill(a.bytes.begin() + 4, a.bytes.end(), 0);
      auto len = static_cast<std::uint8_t>(rng() % (a.bits() + 1));
      auto p = parse_prefix(to_string(a) + "/" + std::to_string(len), true);
      entries.emplace_back(*p, i);
    }
    auto lpm = Lpm::build(entries, v6);
    for (int n = 0; n < 5000; ++n) {
      IpAddress a;
      a.v6 = v6;
      for (auto& b : a.bytes) b = static_cast<std::uint8_t>(rng() % 4);
      if (!v6) std::fill(a.bytes.begin() + 4, a.bytes.end(), 0);
      std::uint32_t want = 0;
      int best = -1;
      for (auto& [p, val] : entries)  // on duplicate prefixes the later entry wins, as in build()
        if (p.contains(a) && p.len >= best) want = val, best = p.len;
      ASSERT_EQ(lpm.lookup(a), want) << to_string(a);
      if (!v6) {  // the IPv4 entry, from the address's bytes as a header holds them
        ASSERT_EQ(v4_host_order(a.bytes.data()), a.v4_host_order()) << to_string(a);
        ASSERT_EQ(lpm.lookup_v4(v4_host_order(a.bytes.data())), want) << to_string(a);
      }
    }
  }
}

}  // namespace
}  // namespace zt::rules
