// Key derivation (DESIGN.md §2), on the control side and in the agent:
//   SV(e)   = HKDF-SHA256(ikm = master, salt = "", info = "ztgate/sv" || u16 len(domain) || domain
//                         || u64 e || u8 generation), 32 bytes
//   K(i,e)  = AES-256-CMAC(SV(e), 0x01 || u32 i || u64 e || u8 alg || u8 block || u16 0)
//             one block for AES-128-CMAC keys; blocks 1 and 2 concatenated for AES-256-CMAC keys.
// The domain is length-prefixed so distinct (domain, e) pairs never share an info string; alg and
// a block counter sit in the pad so a 128-bit and a 256-bit key of the same (i, e) are unrelated.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string_view>

#include "zt/crypto/error.hpp"
#include "zt/crypto/secret.hpp"
#include "zt/crypto/tag_codec.hpp"

namespace zt::crypto {

inline constexpr std::size_t kEpochSecretLen = 32;
inline constexpr std::size_t kMinMasterSecretLen = 32;

struct EpochSecret {
  std::uint64_t epoch = 0;
  std::uint8_t generation = 0;
  SecretBytes<kEpochSecretLen> sv;
};

// The key an agent holds: K(i, e) for one algorithm. 16 bytes used for AES-128, 32 for AES-256.
struct IdentityKey {
  std::uint32_t identity = 0;
  std::uint64_t epoch = 0;
  std::uint8_t generation = 0;
  Alg alg = Alg::aes256_cmac;
  SecretBytes<32> key;
  std::span<const std::uint8_t> bytes() const noexcept { return key.bytes().first(key_len(alg)); }
};

// HKDF-SHA256 epoch secret. Refuses a master secret shorter than 32 bytes or a domain longer
// than 255 bytes.
Result<EpochSecret> derive_epoch_secret(std::span<const std::uint8_t> master,
                                        std::string_view domain, std::uint64_t epoch,
                                        std::uint8_t generation = 0);

// The 16-byte derivation block for (i, e, alg, block counter 1 or 2).
std::array<std::uint8_t, 16> identity_key_block(std::uint32_t identity, std::uint64_t epoch,
                                                Alg alg, std::uint8_t block) noexcept;

// K(i,e) with OpenSSL's CMAC. Refuses identities 0-255 (never valid in a tag).
Result<IdentityKey> derive_identity_key(const EpochSecret& sv, std::uint32_t identity, Alg alg);

// One-shot AES-CMAC with OpenSSL (16- or 32-byte key); the reference implementation used by
// tests, the benchmark baseline and key derivation. Returns false on an OpenSSL failure.
bool openssl_cmac(std::span<const std::uint8_t> key, std::span<const std::uint8_t> msg,
                  std::span<std::uint8_t, 16> out) noexcept;

}  // namespace zt::crypto
