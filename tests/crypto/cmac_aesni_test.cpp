// ztgate's own multi-lane AES-NI CMAC (crypto/README.md "Own AES-NI CMAC"; the Verifier tests
// run once per own kernel the CPU has: aesni, vaes256, vaes512): equal to OpenSSL's
// CMAC for every message length 0..2100 in bursts that mix algorithms, lengths and keys; the
// Verifier's AES-NI path, IPsec-MB path and a mix of both (cut-offs across the burst) give the
// same verdicts on tags minted by OpenSSL; every flipped bit of what the MAC covers fails on the
// AES-NI path. RFC 4493 / SP 800-38B vectors: vectors_test.cpp (arch "aesni").
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "fixtures.hpp"
#include "zt/crypto/cached_key.hpp"

namespace zt::crypto {
namespace {

using test::Domain;
using test::Tagged;

constexpr std::uint64_t kEpoch = 4242;
constexpr std::int64_t kMid = 7 * 60 * kNsPerSec;

bool aesni_here() { return MbCmac::create("aesni").has_value(); }
// The own kernels this CPU runs (the Verifier's tests run once per kernel).
std::vector<const char*> kernels_here() {
  std::vector<const char*> ks;
  for (const char* k : {"aesni", "vaes256", "vaes512"})
    if (MbCmac::create(k)) ks.push_back(k);
  return ks;
}

TEST(AesniCmac, RefusesOnlyWhereTheCpuLacksAesNi) {
  auto a = MbCmac::create("aesni");
  if (!a) {
    EXPECT_NE(a.error().message.find("AES-NI"), std::string::npos) << a.error().message;
    GTEST_SKIP() << a.error().message;
  }
  EXPECT_EQ(a->arch(), "aesni");
}

// Every length 0..2100 once per algorithm, shuffled into bursts of random size 1..32 (so groups
// of 1..8 lanes, sorted and split, mixed lengths and algorithms), a fresh random key per message.
TEST(AesniCmac, EqualsOpenSslForEveryLength0To2100InMixedBursts) {
  auto mb = MbCmac::create("aesni");
  if (!mb) GTEST_SKIP() << mb.error().message;
  constexpr std::size_t kMaxLen = 2100;
  std::mt19937_64 rng(20261124);
  const std::vector<test::CmacCase> cases = test::shuffled_cmac_cases(kMaxLen, rng);

  std::size_t checked = 0;
  for (std::size_t at = 0; at < cases.size();) {
    const std::size_t n = std::min<std::size_t>(1 + rng() % kMaxVerifyBurst, cases.size() - at);
    std::vector<std::vector<std::uint8_t>> keys(n), msgs(n);
    std::vector<CachedKey> cks(n);
    std::vector<std::array<std::uint8_t, 16>> got(n);
    std::vector<CmacJob> jobs;
    for (std::size_t i = 0; i < n; ++i) {
      const test::CmacCase& c = cases[at + i];
      keys[i].resize(key_len(c.alg));
      for (auto& b : keys[i]) b = static_cast<std::uint8_t>(rng());
      msgs[i].resize(c.len);  // exactly sized: ASan catches a read past the message
      for (auto& b : msgs[i]) b = static_cast<std::uint8_t>(rng());
      auto ck = expand_cmac_key(keys[i]);
      ASSERT_TRUE(ck) << ck.error().message;
      cks[i] = *ck;
      jobs.push_back(CmacJob{&cks[i], c.alg, msgs[i], got[i].data()});
    }
    ASSERT_EQ(mb->compute(jobs), n);
    for (std::size_t i = 0; i < n; ++i) {
      std::array<std::uint8_t, 16> want{};
      ASSERT_TRUE(openssl_cmac(keys[i], msgs[i], want));
      ASSERT_EQ(test::to_hex(got[i]), test::to_hex(want))
          << to_string(cases[at + i].alg) << " len " << cases[at + i].len << " burst of " << n;
      ++checked;
    }
    at += n;
  }
  EXPECT_EQ(checked, 2 * (kMaxLen + 1));
}

// One key, one message, many lanes: equal inputs give equal MACs whatever lane they sit in, and
// a one-bit change of the message or the key changes the MAC.
TEST(AesniCmac, SameInputSameMacInEveryLaneAndOneBitChangesIt) {
  auto mb = MbCmac::create("aesni");
  if (!mb) GTEST_SKIP() << mb.error().message;
  std::vector<std::uint8_t> key(32, 0x11), key2 = key;
  key2[31] ^= 1;
  const CachedKey ck = *expand_cmac_key(key), ck2 = *expand_cmac_key(key2);
  std::vector<std::uint8_t> msg(48, 0x22), msg2 = msg;
  msg2[47] ^= 0x80;
  std::array<std::array<std::uint8_t, 16>, 32> got{};
  std::vector<CmacJob> jobs;
  for (std::size_t i = 0; i < 30; ++i) jobs.push_back(CmacJob{&ck, Alg::aes256_cmac, msg, got[i].data()});
  jobs.push_back(CmacJob{&ck, Alg::aes256_cmac, msg2, got[30].data()});
  jobs.push_back(CmacJob{&ck2, Alg::aes256_cmac, msg, got[31].data()});
  ASSERT_EQ(mb->compute(jobs), jobs.size());
  for (std::size_t i = 1; i < 30; ++i) EXPECT_EQ(got[i], got[0]) << "lane " << i;
  EXPECT_NE(got[30], got[0]);
  EXPECT_NE(got[31], got[0]);
}

// A packet whose L4 segment is exactly `l4_len` bytes (protocol 99: no L4 header to respect).
std::vector<std::uint8_t> raw_l4_packet(bool v6, std::size_t l4_len, std::uint8_t seed) {
  auto p = v6 ? test::ipv6_packet(17, 0, seed) : test::ipv4_packet(17, 0, seed);
  const std::size_t ih = v6 ? 40 : 20;
  p.resize(ih + l4_len);
  for (std::size_t i = 0; i < l4_len; ++i) p[ih + i] = static_cast<std::uint8_t>(seed * 7 + 31 * i);
  if (v6) {
    test::put16(p, 4, static_cast<std::uint16_t>(l4_len));
    p[6] = 99;
  } else {
    test::put16(p, 2, static_cast<std::uint16_t>(p.size()));
    p[9] = 99;
  }
  return p;
}

Verifier make_verifier(std::size_t aesni_max_len, std::string_view arch = "auto",
                       std::string_view kernel = "auto") {
  VerifierConfig c;
  c.arch = arch;
  c.aesni_max_len = aesni_max_len;
  c.kernel = kernel;
  auto v = Verifier::create(c);
  test::require(v.has_value(), "Verifier::create", v ? "" : v.error().message);
  return std::move(*v);
}

// Tags minted by OpenSSL with every L4 length 0..400 (MAC inputs 32..464 bytes, IPv4 and IPv6 (1..400),
// FULL and HDR, both algorithms, a quarter tampered) give the same verdicts through every routing
// of MAC inputs: all AES-NI, all IPsec-MB, and cut-offs that split each burst between the two.
TEST(AesniVerifier, SameVerdictsOnAesNiIpsecMbAndMixedPathsAcrossLengths) {
  if (!aesni_here()) GTEST_SKIP() << "no AES-NI/AVX on this CPU";
  Domain dom(64);
  auto m = Minter::create();
  ASSERT_TRUE(m);
  auto ring = dom.ring(kEpoch);
  const auto now = dom.at(kEpoch, kMid);
  std::mt19937_64 rng(5);
  std::vector<Tagged> ts;
  std::vector<bool> tampered;
  for (std::size_t l4 = 0; l4 <= 400; ++l4)
    for (bool v6 : {false, true}) {
      if (v6 && l4 == 0) continue;  // an IPv6 payload length of 0 is a jumbogram: refused
      const Alg alg = rng() % 2 ? Alg::aes128_cmac : Alg::aes256_cmac;
      const Coverage cov = rng() % 3 ? Coverage::full : Coverage::hdr;
      const std::uint32_t id = dom.ids[rng() % dom.ids.size()];
      ts.push_back(test::mint_packet(*m, dom.key(id, kEpoch, alg), now, dom.policy,
                                     raw_l4_packet(v6, l4, static_cast<std::uint8_t>(rng())), cov,
                                     static_cast<std::uint16_t>(ts.size())));
      const bool tamper = rng() % 4 == 0;
      tampered.push_back(tamper);
      if (tamper) {
        Tagged& t = ts.back();
        const std::size_t covered = covered_l4_len(cov, l4);
        const std::size_t ih = v6 ? 40 : 20;
        switch (rng() % 4) {
          case 0: t.body[16 + rng() % 16] ^= static_cast<std::uint8_t>(1u << (rng() % 8)); break;
          case 1: t.body[11 + rng() % 5] ^= static_cast<std::uint8_t>(1u << (rng() % 8)); break;
          case 2: t.inner_ip[v6 ? 8 + rng() % 32 : 12 + rng() % 8] ^= 0x10; break;  // src/dst
          default:
            if (covered) t.inner_ip[ih + rng() % covered] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
            else t.body[20] ^= 1;
        }
      }
    }
  std::vector<VerifyInput> ins;
  for (auto& t : ts) ins.push_back(t.input());
  std::shuffle(ins.begin(), ins.end(), std::mt19937_64(6));  // lengths mixed within each burst
  // Verdicts expected: recompute which inputs are tampered after the shuffle by their identity
  // of origin (the tag body pointer).
  std::vector<bool> tampered_in(ins.size());
  for (std::size_t i = 0; i < ins.size(); ++i)
    for (std::size_t j = 0; j < ts.size(); ++j)
      if (ins[i].tag.data() == ts[j].body.data()) tampered_in[i] = tampered[j];

  for (const char* kernel : kernels_here())
  for (std::size_t cut : {std::size_t{0}, std::size_t{48}, std::size_t{100}, std::size_t{256},
                          kDefaultAesniMaxLen}) {
    Verifier v = make_verifier(cut, "auto", kernel);
    if (cut) EXPECT_NE(v.arch().find(kernel), std::string_view::npos) << v.arch();
    else EXPECT_EQ(v.arch().find("aesni"), std::string_view::npos) << v.arch();
    std::vector<VerifyResult> rs(ins.size());
    for (std::size_t i = 0; i < ins.size(); i += kMaxVerifyBurst) {
      const std::size_t n = std::min(kMaxVerifyBurst, ins.size() - i);
      ASSERT_EQ(v.verify_burst(*ring, now, std::span(ins).subspan(i, n), std::span(rs).subspan(i, n)), n);
    }
    std::size_t accepted = 0;
    for (std::size_t i = 0; i < rs.size(); ++i) {
      EXPECT_EQ(rs[i].reason, tampered_in[i] ? TagReject::tag_forged_mac : TagReject::none)
          << kernel << " cut-off " << cut << " input " << i;
      accepted += rs[i].reason == TagReject::none;
    }
    EXPECT_GT(accepted, ins.size() / 2) << "cut-off " << cut;
    EXPECT_EQ(v.mac_count(), ins.size()) << "one MAC per input, whichever path";
  }
}

// On the AES-NI path, every bit of what the MAC covers matters: body bytes 0-15 (flips that a
// pre-check catches are refused by it), the MAC, source, destination, protocol, L4 length (by
// truncation) and every covered L4 bit; for L4 lengths around the block boundaries and around
// the Verifier's whole-message limit (an IPv4 MAC input of 128 bytes: L4 96 whole in the lane's
// head buffer, 97 read in place).
TEST(AesniVerifier, RejectsEveryFlippedCoveredBitOnTheAesNiPath) {
  if (!aesni_here()) GTEST_SKIP() << "no AES-NI/AVX on this CPU";
  Domain dom(8);
  auto m = Minter::create();
  ASSERT_TRUE(m);
  auto ring = dom.ring(kEpoch);
  const auto now = dom.at(kEpoch, kMid);
  for (const char* kernel : kernels_here()) {
  Verifier v = make_verifier(kDefaultAesniMaxLen, "auto", kernel);
  ASSERT_NE(v.arch().find(kernel), std::string_view::npos) << v.arch();
  for (std::size_t l4 : {0u, 1u, 15u, 16u, 17u, 33u, 80u, 95u, 96u, 97u, 112u}) {
    for (Coverage cov : {Coverage::full, Coverage::hdr})
      for (Alg alg : {Alg::aes128_cmac, Alg::aes256_cmac}) {
        const Tagged good = test::mint_packet(*m, dom.key(1003, kEpoch, alg), now, dom.policy,
                                              raw_l4_packet(false, l4, 9), cov);
        {
          VerifyResult r;
          const VerifyInput in = good.input();
          ASSERT_EQ(v.verify_burst(*ring, now, std::span(&in, 1), std::span(&r, 1)), 1u);
          ASSERT_EQ(r.reason, TagReject::none) << "l4 " << l4;
        }
        std::vector<Tagged> bad;
        std::vector<bool> must_be_mac;  // flips no pre-check can see
        for (std::size_t byte = 0; byte < 32; ++byte)
          for (int bit = 0; bit < 8; ++bit) {
            Tagged t = good;
            t.body[byte] ^= static_cast<std::uint8_t>(1 << bit);
            bad.push_back(t);
            must_be_mac.push_back(byte >= 11 || (byte == 0 && bit == 0));
          }
        std::vector<std::size_t> offs;
        for (std::size_t o = 12; o < 20; ++o) offs.push_back(o);  // src, dst
        offs.push_back(9);                                        // protocol
        for (std::size_t i = 0; i < covered_l4_len(cov, l4); ++i) offs.push_back(20 + i);
        for (std::size_t o : offs)
          for (int bit = 0; bit < 8; ++bit) {
            Tagged t = good;
            t.inner_ip[o] ^= static_cast<std::uint8_t>(1 << bit);
            bad.push_back(t);
            must_be_mac.push_back(true);
          }
        if (l4 > 0) {  // one L4 byte less: the bound length differs
          Tagged t = good;
          t.inner_ip.pop_back();
          test::put16(t.inner_ip, 2, static_cast<std::uint16_t>(t.inner_ip.size()));
          bad.push_back(t);
          must_be_mac.push_back(true);
        }
        std::vector<VerifyInput> ins;
        for (const auto& t : bad) {
          ins.push_back(t.input());
          ins.back().hdr_allowed = true;
        }
        std::vector<VerifyResult> rs(ins.size());
        for (std::size_t i = 0; i < ins.size(); i += kMaxVerifyBurst) {
          const std::size_t n = std::min(kMaxVerifyBurst, ins.size() - i);
          ASSERT_EQ(v.verify_burst(*ring, now, std::span(ins).subspan(i, n), std::span(rs).subspan(i, n)), n);
        }
        for (std::size_t i = 0; i < rs.size(); ++i) {
          EXPECT_NE(rs[i].reason, TagReject::none)
              << kernel << " l4 " << l4 << " flip " << i << " accepted";
          if (must_be_mac[i]) {
            EXPECT_EQ(rs[i].reason, TagReject::tag_forged_mac)
                << kernel << " l4 " << l4 << " flip " << i;
          }
        }
      }
  }
  }
}

// An unknown kernel name and a kernel this CPU cannot run are refused at creation, with the
// names to use instead.
TEST(AesniVerifier, RefusesAnUnknownKernelName) {
  VerifierConfig c;
  c.kernel = "vaes1024";
  auto v = Verifier::create(c);
  ASSERT_FALSE(v.has_value());
  EXPECT_NE(v.error().message.find("use auto, aesni, vaes256 or vaes512"), std::string::npos)
      << v.error().message;
}

}  // namespace
}  // namespace zt::crypto
