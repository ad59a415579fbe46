#include "zt/controlplane/tls.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace zt::cp {

namespace fs = std::filesystem;

std::string openssl_errors() {
  std::string out;
  unsigned long e;
  char buf[256];
  while ((e = ERR_get_error()) != 0) {
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "no OpenSSL detail" : out;
}

void PkeyDeleter::operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }
void SslCtxDeleter::operator()(SSL_CTX* p) const noexcept { SSL_CTX_free(p); }

namespace {

struct BioDel { void operator()(BIO* b) const noexcept { BIO_free(b); } };
using BioPtr = std::unique_ptr<BIO, BioDel>;
struct X509Del { void operator()(X509* x) const noexcept { X509_free(x); } };
using X509Ptr = std::unique_ptr<X509, X509Del>;

std::string bio_string(BIO* b) {
  char* data = nullptr;
  long n = BIO_get_mem_data(b, &data);
  return std::string(data, static_cast<std::size_t>(n));
}

Result<X509Ptr> parse_cert(const std::string& pem) {
  BioPtr b(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509Ptr x(PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr));
  if (!x) return fail("not a PEM certificate: " + openssl_errors());
  return x;
}

Result<std::string> cert_pem(X509* x) {
  BioPtr b(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_X509(b.get(), x) != 1) return fail("PEM encoding failed: " + openssl_errors());
  return bio_string(b.get());
}

Result<std::string> read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return fail(fmt::format("cannot read {}", p.string()));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Result<void> write_file_private(const fs::path& p, const std::string& data, bool exclusive) {
  int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | (exclusive ? O_EXCL : O_TRUNC), 0600);
  if (fd < 0) return fail(fmt::format("cannot create {}: {}", p.string(), std::strerror(errno)));
  bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  ok = (::fsync(fd) == 0) && ok;
  ::close(fd);
  if (!ok) return fail(fmt::format("cannot write {}", p.string()));
  return {};
}

std::int64_t asn1_to_unix(const ASN1_TIME* t) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return static_cast<std::int64_t>(timegm(&tm));
}

Result<std::string> uri_of(X509* x) {
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
  if (!names) return fail("certificate has no subjectAltName");
  std::string uri;
  int count = 0;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(names, i);
    if (g->type != GEN_URI) continue;
    ++count;
    const ASN1_IA5STRING* s = g->d.uniformResourceIdentifier;
    uri.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), static_cast<std::size_t>(ASN1_STRING_length(s)));
  }
  GENERAL_NAMES_free(names);
  if (count != 1) return fail(fmt::format("certificate must carry exactly one URI SAN, has {}", count));
  return uri;
}

bool add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (!ext) return false;
  bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

bool random_serial(X509* x) {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) return false;
  b[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(b, sizeof b, nullptr);
  bool ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != nullptr;
  BN_free(bn);
  return ok;
}

}  // namespace

Result<PkeyPtr> generate_ed25519() {
  EVP_PKEY* k = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (!k) return fail("Ed25519 key generation failed: " + openssl_errors());
  return PkeyPtr(k);
}

