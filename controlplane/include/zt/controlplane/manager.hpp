// ztmanager's engine (DESIGN.md §5): the policy source of truth, key authority and internal CA.
//
// State directory layout (embedded storage; everything the manager must not forget):
//   ca.key, ca.pem          internal CA (Ed25519), created on first start; ca.key encrypted
//                           with --ca-key-passphrase-file when given
//   signing.key             bundle signing key (Ed25519), separate from the CA and TLS keys
//   master.key              trust-domain master secret for SV(e) (32 random bytes)
//   revision                last published revision (decimal), updated atomically
//   published.bundle        the last published SignedBundle (served again after a restart)
//   tokens/<sha256(token)>  one-time enrolment tokens ("appliance <name> <expiry>")
//   appliances/<name>       last ACK/NACK of each appliance
//   endpoints               "sync <port>\nenrol <port>\n" once listening (for tools and tests)
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "zt/controlplane/error.hpp"

namespace zt::cp {

struct ManagerOptions {
  std::filesystem::path policy_dir;
  std::filesystem::path state_dir;
  std::filesystem::path psk_file;
  std::string listen = "127.0.0.1:7443";
  std::string enrol_listen = "127.0.0.1:7444";
  std::string domain = "ztgate.local";
  std::string groups = "X25519:P-256";
  std::chrono::seconds cert_lifetime{24 * 3600};
  std::chrono::seconds bundle_lifetime{7 * 24 * 3600};
  std::chrono::milliseconds poll_interval{300};
  // A changed directory is read again after this long and published only if nothing changed in
  // between (an editor or `git checkout` writes files one at a time).
  std::chrono::milliseconds settle_interval{100};
  std::chrono::seconds epoch_length{15 * 60};
  std::chrono::milliseconds epoch_grace{5000};  // must be shorter than epoch_length
  std::chrono::milliseconds tag_window{1000};   // must be shorter than half of epoch_length
  // ca.key encrypted at rest under the passphrase in this file (mode 0600, first line, >= 12
  // characters); empty: ca.key in the clear (protect the state directory).
  std::filesystem::path ca_key_passphrase_file;
  // Connection limits: beyond them a new connection is closed at once and the refusal logged
  // (at most one line a second per listener). The handshake timeout bounds the TLS handshake and
  // the first message on both ports, so idle or slow clients cannot hold a slot.
  unsigned max_enrol_connections = 16;
  unsigned max_sync_connections = 1024;
  std::chrono::milliseconds handshake_timeout{5000};
};

// Token kinds: an appliance token yields spiffe://<domain>/appliance/<name>.
struct TokenInfo {
  std::string kind;  // "appliance" or "agent"
  std::string name;
  std::int64_t expires_unix = 0;
};

// Creates a one-time enrolment token in `state_dir` and returns it (print it once; only its
// hash is stored). Valid for `ttl`.
Result<std::string> create_token(const std::filesystem::path& state_dir, const std::string& kind,
                                 const std::string& name, std::chrono::seconds ttl);
// Consumes a token (atomically; a second use fails).
Result<TokenInfo> consume_token(const std::filesystem::path& state_dir, const std::string& token,
                                std::int64_t now_unix);

class Manager {
 public:
  // Creates/loads the state, publishes the policy directory if it is valid and its tests pass,
  // and opens both listeners. A bad policy at start is logged; the last published revision (if
  // any) keeps being served.
  static Result<std::unique_ptr<Manager>> start(const ManagerOptions& opts);
  ~Manager();

  // Serves until `stop` becomes true (checked at least every poll interval).
  void run(const std::atomic<bool>& stop);

  std::uint16_t sync_port() const noexcept;
  std::uint16_t enrol_port() const noexcept;
  std::uint64_t revision() const noexcept;

  // Re-reads the policy directory now; publishes when it changed and is valid. Returns the
  // revision being served afterwards, or the validation/test errors. run() calls it every poll
  // interval; call it yourself only from the thread that runs run(), or before run().
  Result<std::uint64_t> reload();

  struct Impl;

 private:
  explicit Manager(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace zt::cp
