// Internal CA and mutual TLS 1.3 (DESIGN.md §5), with OpenSSL 3.
//
// The manager's CA is an Ed25519 key and a self-signed certificate kept in its state directory.
// Leaf certificates are short-lived (default 24 h) and carry exactly one identity as a URI SAN:
//   spiffe://<domain>/manager, spiffe://<domain>/appliance/<name>, spiffe://<domain>/agent/<id>.
// Connections are TLS 1.3 only, the peer certificate is mandatory and verified against the CA,
// and the key-exchange group list is configuration (a hybrid ML-KEM group is a string change
// where the TLS library offers one; Debian 12's OpenSSL 3.0 does not).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "zt/controlplane/error.hpp"
#include "zt/controlplane/framing.hpp"

typedef struct evp_pkey_st EVP_PKEY;
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace zt::cp {

inline constexpr const char* kDefaultGroups = "X25519:P-256";
inline constexpr std::chrono::seconds kDefaultCertLifetime{24 * 3600};

struct PkeyDeleter {
  void operator()(EVP_PKEY* p) const noexcept;
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

// Ed25519 keys and their PEM forms.
Result<PkeyPtr> generate_ed25519();
Result<std::string> private_key_pem(EVP_PKEY* key);
Result<std::string> public_key_pem(EVP_PKEY* key);
Result<PkeyPtr> load_private_key_pem(const std::string& pem);
Result<PkeyPtr> load_public_key_pem(const std::string& pem);

// Reads a private key file, or creates it (mode 0600) with a new Ed25519 key.
Result<PkeyPtr> load_or_create_key(const std::filesystem::path& file);

struct IssuedCertificate {
  std::string pem;
  std::int64_t not_before_unix = 0;
  std::int64_t not_after_unix = 0;
};

class CertificateAuthority {
 public:
  // In memory (tests).
  static Result<CertificateAuthority> create(const std::string& domain);
  // ca.key / ca.pem in `dir`, created on first use. With a `passphrase`, ca.key is stored
  // encrypted (PKCS#8, AES-256-CBC, PBKDF2-HMAC-SHA256); an existing clear-text ca.key is
  // encrypted in place. An encrypted ca.key without the passphrase, or with a wrong one, fails.
  static Result<CertificateAuthority> load_or_create(const std::filesystem::path& dir,
                                                     const std::string& domain,
                                                     const std::string& passphrase = {});

  // Issues a leaf for `subject_public_key` with `uri` as its only SAN, valid from
  // now + not_before_offset for `lifetime` (negative offsets let tests mint expired certs).
  Result<IssuedCertificate> issue(EVP_PKEY* subject_public_key, const std::string& uri,
                                  std::chrono::seconds lifetime = kDefaultCertLifetime,
                                  std::chrono::seconds not_before_offset = std::chrono::seconds(-60)) const;

  const std::string& certificate_pem() const noexcept { return ca_pem_; }
  const std::string& domain() const noexcept { return domain_; }

 private:
  std::string domain_;
  std::shared_ptr<EVP_PKEY> key_;
  std::string ca_pem_;
};

// The single URI SAN of a certificate (PEM); fails when there is none or more than one.
Result<std::string> certificate_uri(const std::string& cert_pem);
Result<std::int64_t> certificate_not_after(const std::string& cert_pem);

struct TlsOptions {
  std::string ca_pem;    // trust anchor: the manager's CA
  std::string cert_pem;  // our leaf
  std::string key_pem;   // our private key
  std::string groups = kDefaultGroups;
  // Server side only: false for the enrolment listener (clients have no certificate yet).
  bool require_peer_cert = true;
};

struct SslCtxDeleter {
  void operator()(SSL_CTX* p) const noexcept;
};
using SslCtxPtr = std::shared_ptr<SSL_CTX>;

Result<SslCtxPtr> make_server_context(const TlsOptions& opts);
// Client: verifies the server against opts.ca_pem; cert/key may be empty (enrolment).
Result<SslCtxPtr> make_client_context(const TlsOptions& opts);

class TlsConnection final : public ByteStream {
 public:
  // Connects to host:port and completes the handshake within `timeout`.
  static Result<std::unique_ptr<TlsConnection>> connect(const std::string& host, std::uint16_t port,
                                                        const SslCtxPtr& ctx,
                                                        std::chrono::milliseconds timeout);
  // Takes ownership of an accepted socket and completes the server handshake.
  static Result<std::unique_ptr<TlsConnection>> accept(int fd, const SslCtxPtr& ctx,
                                                       std::chrono::milliseconds timeout);
  ~TlsConnection() override;
  TlsConnection(const TlsConnection&) = delete;
  TlsConnection& operator=(const TlsConnection&) = delete;

  Result<void> read_exact(std::span<std::uint8_t> out, std::chrono::milliseconds timeout) override;
  Result<void> write_all(std::span<const std::uint8_t> data) override;
  bool readable(std::chrono::milliseconds timeout) override;

  // URI SAN of the verified peer certificate ("" when the peer sent none).
  const std::string& peer_uri() const noexcept { return peer_uri_; }
  std::string negotiated_group() const;
  void shutdown() noexcept;

 private:
  TlsConnection(int fd, SSL* ssl, SslCtxPtr ctx) : fd_(fd), ssl_(ssl), ctx_(std::move(ctx)) {}
  int fd_;
  SSL* ssl_;
  SslCtxPtr ctx_;
  std::string peer_uri_;
};

// A listening TCP socket ("host:port"; port 0 picks an ephemeral port).
class Listener {
 public:
  static Result<Listener> open(const std::string& host_port);
  Listener(Listener&& o) noexcept : fd_(o.fd_), port_(o.port_) { o.fd_ = -1; }
  Listener& operator=(Listener&&) = delete;
  ~Listener();
  std::uint16_t port() const noexcept { return port_; }
  int fd() const noexcept { return fd_; }
  // An accepted fd, or -1 when nothing arrived within `timeout`.
  int accept(std::chrono::milliseconds timeout);

 private:
  Listener(int fd, std::uint16_t port) : fd_(fd), port_(port) {}
  int fd_;
  std::uint16_t port_;
};

// "host:port" -> parts; fails with a message naming `what` (the flag).
Result<std::pair<std::string, std::uint16_t>> split_host_port(const std::string& s, const std::string& what);

// The most recent OpenSSL error queue, as text (and cleared).
std::string openssl_errors();

}  // namespace zt::cp