Result<std::string> private_key_pem(EVP_PKEY* key) {
  BioPtr b(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PrivateKey(b.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1)
    return fail("private key PEM encoding failed: " + openssl_errors());
  return bio_string(b.get());
}

Result<std::string> public_key_pem(EVP_PKEY* key) {
  BioPtr b(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PUBKEY(b.get(), key) != 1) return fail("public key PEM encoding failed: " + openssl_errors());
  return bio_string(b.get());
}

Result<PkeyPtr> load_private_key_pem(const std::string& pem) {
  BioPtr b(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  EVP_PKEY* k = PEM_read_bio_PrivateKey(b.get(), nullptr, nullptr, nullptr);
  if (!k) return fail("not a PEM private key: " + openssl_errors());
  return PkeyPtr(k);
}

Result<PkeyPtr> load_public_key_pem(const std::string& pem) {
  BioPtr b(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  EVP_PKEY* k = PEM_read_bio_PUBKEY(b.get(), nullptr, nullptr, nullptr);
  if (!k) return fail("not a PEM public key: " + openssl_errors());
  return PkeyPtr(k);
}

Result<PkeyPtr> load_or_create_key(const fs::path& file) {
  if (fs::exists(file)) {
    auto pem = read_file(file);
    if (!pem) return std::unexpected(pem.error());
    auto k = load_private_key_pem(*pem);
    if (!k) return fail(fmt::format("{}: {}", file.string(), k.error().message));
    return k;
  }
  auto k = generate_ed25519();
  if (!k) return k;
  auto pem = private_key_pem(k->get());
  if (!pem) return std::unexpected(pem.error());
  if (auto w = write_file_private(file, *pem, true); !w) return std::unexpected(w.error());
  return k;
}

Result<CertificateAuthority> CertificateAuthority::create(const std::string& domain) {
  auto key = generate_ed25519();
  if (!key) return std::unexpected(key.error());
  X509Ptr x(X509_new());
  X509_set_version(x.get(), 2);
  if (!random_serial(x.get())) return fail("serial generation failed");
  X509_gmtime_adj(X509_getm_notBefore(x.get()), -60);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), 10L * 365 * 24 * 3600);
  X509_NAME* name = X509_get_subject_name(x.get());
  std::string cn = "ztgate manager CA " + domain;
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(x.get(), name);
  X509_set_pubkey(x.get(), key->get());
  if (!add_ext(x.get(), x.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
      !add_ext(x.get(), x.get(), NID_key_usage, "critical,keyCertSign,cRLSign") ||
      !add_ext(x.get(), x.get(), NID_subject_key_identifier, "hash"))
    return fail("CA extensions failed: " + openssl_errors());
  if (X509_sign(x.get(), key->get(), nullptr) <= 0) return fail("CA self-signature failed: " + openssl_errors());
  auto pem = cert_pem(x.get());
  if (!pem) return std::unexpected(pem.error());
  CertificateAuthority ca;
  ca.domain_ = domain;
  ca.key_ = std::shared_ptr<EVP_PKEY>(key->release(), EVP_PKEY_free);
  ca.ca_pem_ = std::move(*pem);
  return ca;
}

namespace {

constexpr std::string_view kEncryptedPem = "-----BEGIN ENCRYPTED PRIVATE KEY-----";

// PKCS#8, AES-256-CBC under a PBKDF2-HMAC-SHA256 key from the passphrase (OpenSSL's PBES2).
Result<std::string> encrypted_private_key_pem(EVP_PKEY* key, const std::string& passphrase) {
  BioPtr b(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PKCS8PrivateKey(b.get(), key, EVP_aes_256_cbc(), passphrase.data(), static_cast<int>(passphrase.size()),
                                    nullptr, nullptr) != 1)
    return fail("encrypting the private key failed: " + openssl_errors());
  return bio_string(b.get());
}

// Writes `data` to `p` through a temporary file + fsync + rename (mode 0600).
Result<void> replace_file_private(const fs::path& p, const std::string& data) {
  const fs::path tmp = p.string() + ".tmp";
  fs::remove(tmp);
  if (auto w = write_file_private(tmp, data, true); !w) return w;
  if (::rename(tmp.c_str(), p.c_str()) != 0) return fail(fmt::format("cannot replace {}: {}", p.string(), std::strerror(errno)));
  return {};
}

}  // namespace

Result<CertificateAuthority> CertificateAuthority::load_or_create(const fs::path& dir, const std::string& domain,
                                                                  const std::string& passphrase) {
  const fs::path kp = dir / "ca.key", cp = dir / "ca.pem";
  if (fs::exists(kp) && fs::exists(cp)) {
    auto kpem = read_file(kp);
    auto cpem = read_file(cp);
    if (!kpem) return std::unexpected(kpem.error());
    if (!cpem) return std::unexpected(cpem.error());
    const bool encrypted = kpem->find(kEncryptedPem) != std::string::npos;
    if (encrypted && passphrase.empty())
      return fail(fmt::format("{} is encrypted: give its passphrase with --ca-key-passphrase-file", kp.string()));
    PkeyPtr key;
    if (encrypted) {
      BioPtr b(BIO_new_mem_buf(kpem->data(), static_cast<int>(kpem->size())));
      // With no callback, OpenSSL takes the user data as the NUL-terminated passphrase.
      EVP_PKEY* k = PEM_read_bio_PrivateKey(b.get(), nullptr, nullptr, const_cast<char*>(passphrase.c_str()));
      if (!k) {
        (void)openssl_errors();
        return fail(fmt::format("{}: cannot decrypt it with the passphrase from --ca-key-passphrase-file "
                                "(wrong passphrase file?)",
                                kp.string()));
      }
      key.reset(k);
    } else {
      auto k = load_private_key_pem(*kpem);
      if (!k) return fail(fmt::format("{}: {}", kp.string(), k.error().message));
      key = std::move(*k);
    }
    auto cert = parse_cert(*cpem);
    if (!cert) return fail(fmt::format("{}: {}", cp.string(), cert.error().message));
    if (X509_check_private_key(cert->get(), key.get()) != 1)
      return fail(fmt::format("{} does not belong to {}; restore the pair or remove both", kp.string(), cp.string()));
    if (!encrypted && !passphrase.empty()) {
      // A passphrase for a key stored in the clear: encrypt it in place from now on.
      auto epem = encrypted_private_key_pem(key.get(), passphrase);
      if (!epem) return std::unexpected(epem.error());
      if (auto w = replace_file_private(kp, *epem); !w) return std::unexpected(w.error());
    }
    CertificateAuthority ca;
    ca.domain_ = domain;
    ca.key_ = std::shared_ptr<EVP_PKEY>(key.release(), EVP_PKEY_free);
    ca.ca_pem_ = std::move(*cpem);
    return ca;
  }
  if (fs::exists(kp) || fs::exists(cp))
    return fail(fmt::format("only one of {} and {} exists; restore the pair or remove both", kp.string(), cp.string()));
  auto ca = create(domain);
  if (!ca) return ca;
  auto kpem = passphrase.empty() ? private_key_pem(ca->key_.get()) : encrypted_private_key_pem(ca->key_.get(), passphrase);
  if (!kpem) return std::unexpected(kpem.error());
  if (auto w = write_file_private(kp, *kpem, true); !w) return std::unexpected(w.error());
  if (auto w = write_file_private(cp, ca->ca_pem_, true); !w) return std::unexpected(w.error());
  return ca;
}

Result<IssuedCertificate> CertificateAuthority::issue(EVP_PKEY* subject, const std::string& uri,
                                                      std::chrono::seconds lifetime,
                                                      std::chrono::seconds not_before_offset) const {
  if (uri.rfind("spiffe://" + domain_ + "/", 0) != 0)
    return fail(fmt::format("identity {} is outside trust domain spiffe://{}/", uri, domain_));
  if (uri.find_first_of(", \n") != std::string::npos) return fail(fmt::format("identity {} contains ',', space or newline", uri));
  auto ca = parse_cert(ca_pem_);
  if (!ca) return std::unexpected(ca.error());
  X509Ptr x(X509_new());
  X509_set_version(x.get(), 2);
  if (!random_serial(x.get())) return fail("serial generation failed");
  X509_gmtime_adj(X509_getm_notBefore(x.get()), static_cast<long>(not_before_offset.count()));
  X509_gmtime_adj(X509_getm_notAfter(x.get()), static_cast<long>((not_before_offset + lifetime).count()));
  X509_set_issuer_name(x.get(), X509_get_subject_name(ca->get()));
  X509_NAME* name = X509_get_subject_name(x.get());
  std::string cn = uri.substr(uri.rfind('/') + 1);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  if (X509_set_pubkey(x.get(), subject) != 1) return fail("bad subject key: " + openssl_errors());
  const std::string san = "critical,URI:" + uri;
  if (!add_ext(x.get(), ca->get(), NID_basic_constraints, "critical,CA:FALSE") ||
      !add_ext(x.get(), ca->get(), NID_key_usage, "critical,digitalSignature") ||
      !add_ext(x.get(), ca->get(), NID_ext_key_usage, "serverAuth,clientAuth") ||
      !add_ext(x.get(), ca->get(), NID_subject_alt_name, san.c_str()) ||
      !add_ext(x.get(), ca->get(), NID_authority_key_identifier, "keyid:always"))
    return fail("certificate extensions failed: " + openssl_errors());
  if (X509_sign(x.get(), key_.get(), nullptr) <= 0) return fail("certificate signature failed: " + openssl_errors());
  auto pem = cert_pem(x.get());
  if (!pem) return std::unexpected(pem.error());
  return IssuedCertificate{*pem, asn1_to_unix(X509_get0_notBefore(x.get())), asn1_to_unix(X509_get0_notAfter(x.get()))};
}

Result<std::string> certificate_uri(const std::string& pem) {
  auto x = parse_cert(pem);
  if (!x) return std::unexpected(x.error());
  return uri_of(x->get());
}

Result<std::int64_t> certificate_not_after(const std::string& pem) {
  auto x = parse_cert(pem);
  if (!x) return std::unexpected(x.error());
  return asn1_to_unix(X509_get0_notAfter(x->get()));
}

namespace {

Result<SslCtxPtr> base_context(const TlsOptions& o, bool server) {
  SslCtxPtr ctx(SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()), SslCtxDeleter{});
  if (!ctx) return fail("SSL_CTX_new failed: " + openssl_errors());
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx.get(), TLS1_3_VERSION);
  SSL_CTX_set_num_tickets(ctx.get(), 0);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION);
  if (SSL_CTX_set1_groups_list(ctx.get(), o.groups.c_str()) != 1)
    return fail(fmt::format("--tls-groups '{}' is not a group list this OpenSSL knows ({}); e.g. X25519:P-256",
                            o.groups, openssl_errors()));
  // Trust anchor: only the manager CA, never the system store.
  auto ca = parse_cert(o.ca_pem);
  if (!ca) return fail("CA certificate: " + ca.error().message);
  X509_STORE* store = SSL_CTX_get_cert_store(ctx.get());
  if (X509_STORE_add_cert(store, ca->get()) != 1) return fail("cannot add CA to trust store: " + openssl_errors());
  if (!o.cert_pem.empty()) {
    auto cert = parse_cert(o.cert_pem);
    if (!cert) return fail("own certificate: " + cert.error().message);
    auto key = load_private_key_pem(o.key_pem);
    if (!key) return fail("own private key: " + key.error().message);
    if (SSL_CTX_use_certificate(ctx.get(), cert->get()) != 1 || SSL_CTX_use_PrivateKey(ctx.get(), key->get()) != 1 ||
        SSL_CTX_check_private_key(ctx.get()) != 1)
      return fail("certificate and private key do not match: " + openssl_errors());
  }
  return ctx;
}

