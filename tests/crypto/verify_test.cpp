// Tag verification: every bad-input case has its own reason and costs at most one MAC; epoch
// boundaries with an injected clock; bursts; a randomized cross-check against OpenSSL.
#include <gtest/gtest.h>

#include <random>

#include "fixtures.hpp"
#include "zt/crypto/cached_key.hpp"
#include "zt/crypto/replay_filter.hpp"

namespace zt::crypto {
namespace {

using test::Domain;
using test::Tagged;

constexpr std::uint64_t kEpoch = 4242;  // low byte 0x92
constexpr std::int64_t kMid = 7 * 60 * kNsPerSec;

class TagVerifier : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = Minter::create();
    ASSERT_TRUE(m);
    minter_ = std::make_unique<Minter>(std::move(*m));
    auto v = Verifier::create();
    ASSERT_TRUE(v) << v.error().message;
    verifier_ = std::make_unique<Verifier>(std::move(*v));
    ring_ = dom_.ring(kEpoch);
  }

  Tagged mint(std::uint32_t id, std::int64_t now, Alg alg = Alg::aes256_cmac,
              Coverage cov = Coverage::full, std::uint64_t epoch = kEpoch,
              std::size_t payload = 100) {
    return test::mint_packet(*minter_, dom_.key(id, epoch, alg), now, dom_.policy,
                             test::ipv4_packet(6, payload), cov);
  }

  VerifyResult verify(const Tagged& t, std::int64_t now, ReplayFilter* rf = nullptr) {
    return verify(t.input(), now, rf);
  }
  VerifyResult verify(const VerifyInput& in, std::int64_t now, ReplayFilter* rf = nullptr) {
    VerifyResult r;
    EXPECT_EQ(verifier_->verify_burst(*ring_, now, std::span(&in, 1), std::span(&r, 1), rf), 1u);
    return r;
  }

  Domain dom_;
  std::unique_ptr<Minter> minter_;
  std::unique_ptr<Verifier> verifier_;
  std::shared_ptr<const KeyRing> ring_;
};

TEST_F(TagVerifier, AcceptsFreshFullTagsOfBothAlgorithms) {
  const auto now = dom_.at(kEpoch, kMid);
  for (Alg alg : {Alg::aes128_cmac, Alg::aes256_cmac}) {
    auto r = verify(mint(1000, now, alg), now);
    EXPECT_EQ(r.reason, TagReject::none) << to_string(r.reason);
    EXPECT_EQ(r.identity, 1000u);
    EXPECT_EQ(r.epoch, kEpoch);
    EXPECT_EQ(r.coverage, Coverage::full);
  }
}

TEST_F(TagVerifier, AcceptsHdrTagWhereDestinationAllowsIt) {
  const auto now = dom_.at(kEpoch, kMid);
  auto t = mint(1001, now, Alg::aes256_cmac, Coverage::hdr, kEpoch, 1400);
  EXPECT_EQ(verify(t, now).reason, TagReject::none);
  // HDR leaves the payload past the first 16 L4 bytes unauthenticated, by design.
  t.inner_ip.back() ^= 0xFF;
  EXPECT_EQ(verify(t, now).reason, TagReject::none);
}

TEST_F(TagVerifier, RejectsHdrCoverageWhereDestinationDemandsFull) {
  const auto now = dom_.at(kEpoch, kMid);
  auto t = mint(1001, now, Alg::aes256_cmac, Coverage::hdr);
  t.hdr_allowed = false;
  EXPECT_EQ(verify(t, now).reason, TagReject::tag_hdr_not_allowed);
}

TEST_F(TagVerifier, RejectsForgedMac) {
  const auto now = dom_.at(kEpoch, kMid);
  auto t = mint(1002, now);
  for (std::size_t i = 16; i < 32; ++i) t.body[i] = static_cast<std::uint8_t>(i * 31);
  EXPECT_EQ(verify(t, now).reason, TagReject::tag_forged_mac);
}

