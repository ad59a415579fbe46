// Where ztgate's snapshot comes from with --manager (DESIGN.md §5): ztmanager's signed bundles
// and wrapped epoch secrets, received by zt::cp::SyncClient on a control thread (never a worker
// lcore) and published to the dataplane from there.
//
//   auto m = ManagerSource::open(settings);   // enrols once if needed, reloads the last good bundle
//   m->attach(runtime);                        // publishes the last good bundle at once (if valid)
//   m->start();                                // sync thread: each accepted update is published
//   ... main loop: m->check_expiry(now) ...    // fail closed when bundle or keys expire
//   m->stop();                                 // bounded: joins the sync thread
#pragma once

#include <atomic>
#include <deque>
#include <cstdint>
#include <expected>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "zt/controlplane/client.hpp"
#include "zt/dataplane/runtime.hpp"

namespace zt::appliance {

struct ManagerSettings {
  std::string host;                    // --manager HOST:PORT; empty: no manager
  std::uint16_t port = 0;
  std::uint16_t enrol_port = 7444;     // --enrol-port (same host)
  std::filesystem::path state_dir;     // --state-dir
  std::filesystem::path psk_file;      // --psk-file
  std::filesystem::path ca_file;       // --manager-ca: trust anchor for the first enrolment
  std::string enrol_token;             // --enrol-token: used once, when state_dir has no identity
  std::string tls_groups = "X25519:P-256";
  bool enabled() const noexcept { return !host.empty(); }
};

class ManagerSource {
 public:
  // Enrols when state_dir holds no certificate yet, then opens the sync client (which verifies
  // and compiles the persisted last good bundle again). Errors start with the option at fault
  // where one is; `config_error` tells the caller to exit 2 rather than 1.
  struct OpenError {
    std::string message;
    bool config_error = false;
  };
  static std::expected<std::unique_ptr<ManagerSource>, OpenError> open(const ManagerSettings& s);
  ~ManagerSource();
  ManagerSource(const ManagerSource&) = delete;
  ManagerSource& operator=(const ManagerSource&) = delete;

  // Publishes the persisted last good update (if it still verified) or, without one, logs that
  // every IP packet is dropped until the manager sends a bundle. Call before start().
  void attach(dp::Runtime& runtime);
  // Runs the sync client on its own thread until stop().
  void start();
  // Sets the stop flag and joins the sync thread (returns within the client's connect timeout).
  void stop();
  // Main loop: when the enforced update's bundle or key expiry has passed, publishes the same
  // snapshot marked expired (new flows dropped as policy_expired, established ones continue)
  // once, and logs it.
  void check_expiry(std::int64_t now_ns);

  const std::string& identity() const noexcept;

  // The control plane as ztgate's --stats-file shows it (a JSON object, the "control_plane"
  // key): manager, session state, enforced revision and its expiry, the last ACK/NACK (code,
  // message, offending resource), the last 16 replies (`history`, oldest first), the last verified delta (`last_delta`: revision,
  // base_revision, summary, unix), and whether ztgate failed closed. Any thread.
  std::string status_json() const;

 private:
  ManagerSource() = default;
  cp::Result<void> publish(const cp::Update& u, const char* how);
  void on_push(const cp::PushOutcome& o);
  void on_session(bool up, const std::string& detail);

  std::unique_ptr<cp::SyncClient> client_;
  dp::Runtime* runtime_ = nullptr;
  std::string manager_;           // host:port
  mutable std::mutex mu_;         // publish from the sync thread vs. check_expiry from main
  std::uint64_t revision_ = 0;    // enforced revision (0: none)
  std::int64_t deadline_ns_ = 0;  // min(bundle expiry, keys expiry) of the enforced update
  const char* deadline_what_ = "";
  bool failed_closed_ = false;
  std::int64_t failed_closed_at_ = 0;  // unix s
  // Stream and last reply, for status_json().
  bool connected_ = false;
  std::string session_detail_;         // manager identity when up, why it ended when down
  std::int64_t session_changed_at_ = 0;
  std::uint64_t pushes_ = 0, acks_ = 0, nacks_ = 0;
  cp::PushOutcome last_reply_;
  std::int64_t last_reply_at_ = 0;
  bool have_reply_ = false;
  cp::PushOutcome last_nack_;
  std::int64_t last_nack_at_ = 0;
  static constexpr std::size_t kHistory = 16;  // replies kept for `history` (ztctl show control-plane)
  std::deque<std::pair<cp::PushOutcome, std::int64_t>> history_;  // newest last, with unix s
  cp::PushOutcome last_delta_;         // last ACK whose push carried a verified delta
  std::int64_t last_delta_at_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Time after which `keys` hold no epoch secret for now or later: the end of the highest epoch
// the ring holds at or after the epoch of `now_ns` (now_ns itself if it holds none).
std::int64_t keys_expiry_ns(const crypto::KeyRing& keys, std::int64_t now_ns);

}  // namespace zt::appliance
