// The per-lcore flow table: replies find their flow, capacity is a hard limit that never evicts
// a live flow, quotas hold per identity, aging is incremental, TCP state follows the handshake.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "zt/dataplane/flow_table.hpp"

namespace {

using namespace zt::dp;

constexpr std::uint64_t kTps = 1000;  // ticks per second in these tests: milliseconds

IpLayer v4(std::uint32_t src, std::uint32_t dst, std::uint16_t sp, std::uint16_t dp, std::uint8_t proto = 6) {
  IpLayer l;
  l.version = 4;
  l.proto = proto;
  l.src.b[0] = src >> 24, l.src.b[1] = src >> 16, l.src.b[2] = src >> 8, l.src.b[3] = src;
  l.dst.b[0] = dst >> 24, l.dst.b[1] = dst >> 16, l.dst.b[2] = dst >> 8, l.dst.b[3] = dst;
  l.sport = sp;
  l.dport = dp;
  return l;
}

std::unique_ptr<FlowTable> table(std::uint32_t capacity, std::uint32_t quota = 0) {
  FlowTableConfig c;
  c.capacity = capacity;
  c.per_identity_quota = quota;
  c.timeouts = make_timeouts(kTps);
  auto t = FlowTable::create(c);
  EXPECT_TRUE(t) << t.error();
  return std::move(*t);
}

// Inserts the flow of a packet `l`, opened in the direction the packet goes. (Its key and
// direction are computed first: as one argument list, `d` could be read before it is set.)
InsertResult add(FlowTable& t, const IpLayer& l, std::uint32_t identity, std::uint64_t now, FlowEntry** e) {
  KeyDir d;
  const FlowKey k = make_flow_key(l, d);
  return t.insert(k, d, identity, now, e);
}

TEST(FlowKey, APacketAndItsReplyShareOneKeyWithOppositeDirections) {
  KeyDir d1, d2;
  const auto k1 = make_flow_key(v4(0x0a0a0001, 0x0a0a0002, 40000, 80), d1);
  const auto k2 = make_flow_key(v4(0x0a0a0002, 0x0a0a0001, 80, 40000), d2);
  EXPECT_EQ(k1, k2);
  EXPECT_NE(d1, d2);
}

TEST(FlowKey, DifferentPortsProtocolsOrFamiliesAreDifferentFlows) {
  KeyDir d;
  const auto base = make_flow_key(v4(1, 2, 1000, 80), d);
  EXPECT_NE(base, make_flow_key(v4(1, 2, 1001, 80), d));
  EXPECT_NE(base, make_flow_key(v4(1, 2, 1000, 80, 17), d));
  auto l6 = v4(1, 2, 1000, 80);
  l6.version = 6;
  EXPECT_NE(base, make_flow_key(l6, d));
}

// The key as it was built before the straight-line version (memcmp of the addresses, ports
// breaking a tie, ICMP without ports): the reference the fast one must equal byte for byte.
FlowKey reference_key(const IpLayer& l, KeyDir& dir) {
  FlowKey k;
  k.proto = l.proto;
  k.version = l.version;
  std::uint16_t sp = l.sport, dp = l.dport;
  if (l.proto == 1 || l.proto == 58) sp = dp = 0;
  const int c = std::memcmp(l.src.b.data(), l.dst.b.data(), 16);
  const bool src_is_lo = c < 0 || (c == 0 && sp <= dp);
  k.addr_lo = src_is_lo ? l.src.b : l.dst.b;
  k.addr_hi = src_is_lo ? l.dst.b : l.src.b;
  k.port_lo = src_is_lo ? sp : dp;
  k.port_hi = src_is_lo ? dp : sp;
  dir = src_is_lo ? KeyDir::lo_to_hi : KeyDir::hi_to_lo;
  return k;
}

TEST(FlowKey, OrdersEndpointsByteWiseLikeMemcmpWithPortsBreakingTies) {
  std::mt19937_64 rng(5);
  // Addresses that differ in one byte only (first, middle or last of either half), equal ones,
  // v4 and v6, ICMP/ICMPv6 and TCP/UDP: the fast key and direction equal the reference's, and
  // the reply always lands on the same key in the other direction.
  for (int i = 0; i < 20000; ++i) {
    IpLayer l;
    l.version = (i & 1) ? 6 : 4;
    const std::uint8_t protos[] = {6, 17, 1, 58, 47};
    l.proto = protos[rng() % 5];
    const unsigned len = l.version == 6 ? 16 : 4;
    for (unsigned b = 0; b < len; ++b) l.src.b[b] = static_cast<std::uint8_t>(rng() % 4);
    l.dst = l.src;
    if (rng() % 4 != 0) l.dst.b[rng() % len] = static_cast<std::uint8_t>(rng());
    l.sport = static_cast<std::uint16_t>(rng() % 3 == 0 ? 80 : rng());
    l.dport = static_cast<std::uint16_t>(rng() % 3 == 0 ? 80 : rng());
    KeyDir want_dir, got_dir;
    const FlowKey want = reference_key(l, want_dir);
    FlowKey got;
    std::memset(static_cast<void*>(&got), 0xA5, sizeof got);  // every byte must be written
    make_flow_key_into(l, got, got_dir);
    ASSERT_EQ(std::memcmp(&got, &want, sizeof got), 0) << "case " << i;
    ASSERT_EQ(got_dir, want_dir) << "case " << i;
    IpLayer r = l;
    std::swap(r.src, r.dst);
    std::swap(r.sport, r.dport);
    KeyDir rdir;
    const FlowKey rk = make_flow_key(r, rdir);
    ASSERT_EQ(rk, got) << "case " << i;
    // Same endpoints both ways (a packet to itself) is lo_to_hi both ways; else they differ.
    if (!(l.src == l.dst && (l.sport == l.dport || l.proto == 1 || l.proto == 58))) {
      ASSERT_NE(rdir, got_dir) << "case " << i;
    }
  }
}

TEST(FlowKey, KeysThatDifferInAnyByteAreDifferent) {
  KeyDir d;
  auto l = v4(0x0a000001, 0x0a000002, 1000, 80);
  l.version = 6;
  for (unsigned b = 4; b < 16; ++b) l.src.b[b] = static_cast<std::uint8_t>(b), l.dst.b[b] = static_cast<std::uint8_t>(b * 3);
  const FlowKey k = make_flow_key(l, d);
  for (std::size_t byte = 0; byte < sizeof(FlowKey); ++byte)
    for (const std::uint8_t bit : {0x01, 0x80}) {
      FlowKey x = k;
      reinterpret_cast<std::uint8_t*>(&x)[byte] ^= bit;
      EXPECT_FALSE(x == k) << "byte " << byte;
      EXPECT_FALSE(k == x) << "byte " << byte;
    }
  FlowKey same = k;
  EXPECT_TRUE(same == k);
}

TEST(FlowTable, HashIsKeyedBySecretDrawnPerTable) {
  // Bucket placement must not be computable from the code alone (dataplane/README.md, "Flow
  // table"): two tables hash the same keys differently, each consistently.
  auto a = table(1024), b = table(1024);
  unsigned same = 0;
  for (std::uint32_t i = 0; i < 64; ++i) {
    KeyDir d;
    const FlowKey k = make_flow_key(v4(0x0a000000 + i, 0x0b000001, 40000, 443), d);
    EXPECT_EQ(a->hash_of(k), a->hash_of(k));
    same += a->hash_of(k) == b->hash_of(k);
  }
  EXPECT_EQ(same, 0u);  // by chance: 64 * 2^-64
}

TEST(FlowTable, InsertedFlowIsFoundFromBothDirections) {
  auto t = table(1024);
  KeyDir d;
  const auto k = make_flow_key(v4(0x0a000001, 0x0a000002, 5555, 443), d);
  FlowEntry* e = nullptr;
  ASSERT_EQ(t->insert(k, d, 100, 0, &e), InsertResult::inserted);
  e->rule_id = 7;
  KeyDir rd;
  const auto rk = make_flow_key(v4(0x0a000002, 0x0a000001, 443, 5555), rd);
  FlowEntry* found = t->lookup(rk);
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->rule_id, 7u);
  EXPECT_EQ(found->identity, 100u);
  EXPECT_EQ(found->initiator, d);
  EXPECT_EQ(t->size(), 1u);
  FlowEntry* again = nullptr;
  EXPECT_EQ(t->insert(rk, rd, 100, 0, &again), InsertResult::exists);
  EXPECT_EQ(again, found);
}