TEST_F(TagVerifier, RejectsTagMadeWithAnotherIdentitysKey) {
  const auto now = dom_.at(kEpoch, kMid);
  // Identity 1003 mints with its own key but claims to be 1004.
  auto k = dom_.key(1003, kEpoch, Alg::aes256_cmac);
  k.identity = 1004;
  auto t = test::mint_packet(*minter_, k, now, dom_.policy, test::ipv4_packet(17, 30));
  EXPECT_EQ(verify(t, now).reason, TagReject::tag_forged_mac);
}

TEST_F(TagVerifier, RejectsEveryFlippedBitOfTheCoveredBytes) {
  const auto now = dom_.at(kEpoch, kMid);
  for (Coverage cov : {Coverage::full, Coverage::hdr}) {
    const Tagged good = mint(1005, now, Alg::aes256_cmac, cov, kEpoch, 200);
    const VerifyInput in = good.input();
    std::vector<Tagged> bad;
    // Body bytes 0-15: every bit. Some flips are caught before the MAC (version, alg, epoch...):
    // all must be refused; flips of the timestamp's low bytes and the lane must be forged_mac.
    for (std::size_t byte = 0; byte < 16; ++byte)
      for (int bit = 0; bit < 8; ++bit) {
        Tagged t = good;
        t.body[byte] ^= static_cast<std::uint8_t>(1 << bit);
        bad.push_back(t);
      }
    // The MAC itself, and the inner packet: addresses, protocol, every covered L4 bit.
    for (std::size_t byte = 16; byte < 32; ++byte) {
      Tagged t = good;
      t.body[byte] ^= 0x01;
      bad.push_back(t);
    }
    const std::size_t covered = covered_l4_len(cov, in.inner.l4.size());
    std::vector<std::size_t> offsets = {12, 13, 15, 16, 19, 9};  // src, dst, protocol
    for (std::size_t i = 0; i < covered; ++i) offsets.push_back(20 + i);
    std::size_t flips_before_inner = bad.size();
    for (std::size_t off : offsets)
      for (int bit = 0; bit < 8; ++bit) {
        Tagged t = good;
        t.inner_ip[off] ^= static_cast<std::uint8_t>(1 << bit);
        bad.push_back(t);
      }
    // Truncating the L4 segment changes the bound length.
    Tagged shorter = good;
    shorter.inner_ip.pop_back();
    test::put16(shorter.inner_ip, 2, static_cast<std::uint16_t>(shorter.inner_ip.size()));
    bad.push_back(shorter);

    std::vector<VerifyInput> ins;
    for (const auto& t : bad) ins.push_back(t.input());
    for (auto& in_i : ins) in_i.hdr_allowed = true;
    std::vector<VerifyResult> rs(ins.size());
    for (std::size_t i = 0; i < ins.size(); i += kMaxVerifyBurst) {
      const std::size_t n = std::min(kMaxVerifyBurst, ins.size() - i);
      ASSERT_EQ(verifier_->verify_burst(*ring_, now, std::span(ins).subspan(i, n),
                                        std::span(rs).subspan(i, n)), n);
    }
    for (std::size_t i = 0; i < rs.size(); ++i) {
      EXPECT_NE(rs[i].reason, TagReject::none) << "flip " << i << " accepted";
      const bool field_flip = i < 128;
      const std::size_t byte = i / 8;
      const bool lane_or_ts_low = field_flip && byte >= 11;  // low timestamp bytes, lane
      if (!field_flip || lane_or_ts_low || i == 0 /* P flag: full<->hdr, both allowed */) {
        EXPECT_EQ(rs[i].reason, TagReject::tag_forged_mac) << "flip " << i;
      }
    }
    EXPECT_GT(bad.size(), flips_before_inner);
  }
}

TEST_F(TagVerifier, RejectsTruncatedTag) {
  const auto now = dom_.at(kEpoch, kMid);
  auto t = mint(1006, now);
  VerifyInput in = t.input();
  in.tag = in.tag.first(31);
  EXPECT_EQ(verify(in, now).reason, TagReject::tag_truncated);
  in.tag = {};
  EXPECT_EQ(verify(in, now).reason, TagReject::tag_truncated);
}

