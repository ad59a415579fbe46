#include "zt/dataplane/runtime.hpp"

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_cycles.h>
#include <rte_mbuf.h>

#include <algorithm>
#include <ctime>

#include <fmt/format.h>

#include <fstream>
#include <sstream>

namespace zt::dp {

namespace {

// A symmetric Toeplitz key (the 16-bit pattern 0x6d5a repeated) hashes (src, dst) and
// (dst, src) alike, so both directions of a flow land on the same worker and its flow state.
constexpr std::uint8_t kSymmetricKeyPattern[2] = {0x6d, 0x5a};

std::string errno_text() { return rte_strerror(rte_errno); }

// CLOCK_REALTIME and the TSC read together: the tightest of three tries, the TSC taken half way
// through the system call (a thread preempted between the reads would pair them wrongly).
// False when even the tightest pair spans more than `max_spread` ticks.
bool sample_wall(std::int64_t& wall_ns, std::uint64_t& tsc, std::uint64_t max_spread) noexcept {
  std::uint64_t best = ~std::uint64_t{0};
  for (int i = 0; i < 3; ++i) {
    const std::uint64_t t0 = rte_rdtsc();
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    const std::uint64_t t1 = rte_rdtsc();
    if (t1 - t0 < best) {
      best = t1 - t0;
      tsc = t0 + best / 2;
      wall_ns = static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
    }
  }
  return best <= max_spread;
}

}  // namespace

bool is_vdev(const std::string& spec) noexcept {
  return spec.starts_with("net_") || spec.starts_with("eth_") || spec.starts_with("crypto_");
}

std::string port_name(const std::string& spec) {
  if (!is_vdev(spec)) return spec;
  return spec.substr(0, spec.find(','));
}

bool hugepages_reserved() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("HugePages_Total:")) {
      std::istringstream s(line.substr(16));
      long n = 0;
      s >> n;
      return n > 0;
    }
  }
  return false;
}

std::vector<std::string> build_eal_args(const RuntimeConfig& cfg, bool hugepages_available) {
  std::vector<std::string> a;
  // A list with '@' maps lcores onto CPUs ("0@0,1@1,2@1"): EAL's --lcores; else a plain -l list.
  const bool mapped = cfg.lcores.find('@') != std::string::npos;
  a.push_back(mapped ? "--lcores" : "-l");
  a.push_back(cfg.lcores.empty() ? fmt::format("0-{}", cfg.workers) : cfg.lcores);
  const bool huge = cfg.hugepages == Hugepages::on ||
                    (cfg.hugepages == Hugepages::auto_detect && hugepages_available);
  if (!huge) {
    // No hugepages: EAL memory comes from anonymous pages and cannot be shared, so no shared
    // config either (EAL refuses --in-memory with --no-huge; DESIGN.md §6).
    a.push_back("--no-huge");
    a.push_back("--no-shconf");
    a.push_back("-m");
    a.push_back(std::to_string(cfg.memory_mb));
  } else {
    a.push_back("--file-prefix");
    a.push_back(cfg.file_prefix);
  }
  bool any_pci = false;
  for (const auto& p : cfg.ports) {
    if (is_vdev(p)) {
      a.push_back("--vdev");
      a.push_back(p);
    } else {
      any_pci = true;
      a.push_back("-a");
      a.push_back(p);
    }
  }
  if (!any_pci) a.push_back("--no-pci");
  a.push_back(fmt::format("--log-level=lib.*:{}", cfg.eal_log_level));
  a.push_back(fmt::format("--log-level=pmd.*:{}", cfg.eal_log_level));
  for (const auto& e : cfg.extra_eal_args) a.push_back(e);
  return a;
}

