// Ready-to-use AES-CMAC key material in the layout IPsec-MB's CMAC jobs read: the expanded
// encryption key and the two CMAC subkeys. Key material: wipe it (secure_wipe) when done.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "zt/crypto/error.hpp"
#include "zt/crypto/tag_codec.hpp"

namespace zt::crypto {

struct alignas(16) CachedKey {
  std::uint8_t enc[15 * 16];  // AES encryption round keys (11 used for AES-128, 15 for AES-256)
  std::uint8_t k1[16];        // CMAC subkey for a complete last block
  std::uint8_t k2[16];        // CMAC subkey for a padded last block
};

// Expands a raw 16- or 32-byte key (the setup path; IPsec-MB key schedule + subkeys).
Result<CachedKey> expand_cmac_key(std::span<const std::uint8_t> key);

// Batched AES-CMAC through IPsec-MB with a caller-chosen key per message: the same job path the
// Verifier uses, exposed for RFC 4493 vectors, the cross-check against OpenSSL and the benchmark.
struct CmacJob {
  const CachedKey* key = nullptr;
  Alg alg = Alg::aes256_cmac;
  std::span<const std::uint8_t> msg;  // at most 65535 bytes
  std::uint8_t* out = nullptr;        // 16 bytes
};

class MbCmac {
 public:
  // arch: an IPsec-MB manager (auto, sse, avx, avx2, avx512) or one of ztgate's own multi-lane
  // kernels (the Verifier's short-input path): "aesni" (128-bit AESENC; fails on a CPU without
  // AES-NI/AVX), "vaes256" (VAES on ymm; needs VAES + AVX2), "vaes512" (VAES on zmm; needs VAES +
  // AVX-512F/VL).
  static Result<MbCmac> create(std::string_view arch = "auto");
  MbCmac(MbCmac&&) noexcept;
  MbCmac& operator=(MbCmac&&) noexcept;
  ~MbCmac();
  // Computes up to 32 MACs; returns how many completed (all, unless IPsec-MB failed a job).
  std::size_t compute(std::span<const CmacJob> jobs) noexcept;
  std::string_view arch() const noexcept;

 private:
  struct Impl;
  explicit MbCmac(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

}  // namespace zt::crypto
