// The appliance sync client's verdict on pushes: accept, refuse rollback, tampering, wrong keys,
// an invalid policy; persistence of the last good bundle and of the highest accepted revision.
#include <gtest/gtest.h>

#include "fixtures.hpp"
#include "zt/controlplane/client.hpp"
#include "zt/rules/snapshot.hpp"

namespace zt::cp {
namespace {

using test::TempDir;

struct Client : ::testing::Test {
  TempDir root;
  CertificateAuthority ca = *CertificateAuthority::create("ztgate.local");
  BundleSigner signer{*generate_ed25519()};
  PreSharedSecret psk = *PreSharedSecret::from_bytes(std::vector<std::uint8_t>(32, 0xaa));
  const std::string uri = "spiffe://ztgate.local/appliance/gw1";
  std::int64_t now = ::time(nullptr);
  ClientConfig cfg;

  void SetUp() override {
    cfg.state_dir = root.path() / "gw1";
    cfg.psk_file = root.path() / "psk";
    test::write(cfg.psk_file, std::string(64, 'a') + "\n", 0600);
    test::enrol_offline(ca, *signer.public_pem(), cfg.state_dir, "gw1");
  }
  std::string push(std::uint64_t rev, const char* rules = test::kAllowRules, const char* tests = test::kAllowTests) {
    TempDir pol;
    test::write_policy(pol.path(), rules, tests);
    auto p = test::make_push(test::signed_bundle(signer, pol.path(), rev, "ztgate.local", now + 3600), rev, psk, uri,
                             "ztgate.local");
    return p.SerializeAsString();
  }
};

TEST_F(Client, AcceptsAGenuinePushAndPublishesPolicyAndKeysTogether) {
  auto c = SyncClient::open(cfg);
  ASSERT_TRUE(c.has_value()) << c.error().message;
  std::optional<Update> published;
  (*c)->set_publisher([&](const Update& u) -> Result<void> {
    published = u;
    return {};
  });
  auto o = (*c)->handle_push(push(3), now);
  ASSERT_TRUE(o.accepted) << o.message;
  ASSERT_TRUE(published.has_value());
  EXPECT_EQ(published->revision, 3u);
  EXPECT_EQ(published->snapshot->revision(), 3u);
  EXPECT_TRUE(published->keys->has_epoch(1000));
  EXPECT_TRUE(published->keys->has_epoch(1001));
  EXPECT_EQ(published->keys->identity_count(), 2u);
  EXPECT_EQ((*c)->highest_accepted(), 3u);
}

TEST_F(Client, RefusesAnOlderRevisionReplayedAfterANewerOne) {
  auto c = SyncClient::open(cfg);
  const std::string old_push = push(4);
  ASSERT_TRUE((*c)->handle_push(old_push, now).accepted);
  ASSERT_TRUE((*c)->handle_push(push(5, test::kDenySshRules, test::kDenySshTests), now).accepted);
  auto o = (*c)->handle_push(old_push, now);
  EXPECT_FALSE(o.accepted);
  EXPECT_EQ(o.nack_code, pb::NACK_CODE_ROLLBACK);
  EXPECT_EQ((*c)->current()->revision, 5u);

  // Also after a restart: the highest accepted revision is persisted.
  auto again = SyncClient::open(cfg);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ((*again)->highest_accepted(), 5u);
  EXPECT_EQ((*again)->handle_push(old_push, now).nack_code, pb::NACK_CODE_ROLLBACK);
}

TEST_F(Client, RefusesATamperedBundleAndKeepsTheOldPolicy) {
  auto c = SyncClient::open(cfg);
  ASSERT_TRUE((*c)->handle_push(push(1), now).accepted);
  pb::Push p;
  p.ParseFromString(push(2, test::kDenySshRules, test::kDenySshTests));
  std::string b = p.bundle().bundle();
  auto pos = b.find("action: deny");
  ASSERT_NE(pos, std::string::npos);
  b.replace(pos, 12, "action: allo");  // same length, different meaning
  p.mutable_bundle()->set_bundle(b);
  auto o = (*c)->handle_push(p.SerializeAsString(), now);
  EXPECT_FALSE(o.accepted);
  EXPECT_EQ(o.nack_code, pb::NACK_CODE_BAD_SIGNATURE);
  EXPECT_EQ((*c)->current()->revision, 1u);
}

TEST_F(Client, RefusesKeysWrappedUnderAnotherPreSharedSecret) {
  test::write(cfg.psk_file, std::string(64, 'b') + "\n", 0600);
  auto c = SyncClient::open(cfg);
  auto o = (*c)->handle_push(push(1), now);
  EXPECT_FALSE(o.accepted);
  EXPECT_EQ(o.nack_code, pb::NACK_CODE_KEY_UNWRAP_FAILED);
  EXPECT_NE(o.message.find("pre-shared secret"), std::string::npos) << o.message;
  EXPECT_FALSE((*c)->current().has_value());
}

TEST_F(Client, SignedButInvalidPolicyIsRefusedWithFileLineColumn) {
  auto c = SyncClient::open(cfg);
  auto o = (*c)->handle_push(push(1, "rules:\n  - {id: 100, from: {identities: [nobody]}, to: any, action: allow}\n", "tests: []\n"),
                             now);
  EXPECT_FALSE(o.accepted);
  EXPECT_EQ(o.nack_code, pb::NACK_CODE_INVALID_POLICY);
  EXPECT_TRUE(o.resource.starts_with("rules.yaml:2:")) << o.resource;
}

TEST_F(Client, DataplaneRefusalIsANackAndNothingIsPersisted) {
  auto c = SyncClient::open(cfg);
  (*c)->set_publisher([](const Update&) -> Result<void> { return fail("flow table resize failed"); });
  auto o = (*c)->handle_push(push(1), now);
  EXPECT_FALSE(o.accepted);
  EXPECT_EQ(o.nack_code, pb::NACK_CODE_PUBLISH_FAILED);
  EXPECT_EQ(o.message, "flow table resize failed");
  EXPECT_FALSE(std::filesystem::exists(cfg.state_dir / "last_good.push"));
}

TEST_F(Client, ReloadsTheLastGoodBundleAtStart) {
  {
    auto c = SyncClient::open(cfg);
    ASSERT_TRUE((*c)->handle_push(push(7), now).accepted);
  }
  auto c = SyncClient::open(cfg);
  ASSERT_TRUE(c.has_value());
  ASSERT_TRUE((*c)->current().has_value());
  EXPECT_EQ((*c)->current()->revision, 7u);
  EXPECT_TRUE((*c)->current()->snapshot->is_declared_identity(1001));
}

TEST_F(Client, UnenrolledStateDirectoryIsAClearError) {
  cfg.state_dir = root.path() / "nobody";
  auto c = SyncClient::open(cfg);
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().message.find("enrol first"), std::string::npos);
}

}  // namespace
}  // namespace zt::cp
