// Batched AES-CMAC with VAES (crypto/README.md "VAES kernel"): the AES-NI kernel's design
// (lanes sorted by block count, groups run in phases, message in head/body/last pieces) on
// 256-bit (2 lanes per register) or 512-bit (4 lanes) registers, so one VAESENC advances 2 or 4
// CBC chains. Up to 16 (ymm) or 32 (zmm) lanes per group; each register's round keys are put
// together once per group into a stack table: broadcast (VBROADCASTI32X4) when the register's
// lanes share one CachedKey (pointer equality), transposed from the lanes' schedules otherwise,
// and reused as is by the next register when its lanes have the same keys.
#include <cpuid.h>
#include <immintrin.h>

#include "cmac_aesni.hpp"

// GCC 12's own AVX-512 intrinsics (_mm512_broadcast_i32x4, _mm512_shuffle_i64x2) pass
// _mm512_undefined_epi32() as the unused merge source and then warn about it at every use
// (-Wmaybe-uninitialized inside avx512fintrin.h); nothing of ours is uninitialised.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace zt::crypto::detail {

// ---- 512-bit: 4 lanes per zmm, 8 registers (32 lanes) per group --------------------------
#define ZT_VAES_TARGET __attribute__((target("aes,avx2,vaes,avx512f,avx512vl")))
namespace v512 {
struct Vec {
  using T = __m512i;
  static constexpr int L = 4;
  static constexpr int kMaxRegs = 8;
  ZT_VAES_TARGET static inline __attribute__((always_inline)) T zero() noexcept {
    return _mm512_setzero_si512();
  }
  ZT_VAES_TARGET static inline __attribute__((always_inline)) T load_lanes(
      const std::uint8_t* const* p, std::uint32_t off) noexcept {
    T v = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p[0] + off)));
    v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p[1] + off)), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p[2] + off)), 2);
    return _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p[3] + off)), 3);
  }
  ZT_VAES_TARGET static inline __attribute__((always_inline)) T xor_(T a, T b) noexcept {
    return _mm512_xor_si512(a, b);
  }
  ZT_VAES_TARGET static inline __attribute__((always_inline)) T xor_(T a, const T* b) noexcept {
    return _mm512_xor_si512(a, _mm512_load_si512(b));
  }
  ZT_VAES_TARGET static inline __attribute__((always_inline)) T enc(T a, const T* k) noexcept {
    return _mm512_aesenc_epi128(a, _mm512_load_si512(k));
  }
  ZT_VAES_TARGET static inline __attribute__((always_inline)) T enclast(T a, const T* k) noexcept {
    return _mm512_aesenclast_epi128(a, _mm512_load_si512(k));
  }
  ZT_VAES_TARGET static inline __attribute__((always_inline)) T bcast(const void* p) noexcept {
    return _mm512_broadcast_i32x4(_mm_load_si128(static_cast<const __m128i*>(p)));
  }
  // Round keys 4q..4q+3 of the 4 lanes: a 4x4 transpose of 128-bit elements. Reads 64 bytes of
  // each schedule from round 4q (for AES-256, q = 3 reads round 15 = k1: inside CachedKey).
  ZT_VAES_TARGET static inline __attribute__((always_inline)) void transpose(
      const CachedKey* const* k, int q, T* out) noexcept {
    const T a = _mm512_loadu_si512(k[0]->enc + 64 * q);
    const T b = _mm512_loadu_si512(k[1]->enc + 64 * q);
    const T c = _mm512_loadu_si512(k[2]->enc + 64 * q);
    const T d = _mm512_loadu_si512(k[3]->enc + 64 * q);
    const T ab01 = _mm512_shuffle_i64x2(a, b, 0x44), ab23 = _mm512_shuffle_i64x2(a, b, 0xEE);
    const T cd01 = _mm512_shuffle_i64x2(c, d, 0x44), cd23 = _mm512_shuffle_i64x2(c, d, 0xEE);
    out[0] = _mm512_shuffle_i64x2(ab01, cd01, 0x88);
    out[1] = _mm512_shuffle_i64x2(ab01, cd01, 0xDD);
    out[2] = _mm512_shuffle_i64x2(ab23, cd23, 0x88);
    out[3] = _mm512_shuffle_i64x2(ab23, cd23, 0xDD);
  }
  ZT_VAES_TARGET static inline __attribute__((always_inline)) void store(void* p, T v) noexcept {
    _mm512_store_si512(p, v);
  }
  ZT_VAES_TARGET static inline __attribute__((always_inline)) void store_lane(std::uint8_t* out,
                                                                              T v, int i) noexcept {
    __m128i m;
    switch (i) {
      case 0: m = _mm512_castsi512_si128(v); break;
      case 1: m = _mm512_extracti32x4_epi32(v, 1); break;
      case 2: m = _mm512_extracti32x4_epi32(v, 2); break;
      default: m = _mm512_extracti32x4_epi32(v, 3); break;
    }
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), m);
  }
};
}  // namespace v512
#define ZT_VAES_NS v512
#include "cmac_vaes_kernel.inc"
#undef ZT_VAES_NS
#undef ZT_VAES_TARGET

