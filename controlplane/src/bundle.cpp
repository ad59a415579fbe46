#include "zt/controlplane/bundle.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

namespace zt::cp {

namespace fs = std::filesystem;

namespace {
constexpr std::string_view kSignContext{"ztgate/bundle/v1\0", 17};
constexpr std::string_view kDeltaContext{"ztgate/delta/v1\0", 16};

std::string to_hex(const unsigned char* p, std::size_t n) {
  static constexpr char d[] = "0123456789abcdef";
  std::string s(n * 2, '0');
  for (std::size_t i = 0; i < n; ++i) {
    s[2 * i] = d[p[i] >> 4];
    s[2 * i + 1] = d[p[i] & 15];
  }
  return s;
}
}  // namespace

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  return to_hex(md, n);
}

Result<std::string> key_id(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  int n = i2d_PUBKEY(key, &der);
  if (n <= 0) return fail("cannot encode public key: " + openssl_errors());
  std::string id = sha256_hex({reinterpret_cast<const char*>(der), static_cast<std::size_t>(n)}).substr(0, 16);
  OPENSSL_free(der);
  return id;
}

Result<std::vector<std::pair<std::string, std::string>>> read_policy_files(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return fail(fmt::format("policy directory {} does not exist or is not a directory", dir.string()));
  std::vector<std::pair<std::string, std::string>> files;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file()) continue;
    auto ext = it->path().extension().string();
    if (ext != ".yaml" && ext != ".yml") continue;
    // Editors' temporary files (".#x.yaml", "x.yaml~") never end in .yaml; hidden files are skipped.
    if (it->path().filename().string().starts_with('.')) continue;
    std::ifstream in(it->path(), std::ios::binary);
    if (!in) return fail(fmt::format("cannot read {}", it->path().string()));
    std::stringstream ss;
    ss << in.rdbuf();
    files.emplace_back(fs::relative(it->path(), dir).generic_string(), ss.str());
  }
  if (ec) return fail(fmt::format("cannot list {}: {}", dir.string(), ec.message()));
  std::sort(files.begin(), files.end());
  return files;
}

namespace {
Result<std::string> ed25519_sign(EVP_PKEY* key, std::string_view context, const std::string& data) {
  std::string msg(context);
  msg += data;
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  std::size_t siglen = 0;
  bool ok = md && EVP_DigestSignInit_ex(md, nullptr, nullptr, nullptr, nullptr, key, nullptr) == 1 &&
            EVP_DigestSign(md, nullptr, &siglen, reinterpret_cast<const unsigned char*>(msg.data()), msg.size()) == 1;
  std::string sig(siglen, '\0');
  ok = ok && EVP_DigestSign(md, reinterpret_cast<unsigned char*>(sig.data()), &siglen,
                            reinterpret_cast<const unsigned char*>(msg.data()), msg.size()) == 1;
  EVP_MD_CTX_free(md);
  if (!ok) return fail("Ed25519 signing failed: " + openssl_errors());
  sig.resize(siglen);
  return sig;
}
}  // namespace

Result<pb::SignedBundle> BundleSigner::sign(const pb::PolicyBundle& bundle) const {
  pb::SignedBundle out;
  if (!bundle.SerializeToString(out.mutable_bundle())) return fail("bundle does not serialize");
  auto sig = ed25519_sign(key_.get(), kSignContext, out.bundle());
  if (!sig) return std::unexpected(sig.error());
  auto id = key_id(key_.get());
  if (!id) return std::unexpected(id.error());
  out.set_digest(sha256_hex(out.bundle()));
  out.set_algorithm(pb::SIGNATURE_ALGORITHM_ED25519);
  out.set_signature(std::move(*sig));
  out.set_key_id(*id);
  return out;
}

Result<pb::SignedDelta> BundleSigner::sign(const pb::PolicyDelta& delta) const {
  pb::SignedDelta out;
  if (!delta.SerializeToString(out.mutable_delta())) return fail("delta does not serialize");
  auto sig = ed25519_sign(key_.get(), kDeltaContext, out.delta());
  if (!sig) return std::unexpected(sig.error());
  auto id = key_id(key_.get());
  if (!id) return std::unexpected(id.error());
  out.set_algorithm(pb::SIGNATURE_ALGORITHM_ED25519);
  out.set_signature(std::move(*sig));
  out.set_key_id(*id);
  return out;
}