TEST_F(TagVerifier, RejectsUnknownVersionAndAlgorithm) {
  const auto now = dom_.at(kEpoch, kMid);
  auto t = mint(1006, now);
  t.body[0] = 0x21;
  EXPECT_EQ(verify(t, now).reason, TagReject::tag_bad_version);
  t = mint(1006, now);
  t.body[1] = 7;
  EXPECT_EQ(verify(t, now).reason, TagReject::tag_bad_alg);
}

TEST_F(TagVerifier, RejectsWrongEpoch) {
  const auto now = dom_.at(kEpoch, kMid);
  // A tag of e-2 (minted when that was current, replayed now) and one of e-1 long after grace.
  auto old2 = mint(1007, dom_.at(kEpoch - 2, kMid), Alg::aes256_cmac, Coverage::full, kEpoch - 2);
  EXPECT_EQ(verify(old2, now).reason, TagReject::tag_expired_epoch);
  auto old1 = mint(1007, dom_.at(kEpoch, 0), Alg::aes256_cmac, Coverage::full, kEpoch - 1);
  EXPECT_EQ(verify(old1, now).reason, TagReject::tag_expired_epoch);
}

TEST_F(TagVerifier, RejectsEpochTooFarAhead) {
  const auto now = dom_.at(kEpoch, kMid);
  auto t = mint(1008, now, Alg::aes256_cmac, Coverage::full, kEpoch + 1);
  EXPECT_EQ(verify(t, now).reason, TagReject::tag_future_epoch);
  auto t2 = mint(1008, now, Alg::aes256_cmac, Coverage::full, kEpoch + 2);
  EXPECT_EQ(verify(t2, now).reason, TagReject::tag_future_epoch);
}

TEST_F(TagVerifier, RejectsTimestampOutsideTheWindowEitherWay) {
  const auto now = dom_.at(kEpoch, kMid);
  const auto w = dom_.policy.time_window_ns;
  auto t = mint(1009, now - w - 1);
  EXPECT_EQ(verify(t, now).reason, TagReject::tag_time_window);
  t = mint(1009, now + w + 1);
  EXPECT_EQ(verify(t, now).reason, TagReject::tag_time_window);
  t = mint(1009, now - w);
  EXPECT_EQ(verify(t, now).reason, TagReject::none);
  t = mint(1009, now + w);
  EXPECT_EQ(verify(t, now).reason, TagReject::none);
}

TEST_F(TagVerifier, RejectsReplayedTagWithinTheWindow) {
  auto rf = ReplayFilter::create(ReplayFilterConfig{1e5, dom_.policy.time_window_ns, 1e-6});
  ASSERT_TRUE(rf);
  const auto now = dom_.at(kEpoch, kMid);
  auto t = mint(1010, now);
  EXPECT_EQ(verify(t, now, &*rf).reason, TagReject::none);
  EXPECT_EQ(verify(t, now + kNsPerSec / 2, &*rf).reason, TagReject::tag_replayed);
  // Two copies inside one burst: the first passes, the copy does not.
  auto u = mint(1011, now);
  VerifyInput ins[2] = {u.input(), u.input()};
  VerifyResult rs[2];
  ASSERT_EQ(verifier_->verify_burst(*ring_, now, ins, rs, &*rf), 2u);
  EXPECT_EQ(rs[0].reason, TagReject::none);
  EXPECT_EQ(rs[1].reason, TagReject::tag_replayed);
}

// A replay filter with a shorter window than the key ring's forgets a MAC while copies of it are
// still fresh: the verifier narrows freshness to the filter's window, so no copy slips through
// the gap (ztgate --tag-window-ms larger than the filter was sized for).
TEST_F(TagVerifier, FreshnessIsNarrowedToTheReplayFiltersWindow) {
  const auto w = dom_.policy.time_window_ns;
  auto rf = ReplayFilter::create(ReplayFilterConfig{1e5, w / 4, 1e-6});
  ASSERT_TRUE(rf);
  const auto now = dom_.at(kEpoch, kMid);
  auto t = mint(1013, now);
  EXPECT_EQ(verify(t, now, &*rf).reason, TagReject::none);
  // Within the ring's window but past the filter's: refused as stale, never accepted twice.
  EXPECT_EQ(verify(t, now + w / 2, &*rf).reason, TagReject::tag_time_window);
  EXPECT_EQ(verify(t, now + w, &*rf).reason, TagReject::tag_time_window);
  // Without a replay filter the ring's own window applies.
  auto u = mint(1014, now);
  EXPECT_EQ(verify(u, now + w / 2).reason, TagReject::none);
}

