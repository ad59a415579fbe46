#include "imb.hpp"

#include <string>

namespace zt::crypto::detail {

Result<ImbPtr> make_imb_manager(std::string_view arch) {
  ImbPtr m(alloc_mb_mgr(0));
  if (!m) return fail("IPsec-MB: out of memory allocating the multi-buffer manager");
  if (arch == "auto") {
    init_mb_mgr_auto(m.get(), nullptr);
  } else if (arch == "sse") {
    init_mb_mgr_sse(m.get());
  } else if (arch == "avx") {
    init_mb_mgr_avx(m.get());
  } else if (arch == "avx2") {
    init_mb_mgr_avx2(m.get());
  } else if (arch == "avx512") {
    init_mb_mgr_avx512(m.get());
  } else {
    return fail("unknown IPsec-MB arch '" + std::string(arch) +
                "'; use auto, sse, avx, avx2 or avx512");
  }
  if (const int err = imb_get_errno(m.get()); err != 0)
    return fail("IPsec-MB could not initialise the '" + std::string(arch) +
                "' manager on this CPU: " + imb_get_strerror(err) + " (try arch auto)");
  if (m->used_arch == IMB_ARCH_NONE || m->used_arch == IMB_ARCH_NOAESNI)
    return fail("IPsec-MB found no AES-NI on this CPU; ztgate needs AES-NI for tag verification");
  return m;
}

std::string_view imb_arch_name(const IMB_MGR* m) noexcept {
  switch (m->used_arch) {
    case IMB_ARCH_SSE: return "sse";
    case IMB_ARCH_AVX: return "avx";
    case IMB_ARCH_AVX2: return "avx2";
    case IMB_ARCH_AVX512: return "avx512";
    case IMB_ARCH_NOAESNI: return "no-aesni";
    default: return "none";
  }
}

}  // namespace zt::crypto::detail