TEST(FlowTable, BulkLookupFindsEveryInsertedFlowAndNoOther) {
  auto t = table(100000);
  std::vector<FlowKey> keys;
  for (std::uint32_t i = 0; i < 90000; ++i) {
    KeyDir d;
    keys.push_back(make_flow_key(v4(0x0a000000 + i, 0x0b000000 + (i * 7), static_cast<std::uint16_t>(i), 80), d));
    FlowEntry* e;
    ASSERT_EQ(t->insert(keys.back(), d, 3, 0, &e), InsertResult::inserted) << i;
    e->rule_id = i;
  }
  for (std::size_t i = 0; i < keys.size(); i += 32) {
    FlowEntry* out[32];
    const unsigned n = static_cast<unsigned>(std::min<std::size_t>(32, keys.size() - i));
    t->lookup_bulk(&keys[i], n, out);
    for (unsigned j = 0; j < n; ++j) {
      ASSERT_NE(out[j], nullptr) << i + j;
      EXPECT_EQ(out[j]->rule_id, i + j);
    }
  }
  KeyDir d;
  EXPECT_EQ(t->lookup(make_flow_key(v4(0x0c000000, 1, 1, 1), d)), nullptr);
}

TEST(FlowTable, AFullTableRefusesNewFlowsAndKeepsEveryEstablishedOne) {
  auto t = table(256);
  std::vector<FlowKey> keys;
  for (std::uint32_t i = 0;; ++i) {
    KeyDir d;
    auto k = make_flow_key(v4(0x0a000000 + i, 2, 1, 2), d);
    FlowEntry* e;
    const auto r = t->insert(k, d, 5, /*now=*/0, &e);
    if (r == InsertResult::table_full) break;
    ASSERT_EQ(r, InsertResult::inserted);
    keys.push_back(k);
    ASSERT_LT(i, 10000u);
  }
  EXPECT_EQ(t->size(), 256u);  // the capacity is reached exactly, not sooner
  for (const auto& k : keys) EXPECT_NE(t->lookup(k), nullptr);
}

