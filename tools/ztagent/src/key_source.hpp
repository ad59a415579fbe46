// Where the agent's keys come from (tools/ztagent/README.md, "Keys").
//
// The agent tags with K(i,e) of its one identity, holding the key of the current epoch and the
// next one ahead of the boundary. A KeySource produces those keys on the control side of the
// agent (start-up and the maintenance tick, never per packet):
//   LOCAL    derives K(i,e) from the trust domain's master secret exactly as ztgate does from
//            --key-master (SV(e) = HKDF(master, domain, e), generation 0, epoch origin 0 =
//            the Unix epoch on CLOCK_REALTIME). For the lab and tests: the master secret lives
//            in the agent's memory, which a production agent must never hold.
//   MANAGER  fetches K(i,e) for the current and next epoch from ztmanager over mutual TLS
//            (enrolment token -> certificate, controlplane's AgentClient); it holds no epoch
//            secret, so it cannot verify other identities' inbound tags.
#pragma once

#include <cstdint>
#include <expected>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "zt/crypto/key_ring.hpp"
#include "zt/crypto/keys.hpp"

namespace zt::agent {

template <class T>
using Expected = std::expected<T, std::string>;

class KeySource {
 public:
  virtual ~KeySource() = default;
  virtual std::string_view name() const noexcept = 0;
  virtual std::uint32_t identity() const noexcept = 0;
  // Epoch arithmetic shared with the appliance (origin, length, grace, time window).
  virtual const crypto::EpochPolicy& epoch_policy() const noexcept = 0;
  // K(identity, epoch) for the configured algorithm. Control path: may block (manager mode).
  virtual Expected<crypto::IdentityKey> identity_key(std::uint64_t epoch) = 0;
  // A key ring that verifies inbound tags around `epoch` (e-1, e, e+1) for the identities this
  // source can vouch for, or nullptr when it holds no epoch secrets (manager mode: an agent
  // receives only its own K(i,e), which cannot verify anyone else's tag).
  virtual Expected<std::shared_ptr<const crypto::KeyRing>> inbound_ring(std::uint64_t epoch) = 0;
};

struct LocalKeyConfig {
  std::string master_file;          // hex, >= 32 bytes, as ztgate's --key-master
  std::string domain = "lab";       // ztgate's --key-domain
  std::int64_t epoch_length_s = 900;
  std::uint32_t identity = 0;
  crypto::Alg alg = crypto::Alg::aes256_cmac;
  std::vector<std::uint32_t> peer_identities;  // verified inbound besides our own
};

// Reads and checks the master secret now (so a bad file refuses the start with a reason) and
// derives K(identity, epoch_at(now)) once as a self-test.
Expected<std::unique_ptr<KeySource>> make_local_key_source(const LocalKeyConfig& cfg,
                                                            std::int64_t now_ns);

struct ManagerKeyConfig {
  std::string manager;      // HOST:PORT of the sync endpoint (mutual TLS)
  unsigned enrol_port = 7444;  // the enrolment endpoint on the same host (first start only)
  std::string state_dir;    // certificate and key after enrolment
  std::string enrol_token;  // one-time token (first start only)
  std::string manager_ca;   // the manager's ca.pem (trust anchor for enrolment)
  std::string psk_file;     // unwraps the key material (DESIGN.md §5)
  std::uint32_t identity = 0;  // 0: whatever the certificate says; else must match it
  crypto::Alg alg = crypto::Alg::aes256_cmac;
};

// Manager mode: opens the agent state in --state-dir (or enrols with the token), then fetches
// the current and next key once, refusing the start if that fails. Built only when controlplane/include/zt/controlplane/agent_client.hpp exists
// (ZTAGENT_HAVE_AGENT_CLIENT); otherwise it refuses with a message saying so.
Expected<std::unique_ptr<KeySource>> make_manager_key_source(const ManagerKeyConfig& cfg,
                                                              std::int64_t now_ns);

// Reads a hex secret file (whitespace ignored), as ztgate reads --key-master. `flag` names the
// option in messages.
Expected<std::vector<std::uint8_t>> read_hex_secret(const std::string& path, std::string_view flag);

// floor((now - origin) / length), -1 before the origin.
constexpr std::int64_t epoch_at(const crypto::EpochPolicy& p, std::int64_t now_ns) noexcept {
  if (now_ns < p.origin_ns) return -1;
  return (now_ns - p.origin_ns) / p.length_ns;
}

}  // namespace zt::agent
