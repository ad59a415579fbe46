// Internal CA and mutual TLS 1.3 over real sockets on 127.0.0.1.
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "fixtures.hpp"

namespace zt::cp {
namespace {

using namespace std::chrono_literals;

struct Party {
  PkeyPtr key;
  std::string cert;
};

Party make_party(const CertificateAuthority& ca, const std::string& uri,
                 std::chrono::seconds lifetime = kDefaultCertLifetime, std::chrono::seconds offset = -60s) {
  Party p{*generate_ed25519(), {}};
  auto c = ca.issue(p.key.get(), uri, lifetime, offset);
  EXPECT_TRUE(c.has_value()) << c.error().message;
  p.cert = c->pem;
  return p;
}

TEST(CertificateAuthority, IssuesShortLivedCertificateWithOneUriSan) {
  auto ca = CertificateAuthority::create("ztgate.local");
  ASSERT_TRUE(ca.has_value());
  auto key = generate_ed25519();
  auto c = ca->issue(key->get(), "spiffe://ztgate.local/appliance/gw1");
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_EQ(*certificate_uri(c->pem), "spiffe://ztgate.local/appliance/gw1");
  const std::int64_t now = ::time(nullptr);
  EXPECT_NEAR(static_cast<double>(*certificate_not_after(c->pem)), static_cast<double>(now + 24 * 3600 - 60), 5.0);
}

TEST(CertificateAuthority, RefusesIdentitiesOutsideItsTrustDomain) {
  auto ca = CertificateAuthority::create("ztgate.local");
  auto key = generate_ed25519();
  auto c = ca->issue(key->get(), "spiffe://evil.example/appliance/gw1");
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().message.find("outside trust domain"), std::string::npos);
}

TEST(CertificateAuthority, IsCreatedOnceAndReloadedFromTheStateDirectory) {
  test::TempDir d;
  auto a = CertificateAuthority::load_or_create(d.path(), "ztgate.local");
  ASSERT_TRUE(a.has_value()) << a.error().message;
  auto b = CertificateAuthority::load_or_create(d.path(), "ztgate.local");
  ASSERT_TRUE(b.has_value()) << b.error().message;
  EXPECT_EQ(a->certificate_pem(), b->certificate_pem());
  EXPECT_EQ(std::filesystem::status(d.path() / "ca.key").permissions() & std::filesystem::perms::group_read,
            std::filesystem::perms::none);
}

// One server handshake in a thread; returns the server-side outcome, and what the client saw
// on its first read (TLS 1.3 clients learn of a refused certificate only then).
struct Outcome {
  Result<std::string> server;  // peer URI on success
  Result<void> client_connect;
  Result<void> client_read;
};

Outcome handshake(const TlsOptions& server_opts, const TlsOptions& client_opts) {
  auto l = Listener::open("127.0.0.1:0");
  EXPECT_TRUE(l.has_value());
  auto sctx = make_server_context(server_opts);
  EXPECT_TRUE(sctx.has_value()) << sctx.error().message;
  auto server = std::async(std::launch::async, [&]() -> Result<std::string> {
    int fd = l->accept(3000ms);
    if (fd < 0) return fail("no connection");
    auto c = TlsConnection::accept(fd, *sctx, 3000ms);
    if (!c) return std::unexpected(c.error());
    const unsigned char ok[1] = {'k'};
    (void)(*c)->write_all(ok);
    return (*c)->peer_uri();
  });
  Outcome o{fail("unset"), {}, {}};
  auto cctx = make_client_context(client_opts);
  EXPECT_TRUE(cctx.has_value()) << cctx.error().message;
  auto c = TlsConnection::connect("127.0.0.1", l->port(), *cctx, 3000ms);
  if (!c) {
    o.client_connect = std::unexpected(c.error());
  } else {
    std::uint8_t b[1];
    o.client_read = (*c)->read_exact(b, 3000ms);
  }
  o.server = server.get();
  return o;
}

struct Mtls : ::testing::Test {
  CertificateAuthority ca = *CertificateAuthority::create("ztgate.local");
  Party manager = make_party(ca, "spiffe://ztgate.local/manager");
  TlsOptions server() { return {.ca_pem = ca.certificate_pem(), .cert_pem = manager.cert, .key_pem = *private_key_pem(manager.key.get())}; }
  TlsOptions client(const Party& p, const std::string& ca_pem) {
    return {.ca_pem = ca_pem, .cert_pem = p.cert, .key_pem = *private_key_pem(p.key.get())};
  }
};

TEST_F(Mtls, ApplianceWithACertificateFromTheCaConnects) {
  auto gw = make_party(ca, "spiffe://ztgate.local/appliance/gw1");
  auto o = handshake(server(), client(gw, ca.certificate_pem()));
  ASSERT_TRUE(o.server.has_value()) << o.server.error().message;
  EXPECT_EQ(*o.server, "spiffe://ztgate.local/appliance/gw1");
  EXPECT_TRUE(o.client_read.has_value());
}

TEST_F(Mtls, ClientWithoutCertificateIsRefused) {
  auto o = handshake(server(), {.ca_pem = ca.certificate_pem()});
  ASSERT_FALSE(o.server.has_value());
  EXPECT_NE(o.server.error().message.find("did not return a certificate"), std::string::npos) << o.server.error().message;
  EXPECT_FALSE(o.client_connect.has_value() && o.client_read.has_value());
}

TEST_F(Mtls, CertificateFromAnotherCaIsRefused) {
  auto other = *CertificateAuthority::create("ztgate.local");
  auto gw = make_party(other, "spiffe://ztgate.local/appliance/gw1");
  auto o = handshake(server(), client(gw, ca.certificate_pem()));
  ASSERT_FALSE(o.server.has_value());
  EXPECT_NE(o.server.error().message.find("peer certificate refused"), std::string::npos) << o.server.error().message;
  EXPECT_FALSE(o.client_connect.has_value() && o.client_read.has_value());
}

TEST_F(Mtls, ExpiredCertificateIsRefusedAndTheReasonSaysSo) {
  auto gw = make_party(ca, "spiffe://ztgate.local/appliance/gw1", 3600s, -7200s);
  auto o = handshake(server(), client(gw, ca.certificate_pem()));
  ASSERT_FALSE(o.server.has_value());
  EXPECT_NE(o.server.error().message.find("certificate has expired"), std::string::npos) << o.server.error().message;
  EXPECT_FALSE(o.client_connect.has_value() && o.client_read.has_value());
}

TEST_F(Mtls, ClientRefusesAManagerFromAnotherCa) {
  auto other = *CertificateAuthority::create("ztgate.local");
  auto gw = make_party(ca, "spiffe://ztgate.local/appliance/gw1");
  auto o = handshake(server(), client(gw, other.certificate_pem()));
  ASSERT_FALSE(o.client_connect.has_value());
  EXPECT_NE(o.client_connect.error().message.find("certificate verify failed"), std::string::npos)
      << o.client_connect.error().message;
}

TEST_F(Mtls, GroupListIsConfiguration) {
  auto gw = make_party(ca, "spiffe://ztgate.local/appliance/gw1");
  auto s = server();
  s.groups = "P-256";
  auto c = client(gw, ca.certificate_pem());
  c.groups = "P-256";
  auto o = handshake(s, c);
  ASSERT_TRUE(o.server.has_value()) << o.server.error().message;

  c.groups = "no-such-group";
  auto bad = make_client_context(c);
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message.find("--tls-groups 'no-such-group'"), std::string::npos) << bad.error().message;
}

}  // namespace
}  // namespace zt::cp