TEST(FlowTable, AFullTableReclaimsAnExpiredFlowButNeverALiveOne) {
  auto t = table(64);
  for (std::uint32_t i = 0; i < 64; ++i) {
    FlowEntry* e;
    ASSERT_EQ(add(*t, v4(0x0a000000 + i, 2, 1, 2, 17), 5, 0, &e), InsertResult::inserted);
  }
  FlowEntry* e;
  // UDP times out after 60 s: at 30 s nothing may go, at 61 s everything may.
  EXPECT_EQ(add(*t, v4(0x0b000000, 2, 1, 2, 17), 5, 30 * kTps, &e), InsertResult::table_full);
  EXPECT_EQ(add(*t, v4(0x0b000000, 2, 1, 2, 17), 5, 61 * kTps, &e), InsertResult::inserted);
}

TEST(FlowTable, PerIdentityQuotaStopsOneIdentityNotTheOthers) {
  auto t = table(1024, /*quota=*/3);
  KeyDir d;
  FlowEntry* e;
  for (std::uint16_t p = 0; p < 3; ++p)
    ASSERT_EQ(add(*t, v4(1, 2, p, 80), 42, 0, &e), InsertResult::inserted);
  EXPECT_EQ(add(*t, v4(1, 2, 9, 80), 42, 0, &e), InsertResult::quota_exceeded);
  EXPECT_EQ(add(*t, v4(1, 2, 9, 80), 43, 0, &e), InsertResult::inserted);
  EXPECT_EQ(t->identity_flows(42), 3u);
  t->erase(t->lookup(make_flow_key(v4(1, 2, 0, 80), d)));
  EXPECT_EQ(t->identity_flows(42), 2u);
  EXPECT_EQ(add(*t, v4(1, 2, 9, 81), 42, 0, &e), InsertResult::inserted);
}