TEST_F(TagVerifier, ForgedTagsDoNotPoisonTheReplayFilter) {
  auto rf = ReplayFilter::create(ReplayFilterConfig{1e5, dom_.policy.time_window_ns, 1e-6});
  ASSERT_TRUE(rf);
  const auto now = dom_.at(kEpoch, kMid);
  auto good = mint(1012, now);
  auto forged = good;
  forged.inner_ip.back() ^= 1;  // same MAC bytes, different packet
  EXPECT_EQ(verify(forged, now, &*rf).reason, TagReject::tag_forged_mac);
  EXPECT_EQ(verify(good, now, &*rf).reason, TagReject::none);
}

TEST_F(TagVerifier, RejectsUnknownIdentityBeforeAnyMac) {
  const auto now = dom_.at(kEpoch, kMid);
  auto t = mint(99999, now);  // valid MAC under its own derived key, but not in the ring
  const auto before = verifier_->mac_count();
  EXPECT_EQ(verify(t, now).reason, TagReject::tag_unknown_identity);
  EXPECT_EQ(verifier_->mac_count(), before);
}

TEST_F(TagVerifier, RejectsReservedIdentity) {
  const auto now = dom_.at(kEpoch, kMid);
  auto t = mint(1000, now);
  t.body[4] = t.body[5] = t.body[6] = 0;
  t.body[7] = 2;  // "unauthenticated"
  EXPECT_EQ(verify(t, now).reason, TagReject::tag_bad_identity);
}

TEST_F(TagVerifier, RejectsStaleKeyGeneration) {
  const auto now = dom_.at(kEpoch, kMid);
  auto t = test::mint_packet(*minter_, dom_.key(1013, kEpoch, Alg::aes256_cmac, 1), now,
                             dom_.policy, test::ipv4_packet(17, 10));
  EXPECT_EQ(verify(t, now).reason, TagReject::tag_stale_generation);
}

TEST_F(TagVerifier, RejectsAes128WhenOnlyAes256IsAccepted) {
  Domain strict(8, false);
  auto ring = strict.ring(kEpoch);
  const auto now = strict.at(kEpoch, kMid);
  auto t = test::mint_packet(*minter_, strict.key(1000, kEpoch, Alg::aes128_cmac), now,
                             strict.policy, test::ipv4_packet(17, 10));
  VerifyInput in = t.input();
  VerifyResult r;
  verifier_->verify_burst(*ring, now, std::span(&in, 1), std::span(&r, 1));
  EXPECT_EQ(r.reason, TagReject::tag_alg_not_allowed);
}

TEST_F(TagVerifier, RejectsCoveredL4LongerThanTheCap) {
  const auto now = dom_.at(kEpoch, kMid);
  Tagged t;
  t.inner_ip = test::ipv4_packet(17, kMaxCoveredL4Len);  // L4 = 8 + cap bytes
  TagFields f;
  f.timestamp_ns = tag_timestamp(dom_.policy, kEpoch, now);
  Tag tag;
  InnerView v = test::view_of(t.inner_ip);
  EXPECT_EQ(minter_->mint(dom_.key(1000, kEpoch, Alg::aes256_cmac), f, v, tag),
            TagReject::tag_too_long);
  tag.fields = f;
  tag.fields.identity = 1000;
  tag.fields.epoch = static_cast<std::uint8_t>(kEpoch);
  encode_tag_body(tag, t.body);
  EXPECT_EQ(verify(t, now).reason, TagReject::tag_too_long);
}

TEST_F(TagVerifier, RejectsEpochWhoseKeyIsNotLoaded) {
  // Ring holding only e: a correct tag of e+1 just after the boundary finds no key.
  std::vector<EpochSecret> s{dom_.sv(kEpoch)};
  auto ring = KeyRing::build(dom_.policy, s, dom_.ids);
  ASSERT_TRUE(ring);
  const auto now = dom_.at(kEpoch + 1, kNsPerSec / 10);
  auto t = mint(1014, now, Alg::aes256_cmac, Coverage::full, kEpoch + 1);
  VerifyInput in = t.input();
  VerifyResult r;
  verifier_->verify_burst(**ring, now, std::span(&in, 1), std::span(&r, 1));
  EXPECT_EQ(r.reason, TagReject::tag_no_key);
}

