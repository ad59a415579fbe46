// Known-answer tests: RFC 4493 / NIST SP 800-38B AES-CMAC through OpenSSL, through the IPsec-MB
// job path and through the own kernels (archs "aesni", "vaes256", "vaes512"), and our own tag vectors
// (tests/crypto/vectors/tags.json, computed by an independent Python implementation) through key
// derivation, minting, the codec and the verifier.
#include <gtest/gtest.h>

#include <arpa/inet.h>

#include <cstring>
#include <fstream>
#include <set>
#include <nlohmann/json.hpp>

#include "fixtures.hpp"
#include "zt/crypto/cached_key.hpp"
#include "zt/rules/drop_reason.hpp"

#ifndef ZT_CRYPTO_VECTORS
#error "ZT_CRYPTO_VECTORS must name tests/crypto/vectors/tags.json"
#endif

namespace zt::crypto {
namespace {

using test::from_hex;
using test::to_hex;

const char* kNistMsg =
    "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710";

struct CmacVector {
  const char* key;
  std::size_t msg_len;
  const char* mac;
};

// RFC 4493 §4 (AES-128) and NIST SP 800-38B appendix D.3 (AES-256).
const CmacVector kCmacVectors[] = {
    {"2b7e151628aed2a6abf7158809cf4f3c", 0, "bb1d6929e95937287fa37d129b756746"},
    {"2b7e151628aed2a6abf7158809cf4f3c", 16, "070a16b46b4d4144f79bdd9dd04a287c"},
    {"2b7e151628aed2a6abf7158809cf4f3c", 40, "dfa66747de9ae63030ca32611497c827"},
    {"2b7e151628aed2a6abf7158809cf4f3c", 64, "51f0bebf7e3b9d92fc49741779363cfe"},
    {"603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", 0,
     "028962f61b7bf89efc6b551f4667d983"},
    {"603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", 16,
     "28a7023f452e8f82bd4bf28d8c37c35c"},
    {"603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", 40,
     "aaf3d8f1de5640c232f5b169b9c911e6"},
    {"603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", 64,
     "e1992190549f6ed5696a2c056c315410"},
};

TEST(CmacKnownAnswers, OpenSslMatchesRfc4493AndSp800_38b) {
  const auto msg = from_hex(kNistMsg);
  for (const auto& v : kCmacVectors) {
    std::array<std::uint8_t, 16> mac{};
    ASSERT_TRUE(openssl_cmac(from_hex(v.key), std::span(msg).first(v.msg_len), mac));
    EXPECT_EQ(to_hex(mac), v.mac) << v.key << " len " << v.msg_len;
  }
}

class CmacKnownAnswersImb : public ::testing::TestWithParam<const char*> {};

TEST_P(CmacKnownAnswersImb, IpsecMbJobPathMatchesRfc4493AndSp800_38b) {
  auto mb = MbCmac::create(GetParam());
  if (!mb) GTEST_SKIP() << mb.error().message;
  const auto msg = from_hex(kNistMsg);
  std::vector<CachedKey> keys;
  for (const auto& v : kCmacVectors) keys.push_back(*expand_cmac_key(from_hex(v.key)));
  std::array<std::array<std::uint8_t, 16>, std::size(kCmacVectors)> macs{};
  std::vector<CmacJob> jobs;
  for (std::size_t i = 0; i < std::size(kCmacVectors); ++i) {
    const auto& v = kCmacVectors[i];
    jobs.push_back(CmacJob{&keys[i], std::strlen(v.key) == 32 ? Alg::aes128_cmac : Alg::aes256_cmac,
                           std::span(msg).first(v.msg_len), macs[i].data()});
  }
  ASSERT_EQ(mb->compute(jobs), jobs.size());
  for (std::size_t i = 0; i < jobs.size(); ++i)
    EXPECT_EQ(to_hex(macs[i]), kCmacVectors[i].mac) << i << " arch " << mb->arch();
}

INSTANTIATE_TEST_SUITE_P(Archs, CmacKnownAnswersImb,
                         ::testing::Values("auto", "sse", "avx", "avx2", "avx512", "aesni",
                                           "vaes256", "vaes512"));

nlohmann::json load_vectors() {
  std::ifstream f(ZT_CRYPTO_VECTORS);
  EXPECT_TRUE(f.good()) << "cannot open " << ZT_CRYPTO_VECTORS;
  return nlohmann::json::parse(f);
}

TEST(TagVectors, FileHasVectorsForBothAlgorithmsAndCoverages) {
  auto j = load_vectors();
  std::set<std::string> seen;
  for (const auto& v : j["vectors"]) seen.insert(v["alg"].get<std::string>() + "/" + v["coverage"].get<std::string>());
  EXPECT_EQ(seen.size(), 4u);
}

TEST(TagVectors, KeysTagsAndPacketsMatchByteForByte) {
  auto j = load_vectors();
  auto minter = Minter::create();
  ASSERT_TRUE(minter);
  for (const auto& v : j["vectors"]) {
    SCOPED_TRACE(v["name"].get<std::string>());
    const auto master = from_hex(v["master"]);
    const std::uint64_t epoch = v["epoch"];
    const std::uint8_t gen = v["generation"];
    auto sv = derive_epoch_secret(master, v["domain"].get<std::string>(), epoch, gen);
    ASSERT_TRUE(sv);
    EXPECT_EQ(to_hex(sv->sv.bytes()), v["sv"]);
    const Alg alg = v["alg"] == "aes128-cmac" ? Alg::aes128_cmac : Alg::aes256_cmac;
    auto key = derive_identity_key(*sv, v["identity"], alg);
    ASSERT_TRUE(key);
    EXPECT_EQ(to_hex(key->bytes()), v["key"]);

    const auto inner_ip = from_hex(v["inner_ip"]);
    InnerView iv;
    ASSERT_EQ(parse_inner_ip(inner_ip, iv), PacketError::none);
    TagFields f;
    f.coverage = v["coverage"] == "full" ? Coverage::full : Coverage::hdr;
    f.timestamp_ns = v["timestamp_ns"];
    f.lane = v["lane"];
    Tag tag;
    ASSERT_EQ(minter->mint(*key, f, iv, tag), TagReject::none);
    std::array<std::uint8_t, kTagBodyLen> body{};
    encode_tag_body(tag, body);
    EXPECT_EQ(to_hex(body), v["tag_body"]);

    std::vector<std::uint8_t> mi(kMaxMacInputLen);
    const std::size_t n = build_mac_input(std::span(body).first<16>(), f.coverage, iv, mi);
    EXPECT_EQ(to_hex(std::span(mi).first(n)), v["mac_input"]);

    OuterParams o;
    o.ip_version = v["outer"]["ip_version"];
    const auto src = v["outer"]["src"].get<std::string>();
    const auto dst = v["outer"]["dst"].get<std::string>();
    ASSERT_EQ(inet_pton(o.ip_version == 4 ? AF_INET : AF_INET6, src.c_str(), o.src.data()), 1);
    ASSERT_EQ(inet_pton(o.ip_version == 4 ? AF_INET : AF_INET6, dst.c_str(), o.dst.data()), 1);
    o.src_port = v["outer"]["src_port"];
    o.ttl = v["outer"]["ttl"];
    o.vni = v["outer"]["vni"];
    std::vector<std::uint8_t> pkt;
    ASSERT_EQ(build_geneve_packet(o, tag, inner_ip, pkt), PacketError::none);
    EXPECT_EQ(to_hex(pkt), v["geneve_packet"]);
  }
}

// The Minter keys its CMAC context once per key and only re-initialises it for the next packet
// of the same key: minting every vector twice in a row (cached key) and the list backwards (a
// new key each time, keys coming back) must give the vector's MAC every time.
TEST(TagVectors, MinterKeyCacheNeverMixesKeys) {
  auto j = load_vectors();
  auto minter = Minter::create();
  ASSERT_TRUE(minter);
  std::vector<nlohmann::json> vs(j["vectors"].begin(), j["vectors"].end());
  ASSERT_GE(vs.size(), 2U);
  for (int pass = 0; pass < 2; ++pass) {
    for (std::size_t k = 0; k < vs.size(); ++k) {
      const auto& v = pass == 0 ? vs[k] : vs[vs.size() - 1 - k];
      SCOPED_TRACE(v["name"].get<std::string>());
      auto sv = derive_epoch_secret(from_hex(v["master"]), v["domain"].get<std::string>(), v["epoch"],
                                    v["generation"]);
      ASSERT_TRUE(sv);
      auto key = derive_identity_key(*sv, v["identity"],
                                     v["alg"] == "aes128-cmac" ? Alg::aes128_cmac : Alg::aes256_cmac);
      ASSERT_TRUE(key);
      const auto inner_ip = from_hex(v["inner_ip"]);
      InnerView iv;
      ASSERT_EQ(parse_inner_ip(inner_ip, iv), PacketError::none);
      TagFields f;
      f.coverage = v["coverage"] == "full" ? Coverage::full : Coverage::hdr;
      f.timestamp_ns = v["timestamp_ns"];
      f.lane = v["lane"];
      for (int twice = 0; twice < 2; ++twice) {
        Tag tag;
        ASSERT_EQ(minter->mint(*key, f, iv, tag), TagReject::none);
        std::array<std::uint8_t, kTagBodyLen> body{};
        encode_tag_body(tag, body);
        EXPECT_EQ(to_hex(body), v["tag_body"]);
      }
    }
  }
}

TEST(TagVectors, VerifierAcceptsEveryVectorTagAtItsTime) {
  auto j = load_vectors();
  auto ver = Verifier::create();
  ASSERT_TRUE(ver);
  for (const auto& v : j["vectors"]) {
    SCOPED_TRACE(v["name"].get<std::string>());
    const auto master = from_hex(v["master"]);
    const std::uint64_t epoch = v["epoch"];
    auto sv = derive_epoch_secret(master, v["domain"].get<std::string>(), epoch, v["generation"]);
    ASSERT_TRUE(sv);
    EpochPolicy pol;  // origin 0, 15-minute epochs
    std::vector<EpochSecret> svs{*sv};
    std::vector<std::uint32_t> ids{v["identity"].get<std::uint32_t>()};
    auto ring = KeyRing::build(pol, svs, ids);
    ASSERT_TRUE(ring) << ring.error().message;
    const auto pkt = from_hex(v["geneve_packet"]);
    GeneveView g;
    ASSERT_EQ(parse_geneve_packet(pkt, g), PacketError::none);
    VerifyInput in;
    in.tag = g.tag_body;
    ASSERT_EQ(parse_inner_ip(g.inner, in.inner), PacketError::none);
    in.hdr_allowed = true;
    const std::int64_t now = (*ring)->epoch_start(epoch) + v["timestamp_ns"].get<std::int64_t>();
    VerifyResult r;
    ASSERT_EQ(ver->verify_burst(**ring, now, std::span(&in, 1), std::span(&r, 1)), 1u);
    EXPECT_EQ(r.reason, TagReject::none) << to_string(r.reason);
    EXPECT_EQ(r.identity, v["identity"].get<std::uint32_t>());
    EXPECT_EQ(r.epoch, epoch);
  }
}

TEST(KeyDerivation, EpochSecretDependsOnEveryInput) {
  std::vector<std::uint8_t> m(32, 7);
  auto base = derive_epoch_secret(m, "a.example", 10, 0);
  ASSERT_TRUE(base);
  auto differs = [&](const Result<EpochSecret>& o) {
    return o && to_hex(o->sv.bytes()) != to_hex(base->sv.bytes());
  };
  EXPECT_TRUE(differs(derive_epoch_secret(m, "a.example", 11, 0)));
  EXPECT_TRUE(differs(derive_epoch_secret(m, "b.example", 10, 0)));
  EXPECT_TRUE(differs(derive_epoch_secret(m, "a.example", 10, 1)));
  m[0] ^= 1;
  EXPECT_TRUE(differs(derive_epoch_secret(m, "a.example", 10, 0)));
}

TEST(KeyDerivation, RefusesShortMasterSecretWithActionableMessage) {
  std::vector<std::uint8_t> m(16, 7);
  auto r = derive_epoch_secret(m, "a.example", 1);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("at least 32"), std::string::npos) << r.error().message;
}

TEST(KeyDerivation, RefusesReservedIdentities) {
  std::vector<std::uint8_t> m(32, 7);
  auto sv = derive_epoch_secret(m, "a.example", 1);
  for (std::uint32_t id : {0u, 1u, 2u, 255u}) EXPECT_FALSE(derive_identity_key(*sv, id, Alg::aes256_cmac));
  EXPECT_TRUE(derive_identity_key(*sv, 256, Alg::aes256_cmac));
}

TEST(KeyDerivation, Aes128AndAes256KeysOfOneIdentityAreUnrelated) {
  std::vector<std::uint8_t> m(32, 7);
  auto sv = derive_epoch_secret(m, "a.example", 1);
  auto k128 = derive_identity_key(*sv, 4000, Alg::aes128_cmac);
  auto k256 = derive_identity_key(*sv, 4000, Alg::aes256_cmac);
  ASSERT_TRUE(k128 && k256);
  EXPECT_EQ(k128->bytes().size(), 16u);
  EXPECT_EQ(k256->bytes().size(), 32u);
  EXPECT_NE(to_hex(k128->bytes()), to_hex(k256->bytes().first(16)));
}

TEST(DropReasons, EveryTagRejectHasADropReasonOfTheSameName) {
  for (std::size_t i = 1; i < kTagRejectCount; ++i) {
    const auto name = to_string(static_cast<TagReject>(i));
    EXPECT_TRUE(rules::drop_reason_from_string(name).has_value()) << name;
  }
}

}  // namespace
}  // namespace zt::crypto
