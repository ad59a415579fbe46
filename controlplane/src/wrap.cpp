#include "zt/controlplane/wrap.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include "zt/controlplane/bundle.hpp"

namespace zt::cp {

namespace {

constexpr std::size_t kSaltLen = 16, kNonceLen = 12, kTagLen = 16;

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<std::array<std::uint8_t, 32>> derive_kek(const PreSharedSecret& psk, std::span<const std::uint8_t> salt,
                                                std::string_view context) {
  std::array<std::uint8_t, 32> out{};
  std::string info = "ztgate/wrap/v1";
  info.append(context);
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr);
  bool ok = ctx && EVP_PKEY_derive_init(ctx) > 0 && EVP_PKEY_CTX_set_hkdf_md(ctx, EVP_sha256()) > 0 &&
            EVP_PKEY_CTX_set1_hkdf_salt(ctx, salt.data(), static_cast<int>(salt.size())) > 0 &&
            EVP_PKEY_CTX_set1_hkdf_key(ctx, psk.bytes().data(), static_cast<int>(psk.bytes().size())) > 0 &&
            EVP_PKEY_CTX_add1_hkdf_info(ctx, reinterpret_cast<const unsigned char*>(info.data()),
                                        static_cast<int>(info.size())) > 0;
  std::size_t len = out.size();
  ok = ok && EVP_PKEY_derive(ctx, out.data(), &len) > 0 && len == out.size();
  EVP_PKEY_CTX_free(ctx);
  if (!ok) return fail("HKDF-SHA256 key derivation failed: " + openssl_errors());
  return out;
}

}  // namespace

PreSharedSecret::~PreSharedSecret() {
  if (!bytes_.empty()) OPENSSL_cleanse(bytes_.data(), bytes_.size());
}

Result<PreSharedSecret> PreSharedSecret::from_bytes(std::span<const std::uint8_t> bytes) {
  if (bytes.size() < kMinPskLen)
    return fail(fmt::format("pre-shared secret has {} bytes; at least {} are needed", bytes.size(), kMinPskLen));
  PreSharedSecret p;
  p.bytes_.assign(bytes.begin(), bytes.end());
  std::string idin = "ztgate/psk-id";
  idin.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  p.id_ = sha256_hex(idin).substr(0, 16);
  OPENSSL_cleanse(idin.data(), idin.size());
  return p;
}

Result<PreSharedSecret> PreSharedSecret::load(const std::filesystem::path& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0)
    return fail(fmt::format("pre-shared secret file {}: cannot stat (provision it, mode 0600)", file.string()));
  if (st.st_mode & 077)
    return fail(fmt::format("pre-shared secret file {} is readable by group/others (mode {:o}); chmod 600 it",
                            file.string(), st.st_mode & 0777));
  std::ifstream in(file, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string raw = ss.str();
  // Hex text (optionally with a trailing newline) or raw bytes.
  std::string trimmed = raw;
  while (!trimmed.empty() && (trimmed.back() == '\n' || trimmed.back() == '\r' || trimmed.back() == ' '))
    trimmed.pop_back();
  bool is_hex = !trimmed.empty() && trimmed.size() % 2 == 0;
  for (char c : trimmed) is_hex = is_hex && hexval(c) >= 0;
  std::vector<std::uint8_t> bytes;
  if (is_hex) {
    for (std::size_t i = 0; i < trimmed.size(); i += 2)
      bytes.push_back(static_cast<std::uint8_t>(hexval(trimmed[i]) * 16 + hexval(trimmed[i + 1])));
  } else {
    bytes.assign(raw.begin(), raw.end());
  }
  auto r = from_bytes(bytes);
  OPENSSL_cleanse(raw.data(), raw.size());
  OPENSSL_cleanse(trimmed.data(), trimmed.size());
  if (!bytes.empty()) OPENSSL_cleanse(bytes.data(), bytes.size());
  if (!r) return fail(fmt::format("pre-shared secret file {}: {}", file.string(), r.error().message));
  return r;
}

Result<void> PreSharedSecret::generate(const std::filesystem::path& file) {
  std::array<std::uint8_t, 32> b{};
  if (RAND_bytes(b.data(), b.size()) != 1) return fail("RAND_bytes failed: " + openssl_errors());
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return fail(fmt::format("cannot create {} (it must not exist yet)", file.string()));
  std::string hex;
  for (auto x : b) hex += fmt::format("{:02x}", x);
  hex += '\n';
  bool ok = ::write(fd, hex.data(), hex.size()) == static_cast<ssize_t>(hex.size());
  ::close(fd);
  OPENSSL_cleanse(hex.data(), hex.size());
  OPENSSL_cleanse(b.data(), b.size());
  if (!ok) return fail(fmt::format("cannot write {}", file.string()));
  return {};
}

