#include "zt/crypto/verifier.hpp"

#include <openssl/crypto.h>
#include <emmintrin.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "cmac_aesni.hpp"
#include "imb.hpp"

namespace zt::crypto {
namespace {

// Per-lane MAC input: body bytes 0-15, pseudo-header, covered L4. Rounded to a cache line.
constexpr std::size_t kLaneStride = (kMaxMacInputLen + 63) / 64 * 64;
// An own-kernel lane's head buffer: tag fields + pseudo-header, and, when the whole message fits
// (at most kHeadCap bytes: an IPv4 HDR tag, a FULL one with up to 96 L4 bytes), the covered L4's
// complete blocks and the finalised last block behind them, so the lane runs in one phase.
constexpr std::size_t kHeadCap = 128;
static_assert(kHeadCap >= 16 + kMaxPseudoHeaderLen);

// Constant-time 16-byte compare (as CRYPTO_memcmp, without the call): all 16 bytes compared at
// once (SSE2 PCMPEQB + PMOVMSKB), no early exit on the first differing byte.
inline bool mac_equal(const std::uint8_t* a, const std::uint8_t* b) noexcept {
  const __m128i eq = _mm_cmpeq_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a)),
                                    _mm_loadu_si128(reinterpret_cast<const __m128i*>(b)));
  return _mm_movemask_epi8(eq) == 0xFFFF;
}

struct FreeDeleter {
  void operator()(std::uint8_t* p) const noexcept { std::free(p); }
};

}  // namespace

struct Verifier::Impl {
  detail::ImbPtr mgr;
  detail::ImbPtr mgr_small;  // may be null: mgr takes every job
  std::size_t small_max_len = 0;
  std::size_t aesni_max_len = 0;  // 0: every MAC through IPsec-MB
  detail::CmacKernel kernel = detail::CmacKernel::aesni;
  std::string arch_name;
  std::unique_ptr<std::uint8_t, FreeDeleter> scratch;  // kMaxVerifyBurst * kLaneStride
  alignas(64) std::uint8_t macs[kMaxVerifyBurst][16];
  // AES-NI lanes: tag fields + pseudo-header (the covered L4 is read in place), final block.
  alignas(64) std::uint8_t head[kMaxVerifyBurst][kHeadCap];
  alignas(64) std::uint8_t last[kMaxVerifyBurst][16];
  std::uint64_t mac_count = 0;
};

