#include "manager_source.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <csignal>
#include <pthread.h>
#include <ctime>
#include <system_error>

namespace zt::appliance {

namespace {

constexpr std::int64_t kNsPerSec = 1'000'000'000;

std::int64_t now_realtime_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * kNsPerSec + ts.tv_nsec;
}

}  // namespace

std::int64_t keys_expiry_ns(const crypto::KeyRing& keys, std::int64_t now_ns) {
  const std::int64_t e = keys.epoch_at(now_ns);
  if (e < 0) return now_ns;
  // A push carries SV(e-1), SV(e), SV(e+1): look a little further in case of clock skew.
  for (std::int64_t k = e + 3; k >= e; --k)
    if (keys.has_epoch(static_cast<std::uint64_t>(k))) return keys.epoch_start(static_cast<std::uint64_t>(k + 1));
  return now_ns;
}

std::expected<std::unique_ptr<ManagerSource>, ManagerSource::OpenError> ManagerSource::open(
    const ManagerSettings& s) {
  cp::ClientConfig cfg;
  cfg.manager_host = s.host;
  cfg.manager_port = s.port;
  cfg.state_dir = s.state_dir;
  cfg.psk_file = s.psk_file;
  cfg.groups = s.tls_groups;

  std::error_code ec;
  if (!std::filesystem::exists(s.psk_file, ec))
    return std::unexpected(OpenError{fmt::format("--psk-file '{}': no such file", s.psk_file.string()), true});
  if (!std::filesystem::exists(s.state_dir / "identity.pem", ec)) {
    if (s.enrol_token.empty())
      return std::unexpected(OpenError{
          fmt::format("--enrol-token: required, --state-dir '{}' holds no certificate yet (create one with "
                      "`ztmanager token create --name NAME`)",
                      s.state_dir.string()),
          true});
    if (s.ca_file.empty())
      return std::unexpected(OpenError{
          "--manager-ca: required for the first enrolment (the manager's ca.pem, copied out of band)", true});
    if (!std::filesystem::exists(s.ca_file, ec))
      return std::unexpected(OpenError{fmt::format("--manager-ca '{}': no such file", s.ca_file.string()), true});
    auto uri = cp::enrol(cfg, s.enrol_port, s.enrol_token, s.ca_file);
    if (!uri)
      return std::unexpected(OpenError{
          fmt::format("enrolment with {}:{} failed: {}", s.host, s.enrol_port, uri.error().message), false});
    fmt::print(stderr, "ztgate: enrolled with the manager as {}\n", *uri);
  }
  auto c = cp::SyncClient::open(cfg);
  if (!c) return std::unexpected(OpenError{fmt::format("--state-dir '{}': {}", s.state_dir.string(), c.error().message), false});
  std::unique_ptr<ManagerSource> m(new ManagerSource());
  m->client_ = std::move(*c);
  m->manager_ = fmt::format("{}:{}", s.host, s.port);
  return m;
}

ManagerSource::~ManagerSource() { stop(); }

const std::string& ManagerSource::identity() const noexcept { return client_->identity_uri(); }

cp::Result<void> ManagerSource::publish(const cp::Update& u, const char* how) {
  if (runtime_ == nullptr) return std::unexpected(cp::Error{"no dataplane attached"});
  if (!u.snapshot) return std::unexpected(cp::Error{"update without a policy"});
  auto snap = std::make_shared<dp::Snapshot>();
  snap->policy = u.snapshot;
  snap->keys = u.keys;
  const std::int64_t now = now_realtime_ns();
  std::int64_t deadline = u.expires_unix * kNsPerSec;
  const char* what = "bundle";
  if (u.keys) {
    const std::int64_t k = keys_expiry_ns(*u.keys, now);
    if (k < deadline) {
      deadline = k;
      what = "keys";
    }
  }
  snap->expires_ns = deadline;  // the workers fail closed at it by themselves (snapshot.hpp)
  std::lock_guard lock(mu_);
  runtime_->publish(std::move(snap));
  const bool was_closed = failed_closed_;
  revision_ = u.revision;
  deadline_ns_ = deadline;
  deadline_what_ = what;
  failed_closed_ = false;
  // One line per applied revision; with a verified delta it says what changed, e.g.
  // "applied revision 3 from the manager (delta from 2: +identity frontend-2 (2003), ~segment
  // zone-b, rules +1 -0 ~0; 5 rules, keys expire at unix ...)".
  fmt::print(stderr, "ztgate: {} revision {} {} ({}{} rules, {} expire at unix {}){}\n", how, u.revision,
             how[0] == 'a' ? "from the manager" : "from the state directory", u.delta.empty() ? "" : u.delta + "; ",
             u.snapshot->stats().rules, what, deadline / kNsPerSec, was_closed ? "; enforcement restored" : "");
  return {};
}

