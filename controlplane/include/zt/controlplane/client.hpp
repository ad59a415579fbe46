// The appliance side of the sync protocol (DESIGN.md §5), run by ztgate's control lcore.
//
//   auto c = zt::cp::SyncClient::open(cfg);          // loads the persisted last good bundle
//   c->set_publisher([&](const zt::cp::Update& u) { return dataplane.publish(u); });
//   c->run(stop);                                      // connect, verify, compile, publish, ACK
//
// Every push is checked (schema, Ed25519 signature over the exact bytes, digest, domain, expiry,
// revision not lower than the highest ever accepted — persisted, so a replay after a restart is
// refused too), compiled with zt::rules, its signed delta (when it starts from the enforced
// revision) checked against the two full policies (delta.hpp), its epoch secrets unwrapped with
// the pre-shared secret, handed to the publisher, persisted as last known good, and only then
// ACKed. Any failure is a NACK with a code, a message and the offending resource, and the previous update stays in force.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "zt/controlplane/error.hpp"
#include "zt/crypto/key_ring.hpp"
#include "zt/rules/policy.hpp"

namespace zt::cp {

struct ClientConfig {
  std::string manager_host = "127.0.0.1";
  std::uint16_t manager_port = 7443;
  std::filesystem::path state_dir;  // identity.key, identity.pem, ca.pem, signing.pub, last_good.push
  std::filesystem::path psk_file;
  std::string groups = "X25519:P-256";
  std::chrono::milliseconds connect_timeout{3000};
  std::chrono::milliseconds backoff_min{200};
  std::chrono::milliseconds backoff_max{10'000};
  // Ask for a new certificate (new key pair) over the live stream when the current one has less
  // than this left; the stream is not dropped, the next connection uses the new certificate.
  std::chrono::seconds renew_before{8 * 3600};
};

// What the dataplane publishes: policy and keys move together (one generation).
struct Update {
  std::uint64_t revision = 0;
  std::string bundle_digest;
  std::int64_t expires_unix = 0;
  rules::SnapshotPtr snapshot;
  std::shared_ptr<const crypto::KeyRing> keys;
  // The parsed source the snapshot was compiled from: the base the next push's delta is checked
  // against.
  std::shared_ptr<const rules::Policy> policy;
  // "delta from 2: +identity frontend-2 (2003), ~segment zone-b, rules +1 -0 ~0" when the push
  // carried a signed delta from the enforced revision and it matched both bundles; empty when
  // the push carried none (first push, reconnect, a base this appliance does not enforce).
  std::string delta;
};

// Returns an error to refuse the update (becomes NACK_CODE_PUBLISH_FAILED).
using Publisher = std::function<Result<void>(const Update&)>;

struct PushOutcome {
  bool accepted = false;
  std::uint64_t revision = 0;
  int nack_code = 0;  // zt::cp::v1::NackCode
  std::string message;
  std::string resource;
  // On ACK: Update::delta (empty without a verified delta) and its base revision.
  std::string delta;
  std::uint64_t delta_base = 0;
};

// "NACK_CODE_BAD_SIGNATURE" etc. for PushOutcome::nack_code.
std::string nack_code_name(int code);

// What the appliance wants to know about the stream (called on the thread that runs run()).
struct SyncEvents {
  // After every push, once the ACK or NACK was decided (and the update published, on ACK).
  std::function<void(const PushOutcome&)> on_push;
  // The stream came up (`up`, detail = the manager's identity) or ended (detail = why).
  std::function<void(bool up, const std::string& detail)> on_session;
};

// One-time enrolment: generates the identity key, sends the token over server-authenticated TLS
// (trusting `ca_pem_file`, the manager CA provisioned out of band), stores the certificate, CA
// and bundle signing key in cfg.state_dir. Returns the identity URI.
Result<std::string> enrol(const ClientConfig& cfg, std::uint16_t enrol_port, const std::string& token,
                          const std::filesystem::path& ca_pem_file);

// Agents (ztagent) use zt/controlplane/agent_client.hpp.

class SyncClient {
 public:
  static Result<std::unique_ptr<SyncClient>> open(const ClientConfig& cfg);
  ~SyncClient();

  void set_publisher(Publisher p);
  void set_events(SyncEvents e);
  // The persisted last good update, reloaded by open() (nullopt: none, or it no longer verifies).
  const std::optional<Update>& current() const noexcept;
  std::uint64_t highest_accepted() const noexcept;
  const std::string& identity_uri() const noexcept;
  std::int64_t certificate_not_after() const noexcept;

  // Connects, says hello, and handles pushes until the stream ends, `stop` is set or
  // `max_pushes` pushes were handled (0: unlimited). Errors describe why the session ended.
  Result<void> run_session(const std::atomic<bool>& stop, std::size_t max_pushes = 0,
                           std::chrono::milliseconds idle_timeout = std::chrono::milliseconds(60'000));
  // run_session in a loop with exponential backoff and jitter until `stop`.
  void run(const std::atomic<bool>& stop);

  // The verdict on one push (exposed for tests: replay, tampering).
  PushOutcome handle_push(const std::string& serialized_push, std::int64_t now_unix);
  // Outcome of the last push handled by run_session.
  const PushOutcome& last_outcome() const noexcept;

  struct Impl;

 private:
  explicit SyncClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace zt::cp
