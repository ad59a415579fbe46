// The appliance's key ring (DESIGN.md §2): epoch secrets for up to three epochs (normally e-1, e,
// e+1) and, for every known identity, the ready-to-use CMAC key material of K(i, e) per accepted
// algorithm (expanded AES key + CMAC subkeys K1/K2), so verification costs a lookup, never a key
// schedule.
//
// A KeyRing is immutable once built. The control side builds a new one for every change (new
// epoch, new identities, re-key) and publishes it; the dataplane swaps the pointer under RCU.
// All key material is wiped (OPENSSL_cleanse) when the ring is destroyed.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "zt/crypto/cached_key.hpp"
#include "zt/crypto/error.hpp"
#include "zt/crypto/keys.hpp"
#include "zt/crypto/tag_codec.hpp"

namespace zt::crypto {

inline constexpr std::int64_t kNsPerSec = 1'000'000'000;

// Times are ns in the clock domain of the `now` the caller passes (normally CLOCK_REALTIME as
// agreed with the senders over PTP/NTP).
struct EpochPolicy {
  std::int64_t origin_ns = 0;                       // start of epoch 0
  std::int64_t length_ns = 15 * 60 * kNsPerSec;     // epoch length
  std::int64_t grace_ns = 5 * kNsPerSec;            // e-1 still accepted after the boundary
  std::int64_t accept_ahead_ns = 1 * kNsPerSec;     // e+1 accepted before its start (clock skew)
  std::int64_t time_window_ns = 1 * kNsPerSec;      // |tag time - now| <= window
  bool accept_aes128 = true;                        // false: AES-256-CMAC only
};

class KeyRing {
 public:
  // Builds a ring from up to three epoch secrets (distinct epochs) and the identities the policy
  // knows (each >= 256, no duplicates). Errors name the offending input.
  static Result<std::shared_ptr<const KeyRing>> build(const EpochPolicy& policy,
                                                      std::span<const EpochSecret> secrets,
                                                      std::span<const std::uint32_t> identities);

  KeyRing(const KeyRing&) = delete;
  KeyRing& operator=(const KeyRing&) = delete;
  ~KeyRing();

  const EpochPolicy& policy() const noexcept { return policy_; }
  std::size_t identity_count() const noexcept { return n_ids_; }
  bool has_epoch(std::uint64_t epoch) const noexcept;

  // Epoch containing `now_ns` (-1 before the origin) and the start time of an epoch.
  std::int64_t epoch_at(std::int64_t now_ns) const noexcept;
  std::int64_t epoch_start(std::uint64_t epoch) const noexcept {
    return policy_.origin_ns + static_cast<std::int64_t>(epoch) * policy_.length_ns;
  }

  // Every check that needs no MAC, cheapest first: identity range, algorithm allowed, coverage
  // allowed, epoch plausible at `now_ns`, timestamp inside the window, epoch key loaded with the
  // tag's generation, identity known. On success returns none and sets `key` and `epoch`.
  TagReject precheck(const TagFields& f, bool hdr_allowed, std::int64_t now_ns,
                     const CachedKey*& key, std::uint64_t& epoch) const noexcept;

  // The epoch arithmetic of `now` (one division), computed once per burst.
  struct Clock {
    std::int64_t now_ns;
    std::int64_t epoch;        // -1 before the origin
    std::int64_t epoch_start;
    // The freshness window applied (|tag time - now| <= it): the policy's, narrowed by the
    // verifier to its replay filter's window, since a filter that forgets a MAC sooner than a
    // copy of it stays fresh would let the copy through.
    std::int64_t window_ns;
    // The key slot holding epoch `epoch` - 1, `epoch`, `epoch` + 1 (-1: none), looked up once
    // per burst instead of per tag.
    std::array<std::int8_t, 3> slot{-1, -1, -1};
  };
  Clock clock(std::int64_t now_ns) const noexcept;
  TagReject precheck(const TagFields& f, bool hdr_allowed, const Clock& c, const CachedKey*& key,
                     std::uint64_t& epoch) const noexcept;