TEST_F(TagVerifier, EveryBadInputCostsAtMostOneMac) {
  const auto now = dom_.at(kEpoch, kMid);
  std::vector<Tagged> ts;
  ts.push_back(mint(99999, now));                                                   // unknown id
  ts.push_back(mint(1000, now - 5 * kNsPerSec));                                    // window
  ts.push_back(mint(1000, now, Alg::aes256_cmac, Coverage::full, kEpoch + 2));      // future
  ts.push_back(mint(1000, now, Alg::aes256_cmac, Coverage::hdr));                   // hdr
  ts.back().hdr_allowed = false;
  ts.push_back(mint(1000, now));
  ts.back().body[1] = 9;                                                            // alg
  ts.push_back(mint(1000, now));
  ts.back().body[20] ^= 1;                                                          // forged
  std::vector<VerifyInput> ins;
  for (auto& t : ts) ins.push_back(t.input());
  std::vector<VerifyResult> rs(ins.size());
  const auto before = verifier_->mac_count();
  verifier_->verify_burst(*ring_, now, ins, rs);
  EXPECT_EQ(verifier_->mac_count() - before, 1u);  // only the forged one reached the MAC
  EXPECT_EQ(rs[5].reason, TagReject::tag_forged_mac);
  for (std::size_t i = 0; i < 5; ++i) EXPECT_NE(rs[i].reason, TagReject::none);
}

TEST_F(TagVerifier, BurstOf32DistinctIdentitiesGivesPerPacketVerdicts) {
  const auto now = dom_.at(kEpoch, kMid);
  std::vector<Tagged> ts;
  for (std::uint32_t i = 0; i < 40; ++i) {
    ts.push_back(mint(1000 + i, now, i % 2 ? Alg::aes128_cmac : Alg::aes256_cmac,
                      Coverage::full, kEpoch, 10 + 37 * i));
    if (i % 3 == 0) ts.back().inner_ip.back() ^= 0x80;
  }
  std::vector<VerifyInput> ins;
  for (auto& t : ts) ins.push_back(t.input());
  std::vector<VerifyResult> rs(ins.size());
  ASSERT_EQ(verifier_->verify_burst(*ring_, now, ins, rs), kMaxVerifyBurst);  // at most 32
  for (std::size_t i = 0; i < kMaxVerifyBurst; ++i) {
    EXPECT_EQ(rs[i].reason, i % 3 == 0 ? TagReject::tag_forged_mac : TagReject::none) << i;
    EXPECT_EQ(rs[i].identity, 1000 + i);
  }
  EXPECT_EQ(verifier_->verify_burst(*ring_, now, std::span(ins).first(3), rs), 3u);
}

// Epoch boundaries, driven by the injected clock.
TEST_F(TagVerifier, AcceptsPreviousEpochOnlyDuringGrace) {
  const auto boundary = dom_.at(kEpoch + 1, 0);
  const auto grace = dom_.policy.grace_ns;
  auto ring = dom_.ring(kEpoch + 1);
  auto old_at = [&](std::int64_t sent) {
    return test::mint_packet(*minter_, dom_.key(1020, kEpoch, Alg::aes256_cmac), sent,
                             dom_.policy, test::ipv4_packet(17, 10));
  };
  auto run = [&](const Tagged& t, std::int64_t now) {
    VerifyInput in = t.input();
    VerifyResult r;
    verifier_->verify_burst(*ring, now, std::span(&in, 1), std::span(&r, 1));
    return r.reason;
  };
  EXPECT_EQ(run(old_at(boundary - 1), boundary + kNsPerSec / 2), TagReject::none);
  EXPECT_EQ(run(old_at(boundary + grace - kNsPerSec / 2), boundary + grace - 1), TagReject::none);
  EXPECT_EQ(run(old_at(boundary + grace - kNsPerSec / 2), boundary + grace),
            TagReject::tag_expired_epoch);
}