std::expected<std::unique_ptr<Runtime>, std::string> Runtime::create(const RuntimeConfig& cfg) {
  if (cfg.workers == 0) return std::unexpected("--workers must be at least 1");
  for (unsigned i = 0; i < kMaxPorts; ++i)
    if (cfg.ports[i].empty())
      return std::unexpected(fmt::format("--port-{} is required (a vdev spec or a PCI address)",
                                         i == 0 ? 'a' : 'b'));
  if (port_name(cfg.ports[0]) == port_name(cfg.ports[1]))
    return std::unexpected(fmt::format("--port-a and --port-b name the same device '{}'",
                                       port_name(cfg.ports[0])));

  std::unique_ptr<Runtime> rt(new Runtime());
  auto args = build_eal_args(cfg, hugepages_reserved());
  std::vector<char*> argv;
  std::string prog = "ztgate";
  argv.push_back(prog.data());
  for (auto& s : args) argv.push_back(s.data());
  if (rte_eal_init(static_cast<int>(argv.size()), argv.data()) < 0) {
    std::string all;
    for (const auto& s : args) all += " " + s;
    return std::unexpected(fmt::format("EAL initialisation failed: {} (EAL arguments:{})",
                                       errno_text(), all));
  }
  rt->eal_ready_ = true;

  const unsigned workers = rte_lcore_count() - 1;
  if (workers == 0)
    return std::unexpected("the EAL lcore list has only the main lcore; --lcores needs at least "
                           "one more for a worker");
  if (workers != cfg.workers)
    return std::unexpected(fmt::format(
        "--lcores gives {} worker lcores but --workers is {}; make them agree", workers,
        cfg.workers));

  rt->pool_ = rte_pktmbuf_pool_create("zt_mbufs", cfg.mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                      static_cast<int>(rte_socket_id()));
  if (rt->pool_ == nullptr)
    return std::unexpected(fmt::format(
        "cannot create a pool of {} mbufs: {}; lower --mbufs or raise --memory", cfg.mbufs,
        errno_text()));

  rt->counters_ = std::make_unique<WorkerCounters[]>(workers);
  auto ch = SnapshotChannel::create(workers);
  if (!ch) return std::unexpected(ch.error());
  rt->snapshots_ = std::move(*ch);
  if (auto v = validate(cfg.control.volumetric); !v) return std::unexpected(v.error());
  PipelineConfig pc;
  pc.flows.capacity = cfg.flows;
  pc.flows.per_identity_quota = cfg.flow_quota;
  pc.flows.timeouts = make_timeouts(rte_get_tsc_hz());
  pc.geneve = cfg.geneve;
  pc.replay.packets_per_second = cfg.replay_pps;
  pc.replay.window_ns = cfg.tag_window_ns;
  pc.flow_log_depth = cfg.flow_log_depth;
  for (unsigned w = 0; w < workers; ++w) {
    auto p = Pipeline::create(pc);
    if (!p) return std::unexpected(fmt::format("worker {}: {} (see --flows)", w, p.error()));
    rt->pipelines_.push_back(std::move(*p));
  }
  // Packet capture (capture.hpp): one tap per worker, disarmed until an operator starts one.
  CaptureConfig cc;
  cc.name = cfg.control.name;
  cc.workers = workers;
  auto cap = Capture::create(cc);
  if (!cap) return std::unexpected(cap.error());
  rt->capture_ = std::move(*cap);
  rt->tag_window_ns_ = cfg.tag_window_ns;
  for (unsigned w = 0; w < workers; ++w) rt->pipelines_[w]->set_capture(&rt->capture_->tap(w));
  for (unsigned i = 0; i < kMaxPorts; ++i)
    if (auto r = rt->setup_port(i, cfg); !r) return std::unexpected(r.error());

  unsigned q = 0;
  unsigned lcore;
  RTE_LCORE_FOREACH_WORKER(lcore) {
    WorkerContext ctx;
    ctx.lcore = lcore;
    ctx.queue = static_cast<std::uint16_t>(q);
    for (unsigned i = 0; i < kMaxPorts; ++i) ctx.port_id[i] = rt->port_ids_[i];
    ctx.counters = &rt->counters_[q];
    ctx.pipeline = rt->pipelines_[q].get();
    ctx.snapshots = rt->snapshots_.get();
    ctx.stop = &rt->stop_;
    ctx.clock = &rt->clock_;
    rt->contexts_.push_back(ctx);
    ++q;
  }
  std::vector<ControlWorker> cw;
  for (const auto& ctx : rt->contexts_) cw.push_back({ctx.lcore, ctx.queue, ctx.counters, ctx.pipeline});
  auto control = Control::create(*rt->snapshots_, cw, cfg.control);
  if (!control) return std::unexpected(control.error());
  rt->control_ = std::move(*control);
  rt->control_->set_ports(rt->port_ids_, rt->names_);
  for (unsigned w = 0; w < rt->contexts_.size(); ++w) rt->contexts_[w].mailbox = &rt->control_->mailbox(w);
  return rt;
}