  // The cached key of (identity, epoch, alg), or nullptr.
  const CachedKey* find(std::uint32_t identity, std::uint64_t epoch, Alg alg) const noexcept;

 private:
  struct IdEntry {
    std::uint32_t id;   // 0: empty
    std::uint32_t idx;
  };
  KeyRing() = default;
  struct Slot {
    std::uint64_t epoch = 0;
    std::uint8_t generation = 0;
    bool present = false;
  };
  std::int64_t index_of(std::uint32_t identity) const noexcept {
    std::uint32_t h = (identity * 0x9E3779B1u) & mask_;
    for (;;) {
      const IdEntry& v = index_[h];
      if (v.id == identity) return v.idx;
      if (v.id == 0) return -1;
      h = (h + 1) & mask_;
    }
  }

  EpochPolicy policy_{};
  std::array<Slot, 3> slots_{};
  std::size_t n_ids_ = 0;
  // Open-addressing identity index (identity 0 = empty), capacity a power of two.
  std::vector<IdEntry> index_;  // one cache line per probe
  std::uint32_t mask_ = 0;
  // keys_[(slot * 2 + alg) * n_ids_ + index]
  std::unique_ptr<CachedKey[]> keys_;
  std::size_t n_keys_ = 0;
};

// Inline: it runs once per tag on the verify path.
inline TagReject KeyRing::precheck(const TagFields& f, bool hdr_allowed, const Clock& c,
                            const CachedKey*& key, std::uint64_t& epoch) const noexcept {
  if (f.identity < kFirstTagIdentity) return TagReject::tag_bad_identity;
  if (f.alg == Alg::aes128_cmac && !policy_.accept_aes128) return TagReject::tag_alg_not_allowed;
  if (f.coverage == Coverage::hdr && !hdr_allowed) return TagReject::tag_hdr_not_allowed;

  const std::int64_t now_ns = c.now_ns;
  const std::int64_t cur = c.epoch;
  if (cur < 0) return TagReject::tag_no_key;
  // The tag carries the low 8 bits; resolve against the epoch of `now`.
  const auto d = static_cast<std::int8_t>(static_cast<std::uint8_t>(f.epoch - static_cast<std::uint8_t>(cur)));
  std::int64_t e = cur;
  std::int64_t start = c.epoch_start;
  if (d == 1) {
    start += policy_.length_ns;
    if (now_ns < start - policy_.accept_ahead_ns) return TagReject::tag_future_epoch;
    e = cur + 1;
  } else if (d == -1) {
    if (cur == 0 || now_ns >= start + policy_.grace_ns) return TagReject::tag_expired_epoch;
    e = cur - 1;
    start -= policy_.length_ns;
  } else if (d > 1) {
    return TagReject::tag_future_epoch;
  } else if (d < -1) {
    return TagReject::tag_expired_epoch;
  }
  const std::int64_t tag_time = start + static_cast<std::int64_t>(f.timestamp_ns & kTimestampMask);
  const std::int64_t skew = tag_time > now_ns ? tag_time - now_ns : now_ns - tag_time;
  if (skew > c.window_ns) return TagReject::tag_time_window;

  const std::int8_t slot = c.slot[static_cast<std::size_t>(e - cur + 1)];  // e is cur - 1, cur or cur + 1
  if (slot < 0) return TagReject::tag_no_key;
  const auto s = static_cast<std::size_t>(slot);
  if (slots_[s].generation != f.generation) return TagReject::tag_stale_generation;
  const std::int64_t i = index_of(f.identity);
  if (i < 0) return TagReject::tag_unknown_identity;
  key = &keys_[(s * 2 + static_cast<std::size_t>(f.alg)) * n_ids_ + static_cast<std::size_t>(i)];
  epoch = static_cast<std::uint64_t>(e);
  return TagReject::none;
}

}  // namespace zt::crypto