std::string verify_reason(SSL* ssl) {
  long v = SSL_get_verify_result(ssl);
  if (v != X509_V_OK) return fmt::format("peer certificate refused: {}", X509_verify_cert_error_string(v));
  return {};
}

}  // namespace

Result<SslCtxPtr> make_server_context(const TlsOptions& o) {
  if (o.cert_pem.empty()) return fail("a server needs a certificate");
  auto ctx = base_context(o, true);
  if (!ctx) return ctx;
  SSL_CTX_set_verify(ctx->get(), o.require_peer_cert ? (SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT) : SSL_VERIFY_NONE,
                     nullptr);
  return ctx;
}

Result<SslCtxPtr> make_client_context(const TlsOptions& o) {
  auto ctx = base_context(o, false);
  if (!ctx) return ctx;
  SSL_CTX_set_verify(ctx->get(), SSL_VERIFY_PEER, nullptr);
  return ctx;
}

namespace {

int wait_fd(int fd, short ev, std::chrono::milliseconds t) {
  pollfd p{fd, ev, 0};
  for (;;) {
    int r = ::poll(&p, 1, static_cast<int>(std::max<long>(0, t.count())));
    if (r < 0 && errno == EINTR) continue;
    return r;
  }
}

// Drives a non-blocking SSL operation until done, the deadline, or a hard error.
template <class Op>
Result<int> drive(SSL* ssl, int fd, std::chrono::steady_clock::time_point deadline, const char* what, Op op) {
  for (;;) {
    ERR_clear_error();
    int r = op();
    if (r > 0) return r;
    int e = SSL_get_error(ssl, r);
    short ev = 0;
    if (e == SSL_ERROR_WANT_READ) ev = POLLIN;
    else if (e == SSL_ERROR_WANT_WRITE) ev = POLLOUT;
    else if (e == SSL_ERROR_ZERO_RETURN) return fail(fmt::format("{}: connection closed by peer", what));
    else if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
      return fail(fmt::format("{}: connection closed by peer{}", what, errno ? fmt::format(" ({})", std::strerror(errno)) : ""));
    else {
      std::string why = verify_reason(ssl);
      std::string err = openssl_errors();
      return fail(fmt::format("{} failed: {}{}", what, why.empty() ? "" : why + "; ", err));
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return fail(fmt::format("{}: timed out", what));
    int w = wait_fd(fd, ev, left);
    if (w == 0) return fail(fmt::format("{}: timed out", what));
    if (w < 0) return fail(fmt::format("{}: poll: {}", what, std::strerror(errno)));
  }
}

void set_nonblocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

}  // namespace

Result<std::pair<std::string, std::uint16_t>> split_host_port(const std::string& s, const std::string& what) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size())
    return fail(fmt::format("{} '{}' must be host:port, e.g. 127.0.0.1:7443", what, s));
  std::string host = s.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  unsigned long port = 0;
  try {
    std::size_t used = 0;
    port = std::stoul(s.substr(colon + 1), &used);
    if (used != s.size() - colon - 1) throw std::invalid_argument("x");
  } catch (...) {
    return fail(fmt::format("{} '{}': port is not a number", what, s));
  }
  if (port > 65535) return fail(fmt::format("{} '{}': port above 65535", what, s));
  return std::pair{host, static_cast<std::uint16_t>(port)};
}

