#include <openssl/crypto.h>

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

struct MbCmac::Impl {
  detail::ImbPtr mgr;
};

MbCmac::MbCmac(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
MbCmac::MbCmac(MbCmac&&) noexcept = default;
MbCmac& MbCmac::operator=(MbCmac&&) noexcept = default;
MbCmac::~MbCmac() = default;

Result<MbCmac> MbCmac::create(std::string_view arch) {
  auto mgr = detail::make_imb_manager(arch);
  if (!mgr) return std::unexpected(mgr.error());
  auto impl = std::make_unique<Impl>();
  impl->mgr = std::move(*mgr);
  return MbCmac(std::move(impl));
}

std::string_view MbCmac::arch() const noexcept { return detail::imb_arch_name(impl_->mgr.get()); }

std::size_t MbCmac::compute(std::span<const CmacJob> jobs) noexcept {
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