TEST(FlowTable, FlowsThatAgeOutOrAreReclaimedGiveTheirIdentitysQuotaBack) {
  auto t = table(64, /*quota=*/4);
  FlowEntry* e;
  for (std::uint16_t p = 0; p < 4; ++p)
    ASSERT_EQ(add(*t, v4(1, 2, p, 53, 17), 42, 0, &e), InsertResult::inserted);
  EXPECT_EQ(add(*t, v4(1, 2, 9, 53, 17), 42, 30 * kTps, &e), InsertResult::quota_exceeded);
  // 61 s on, the UDP flows (60 s) have expired: aging removes them and the quota is free again.
  for (int i = 0; i < 1000 && t->size() != 0; ++i) t->age(61 * kTps, 1);
  EXPECT_EQ(t->identity_flows(42), 0u);
  for (std::uint16_t p = 10; p < 14; ++p)
    ASSERT_EQ(add(*t, v4(1, 2, p, 53, 17), 42, 61 * kTps, &e), InsertResult::inserted);
  // A full table reclaiming an expired flow of identity 43 gives 43 its slot back too.
  for (std::uint32_t i = 0; t->size() < 64; ++i)
    ASSERT_EQ(add(*t, v4(0x0a000000 + i, 2, 1, 53, 17), 43 + (i % 30), 61 * kTps, &e),
              InsertResult::inserted);
  std::uint32_t held = 0;
  for (std::uint32_t id = 43; id < 73; ++id) held += t->identity_flows(id);
  EXPECT_EQ(held, 60u);
  EXPECT_EQ(add(*t, v4(2, 2, 1, 53, 17), 99, 100 * kTps, &e), InsertResult::table_full);
  EXPECT_EQ(add(*t, v4(2, 2, 1, 53, 17), 99, 122 * kTps, &e), InsertResult::inserted);
  held = 0;
  for (std::uint32_t id = 42; id < 73; ++id) held += t->identity_flows(id);
  EXPECT_EQ(held + t->identity_flows(99), t->size());  // every flow counted once, under its identity
}

// all_flows_at(R): true only after a whole aging round under R found nothing but flows of R;
// any flow of another revision, a change of revision mid-round, or a round of unknown revision
// keeps it false. (The pipeline skips the flow lookup for packets no flow can hold only then.)
TEST(FlowTable, AllFlowsAtARevisionOnlyAfterACleanRoundUnderIt) {
  auto t = table(256);
  FlowEntry* e;
  EXPECT_FALSE(t->all_flows_at(5));  // no round yet
  for (std::uint16_t p = 0; p < 20; ++p) {
    ASSERT_EQ(add(*t, v4(1, 2, p, 53, 17), 42, 0, &e), InsertResult::inserted);
    e->revision = 5;
  }
  const unsigned n = t->bucket_count();
  t->age(kTps, n - 1, 5);
  EXPECT_FALSE(t->all_flows_at(5));  // one bucket short of a round
  t->age(kTps, 1, 5);
  EXPECT_TRUE(t->all_flows_at(5));
  EXPECT_FALSE(t->all_flows_at(6));
  // Revision 6 is published; the flows are still of 5 until re-decided.
  t->age(kTps, n, 6);
  EXPECT_FALSE(t->all_flows_at(6));
  EXPECT_FALSE(t->all_flows_at(5));
  t->for_each([](const FlowEntry& f) {
    const_cast<FlowEntry&>(f).revision = 6;
    return true;
  });
  t->age(kTps, n / 2, 6);
  t->age(kTps, n - n / 2, 7);  // changed mid-round: not clean for either
  EXPECT_FALSE(t->all_flows_at(6));
  EXPECT_FALSE(t->all_flows_at(7));
  t->age(kTps, n, 6);
  EXPECT_TRUE(t->all_flows_at(6));
  // One flow of another revision anywhere spoils the next round.
  ASSERT_EQ(add(*t, v4(9, 2, 1, 53, 17), 42, 0, &e), InsertResult::inserted);
  e->revision = 4;
  t->age(kTps, n, 6);
  EXPECT_FALSE(t->all_flows_at(6));
  // Aging without a revision (tests, tools) never makes it true.
  t->clear();
  t->age(kTps, n);
  EXPECT_FALSE(t->all_flows_at(6));
  EXPECT_FALSE(t->all_flows_at(0));
}