std::string sv_wrap_context(std::string_view recipient_uri, std::uint64_t epoch, std::uint32_t generation) {
  return fmt::format("sv|{}|{}|{}", recipient_uri, epoch, generation);
}

Result<v1::WrappedSecret> wrap_secret(const PreSharedSecret& psk, std::span<const std::uint8_t> secret,
                                      std::string_view context) {
  std::array<std::uint8_t, kSaltLen> salt{};
  std::array<std::uint8_t, kNonceLen> nonce{};
  if (RAND_bytes(salt.data(), salt.size()) != 1 || RAND_bytes(nonce.data(), nonce.size()) != 1)
    return fail("RAND_bytes failed: " + openssl_errors());
  auto kek = derive_kek(psk, salt, context);
  if (!kek) return std::unexpected(kek.error());
  std::string ct(secret.size() + kTagLen, '\0');
  EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
  int len = 0, fin = 0;
  bool ok = c && EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), nullptr, kek->data(), nonce.data()) == 1 &&
            EVP_EncryptUpdate(c, nullptr, &len, reinterpret_cast<const unsigned char*>(context.data()),
                              static_cast<int>(context.size())) == 1 &&
            EVP_EncryptUpdate(c, reinterpret_cast<unsigned char*>(ct.data()), &len, secret.data(),
                              static_cast<int>(secret.size())) == 1 &&
            EVP_EncryptFinal_ex(c, reinterpret_cast<unsigned char*>(ct.data()) + len, &fin) == 1 &&
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, kTagLen, ct.data() + secret.size()) == 1;
  EVP_CIPHER_CTX_free(c);
  OPENSSL_cleanse(kek->data(), kek->size());
  if (!ok) return fail("AES-256-GCM wrap failed: " + openssl_errors());
  v1::WrappedSecret w;
  w.set_psk_id(psk.id());
  w.set_salt(salt.data(), salt.size());
  w.set_nonce(nonce.data(), nonce.size());
  w.set_ciphertext(std::move(ct));
  return w;
}

Result<std::vector<std::uint8_t>> unwrap_secret(const PreSharedSecret& psk, const v1::WrappedSecret& w,
                                                std::string_view context) {
  if (w.psk_id() != psk.id())
    return fail(fmt::format("key material is wrapped for pre-shared secret {} but this side holds {}; "
                            "provision the same --psk-file on manager and appliance",
                            w.psk_id(), psk.id()));
  if (w.salt().size() != kSaltLen || w.nonce().size() != kNonceLen || w.ciphertext().size() < kTagLen)
    return fail("wrapped secret is malformed (salt, nonce or ciphertext length)");
  auto kek = derive_kek(psk, {reinterpret_cast<const std::uint8_t*>(w.salt().data()), kSaltLen}, context);
  if (!kek) return std::unexpected(kek.error());
  const std::size_t n = w.ciphertext().size() - kTagLen;
  std::vector<std::uint8_t> out(n);
  EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
  int len = 0, fin = 0;
  std::string tag = w.ciphertext().substr(n);
  bool ok = c && EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), nullptr, kek->data(),
                                    reinterpret_cast<const unsigned char*>(w.nonce().data())) == 1 &&
            EVP_DecryptUpdate(c, nullptr, &len, reinterpret_cast<const unsigned char*>(context.data()),
                              static_cast<int>(context.size())) == 1 &&
            EVP_DecryptUpdate(c, out.data(), &len, reinterpret_cast<const unsigned char*>(w.ciphertext().data()),
                              static_cast<int>(n)) == 1 &&
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, kTagLen, tag.data()) == 1 &&
            EVP_DecryptFinal_ex(c, out.data() + len, &fin) == 1;
  EVP_CIPHER_CTX_free(c);
  OPENSSL_cleanse(kek->data(), kek->size());
  if (!ok) {
    if (!out.empty()) OPENSSL_cleanse(out.data(), out.size());
    openssl_errors();
    return fail("wrapped key material does not authenticate (tampered, or wrapped for another recipient/epoch)");
  }
  return out;
}

}  // namespace zt::cp
