// ztgate: staged start-up — options, manager enrolment, EAL and ports, workers, the manager sync
// thread, the admin socket and metrics threads — then the control loop on the main lcore until SIGINT/SIGTERM, then an orderly stop
// (sync thread first, then the workers) with the counters flushed.
#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <optional>
#include <thread>
#include <ctime>
#include <map>

#include <rte_log.h>

#include <nlohmann/json.hpp>

#include "admin/metrics.hpp"
#include "admin/server.hpp"
#include "admin/service.hpp"
#include "config/candidate.hpp"
#include "config/config_file.hpp"
#include "config/volumetric_tunables.hpp"
#include "flowlog/flow_log_writer.hpp"
#include "manager_source.hpp"
#include "options.hpp"
#include "zt/rules/policy.hpp"
#include "zt/rules/snapshot.hpp"
#include "zt/dataplane/runtime.hpp"

namespace {

std::atomic<int> g_signal{0};
std::atomic<bool> g_reload{false};

extern "C" void on_signal(int sig) { g_signal.store(sig, std::memory_order_relaxed); }
extern "C" void on_hup(int) { g_reload.store(true, std::memory_order_relaxed); }

void install_signal_handlers() {
  struct sigaction sa{};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  struct sigaction hup{};
  hup.sa_handler = on_hup;
  sigemptyset(&hup.sa_mask);
  sigaction(SIGHUP, &hup, nullptr);
}

std::int64_t realtime_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

bool write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text << "\n";
  return static_cast<bool>(out);
}

}  // namespace

// `ztgate --check-config FILE`: the YAML file alone, validated as a start would, nothing started.
std::optional<int> check_config(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    std::string path;
    if (a == "--check-config" && i + 1 < argc)
      path = argv[i + 1];
    else if (a.starts_with("--check-config="))
      path = std::string(a.substr(15));
    else
      continue;
    zt::appliance::Options o;
    auto r = zt::appliance::config::load_config(path, o, zt::appliance::config::volumetric_validator(
                                                             o.runtime.control.volumetric));
    if (!r) {
      fmt::print(stderr, "ztgate: {}\n", r.error());
      return 2;
    }
    fmt::print("{}: configuration valid\n", path);
    return 0;
  }
  return std::nullopt;
}