// With a hook (the pipeline's re-decision), a round under a new revision leaves no flow of an
// older one: the hook restamps or revokes each, it is never asked about flows of the current
// revision or expired ones, and a flow it neither restamps nor revokes keeps the round unclean.
TEST(FlowTable, AgingHandsFlowsOfAnotherRevisionToTheHookWhichRestampsOrRevokesThem) {
  auto t = table(256);
  FlowEntry* e;
  for (std::uint16_t p = 0; p < 20; ++p) {
    ASSERT_EQ(add(*t, v4(1, 2, p, 53, 17), 42, 0, &e), InsertResult::inserted);
    e->revision = p < 2 ? 6 : 5;  // two already of revision 6
  }
  ASSERT_EQ(add(*t, v4(1, 3, 1, 53, 17), 42, 0, &e), InsertResult::inserted);
  e->revision = 5;
  e->last_seen = 0;
  struct Seen {
    unsigned calls = 0;
    bool asked_current = false;
  } seen;
  // Revokes flows whose source port is odd, restamps the rest to 6.
  const StaleFlowHook hook{[](void* ctx, FlowEntry& f) noexcept {
                             auto& s = *static_cast<Seen*>(ctx);
                             ++s.calls;
                             if (f.revision == 6) s.asked_current = true;
                             const std::uint16_t sport = f.initiator == KeyDir::lo_to_hi ? f.key.port_lo : f.key.port_hi;
                             if (sport % 2 == 1) return true;
                             f.revision = 6;
                             return false;
                           },
                           &seen};
  // The flow to 1.0.0.3 was last seen at 0 and the others are refreshed: at 100 s only it has
  // expired (UDP timeout), and expiry comes before the hook.
  t->for_each([](const FlowEntry& f) {
    if (f.last_seen != 0 || f.key.addr_hi[3] != 3) const_cast<FlowEntry&>(f).last_seen = 100 * kTps;
    return true;
  });
  const unsigned expired = t->age(100 * kTps, t->bucket_count(), 6, hook);
  EXPECT_EQ(expired, 1u);
  EXPECT_EQ(seen.calls, 18u);  // the 18 flows of revision 5 still live
  EXPECT_FALSE(seen.asked_current);
  EXPECT_EQ(t->size(), 11u);   // ports 0, 1 (already 6) and the 9 even ports of 2..19
  unsigned at6 = 0;
  t->for_each([&](const FlowEntry& f) {
    at6 += f.revision == 6;
    return true;
  });
  EXPECT_EQ(at6, 11u);
  EXPECT_TRUE(t->all_flows_at(6));
  // A hook that leaves a flow as it was: that flow keeps the next round unclean.
  ASSERT_EQ(add(*t, v4(1, 4, 2, 53, 17), 42, 100 * kTps, &e), InsertResult::inserted);
  e->revision = 5;
  const StaleFlowHook keep{[](void*, FlowEntry&) noexcept { return false; }, nullptr};
  t->age(100 * kTps, t->bucket_count(), 6, keep);
  EXPECT_FALSE(t->all_flows_at(6));
  EXPECT_EQ(t->size(), 12u);
}

// The hook's budget bounds one call's re-decisions (finishing the bucket in progress), and the
// next calls go on from there until the round is done.
TEST(FlowTable, AgingStopsAfterTheHooksBudgetAndResumesWhereItStopped) {
  auto t = table(4096);
  FlowEntry* e;
  for (std::uint16_t p = 0; p < 200; ++p) {
    ASSERT_EQ(add(*t, v4(1, 2, p, 53, 17), 42, 0, &e), InsertResult::inserted);
    e->revision = 5;
  }
  unsigned calls = 0;
  const StaleFlowHook hook{[](void* ctx, FlowEntry& f) noexcept {
                             ++*static_cast<unsigned*>(ctx);
                             f.revision = 6;
                             return false;
                           },
                           &calls, 10};
  t->age(0, t->bucket_count(), 6, hook);
  EXPECT_GE(calls, 10u);
  EXPECT_LT(calls, 10u + 8u);  // at most the rest of the bucket it was in (8 slots)
  EXPECT_FALSE(t->all_flows_at(6));
  unsigned rounds = 1;
  while (calls < 200 && rounds < 100) {
    t->age(0, t->bucket_count(), 6, hook);
    ++rounds;
  }
  EXPECT_EQ(calls, 200u);  // each flow re-decided exactly once
  EXPECT_GE(rounds, 200u / 17u);
  t->age(0, t->bucket_count(), 6, hook);  // nothing stale left: one whole round, no budget used
  t->age(0, t->bucket_count(), 6, hook);
  EXPECT_EQ(calls, 200u);
  EXPECT_TRUE(t->all_flows_at(6));
}

TEST(FlowTable, AgingExpiresIdleFlowsInBoundedStepsByProtocolTimeout) {
  auto t = table(4096);
  FlowEntry* e;
  ASSERT_EQ(add(*t, v4(1, 2, 1, 53, 17), 5, 0, &e), InsertResult::inserted);
  ASSERT_EQ(add(*t, v4(1, 2, 1, 443, 6), 5, 0, &e), InsertResult::inserted);
  e->tcp = TcpState::established;
  // One bucket per call: a full pass takes many calls, none of which scans the whole table.
  unsigned expired = 0;
  for (int i = 0; i < 100000 && expired == 0; ++i) expired += t->age(61 * kTps, 1);
  EXPECT_EQ(expired, 1u);  // the UDP flow (60 s); the established TCP flow (1800 s) stays
  EXPECT_EQ(t->size(), 1u);
  for (int i = 0; i < 100000 && t->size() != 0; ++i) t->age(1801 * kTps, 64);
  EXPECT_EQ(t->size(), 0u);
}