// ---- 256-bit: 2 lanes per ymm, 8 registers (16 lanes) per group; VAES + AVX2 only ----------
#define ZT_VAES_TARGET __attribute__((target("aes,avx2,vaes")))
namespace v256 {
struct Vec {
  using T = __m256i;
  static constexpr int L = 2;
  static constexpr int kMaxRegs = 8;  // AVX2 has 16 ymm registers
  ZT_VAES_TARGET static inline __attribute__((always_inline)) T zero() noexcept {
    return _mm256_setzero_si256();
  }
  ZT_VAES_TARGET static inline __attribute__((always_inline)) T load_lanes(
      const std::uint8_t* const* p, std::uint32_t off) noexcept {
    const T v =
        _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p[0] + off)));
    return _mm256_inserti128_si256(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p[1] + off)), 1);
  }
  ZT_VAES_TARGET static inline __attribute__((always_inline)) T xor_(T a, T b) noexcept {
    return _mm256_xor_si256(a, b);
  }
  ZT_VAES_TARGET static inline __attribute__((always_inline)) T xor_(T a, const T* b) noexcept {
    return _mm256_xor_si256(a, _mm256_load_si256(b));
  }
  ZT_VAES_TARGET static inline __attribute__((always_inline)) T enc(T a, const T* k) noexcept {
    return _mm256_aesenc_epi128(a, _mm256_load_si256(k));
  }
  ZT_VAES_TARGET static inline __attribute__((always_inline)) T enclast(T a, const T* k) noexcept {
    return _mm256_aesenclast_epi128(a, _mm256_load_si256(k));
  }
  ZT_VAES_TARGET static inline __attribute__((always_inline)) T bcast(const void* p) noexcept {
    return _mm256_broadcastsi128_si256(_mm_load_si128(static_cast<const __m128i*>(p)));
  }
  // Round keys 2q, 2q+1 of the 2 lanes.
  ZT_VAES_TARGET static inline __attribute__((always_inline)) void transpose(
      const CachedKey* const* k, int q, T* out) noexcept {
    const T a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(k[0]->enc + 32 * q));
    const T b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(k[1]->enc + 32 * q));
    out[0] = _mm256_permute2x128_si256(a, b, 0x20);
    out[1] = _mm256_permute2x128_si256(a, b, 0x31);
  }
  ZT_VAES_TARGET static inline __attribute__((always_inline)) void store(void* p, T v) noexcept {
    _mm256_store_si256(static_cast<__m256i*>(p), v);
  }
  ZT_VAES_TARGET static inline __attribute__((always_inline)) void store_lane(std::uint8_t* out,
                                                                              T v, int i) noexcept {
    const __m128i m = i == 0 ? _mm256_castsi256_si128(v) : _mm256_extracti128_si256(v, 1);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), m);
  }
};
}  // namespace v256
#define ZT_VAES_NS v256
#include "cmac_vaes_kernel.inc"
#undef ZT_VAES_NS
#undef ZT_VAES_TARGET

bool cmac_kernel_supported(CmacKernel k) noexcept {
  static const bool vaes = [] {
    __builtin_cpu_init();
    // VAES from CPUID leaf 7 (ECX bit 9): clang 16 (the fuzz build) has no "vaes" for
    // __builtin_cpu_supports. AVX2 through the builtin, which also checks the OS saves the
    // YMM state (XGETBV), which VAES needs as well.
    unsigned a = 0, b = 0, c = 0, d = 0;
    const bool vaes_bit = __get_cpuid_count(7, 0, &a, &b, &c, &d) != 0 && (c & (1u << 9)) != 0;
    return aesni_cmac_supported() && vaes_bit && __builtin_cpu_supports("avx2");
  }();
  static const bool avx512 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
  }();
  switch (k) {
    case CmacKernel::aesni: return aesni_cmac_supported();
    case CmacKernel::vaes256: return vaes;
    case CmacKernel::vaes512: return vaes && avx512;
  }
  return false;
}

CmacKernel best_cmac_kernel() noexcept {
  if (cmac_kernel_supported(CmacKernel::vaes512)) return CmacKernel::vaes512;
  if (cmac_kernel_supported(CmacKernel::vaes256)) return CmacKernel::vaes256;
  return CmacKernel::aesni;
}

const char* to_string(CmacKernel k) noexcept {
  switch (k) {
    case CmacKernel::aesni: return "aesni";
    case CmacKernel::vaes256: return "vaes256";
    case CmacKernel::vaes512: return "vaes512";
  }
  return "?";
}

void vaes512_cmac(Alg alg, AesniLane* lanes, std::size_t count, AesniGroupDone on_group,
                  void* ctx) noexcept {
  if (count == 0) return;
  if (alg == Alg::aes128_cmac) v512::run_all<10>(lanes, count, on_group, ctx);
  else v512::run_all<14>(lanes, count, on_group, ctx);
}

void vaes256_cmac(Alg alg, AesniLane* lanes, std::size_t count, AesniGroupDone on_group,
                  void* ctx) noexcept {
  if (count == 0) return;
  if (alg == Alg::aes128_cmac) v256::run_all<10>(lanes, count, on_group, ctx);
  else v256::run_all<14>(lanes, count, on_group, ctx);
}

}  // namespace zt::crypto::detail