Result<std::unique_ptr<TlsConnection>> TlsConnection::connect(const std::string& host, std::uint16_t port,
                                                              const SslCtxPtr& ctx, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string ps = std::to_string(port);
  if (int e = ::getaddrinfo(host.c_str(), ps.c_str(), &hints, &res); e != 0)
    return fail(fmt::format("cannot resolve {}: {}", host, gai_strerror(e)));
  int fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ::freeaddrinfo(res);
    return fail(fmt::format("socket: {}", std::strerror(errno)));
  }
  set_nonblocking(fd);
  int r = ::connect(fd, res->ai_addr, res->ai_addrlen);
  ::freeaddrinfo(res);
  if (r != 0 && errno != EINPROGRESS) {
    int e = errno;
    ::close(fd);
    return fail(fmt::format("connect to {}:{}: {}", host, port, std::strerror(e)));
  }
  if (r != 0) {
    int w = wait_fd(fd, POLLOUT, timeout);
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    if (w <= 0 || soerr != 0) {
      ::close(fd);
      return fail(fmt::format("connect to {}:{}: {}", host, port, w == 0 ? "timed out" : std::strerror(soerr)));
    }
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  SSL* ssl = SSL_new(ctx.get());
  if (!ssl) {
    ::close(fd);
    return fail("SSL_new failed: " + openssl_errors());
  }
  SSL_set_fd(ssl, fd);
  SSL_set_tlsext_host_name(ssl, host.c_str());
  std::unique_ptr<TlsConnection> c(new TlsConnection(fd, ssl, ctx));
  if (auto h = drive(ssl, fd, deadline, "TLS handshake with manager", [&] { return SSL_connect(ssl); }); !h)
    return std::unexpected(h.error());
  X509* peer = SSL_get0_peer_certificate(ssl);
  if (!peer) return fail("manager presented no certificate");
  auto uri = uri_of(peer);
  if (!uri) return fail("manager certificate: " + uri.error().message);
  c->peer_uri_ = *uri;
  return c;
}

