// Batched AES-CMAC with AES-NI (crypto/README.md "Own AES-NI CMAC").
//
// A CMAC is a CBC-MAC: each block of one message waits for the previous one (AESENC latency 4 on
// this CPU, 10-14 rounds), so one message alone runs at a fraction of the AES units' throughput.
// Up to 8 messages, each with its own expanded key, advance in lockstep: every round is 8
// independent AESENCs whose round key is a memory operand read from that lane's CachedKey.
// Lanes are sorted by length and cut into groups of <= 8; a group runs in phases, each as many
// blocks as every remaining lane still has before its next event (its last block is read from a
// separate, finalised buffer; a lane that is done leaves the group).
#include "cmac_aesni.hpp"

#include <immintrin.h>

namespace zt::crypto::detail {
namespace {

#define ZT_AESNI_TARGET __attribute__((target("aes,avx")))

// `count` blocks for W lanes; R = number of rounds (10: AES-128, 14: AES-256).
template <int R, int W>
ZT_AESNI_TARGET __attribute__((always_inline)) inline void run_blocks(
    __m128i* x, const std::uint8_t** p, const CachedKey* const* k, std::uint32_t count) noexcept {
  __m128i v[W];
  const std::uint8_t* pp[W];
  const __m128i* kk[W];
#pragma GCC unroll 8
  for (int l = 0; l < W; ++l) {
    v[l] = x[l];
    pp[l] = p[l];
    kk[l] = reinterpret_cast<const __m128i*>(k[l]->enc);
  }
  for (std::uint32_t c = 0; c < count; ++c) {
    // Round keys stay memory operands of AESENC: without this, GCC hoists all W * (R + 1) loads
    // out of the block loop and spills them to the stack, W * R extra loads and stores per phase.
#pragma GCC unroll 8
    for (int l = 0; l < W; ++l) asm("" : "+r"(kk[l]));
#pragma GCC unroll 8
    for (int l = 0; l < W; ++l) {
      v[l] = _mm_xor_si128(v[l], _mm_loadu_si128(reinterpret_cast<const __m128i*>(pp[l])));
      v[l] = _mm_xor_si128(v[l], _mm_load_si128(kk[l]));
      pp[l] += 16;
    }
#pragma GCC unroll 14
    for (int r = 1; r < R; ++r) {
#pragma GCC unroll 8
      for (int l = 0; l < W; ++l) v[l] = _mm_aesenc_si128(v[l], _mm_load_si128(kk[l] + r));
    }
#pragma GCC unroll 8
    for (int l = 0; l < W; ++l) v[l] = _mm_aesenclast_si128(v[l], _mm_load_si128(kk[l] + R));
  }
#pragma GCC unroll 8
  for (int l = 0; l < W; ++l) {
    x[l] = v[l];
    p[l] = pp[l];
  }
}

template <int R>
ZT_AESNI_TARGET void run_width(int w, __m128i* x, const std::uint8_t** p,
                               const CachedKey* const* k, std::uint32_t count) noexcept {
  switch (w) {
    case 1: run_blocks<R, 1>(x, p, k, count); break;
    case 2: run_blocks<R, 2>(x, p, k, count); break;
    case 3: run_blocks<R, 3>(x, p, k, count); break;
    case 4: run_blocks<R, 4>(x, p, k, count); break;
    case 5: run_blocks<R, 5>(x, p, k, count); break;
    case 6: run_blocks<R, 6>(x, p, k, count); break;
    case 7: run_blocks<R, 7>(x, p, k, count); break;
    default: run_blocks<R, 8>(x, p, k, count); break;
  }
}

// One group of w <= 8 lanes, sorted by n ascending.
template <int R>
ZT_AESNI_TARGET void run_group(AesniLane* g, int w) noexcept {
  __m128i x[8];
  const std::uint8_t* p[8];
  const CachedKey* k[8];
  for (int l = 0; l < w; ++l) {
    x[l] = _mm_setzero_si128();
    p[l] = source_at(g[l], 0);
    k[l] = g[l].key;
  }
  std::uint32_t done = 0;
  int lo = 0;
  while (lo < w) {
    std::uint32_t next = ~std::uint32_t{0};
    for (int l = lo; l < w; ++l) {
      const std::uint32_t e = next_event(g[l], done);
      if (e < next) next = e;
    }
    run_width<R>(w - lo, x + lo, p + lo, k + lo, next - done);
    done = next;
    while (lo < w && g[lo].n == done) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(g[lo].out), x[lo]);
      ++lo;
    }
    for (int l = lo; l < w; ++l)
      if (done == g[l].head_blocks || done == g[l].n - 1) p[l] = source_at(g[l], done);
  }
}

template <int R>
void run_all(AesniLane* lanes, std::size_t count, AesniGroupDone on_group, void* ctx) noexcept {
  sort_by_blocks(lanes, count);
  // Groups of near-equal size (9 lanes run as 5 + 4, not 8 + a latency-bound 1).
  const std::size_t groups = (count + 7) / 8;
  std::size_t at = 0;
  for (std::size_t gi = 0; gi < groups; ++gi) {
    const std::size_t w = (count - at) / (groups - gi);
    run_group<R>(lanes + at, static_cast<int>(w));
    if (on_group != nullptr) on_group(ctx, lanes + at, w);
    at += w;
  }
}

}  // namespace

bool aesni_cmac_supported() noexcept {
  static const bool ok = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("aes") && __builtin_cpu_supports("avx");
  }();
  return ok;
}

void aesni_cmac(Alg alg, AesniLane* lanes, std::size_t count, AesniGroupDone on_group,
                void* ctx) noexcept {
  if (count == 0) return;
  if (alg == Alg::aes128_cmac) run_all<10>(lanes, count, on_group, ctx);
  else run_all<14>(lanes, count, on_group, ctx);
}

}  // namespace zt::crypto::detail
