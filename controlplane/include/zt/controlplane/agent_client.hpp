// The agent end of the control plane (ztagent, DESIGN.md §2 and §5): an endpoint holds one
// workload identity and receives only that identity's short-lived keys K(i, e) and K(i, e+1).
//
//   zt::cp::AgentConfig cfg{.manager_host = "10.0.0.5", .state_dir = "/var/lib/ztagent",
//                           .psk_file = "/etc/ztgate/psk"};
//   auto a = zt::cp::AgentClient::enrol(cfg, token, "/etc/ztgate/manager-ca.pem");  // first start
//   auto a = zt::cp::AgentClient::open(cfg);                                         // later starts
//   auto k = a->fetch();   // k->current, k->next: crypto::IdentityKey; k->epochs: the schedule
//
// Enrolment: the token comes from `ztmanager token create --kind agent --name <identity name or
// id>`; it buys a certificate whose single URI SAN is spiffe://<domain>/agent/<id>. The private
// key is generated here and never leaves the state directory (identity.key, mode 0600).
// fetch() connects to the manager's sync port with that certificate (mutual TLS 1.3); the
// manager derives K(id, e), K(id, e+1) for the id in the certificate — never another one, and
// only while the published policy lists the identity — wraps each with AES-256-GCM under the
// pre-shared secret (context "ik|<uri>|<e>|<gen>") and sends them with the epoch schedule. When
// the certificate has less than `renew_before` left, fetch() first renews it on the same
// connection (new key pair; the state directory is updated atomically).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "zt/controlplane/error.hpp"
#include "zt/crypto/key_ring.hpp"
#include "zt/crypto/keys.hpp"

namespace zt::cp {

struct AgentConfig {
  std::string manager_host = "127.0.0.1";
  std::uint16_t manager_port = 7443;  // ztmanager --listen (mutual TLS)
  std::uint16_t enrol_port = 7444;    // ztmanager --enrol-listen (used once)
  std::filesystem::path state_dir;    // identity.key, identity.pem, ca.pem, domain
  std::filesystem::path psk_file;     // the manager's --psk-file (mode 0600)
  std::string groups = "X25519:P-256";
  std::chrono::milliseconds timeout{3000};  // connect + handshake, and the reply
  std::chrono::seconds renew_before{8 * 3600};
};

struct AgentKeys {
  std::uint32_t identity = 0;
  std::string identity_uri;      // spiffe://<domain>/agent/<id>
  std::string domain;            // the trust domain (tags' keys are domain-bound)
  crypto::EpochPolicy epochs;    // origin_ns, length_ns (and the appliances' grace and window)
  crypto::IdentityKey current;   // K(id, e) for e = the epoch containing the manager's now
  crypto::IdentityKey next;      // K(id, e+1): switch to it at epochs.origin_ns + (e+1)*length_ns
  std::uint64_t policy_revision = 0;
};

class AgentClient {
 public:
  // One-time enrolment (token over server-authenticated TLS, trusting `ca_pem_file`), then open().
  static Result<std::unique_ptr<AgentClient>> enrol(const AgentConfig& cfg, const std::string& token,
                                                    const std::filesystem::path& ca_pem_file);
  // An agent state directory written by enrol() (fails, saying so, when there is none or it is
  // not an agent's).
  static Result<std::unique_ptr<AgentClient>> open(const AgentConfig& cfg);
  ~AgentClient();

  // Fetches this identity's current and next key. Errors say why: manager unreachable, TLS
  // refused, identity refused (not in the published policy), wrong pre-shared secret.
  Result<AgentKeys> fetch();

  std::uint32_t identity() const noexcept;
  const std::string& identity_uri() const noexcept;
  std::int64_t certificate_not_after() const noexcept;

  struct Impl;

 private:
  explicit AgentClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace zt::cp
