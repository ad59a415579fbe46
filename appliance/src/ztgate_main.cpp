// ztgate: staged start-up — options, EAL and ports, workers — then the control loop on the main
// lcore until SIGINT/SIGTERM, then an orderly stop with the counters flushed.
#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <thread>

#include "options.hpp"
#include "zt/dataplane/runtime.hpp"

namespace {

std::atomic<int> g_signal{0};

extern "C" void on_signal(int sig) { g_signal.store(sig, std::memory_order_relaxed); }

void install_signal_handlers() {
  struct sigaction sa{};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
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

  auto rt = zt::dp::Runtime::create(opt.runtime);
  if (!rt) {
    fmt::print(stderr, "ztgate: {}\n", rt.error());
    return 1;
  }
  auto& runtime = **rt;
  if (auto r = runtime.start(); !r) {
    fmt::print(stderr, "ztgate: {}\n", r.error());
    return 1;
  }
  fmt::print(stderr, "ztgate: forwarding {} <-> {} with {} worker(s); SIGINT or SIGTERM stops\n",
             runtime.port_names()[0], runtime.port_names()[1], runtime.worker_count());

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
    if (opt.stats_interval_s != 0 && now - last_stats >= std::chrono::seconds(opt.stats_interval_s)) {
      last_stats = now;
      fmt::print("{}\n", zt::dp::format_counters(runtime.counters()));
      std::fflush(stdout);
    }
  }
  if (int sig = g_signal.load(); sig != 0) fmt::print(stderr, "ztgate: signal {}, stopping\n", sig);

  runtime.stop();
  const auto snap = runtime.counters();
  if (!opt.quiet) fmt::print("{}", zt::dp::format_counters(snap));
  int rc = 0;
  if (!opt.stats_file.empty() && !write_file(opt.stats_file, zt::dp::counters_to_json(snap))) {
    fmt::print(stderr, "ztgate: cannot write --stats-file '{}'\n", opt.stats_file);
    rc = 1;
  }
  rt->reset();  // closes the ports and releases EAL before exit
  return rc;
}
