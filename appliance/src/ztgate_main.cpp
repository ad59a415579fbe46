// ztgate: staged start-up — options, manager enrolment, EAL and ports, workers, the manager sync
// thread — then the control loop on the main lcore until SIGINT/SIGTERM, then an orderly stop
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

#include <nlohmann/json.hpp>

#include "manager_source.hpp"
#include "options.hpp"
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

int main(int argc, char** argv) {
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

  using clock = std::chrono::steady_clock;
  auto last_rx_change = clock::now();
  auto last_stats = clock::now();
  std::uint64_t last_rx = 0;
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
        fmt::print(stderr, "ztgate: reloaded policy, revision {}\n", source->revision());
      } else {
        fmt::print(stderr, "ztgate: reload refused, revision {} stays in force: {}\n",
                   source->revision(), snap.error());
      }
    }
    if (manager) manager->check_expiry(realtime_ns());
    if (source) {
      if (auto snap = source->rekey_if_due(realtime_ns()); !snap) {
        fmt::print(stderr, "ztgate: re-key for a new epoch failed, the old keys stay: {}\n", snap.error());
      } else if (*snap) {
        runtime.publish(*snap);
        fmt::print(stderr, "ztgate: keys for epoch {}\n", source->epoch());
      }
    }
    if (opt.stats_interval_s != 0 && now - last_stats >= std::chrono::seconds(opt.stats_interval_s)) {
      last_stats = now;
      fmt::print("{}\n", zt::dp::format_counters(runtime.counters()));
      std::fflush(stdout);
    }
  }
  if (int sig = g_signal.load(); sig != 0) fmt::print(stderr, "ztgate: signal {}, stopping\n", sig);

  if (manager) manager->stop();  // bounded by the client's connect timeout; no publish after this
  runtime.stop();
  const auto snap = runtime.counters();
  if (!opt.quiet) fmt::print("{}", zt::dp::format_counters(snap));
  int rc = 0;
  std::string stats_json = opt.stats_file.empty() ? std::string() : zt::dp::counters_to_json(snap);
  if (manager && !stats_json.empty()) {
    // The control plane's state beside the counters: enforced revision, last ACK/NACK, fail-closed.
    auto j = nlohmann::json::parse(stats_json, nullptr, false);
    if (!j.is_discarded() && j.is_object()) {
      j["control_plane"] = nlohmann::json::parse(manager->status_json());
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
