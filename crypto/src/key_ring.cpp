#include "zt/crypto/key_ring.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "imb.hpp"

namespace zt::crypto {
namespace {

// Must match KeyRing::index_of.
std::uint32_t hash_id(std::uint32_t id) noexcept { return id * 0x9E3779B1u; }

// CMAC subkey doubling in GF(2^128) (RFC 4493 §2.3).
void dbl(std::uint8_t b[16]) noexcept {
  const std::uint8_t carry = b[0] >> 7;
  for (int i = 0; i < 15; ++i) b[i] = static_cast<std::uint8_t>((b[i] << 1) | (b[i + 1] >> 7));
  b[15] = static_cast<std::uint8_t>((b[15] << 1) ^ (carry ? 0x87 : 0));
}

struct CipherCtxDeleter {
  void operator()(EVP_CIPHER_CTX* c) const noexcept { EVP_CIPHER_CTX_free(c); }
};

// K(i,e) for many identities at once. The derivation input is exactly one complete block, so
// AES-256-CMAC(SV, M) = AES-256(SV, M xor K1): one ECB pass over all blocks. tests/crypto checks
// this against derive_identity_key (OpenSSL's CMAC).
bool derive_bulk(const EpochSecret& sv, Alg alg, std::span<const std::uint32_t> ids,
                 std::vector<std::uint8_t>& out) {
  std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter> ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return false;
  if (EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_ecb(), nullptr, sv.sv.bytes().data(), nullptr) != 1)
    return false;
  EVP_CIPHER_CTX_set_padding(ctx.get(), 0);
  std::uint8_t k1[16] = {};
  int n = 0;
  if (EVP_EncryptUpdate(ctx.get(), k1, &n, k1, 16) != 1 || n != 16) return false;
  dbl(k1);
  const std::size_t blocks = key_len(alg) / 16;
  out.assign(ids.size() * blocks * 16, 0);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    for (std::size_t b = 0; b < blocks; ++b) {
      auto m = identity_key_block(ids[i], sv.epoch, alg, static_cast<std::uint8_t>(b + 1));
      for (int j = 0; j < 16; ++j) out[(i * blocks + b) * 16 + j] = m[j] ^ k1[j];
    }
  }
  OPENSSL_cleanse(k1, sizeof k1);
  if (out.empty()) return true;
  if (EVP_EncryptUpdate(ctx.get(), out.data(), &n, out.data(), static_cast<int>(out.size())) != 1 ||
      static_cast<std::size_t>(n) != out.size())
    return false;
  return true;
}

}  // namespace