int main(int argc, char** argv) {
  if (auto rc = check_config(argc, argv)) return *rc;
  auto parsed = zt::appliance::parse_options(argc, argv);
  if (!parsed) {
    fmt::print(stderr, "ztgate: {}\n", parsed.error());
    return 2;
  }
  if (parsed->exit_now) {
    fmt::print("{}", parsed->text);
    return parsed->exit_code;
  }
  const auto& opt = parsed->options;
  install_signal_handlers();

  zt::admin::AuditLog audit;
  if (auto a = audit.open(opt.admin.audit_log); !a) {
    fmt::print(stderr, "ztgate: {}\n", a.error());
    return 2;
  }
  zt::admin::EventLog events;
  std::unique_ptr<zt::appliance::flowlog::FlowLogWriter> flow_log;
  // --flow-log FILE|syslog, else a YAML --config file's flow_log section (file and/or syslog).
  const auto& ff = opt.file.flow_log;
  if (!opt.admin.flow_log.empty() || !ff.file.empty() || ff.syslog) {
    zt::appliance::flowlog::WriterConfig wc;
    wc.rate = opt.file.tunables.flow_log_rate;
    if (opt.admin.flow_log == "syslog") {
      wc.syslog = true;
    } else if (!opt.admin.flow_log.empty()) {
      wc.file = opt.admin.flow_log;
    } else {
      wc.file = ff.file;
      wc.syslog = ff.syslog;
      wc.syslog_ident = ff.syslog_ident;
    }
    auto w = zt::appliance::flowlog::FlowLogWriter::create(wc);
    if (!w) {
      fmt::print(stderr, "ztgate: --flow-log: {}\n", w.error());
      return 2;
    }
    flow_log = std::move(*w);
  }

  // Enrolment and the persisted bundle come before EAL: a configuration error costs no ports.
  std::unique_ptr<zt::appliance::ManagerSource> manager;
  if (opt.manager.enabled()) {
    auto m = zt::appliance::ManagerSource::open(opt.manager);
    if (!m) {
      fmt::print(stderr, "ztgate: {}\n", m.error().message);
      return m.error().config_error ? 2 : 1;
    }
    manager = std::move(*m);
  }

  // The admin socket is bound before EAL (a path in use costs no ports) and served once the
  // workers run; until then it has no service to answer with.
  std::unique_ptr<zt::admin::Service> service;
  std::unique_ptr<zt::admin::Server> admin;
  if (!opt.admin.socket.empty()) {
    zt::admin::ServerSettings ss;
    ss.socket = opt.admin.socket;
    ss.admin_group = opt.admin.admin_group;
    ss.ro_group = opt.admin.ro_group;
    auto srv = zt::admin::Server::open(ss, [&service](const zt::admin::Request& r, const zt::admin::Peer& p) {
      return service->handle(r, p);
    });
    if (srv) {
      admin = std::move(*srv);
    } else if (opt.admin.socket_given || !opt.admin.admin_group.empty() || !opt.admin.ro_group.empty()) {
      fmt::print(stderr, "ztgate: {}\n", srv.error());
      return 2;
    } else {
      // The default path: a second instance (or no /run) must not stop forwarding.
      fmt::print(stderr, "ztgate: no admin socket, ztctl cannot reach this instance: {}\n", srv.error());
    }
  }

  std::unique_ptr<zt::admin::Metrics> metrics;
  if (!opt.admin.metrics_listen.empty()) {
    auto m = zt::admin::Metrics::listen(opt.admin.metrics_listen);
    if (!m) {
      fmt::print(stderr, "ztgate: {}\n", m.error());
      return 2;
    }
    metrics = std::move(*m);
  }

  auto rt = zt::dp::Runtime::create(opt.runtime);
  if (!rt) {
    fmt::print(stderr, "ztgate: {}\n", rt.error());
    return 1;
  }
  auto& runtime = **rt;

  std::optional<zt::appliance::PolicySource> source;
  if (!opt.policy_dir.empty()) {
    auto src = zt::appliance::PolicySource::create(opt.policy_dir, opt.keys);
    if (!src) {
      fmt::print(stderr, "ztgate: {}\n", src.error());
      return 1;
    }
    source.emplace(std::move(*src));
    auto snap = source->load(realtime_ns());
    if (!snap) {
      fmt::print(stderr, "ztgate: {}\n", snap.error());
      return 1;
    }
    runtime.publish(*snap);
    events.add("policy loaded", true, fmt::format("revision {} from {}", source->revision(), opt.policy_dir));
    fmt::print(stderr, "ztgate: policy {} revision {} ({} rules), {}\n", opt.policy_dir,
               source->revision(), (*snap)->policy->stats().rules,
               source->has_keys() ? fmt::format("keys for epoch {} of domain '{}'", source->epoch(), opt.keys.domain)
                                  : std::string("no keys: tagged packets are dropped (tag_no_key)"));
  } else if (manager) {
    fmt::print(stderr, "ztgate: policy from the manager {}:{} as {}\n", opt.manager.host, opt.manager.port,
               manager->identity());
    manager->attach(runtime);
  } else {
    fmt::print(stderr, "ztgate: no --policy: every IP packet is dropped (no_policy)\n");
  }

  if (auto r = runtime.start(); !r) {
    fmt::print(stderr, "ztgate: {}\n", r.error());
    return 1;
  }
  fmt::print(stderr, "ztgate: forwarding {} <-> {} with {} worker(s); SIGINT or SIGTERM stops\n",
             runtime.port_names()[0], runtime.port_names()[1], runtime.worker_count());
  if (manager) manager->start();  // a control thread, not a worker lcore

  // Operators: the admin socket (ztctl) and the metrics endpoint, control threads both.
  zt::admin::ServiceInfo info;
  info.version = ZT_VERSION;
  info.policy_source = !opt.policy_dir.empty() ? "directory " + opt.policy_dir
                       : manager ? fmt::format("manager {}:{}", opt.manager.host, opt.manager.port)
                                 : std::string("none");
  if (opt.policy_dir.empty() == false && !opt.keys.master_file.empty()) info.key_domain = opt.keys.domain;
  info.admin_socket = opt.admin.socket;
  info.metrics_listen = opt.admin.metrics_listen;
  service = std::make_unique<zt::admin::Service>(runtime, manager.get(), info, events, audit);

  // Live tunables (`ztctl set … / commit`): the candidate store applies a commit here, as one
  // unit: everything is computed first, then published.
  namespace cfg = zt::appliance::config;
  cfg::Tunables applied;
  applied.log_level = opt.runtime.eal_log_level;
  const zt::dp::VolumetricConfig base_volumetric = runtime.control().volumetric();
  std::map<std::string, std::optional<zt::rules::SegmentMode>> policy_modes;  // as the policy wrote them
  cfg::CandidateStore::Options co;
  co.initial = applied;
  co.volumetric = cfg::volumetric_validator(base_volumetric);
  co.segment = [&runtime](std::string_view name) -> std::expected<void, std::string> {
    const auto snap = runtime.snapshot();
    if (snap && snap->policy)
      for (auto& s : snap->policy->source().segments)
        if (s.name == name) return {};
    return std::unexpected(fmt::format("segment '{}' is not in the policy in force", name));
  };
  co.apply = [&](const cfg::Tunables& next) -> std::expected<void, std::string> {
    if (auto t = zt::admin::flow_timeouts_from(next, rte_get_tsc_hz()); !t) return std::unexpected(t.error());
    static const std::map<std::string, std::uint32_t> kLevels = {
        {"error", RTE_LOG_ERR}, {"warning", RTE_LOG_WARNING}, {"notice", RTE_LOG_NOTICE},
        {"info", RTE_LOG_INFO}, {"debug", RTE_LOG_DEBUG}};
    const auto level = kLevels.find(next.log_level);
    if (level == kLevels.end()) return std::unexpected(fmt::format("log.level '{}': unknown", next.log_level));
    auto volumetric = cfg::volumetric_from(next, base_volumetric);
    if (!volumetric) return std::unexpected(volumetric.error());
    std::shared_ptr<const zt::dp::Snapshot> republish;
    if (next.segment_mode != applied.segment_mode) {
      const auto snap = runtime.snapshot();
      if (!snap || !snap->policy) return std::unexpected("segment.*.mode: no policy is loaded");
      zt::rules::Policy pol = snap->policy->source();
      for (auto& s : pol.segments) {
        if (!policy_modes.contains(s.name)) policy_modes[s.name] = s.mode;
        auto o = next.segment_mode.find(s.name);
        s.mode = o == next.segment_mode.end() ? policy_modes[s.name]
                 : o->second == cfg::SegmentMode::audit ? zt::rules::SegmentMode::audit
                                                         : zt::rules::SegmentMode::enforce;
      }
      auto compiled = zt::rules::compile(pol, {.revision = snap->policy->revision()});
      if (!compiled) return std::unexpected(fmt::format("segment.*.mode: the policy does not compile with it: {}",
                                                        zt::rules::format(compiled.error().front())));
      auto s2 = std::make_shared<zt::dp::Snapshot>(*snap);
      s2->policy = *compiled;
      republish = std::move(s2);
    }
    if (auto r = zt::admin::apply_flow_timeouts(runtime.control(), applied, next, rte_get_tsc_hz()); !r)
      return std::unexpected(r.error());
    if (auto r = runtime.control().set_volumetric(*volumetric); !r) return std::unexpected(r.error());
    if (republish) runtime.publish(republish);
    rte_log_set_global_level(level->second);
    if (flow_log) flow_log->set_rate(next.flow_log_rate);
    applied = next;
    return {};
  };
  co.on_auto_rollback = [&audit](const cfg::CommitRecord& r, const std::string& error) {
    zt::admin::Peer system;
    system.user = "system";
    zt::admin::Request req;
    req.set_command("commit (automatic rollback: not confirmed in time)");
    audit.record(system, req, error.empty() ? "ok" : "error",
                 error.empty() ? fmt::format("commit {} restored the configuration before the unconfirmed one", r.number)
                               : error);
  };
  // The config file's `tunables:` become running at start, through the same apply as a commit.
  cfg::Tunables initial = opt.file.tunables;
  if (initial.log_level == cfg::Tunables{}.log_level) initial.log_level = opt.runtime.eal_log_level;
  if (initial != applied) {
    if (auto r = co.apply(initial); !r) {
      fmt::print(stderr, "ztgate: the config file's tunables: {}\n", r.error());
      return 2;
    }
  }
  co.initial = applied;
  cfg::CandidateStore candidate(std::move(co));
  candidate.start_timer(std::chrono::milliseconds(200));
  service->set_candidate(&candidate);
  if (admin) {
    admin->start();
    fmt::print(stderr, "ztgate: admin socket {} (read-only: {})\n", admin->path(), admin->ro_path());
  }
  if (metrics) {
    metrics->serve(runtime, ZT_VERSION);
    fmt::print(stderr, "ztgate: Prometheus metrics on {} (port {}) at /metrics\n", opt.admin.metrics_listen,
               metrics->port());
  }

  using clock = std::chrono::steady_clock;
  auto last_rx_change = clock::now();
  auto last_stats = clock::now();
  std::uint64_t last_rx = 0;
  std::vector<zt::dp::FlowLogRecord> flow_records;
  while (g_signal.load(std::memory_order_relaxed) == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const auto now = clock::now();
    if (opt.stop_when_idle_ms != 0) {
      const auto snap = runtime.counters();
      if (snap.rx_total() != last_rx) {
        last_rx = snap.rx_total();
        last_rx_change = now;
      } else if (now - last_rx_change >= std::chrono::milliseconds(opt.stop_when_idle_ms)) {
        fmt::print(stderr, "ztgate: idle for {} ms, stopping\n", opt.stop_when_idle_ms);
        break;
      }
    }
    if (source && g_reload.exchange(false)) {
      auto snap = source->load(realtime_ns());
      if (snap) {
        runtime.publish(*snap);
        events.add("policy reloaded (SIGHUP)", true, fmt::format("revision {}", source->revision()));
        fmt::print(stderr, "ztgate: reloaded policy, revision {}\n", source->revision());
      } else {
        events.add("policy reload refused (SIGHUP)", false,
                   fmt::format("revision {} stays in force: {}", source->revision(), snap.error()));
        fmt::print(stderr, "ztgate: reload refused, revision {} stays in force: {}\n",
                   source->revision(), snap.error());
      }
    }
    if (manager) manager->check_expiry(realtime_ns());
    if (source) {
      if (auto snap = source->rekey_if_due(realtime_ns()); !snap) {
        fmt::print(stderr, "ztgate: re-key for a new epoch failed, the old keys stay: {}\n", snap.error());
        events.add("re-key", false, snap.error());
      } else if (*snap) {
        runtime.publish(*snap);
        events.add("re-key", true, fmt::format("keys for epoch {}", source->epoch()));
        fmt::print(stderr, "ztgate: keys for epoch {}\n", source->epoch());
      }
    }
    runtime.capture().poll();  // queued packet copies into the pcapng file (ztctl capture)
    if (auto step = runtime.poll_clock(); !step.empty()) {  // the workers follow the wall clock
      fmt::print(stderr, "ztgate: {}\n", step);
      events.add("clock step", true, step);
    }
    if (flow_log) {
      flow_records.clear();
      if (runtime.control().drain_flow_logs(flow_records, 4096) != 0) {
        const auto snap = runtime.snapshot();
        flow_log->write(flow_records, zt::appliance::flowlog::names_from(snap ? snap->policy : nullptr));
      }
    }
    if (opt.stats_interval_s != 0 && now - last_stats >= std::chrono::seconds(opt.stats_interval_s)) {
      last_stats = now;
      fmt::print("{}\n", zt::dp::format_counters(runtime.counters()));
      std::fflush(stdout);
    }
  }
  if (int sig = g_signal.load(); sig != 0) fmt::print(stderr, "ztgate: signal {}, stopping\n", sig);

  metrics.reset();  // no scrape or admin request reads the runtime after this
  admin.reset();
  if (runtime.capture().status().active) (void)runtime.capture().stop();  // a complete file
  service.reset();
  candidate.stop_timer();
  if (manager) manager->stop();  // bounded by the client's connect timeout; no publish after this
  runtime.stop();
  const auto snap = runtime.counters();
  if (!opt.quiet) fmt::print("{}", zt::dp::format_counters(snap));
  int rc = 0;
  std::string stats_json = opt.stats_file.empty() ? std::string() : zt::dp::counters_to_json(snap);
  if (!stats_json.empty()) {
    auto j = nlohmann::json::parse(stats_json, nullptr, false);
    if (!j.is_discarded() && j.is_object()) {
      // How the workers' clock followed the wall clock (dataplane/README.md "Clock").
      j["clock"] = zt::admin::clock_status_json(runtime.clock_status());
      // The control plane's state beside the counters: enforced revision, last ACK/NACK, fail-closed.
      if (manager) j["control_plane"] = nlohmann::json::parse(manager->status_json());
      stats_json = j.dump(2);
    }
  }
  if (!opt.stats_file.empty() && !write_file(opt.stats_file, stats_json)) {
    fmt::print(stderr, "ztgate: cannot write --stats-file '{}'\n", opt.stats_file);
    rc = 1;
  }
  manager.reset();
  rt->reset();  // closes the ports and releases EAL before exit
  return rc;
}