void ManagerSource::on_push(const cp::PushOutcome& o) {
  std::lock_guard lock(mu_);
  ++pushes_;
  last_reply_ = o;
  last_reply_at_ = now_realtime_ns() / kNsPerSec;
  have_reply_ = true;
  history_.emplace_back(o, last_reply_at_);
  if (history_.size() > kHistory) history_.pop_front();
  if (o.accepted) {
    ++acks_;
    if (!o.delta.empty()) {
      last_delta_ = o;
      last_delta_at_ = last_reply_at_;
    }
    return;
  }
  ++nacks_;
  last_nack_ = o;
  last_nack_at_ = last_reply_at_;
  // The operator's view of a refusal, on the appliance itself: which check, why, where.
  fmt::print(stderr, "ztgate: NACK revision {} from the manager: {}: {} [resource: {}]; still enforcing {}\n", o.revision,
             cp::nack_code_name(o.nack_code), o.message, o.resource.empty() ? "-" : o.resource,
             revision_ != 0 ? fmt::format("revision {}", revision_) : std::string("no policy (every new flow dropped)"));
}

void ManagerSource::on_session(bool up, const std::string& detail) {
  std::lock_guard lock(mu_);
  connected_ = up;
  session_detail_ = detail;
  session_changed_at_ = now_realtime_ns() / kNsPerSec;
}

std::string ManagerSource::status_json() const {
  std::lock_guard lock(mu_);
  nlohmann::json j;
  j["manager"] = manager_;
  j["identity"] = client_->identity_uri();
  j["connected"] = connected_;
  j[connected_ ? "manager_identity" : "last_session_error"] = session_detail_;
  j["session_changed_unix"] = session_changed_at_;
  j["enforced_revision"] = revision_;
  j["expires_unix"] = revision_ != 0 ? deadline_ns_ / kNsPerSec : 0;
  j["expires_what"] = revision_ != 0 ? deadline_what_ : "";
  j["failed_closed"] = failed_closed_;
  if (failed_closed_) j["failed_closed_unix"] = failed_closed_at_;
  j["highest_accepted_revision"] = client_->highest_accepted();
  j["certificate_not_after_unix"] = client_->certificate_not_after();
  j["pushes"] = pushes_;
  j["acks"] = acks_;
  j["nacks"] = nacks_;
  auto reply = [](const cp::PushOutcome& o, std::int64_t at) {
    nlohmann::json r;
    r["revision"] = o.revision;
    r["unix"] = at;
    if (!o.accepted) {
      r["code"] = cp::nack_code_name(o.nack_code);
      r["message"] = o.message;
      r["resource"] = o.resource;
    }
    return r;
  };
  if (have_reply_) {
    j["last_reply"] = reply(last_reply_, last_reply_at_);
    j["last_reply"]["kind"] = last_reply_.accepted ? "ack" : "nack";
  } else {
    j["last_reply"] = nullptr;
  }
  j["last_nack"] = nacks_ != 0 ? reply(last_nack_, last_nack_at_) : nlohmann::json(nullptr);
  j["history"] = nlohmann::json::array();
  for (const auto& [o, at] : history_) {
    auto r = reply(o, at);
    r["kind"] = o.accepted ? "ack" : "nack";
    j["history"].push_back(std::move(r));
  }
  if (last_delta_at_ != 0) {
    j["last_delta"] = {{"revision", last_delta_.revision},
                       {"base_revision", last_delta_.delta_base},
                       {"summary", last_delta_.delta},
                       {"unix", last_delta_at_}};
  } else {
    j["last_delta"] = nullptr;
  }
  return j.dump();
}

void ManagerSource::attach(dp::Runtime& runtime) {
  runtime_ = &runtime;
  client_->set_publisher([this](const cp::Update& u) { return publish(u, "applied"); });
  client_->set_events({.on_push = [this](const cp::PushOutcome& o) { on_push(o); },
                       .on_session = [this](bool up, const std::string& d) { on_session(up, d); }});
  if (const auto& cur = client_->current(); cur) {
    if (auto r = publish(*cur, "enforcing persisted"); !r)
      fmt::print(stderr, "ztgate: persisted bundle not published: {}\n", r.error().message);
    check_expiry(now_realtime_ns());  // before the workers start: expired keys never admit a flow
  } else {
    fmt::print(stderr,
               "ztgate: no valid persisted bundle in the state directory: every IP packet is dropped "
               "(no_policy) until the manager sends one\n");
  }
}

void ManagerSource::start() {
  if (thread_.joinable()) return;
  stop_.store(false);
  thread_ = std::thread([this] {
    // Signals are for the main loop: none interrupts the sync thread's reads and writes.
    sigset_t set;
    sigemptyset(&set);
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set, sig);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    client_->run(stop_);
  });
}

void ManagerSource::stop() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

void ManagerSource::check_expiry(std::int64_t now_ns) {
  std::lock_guard lock(mu_);
  if (runtime_ == nullptr || revision_ == 0 || failed_closed_ || now_ns < deadline_ns_) return;
  // Same policy and keys, marked expired: established flows keep following their state, every
  // new flow is refused and counted (policy_expired). Never open.
  auto closed = std::make_shared<dp::Snapshot>();
  if (auto cur = runtime_->snapshot(); cur) *closed = *cur;
  closed->expired = true;
  runtime_->publish(std::move(closed));
  failed_closed_ = true;
  failed_closed_at_ = now_ns / kNsPerSec;
  fmt::print(stderr,
             "ztgate: revision {} expired ({} expiry unix {}) without a newer update from the manager: failing "
             "closed, flows already admitted continue and every new flow is dropped (policy_expired) until the "
             "manager sends one\n",
             revision_, deadline_what_, deadline_ns_ / kNsPerSec);
}

}  // namespace zt::appliance