Result<std::unique_ptr<TlsConnection>> TlsConnection::accept(int fd, const SslCtxPtr& ctx, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  set_nonblocking(fd);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  SSL* ssl = SSL_new(ctx.get());
  if (!ssl) {
    ::close(fd);
    return fail("SSL_new failed: " + openssl_errors());
  }
  SSL_set_fd(ssl, fd);
  std::unique_ptr<TlsConnection> c(new TlsConnection(fd, ssl, ctx));
  if (auto h = drive(ssl, fd, deadline, "TLS handshake with client", [&] { return SSL_accept(ssl); }); !h)
    return std::unexpected(h.error());
  if (X509* peer = SSL_get0_peer_certificate(ssl)) {
    auto uri = uri_of(peer);
    if (!uri) return fail("client certificate: " + uri.error().message);
    c->peer_uri_ = *uri;
  }
  return c;
}

TlsConnection::~TlsConnection() {
  if (ssl_) SSL_free(ssl_);
  if (fd_ >= 0) ::close(fd_);
}

void TlsConnection::shutdown() noexcept {
  if (ssl_) {
    ERR_clear_error();
    SSL_shutdown(ssl_);
    ERR_clear_error();
  }
}

std::string TlsConnection::negotiated_group() const {
  int nid = SSL_get_shared_group(ssl_, 0);
  const char* n = nid > 0 ? OBJ_nid2sn(nid) : nullptr;
  return n ? n : "";
}