std::expected<void, std::string> Runtime::setup_port(unsigned index, const RuntimeConfig& cfg) {
  const std::string name = port_name(cfg.ports[index]);
  const char* opt = index == 0 ? "--port-a" : "--port-b";
  std::uint16_t pid = 0;
  if (rte_eth_dev_get_port_by_name(name.c_str(), &pid) != 0)
    return std::unexpected(fmt::format("{} '{}': no such port after EAL start (is the device "
                                       "spec right? for af_packet: net_af_packetN,iface=IF)",
                                       opt, cfg.ports[index]));
  port_ids_[index] = pid;
  names_[index] = name;

  rte_eth_dev_info info{};
  if (int rc = rte_eth_dev_info_get(pid, &info); rc != 0)
    return std::unexpected(fmt::format("{} '{}': cannot read device info: {}", opt, name,
                                       rte_strerror(-rc)));
  const unsigned nq = cfg.workers;
  if (info.max_rx_queues < nq || info.max_tx_queues < nq)
    return std::unexpected(fmt::format(
        "{} '{}' has at most {} RX / {} TX queues but --workers {} needs {} of each (for "
        "net_af_packet add qpairs={} to the device spec)",
        opt, name, info.max_rx_queues, info.max_tx_queues, cfg.workers, nq, nq));

  rte_eth_conf conf{};
  std::vector<std::uint8_t> key;
  if (nq > 1 && info.flow_type_rss_offloads != 0) {
    conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
    key.resize(info.hash_key_size ? info.hash_key_size : 40);
    for (std::size_t i = 0; i < key.size(); ++i) key[i] = kSymmetricKeyPattern[i & 1];
    conf.rx_adv_conf.rss_conf.rss_key = key.data();
    conf.rx_adv_conf.rss_conf.rss_key_len = static_cast<std::uint8_t>(key.size());
    conf.rx_adv_conf.rss_conf.rss_hf =
        info.flow_type_rss_offloads & (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP);
  }
  if (int rc = rte_eth_dev_configure(pid, nq, nq, &conf); rc != 0)
    return std::unexpected(fmt::format("{} '{}': configure with {} queue pairs failed: {}", opt,
                                       name, nq, rte_strerror(-rc)));

  std::uint16_t rxd = cfg.rx_desc, txd = cfg.tx_desc;
  if (int rc = rte_eth_dev_adjust_nb_rx_tx_desc(pid, &rxd, &txd); rc != 0)
    return std::unexpected(fmt::format("{} '{}': descriptor counts {}/{} rejected: {}", opt, name,
                                       cfg.rx_desc, cfg.tx_desc, rte_strerror(-rc)));
  const int socket = rte_eth_dev_socket_id(pid);
  for (std::uint16_t q = 0; q < nq; ++q) {
    if (int rc = rte_eth_rx_queue_setup(pid, q, rxd, socket < 0 ? SOCKET_ID_ANY : socket,
                                        nullptr, pool_);
        rc != 0)
      return std::unexpected(fmt::format("{} '{}': RX queue {} setup failed: {}", opt, name, q,
                                         rte_strerror(-rc)));
    if (int rc = rte_eth_tx_queue_setup(pid, q, txd, socket < 0 ? SOCKET_ID_ANY : socket,
                                        nullptr);
        rc != 0)
      return std::unexpected(fmt::format("{} '{}': TX queue {} setup failed: {}", opt, name, q,
                                         rte_strerror(-rc)));
  }
  if (int rc = rte_eth_dev_start(pid); rc != 0)
    return std::unexpected(
        fmt::format("{} '{}': start failed: {}", opt, name, rte_strerror(-rc)));
  port_started_[index] = true;
  if (cfg.promiscuous) {
    if (int rc = rte_eth_promiscuous_enable(pid); rc != 0 && rc != -ENOTSUP)
      return std::unexpected(fmt::format("{} '{}': cannot enable promiscuous mode: {}", opt,
                                         name, rte_strerror(-rc)));
  }
  return {};
}

std::expected<void, std::string> Runtime::start() {
  (void)sample_wall(anchor_.base_ns, anchor_.base_tsc, ~std::uint64_t{0});
  clock_.publish(anchor_);
  for (auto& ctx : contexts_) {
    ctx.base_ns = anchor_.base_ns;
    ctx.base_tsc = anchor_.base_tsc;
  }
  next_clock_check_tsc_ = anchor_.base_tsc + rte_get_tsc_hz() / 10;
  last_log_tsc_ = anchor_.base_tsc;
  for (auto& ctx : contexts_) {
    if (int rc = rte_eal_remote_launch(worker_main, &ctx, ctx.lcore); rc != 0)
      return std::unexpected(
          fmt::format("cannot launch the worker on lcore {}: {}", ctx.lcore, rte_strerror(-rc)));
  }
  launched_ = true;
  return {};
}

