#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "key_source.hpp"
#include "zt/crypto/secret.hpp"

namespace zt::agent {

Expected<std::vector<std::uint8_t>> read_hex_secret(const std::string& path, std::string_view flag) {
  std::ifstream in(path);
  if (!in)
    return std::unexpected(fmt::format("{} '{}': cannot read it ({})", flag, path, std::strerror(errno)));
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  std::string hex;
  for (char ch : text)
    if (!std::isspace(static_cast<unsigned char>(ch))) hex += ch;
  crypto::secure_wipe(text.data(), text.size());
  std::vector<std::uint8_t> out;
  auto wipe = [&] { crypto::secure_wipe(hex.data(), hex.size()); };
  if (hex.empty()) return std::unexpected(fmt::format("{} '{}': the file is empty", flag, path));
  if (hex.size() % 2 != 0) {
    wipe();
    return std::unexpected(fmt::format("{} '{}': odd number of hex digits", flag, path));
  }
  out.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    unsigned v = 0;
    for (std::size_t k = 0; k < 2; ++k) {
      const char ch = static_cast<char>(std::tolower(static_cast<unsigned char>(hex[i + k])));
      if (!std::isxdigit(static_cast<unsigned char>(ch))) {
        wipe();
        crypto::secure_wipe(out.data(), out.size());
        return std::unexpected(fmt::format(
            "{} '{}': '{}' is not a hex digit (the file holds the secret in hex, e.g. from "
            "`openssl rand -hex 32`)", flag, path, ch));
      }
      v = v * 16 + static_cast<unsigned>(std::isdigit(static_cast<unsigned char>(ch)) ? ch - '0' : ch - 'a' + 10);
    }
    out.push_back(static_cast<std::uint8_t>(v));
  }
  wipe();
  if (out.size() < crypto::kMinMasterSecretLen) {
    const std::size_t n = out.size();
    crypto::secure_wipe(out.data(), out.size());
    return std::unexpected(fmt::format("{} '{}': {} bytes; at least {} are required", flag, path, n,
                                       crypto::kMinMasterSecretLen));
  }
  return out;
}

namespace {

class LocalKeySource final : public KeySource {
 public:
  LocalKeySource(LocalKeyConfig cfg, std::vector<std::uint8_t> master)
      : cfg_(std::move(cfg)), master_(std::move(master)) {
    policy_.length_ns = cfg_.epoch_length_s * crypto::kNsPerSec;
    ids_.push_back(cfg_.identity);
    for (auto id : cfg_.peer_identities)
      if (std::find(ids_.begin(), ids_.end(), id) == ids_.end()) ids_.push_back(id);
  }
  ~LocalKeySource() override { crypto::secure_wipe(master_.data(), master_.size()); }

  std::string_view name() const noexcept override { return "local"; }
  std::uint32_t identity() const noexcept override { return cfg_.identity; }
  const crypto::EpochPolicy& epoch_policy() const noexcept override { return policy_; }

  Expected<crypto::IdentityKey> identity_key(std::uint64_t epoch) override {
    auto sv = crypto::derive_epoch_secret(master_, cfg_.domain, epoch);
    if (!sv) return std::unexpected("epoch secret: " + sv.error().message);
    auto k = crypto::derive_identity_key(*sv, cfg_.identity, cfg_.alg);
    if (!k) return std::unexpected("identity key: " + k.error().message);
    return std::move(*k);
  }

  Expected<std::shared_ptr<const crypto::KeyRing>> inbound_ring(std::uint64_t epoch) override {
    std::vector<crypto::EpochSecret> secrets;
    for (std::uint64_t e = epoch == 0 ? 0 : epoch - 1; e <= epoch + 1; ++e) {
      auto sv = crypto::derive_epoch_secret(master_, cfg_.domain, e);
      if (!sv) return std::unexpected("epoch secret: " + sv.error().message);
      secrets.push_back(std::move(*sv));
    }
    auto ring = crypto::KeyRing::build(policy_, secrets, ids_);
    if (!ring) return std::unexpected("inbound key ring: " + ring.error().message);
    return *ring;
  }

 private:
  LocalKeyConfig cfg_;
  std::vector<std::uint8_t> master_;
  crypto::EpochPolicy policy_{};
  std::vector<std::uint32_t> ids_;
};

}  // namespace

Expected<std::unique_ptr<KeySource>> make_local_key_source(const LocalKeyConfig& cfg,
                                                            std::int64_t now_ns) {
  // Same bounds as ztgate's --epoch-length, so an agent never runs an epoch the appliance refuses.
  if (cfg.epoch_length_s < 10 || cfg.epoch_length_s > 86400)
    return std::unexpected(fmt::format("--epoch-length {}: expected 10 to 86400 seconds (the "
                                       "appliance's --epoch-length)", cfg.epoch_length_s));
  if (cfg.identity < crypto::kFirstTagIdentity)
    return std::unexpected(fmt::format("--identity {}: identities 0-255 are reserved (0 invalid, "
                                       "2 unauthenticated); use the id from the policy's "
                                       "identities.yaml, e.g. 1001", cfg.identity));
  if (cfg.domain.empty() || cfg.domain.size() > 255)
    return std::unexpected("--key-domain: expected 1 to 255 characters");
  for (auto id : cfg.peer_identities)
    if (id < crypto::kFirstTagIdentity)
      return std::unexpected(fmt::format("--peer-identity {}: identities 0-255 are reserved", id));
  auto master = read_hex_secret(cfg.master_file, "--key-master");
  if (!master) return std::unexpected(master.error());
  auto src = std::make_unique<LocalKeySource>(cfg, std::move(*master));
  const std::int64_t e = epoch_at(src->epoch_policy(), now_ns);
  if (e < 0) return std::unexpected("the clock is before the epoch origin (1970): no key epoch");
  auto k = src->identity_key(static_cast<std::uint64_t>(e));
  if (!k) return std::unexpected(k.error());
  return std::unique_ptr<KeySource>(std::move(src));
}

}  // namespace zt::agent