Result<void> TlsConnection::read_exact(std::span<std::uint8_t> out, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::size_t got = 0;
  while (got < out.size()) {
    std::size_t n = 0;
    auto r = drive(ssl_, fd_, deadline, "TLS read",
                   [&] { return SSL_read_ex(ssl_, out.data() + got, out.size() - got, &n); });
    if (!r) {
      if (got > 0) return fail(fmt::format("{} (after {} of {} bytes)", r.error().message, got, out.size()));
      return std::unexpected(r.error());
    }
    got += n;
  }
  return {};
}

Result<void> TlsConnection::write_all(std::span<const std::uint8_t> data) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::size_t put = 0;
  while (put < data.size()) {
    std::size_t n = 0;
    auto r = drive(ssl_, fd_, deadline, "TLS write",
                   [&] { return SSL_write_ex(ssl_, data.data() + put, data.size() - put, &n); });
    if (!r) return std::unexpected(r.error());
    put += n;
  }
  return {};
}

bool TlsConnection::readable(std::chrono::milliseconds timeout) {
  if (SSL_pending(ssl_) > 0) return true;
  return wait_fd(fd_, POLLIN, timeout) > 0;
}

Result<Listener> Listener::open(const std::string& host_port) {
  auto hp = split_host_port(host_port, "listen address");
  if (!hp) return std::unexpected(hp.error());
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string ps = std::to_string(hp->second);
  if (int e = ::getaddrinfo(hp->first.c_str(), ps.c_str(), &hints, &res); e != 0)
    return fail(fmt::format("cannot resolve {}: {}", hp->first, gai_strerror(e)));
  int fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd < 0 || ::bind(fd, res->ai_addr, res->ai_addrlen) != 0 || ::listen(fd, 64) != 0) {
    int e = errno;
    ::freeaddrinfo(res);
    if (fd >= 0) ::close(fd);
    return fail(fmt::format("cannot listen on {}: {}", host_port, std::strerror(e)));
  }
  ::freeaddrinfo(res);
  sockaddr_storage ss{};
  socklen_t sl = sizeof ss;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &sl);
  std::uint16_t port = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                                : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return Listener(fd, port);
}

Listener::~Listener() {
  if (fd_ >= 0) ::close(fd_);
}

int Listener::accept(std::chrono::milliseconds timeout) {
  if (wait_fd(fd_, POLLIN, timeout) <= 0) return -1;
  return ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
}

}  // namespace zt::cp
