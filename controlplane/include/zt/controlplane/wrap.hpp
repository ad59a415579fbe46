// Key wrapping inside the TLS stream (DESIGN.md §5): AES-256-GCM under
//   KEK = HKDF-SHA256(ikm = pre-shared secret, salt = 16 random bytes,
//                     info = "ztgate/wrap/v1" || context)
// The context names the recipient and the secret (e.g. "sv|spiffe://d/appliance/a|<e>|<g>") and
// is also the GCM additional data, so a wrapped secret cannot be replayed to another recipient
// or relabelled as another epoch. A recorded TLS session therefore does not reveal key material
// to someone who later breaks the TLS key exchange, unless they also hold the pre-shared secret.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "zt/controlplane/error.hpp"
#include "ztgate.pb.h"

namespace zt::cp {

inline constexpr std::size_t kMinPskLen = 32;

class PreSharedSecret {
 public:
  // A file of at least 32 bytes (raw, or hex text); refuses group/world-readable files.
  static Result<PreSharedSecret> load(const std::filesystem::path& file);
  static Result<PreSharedSecret> from_bytes(std::span<const std::uint8_t> bytes);
  // Writes a new random 32-byte secret as hex (mode 0600); refuses to overwrite.
  static Result<void> generate(const std::filesystem::path& file);

  PreSharedSecret(PreSharedSecret&&) noexcept = default;
  PreSharedSecret& operator=(PreSharedSecret&&) noexcept = default;
  ~PreSharedSecret();

  const std::string& id() const noexcept { return id_; }
  std::span<const std::uint8_t> bytes() const noexcept { return bytes_; }

 private:
  PreSharedSecret() = default;
  std::vector<std::uint8_t> bytes_;
  std::string id_;
};

Result<::zt::cp::v1::WrappedSecret> wrap_secret(const PreSharedSecret& psk,
                                                std::span<const std::uint8_t> secret,
                                                std::string_view context);

// Fails with a message saying whether the PSK id differs (wrong secret provisioned) or the
// authentication tag does not verify (tampered, wrong context).
Result<std::vector<std::uint8_t>> unwrap_secret(const PreSharedSecret& psk,
                                                const ::zt::cp::v1::WrappedSecret& wrapped,
                                                std::string_view context);

std::string sv_wrap_context(std::string_view recipient_uri, std::uint64_t epoch, std::uint32_t generation);

}  // namespace zt::cp
