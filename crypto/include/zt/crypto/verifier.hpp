// Batched tag verification on a worker lcore (DESIGN.md §2, §4): up to 32 tags per call, one key
// per lane; short MAC inputs through ztgate's own multi-lane CMAC (VAES or AES-NI, chosen at run time by
// CPU feature), longer ones through IPsec-MB's multi-buffer AES-CMAC; constant-time compare,
// per-packet verdict.
//
// One Verifier per lcore (it owns IPsec-MB managers and per-lane scratch; it is not thread
// safe). The key ring is passed per burst (the dataplane reads it under RCU) and so is the time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "zt/crypto/error.hpp"
#include "zt/crypto/key_ring.hpp"
#include "zt/crypto/replay_filter.hpp"
#include "zt/crypto/tag_codec.hpp"

namespace zt::crypto {

inline constexpr std::size_t kMaxVerifyBurst = 32;
// Longest MAC input the Verifier gives its own AES-NI CMAC by default (measured cut-off,
// crypto/README.md "Own AES-NI CMAC").
inline constexpr std::size_t kDefaultAesniMaxLen = 256;

struct VerifyInput {
  std::span<const std::uint8_t> tag;  // the option body (32 bytes; shorter is tag_truncated)
  InnerView inner;                    // what the MAC binds of the inner packet
  bool hdr_allowed = false;           // the destination's policy accepts HDR coverage
};

struct VerifyResult {
  TagReject reason = TagReject::none;  // none: authentic, fresh and (with a filter) not a replay
  std::uint32_t identity = 0;          // as the tag claims (authenticated only when reason none)
  std::uint64_t epoch = 0;             // full epoch number the tag resolved to
  Coverage coverage = Coverage::full;
};

struct VerifierConfig {
  std::string_view arch = "auto";  // IPsec-MB manager: auto, sse, avx, avx2, avx512
  // Short MAC inputs (<= small_max_len bytes: every HDR tag, FULL tags of minimal packets) go to a
  // second manager of this arch: on VAES/AVX-512 CPUs the 8-lane AVX CMAC beats the 16-lane one
  // on 3-4-block inputs, the 16-lane one wins on long inputs. "" = one manager for everything.
  // Used only when `arch` is auto and resolved to avx512.
  std::string_view small_arch = "avx";
  std::size_t small_max_len = 96;
  // MAC inputs of at most this many bytes go to ztgate's own multi-lane AES-NI CMAC
  // (crypto/README.md "Own AES-NI CMAC") instead of IPsec-MB, when `arch` is auto and the CPU
  // has AES-NI and AVX (checked at run time; otherwise IPsec-MB takes everything). 0 = off.
  std::size_t aesni_max_len = kDefaultAesniMaxLen;
  // Which own kernel takes those inputs: "auto" (the fastest this CPU has: vaes512, else
  // vaes256, else aesni; crypto/README.md "VAES kernel"), or "aesni", "vaes256", "vaes512"
  // (create fails when the CPU lacks what that one needs).
  std::string_view kernel = "auto";
};

class Verifier {
 public:
  static Result<Verifier> create(const VerifierConfig& cfg = {});
  Verifier(Verifier&&) noexcept;
  Verifier& operator=(Verifier&&) noexcept;
  ~Verifier();

  // Verifies min(in.size(), out.size(), 32) tags and returns that count; out[i] is the verdict of
  // in[i]. Order of checks per tag, cheapest first, so a bad tag costs at most one MAC: decode
  // (version, algorithm, flags, length) -> ring.precheck (identity, algorithm policy, coverage,
  // epoch, time window, key loaded, identity known) -> CMAC (batched) -> constant-time compare ->
  // replay filter (when given; only authentic tags are recorded). No allocation, no locks, no
  // syscalls. With a filter, tags are judged at max(now_ns, replay->newest_ns()): a clock that
  // steps back holds at the newest time a tag was accepted until it passes it again, so no copy
  // of an accepted tag can look fresh at a time the filter has forgotten.
  std::size_t verify_burst(const KeyRing& ring, std::int64_t now_ns,
                           std::span<const VerifyInput> in, std::span<VerifyResult> out,
                           ReplayFilter* replay = nullptr) noexcept;

  // e.g. "aesni-vaes512<=256+avx512+avx" (own kernel for inputs <= 256 bytes, then the IPsec-MB
  // managers), "aesni<=256+avx512+avx" (the 128-bit kernel) or "avx512+avx" (IPsec-MB only).
  std::string_view arch() const noexcept;
  // MACs computed since creation (per lcore; proves bad input costs at most one MAC).
  std::uint64_t mac_count() const noexcept;

 private:
  struct Impl;
  explicit Verifier(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

}  // namespace zt::crypto