TEST_F(TagVerifier, AcceptsNextEpochOnlyFromShortlyBeforeItsStart) {
  const auto next = dom_.at(kEpoch + 1, 0);
  const auto ahead = dom_.policy.accept_ahead_ns;
  auto t = test::mint_packet(*minter_, dom_.key(1021, kEpoch + 1, Alg::aes256_cmac), next,
                             dom_.policy, test::ipv4_packet(17, 10));
  EXPECT_EQ(verify(t, next - ahead).reason, TagReject::none);
  EXPECT_EQ(verify(t, next - ahead - 1).reason, TagReject::tag_future_epoch);
  EXPECT_EQ(verify(t, next).reason, TagReject::none);
}

TEST_F(TagVerifier, KeepsWorkingWhenTheClockCrossesIntoTheNextEpoch) {
  // The ring built during e holds e+1: after the boundary, before a new ring arrives, e+1 tags
  // verify and the 8-bit epoch field resolves against the new current epoch.
  const auto now = dom_.at(kEpoch + 1, 3 * kNsPerSec);
  auto t = mint(1022, now, Alg::aes128_cmac, Coverage::full, kEpoch + 1);
  auto r = verify(t, now);
  EXPECT_EQ(r.reason, TagReject::none);
  EXPECT_EQ(r.epoch, kEpoch + 1);
}

TEST(TagVerifierEpochWrap, EightBitEpochFieldWrapsAcross255To256) {
  Domain dom;
  auto m = Minter::create();
  auto v = Verifier::create();
  ASSERT_TRUE(m && v);
  auto ring = dom.ring(256);  // epochs 255, 256, 257
  const auto now = dom.at(256, 2 * kNsPerSec);
  for (std::uint64_t e : {255u, 256u}) {
    auto t = test::mint_packet(*m, dom.key(1000, e, Alg::aes256_cmac), now - kNsPerSec / 2,
                               dom.policy, test::ipv4_packet(17, 10));
    VerifyInput in = t.input();
    VerifyResult r;
    v->verify_burst(*ring, now, std::span(&in, 1), std::span(&r, 1));
    EXPECT_EQ(r.reason, TagReject::none) << e;
    EXPECT_EQ(r.epoch, e);
  }
}

TEST(KeyRingBuild, RefusesBadInputsWithActionableMessages) {
  Domain dom;
  std::vector<EpochSecret> s{dom.sv(1), dom.sv(2)};
  auto msg = [](const auto& r) { return r ? std::string("ok") : r.error().message; };
  std::vector<std::uint32_t> dup{1000, 1001, 1000};
  EXPECT_NE(msg(KeyRing::build(dom.policy, s, dup)).find("listed twice"), std::string::npos);
  std::vector<std::uint32_t> reserved{1000, 2};
  EXPECT_NE(msg(KeyRing::build(dom.policy, s, reserved)).find("reserved"), std::string::npos);
  std::vector<EpochSecret> four{dom.sv(1), dom.sv(2), dom.sv(3), dom.sv(4)};
  EXPECT_NE(msg(KeyRing::build(dom.policy, four, dom.ids)).find("at most 3"), std::string::npos);
  std::vector<EpochSecret> twice{dom.sv(1), dom.sv(1)};
  EXPECT_NE(msg(KeyRing::build(dom.policy, twice, dom.ids)).find("given twice"), std::string::npos);
  EpochPolicy p = dom.policy;
  p.time_window_ns = p.length_ns;
  EXPECT_NE(msg(KeyRing::build(p, s, dom.ids)).find("half the epoch"), std::string::npos);
}

