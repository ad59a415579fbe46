// The classifier's shortcuts (the reach test: a source with no rule towards the destination's
// leaf is denied before any port table; the leaf's port filter: no rule towards the leaf names
// the port) must never change an answer. Random policies of every shape (groups A-D, labels,
// untagged segment sources, unauthenticated, nested and audit segments, IPv4 and IPv6, rates,
// L7, payload: hdr, ports across the whole range) and random keys; classify() and
// classify_burst() are held field by field to classify_all_groups() (every group's tables,
// no shortcut) and, for the deciding rule, to a direct evaluation of every rule.
// classify_untagged(address, key) is held to resolve_untagged(address) + classify_all_groups.
// The IPv4 entries the dataplane calls (classify_v4, classify_untagged_v4: host-order numbers,
// no IpAddress) are held to the same answers for every key whose addresses are IPv4.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

#include "zt/rules/snapshot.hpp"
#include "direct_rule.hpp"

namespace zt::rules {
namespace {

struct Shape {
  int identities, segments, rules;
  int pct_any_from, pct_any_to;  // share of wildcard selectors (groups B, C, D)
  std::size_t min_destination_classes = 0;
  // Rule ports spread over 0-65535 (a few well-known ports, ranges that cross a multiple of 64,
  // high ports) and key ports near them, on the same port-filter bit or one off: what the port
  // filter decides on. Otherwise ports and keys stay in 0-259 (every filter bit set).
  bool wide_ports = false;
};

// Ports for wide_ports shapes: rules pick from these (and ranges starting at them), keys pick
// from these plus or minus multiples of 64 (same filter bit, other port) and plus or minus one.
constexpr std::uint16_t kWidePorts[] = {22, 53, 80, 443, 3306, 5432, 8080, 8443, 9999, 60000, 65535, 1000};

// Addresses live in a small space so prefixes nest and random keys hit them.
IpAddress random_v4(std::mt19937& rng) { return IpAddress::v4((10u << 24) | ((rng() % 4) << 16) | (rng() & 0xffff)); }
IpAddress random_v6(std::mt19937& rng) {
  IpAddress a;
  a.v6 = true;
  a.bytes[0] = 0xfd;
  a.bytes[3] = static_cast<std::uint8_t>(rng() % 4);
  a.bytes[4] = static_cast<std::uint8_t>(rng() % 4);
  a.bytes[15] = static_cast<std::uint8_t>(rng());
  return a;
}

std::string random_policy(const Shape& sh, std::mt19937& rng) {
  const char* apps[] = {"web", "db", "cache", "batch"};
  std::string y = "identities:\n";
  for (int i = 0; i < sh.identities; ++i)  // every app value occurs (round robin)
    y += "  - {id: " + std::to_string(1000 + i) + ", name: id" + std::to_string(i) + ", labels: {app: " + apps[i % 4] +
         ", tier: t" + std::to_string(i % 3) + "}}\n";
  y += "segments:\n";
  std::set<std::string> used;
  for (int i = 0; i < sh.segments; ++i) {
    std::string prefix;
    do {
      if (rng() % 4) {
        int len = 14 + static_cast<int>(rng() % 19);
        auto a = random_v4(rng).v4_host_order();
        a &= len == 32 ? ~0u : ~((1u << (32 - len)) - 1);
        prefix = to_string(IpAddress::v4(a)) + "/" + std::to_string(len);
      } else {
        auto a = random_v6(rng);
        int len = (rng() % 2) ? 32 : 40;  // nests: fd00:0:k::/32 ⊃ fd00:0:k:m00::/40
        if (len == 32) a.bytes[4] = 0;
        std::fill(a.bytes.begin() + 5, a.bytes.end(), 0);
        prefix = to_string(a) + "/" + std::to_string(len);
      }
    } while (!used.insert(prefix).second);
    // Label keys never share a value space, so nesting never conflicts; every k value occurs.
    y += "  - {name: s" + std::to_string(i) + ", prefixes: ['" + prefix + "'], labels: {n" + std::to_string(i) +
         ": x, k" + std::to_string(i % 3) + ": y}" + (rng() % 5 == 0 ? ", mode: audit" : "") + "}\n";
  }
  y += "rules:\n";
  for (int i = 0; i < sh.rules; ++i) {
    std::string from, to;
    if (static_cast<int>(rng() % 100) < sh.pct_any_from) {
      from = "any";
    } else {
      switch (rng() % 5) {
        case 0: from = "{identities: [id" + std::to_string(rng() % sh.identities) + "]}"; break;
        case 1: from = std::string("{labels: {app: ") + apps[rng() % 4] + "}}"; break;
        case 2: from = "{segments: [s" + std::to_string(rng() % sh.segments) + "]}"; break;
        case 3: from = "{identities: [unauthenticated]}"; break;
        default:
          from = "{identities: [id" + std::to_string(rng() % sh.identities) + "], labels: {tier: t" +
                 std::to_string(rng() % 3) + "}}";
      }
    }
    if (static_cast<int>(rng() % 100) < sh.pct_any_to)
      to = "any";
    else if (rng() % 2)
      to = "{segments: [s" + std::to_string(rng() % sh.segments) + "]}";
    else
      to = "{labels: {k" + std::to_string(rng() % 3) + ": y}}";
    const bool deny = rng() % 4 == 0;
    std::string proto, ports, extra;
    switch (rng() % 6) {
      case 0: proto = "udp"; break;
      case 1: proto = "icmp"; break;
      case 2: proto = "any"; break;
      case 3: proto = "[tcp, udp]"; break;
      default: proto = "tcp";
    }
    // Wide shapes: a rule towards `any` with every port would open every leaf's filter.
    if (sh.wide_ports && to == "any" && proto == "any") proto = "tcp";
    if (sh.wide_ports && proto != "icmp" && proto != "any" && (to == "any" || rng() % 8)) {
      int lo = kWidePorts[rng() % std::size(kWidePorts)];
      int hi = rng() % 3 ? lo : std::min(65535, lo + static_cast<int>(rng() % 3 == 0 ? 64 + rng() % 100 : rng() % 40));
      ports = ", ports: [" + std::to_string(lo) + "-" + std::to_string(hi) +
              (rng() % 3 ? "" : ", " + std::to_string(kWidePorts[rng() % std::size(kWidePorts)])) + "]";
    } else if (!sh.wide_ports && proto != "icmp" && proto != "any" && rng() % 4) {
      int lo = static_cast<int>(rng() % 200), hi = lo + static_cast<int>(rng() % 3 ? 0 : rng() % 50);
      ports = ", ports: [" + std::to_string(lo) + "-" + std::to_string(hi) + (rng() % 3 ? "" : ", 443") + "]";
    }
    if (!deny) {
      if (rng() % 4 == 0) extra += ", rate: {pps: " + std::to_string(100 + rng() % 3 * 100) + "}";
      if (proto == "tcp" && rng() % 6 == 0) extra += ", l7: {methods: [GET], paths: ['^/api/']}";
      if (rng() % 5 == 0) extra += ", payload: hdr";
    }
    y += "  - {id: " + std::to_string(i + 1) + ", from: " + from + ", to: " + to + ", proto: " + proto + ports +
         ", action: " + (deny ? "deny" : "allow") + extra + "}\n";
  }
  if (rng() % 3 == 0) y += "defaults: {mode: audit}\n";
  return y;
}

// Whether any rule at all (any protocol, any port) connects the key's source and destination.
bool any_rule_connects(const PolicySnapshot& s, const FlowKey& k) {
  for (std::size_t i = 0; i < s.source().rules.size(); ++i)
    if (s.rule_matches_source(i, k.src) && s.rule_matches_destination(i, k.dst)) return true;
  return false;
}

// Whether some rule, from any source, covers the key's destination, protocol and port.
bool port_open_anywhere(const PolicySnapshot& s, const FlowKey& k) {
  const auto& rules = s.source().rules;
  const bool ported = k.proto == kProtoTcp || k.proto == kProtoUdp;
  for (std::size_t i = 0; i < rules.size(); ++i) {
    const auto& r = rules[i];
    if (!s.rule_matches_destination(i, k.dst)) continue;
    if (!r.protos.empty() && std::find(r.protos.begin(), r.protos.end(), k.proto) == r.protos.end()) continue;
    if (!ported || r.ports.empty() ||
        std::any_of(r.ports.begin(), r.ports.end(), [&](auto& p) { return p.lo <= k.dport && k.dport <= p.hi; }))
      return true;
  }
  return false;
}

std::string describe(const PolicySnapshot& s, const FlowKey& k) {
  return s.identity_name(k.src) + " -> " + to_string(k.dst) + " " + proto_name(k.proto) + "/" + std::to_string(k.dport);
}

void expect_same(const Verdict& got, const Verdict& want, const std::string& what) {
  EXPECT_EQ(got.rule_id, want.rule_id) << what;
  EXPECT_EQ(got.disposition, want.disposition) << what;
  EXPECT_EQ(got.reason, want.reason) << what;
  EXPECT_EQ(got.segment, want.segment) << what;
  EXPECT_EQ(got.revision, want.revision) << what;
  EXPECT_EQ(got.rate_class, want.rate_class) << what;
  EXPECT_EQ(got.l7, want.l7) << what;
  EXPECT_EQ(got.payload_hdr, want.payload_hdr) << what;
}

struct Seen {
  int untagged_allowed = 0, closed_port = 0;
};

int failures() { return ::testing::UnitTest::GetInstance()->current_test_info()->result()->total_part_count(); }

Seen run_differential(const Shape& shape, unsigned seed, int nkeys) {
  const int failures_before = failures();
  std::mt19937 rng(seed);
  const auto yaml = random_policy(shape, rng);
  auto p = parse_policy({{"random.yaml", yaml}});
  EXPECT_TRUE(p.has_value()) << format(p.error()[0]) << "\n" << yaml;
  if (!p) return {};
  auto compiled = compile(*p, {.revision = seed});
  EXPECT_TRUE(compiled.has_value()) << format(compiled.error()[0]);
  if (!compiled) return {};
  const auto& s = **compiled;
  EXPECT_GE(s.stats().destination_classes, shape.min_destination_classes) << "seed " << seed;

  std::vector<IdentityId> sources{kUnauthenticated, 99999, kInvalidIdentity, kFirstSegmentSourceIdentity + 12345};
  for (int i = 0; i < shape.identities; ++i) sources.push_back(1000 + i);
  for (auto& seg : p->segments) sources.push_back(s.resolve_untagged(seg.prefixes[0].addr));
  const std::uint8_t protos[] = {kProtoTcp, kProtoTcp, kProtoUdp, kProtoIcmp, kProtoIcmpv6, 47};

  std::vector<FlowKey> keys(static_cast<std::size_t>(nkeys));
  for (auto& k : keys) {
    k.src = rng() % 4 ? sources[rng() % sources.size()] : s.resolve_untagged(random_v4(rng));
    k.dst = rng() % 4 ? random_v4(rng) : random_v6(rng);
    k.proto = protos[rng() % std::size(protos)];
    if (!shape.wide_ports) {
      k.dport = static_cast<std::uint16_t>(rng() % 8 ? rng() % 260 : 443);
    } else {
      int port = kWidePorts[rng() % std::size(kWidePorts)];
      switch (rng() % 5) {
        case 0: port += 64 * (static_cast<int>(rng() % 9) - 4); break;
        case 1: port += static_cast<int>(rng() % 3) - 1; break;
        case 2: port = static_cast<int>(rng() % 65536); break;
        default: break;
      }
      k.dport = static_cast<std::uint16_t>(std::clamp(port, 0, 65535));
    }
  }
  // Untagged sources by address: inside segments (pseudo identities where a rule names the
  // segment as a source) and outside (unauthenticated).
  std::vector<IpAddress> untagged_src(keys.size());
  for (auto& a : untagged_src) a = rng() % 4 ? random_v4(rng) : random_v6(rng);
  std::vector<Verdict> burst(keys.size());
  EXPECT_EQ(s.classify_burst(keys, burst), keys.size());
  int unconnected = 0, allowed = 0, denied_by_rule = 0, pseudo_sources = 0, untagged_allowed = 0, closed_port = 0;
  int v4_keys = 0, v4_untagged = 0, v4_allowed = 0, may_hold = 0, no_flow = 0;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const auto& k = keys[i];
    const auto want = s.classify_all_groups(k);
    const auto got = s.classify(k);
    const auto what = describe(s, k);
    expect_same(got, want, "classify: " + what);
    expect_same(burst[i], want, "classify_burst: " + what);
    if (!k.dst.v6) {
      ++v4_keys;
      v4_allowed += want.disposition == Disposition::allow;
      expect_same(s.classify_v4(k.src, v4_host_order(k.dst.bytes.data()), k.proto, k.dport), want,
                  "classify_v4: " + what);
    }
    EXPECT_EQ(want.rule_id, test::direct_rule(s, k)) << what;
    if (!any_rule_connects(s, k)) {
      ++unconnected;
      EXPECT_EQ(got.reason, DropReason::policy_default_deny) << what;
    } else if (!port_open_anywhere(s, k)) {
      ++closed_port;  // the port filter's case: the source has rules here, none for this port
      EXPECT_EQ(got.reason, DropReason::policy_default_deny) << what;
    }
    allowed += got.disposition == Disposition::allow;
    denied_by_rule += got.reason == DropReason::policy_deny;
    // classify_untagged: the identity resolve_untagged gives, and classify's verdict for it.
    FlowKey uk = k;
    uk.src = s.resolve_untagged(untagged_src[i]);
    FlowKey ignored = k;
    ignored.src = 424242;  // classify_untagged ignores key.src
    IdentityId id = kInvalidIdentity;
    const auto ugot = s.classify_untagged(untagged_src[i], ignored, id);
    const auto uwhat = "classify_untagged from " + to_string(untagged_src[i]) + ": " + describe(s, uk);
    EXPECT_EQ(id, uk.src) << uwhat;
    const auto uwant = s.classify_all_groups(uk);
    expect_same(ugot, uwant, uwhat);
    if (!untagged_src[i].v6 && !k.dst.v6) {
      ++v4_untagged;
      IdentityId id4 = kInvalidIdentity;
      expect_same(s.classify_untagged_v4(untagged_src[i].v4_host_order(), k.dst.v4_host_order(), k.proto, k.dport,
                                         id4),
                  uwant, "classify_untagged_v4: " + uwhat);
      EXPECT_EQ(id4, uk.src) << "classify_untagged_v4: " << uwhat;
    }
    // may_hold_flow_v4 (the dataplane skips the flow table when it says no): a "no" must mean
    // that no identity the policy knows (declared, segment pseudo identities, unauthenticated,
    // unknown) is allowed or audited from the source to dst:dport, nor from anywhere to the
    // source's sport (a reply's flow). Every 3rd "no" is checked against every source.
    if (!untagged_src[i].v6 && !k.dst.v6) {
      const auto sport = static_cast<std::uint16_t>(rng() % 8 ? rng() % 260 : 443);
      const bool may = s.may_hold_flow_v4(untagged_src[i].v4_host_order(), k.dst.v4_host_order(), k.proto, sport,
                                          k.dport);
      const bool ported = k.proto == kProtoTcp || k.proto == kProtoUdp;
      if (!ported) EXPECT_TRUE(may) << "may_hold_flow_v4 without ports: " << uwhat;
      if (may) {
        ++may_hold;
      } else if (no_flow++ % 3 == 0) {
        std::vector<IdentityId> all = sources;
        all.push_back(uk.src);
        for (IdentityId from : all) {
          FlowKey fwd = k;
          fwd.src = from;
          const auto vf = s.classify_all_groups(fwd);
          EXPECT_EQ(vf.disposition, Disposition::deny) << "may_hold_flow_v4 said no, but forward " << describe(s, fwd);
          FlowKey rev;
          rev.src = from;
          rev.dst = untagged_src[i];
          rev.proto = k.proto;
          rev.dport = sport;
          const auto vr = s.classify_all_groups(rev);
          EXPECT_EQ(vr.disposition, Disposition::deny) << "may_hold_flow_v4 said no, but reply flow " << describe(s, rev);
        }
      }
    }
    pseudo_sources += uk.src != kUnauthenticated;
    untagged_allowed += ugot.disposition == Disposition::allow;
    if (failures() != failures_before) {
      ADD_FAILURE() << "seed " << seed << ", policy:\n" << yaml;
      return {};
    }
  }
  // The keys cover all three outcomes, and the shortcut's case (no rule connects source and
  // destination) as well as the full lookup.
  // (Wide shapes give every `to: any` rule ports, so fewer keys are unconnected: there the
  // closed-port count is the coverage check.)
  if (!shape.wide_ports) {
    EXPECT_GT(unconnected, nkeys / 10) << "seed " << seed;
  }
  EXPECT_LT(unconnected, nkeys - nkeys / 10) << "seed " << seed;
  EXPECT_GT(allowed, 0) << "seed " << seed;
  EXPECT_GT(denied_by_rule, 0) << "seed " << seed;
  EXPECT_GT(pseudo_sources, 0) << "seed " << seed;
  // The IPv4 entries met a good share of the keys (3 in 4 addresses are IPv4), allows among them.
  EXPECT_GT(v4_keys, nkeys / 2) << "seed " << seed;
  EXPECT_GT(v4_untagged, nkeys / 3) << "seed " << seed;
  EXPECT_GT(v4_allowed, 0) << "seed " << seed;
  // may_hold_flow_v4 answered (these policies cover most ports: its "no" is rare here, and
  // ClassifierShortcut.NoFlowAnswerHoldsForEveryIdentityAndBothDirections requires many).
  EXPECT_GT(may_hold, 0) << "seed " << seed;
  return {untagged_allowed, closed_port};
}

TEST(ClassifierShortcut, NeverChangesAVerdictOnRandomPoliciesOfMixedShape) {
  int untagged_allowed = 0;
  for (unsigned seed = 1; seed <= 8; ++seed) untagged_allowed += run_differential({30, 16, 80, 15, 15}, seed, 2500).untagged_allowed;
  EXPECT_GT(untagged_allowed, 100);  // classify_untagged met allowed keys too
}

TEST(ClassifierShortcut, NeverChangesAVerdictWithManyDestinationClasses) {
  // More than 30 group-A destination classes: reach bits are shared between classes.
  for (unsigned seed = 100; seed <= 101; ++seed) run_differential({60, 70, 300, 3, 3, 31}, seed, 2500);
}

TEST(ClassifierShortcut, NeverChangesAVerdictWhenWildcardsDominate) {
  // Many `from: any` / `to: any` rules (groups B, C, D everywhere).
  for (unsigned seed = 200; seed <= 203; ++seed) run_differential({20, 10, 60, 50, 50}, seed, 2000);
}

TEST(ClassifierShortcut, NeverChangesAVerdictWithPortsAcrossTheWholeRange) {
  // The port filter decides: key ports on a rule port's filter bit but not its port, one off,
  // and random ones.
  for (unsigned seed = 300; seed <= 305; ++seed)
    EXPECT_GT(run_differential({30, 16, 80, 15, 15, 0, true}, seed, 2500).closed_port, 2500 / 40) << "seed " << seed;
  for (unsigned seed = 310; seed <= 311; ++seed)
    EXPECT_GT(run_differential({20, 10, 60, 50, 50, 0, true}, seed, 2000).closed_port, 2000 / 40) << "seed " << seed;
}

// may_hold_flow_v4 on a policy of specific ports (where its "no" is common): for every "no",
// no identity is allowed or audited forward or as the opener of the reverse flow; an audit leaf
// on either side is always "may"; both answers occur often.
TEST(ClassifierShortcut, NoFlowAnswerHoldsForEveryIdentityAndBothDirections) {
  auto p = parse_policy({{"p.yaml", R"(
identities:
  - {id: 1001, name: web, labels: {app: web}}
  - {id: 1002, name: db, labels: {app: db}}
segments:
  - {name: zone-a, prefixes: [10.1.0.0/16], labels: {zone: a}}
  - {name: zone-b, prefixes: [10.2.0.0/16], labels: {zone: b}}
  - {name: b-dmz, prefixes: [10.2.128.0/17], labels: {zone: b}}
  - {name: quiet, prefixes: [10.3.0.0/16], labels: {zone: q}, mode: audit}
rules:
  - {id: 10, from: {labels: {app: web}}, to: {segments: [zone-b]}, proto: udp, ports: [443], action: allow}
  - {id: 11, from: {labels: {app: web}}, to: {segments: [b-dmz]}, proto: tcp, ports: [8000-8010], action: allow}
  - {id: 12, from: {segments: [zone-a]}, to: {segments: [zone-b]}, proto: tcp, ports: [22], action: allow}
  - {id: 13, from: any, to: {segments: [zone-a]}, proto: tcp, ports: [53], action: allow}
  - {id: 14, from: {labels: {app: db}}, to: {segments: [quiet]}, proto: tcp, ports: [5432], action: allow}
  - {id: 30, from: any, to: {segments: [zone-b]}, proto: tcp, ports: [23], action: deny}
)"}});
  ASSERT_TRUE(p.has_value()) << format(p.error()[0]);
  auto compiled = compile(*p, {.revision = 3});
  ASSERT_TRUE(compiled.has_value());
  const auto& s = **compiled;
  std::vector<IdentityId> sources{kUnauthenticated, 1001, 1002, 4242};
  for (auto& seg : p->segments) sources.push_back(s.resolve_untagged(seg.prefixes[0].addr));
  std::mt19937 rng(77);
  const std::uint16_t ports[] = {443, 22, 23, 53, 5432, 8000, 8005, 8010, 8011, 80, 9999, 1234};
  const auto port = [&] {
    switch (rng() % 3) {
      case 0: return ports[rng() % std::size(ports)];
      case 1: return static_cast<std::uint16_t>(ports[rng() % std::size(ports)] + 64 * (rng() % 5));
      default: return static_cast<std::uint16_t>(rng() % 65536);
    }
  };
  const auto addr = [&] { return IpAddress::v4(((rng() % 5 == 0 ? 172u : 10u) << 24) | ((rng() % 4) << 16) | (rng() & 0xffff)); };
  int may = 0, no = 0, audit_side = 0;
  for (int i = 0; i < 4000; ++i) {
    const IpAddress src = addr(), dst = addr();
    const std::uint8_t proto = rng() % 2 ? kProtoTcp : kProtoUdp;
    const std::uint16_t sport = port(), dport = port();
    const bool answer = s.may_hold_flow_v4(src.v4_host_order(), dst.v4_host_order(), proto, sport, dport);
    const bool audit = (src.bytes[0] == 10 && src.bytes[1] == 3) || (dst.bytes[0] == 10 && dst.bytes[1] == 3);
    if (audit) {
      ++audit_side;
      EXPECT_TRUE(answer) << "audit leaf " << to_string(src) << " -> " << to_string(dst);
    }
    if (answer) {
      ++may;
      continue;
    }
    ++no;
    for (IdentityId from : sources) {
      const auto vf = s.classify_all_groups({from, dst, proto, dport});
      EXPECT_EQ(vf.disposition, Disposition::deny) << "no, but " << from << " -> " << to_string(dst) << ":" << dport;
      const auto vr = s.classify_all_groups({from, src, proto, sport});
      EXPECT_EQ(vr.disposition, Disposition::deny) << "no, but the reply flow " << from << " -> " << to_string(src) << ":" << sport;
    }
  }
  EXPECT_GT(may, 400);
  EXPECT_GT(no, 400);
  EXPECT_GT(audit_side, 100);
  // Without ports there is no filter: always "may".
  EXPECT_TRUE(s.may_hold_flow_v4(IpAddress::v4(0xac100001).v4_host_order(), IpAddress::v4(0x0a020001).v4_host_order(),
                                 kProtoIcmp, 0, 0));
}

TEST(ClassifierShortcut, UntaggedSourceWithoutRulesIsDeniedWithTheLeafsSegmentAndMode) {
  auto p = parse_policy({{"p.yaml", R"(
identities: [{id: 1001, name: web, labels: {app: web}}]
segments:
  - {name: zone-b, prefixes: [10.2.0.0/16], labels: {zone: b}}
  - {name: quiet, prefixes: [10.3.0.0/16], labels: {zone: q}, mode: audit}
rules:
  - {id: 10, from: {labels: {app: web}}, to: {segments: [zone-b]}, proto: tcp, ports: [443], action: allow}
  - {id: 11, from: {labels: {app: web}}, to: {segments: [quiet]}, proto: tcp, ports: [443], action: allow}
  - {id: 30, from: any, to: {segments: [zone-b]}, proto: tcp, ports: [23], action: deny}
)"}});
  ASSERT_TRUE(p.has_value());
  auto s = compile(*p, {.revision = 7});
  ASSERT_TRUE(s.has_value());
  const auto& snap = **s;
  auto v = snap.classify({kUnauthenticated, *parse_address("10.2.0.5"), kProtoTcp, 443});
  EXPECT_EQ(v.disposition, Disposition::deny);
  EXPECT_EQ(v.reason, DropReason::policy_default_deny);
  EXPECT_EQ(v.rule_id, kDefaultRule);
  EXPECT_EQ(v.segment, 0u);
  EXPECT_EQ(v.revision, 7u);
  v = snap.classify({kUnauthenticated, *parse_address("10.3.0.5"), kProtoTcp, 443});
  EXPECT_EQ(v.disposition, Disposition::audit);
  EXPECT_EQ(v.reason, DropReason::policy_default_deny);
  EXPECT_EQ(v.segment, 1u);
  // The declared identity still meets the explicit deny of the `from: any` rule, and its allow.
  v = snap.classify({1001, *parse_address("10.2.0.5"), kProtoTcp, 23});
  EXPECT_EQ(v.reason, DropReason::policy_deny);
  EXPECT_EQ(v.rule_id, 30u);
  EXPECT_EQ(snap.classify({1001, *parse_address("10.2.0.5"), kProtoTcp, 443}).disposition, Disposition::allow);
  // An unknown identity is denied like an untagged one.
  EXPECT_EQ(snap.classify({4242, *parse_address("10.2.0.5"), kProtoTcp, 23}).reason, DropReason::policy_default_deny);
}

}  // namespace
}  // namespace zt::rules