Result<BundleVerifier> BundleVerifier::from_public_pem(const std::string& pem, std::string domain) {
  auto k = load_public_key_pem(pem);
  if (!k) return fail("bundle signing key: " + k.error().message);
  if (EVP_PKEY_get_id(k->get()) != EVP_PKEY_ED25519) return fail("bundle signing key is not Ed25519");
  BundleVerifier v;
  auto id = key_id(k->get());
  if (!id) return std::unexpected(id.error());
  v.key_id_ = *id;
  v.key_ = std::shared_ptr<EVP_PKEY>(k->release(), EVP_PKEY_free);
  v.domain_ = std::move(domain);
  return v;
}

std::expected<pb::PolicyBundle, Refusal> BundleVerifier::verify(const pb::SignedBundle& sb, std::uint64_t highest,
                                                                std::int64_t now_unix) const {
  auto refuse = [](pb::NackCode c, std::string m, std::string r) {
    return std::unexpected(Refusal{c, std::move(m), std::move(r)});
  };
  if (sb.algorithm() != pb::SIGNATURE_ALGORITHM_ED25519)
    return refuse(pb::NACK_CODE_BAD_SIGNATURE, "bundle signature algorithm is not Ed25519", "bundle.algorithm");
  if (sb.key_id() != key_id_)
    return refuse(pb::NACK_CODE_BAD_SIGNATURE,
                  fmt::format("bundle signed by key {} but this appliance trusts key {}", sb.key_id(), key_id_),
                  "bundle.key_id");
  if (!signature_ok(kSignContext, sb.bundle(), sb.signature()))
    return refuse(pb::NACK_CODE_BAD_SIGNATURE, "bundle signature does not verify (tampered or wrong signer)", "bundle.signature");
  if (sha256_hex(sb.bundle()) != sb.digest())
    return refuse(pb::NACK_CODE_DIGEST_MISMATCH, "bundle digest does not match its content", "bundle.digest");
  pb::PolicyBundle b;
  if (!b.ParseFromString(sb.bundle())) return refuse(pb::NACK_CODE_MALFORMED, "signed bundle does not parse", "bundle.bundle");
  if (b.format() != pb::BUNDLE_FORMAT_YAML_SOURCE)
    return refuse(pb::NACK_CODE_MALFORMED, fmt::format("unknown bundle format {}", static_cast<int>(b.format())), "bundle.format");
  if (b.domain() != domain_)
    return refuse(pb::NACK_CODE_WRONG_DOMAIN, fmt::format("bundle is for domain '{}', this appliance is in '{}'", b.domain(), domain_),
                  "bundle.domain");
  if (b.revision() < highest)
    return refuse(pb::NACK_CODE_ROLLBACK,
                  fmt::format("revision {} is older than revision {} already accepted; refusing rollback", b.revision(), highest),
                  "bundle.revision");
  if (b.expires_at_unix() <= now_unix)
    return refuse(pb::NACK_CODE_EXPIRED, fmt::format("bundle revision {} expired at {} (now {})", b.revision(), b.expires_at_unix(), now_unix),
                  "bundle.expires_at_unix");
  return b;
}

bool BundleVerifier::signature_ok(std::string_view context, const std::string& data, const std::string& sig) const {
  std::string msg(context);
  msg += data;
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  bool ok = md && EVP_DigestVerifyInit_ex(md, nullptr, nullptr, nullptr, nullptr, key_.get(), nullptr) == 1 &&
            EVP_DigestVerify(md, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                             reinterpret_cast<const unsigned char*>(msg.data()), msg.size()) == 1;
  EVP_MD_CTX_free(md);
  openssl_errors();  // clear the queue a failed verification leaves
  return ok;
}

std::expected<pb::PolicyDelta, Refusal> BundleVerifier::verify(const pb::SignedDelta& sd) const {
  auto refuse = [](pb::NackCode c, std::string m, std::string r) {
    return std::unexpected(Refusal{c, std::move(m), std::move(r)});
  };
  if (sd.algorithm() != pb::SIGNATURE_ALGORITHM_ED25519)
    return refuse(pb::NACK_CODE_BAD_SIGNATURE, "delta signature algorithm is not Ed25519", "delta.algorithm");
  if (sd.key_id() != key_id_)
    return refuse(pb::NACK_CODE_BAD_SIGNATURE,
                  fmt::format("delta signed by key {} but this appliance trusts key {}", sd.key_id(), key_id_),
                  "delta.key_id");
  if (!signature_ok(kDeltaContext, sd.delta(), sd.signature()))
    return refuse(pb::NACK_CODE_BAD_SIGNATURE, "delta signature does not verify (tampered or wrong signer)",
                  "delta.signature");
  pb::PolicyDelta d;
  if (!d.ParseFromString(sd.delta())) return refuse(pb::NACK_CODE_MALFORMED, "signed delta does not parse", "delta.delta");
  return d;
}

}  // namespace zt::cp
