// Bundle signatures, digests, rollback refusal, and key wrapping under the pre-shared secret.
#include <gtest/gtest.h>

#include "fixtures.hpp"

namespace zt::cp {
namespace {

using test::TempDir;

struct Signed : ::testing::Test {
  TempDir dir;
  BundleSigner signer{*generate_ed25519()};
  BundleVerifier verifier = *BundleVerifier::from_public_pem(*signer.public_pem(), "ztgate.local");
  std::int64_t now = ::time(nullptr);
  void SetUp() override { test::write_policy(dir.path(), test::kAllowRules, test::kAllowTests); }
  pb::SignedBundle bundle(std::uint64_t rev, std::string domain = "ztgate.local") {
    return test::signed_bundle(signer, dir.path(), rev, domain, now + 3600);
  }
};

TEST_F(Signed, GenuineBundleVerifies) {
  auto b = verifier.verify(bundle(5), 4, now);
  ASSERT_TRUE(b.has_value()) << b.error().message;
  EXPECT_EQ(b->revision(), 5u);
  EXPECT_EQ(b->files_size(), 3);
}

TEST_F(Signed, OneFlippedByteInTheBundleIsABadSignature) {
  auto sb = bundle(5);
  std::string bytes = sb.bundle();
  bytes[bytes.size() / 2] ^= 0x01;
  sb.set_bundle(bytes);
  auto r = verifier.verify(sb, 0, now);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, pb::NACK_CODE_BAD_SIGNATURE);
  EXPECT_EQ(r.error().resource, "bundle.signature");
}

TEST_F(Signed, BundleFromAnotherSigningKeyIsRefused) {
  BundleSigner other{*generate_ed25519()};
  auto r = verifier.verify(test::signed_bundle(other, dir.path(), 5, "ztgate.local", now + 3600), 0, now);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, pb::NACK_CODE_BAD_SIGNATURE);
  EXPECT_NE(r.error().message.find("trusts key"), std::string::npos);
}

TEST_F(Signed, WrongDigestIsRefusedEvenWithAValidSignature) {
  auto sb = bundle(5);
  sb.set_digest(std::string(64, '0'));
  auto r = verifier.verify(sb, 0, now);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, pb::NACK_CODE_DIGEST_MISMATCH);
}

TEST_F(Signed, OlderRevisionIsRefusedAsRollback) {
  auto r = verifier.verify(bundle(3), 4, now);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, pb::NACK_CODE_ROLLBACK);
  EXPECT_NE(r.error().message.find("revision 3 is older than revision 4"), std::string::npos) << r.error().message;
}

TEST_F(Signed, ExpiredBundleIsRefused) {
  auto r = verifier.verify(bundle(5), 0, now + 7200);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, pb::NACK_CODE_EXPIRED);
}

TEST_F(Signed, BundleOfAnotherDomainIsRefused) {
  auto r = verifier.verify(bundle(5, "other.local"), 0, now);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, pb::NACK_CODE_WRONG_DOMAIN);
}

TEST(Wrap, SecretDecryptsOnlyWithTheSamePreSharedSecretAndContext) {
  auto psk = *PreSharedSecret::from_bytes(std::vector<std::uint8_t>(32, 0x11));
  auto other = *PreSharedSecret::from_bytes(std::vector<std::uint8_t>(32, 0x22));
  const std::vector<std::uint8_t> secret(32, 0xAB);
  auto w = wrap_secret(psk, secret, "sv|spiffe://d/appliance/a|7|0");
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->ciphertext().find(std::string(32, '\xAB')), std::string::npos);

  auto ok = unwrap_secret(psk, *w, "sv|spiffe://d/appliance/a|7|0");
  ASSERT_TRUE(ok.has_value()) << ok.error().message;
  EXPECT_EQ(*ok, secret);

  auto wrong_psk = unwrap_secret(other, *w, "sv|spiffe://d/appliance/a|7|0");
  ASSERT_FALSE(wrong_psk.has_value());
  EXPECT_NE(wrong_psk.error().message.find("provision the same --psk-file"), std::string::npos);

  // Same PSK but claimed for another appliance or epoch: the GCM tag does not verify.
  EXPECT_FALSE(unwrap_secret(psk, *w, "sv|spiffe://d/appliance/b|7|0").has_value());
  EXPECT_FALSE(unwrap_secret(psk, *w, "sv|spiffe://d/appliance/a|8|0").has_value());

  // A PSK id forged to match does not help the holder of another secret.
  auto forged = *w;
  forged.set_psk_id(other.id());
  EXPECT_FALSE(unwrap_secret(other, forged, "sv|spiffe://d/appliance/a|7|0").has_value());
}

TEST(Wrap, ShortOrExposedPreSharedSecretFilesAreRefused) {
  TempDir d;
  test::write(d.path() / "short", "abcd\n", 0600);
  auto s = PreSharedSecret::load(d.path() / "short");
  ASSERT_FALSE(s.has_value());
  EXPECT_NE(s.error().message.find("at least 32"), std::string::npos) << s.error().message;
  test::write(d.path() / "open", test::psk_hex('a'), 0644);
  auto o = PreSharedSecret::load(d.path() / "open");
  ASSERT_FALSE(o.has_value());
  EXPECT_NE(o.error().message.find("chmod 600"), std::string::npos) << o.error().message;
  test::write(d.path() / "good", test::psk_hex('a'), 0600);
  EXPECT_TRUE(PreSharedSecret::load(d.path() / "good").has_value());
}

}  // namespace
}  // namespace zt::cp
