// Private IPsec-MB helpers: one place that allocates and initialises a manager.
#pragma once

#include <intel-ipsec-mb.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "zt/crypto/cached_key.hpp"
#include "zt/crypto/error.hpp"

namespace zt::crypto::detail {

struct ImbDeleter {
  void operator()(IMB_MGR* m) const noexcept { free_mb_mgr(m); }
};
using ImbPtr = std::unique_ptr<IMB_MGR, ImbDeleter>;

// arch: "auto", "sse", "avx", "avx2", "avx512".
Result<ImbPtr> make_imb_manager(std::string_view arch);
std::string_view imb_arch_name(const IMB_MGR* m) noexcept;

struct LaneJob {
  const CachedKey* key;
  Alg alg;
  const std::uint8_t* src;
  std::size_t len;
  std::uint8_t* out;  // 16 bytes
  std::uint32_t lane;
};

inline constexpr std::size_t kMaxLaneJobs = 32;

// Submits n <= 32 AES-CMAC jobs (one key per lane) as one asynchronous burst, flushes, and calls
// on_done(lane, completed_ok) for each job the manager returns. The manager's queue is empty
// before and after. Returns the number of jobs returned.
template <class F>
inline std::size_t run_cmac_jobs(IMB_MGR* mgr, const LaneJob* lj, std::size_t n,
                                 F&& on_done) noexcept {
  IMB_JOB* jobs[kMaxLaneJobs];
  if (n == 0) return 0;
  if (n > kMaxLaneJobs) n = kMaxLaneJobs;
  const std::size_t got = IMB_GET_NEXT_BURST(mgr, static_cast<std::uint32_t>(n), jobs);
  if (got < n) return 0;  // cannot happen with an empty queue; callers fail closed
  for (std::size_t j = 0; j < n; ++j) {
    IMB_JOB* job = jobs[j];
    job->cipher_mode = IMB_CIPHER_NULL;
    job->cipher_direction = IMB_DIR_ENCRYPT;
    job->chain_order = IMB_ORDER_HASH_CIPHER;
    job->hash_alg = lj[j].alg == Alg::aes128_cmac ? IMB_AUTH_AES_CMAC : IMB_AUTH_AES_CMAC_256;
    job->key_len_in_bytes = key_len(lj[j].alg);
    job->src = lj[j].src;
    job->hash_start_src_offset_in_bytes = 0;
    job->msg_len_to_hash_in_bytes = lj[j].len;
    job->u.CMAC._key_expanded = lj[j].key->enc;
    job->u.CMAC._skey1 = lj[j].key->k1;
    job->u.CMAC._skey2 = lj[j].key->k2;
    job->auth_tag_output = lj[j].out;
    job->auth_tag_output_len_in_bytes = 16;
    job->user_data = reinterpret_cast<void*>(static_cast<std::uintptr_t>(lj[j].lane));
  }
  std::size_t done = IMB_SUBMIT_BURST_NOCHECK(mgr, static_cast<std::uint32_t>(n), jobs);
  if (done < n) done += IMB_FLUSH_BURST(mgr, static_cast<std::uint32_t>(n - done), jobs + done);
  for (std::size_t j = 0; j < done; ++j) {
    const auto lane =
        static_cast<std::uint32_t>(reinterpret_cast<std::uintptr_t>(jobs[j]->user_data));
    on_done(lane, jobs[j]->status == IMB_STATUS_COMPLETED);
  }
  return done;
}

}  // namespace zt::crypto::detail
