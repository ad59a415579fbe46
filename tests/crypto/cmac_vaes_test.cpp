// ztgate's VAES multi-lane CMAC kernels (crypto/README.md "VAES kernel"), vaes256 and vaes512:
// equal to OpenSSL's CMAC for every message length 0..300 of both algorithms, shuffled into
// bursts of every size 1..32, with a fresh key per lane, one key shared by every lane of an
// algorithm (the same CachedKey: the broadcast round-key path), and a few keys mixed (registers
// whose lanes share a key beside registers whose lanes differ); RFC 4493 / SP 800-38B vectors in
// a 32-lane burst on one shared key. The Verifier with each kernel: cmac_aesni_test.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <tuple>

#include "fixtures.hpp"
#include "zt/crypto/cached_key.hpp"

namespace zt::crypto {
namespace {

enum class Keys { distinct, shared, few };
const char* name(Keys k) {
  return k == Keys::distinct ? "distinct" : k == Keys::shared ? "shared" : "few";
}

class VaesCmac : public ::testing::TestWithParam<std::tuple<const char*, Keys>> {};

TEST_P(VaesCmac, EqualsOpenSslForEveryLength0To300InShuffledBurstsOfEverySize) {
  const auto [kernel, keys_mode] = GetParam();
  auto mb = MbCmac::create(kernel);
  if (!mb) GTEST_SKIP() << mb.error().message;
  ASSERT_EQ(mb->arch(), kernel);
  constexpr std::size_t kMaxLen = 300;
  std::mt19937_64 rng(20261124 + static_cast<int>(keys_mode));
  const std::vector<test::CmacCase> cases = test::shuffled_cmac_cases(kMaxLen, rng);

  // Key pools per burst: 1 per algorithm (shared), 3 (few), or one per lane (distinct).
  auto random_key = [&](Alg a) {
    std::vector<std::uint8_t> k(key_len(a));
    for (auto& b : k) b = static_cast<std::uint8_t>(rng());
    return k;
  };
  std::size_t checked = 0, bursts = 0;
  for (std::size_t at = 0; at < cases.size(); ++bursts) {
    // Every burst size 1..32 in turn (so every group width and register count), then again.
    const std::size_t n = std::min<std::size_t>(1 + bursts % kMaxVerifyBurst, cases.size() - at);
    const std::size_t pool = keys_mode == Keys::shared ? 1 : keys_mode == Keys::few ? 3 : n;
    std::vector<std::vector<std::uint8_t>> raw[2];
    std::vector<CachedKey> cks[2];
    for (int a = 0; a < 2; ++a) {
      for (std::size_t i = 0; i < pool; ++i) raw[a].push_back(random_key(static_cast<Alg>(a)));
      for (const auto& k : raw[a]) {
        auto ck = expand_cmac_key(k);
        ASSERT_TRUE(ck) << ck.error().message;
        cks[a].push_back(*ck);
      }
    }
    std::vector<std::vector<std::uint8_t>> msgs(n);
    std::vector<std::size_t> key_of(n);
    std::vector<std::array<std::uint8_t, 16>> got(n);
    std::vector<CmacJob> jobs;
    for (std::size_t i = 0; i < n; ++i) {
      const test::CmacCase& c = cases[at + i];
      const auto a = static_cast<std::size_t>(c.alg);
      key_of[i] = keys_mode == Keys::distinct ? i : rng() % pool;
      msgs[i].resize(c.len);  // exactly sized: ASan catches a read past the message
      for (auto& b : msgs[i]) b = static_cast<std::uint8_t>(rng());
      jobs.push_back(CmacJob{&cks[a][key_of[i]], c.alg, msgs[i], got[i].data()});
    }
    ASSERT_EQ(mb->compute(jobs), n);
    for (std::size_t i = 0; i < n; ++i) {
      const test::CmacCase& c = cases[at + i];
      std::array<std::uint8_t, 16> want{};
      ASSERT_TRUE(openssl_cmac(raw[static_cast<std::size_t>(c.alg)][key_of[i]], msgs[i], want));
      ASSERT_EQ(test::to_hex(got[i]), test::to_hex(want))
          << kernel << " " << name(keys_mode) << " " << to_string(c.alg) << " len " << c.len
          << " lane " << i << " of " << n;
      ++checked;
    }
    at += n;
  }
  EXPECT_EQ(checked, 2 * (kMaxLen + 1));
}

INSTANTIATE_TEST_SUITE_P(Kernels, VaesCmac,
                         ::testing::Combine(::testing::Values("vaes256", "vaes512", "aesni"),
                                            ::testing::Values(Keys::distinct, Keys::shared,
                                                              Keys::few)));

// RFC 4493 (AES-128) and SP 800-38B (AES-256) vectors, each repeated 4 times in one 32-lane
// call whose lanes of one algorithm all point at the same CachedKey.
TEST(VaesCmacVectors, Rfc4493AndSp800_38bOnOneSharedKeyIn32Lanes) {
  const std::string msg_hex =
      "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
      "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710";
  struct V {
    std::size_t len;
    const char* mac128;
    const char* mac256;
  };
  const V vs[] = {{0, "bb1d6929e95937287fa37d129b756746", "028962f61b7bf89efc6b551f4667d983"},
                  {16, "070a16b46b4d4144f79bdd9dd04a287c", "28a7023f452e8f82bd4bf28d8c37c35c"},
                  {40, "dfa66747de9ae63030ca32611497c827", "aaf3d8f1de5640c232f5b169b9c911e6"},
                  {64, "51f0bebf7e3b9d92fc49741779363cfe", "e1992190549f6ed5696a2c056c315410"}};
  const auto msg = test::from_hex(msg_hex);
  const CachedKey k128 = *expand_cmac_key(test::from_hex("2b7e151628aed2a6abf7158809cf4f3c"));
  const CachedKey k256 = *expand_cmac_key(test::from_hex(
      "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4"));
  for (const char* kernel : {"vaes256", "vaes512", "aesni"}) {
    auto mb = MbCmac::create(kernel);
    if (!mb) {
      std::printf("skipped %s: %s\n", kernel, mb.error().message.c_str());
      continue;
    }
    std::array<std::array<std::uint8_t, 16>, 32> got{};
    std::vector<CmacJob> jobs;
    std::vector<std::string> want;
    for (std::size_t rep = 0; rep < 4; ++rep)
      for (const V& v : vs) {
        jobs.push_back(CmacJob{&k128, Alg::aes128_cmac, std::span(msg).first(v.len),
                               got[jobs.size()].data()});
        want.push_back(v.mac128);
        jobs.push_back(CmacJob{&k256, Alg::aes256_cmac, std::span(msg).first(v.len),
                               got[jobs.size()].data()});
        want.push_back(v.mac256);
      }
    ASSERT_EQ(mb->compute(jobs), jobs.size());
    for (std::size_t i = 0; i < jobs.size(); ++i)
      EXPECT_EQ(test::to_hex(got[i]), want[i]) << kernel << " lane " << i;
  }
}

}  // namespace
}  // namespace zt::crypto
