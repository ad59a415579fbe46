// Minting: computing the tag of an outgoing packet (ztagent, ztgen, tests). Uses OpenSSL's CMAC,
// an implementation independent of the IPsec-MB verify path, so the two check each other.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "zt/crypto/error.hpp"
#include "zt/crypto/key_ring.hpp"
#include "zt/crypto/keys.hpp"
#include "zt/crypto/tag_codec.hpp"

namespace zt::crypto {

// ns since the start of `epoch` at `now_ns`, as the tag's 48-bit timestamp carries it.
constexpr std::uint64_t tag_timestamp(const EpochPolicy& p, std::uint64_t epoch,
                                      std::int64_t now_ns) noexcept {
  const std::int64_t start = p.origin_ns + static_cast<std::int64_t>(epoch) * p.length_ns;
  return now_ns > start ? static_cast<std::uint64_t>(now_ns - start) & kTimestampMask : 0;
}

class Minter {
 public:
  static Result<Minter> create();
  Minter(Minter&&) noexcept;
  Minter& operator=(Minter&&) noexcept;
  ~Minter();

  // Tags `inner` with `key`: identity, epoch (low 8 bits), generation and algorithm come from the
  // key; coverage, timestamp and lane from `f`. Returns tag_too_long if the covered L4 exceeds
  // kMaxCoveredL4Len, tag_bad_identity for a reserved identity, tag_no_key on an OpenSSL failure.
  TagReject mint(const IdentityKey& key, const TagFields& f, const InnerView& inner,
                 Tag& out) noexcept;

  // MACs exactly `f` (whatever it says) with raw key bytes (16 or 32): for test vectors and for
  // ztgen's deliberately wrong tags.
  TagReject mint_raw(std::span<const std::uint8_t> key, const TagFields& f,
                     const InnerView& inner, Tag& out) noexcept;

 private:
  struct Impl;
  explicit Minter(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

}  // namespace zt::crypto
