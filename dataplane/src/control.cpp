#include "zt/dataplane/control.hpp"

#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include <fmt/format.h>

#include <algorithm>
#include <thread>
#include <utility>

#include "zt/dataplane/pipeline.hpp"

namespace zt::dp {

bool FlowFilter::matches(const FlowEntry& e) const noexcept {
  if (identity && e.identity != *identity) return false;
  if (address) {
    if (e.key.version != (address->v6 ? 6 : 4)) return false;
    if (e.key.addr_lo != address->bytes && e.key.addr_hi != address->bytes) return false;
  }
  if (port && e.key.port_lo != *port && e.key.port_hi != *port) return false;
  return true;
}

FlowRecord to_record(const FlowEntry& e) noexcept {
  FlowRecord r;
  const bool lo = e.initiator == KeyDir::lo_to_hi;
  r.src = lo ? e.key.addr_lo : e.key.addr_hi;
  r.dst = lo ? e.key.addr_hi : e.key.addr_lo;
  r.sport = lo ? e.key.port_lo : e.key.port_hi;
  r.dport = lo ? e.key.port_hi : e.key.port_lo;
  r.proto = e.key.proto;
  r.version = e.key.version;
  r.tcp = e.tcp;
  r.identity = e.identity;
  r.rule_id = e.rule_id;
  r.revision = e.revision;
  const auto out = static_cast<unsigned>(e.initiator), back = out ^ 1U;
  r.packets_out = e.packets[out];
  r.packets_back = e.packets[back];
  r.bytes_out = e.bytes[out];
  r.bytes_back = e.bytes[back];
  r.last_seen = e.last_seen;
  return r;
}

std::string_view to_string(CommandKind k) noexcept {
  switch (k) {
    case CommandKind::flush_flows: return "flush flows";
    case CommandKind::dump_flows: return "dump flows";
    case CommandKind::reset_counters: return "reset counters";
    case CommandKind::stage_timing: return "stage timing";
    case CommandKind::trace: return "trace";
    case CommandKind::dump_blocklist: return "dump blocklist";
    case CommandKind::dump_top_talkers: return "dump top talkers";
    case CommandKind::clear_blocklist: return "clear blocklist";
    case CommandKind::set_flow_timeouts: return "set flow timeouts";
  }
  return "unknown command";
}

// ---- mailbox -------------------------------------------------------------------------------

std::expected<std::unique_ptr<WorkerMailbox>, std::string> WorkerMailbox::create(
    const std::string& name, unsigned depth, unsigned trace_depth) {
  std::unique_ptr<WorkerMailbox> mb(new WorkerMailbox());
  // RING_F_EXACT_SZ: the ring holds exactly `count` elements, no power-of-two rounding.
  const auto ring = [&](const std::string& n, unsigned esize, unsigned count) {
    return rte_ring_create_elem(n.c_str(), esize, count, SOCKET_ID_ANY,
                                RING_F_SP_ENQ | RING_F_SC_DEQ | RING_F_EXACT_SZ);
  };
  mb->cmds_ = ring(name + "_cmd", sizeof(Command), depth);
  if (mb->cmds_ == nullptr)
    return std::unexpected(fmt::format("cannot create the command ring '{}_cmd' ({} commands): {}", name,
                                       depth, rte_strerror(rte_errno)));
  mb->trace_ = ring(name + "_trc", sizeof(TraceRecord), trace_depth);
  if (mb->trace_ == nullptr)
    return std::unexpected(fmt::format("cannot create the trace ring '{}_trc' ({} records): {}", name,
                                       trace_depth, rte_strerror(rte_errno)));
  return mb;
}

WorkerMailbox::~WorkerMailbox() {
  rte_ring_free(cmds_);
  rte_ring_free(trace_);
}

bool WorkerMailbox::post(const Command& cmd) noexcept {
  Command copy = cmd;  // the DPDK API takes a non-const pointer
  return rte_ring_sp_enqueue_elem(cmds_, &copy, sizeof copy) == 0;
}

unsigned WorkerMailbox::drain_trace(TraceRecord* out, unsigned max) noexcept {
  return rte_ring_sc_dequeue_burst_elem(trace_, out, sizeof(TraceRecord), max, nullptr);
}

unsigned WorkerMailbox::service(Pipeline& p, WorkerCounters& c) noexcept {
  unsigned completed = 0;
  for (unsigned k = 0; k < kCommandsPerLoop; ++k) {
    if (!busy_) {
      if (rte_ring_sc_dequeue_elem(cmds_, &cur_, sizeof cur_) != 0) break;  // nothing waiting
      busy_ = true;
      cursor_ = 0;
      cur_.result->count = 0;
      cur_.result->truncated = false;
    }
    if (!step(p, c)) break;  // a flow-table walk continues on the next iteration
    busy_ = false;
    c.commands.inc();
    ++completed;
    done_.store(cur_.seq, std::memory_order_release);  // after the result and any dump copy
  }
  return completed;
}

bool WorkerMailbox::step(Pipeline& p, WorkerCounters& c) noexcept {
  switch (cur_.kind) {
    case CommandKind::reset_counters: c.reset(); return true;
    case CommandKind::dump_blocklist:
      cur_.result->count = p.volumetric().dump_blocklist(cur_.vol_out, cur_.out_capacity, rte_rdtsc(), rte_get_tsc_hz());
      return true;
    case CommandKind::dump_top_talkers:
      cur_.result->count = p.volumetric().dump_top(cur_.vol_out, cur_.out_capacity);
      return true;
    case CommandKind::clear_blocklist: {
      const auto& a = cur_.filter.address;
      cur_.result->count = p.volumetric().clear_blocklist(a ? a->bytes.data() : nullptr,
                                                          a ? (a->v6 ? 6 : 4) : 0,
                                                          static_cast<std::uint8_t>(cur_.arg), rte_rdtsc());
      return true;
    }
    case CommandKind::set_flow_timeouts:
      if (cur_.timeouts != nullptr) p.flows().set_timeouts(*cur_.timeouts);
      return true;
    case CommandKind::stage_timing: p.set_stage_timing(cur_.arg != 0); return true;
    case CommandKind::trace:
      p.trace(cur_.arg, trace_);
      cur_.result->count = p.trace_left();
      return true;
    case CommandKind::flush_flows: {
      FlowTable& t = p.flows();
      std::uint64_t n = 0;
      cursor_ = t.visit(cursor_, kFlowsPerStep, [&](FlowEntry& e) {
        if (!cur_.filter.matches(e)) return true;
        t.erase(&e);
        ++n;
        return true;
      });
      cur_.result->count += n;
      return cursor_ >= t.capacity();
    }
    case CommandKind::dump_flows: {
      FlowTable& t = p.flows();
      CommandResult& r = *cur_.result;
      cursor_ = t.visit(cursor_, kFlowsPerStep, [&](FlowEntry& e) {
        if (!cur_.filter.matches(e)) return true;
        if (r.count == cur_.out_capacity) {
          r.truncated = true;
          return false;
        }
        cur_.out[r.count++] = to_record(e);
        return true;
      });
      return r.truncated || cursor_ >= t.capacity();
    }
  }
  return true;
}

// ---- control side --------------------------------------------------------------------------

std::expected<std::unique_ptr<Control>, std::string> Control::create(SnapshotChannel& snapshots,
                                                                     std::span<const ControlWorker> workers,
                                                                     const ControlConfig& cfg) {
  if (cfg.mailbox_depth == 0 || cfg.trace_depth == 0)
    return std::unexpected("the mailbox and trace ring depths must be at least 1");
  std::unique_ptr<Control> c(new Control(snapshots, cfg));
  for (std::size_t i = 0; i < workers.size(); ++i) {
    if (workers[i].counters == nullptr)
      return std::unexpected(fmt::format("worker {} has no counters", i));
    auto mb = WorkerMailbox::create(fmt::format("{}_w{}", cfg.name, i), cfg.mailbox_depth, cfg.trace_depth);
    if (!mb) return std::unexpected(fmt::format("worker {} mailbox: {}", i, mb.error()));
    Worker w;
    w.info = workers[i];
    w.mailbox = std::move(*mb);
    c->workers_.push_back(std::move(w));
  }
  return c;
}

Control::~Control() = default;

void Control::set_ports(const std::array<std::uint16_t, kMaxPorts>& ids,
                        const std::array<std::string, kMaxPorts>& names) {
  port_ids_ = ids;
  port_names_ = names;
}

void Control::publish(std::shared_ptr<const Snapshot> s) {
  std::lock_guard lock(publish_mu_);
  publish_locked(std::move(s));
}

void Control::publish_locked(std::shared_ptr<const Snapshot> s) {
  // The volumetric limits in force ride with every snapshot; a plan built for another policy
  // (a copied snapshot) is rebuilt, since its rule → rate class map belongs to that policy.
  if (s && (!s->volumetric || s->volumetric->policy != s->policy.get())) {
    auto copy = std::make_shared<Snapshot>(*s);
    copy->volumetric = make_volumetric_plan(s->volumetric ? s->volumetric->cfg : cfg_.volumetric, s->policy.get(),
                                            worker_count(), rte_get_tsc_hz());
    s = std::move(copy);
  }
  prepare_error_.clear();
  if (s)
    for (auto& w : workers_)
      if (w.info.pipeline != nullptr)
        if (auto r = w.info.pipeline->prepare(*s); !r)
          prepare_error_ = fmt::format("worker (lcore {}): {}", w.info.lcore, r.error());
  snapshots_->publish(std::move(s));
}

std::string Control::last_prepare_error() const {
  std::lock_guard lock(publish_mu_);
  return prepare_error_;
}

std::shared_ptr<const Snapshot> Control::snapshot() const {
  std::lock_guard lock(publish_mu_);
  return snapshots_->current_owner();
}

CounterSnapshot Control::counters() const {
  CounterSnapshot s;
  for (const auto& w : workers_) s.workers.push_back(copy_worker(*w.info.counters, w.info.lcore, w.info.queue));
  for (unsigned i = 0; i < kMaxPorts; ++i) {
    CounterSnapshot::Port p;
    p.name = port_names_[i];
    rte_eth_stats st{};
    if (!port_names_[i].empty() && rte_eth_stats_get(port_ids_[i], &st) == 0) {
      p.hw_ipackets = st.ipackets;
      p.hw_opackets = st.opackets;
      p.hw_imissed = st.imissed;
      p.hw_ierrors = st.ierrors;
      p.hw_oerrors = st.oerrors;
      p.hw_rx_nombuf = st.rx_nombuf;
    }
    s.ports.push_back(p);
  }
  return s;
}

std::string Control::who(unsigned w) const {
  return fmt::format("worker {} (lcore {})", w, workers_[w].info.lcore);
}

void Control::reap(Worker& w) {
  const std::uint64_t done = w.mailbox->done();
  std::erase_if(w.pending, [done](const Pending& p) { return p.abandoned && p.seq <= done; });
}

std::expected<Control::Ticket, std::string> Control::post(unsigned worker, CommandKind kind, const FlowFilter& f,
                                                          std::uint64_t arg, std::uint32_t dump_capacity,
                                                          const FlowTimeouts* timeouts) {
  std::lock_guard lock(command_mu_);
  if (worker >= workers_.size())
    return std::unexpected(fmt::format("no worker {} (there are {})", worker, workers_.size()));
  Worker& w = workers_[worker];
  reap(w);
  Pending p;
  p.seq = w.next_seq;
  p.result = std::make_unique<CommandResult>();
  if (kind == CommandKind::dump_flows && dump_capacity != 0) p.out = std::make_unique<FlowRecord[]>(dump_capacity);
  if ((kind == CommandKind::dump_blocklist || kind == CommandKind::dump_top_talkers) && dump_capacity != 0)
    p.vol_out = std::make_unique<VolumetricEntry[]>(dump_capacity);
  if (kind == CommandKind::set_flow_timeouts) {
    if (timeouts == nullptr) return std::unexpected("set flow timeouts: no timeouts given");
    p.timeouts = std::make_unique<FlowTimeouts>(*timeouts);
  }
  Command cmd;
  cmd.seq = p.seq;
  cmd.kind = kind;
  cmd.filter = f;
  cmd.arg = arg;
  cmd.out = p.out.get();
  cmd.out_capacity = p.out || p.vol_out ? dump_capacity : 0;
  cmd.vol_out = p.vol_out.get();
  cmd.result = p.result.get();
  cmd.timeouts = p.timeouts.get();
  if (!w.mailbox->post(cmd))
    return std::unexpected(fmt::format("{} has {} commands waiting in its mailbox and takes no more: it is "
                                       "not answering (stalled, or not started)",
                                       who(worker), w.pending.size()));
  ++w.next_seq;
  w.pending.push_back(std::move(p));
  return Ticket{worker, cmd.seq, kind};
}

std::expected<Control::Reply, std::string> Control::wait(const Ticket& t, std::chrono::steady_clock::time_point deadline) {
  std::lock_guard lock(command_mu_);
  if (t.worker >= workers_.size()) return std::unexpected(fmt::format("no worker {}", t.worker));
  Worker& w = workers_[t.worker];
  auto pause = std::chrono::microseconds(20);
  while (w.mailbox->done() < t.seq) {
    if (std::chrono::steady_clock::now() >= deadline) {
      for (auto& p : w.pending)
        if (p.seq == t.seq) p.abandoned = true;
      return std::unexpected(fmt::format("{} did not answer command {} ({}) in time; it may be stalled or "
                                         "stopped (last command it completed: {})",
                                         who(t.worker), t.seq, to_string(t.kind), w.mailbox->done()));
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(1000));
  }
  Reply r;
  const auto it = std::find_if(w.pending.begin(), w.pending.end(), [&](const Pending& p) { return p.seq == t.seq; });
  if (it == w.pending.end()) return std::unexpected(fmt::format("command {} of {} was already collected", t.seq, who(t.worker)));
  r.result = *it->result;
  if (it->out) r.flows.assign(it->out.get(), it->out.get() + r.result.count);
  for (auto& f : r.flows) f.worker = t.worker;
  if (it->vol_out) r.entries.assign(it->vol_out.get(), it->vol_out.get() + r.result.count);
  for (auto& e : r.entries) e.worker = t.worker;
  w.pending.erase(it);
  reap(w);
  return r;
}

template <typename OnReply>
std::expected<void, std::string> Control::all(CommandKind kind, const FlowFilter& f, std::uint64_t arg,
                                              std::uint32_t dump_capacity,
                                              std::optional<std::chrono::milliseconds> timeout, OnReply&& on_reply) {
  std::lock_guard lock(command_mu_);
  const auto deadline = std::chrono::steady_clock::now() + timeout.value_or(cfg_.timeout);
  std::vector<std::expected<Ticket, std::string>> tickets;
  for (unsigned w = 0; w < workers_.size(); ++w) tickets.push_back(post(w, kind, f, arg, dump_capacity));
  std::string errors;
  for (auto& t : tickets) {
    if (!t) {
      errors += (errors.empty() ? "" : "; ") + t.error();
      continue;
    }
    auto r = wait(*t, deadline);
    if (!r) {
      errors += (errors.empty() ? "" : "; ") + r.error();
      continue;
    }
    on_reply(*r);
  }
  if (!errors.empty()) return std::unexpected(fmt::format("{}: {}", to_string(kind), errors));
  return {};
}

std::expected<std::uint64_t, std::string> Control::flush_flows(const FlowFilter& f,
                                                               std::optional<std::chrono::milliseconds> timeout) {
  std::uint64_t n = 0;
  auto r = all(CommandKind::flush_flows, f, 0, 0, timeout, [&](const Reply& rep) { n += rep.result.count; });
  if (!r) return std::unexpected(r.error());
  return n;
}

std::expected<Control::FlowDump, std::string> Control::dump_flows(const FlowFilter& f, std::size_t max,
                                                                  std::optional<std::chrono::milliseconds> timeout) {
  FlowDump d;
  const auto cap = static_cast<std::uint32_t>(std::min<std::size_t>(max, 1U << 20));
  auto r = all(CommandKind::dump_flows, f, 0, cap, timeout, [&](Reply& rep) {
    d.truncated = d.truncated || rep.result.truncated;
    for (auto& fl : rep.flows) {
      if (d.flows.size() == max) {
        d.truncated = true;
        break;
      }
      d.flows.push_back(fl);
    }
  });
  if (!r) return std::unexpected(r.error());
  return d;
}

std::expected<void, std::string> Control::reset_counters(std::optional<std::chrono::milliseconds> timeout) {
  return all(CommandKind::reset_counters, {}, 0, 0, timeout, [](const Reply&) {});
}

std::expected<void, std::string> Control::set_stage_timing(bool on, std::optional<std::chrono::milliseconds> timeout) {
  return all(CommandKind::stage_timing, {}, on ? 1 : 0, 0, timeout, [](const Reply&) {});
}

std::expected<void, std::string> Control::trace(std::uint64_t packets, std::optional<std::chrono::milliseconds> timeout) {
  return all(CommandKind::trace, {}, packets, 0, timeout, [](const Reply&) {});
}

std::size_t Control::drain_trace(std::vector<TraceRecord>& out, std::size_t max) {
  std::lock_guard lock(command_mu_);
  std::size_t n = 0;
  TraceRecord buf[64];
  for (auto& w : workers_) {
    while (n < max) {
      const auto want = static_cast<unsigned>(std::min<std::size_t>(std::size(buf), max - n));
      const unsigned got = w.mailbox->drain_trace(buf, want);
      if (got == 0) break;
      out.insert(out.end(), buf, buf + got);
      n += got;
    }
  }
  return n;
}

// ---- volumetric filtering ------------------------------------------------------------------

VolumetricConfig Control::volumetric() const {
  std::lock_guard lock(publish_mu_);
  return cfg_.volumetric;
}

std::expected<void, std::string> Control::set_volumetric(const VolumetricConfig& cfg) {
  if (auto v = validate(cfg); !v) return v;
  std::lock_guard lock(publish_mu_);
  cfg_.volumetric = cfg;
  if (auto cur = snapshots_->current_owner(); cur) {
    auto copy = std::make_shared<Snapshot>(*cur);
    copy->volumetric = make_volumetric_plan(cfg, cur->policy.get(), worker_count(), rte_get_tsc_hz());
    publish_locked(std::move(copy));
  }
  return {};
}

std::expected<std::vector<VolumetricEntry>, std::string> Control::blocklist(
    std::size_t max, std::optional<std::chrono::milliseconds> timeout) {
  std::vector<VolumetricEntry> out;
  const auto cap = static_cast<std::uint32_t>(std::clamp<std::size_t>(max, 1, 1U << 16));
  auto r = all(CommandKind::dump_blocklist, {}, 0, cap, timeout, [&](Reply& rep) {
    for (auto& e : rep.entries)
      if (out.size() < max) out.push_back(e);
  });
  if (!r) return std::unexpected(r.error());
  return out;
}

std::expected<std::vector<VolumetricEntry>, std::string> Control::top_talkers(
    std::size_t max, std::optional<std::chrono::milliseconds> timeout) {
  std::vector<VolumetricEntry> out;
  auto r = all(CommandKind::dump_top_talkers, {}, 0, 256, timeout, [&](Reply& rep) {
    for (auto& e : rep.entries) {  // the same prefix on several workers: summed
      auto it = std::find_if(out.begin(), out.end(), [&](const VolumetricEntry& o) {
        return o.version == e.version && o.prefix_len == e.prefix_len && o.prefix == e.prefix;
      });
      if (it == out.end()) out.push_back(e);
      else it->packets += e.packets;
    }
  });
  if (!r) return std::unexpected(r.error());
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.packets > b.packets; });
  if (out.size() > max) out.resize(max);
  return out;
}