Result<std::shared_ptr<const KeyRing>> KeyRing::build(const EpochPolicy& policy,
                                                      std::span<const EpochSecret> secrets,
                                                      std::span<const std::uint32_t> identities) {
  if (policy.length_ns <= 0) return fail("epoch length must be positive");
  if (policy.time_window_ns <= 0) return fail("tag time window must be positive");
  if (policy.grace_ns < 0 || policy.grace_ns >= policy.length_ns)
    return fail("epoch grace must be at least 0 and shorter than the epoch length");
  if (policy.accept_ahead_ns < 0 || policy.accept_ahead_ns >= policy.length_ns)
    return fail("early acceptance of the next epoch must be at least 0 and shorter than the epoch");
  if (2 * policy.time_window_ns >= policy.length_ns)
    return fail("tag time window must be shorter than half the epoch length");
  if (policy.length_ns > static_cast<std::int64_t>(kTimestampMask) - policy.grace_ns)
    return fail("epoch length plus grace must fit the tag's 48-bit ns timestamp (about 78 hours)");
  if (secrets.size() > 3)
    return fail("a key ring holds at most 3 epochs (e-1, e, e+1); got " +
                std::to_string(secrets.size()));
  for (std::size_t i = 0; i < secrets.size(); ++i)
    for (std::size_t j = i + 1; j < secrets.size(); ++j)
      if (secrets[i].epoch == secrets[j].epoch)
        return fail("epoch " + std::to_string(secrets[i].epoch) + " is given twice");
  for (std::uint32_t id : identities)
    if (id < kFirstTagIdentity)
      return fail("identity " + std::to_string(id) +
                  " cannot carry a tag: 0 is invalid and 1-255 are reserved");

  std::shared_ptr<KeyRing> ring(new KeyRing());
  ring->policy_ = policy;
  for (std::size_t i = 0; i < secrets.size(); ++i)
    ring->slots_[i] = Slot{secrets[i].epoch, secrets[i].generation, true};

  std::size_t cap = 16;
  while (cap < 2 * identities.size()) cap *= 2;
  ring->index_.assign(cap, IdEntry{0, 0});
  ring->mask_ = static_cast<std::uint32_t>(cap - 1);
  for (std::size_t i = 0; i < identities.size(); ++i) {
    std::uint32_t h = hash_id(identities[i]) & ring->mask_;
    while (ring->index_[h].id != 0) {
      if (ring->index_[h].id == identities[i])
        return fail("identity " + std::to_string(identities[i]) + " is listed twice");
      h = (h + 1) & ring->mask_;
    }
    ring->index_[h] = IdEntry{identities[i], static_cast<std::uint32_t>(i)};
  }
  ring->n_ids_ = identities.size();
  ring->n_keys_ = 3 * 2 * identities.size();
  ring->keys_.reset(new CachedKey[ring->n_keys_ ? ring->n_keys_ : 1]);
  std::memset(static_cast<void*>(ring->keys_.get()), 0, sizeof(CachedKey) * (ring->n_keys_ ? ring->n_keys_ : 1));

  auto mgr = detail::make_imb_manager("auto");
  if (!mgr) return std::unexpected(mgr.error());
  IMB_MGR* m = mgr->get();
  alignas(16) std::uint8_t dec[15 * 16];
  std::vector<std::uint8_t> raw;
  for (std::size_t s = 0; s < secrets.size(); ++s) {
    for (Alg alg : {Alg::aes128_cmac, Alg::aes256_cmac}) {
      if (alg == Alg::aes128_cmac && !policy.accept_aes128) continue;
      if (!derive_bulk(secrets[s], alg, identities, raw)) {
        OPENSSL_cleanse(raw.data(), raw.size());
        return fail("key derivation for epoch " + std::to_string(secrets[s].epoch) +
                    " failed inside OpenSSL");
      }
      const std::size_t kl = key_len(alg);
      for (std::size_t i = 0; i < identities.size(); ++i) {
        CachedKey& ck = ring->keys_[(s * 2 + static_cast<std::size_t>(alg)) * ring->n_ids_ + i];
        if (alg == Alg::aes128_cmac) {
          IMB_AES_KEYEXP_128(m, raw.data() + i * kl, ck.enc, dec);
          IMB_AES_CMAC_SUBKEY_GEN_128(m, ck.enc, ck.k1, ck.k2);
        } else {
          IMB_AES_KEYEXP_256(m, raw.data() + i * kl, ck.enc, dec);
          IMB_AES_CMAC_SUBKEY_GEN_256(m, ck.enc, ck.k1, ck.k2);
        }
      }
      OPENSSL_cleanse(raw.data(), raw.size());
    }
  }
  OPENSSL_cleanse(dec, sizeof dec);
  return std::shared_ptr<const KeyRing>(std::move(ring));
}

KeyRing::~KeyRing() {
  if (keys_) OPENSSL_cleanse(static_cast<void*>(keys_.get()), sizeof(CachedKey) * (n_keys_ ? n_keys_ : 1));
}

bool KeyRing::has_epoch(std::uint64_t epoch) const noexcept {
  for (const Slot& s : slots_)
    if (s.present && s.epoch == epoch) return true;
  return false;
}

std::int64_t KeyRing::epoch_at(std::int64_t now_ns) const noexcept {
  if (now_ns < policy_.origin_ns) return -1;
  return (now_ns - policy_.origin_ns) / policy_.length_ns;
}

const CachedKey* KeyRing::find(std::uint32_t identity, std::uint64_t epoch, Alg alg) const noexcept {
  if (identity == 0 || (alg == Alg::aes128_cmac && !policy_.accept_aes128)) return nullptr;
  for (std::size_t s = 0; s < slots_.size(); ++s) {
    if (!slots_[s].present || slots_[s].epoch != epoch) continue;
    const std::int64_t i = index_of(identity);
    if (i < 0) return nullptr;
    return &keys_[(s * 2 + static_cast<std::size_t>(alg)) * n_ids_ + static_cast<std::size_t>(i)];
  }
  return nullptr;
}

KeyRing::Clock KeyRing::clock(std::int64_t now_ns) const noexcept {
  const std::int64_t e = epoch_at(now_ns);
  Clock c{now_ns, e, e < 0 ? 0 : epoch_start(static_cast<std::uint64_t>(e)), policy_.time_window_ns};
  for (std::size_t s = 0; s < slots_.size(); ++s) {  // slot s holds epoch e - 1 + d
    if (!slots_[s].present || e < 0) continue;
    const std::int64_t d = static_cast<std::int64_t>(slots_[s].epoch) - (e - 1);
    if (d >= 0 && d < 3 && c.slot[static_cast<std::size_t>(d)] < 0)
      c.slot[static_cast<std::size_t>(d)] = static_cast<std::int8_t>(s);
  }
  return c;
}

TagReject KeyRing::precheck(const TagFields& f, bool hdr_allowed, std::int64_t now_ns,
                            const CachedKey*& key, std::uint64_t& epoch) const noexcept {
  return precheck(f, hdr_allowed, clock(now_ns), key, epoch);
}

}  // namespace zt::crypto
