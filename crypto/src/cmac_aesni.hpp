// Private: batched AES-CMAC with AES-NI, many independent messages interleaved, one key per lane
// (crypto/README.md "Own AES-NI CMAC"). Used by the Verifier for short MAC inputs and by MbCmac
// arch "aesni". Compiled with a function target attribute (the project's baseline, -march=corei7,
// has no AES-NI): call only when aesni_cmac_supported() is true.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "zt/crypto/cached_key.hpp"
#include "zt/crypto/tag_codec.hpp"

namespace zt::crypto::detail {

// One message of n blocks in up to three pieces, so that nothing has to be copied into one
// buffer: `head_blocks` blocks at `head`, then the n - 1 - head_blocks blocks at `body`, then
// `last`, the final block already padded and XORed with its subkey (cmac_last_block). CMAC is the
// CBC-MAC over those n blocks. The Verifier passes the tag fields + pseudo-header as head, the
// covered L4 bytes in place as body; MbCmac passes the whole message as head.
struct AesniLane {
  const CachedKey* key;
  const std::uint8_t* head;  // 16 * head_blocks bytes
  const std::uint8_t* body;  // 16 * (n - 1 - head_blocks) bytes; unused when that is 0
  const std::uint8_t* last;  // 16 bytes
  std::uint32_t head_blocks;  // <= n - 1
  std::uint32_t n;            // total blocks, >= 1
  std::uint8_t* out;          // 16 bytes
};

// The CPU has AES-NI and AVX (the kernel is VEX-encoded). Cached after the first call.
bool aesni_cmac_supported() noexcept;

// Computes every lane's MAC; all lanes use `alg`. Any count (processed 8 at a time, lanes of
// similar length grouped together). No allocation; `lanes` is reordered. When given,
// on_group(ctx, group, w) runs after each group of w lanes has its MACs (the Verifier compares
// them and prefetches their replay-filter lines while the next groups compute).
using AesniGroupDone = void (*)(void* ctx, const AesniLane* group, std::size_t w) noexcept;
void aesni_cmac(Alg alg, AesniLane* lanes, std::size_t count, AesniGroupDone on_group = nullptr,
                void* ctx = nullptr) noexcept;

// Number of CMAC blocks of a len-byte message (an empty message is one padded block).
constexpr std::uint32_t cmac_blocks(std::size_t len) noexcept {
  return len == 0 ? 1 : static_cast<std::uint32_t>((len + 15) / 16);
}

// The final CMAC block of msg[0..len): the last complete block XOR K1, or the remaining bytes
// padded with 0x80 00.. XOR K2 (RFC 4493 §2.4). Plain byte code, no AES-NI.
inline void cmac_last_block(const CachedKey& k, const std::uint8_t* msg, std::size_t len,
                            std::uint8_t last[16]) noexcept {
  const std::size_t off = len == 0 ? 0 : (len - 1) / 16 * 16;
  const std::size_t rem = len - off;  // 0..16
  std::uint64_t m[2] = {0, 0};
  std::uint64_t s[2];
  if (rem == 16) {
    std::memcpy(m, msg + off, 16);
    std::memcpy(s, k.k1, 16);
  } else {
    std::uint8_t b[16] = {};
    if (rem) std::memcpy(b, msg + off, rem);
    b[rem] = 0x80;
    std::memcpy(m, b, 16);
    std::memcpy(s, k.k2, 16);
  }
  m[0] ^= s[0];
  m[1] ^= s[1];
  std::memcpy(last, m, 16);
}

}  // namespace zt::crypto::detail