Verifier::Verifier(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Verifier::Verifier(Verifier&&) noexcept = default;
Verifier& Verifier::operator=(Verifier&&) noexcept = default;
Verifier::~Verifier() {
  if (impl_ && impl_->scratch) OPENSSL_cleanse(impl_->scratch.get(), kMaxVerifyBurst * kLaneStride);
  if (impl_) {
    OPENSSL_cleanse(impl_->head, sizeof impl_->head);
    OPENSSL_cleanse(impl_->last, sizeof impl_->last);
  }
}

Result<Verifier> Verifier::create(const VerifierConfig& cfg) {
  auto impl = std::make_unique<Impl>();
  auto mgr = detail::make_imb_manager(cfg.arch);
  if (!mgr) return std::unexpected(mgr.error());
  impl->mgr = std::move(*mgr);
  impl->arch_name = std::string(detail::imb_arch_name(impl->mgr.get()));
  if (cfg.arch == "auto" && !cfg.small_arch.empty() && impl->mgr->used_arch == IMB_ARCH_AVX512) {
    auto small = detail::make_imb_manager(cfg.small_arch);
    if (!small) return std::unexpected(small.error());
    impl->mgr_small = std::move(*small);
    impl->small_max_len = cfg.small_max_len;
    impl->arch_name += "+" + std::string(detail::imb_arch_name(impl->mgr_small.get()));
  }
  if (cfg.kernel != "auto" && cfg.kernel != "aesni" && cfg.kernel != "vaes256" &&
      cfg.kernel != "vaes512")
    return fail("verifier kernel '" + std::string(cfg.kernel) +
                "' unknown: use auto, aesni, vaes256 or vaes512");
  if (cfg.arch == "auto" && cfg.aesni_max_len > 0 && detail::aesni_cmac_supported()) {
    impl->aesni_max_len = cfg.aesni_max_len;
    impl->kernel = detail::best_cmac_kernel();
    for (auto k : {detail::CmacKernel::aesni, detail::CmacKernel::vaes256,
                   detail::CmacKernel::vaes512})
      if (cfg.kernel == detail::to_string(k)) impl->kernel = k;
    if (!detail::cmac_kernel_supported(impl->kernel))
      return fail("verifier kernel '" + std::string(cfg.kernel) +
                  "': this CPU lacks the instructions it needs (vaes256: VAES + AVX2; vaes512: "
                  "VAES + AVX-512F/VL); use auto");
    const std::string k = impl->kernel == detail::CmacKernel::aesni
                              ? std::string("aesni")
                              : "aesni-" + std::string(detail::to_string(impl->kernel));
    impl->arch_name = k + "<=" + std::to_string(cfg.aesni_max_len) + "+" + impl->arch_name;
  }
  auto* s = static_cast<std::uint8_t*>(std::aligned_alloc(64, kMaxVerifyBurst * kLaneStride));
  if (!s) return fail("out of memory allocating the verifier's per-lane scratch");
  std::memset(s, 0, kMaxVerifyBurst * kLaneStride);
  impl->scratch.reset(s);
  return Verifier(std::move(impl));
}

std::string_view Verifier::arch() const noexcept { return impl_->arch_name; }
std::uint64_t Verifier::mac_count() const noexcept { return impl_->mac_count; }

std::size_t Verifier::verify_burst(const KeyRing& ring, std::int64_t now_ns,
                                   std::span<const VerifyInput> in, std::span<VerifyResult> out,
                                   ReplayFilter* replay) noexcept {
  std::size_t n = in.size() < out.size() ? in.size() : out.size();
  if (n > kMaxVerifyBurst) n = kMaxVerifyBurst;
  IMB_MGR* const mgr = impl_->mgr.get();
  std::uint8_t* const scratch = impl_->scratch.get();

  detail::LaneJob lj[kMaxVerifyBurst];   // long inputs, filled from the front
  detail::LaneJob ljs[kMaxVerifyBurst];  // short inputs (second manager)
  std::size_t n_jobs = 0;
  std::size_t n_small = 0;
  detail::AesniLane al[2][kMaxVerifyBurst];  // own AES-NI kernel, per algorithm
  std::size_t n_al[2] = {0, 0};
  std::uint32_t al_lanes = 0;  // bit per lane sent to the AES-NI kernel
  const std::size_t aesni_max = impl_->aesni_max_len;
  const std::size_t small_max = impl_->mgr_small ? impl_->small_max_len : 0;
  // Time never runs back past the newest time the filter recorded a MAC at: after a step back of
  // the caller's clock, a tag accepted before it could otherwise pass again, judged fresh at a
  // time whose periods the filter no longer checks (crypto/README.md "Replay filter").
  if (replay != nullptr && now_ns < replay->newest_ns()) now_ns = replay->newest_ns();
  KeyRing::Clock clock = ring.clock(now_ns);
  if (replay != nullptr && replay->window_ns() < clock.window_ns) clock.window_ns = replay->window_ns();

  for (std::size_t i = 0; i < n; ++i) {
    VerifyResult& r = out[i];
    r = VerifyResult{};
    TagFields f;  // the MAC stays in the packet (read there by the compare)
    r.reason = decode_tag_fields(in[i].tag, f);
    if (r.reason != TagReject::none) continue;
    r.identity = f.identity;
    r.coverage = f.coverage;
    const CachedKey* key = nullptr;
    std::uint64_t epoch = 0;
    r.reason = ring.precheck(f, in[i].hdr_allowed, clock, key, epoch);
    if (r.reason != TagReject::none) continue;
    r.epoch = epoch;
    // The MAC input: tag bytes 0-15, pseudo-header, covered L4 (DESIGN.md §2). The head (tag
    // fields + pseudo-header) is written for every lane; only the AES-NI lanes use it.
    std::uint8_t* head = impl_->head[i];
    const std::size_t ph = write_pseudo_header(
        in[i].inner, std::span<std::uint8_t, kMaxPseudoHeaderLen>(head + 16, kMaxPseudoHeaderLen));
    const std::size_t l4n = covered_l4_len(f.coverage, in[i].inner.l4.size());
    if (ph == 0 || l4n > kMaxCoveredL4Len) {
      r.reason = TagReject::tag_too_long;
      continue;
    }
    if (16 + ph + l4n <= aesni_max) {
      // Own AES-NI CMAC: only the head is assembled; the covered L4 is read where it lies (the
      // pseudo-header ends on a block boundary), and its final block is finalised apart.
      std::memcpy(head, in[i].tag.data(), 16);
      const auto hb = static_cast<std::uint32_t>((16 + ph) / 16);
      detail::AesniLane lane;
      lane.key = key;
      lane.head = head;
      lane.out = impl_->macs[i];
      if (l4n == 0) {  // the pseudo-header's last block is the message's (complete: XOR K1), in place
        std::uint8_t* const lb = head + 16 * (hb - 1);
        detail::cmac_last_block(*key, lb, 16, lb);
        lane.body = nullptr;
        lane.last = lb;
        lane.head_blocks = lane.n = hb;
      } else if (const std::uint32_t nb = hb + detail::cmac_blocks(l4n); 16 * std::size_t{nb} <= kHeadCap) {
        // A short message whole in the head: the L4's complete blocks copied behind the
        // pseudo-header, the last block finalised in place (one phase in the kernel, no events).
        const std::uint8_t* const l4 = in[i].inner.l4.data();
        std::uint8_t* const lb = head + 16 * (nb - 1);
        for (std::uint32_t b = 0; b + hb + 1 < nb; ++b) std::memcpy(head + 16 * (hb + b), l4 + 16 * b, 16);
        detail::cmac_last_block(*key, l4, l4n, lb);
        lane.body = nullptr;
        lane.last = lb;
        lane.head_blocks = lane.n = nb;
      } else {
        std::uint8_t* last = impl_->last[i];
        detail::cmac_last_block(*key, in[i].inner.l4.data(), l4n, last);
        lane.body = in[i].inner.l4.data();
        lane.last = last;
        lane.head_blocks = hb;
        lane.n = hb + detail::cmac_blocks(l4n);
      }
      const auto a = static_cast<std::size_t>(f.alg);
      al[a][n_al[a]++] = lane;
      al_lanes |= std::uint32_t{1} << i;
      r.reason = TagReject::tag_forged_mac;
      continue;
    }
    std::uint8_t* buf = scratch + i * kLaneStride;
    const std::size_t len = build_mac_input(in[i].tag.first<16>(), f.coverage, in[i].inner,
                                            std::span<std::uint8_t>(buf, kLaneStride));
    if (len == 0) {
      r.reason = TagReject::tag_too_long;
      continue;
    }
    const detail::LaneJob job{key, f.alg, buf, len, impl_->macs[i],
                              static_cast<std::uint32_t>(i)};
    if (len <= small_max) ljs[n_small++] = job;
    else lj[n_jobs++] = job;
    // Until its MAC compares equal the lane counts as forged (fail closed).
    r.reason = TagReject::tag_forged_mac;
  }
  impl_->mac_count += n_jobs + n_small + n_al[0] + n_al[1];

  // The replay filter is touched only for tags whose MAC compared equal (DESIGN.md §2 order): a
  // forged tag costs its MAC and nothing else, not three DRAM lines of a 146 MiB filter. The
  // authentic lanes' filter lines are prefetched as their MACs complete and checked after the
  // whole burst, so those misses overlap each other.
  std::uint32_t authentic = 0;  // bit per lane
  static_assert(kMaxVerifyBurst <= 32);
  auto done = [&](std::uint32_t lane, bool ok) noexcept {
    if (!ok) return;
    const std::uint8_t* claimed = in[lane].tag.data() + kTagMacOffset;
    if (!mac_equal(impl_->macs[lane], claimed)) return;
    out[lane].reason = TagReject::none;
    if (replay) {
      replay->prefetch(claimed);
      authentic |= std::uint32_t{1} << lane;
    }
  };
  if (al_lanes != 0) {
    // Each group of <= 8 lanes is compared (and its authentic lanes' filter lines prefetched) as
    // soon as its MACs are out, so those misses overlap the next groups' AES rounds.
    struct Ctx {
      decltype(done)* on_done;
      const std::uint8_t* macs0;
    } ctx{&done, impl_->macs[0]};
    auto on_group = [](void* c, const detail::AesniLane* g, std::size_t w) noexcept {
      auto* x = static_cast<Ctx*>(c);
      for (std::size_t j = 0; j < w; ++j)
        (*x->on_done)(static_cast<std::uint32_t>((g[j].out - x->macs0) / 16), true);
    };
    detail::lane_cmac(impl_->kernel, Alg::aes128_cmac, al[0], n_al[0], on_group, &ctx);
    detail::lane_cmac(impl_->kernel, Alg::aes256_cmac, al[1], n_al[1], on_group, &ctx);
  }
  if (n_small) detail::run_cmac_jobs(impl_->mgr_small.get(), ljs, n_small, done);
  if (n_jobs) detail::run_cmac_jobs(mgr, lj, n_jobs, done);
  // In lane order: of two copies of one tag in a burst, the first one passes.
  while (authentic != 0) {
    const auto lane = static_cast<std::size_t>(__builtin_ctz(authentic));
    authentic &= authentic - 1;
    const std::uint8_t* claimed = in[lane].tag.data() + kTagMacOffset;
    if (replay->check_and_insert(std::span<const std::uint8_t, 16>(claimed, 16), now_ns))
      out[lane].reason = TagReject::tag_replayed;
  }
  return n;
}

}  // namespace zt::crypto
