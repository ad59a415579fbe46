#include "zt/crypto/replay_filter.hpp"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <emmintrin.h>
#include <sys/mman.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

namespace zt::crypto {
namespace {

__extension__ typedef unsigned __int128 u128;

constexpr std::size_t kBlockWords = 8;
constexpr std::size_t kHugePage = 2u << 20;

inline std::uint64_t mum(std::uint64_t a, std::uint64_t b) noexcept {
  const u128 r = static_cast<u128>(a) * b;
  return static_cast<std::uint64_t>(r) ^ static_cast<std::uint64_t>(r >> 64);
}

// False-positive rate of one blocked filter holding n keys in `blocks` blocks of B bits, k bits
// per key: sum over the Poisson block load j of P(j) * (1 - (1 - 1/B)^(k j))^k.
double blocked_fp(double n, double blocks, unsigned k) noexcept {
  const double lambda = n / blocks;
  const double q = std::log1p(-1.0 / ReplayFilter::kBlockBits);
  const double spread = 12 * std::sqrt(lambda) + 60;
  const double jlo = std::max(0.0, std::floor(lambda - spread));
  const double jhi = lambda + spread;
  double sum = 0;
  for (double j = jlo; j <= jhi; ++j) {
    // Poisson(lambda) mass in log space: large loads would underflow exp(-lambda).
    const double logp = -lambda + j * std::log(lambda) - std::lgamma(j + 1);
    sum += std::exp(logp) * std::pow(1 - std::exp(q * k * j), k);
  }
  return sum;
}

}  // namespace

ReplayFilterSizing size_replay_filter(const ReplayFilterConfig& cfg) noexcept {
  const double n = std::max(1.0, cfg.packets_per_second * static_cast<double>(cfg.window_ns) / 1e9);
  auto best = [&](double blocks, unsigned& k_out) {
    double fp_best = 1;
    for (unsigned k = 1; k <= 32; ++k) {
      const double fp = ReplayFilter::kFilters * blocked_fp(n, blocks, k);
      if (fp < fp_best) {
        fp_best = fp;
        k_out = k;
      }
    }
    return fp_best;
  };
  // Binary search on the block count (the best achievable rate falls as blocks grow).
  std::size_t lo = 64, hi = 64;
  unsigned k = 1;
  while (best(static_cast<double>(hi), k) > cfg.false_drop_rate && hi < (std::size_t{1} << 34)) hi *= 2;
  while (lo < hi) {
    const std::size_t mid = lo + (hi - lo) / 2;
    if (best(static_cast<double>(mid), k) <= cfg.false_drop_rate) hi = mid;
    else lo = mid + 1;
  }
  ReplayFilterSizing s;
  s.blocks_per_filter = lo;
  s.false_drop_rate = best(static_cast<double>(lo), k);
  s.k = k;
  s.bytes = ReplayFilter::kFilters * lo * 64;
  return s;
}

Result<ReplayFilter> ReplayFilter::create(const ReplayFilterConfig& cfg) {
  std::array<std::uint8_t, 32> seed{};
  if (RAND_bytes(seed.data(), static_cast<int>(seed.size())) != 1)
    return fail("OpenSSL RAND_bytes failed: no entropy for the replay filter seed");
  auto r = create(cfg, seed);
  OPENSSL_cleanse(seed.data(), seed.size());
  return r;
}

Result<ReplayFilter> ReplayFilter::create(const ReplayFilterConfig& cfg,
                                          std::span<const std::uint8_t, 32> seed) {
  if (!(cfg.packets_per_second > 0)) return fail("replay filter packets_per_second must be > 0");
  if (cfg.window_ns <= 0) return fail("replay filter window must be > 0 ns");
  if (!(cfg.false_drop_rate > 0 && cfg.false_drop_rate < 1))
    return fail("replay filter false_drop_rate must be in (0, 1)");
  ReplayFilter f;
  f.sizing_ = size_replay_filter(cfg);
  if (f.sizing_.false_drop_rate > cfg.false_drop_rate)
    return fail("replay filter cannot reach the requested false-drop rate within 1 TiB");
  f.window_ns_ = cfg.window_ns;
  std::memcpy(f.seed_.data(), seed.data(), 32);
  const std::size_t bytes = (f.sizing_.bytes + kHugePage - 1) / kHugePage * kHugePage;
  void* p = std::aligned_alloc(kHugePage, bytes);
  if (!p)
    return fail("cannot allocate " + std::to_string(bytes >> 20) +
                " MiB for the replay filter; lower packets_per_second or raise false_drop_rate");
  // Transparent huge pages keep the random block accesses from missing the TLB as well.
  (void)madvise(p, bytes, MADV_HUGEPAGE);
  std::memset(p, 0, bytes);  // also faults every page in now, not on the fast path
  f.mem_ = static_cast<std::uint64_t*>(p);
  f.mem_bytes_ = bytes;
  return f;
}

ReplayFilter::ReplayFilter(ReplayFilter&& o) noexcept
    : sizing_(o.sizing_), window_ns_(o.window_ns_), newest_ns_(o.newest_ns_), period_at_(o.period_at_),
      period_of_(o.period_of_), seed_(o.seed_), mem_(o.mem_), mem_bytes_(o.mem_bytes_) {
  o.mem_ = nullptr;
  o.mem_bytes_ = 0;
}

ReplayFilter& ReplayFilter::operator=(ReplayFilter&& o) noexcept {
  if (this != &o) {
    this->~ReplayFilter();
    new (this) ReplayFilter(std::move(o));
  }
  return *this;
}

ReplayFilter::~ReplayFilter() {
  OPENSSL_cleanse(seed_.data(), sizeof seed_);
  std::free(mem_);
  mem_ = nullptr;
}

std::uint64_t ReplayFilter::period(std::int64_t now_ns) const noexcept {
  return now_ns <= 0 ? 0 : static_cast<std::uint64_t>(now_ns / window_ns_);
}

namespace {

// The k bit positions of a key inside its block: a multiplicative sequence from x, each step's
// top bits scaled to [0, kBlockBits). With k known at compile time the loop is unrolled (the
// sizing gives 8-16 for every rate the appliance configures; others take the generic loop).
constexpr std::uint64_t kStepMul = 0x9E3779B97F4A7C15ull, kStepAdd = 0xD1B54A32D192ED03ull;
[[gnu::always_inline]] inline void set_bit(std::uint64_t x, std::array<std::uint64_t, 8>& m) noexcept {
  const auto bit = static_cast<unsigned>((static_cast<u128>(x) * ReplayFilter::kBlockBits) >> 64);
  m[bit >> 6] |= std::uint64_t{1} << (bit & 63);
}
template <unsigned K>
void set_bits(std::uint64_t x, std::array<std::uint64_t, 8>& m) noexcept {
#pragma GCC unroll 16
  for (unsigned i = 0; i < K; ++i) {
    x = x * kStepMul + kStepAdd;
    set_bit(x, m);
  }
}

}  // namespace

ReplayFilter::Probe ReplayFilter::probe(const std::uint8_t* mac) const noexcept {
  std::uint64_t lo, hi;
  std::memcpy(&lo, mac, 8);
  std::memcpy(&hi, mac + 8, 8);
  const std::uint64_t h = mum(lo ^ seed_[0], hi ^ seed_[1]);
  std::uint64_t x = mum(h ^ seed_[2], (lo + hi) ^ seed_[3]);
  Probe pr;
  pr.block = static_cast<std::size_t>(
      (static_cast<u128>(h) * sizing_.blocks_per_filter) >> 64);
  pr.mask = {};
  switch (sizing_.k) {
    case 8: set_bits<8>(x, pr.mask); break;
    case 9: set_bits<9>(x, pr.mask); break;
    case 10: set_bits<10>(x, pr.mask); break;
    case 11: set_bits<11>(x, pr.mask); break;
    case 12: set_bits<12>(x, pr.mask); break;
    case 13: set_bits<13>(x, pr.mask); break;
    case 14: set_bits<14>(x, pr.mask); break;
    case 15: set_bits<15>(x, pr.mask); break;
    case 16: set_bits<16>(x, pr.mask); break;
    default:
      for (unsigned i = 0; i < sizing_.k; ++i) {
        x = x * kStepMul + kStepAdd;
        set_bit(x, pr.mask);
      }
  }
  return pr;
}

void ReplayFilter::prefetch(const std::uint8_t* mac) const noexcept {
  // Only the block (the first multiply of probe()); the bit mask is computed at the check.
  std::uint64_t lo, hi;
  std::memcpy(&lo, mac, 8);
  std::memcpy(&hi, mac + 8, 8);
  const std::uint64_t h = mum(lo ^ seed_[0], hi ^ seed_[1]);
  const auto block = static_cast<std::size_t>((static_cast<u128>(h) * sizing_.blocks_per_filter) >> 64);
  const std::uint64_t* b = mem_ + block * kFilters * kBlockWords;
  for (std::size_t f = 0; f < kFilters; ++f) __builtin_prefetch(b + f * kBlockWords, 1, 3);
}

namespace {

// Whether every bit of `m` is set in block `b` of period `stamp`: the stamp first (a block of
// another period reads as empty), then the 64 bytes as four SSE2 words (mask AND NOT block).
inline bool block_has(const std::uint64_t* b, const std::array<std::uint64_t, 8>& m,
                      std::uint32_t stamp) noexcept {
  if (static_cast<std::uint32_t>(b[7] >> 32) != stamp) return false;
  const auto* bv = reinterpret_cast<const __m128i*>(b);
  const auto* mv = reinterpret_cast<const __m128i*>(m.data());
  __m128i miss = _mm_andnot_si128(_mm_load_si128(bv), _mm_loadu_si128(mv));
  miss = _mm_or_si128(miss, _mm_andnot_si128(_mm_load_si128(bv + 1), _mm_loadu_si128(mv + 1)));
  miss = _mm_or_si128(miss, _mm_andnot_si128(_mm_load_si128(bv + 2), _mm_loadu_si128(mv + 2)));
  miss = _mm_or_si128(miss, _mm_andnot_si128(_mm_load_si128(bv + 3), _mm_loadu_si128(mv + 3)));
  return _mm_movemask_epi8(_mm_cmpeq_epi8(miss, _mm_setzero_si128())) == 0xFFFF;
}

// Filter of period p - back, for p mod 3 = r: kBackFilter[r][back] = (r - back) mod 3.
constexpr std::uint8_t kBackFilter[3][3] = {{0, 2, 1}, {1, 0, 2}, {2, 1, 0}};

}  // namespace

bool ReplayFilter::contains(std::span<const std::uint8_t, 16> mac,
                            std::int64_t now_ns) const noexcept {
  return recorded(probe(mac.data()), period(now_ns));
}

bool ReplayFilter::recorded(const Probe& pr, std::uint64_t p) const noexcept {
  const std::uint64_t* group = mem_ + pr.block * kFilters * kBlockWords;
  const std::uint8_t* f = kBackFilter[p % kFilters];
  for (std::uint64_t back = 0; back < kFilters && back <= p; ++back)
    if (block_has(group + f[back] * kBlockWords, pr.mask, static_cast<std::uint32_t>(p - back))) return true;
  return false;
}

bool ReplayFilter::check_and_insert(std::span<const std::uint8_t, 16> mac,
                                    std::int64_t now_ns) noexcept {
  const Probe pr = probe(mac.data());
  // A burst checks all its tags at one time: the period (a 64-bit division) once per time.
  if (now_ns != period_at_) period_at_ = now_ns, period_of_ = period(now_ns);
  const std::uint64_t p = period_of_;
  if (recorded(pr, p)) return true;
  std::uint64_t* b = line(pr.block, p);
  const auto stamp = static_cast<std::uint32_t>(p);
  if (static_cast<std::uint32_t>(b[7] >> 32) != stamp) {
    for (std::size_t w = 0; w < kBlockWords; ++w) b[w] = 0;
    b[7] = std::uint64_t{stamp} << 32;
  }
  auto* bv = reinterpret_cast<__m128i*>(b);
  const auto* mv = reinterpret_cast<const __m128i*>(pr.mask.data());
  for (int w = 0; w < 4; ++w)
    _mm_store_si128(bv + w, _mm_or_si128(_mm_load_si128(bv + w), _mm_loadu_si128(mv + w)));
  if (now_ns > newest_ns_) newest_ns_ = now_ns;
  return false;
}

}  // namespace zt::crypto
