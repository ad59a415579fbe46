#include <openssl/crypto.h>

#include "cmac_aesni.hpp"
#include "imb.hpp"
#include "zt/crypto/cached_key.hpp"

namespace zt::crypto {

Result<CachedKey> expand_cmac_key(std::span<const std::uint8_t> key) {
  if (key.size() != 16 && key.size() != 32)
    return fail("AES-CMAC key must be 16 or 32 bytes, got " + std::to_string(key.size()));
  auto mgr = detail::make_imb_manager("auto");
  if (!mgr) return std::unexpected(mgr.error());
  CachedKey ck{};
  alignas(16) std::uint8_t dec[15 * 16];
  if (key.size() == 16) {
    IMB_AES_KEYEXP_128(mgr->get(), key.data(), ck.enc, dec);
    IMB_AES_CMAC_SUBKEY_GEN_128(mgr->get(), ck.enc, ck.k1, ck.k2);
  } else {
    IMB_AES_KEYEXP_256(mgr->get(), key.data(), ck.enc, dec);
    IMB_AES_CMAC_SUBKEY_GEN_256(mgr->get(), ck.enc, ck.k1, ck.k2);
  }
  OPENSSL_cleanse(dec, sizeof dec);
  return ck;
}

namespace {

// An own kernel on caller messages (read in place; only the final block is copied).
std::size_t compute_own(detail::CmacKernel kernel, std::span<const CmacJob> jobs) noexcept {
  const std::size_t n = jobs.size() < detail::kMaxLaneJobs ? jobs.size() : detail::kMaxLaneJobs;
  detail::AesniLane lanes[2][detail::kMaxLaneJobs];
  std::size_t cnt[2] = {0, 0};
  alignas(16) std::uint8_t last[detail::kMaxLaneJobs][16];
  for (std::size_t i = 0; i < n; ++i) {
    const CmacJob& j = jobs[i];
    if (!j.key || !j.out || j.msg.size() > 0xFFFF) return 0;
    detail::cmac_last_block(*j.key, j.msg.data(), j.msg.size(), last[i]);
    const auto a = static_cast<std::size_t>(j.alg);
    const std::uint32_t nb = detail::cmac_blocks(j.msg.size());
    lanes[a][cnt[a]++] = detail::AesniLane{j.key, j.msg.data(), nullptr, last[i], nb - 1, nb, j.out};
  }
  detail::kernel_cmac(kernel, Alg::aes128_cmac, lanes[0], cnt[0]);
  detail::kernel_cmac(kernel, Alg::aes256_cmac, lanes[1], cnt[1]);
  OPENSSL_cleanse(last, sizeof last);
  return n;
}

}  // namespace

struct MbCmac::Impl {
  detail::ImbPtr mgr;  // null for the own kernels (aesni, vaes256, vaes512)
  detail::CmacKernel kernel = detail::CmacKernel::aesni;
};

MbCmac::MbCmac(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
MbCmac::MbCmac(MbCmac&&) noexcept = default;
MbCmac& MbCmac::operator=(MbCmac&&) noexcept = default;
MbCmac::~MbCmac() = default;

Result<MbCmac> MbCmac::create(std::string_view arch) {
  if (arch == "aesni") {
    if (!detail::aesni_cmac_supported())
      return fail("arch aesni: this CPU lacks AES-NI or AVX; use an IPsec-MB arch (auto)");
    return MbCmac(std::make_unique<Impl>());
  }
  for (auto k : {detail::CmacKernel::vaes256, detail::CmacKernel::vaes512}) {
    if (arch != detail::to_string(k)) continue;
    if (!detail::cmac_kernel_supported(k))
      return fail("arch " + std::string(arch) + ": this CPU lacks " +
                  (k == detail::CmacKernel::vaes256 ? "VAES or AVX2" : "VAES or AVX-512F/VL") +
                  "; use aesni or an IPsec-MB arch (auto)");
    auto impl = std::make_unique<Impl>();
    impl->kernel = k;
    return MbCmac(std::move(impl));
  }
  auto mgr = detail::make_imb_manager(arch);
  if (!mgr) return std::unexpected(mgr.error());
  auto impl = std::make_unique<Impl>();
  impl->mgr = std::move(*mgr);
  return MbCmac(std::move(impl));
}

std::string_view MbCmac::arch() const noexcept {
  return impl_->mgr ? detail::imb_arch_name(impl_->mgr.get())
                     : std::string_view{detail::to_string(impl_->kernel)};
}

std::size_t MbCmac::compute(std::span<const CmacJob> jobs) noexcept {
  if (!impl_->mgr) return compute_own(impl_->kernel, jobs);
  detail::LaneJob lj[detail::kMaxLaneJobs];
  const std::size_t n = jobs.size() < detail::kMaxLaneJobs ? jobs.size() : detail::kMaxLaneJobs;
  for (std::size_t i = 0; i < n; ++i) {
    if (!jobs[i].key || !jobs[i].out || jobs[i].msg.size() > 0xFFFF) return 0;
    // IPsec-MB reads from src even for an empty message: never hand it a null pointer.
    static const std::uint8_t kEmpty[16] = {};
    const std::uint8_t* src = jobs[i].msg.empty() ? kEmpty : jobs[i].msg.data();
    lj[i] = detail::LaneJob{jobs[i].key, jobs[i].alg, src, jobs[i].msg.size(),
                            jobs[i].out, static_cast<std::uint32_t>(i)};
  }
  std::size_t ok = 0;
  detail::run_cmac_jobs(impl_->mgr.get(), lj, n, [&](std::uint32_t, bool good) noexcept {
    ok += good ? 1 : 0;
  });
  return ok;
}

}  // namespace zt::crypto
