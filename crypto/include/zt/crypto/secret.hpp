// Fixed-size key material that wipes itself (OPENSSL_cleanse) when released or overwritten.
// It has no stream operator and no formatter on purpose: keys are never logged.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace zt::crypto {

void secure_wipe(void* p, std::size_t n) noexcept;  // OPENSSL_cleanse

template <std::size_t N>
class SecretBytes {
 public:
  SecretBytes() noexcept = default;
  explicit SecretBytes(std::span<const std::uint8_t, N> src) noexcept {
    for (std::size_t i = 0; i < N; ++i) b_[i] = src[i];
  }
  SecretBytes(const SecretBytes&) noexcept = default;
  SecretBytes& operator=(const SecretBytes&) noexcept = default;
  ~SecretBytes() { secure_wipe(b_.data(), N); }

  std::span<const std::uint8_t, N> bytes() const noexcept { return b_; }
  std::span<std::uint8_t, N> mutable_bytes() noexcept { return b_; }
  static constexpr std::size_t size() noexcept { return N; }

 private:
  std::array<std::uint8_t, N> b_{};
};

}  // namespace zt::crypto