TEST(FlowTable, ClearRemovesEverythingAndFreesTheCapacity) {
  auto t = table(128);
  FlowEntry* e;
  for (std::uint32_t i = 0; i < 128; ++i) add(*t, v4(i + 1, 2, 1, 2), 5, 0, &e);
  EXPECT_EQ(t->clear(), t->capacity());
  EXPECT_EQ(t->size(), 0u);
  EXPECT_EQ(add(*t, v4(1, 2, 1, 2), 5, 0, &e), InsertResult::inserted);
}

constexpr std::uint8_t FIN = 1, SYN = 2, RST = 4, ACK = 16;

TEST(TcpTracking, FollowsTheHandshakeToEstablishedAndFinsToClosing) {
  FlowEntry e;
  e.key.proto = 6;
  e.initiator = KeyDir::lo_to_hi;
  const auto I = KeyDir::lo_to_hi, R = KeyDir::hi_to_lo;
  EXPECT_EQ(FlowTable::track_tcp(e, I, SYN), TcpVerdict::ok);
  EXPECT_EQ(e.tcp, TcpState::syn_sent);
  EXPECT_EQ(FlowTable::track_tcp(e, R, SYN | ACK), TcpVerdict::ok);
  EXPECT_EQ(e.tcp, TcpState::syn_received);
  EXPECT_EQ(FlowTable::track_tcp(e, I, ACK), TcpVerdict::ok);
  EXPECT_EQ(e.tcp, TcpState::established);
  EXPECT_EQ(FlowTable::track_tcp(e, R, ACK), TcpVerdict::ok);
  EXPECT_EQ(FlowTable::track_tcp(e, I, FIN | ACK), TcpVerdict::ok);
  EXPECT_EQ(e.tcp, TcpState::fin_wait);
  EXPECT_EQ(FlowTable::track_tcp(e, R, FIN | ACK), TcpVerdict::ok);
  EXPECT_EQ(e.tcp, TcpState::closing);
}

TEST(TcpTracking, RefusesWhatNoHandshakeAllows) {
  const auto I = KeyDir::lo_to_hi, R = KeyDir::hi_to_lo;
  FlowEntry e;
  e.initiator = I;
  EXPECT_EQ(FlowTable::track_tcp(e, I, ACK), TcpVerdict::invalid) << "no SYN for a new flow";
  EXPECT_EQ(FlowTable::track_tcp(e, I, SYN | FIN), TcpVerdict::invalid) << "SYN+FIN";
  EXPECT_EQ(FlowTable::track_tcp(e, R, SYN | ACK), TcpVerdict::invalid) << "SYN-ACK before SYN";
  ASSERT_EQ(FlowTable::track_tcp(e, I, SYN), TcpVerdict::ok);
  EXPECT_EQ(FlowTable::track_tcp(e, R, ACK), TcpVerdict::invalid) << "responder data before SYN-ACK";
  ASSERT_EQ(FlowTable::track_tcp(e, R, SYN | ACK), TcpVerdict::ok);
  ASSERT_EQ(FlowTable::track_tcp(e, I, ACK), TcpVerdict::ok);
  EXPECT_EQ(FlowTable::track_tcp(e, I, SYN), TcpVerdict::invalid) << "SYN inside an established flow";
}

TEST(TcpTracking, ResetClosesAndOnlyANewSynFromTheInitiatorReopens) {
  const auto I = KeyDir::lo_to_hi, R = KeyDir::hi_to_lo;
  FlowEntry e;
  e.initiator = I;
  e.tcp = TcpState::established;
  EXPECT_EQ(FlowTable::track_tcp(e, R, RST), TcpVerdict::ok);
  EXPECT_EQ(e.tcp, TcpState::closed);
  EXPECT_EQ(FlowTable::track_tcp(e, R, ACK), TcpVerdict::invalid);
  EXPECT_EQ(FlowTable::track_tcp(e, I, SYN), TcpVerdict::ok);
  EXPECT_EQ(e.tcp, TcpState::syn_sent);
}

TEST(FlowTable, RefusesACapacityOutOfRangeWithAMessage) {
  FlowTableConfig c;
  c.capacity = 1;
  auto t = FlowTable::create(c);
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().find("capacity 1"), std::string::npos);
}

}  // namespace