std::string Runtime::poll_clock() {
  if (!launched_) return {};
  const std::uint64_t hz = rte_get_tsc_hz();
  const std::uint64_t now = rte_rdtsc();
  if (now < next_clock_check_tsc_) return {};
  next_clock_check_tsc_ = now + hz / 10;  // ~100 ms: a step is followed within that
  std::int64_t wall = 0;
  std::uint64_t tsc = 0;
  if (!sample_wall(wall, tsc, hz / 1000)) return {};  // no pair within 1 ms: next time
  clock_checks_.fetch_add(1, std::memory_order_relaxed);
  const ClockDecision d = follow_clock(anchor_, wall, tsc, 1e9 / static_cast<double>(hz));
  clock_offset_ns_.store(d.offset_ns, std::memory_order_relaxed);
  if (d.change == ClockChange::none) return {};
  anchor_ = d.anchor;
  clock_.publish(anchor_);
  if (d.change == ClockChange::adjust) {
    clock_adjustments_.fetch_add(1, std::memory_order_relaxed);
    return {};
  }
  clock_steps_.fetch_add(1, std::memory_order_relaxed);
  clock_last_step_ns_.store(d.offset_ns, std::memory_order_relaxed);
  clock_last_step_at_.store(wall, std::memory_order_relaxed);
  // Rate limit: a burst of 5 lines, then one every 10 s; the steps left out are counted in the
  // next line (and every step in clock_status()).
  constexpr double kBurst = 5, kPerTick = 1.0 / 10;
  log_tokens_ = std::min(kBurst, log_tokens_ + static_cast<double>(now - last_log_tsc_) / static_cast<double>(hz) * kPerTick);
  last_log_tsc_ = now;
  if (log_tokens_ < 1) {
    ++unlogged_steps_;
    return {};
  }
  log_tokens_ -= 1;
  const double secs = static_cast<double>(d.offset_ns < 0 ? -d.offset_ns : d.offset_ns) / 1e9;
  std::string msg;
  if (d.offset_ns > 0) {
    msg = fmt::format("wall clock stepped forward {:.3f} s; the dataplane follows it", secs);
  } else {
    const double refused = static_cast<double>(-d.offset_ns - tag_window_ns_) / 1e9;
    msg = fmt::format(
        "wall clock stepped back {:.3f} s; the dataplane follows it, but judges tags no earlier "
        "than the newest time it accepted one at until the wall clock passes that again (so the "
        "replay filter still covers every copy): {}",
        secs,
        refused > 0 ? fmt::format("tags stamped by clocks that stepped back too are refused for up "
                                  "to {:.3f} s (less if no tag was accepted just before the step)",
                                  refused)
                    : std::string("within the tag window, no fresh tag is refused for it"));
  }
  if (unlogged_steps_ != 0) {
    msg += fmt::format(" ({} earlier step{} not logged, too many)", unlogged_steps_, unlogged_steps_ == 1 ? "" : "s");
    unlogged_steps_ = 0;
  }
  return msg;
}

ClockStatus Runtime::clock_status() const noexcept {
  ClockStatus s;
  s.checks = clock_checks_.load(std::memory_order_relaxed);
  s.adjustments = clock_adjustments_.load(std::memory_order_relaxed);
  s.steps = clock_steps_.load(std::memory_order_relaxed);
  s.last_step_ns = clock_last_step_ns_.load(std::memory_order_relaxed);
  s.last_step_unix_ns = clock_last_step_at_.load(std::memory_order_relaxed);
  s.offset_ns = clock_offset_ns_.load(std::memory_order_relaxed);
  return s;
}

void Runtime::stop() {
  stop_.store(true, std::memory_order_relaxed);
  if (launched_) {
    rte_eal_mp_wait_lcore();
    launched_ = false;
  }
  for (unsigned i = 0; i < kMaxPorts; ++i) {
    if (port_started_[i]) {
      rte_eth_dev_stop(port_ids_[i]);
      port_started_[i] = false;
    }
  }
}

Runtime::~Runtime() {
  stop();
  control_.reset();  // its rings, before EAL goes
  pipelines_.clear();  // their flow-log rings too
  capture_.reset();    // its pool and rings (after the pipelines that held its taps)
  if (!eal_ready_) return;
  for (unsigned i = 0; i < kMaxPorts; ++i)
    if (!names_[i].empty()) rte_eth_dev_close(port_ids_[i]);
  if (pool_ != nullptr) rte_mempool_free(pool_);
  rte_eal_cleanup();
}

}  // namespace zt::dp
