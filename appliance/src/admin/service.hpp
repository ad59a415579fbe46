// What the admin socket answers (README.md in this folder): every ztctl live verb as one
// handler that turns a Request into a JSON document, from the dataplane's Control API (counters,
// flow dump/flush, stage timing, trace) and the snapshot in force. `show …` and `test policy`
// change nothing and are served on both sockets; everything else is refused on the read-only
// socket and every attempt at it is audit-logged (who, what, when, result).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "admin/server.hpp"
#include "zt/dataplane/runtime.hpp"

namespace zt::appliance {
class ManagerSource;
namespace config {
class CandidateStore;
struct Tunables;
}
}  // namespace zt::appliance

namespace zt::admin {

// How the workers' clock followed the wall clock (dataplane/README.md "Clock"), as `show status`
// and ztgate's --stats-file print it.
nlohmann::json clock_status_json(const dp::ClockStatus& c);

// Control-plane events of a ztgate without a manager (policy loads and reloads, re-keys), for
// `show control-plane`. Any thread.
class EventLog {
 public:
  void add(std::string what, bool ok, std::string detail);
  nlohmann::json json() const;

 private:
  static constexpr std::size_t kKeep = 32;
  mutable std::mutex mu_;
  std::deque<nlohmann::json> events_;
};

// The audit trail of mutating requests: one line on ztgate's log (stderr) and, with a file, one
// JSON object per line appended to it.
class AuditLog {
 public:
  // Empty path: the log only. Errors name the option.
  std::expected<void, std::string> open(const std::string& path);
  void record(const Peer& who, const Request& req, const std::string& result, const std::string& detail);

 private:
  std::mutex mu_;
  std::ofstream file_;
};

// The apply step of `flow.timeout.*` (a commit, its automatic rollback, or the config file's
// tunables at start): the seconds an operator sets as the workers' dp::FlowTimeouts in TSC
// ticks. `flow.timeout.tcp_transitory` covers SYN-sent/received and closing TCP flows (FIN or
// RST seen); flows of other protocols keep 60 s. Each key is checked again (1 s to 7 days) and a
// refusal names it. Then `dp::Control::set_flow_timeouts` posts the result to every worker.
std::expected<dp::FlowTimeouts, std::string> flow_timeouts_from(const appliance::config::Tunables& t,
                                                                std::uint64_t ticks_per_second);
// Whether going from `a` to `b` changes any flow.timeout.* key.
bool flow_timeouts_differ(const appliance::config::Tunables& a, const appliance::config::Tunables& b);
// Both steps for a commit from `running` to `next`: nothing if no flow.timeout.* key changes,
// else every worker uses the new timeouts when this returns. Errors start with "flow.timeout".
std::expected<void, std::string> apply_flow_timeouts(dp::Control& control, const appliance::config::Tunables& running,
                                                     const appliance::config::Tunables& next,
                                                     std::uint64_t ticks_per_second);

struct ServiceInfo {
  std::string version;
  std::string policy_source;   // "directory /etc/ztgate/policy", "manager host:port", "none"
  std::string key_domain;      // with local keys
  std::string admin_socket;
  std::string metrics_listen;  // empty: none
};

class Service {
 public:
  Service(dp::Runtime& rt, const appliance::ManagerSource* manager, ServiceInfo info, EventLog& events,
          AuditLog& audit);

  // The candidate configuration `set`/`commit`/`rollback` edit (config/candidate.hpp); without
  // one those commands say so. Call before the server starts.
  void set_candidate(appliance::config::CandidateStore* store) { candidate_ = store; }

  // Server::Handler.
  Response handle(const Request& req, const Peer& peer);

  // Verb → whether it changes state, for `ztctl` and the tests (the server decides by this).
  static bool is_mutating(const std::string& command);

 private:
  using Args = google::protobuf::Map<std::string, std::string>;
  using Fn = std::function<std::expected<nlohmann::json, std::string>(const Args&)>;
  struct Entry {
    bool mutating = false;
    Fn fn;
  };

  std::expected<nlohmann::json, std::string> show_status(const Args&);
  std::expected<nlohmann::json, std::string> show_interfaces(const Args&);
  std::expected<nlohmann::json, std::string> show_runtime(const Args&);
  std::expected<nlohmann::json, std::string> show_drops(const Args&);
  std::expected<nlohmann::json, std::string> show_flows(const Args&);
  std::expected<nlohmann::json, std::string> show_identities(const Args&);
  std::expected<nlohmann::json, std::string> show_policy(const Args&);
  std::expected<nlohmann::json, std::string> show_keys(const Args&);
  std::expected<nlohmann::json, std::string> show_control_plane(const Args&);
  std::expected<nlohmann::json, std::string> test_policy(const Args&);
  std::expected<nlohmann::json, std::string> clear_counters(const Args&);
  std::expected<nlohmann::json, std::string> clear_flows(const Args&);
  std::expected<nlohmann::json, std::string> set_runtime_timing(const Args&);
  std::expected<nlohmann::json, std::string> trace(const Args&);
  std::expected<nlohmann::json, std::string> show_volumetric(const Args&);
  std::expected<nlohmann::json, std::string> clear_blocklist(const Args&);
  std::expected<nlohmann::json, std::string> capture_start(const Args&);
  std::expected<nlohmann::json, std::string> capture_stop(const Args&);
  std::expected<nlohmann::json, std::string> show_capture(const Args&);
  std::expected<nlohmann::json, std::string> set_key(const Args&);
  std::expected<nlohmann::json, std::string> delete_key(const Args&);
  std::expected<nlohmann::json, std::string> show_candidate(const Args&);
  std::expected<nlohmann::json, std::string> show_configuration(const Args&);
  std::expected<nlohmann::json, std::string> commit(const Args&);
  std::expected<nlohmann::json, std::string> commit_check(const Args&);
  std::expected<nlohmann::json, std::string> confirm(const Args&);
  std::expected<nlohmann::json, std::string> rollback(const Args&);
  std::expected<appliance::config::CandidateStore*, std::string> store() const;

  dp::Runtime& rt_;
  const appliance::ManagerSource* manager_;
  ServiceInfo info_;
  EventLog& events_;
  AuditLog& audit_;
  std::chrono::steady_clock::time_point started_;
  std::int64_t started_unix_ = 0;
  bool stage_timing_ = false;
  appliance::config::CandidateStore* candidate_ = nullptr;
  Peer current_;  // the peer of the request being handled (one at a time)
  std::map<std::string, Entry> commands_;
};

}  // namespace zt::admin