// Randomized cross-check: tags minted by OpenSSL's CMAC verify through IPsec-MB, and any flipped
// bit fails; raw IPsec-MB CMAC equals OpenSSL CMAC on random keys and lengths.
TEST(CrossCheck, IpsecMbVerifierAgreesWithOpenSslMinterOnThousandsOfTags) {
  Domain dom(256);
  auto m = Minter::create();
  auto v = Verifier::create();
  ASSERT_TRUE(m && v);
  auto ring = dom.ring(77);
  std::vector<IdentityKey> keys;
  for (std::uint32_t id : dom.ids)
    for (Alg a : {Alg::aes128_cmac, Alg::aes256_cmac}) keys.push_back(dom.key(id, 77, a));
  std::mt19937_64 rng(20261124);
  const auto now = dom.at(77, kMid);
  std::size_t accepted = 0, rejected = 0;
  for (int round = 0; round < 150; ++round) {
    std::vector<Tagged> ts;
    std::vector<bool> tampered;
    for (std::size_t lane = 0; lane < kMaxVerifyBurst; ++lane) {
      const auto& k = keys[rng() % keys.size()];
      const std::size_t payload = rng() % 1600;
      auto ip = rng() % 2 ? test::ipv4_packet(rng() % 2 ? 6 : 17, payload, static_cast<std::uint8_t>(rng()))
                          : test::ipv6_packet(rng() % 2 ? 6 : 17, payload, static_cast<std::uint8_t>(rng()));
      const Coverage cov = rng() % 4 ? Coverage::full : Coverage::hdr;
      const std::int64_t sent = now - static_cast<std::int64_t>(rng() % (dom.policy.time_window_ns));
      ts.push_back(test::mint_packet(*m, k, sent, dom.policy, std::move(ip), cov,
                                     static_cast<std::uint16_t>(lane)));
      const bool tamper = rng() % 4 == 0;
      tampered.push_back(tamper);
      if (tamper) {
        auto& t = ts.back();
        InnerView iv = test::view_of(t.inner_ip);
        const std::size_t covered = covered_l4_len(cov, iv.l4.size());
        const std::size_t l4_off = static_cast<std::size_t>(iv.l4.data() - t.inner_ip.data());
        if (covered && rng() % 2) t.inner_ip[l4_off + rng() % covered] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
        else t.body[16 + rng() % 16] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
      }
    }
    std::vector<VerifyInput> ins;
    for (auto& t : ts) ins.push_back(t.input());
    std::vector<VerifyResult> rs(ins.size());
    ASSERT_EQ(v->verify_burst(*ring, now, ins, rs), ins.size());
    for (std::size_t i = 0; i < rs.size(); ++i) {
      EXPECT_EQ(rs[i].reason, tampered[i] ? TagReject::tag_forged_mac : TagReject::none)
          << "round " << round << " lane " << i;
      (rs[i].reason == TagReject::none ? accepted : rejected)++;
    }
  }
  EXPECT_GT(accepted, 3000u);
  EXPECT_GT(rejected, 800u);
}

TEST(CrossCheck, RawIpsecMbCmacEqualsOpenSslCmacOnRandomKeysAndLengths) {
  auto mb = MbCmac::create();
  ASSERT_TRUE(mb);
  std::mt19937_64 rng(42);
  for (int round = 0; round < 200; ++round) {
    std::vector<std::vector<std::uint8_t>> keys(kMaxVerifyBurst), msgs(kMaxVerifyBurst);
    std::vector<CachedKey> cks(kMaxVerifyBurst);
    std::vector<std::array<std::uint8_t, 16>> got(kMaxVerifyBurst);
    std::vector<CmacJob> jobs;
    for (std::size_t i = 0; i < kMaxVerifyBurst; ++i) {
      keys[i].resize(rng() % 2 ? 16 : 32);
      for (auto& b : keys[i]) b = static_cast<std::uint8_t>(rng());
      msgs[i].resize(rng() % 700);
      for (auto& b : msgs[i]) b = static_cast<std::uint8_t>(rng());
      cks[i] = *expand_cmac_key(keys[i]);
      jobs.push_back(CmacJob{&cks[i], keys[i].size() == 16 ? Alg::aes128_cmac : Alg::aes256_cmac,
                             msgs[i], got[i].data()});
    }
    ASSERT_EQ(mb->compute(jobs), jobs.size());
    for (std::size_t i = 0; i < kMaxVerifyBurst; ++i) {
      std::array<std::uint8_t, 16> want{};
      ASSERT_TRUE(openssl_cmac(keys[i], msgs[i], want));
      ASSERT_EQ(test::to_hex(got[i]), test::to_hex(want)) << "round " << round << " lane " << i;
    }
  }
}

}  // namespace
}  // namespace zt::crypto