std::expected<std::uint64_t, std::string> Control::clear_blocklist(std::optional<rules::IpPrefix> prefix,
                                                                   std::optional<std::chrono::milliseconds> timeout) {
  FlowFilter f;
  if (prefix) f.address = prefix->addr;
  std::uint64_t n = 0;
  auto r = all(CommandKind::clear_blocklist, f, prefix ? prefix->len : 0, 0, timeout,
               [&](const Reply& rep) { n += rep.result.count; });
  if (!r) return std::unexpected(r.error());
  return n;
}

// ---- flow timeouts ------------------------------------------------------------------------

std::expected<void, std::string> Control::set_flow_timeouts(const FlowTimeouts& t,
                                                            std::optional<std::chrono::milliseconds> timeout) {
  const std::pair<const char*, std::uint64_t> fields[] = {
      {"tcp_syn", t.tcp_syn}, {"tcp_established", t.tcp_established}, {"tcp_closing", t.tcp_closing},
      {"udp", t.udp},         {"icmp", t.icmp},                       {"other", t.other}};
  for (auto& [name, v] : fields)
    if (v == 0)
      return std::unexpected(fmt::format("set flow timeouts: the {} timeout is 0 ticks; every flow would "
                                         "expire at once (give at least 1 tick)", name));
  std::lock_guard lock(command_mu_);
  const auto deadline = std::chrono::steady_clock::now() + timeout.value_or(cfg_.timeout);
  std::vector<std::expected<Ticket, std::string>> tickets;
  for (unsigned w = 0; w < workers_.size(); ++w)
    tickets.push_back(post(w, CommandKind::set_flow_timeouts, {}, 0, 0, &t));
  {
    std::lock_guard p(publish_mu_);
    flow_timeouts_ = t;  // what every worker that answers uses (and a late one once it runs)
  }
  std::string errors;
  for (auto& tk : tickets) {
    if (!tk) {
      errors += (errors.empty() ? "" : "; ") + tk.error();
      continue;
    }
    if (auto r = wait(*tk, deadline); !r) errors += (errors.empty() ? "" : "; ") + r.error();
  }
  if (!errors.empty()) return std::unexpected(fmt::format("{}: {}", to_string(CommandKind::set_flow_timeouts), errors));
  return {};
}

std::optional<FlowTimeouts> Control::flow_timeouts() const {
  std::lock_guard lock(publish_mu_);
  return flow_timeouts_;
}

std::size_t Control::drain_flow_logs(std::vector<FlowLogRecord>& out, std::size_t max) {
  std::lock_guard lock(command_mu_);
  std::size_t n = 0;
  FlowLogRecord buf[64];
  for (unsigned wi = 0; wi < workers_.size(); ++wi) {
    Pipeline* p = workers_[wi].info.pipeline;
    while (p != nullptr && n < max) {
      const auto want = static_cast<unsigned>(std::min<std::size_t>(std::size(buf), max - n));
      const unsigned got = p->drain_flow_logs(buf, want);
      if (got == 0) break;
      for (unsigned k = 0; k < got; ++k) buf[k].worker = static_cast<std::uint8_t>(wi);
      out.insert(out.end(), buf, buf + got);
      n += got;
    }
  }
  return n;
}

}  // namespace zt::dp
