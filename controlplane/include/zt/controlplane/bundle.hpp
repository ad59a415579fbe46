// Signed policy bundles (DESIGN.md §5): build from a policy directory, sign with Ed25519,
// verify on the appliance (signature, digest, domain, expiry, revision monotonicity).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "zt/controlplane/error.hpp"
#include "zt/controlplane/tls.hpp"
#include "ztgate.pb.h"

namespace zt::cp {

namespace pb = ::zt::cp::v1;

// Every *.yaml / *.yml file under `dir` (recursively), as (relative name, content) sorted by
// name: exactly what zt::rules::parse_policy takes and what a bundle carries.
Result<std::vector<std::pair<std::string, std::string>>> read_policy_files(const std::filesystem::path& dir);

// SHA-256 (lower-case hex).
std::string sha256_hex(std::string_view data);

class BundleSigner {
 public:
  explicit BundleSigner(PkeyPtr key) : key_(std::move(key)) {}
  Result<pb::SignedBundle> sign(const pb::PolicyBundle& bundle) const;
  // Signs a delta under its own context ("ztgate/delta/v1\0"), so neither passes for the other.
  Result<pb::SignedDelta> sign(const pb::PolicyDelta& delta) const;
  Result<std::string> public_pem() const { return public_key_pem(key_.get()); }

 private:
  PkeyPtr key_;
};

// Why a push was refused, ready to become a Nack.
struct Refusal {
  pb::NackCode code = pb::NACK_CODE_UNSPECIFIED;
  std::string message;
  std::string resource;
};

class BundleVerifier {
 public:
  static Result<BundleVerifier> from_public_pem(const std::string& pem, std::string domain);

  // Checks signature and digest over the exact bytes, the domain and the expiry at `now_unix`,
  // and that the revision is not lower than `highest_accepted` (equal is allowed: the same
  // revision with fresh keys). Returns the decoded bundle.
  std::expected<pb::PolicyBundle, Refusal> verify(const pb::SignedBundle& signed_bundle,
                                                  std::uint64_t highest_accepted,
                                                  std::int64_t now_unix) const;
  // Checks a delta's algorithm, key id and signature; returns it decoded (BAD_SIGNATURE or
  // MALFORMED refusals with resource "delta.*"). Consistency with the bundles is delta.hpp's job.
  std::expected<pb::PolicyDelta, Refusal> verify(const pb::SignedDelta& signed_delta) const;

 private:
  bool signature_ok(std::string_view context, const std::string& data, const std::string& sig) const;

  std::shared_ptr<EVP_PKEY> key_;
  std::string key_id_;
  std::string domain_;
};

// First 16 hex digits of SHA-256(public key DER).
Result<std::string> key_id(EVP_PKEY* key);

}  // namespace zt::cp
