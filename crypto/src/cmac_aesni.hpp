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
// covered L4 bytes in place as body; MbCmac passes the whole message as head. head_blocks == n:
// the whole message, last block included, lies at head (last == head + 16 (n - 1), no body), so
// the lane has no event before its end (the Verifier's short messages).
struct AesniLane {
  const CachedKey* key;
  const std::uint8_t* head;  // 16 * head_blocks bytes
  const std::uint8_t* body;  // 16 * (n - 1 - head_blocks) bytes; unused when that is <= 0
  const std::uint8_t* last;  // 16 bytes
  std::uint32_t head_blocks;  // <= n - 1, or n (above)
  std::uint32_t n;            // total blocks, >= 1
  std::uint8_t* out;          // 16 bytes
};

// The CPU has AES-NI and AVX (the kernel is VEX-encoded). Cached after the first call.
bool aesni_cmac_supported() noexcept;

// Which multi-lane kernel computes the MACs (crypto/README.md "Own AES-NI CMAC", "VAES kernel"):
// aesni = 8 lanes of 128-bit AESENC; vaes256 = VAES on ymm (2 lanes per register, 16 per group;
// needs VAES + AVX2); vaes512 = VAES on zmm (4 lanes per register, 32 per group; needs VAES +
// AVX512F/VL). All three give identical MACs.
enum class CmacKernel : std::uint8_t { aesni = 0, vaes256 = 1, vaes512 = 2 };
bool cmac_kernel_supported(CmacKernel k) noexcept;
// The fastest supported kernel on this CPU (measured: vaes512 > vaes256 > aesni), or aesni when
// only that is supported. Call only when aesni_cmac_supported().
CmacKernel best_cmac_kernel() noexcept;
const char* to_string(CmacKernel k) noexcept;

// Computes every lane's MAC; all lanes use `alg`. Any count (processed 8 at a time, lanes of
// similar length grouped together). No allocation; `lanes` is reordered. When given,
// on_group(ctx, group, w) runs after each group of w lanes has its MACs (the Verifier compares
// them and prefetches their replay-filter lines while the next groups compute).
using AesniGroupDone = void (*)(void* ctx, const AesniLane* group, std::size_t w) noexcept;
void aesni_cmac(Alg alg, AesniLane* lanes, std::size_t count, AesniGroupDone on_group = nullptr,
                void* ctx = nullptr) noexcept;
// The same with the VAES kernels (groups of up to 16 or 32 lanes; call only when supported).
void vaes256_cmac(Alg alg, AesniLane* lanes, std::size_t count, AesniGroupDone on_group = nullptr,
                  void* ctx = nullptr) noexcept;
void vaes512_cmac(Alg alg, AesniLane* lanes, std::size_t count, AesniGroupDone on_group = nullptr,
                  void* ctx = nullptr) noexcept;
// Exactly kernel `k` (MbCmac: the vectors and the cross-checks hold each kernel to OpenSSL).
inline void kernel_cmac(CmacKernel k, Alg alg, AesniLane* lanes, std::size_t count,
                        AesniGroupDone on_group = nullptr, void* ctx = nullptr) noexcept {
  if (k == CmacKernel::vaes512) vaes512_cmac(alg, lanes, count, on_group, ctx);
  else if (k == CmacKernel::vaes256) vaes256_cmac(alg, lanes, count, on_group, ctx);
  else aesni_cmac(alg, lanes, count, on_group, ctx);
}
// The Verifier's choice: kernel `k`, except that a call of at most kVaesMinLanes - 1 lanes
// takes the AES-NI kernel even where VAES is chosen. With so few lanes the VAES registers hold
// only 1-2 dependency chains and wait on the AESENC latency, where the AES-NI kernel has one
// chain per lane (measured, 5-block AES-256 messages, TSC cycles per lane: 2 lanes 128 vs 147-160,
// 4 lanes 72 vs 76-82, 8 lanes 47 vs 43-49, 16 lanes 40 vs 27-34; crypto/README.md).
inline constexpr std::size_t kVaesMinLanes = 9;
inline void lane_cmac(CmacKernel k, Alg alg, AesniLane* lanes, std::size_t count,
                      AesniGroupDone on_group = nullptr, void* ctx = nullptr) noexcept {
  kernel_cmac(count < kVaesMinLanes ? CmacKernel::aesni : k, alg, lanes, count, on_group, ctx);
}

// Shared by the kernels. A lane's next event after `done` blocks: its head ends (switch to
// body), its leading blocks end (switch to last) or it ends.
inline std::uint32_t next_event(const AesniLane& g, std::uint32_t done) noexcept {
  if (g.head_blocks > done) return g.head_blocks;
  if (g.n - 1 > done) return g.n - 1;
  return g.n;
}
inline const std::uint8_t* source_at(const AesniLane& g, std::uint32_t done) noexcept {
  return done == g.n - 1 ? g.last : done == g.head_blocks ? g.body : g.head;
}
// Insertion sort by block count (stable; bursts are <= 32 and mostly one length).
inline void sort_by_blocks(AesniLane* lanes, std::size_t count) noexcept {
  for (std::size_t i = 1; i < count; ++i) {
    if (lanes[i].n >= lanes[i - 1].n) continue;
    const AesniLane t = lanes[i];
    std::size_t j = i;
    for (; j > 0 && lanes[j - 1].n > t.n; --j) lanes[j] = lanes[j - 1];
    lanes[j] = t;
  }
}

// Number of CMAC blocks of a len-byte message (an empty message is one padded block).
constexpr std::uint32_t cmac_blocks(std::size_t len) noexcept {
  return len == 0 ? 1 : static_cast<std::uint32_t>((len + 15) / 16);
}

// The final CMAC block of msg[0..len): the last complete block XOR K1, or the remaining bytes
// padded with 0x80 00.. XOR K2 (RFC 4493 §2.4). Plain scalar code (crypto/ is built for the
// x86-64 baseline): a partial block of a message of >= 16 bytes is the 16 bytes ending at
// msg + len shifted down as one 128-bit integer (never a byte past the message); the former
// variable-length memcpy into a stack block cost a call and a store-forwarding stall (~15
// cycles per FULL 64 B tag, crypto/README.md "VAES kernel").
__extension__ typedef unsigned __int128 CmacU128;  // GCC/Clang; x86-64 is the only target
inline void cmac_last_block(const CachedKey& k, const std::uint8_t* msg, std::size_t len,
                            std::uint8_t last[16]) noexcept {
  const std::size_t off = len == 0 ? 0 : (len - 1) / 16 * 16;
  const std::size_t rem = len - off;  // 0..16
  CmacU128 m;
  CmacU128 s;
  if (rem == 16) {
    std::memcpy(&m, msg + off, 16);
    std::memcpy(&s, k.k1, 16);
  } else {
    if (len >= 16) {
      std::memcpy(&m, msg + len - 16, 16);
      m >>= 8 * (16 - rem);  // 1..15 bytes: the last rem bytes move to the front
    } else {
      std::uint8_t b[16] = {};
      if (rem) std::memcpy(b, msg + off, rem);
      std::memcpy(&m, b, 16);
    }
    m |= static_cast<CmacU128>(0x80) << (8 * rem);
    std::memcpy(&s, k.k2, 16);
  }
  m ^= s;
  std::memcpy(last, &m, 16);
}

}  // namespace zt::crypto::detail
