#include "zt/crypto/verifier.hpp"

#include <openssl/crypto.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "imb.hpp"

namespace zt::crypto {
namespace {

// Per-lane MAC input: body bytes 0-15, pseudo-header, covered L4. Rounded to a cache line.
constexpr std::size_t kLaneStride = (kMaxMacInputLen + 63) / 64 * 64;

struct FreeDeleter {
  void operator()(std::uint8_t* p) const noexcept { std::free(p); }
};

}  // namespace

struct Verifier::Impl {
  detail::ImbPtr mgr;
  detail::ImbPtr mgr_small;  // may be null: mgr takes every job
  std::size_t small_max_len = 0;
  std::string arch_name;
  std::unique_ptr<std::uint8_t, FreeDeleter> scratch;  // kMaxVerifyBurst * kLaneStride
  alignas(64) std::uint8_t macs[kMaxVerifyBurst][16];
  std::uint64_t mac_count = 0;
};

Verifier::Verifier(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Verifier::Verifier(Verifier&&) noexcept = default;
Verifier& Verifier::operator=(Verifier&&) noexcept = default;
Verifier::~Verifier() {
  if (impl_ && impl_->scratch) OPENSSL_cleanse(impl_->scratch.get(), kMaxVerifyBurst * kLaneStride);
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
    Tag t;
    r.reason = decode_tag_body(in[i].tag, t);
    if (r.reason != TagReject::none) continue;
    r.identity = t.fields.identity;
    r.coverage = t.fields.coverage;
    const CachedKey* key = nullptr;
    std::uint64_t epoch = 0;
    r.reason = ring.precheck(t.fields, in[i].hdr_allowed, clock, key, epoch);
    if (r.reason != TagReject::none) continue;
    r.epoch = epoch;
    std::uint8_t* buf = scratch + i * kLaneStride;
    const std::size_t len = build_mac_input(in[i].tag.first<16>(), t.fields.coverage, in[i].inner,
                                            std::span<std::uint8_t>(buf, kLaneStride));
    if (len == 0) {
      r.reason = TagReject::tag_too_long;
      continue;
    }
    const detail::LaneJob job{key, t.fields.alg, buf, len, impl_->macs[i],
                              static_cast<std::uint32_t>(i)};
    if (len <= small_max) ljs[n_small++] = job;
    else lj[n_jobs++] = job;
    // Until its MAC compares equal the lane counts as forged (fail closed).
    r.reason = TagReject::tag_forged_mac;
  }
  impl_->mac_count += n_jobs + n_small;

  // The replay filter is touched only for tags whose MAC compared equal (DESIGN.md §2 order): a
  // forged tag costs its MAC and nothing else, not three DRAM lines of a 146 MiB filter. The
  // authentic lanes' filter lines are prefetched as their MACs complete and checked after the
  // whole burst, so those misses overlap each other.
  std::uint32_t authentic = 0;  // bit per lane
  static_assert(kMaxVerifyBurst <= 32);
  auto done = [&](std::uint32_t lane, bool ok) noexcept {
    if (!ok) return;
    const std::uint8_t* claimed = in[lane].tag.data() + kTagMacOffset;
    if (CRYPTO_memcmp(impl_->macs[lane], claimed, kTagMacLen) != 0) return;
    out[lane].reason = TagReject::none;
    if (replay) {
      replay->prefetch(claimed);
      authentic |= std::uint32_t{1} << lane;
    }
  };
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
