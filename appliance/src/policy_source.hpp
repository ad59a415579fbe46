// Where ztgate's snapshot comes from until the manager sync lands: a policy directory on disk
// (reloaded on SIGHUP) and epoch secrets derived locally from a master secret file (lab and
// stand-alone use; in production the manager sends epoch secrets, never the master).
#pragma once

#include <cstdint>
#include <expected>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "zt/crypto/key_ring.hpp"
#include "zt/crypto/secret.hpp"
#include "zt/dataplane/snapshot.hpp"

namespace zt::appliance {

struct KeySettings {
  std::filesystem::path master_file;  // hex, at least 32 bytes; empty: no keys (tags fail)
  std::string domain = "lab";
  std::int64_t epoch_length_s = 900;
  std::int64_t tag_window_ms = 1000;   // |tag time - now| accepted (DESIGN.md §2 "±1 s (configurable)")
  std::int64_t epoch_grace_ms = 5000;  // epoch e-1 still accepted this long after e begins
};

// The checks PolicySource::create makes, for the option parser to report them before EAL starts:
// epoch length 10 s to 1 day, tag window 1 ms to 60 s, grace 0 to less than an epoch.
std::expected<void, std::string> check_key_settings(const KeySettings& k);

class PolicySource {
 public:
  static std::expected<PolicySource, std::string> create(std::filesystem::path policy_dir,
                                                         KeySettings keys);

  // Loads and compiles the policy directory as the next revision and builds the key ring for
  // `now_ns`; on any error the previous snapshot stays in force and the error says why.
  std::expected<std::shared_ptr<const dp::Snapshot>, std::string> load(std::int64_t now_ns);
  // A new snapshot with the same policy and the key ring for `now_ns`, if the epoch changed.
  std::expected<std::shared_ptr<const dp::Snapshot>, std::string> rekey_if_due(std::int64_t now_ns);

  std::uint64_t revision() const noexcept { return revision_; }
  std::int64_t epoch() const noexcept { return epoch_; }
  bool has_keys() const noexcept { return !master_.empty(); }

 private:
  PolicySource() = default;
  std::expected<std::shared_ptr<const crypto::KeyRing>, std::string> ring_for(
      const rules::PolicySnapshot& policy, std::int64_t epoch) const;

  std::filesystem::path dir_;
  KeySettings keys_;
  std::vector<std::uint8_t> master_;
  crypto::EpochPolicy epoch_policy_;
  std::uint64_t revision_ = 0;
  std::int64_t epoch_ = -1;
  std::shared_ptr<const dp::Snapshot> current_;
};

}  // namespace zt::appliance
