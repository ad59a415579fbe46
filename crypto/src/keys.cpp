#include "zt/crypto/keys.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include <memory>
#include <string>
#include <vector>

namespace zt::crypto {

void secure_wipe(void* p, std::size_t n) noexcept { OPENSSL_cleanse(p, n); }

namespace {

struct KdfDeleter {
  void operator()(EVP_KDF* k) const noexcept { EVP_KDF_free(k); }
  void operator()(EVP_KDF_CTX* c) const noexcept { EVP_KDF_CTX_free(c); }
  void operator()(EVP_MAC* m) const noexcept { EVP_MAC_free(m); }
  void operator()(EVP_MAC_CTX* c) const noexcept { EVP_MAC_CTX_free(c); }
};

}  // namespace

Result<EpochSecret> derive_epoch_secret(std::span<const std::uint8_t> master,
                                        std::string_view domain, std::uint64_t epoch,
                                        std::uint8_t generation) {
  if (master.size() < kMinMasterSecretLen)
    return fail("master secret is " + std::to_string(master.size()) +
                " bytes; at least 32 random bytes are required");
  if (domain.size() > 255)
    return fail("trust domain name is " + std::to_string(domain.size()) +
                " bytes; at most 255 are allowed");
  static constexpr std::string_view kLabel = "ztgate/sv";
  std::vector<std::uint8_t> info(kLabel.begin(), kLabel.end());
  info.push_back(static_cast<std::uint8_t>(domain.size() >> 8));
  info.push_back(static_cast<std::uint8_t>(domain.size()));
  info.insert(info.end(), domain.begin(), domain.end());
  for (int i = 7; i >= 0; --i) info.push_back(static_cast<std::uint8_t>(epoch >> (8 * i)));
  info.push_back(generation);

  std::unique_ptr<EVP_KDF, KdfDeleter> kdf(EVP_KDF_fetch(nullptr, OSSL_KDF_NAME_HKDF, nullptr));
  if (!kdf) return fail("OpenSSL has no HKDF implementation (EVP_KDF_fetch failed)");
  std::unique_ptr<EVP_KDF_CTX, KdfDeleter> ctx(EVP_KDF_CTX_new(kdf.get()));
  if (!ctx) return fail("out of memory creating the HKDF context");
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<std::uint8_t*>(master.data()),
                                        master.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info.data(), info.size()),
      OSSL_PARAM_construct_end(),
  };
  EpochSecret out;
  out.epoch = epoch;
  out.generation = generation;
  if (EVP_KDF_derive(ctx.get(), out.sv.mutable_bytes().data(), kEpochSecretLen, params) != 1)
    return fail("HKDF-SHA256 derivation of the epoch secret failed inside OpenSSL");
  return out;
}

std::array<std::uint8_t, 16> identity_key_block(std::uint32_t identity, std::uint64_t epoch,
                                                Alg alg, std::uint8_t block) noexcept {
  std::array<std::uint8_t, 16> b{};
  b[0] = 0x01;
  for (int i = 0; i < 4; ++i) b[1 + i] = static_cast<std::uint8_t>(identity >> (24 - 8 * i));
  for (int i = 0; i < 8; ++i) b[5 + i] = static_cast<std::uint8_t>(epoch >> (56 - 8 * i));
  b[13] = static_cast<std::uint8_t>(alg);
  b[14] = block;
  return b;
}

bool openssl_cmac(std::span<const std::uint8_t> key, std::span<const std::uint8_t> msg,
                  std::span<std::uint8_t, 16> out) noexcept {
  if (key.size() != 16 && key.size() != 32) return false;
  std::unique_ptr<EVP_MAC, KdfDeleter> mac(EVP_MAC_fetch(nullptr, OSSL_MAC_NAME_CMAC, nullptr));
  if (!mac) return false;
  std::unique_ptr<EVP_MAC_CTX, KdfDeleter> ctx(EVP_MAC_CTX_new(mac.get()));
  if (!ctx) return false;
  char cipher128[] = "AES-128-CBC";
  char cipher256[] = "AES-256-CBC";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER,
                                       key.size() == 16 ? cipher128 : cipher256, 0),
      OSSL_PARAM_construct_end(),
  };
  std::size_t n = 0;
  return EVP_MAC_init(ctx.get(), key.data(), key.size(), params) == 1 &&
         EVP_MAC_update(ctx.get(), msg.data(), msg.size()) == 1 &&
         EVP_MAC_final(ctx.get(), out.data(), &n, 16) == 1 && n == 16;
}

Result<IdentityKey> derive_identity_key(const EpochSecret& sv, std::uint32_t identity, Alg alg) {
  if (identity < kFirstTagIdentity)
    return fail("identity " + std::to_string(identity) +
                " cannot hold a tag key: 0 is invalid and 1-255 are reserved");
  IdentityKey k;
  k.identity = identity;
  k.epoch = sv.epoch;
  k.generation = sv.generation;
  k.alg = alg;
  const std::size_t blocks = key_len(alg) / 16;
  for (std::size_t b = 0; b < blocks; ++b) {
    const auto in = identity_key_block(identity, sv.epoch, alg, static_cast<std::uint8_t>(b + 1));
    if (!openssl_cmac(sv.sv.bytes(), in,
                      std::span<std::uint8_t, 16>(k.key.mutable_bytes().data() + 16 * b, 16)))
      return fail("AES-256-CMAC key derivation failed inside OpenSSL");
  }
  return k;
}

}  // namespace zt::crypto
