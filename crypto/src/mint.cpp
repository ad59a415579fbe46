#include "zt/crypto/mint.hpp"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <openssl/params.h>

#include <cstring>

namespace zt::crypto {

struct Minter::Impl {
  EVP_MAC* mac = nullptr;
  EVP_MAC_CTX* ctx = nullptr;
  // The key `ctx` is set up with: keying CMAC (cipher fetch + subkey derivation) costs about three
  // times a 64-byte MAC, and an agent mints thousands of packets per key, so it is done once per
  // key and the context is only re-initialised (EVP_MAC_init without a key) between packets.
  std::array<std::uint8_t, 32> keyed{};
  std::size_t keyed_len = 0;
  ~Impl() {
    OPENSSL_cleanse(keyed.data(), keyed.size());
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
  }
};

Minter::Minter(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Minter::Minter(Minter&&) noexcept = default;
Minter& Minter::operator=(Minter&&) noexcept = default;
Minter::~Minter() = default;

Result<Minter> Minter::create() {
  auto impl = std::make_unique<Impl>();
  impl->mac = EVP_MAC_fetch(nullptr, OSSL_MAC_NAME_CMAC, nullptr);
  if (!impl->mac) return fail("OpenSSL has no CMAC implementation (EVP_MAC_fetch failed)");
  impl->ctx = EVP_MAC_CTX_new(impl->mac);
  if (!impl->ctx) return fail("out of memory creating the CMAC context");
  return Minter(std::move(impl));
}

TagReject Minter::mint_raw(std::span<const std::uint8_t> key, const TagFields& f,
                           const InnerView& inner, Tag& out) noexcept {
  if (key.size() != 16 && key.size() != 32) return TagReject::tag_no_key;
  const std::size_t l4n = covered_l4_len(f.coverage, inner.l4.size());
  if (l4n > kMaxCoveredL4Len) return TagReject::tag_too_long;
  std::array<std::uint8_t, 16> head;
  encode_tag_fields(f, head);
  std::array<std::uint8_t, kMaxPseudoHeaderLen> ph;
  const std::size_t phn = write_pseudo_header(inner, ph);
  if (phn == 0) return TagReject::tag_too_long;
  char c128[] = "AES-128-CBC";
  char c256[] = "AES-256-CBC";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, key.size() == 16 ? c128 : c256, 0),
      OSSL_PARAM_construct_end(),
  };
  std::size_t n = 0;
  EVP_MAC_CTX* ctx = impl_->ctx;
  const bool same_key = impl_->keyed_len == key.size() &&
                        std::memcmp(impl_->keyed.data(), key.data(), key.size()) == 0;
  const int init = same_key ? EVP_MAC_init(ctx, nullptr, 0, nullptr)
                            : EVP_MAC_init(ctx, key.data(), key.size(), params);
  if (init != 1) {
    impl_->keyed_len = 0;
    return TagReject::tag_no_key;
  }
  if (!same_key) {
    std::memcpy(impl_->keyed.data(), key.data(), key.size());
    impl_->keyed_len = key.size();
  }
  if (
      EVP_MAC_update(ctx, head.data(), head.size()) != 1 ||
      EVP_MAC_update(ctx, ph.data(), phn) != 1 ||
      (l4n && EVP_MAC_update(ctx, inner.l4.data(), l4n) != 1) ||
      EVP_MAC_final(ctx, out.mac.data(), &n, out.mac.size()) != 1 || n != kTagMacLen)
    return TagReject::tag_no_key;
  out.fields = f;
  out.fields.timestamp_ns &= kTimestampMask;
  return TagReject::none;
}

TagReject Minter::mint(const IdentityKey& key, const TagFields& f, const InnerView& inner,
                       Tag& out) noexcept {
  if (key.identity < kFirstTagIdentity) return TagReject::tag_bad_identity;
  TagFields g = f;
  g.version = kTagVersion;
  g.identity = key.identity;
  g.epoch = static_cast<std::uint8_t>(key.epoch);
  g.generation = key.generation;
  g.alg = key.alg;
  return mint_raw(key.bytes(), g, inner, out);
}

}  // namespace zt::crypto
