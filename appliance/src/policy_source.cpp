#include "policy_source.hpp"

#include <fmt/format.h>

#include <cctype>
#include <fstream>
#include <sstream>

#include "zt/crypto/keys.hpp"
#include "zt/rules/policy.hpp"
#include "zt/rules/snapshot.hpp"

namespace zt::appliance {

namespace {

std::expected<std::vector<std::uint8_t>, std::string> read_hex_secret(const std::filesystem::path& f) {
  std::ifstream in(f);
  if (!in) return std::unexpected(fmt::format("--key-master: cannot read '{}'", f.string()));
  std::stringstream ss;
  ss << in.rdbuf();
  std::string hex;
  for (char ch : ss.str())
    if (!std::isspace(static_cast<unsigned char>(ch))) hex += ch;
  std::vector<std::uint8_t> out;
  if (hex.size() % 2 != 0)
    return std::unexpected(fmt::format("--key-master '{}': odd number of hex digits", f.string()));
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    unsigned v = 0;
    for (std::size_t k = 0; k < 2; ++k) {
      const char ch = static_cast<char>(std::tolower(static_cast<unsigned char>(hex[i + k])));
      if (!std::isxdigit(static_cast<unsigned char>(ch)))
        return std::unexpected(fmt::format("--key-master '{}': '{}' is not a hex digit (the file holds "
                                           "the secret in hex, e.g. from `openssl rand -hex 32`)",
                                           f.string(), ch));
      v = v * 16 + static_cast<unsigned>(std::isdigit(static_cast<unsigned char>(ch)) ? ch - '0' : ch - 'a' + 10);
    }
    out.push_back(static_cast<std::uint8_t>(v));
  }
  if (out.size() < crypto::kMinMasterSecretLen)
    return std::unexpected(fmt::format("--key-master '{}': {} bytes; at least {} are required",
                                       f.string(), out.size(), crypto::kMinMasterSecretLen));
  return out;
}

std::string format_diagnostics(const std::vector<rules::Diagnostic>& ds) {
  std::string s;
  for (const auto& d : ds) s += "\n  " + rules::format(d);
  return s;
}

}  // namespace

std::expected<void, std::string> check_key_settings(const KeySettings& k) {
  if (k.epoch_length_s < 10 || k.epoch_length_s > 86400)
    return std::unexpected(fmt::format("--epoch-length {}: expected 10 to 86400 seconds", k.epoch_length_s));
  if (k.tag_window_ms < 1 || k.tag_window_ms > 60000)
    return std::unexpected(fmt::format("--tag-window-ms {}: expected 1 to 60000 milliseconds", k.tag_window_ms));
  if (k.epoch_grace_ms < 0 || k.epoch_grace_ms >= k.epoch_length_s * 1000)
    return std::unexpected(fmt::format("--epoch-grace-ms {}: expected 0 to less than --epoch-length ({} s)",
                                       k.epoch_grace_ms, k.epoch_length_s));
  return {};
}

std::expected<PolicySource, std::string> PolicySource::create(std::filesystem::path policy_dir,
                                                              KeySettings keys) {
  PolicySource p;
  p.dir_ = std::move(policy_dir);
  p.keys_ = std::move(keys);
  if (auto ok = check_key_settings(p.keys_); !ok) return std::unexpected(ok.error());
  p.epoch_policy_.length_ns = p.keys_.epoch_length_s * crypto::kNsPerSec;
  p.epoch_policy_.time_window_ns = p.keys_.tag_window_ms * 1'000'000;
  p.epoch_policy_.grace_ns = p.keys_.epoch_grace_ms * 1'000'000;
  if (!p.keys_.master_file.empty()) {
    auto m = read_hex_secret(p.keys_.master_file);
    if (!m) return std::unexpected(m.error());
    p.master_ = std::move(*m);
  }
  return p;
}

std::expected<std::shared_ptr<const crypto::KeyRing>, std::string> PolicySource::ring_for(
    const rules::PolicySnapshot& policy, std::int64_t epoch) const {
  if (master_.empty()) return std::shared_ptr<const crypto::KeyRing>{};
  std::vector<crypto::EpochSecret> secrets;
  for (std::int64_t e = epoch - 1; e <= epoch + 1; ++e) {
    if (e < 0) continue;
    auto sv = crypto::derive_epoch_secret(master_, keys_.domain, static_cast<std::uint64_t>(e));
    if (!sv) return std::unexpected("epoch secret: " + sv.error().message);
    secrets.push_back(std::move(*sv));
  }
  std::vector<std::uint32_t> ids;
  for (const auto& i : policy.source().identities) ids.push_back(i.id);
  auto ring = crypto::KeyRing::build(epoch_policy_, secrets, ids);
  if (!ring) return std::unexpected("key ring: " + ring.error().message);
  return *ring;
}

std::expected<std::shared_ptr<const dp::Snapshot>, std::string> PolicySource::load(std::int64_t now_ns) {
  rules::CompileOptions opts;
  opts.revision = revision_ + 1;
  auto policy = rules::load_and_compile(dir_, opts);
  if (!policy)
    return std::unexpected(fmt::format("policy '{}' refused:{}", dir_.string(),
                                       format_diagnostics(policy.error())));
  const std::int64_t epoch = (now_ns - epoch_policy_.origin_ns) / epoch_policy_.length_ns;
  auto ring = ring_for(**policy, epoch);
  if (!ring) return std::unexpected(ring.error());
  auto snap = std::make_shared<dp::Snapshot>();
  snap->policy = std::move(*policy);
  snap->keys = std::move(*ring);
  revision_ = opts.revision;
  epoch_ = epoch;
  current_ = snap;
  return current_;
}

std::expected<std::shared_ptr<const dp::Snapshot>, std::string> PolicySource::rekey_if_due(
    std::int64_t now_ns) {
  const std::int64_t epoch = (now_ns - epoch_policy_.origin_ns) / epoch_policy_.length_ns;
  if (current_ == nullptr || master_.empty() || epoch == epoch_) return std::shared_ptr<const dp::Snapshot>{};
  auto ring = ring_for(*current_->policy, epoch);
  if (!ring) return std::unexpected(ring.error());
  auto snap = std::make_shared<dp::Snapshot>();
  snap->policy = current_->policy;
  snap->keys = std::move(*ring);
  epoch_ = epoch;
  current_ = snap;
  return current_;
}

}  // namespace zt::appliance
