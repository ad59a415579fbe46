#include "zt/dataplane/counters.hpp"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <map>

namespace zt::dp {

using rules::DropReason;
using rules::kDropReasonCount;

namespace {

struct Named {
  std::string_view name, description;
};
constexpr std::array<Named, kIdentityClassCount> kClassInfo{{
#define ZT_IC_INFO(name, desc) {#name, desc},
    ZT_IDENTITY_CLASSES(ZT_IC_INFO)
#undef ZT_IC_INFO
}};
constexpr std::array<Named, kStageCount> kStageInfo{{
#define ZT_ST_INFO(name, desc) {#name, desc},
    ZT_STAGES(ZT_ST_INFO)
#undef ZT_ST_INFO
}};

}  // namespace

std::string_view to_string(IdentityClass c) noexcept {
  const auto i = static_cast<std::size_t>(c);
  return i < kIdentityClassCount ? kClassInfo[i].name : std::string_view{"invalid"};
}
std::string_view describe(IdentityClass c) noexcept {
  const auto i = static_cast<std::size_t>(c);
  return i < kIdentityClassCount ? kClassInfo[i].description : std::string_view{"invalid"};
}
std::string_view to_string(Stage s) noexcept {
  const auto i = static_cast<std::size_t>(s);
  return i < kStageCount ? kStageInfo[i].name : std::string_view{"invalid"};
}

RuleSlot& RuleCounters::claim(rules::RuleId rule, std::uint32_t h) noexcept {
  const std::uint32_t n = used_.load(std::memory_order_relaxed);
  if (n == kRuleSlots) return overflow_;
  RuleSlot& s = slots_[n];
  s.rule_id.store(rule, std::memory_order_relaxed);
  index_[h] = static_cast<std::uint16_t>(n + 1);
  used_.store(n + 1, std::memory_order_release);  // readers see the id before the slot
  return s;
}

void RuleCounters::reset() noexcept {
  const std::uint32_t n = used_.load(std::memory_order_relaxed);
  used_.store(0, std::memory_order_release);
  for (std::uint32_t i = 0; i < n; ++i) {
    RuleSlot& s = slots_[i];
    s.rule_id.store(0, std::memory_order_relaxed);
    s.flows_admitted.reset();
    s.flows_denied.reset();
    s.packets_forwarded.reset();
    s.packets_dropped.reset();
  }
  overflow_.flows_admitted.reset();
  overflow_.flows_denied.reset();
  overflow_.packets_forwarded.reset();
  overflow_.packets_dropped.reset();
  index_.fill(0);
}

void WorkerCounters::reset() noexcept {
  for (auto* a : {&rx_packets, &rx_bytes, &tx_packets, &tx_bytes})
    for (auto& x : *a) x.reset();
  for (auto& d : drops) d.reset();
  for (auto* x : {&new_flows, &audit_flows, &revoked_flows, &idle_polls, &busy_cycles,
                  &trace_records, &trace_lost, &blocklist_added, &overload_bursts, &flow_logs,
                  &flow_logs_suppressed})
    x->reset();
  for (auto& k : classes) k.packets.reset(), k.dropped.reset();
  for (auto& st : stages) st.calls.reset(), st.packets.reset(), st.cycles.reset();
  rules.reset();
  // `commands` is not reset: it is how the control side sees the reset itself complete.
}

std::uint64_t CounterSnapshot::rx_total() const noexcept {
  std::uint64_t s = 0;
  for (const auto& w : workers)
    for (auto v : w.rx_packets) s += v;
  return s;
}

std::uint64_t CounterSnapshot::tx_total() const noexcept {
  std::uint64_t s = 0;
  for (const auto& w : workers)
    for (auto v : w.tx_packets) s += v;
  return s;
}

std::uint64_t CounterSnapshot::drops(DropReason r) const noexcept {
  std::uint64_t s = 0;
  for (const auto& w : workers) s += w.drops[static_cast<std::size_t>(r)];
  return s;
}

std::uint64_t CounterSnapshot::dropped_total() const noexcept {
  std::uint64_t s = 0;
  for (std::size_t i = 1; i < kDropReasonCount; ++i) s += drops(static_cast<DropReason>(i));
  return s;
}

CounterSnapshot::Worker copy_worker(const WorkerCounters& c, unsigned lcore, unsigned queue) {
  CounterSnapshot::Worker w;
  w.lcore = lcore;
  w.queue = queue;
  for (unsigned p = 0; p < kMaxPorts; ++p) {
    w.rx_packets[p] = c.rx_packets[p].get();
    w.rx_bytes[p] = c.rx_bytes[p].get();
    w.tx_packets[p] = c.tx_packets[p].get();
    w.tx_bytes[p] = c.tx_bytes[p].get();
  }
  for (std::size_t r = 0; r < kDropReasonCount; ++r) w.drops[r] = c.drops[r].get();
  w.busy_cycles = c.busy_cycles.get();
  w.new_flows = c.new_flows.get();
  w.audit_flows = c.audit_flows.get();
  w.revoked_flows = c.revoked_flows.get();
  for (std::size_t k = 0; k < kIdentityClassCount; ++k)
    w.classes[k] = {c.classes[k].packets.get(), c.classes[k].dropped.get()};
  for (std::size_t k = 0; k < kStageCount; ++k)
    w.stages[k] = {c.stages[k].calls.get(), c.stages[k].packets.get(), c.stages[k].cycles.get()};
  w.trace_records = c.trace_records.get();
  w.trace_lost = c.trace_lost.get();
  w.commands = c.commands.get();
  w.blocklist_added = c.blocklist_added.get();
  w.overload_bursts = c.overload_bursts.get();
  w.flow_logs = c.flow_logs.get();
  w.flow_logs_suppressed = c.flow_logs_suppressed.get();
  const auto copy_rule = [](const RuleSlot& s, CounterSnapshot::Worker::Rule& r) {
    r.flows_admitted = s.flows_admitted.get();
    r.flows_denied = s.flows_denied.get();
    r.packets_forwarded = s.packets_forwarded.get();
    r.packets_dropped = s.packets_dropped.get();
  };
  const std::uint32_t used = c.rules.used();
  w.rules.reserve(used + 1);
  for (std::uint32_t i = 0; i < used; ++i) {
    const RuleSlot& s = c.rules.at(i);
    CounterSnapshot::Worker::Rule r;
    r.id = s.rule_id.load(std::memory_order_relaxed);
    copy_rule(s, r);
    // A reset (by the worker) running under this read: skip the slot rather than pin one
    // rule's counts on another.
    if (s.rule_id.load(std::memory_order_relaxed) != r.id || c.rules.used() < i + 1) continue;
    w.rules.push_back(r);
  }
  CounterSnapshot::Worker::Rule o;
  o.overflow = true;
  copy_rule(c.rules.overflow(), o);
  if (o.flows_admitted | o.flows_denied | o.packets_forwarded | o.packets_dropped) w.rules.push_back(o);
  return w;
}

std::vector<CounterSnapshot::Worker::Rule> CounterSnapshot::rules() const {
  std::map<std::pair<bool, rules::RuleId>, Worker::Rule> sum;
  for (const auto& w : workers)
    for (const auto& r : w.rules) {
      auto& t = sum[{r.overflow, r.overflow ? 0 : r.id}];
      t.id = r.overflow ? 0 : r.id;
      t.overflow = r.overflow;
      t.flows_admitted += r.flows_admitted;
      t.flows_denied += r.flows_denied;
      t.packets_forwarded += r.packets_forwarded;
      t.packets_dropped += r.packets_dropped;
    }
  std::vector<Worker::Rule> out;
  out.reserve(sum.size());
  for (const auto& [k, r] : sum) out.push_back(r);
  return out;
}

CounterSnapshot::Worker::Class CounterSnapshot::identity_class(IdentityClass k) const noexcept {
  Worker::Class t;
  for (const auto& w : workers) {
    t.packets += w.classes[static_cast<std::size_t>(k)].packets;
    t.dropped += w.classes[static_cast<std::size_t>(k)].dropped;
  }
  return t;
}

namespace {

struct PortTotals {
  std::uint64_t rx_packets = 0, rx_bytes = 0, tx_packets = 0, tx_bytes = 0;
};

PortTotals port_totals(const CounterSnapshot& s, unsigned p) {
  PortTotals t;
  for (const auto& w : s.workers) {
    t.rx_packets += w.rx_packets[p];
    t.rx_bytes += w.rx_bytes[p];
    t.tx_packets += w.tx_packets[p];
    t.tx_bytes += w.tx_bytes[p];
  }
  return t;
}

struct FlowTotals {
  std::uint64_t admitted = 0, audit = 0, revoked = 0;
};

FlowTotals flow_totals(const CounterSnapshot& s) {
  FlowTotals t;
  for (const auto& w : s.workers) {
    t.admitted += w.new_flows;
    t.audit += w.audit_flows;
    t.revoked += w.revoked_flows;
  }
  return t;
}

}  // namespace

std::string format_counters(const CounterSnapshot& s) {
  std::string out;
  out += fmt::format("{:<10} {:>14} {:>16} {:>14} {:>16} {:>10} {:>10}\n", "port", "rx packets",
                     "rx bytes", "tx packets", "tx bytes", "missed", "no mbuf");
  for (unsigned p = 0; p < s.ports.size() && p < kMaxPorts; ++p) {
    const auto [rxp, rxb, txp, txb] = port_totals(s, p);
    out += fmt::format("{:<10} {:>14} {:>16} {:>14} {:>16} {:>10} {:>10}\n", s.ports[p].name, rxp,
                       rxb, txp, txb, s.ports[p].hw_imissed, s.ports[p].hw_rx_nombuf);
  }
  out += fmt::format("\n{:<8} {:<6} {:<10} {:>14} {:>14} {:>14}\n", "worker", "queue", "port",
                     "rx packets", "tx packets", "dropped");
  for (const auto& w : s.workers) {
    std::uint64_t d = 0;
    for (std::size_t r = 1; r < kDropReasonCount; ++r) d += w.drops[r];
    for (unsigned p = 0; p < s.ports.size() && p < kMaxPorts; ++p)
      out += fmt::format("{:<8} {:<6} {:<10} {:>14} {:>14} {:>14}\n", w.lcore, w.queue,
                         s.ports[p].name, w.rx_packets[p], w.tx_packets[p], p == 0 ? fmt::format("{}", d) : "");
  }
  out += fmt::format("\n{:<34} {:>14}  {}\n", "drop reason", "packets", "meaning");
  bool any = false;
  for (std::size_t r = 1; r < kDropReasonCount; ++r) {
    auto reason = static_cast<DropReason>(r);
    auto n = s.drops(reason);
    if (n == 0) continue;
    any = true;
    out += fmt::format("{:<34} {:>14}  {}\n", rules::to_string(reason), n, rules::describe(reason));
  }
  if (!any) out += "(no drops)\n";
  const auto f = flow_totals(s);
  out += fmt::format("\nflows: {} admitted ({} only by audit mode), {} cut by a policy change\n",
                     f.admitted, f.audit, f.revoked);
  const auto rules = s.rules();
  if (!rules.empty()) {
    out += fmt::format("\n{:<10} {:>14} {:>14} {:>16} {:>16}\n", "rule", "flows admitted",
                       "flows denied", "pkts forwarded", "pkts dropped");
    for (const auto& r : rules)
      out += fmt::format("{:<10} {:>14} {:>14} {:>16} {:>16}\n",
                         r.overflow ? std::string("(overflow)")
                                    : r.id == rules::kDefaultRule ? std::string("default")
                                                                  : std::to_string(r.id),
                         r.flows_admitted, r.flows_denied, r.packets_forwarded, r.packets_dropped);
  }
  out += fmt::format("\n{:<16} {:>14} {:>14}  {}\n", "identity class", "packets", "dropped", "meaning");
  for (std::size_t k = 0; k < kIdentityClassCount; ++k) {
    const auto cls = static_cast<IdentityClass>(k);
    const auto t = s.identity_class(cls);
    out += fmt::format("{:<16} {:>14} {:>14}  {}\n", to_string(cls), t.packets, t.dropped, describe(cls));
  }
  bool header = false;
  for (const auto& w : s.workers)
    for (std::size_t k = 0; k < kStageCount; ++k) {
      const auto& st = w.stages[k];
      if (st.calls == 0) continue;
      if (!header) {
        out += fmt::format("\n{:<8} {:<10} {:>12} {:>14} {:>16} {:>12} {:>10}\n", "worker", "stage",
                           "calls", "packets", "cycles", "cycles/pkt", "pkts/call");
        header = true;
      }
      out += fmt::format("{:<8} {:<10} {:>12} {:>14} {:>16} {:>12.1f} {:>10.1f}\n", w.lcore,
                         to_string(static_cast<Stage>(k)), st.calls, st.packets, st.cycles,
                         st.packets ? static_cast<double>(st.cycles) / static_cast<double>(st.packets) : 0.0,
                         static_cast<double>(st.packets) / static_cast<double>(st.calls));
    }
  std::uint64_t traced = 0, lost = 0;
  for (const auto& w : s.workers) traced += w.trace_records, lost += w.trace_lost;
  if (traced != 0 || lost != 0)
    out += fmt::format("\ntrace: {} records written, {} lost to a full trace ring\n", traced, lost);
  std::uint64_t blocked = 0, overload = 0, logs = 0, suppressed = 0;
  for (const auto& w : s.workers)
    blocked += w.blocklist_added, overload += w.overload_bursts, logs += w.flow_logs,
        suppressed += w.flow_logs_suppressed;
  if (blocked != 0 || overload != 0)
    out += fmt::format("\nvolumetric: {} sources blocklisted, {} bursts decided while behind\n", blocked, overload);
  if (logs != 0 || suppressed != 0)
    out += fmt::format("\nflow logs: {} records, {} suppressed (rate limit or full ring)\n", logs, suppressed);
  out += fmt::format("\ntotal: received {} = forwarded {} + dropped {}\n", s.rx_total(),
                     s.tx_total(), s.dropped_total());
  return out;
}

std::string counters_to_json(const CounterSnapshot& s) {
  nlohmann::json j;
  j["received"] = s.rx_total();
  j["forwarded"] = s.tx_total();
  j["dropped"] = s.dropped_total();
  nlohmann::json drops = nlohmann::json::object();
  for (std::size_t r = 1; r < kDropReasonCount; ++r) {
    auto reason = static_cast<DropReason>(r);
    if (auto n = s.drops(reason)) drops[std::string(rules::to_string(reason))] = n;
  }
  j["drops"] = drops;
  const auto f = flow_totals(s);
  j["flows"] = {{"admitted", f.admitted}, {"audit", f.audit}, {"revoked", f.revoked}};
  const auto rule_json = [](const CounterSnapshot::Worker::Rule& r) {
    return nlohmann::json{{"flows_admitted", r.flows_admitted}, {"flows_denied", r.flows_denied},
                          {"packets_forwarded", r.packets_forwarded}, {"packets_dropped", r.packets_dropped}};
  };
  // By rule id ("0" is the default rule); "overflow" sums rules that found no slot of their own.
  nlohmann::json rules = nlohmann::json::object();
  for (const auto& r : s.rules()) rules[r.overflow ? std::string("overflow") : std::to_string(r.id)] = rule_json(r);
  j["rules"] = rules;
  nlohmann::json classes = nlohmann::json::object();
  for (std::size_t k = 0; k < kIdentityClassCount; ++k) {
    const auto t = s.identity_class(static_cast<IdentityClass>(k));
    classes[std::string(to_string(static_cast<IdentityClass>(k)))] = {{"packets", t.packets}, {"dropped", t.dropped}};
  }
  j["identity_classes"] = classes;
  const auto stages_json = [](const std::array<CounterSnapshot::Worker::StageCycles, kStageCount>& st) {
    nlohmann::json o = nlohmann::json::object();
    for (std::size_t k = 0; k < kStageCount; ++k) {
      if (st[k].calls == 0) continue;
      o[std::string(to_string(static_cast<Stage>(k)))] = {
          {"calls", st[k].calls}, {"packets", st[k].packets}, {"cycles", st[k].cycles},
          {"cycles_per_packet", st[k].packets ? static_cast<double>(st[k].cycles) / static_cast<double>(st[k].packets) : 0.0}};
    }
    return o;
  };
  std::array<CounterSnapshot::Worker::StageCycles, kStageCount> all_stages{};
  std::uint64_t traced = 0, lost = 0;
  for (const auto& w : s.workers) {
    for (std::size_t k = 0; k < kStageCount; ++k) {
      all_stages[k].calls += w.stages[k].calls;
      all_stages[k].packets += w.stages[k].packets;
      all_stages[k].cycles += w.stages[k].cycles;
    }
    traced += w.trace_records;
    lost += w.trace_lost;
  }
  j["stages"] = stages_json(all_stages);
  j["trace"] = {{"records", traced}, {"lost", lost}};
  std::uint64_t blocked = 0, overload = 0, logs = 0, suppressed = 0;
  for (const auto& w : s.workers)
    blocked += w.blocklist_added, overload += w.overload_bursts, logs += w.flow_logs,
        suppressed += w.flow_logs_suppressed;
  j["volumetric"] = {{"blocklist_added", blocked}, {"overload_bursts", overload}};
  j["flow_logs"] = {{"written", logs}, {"suppressed", suppressed}};
  nlohmann::json ports = nlohmann::json::array();
  for (unsigned p = 0; p < s.ports.size() && p < kMaxPorts; ++p) {
    nlohmann::json pj;
    const auto [rxp, rxb, txp, txb] = port_totals(s, p);
    pj["name"] = s.ports[p].name;
    pj["rx_packets"] = rxp;
    pj["rx_bytes"] = rxb;
    pj["tx_packets"] = txp;
    pj["tx_bytes"] = txb;
    pj["hw"] = {{"ipackets", s.ports[p].hw_ipackets}, {"opackets", s.ports[p].hw_opackets},
                {"imissed", s.ports[p].hw_imissed}, {"ierrors", s.ports[p].hw_ierrors},
                {"oerrors", s.ports[p].hw_oerrors}, {"rx_nombuf", s.ports[p].hw_rx_nombuf}};
    ports.push_back(pj);
  }
  j["ports"] = ports;
  nlohmann::json workers = nlohmann::json::array();
  for (const auto& w : s.workers) {
    nlohmann::json wj;
    wj["lcore"] = w.lcore;
    wj["queue"] = w.queue;
    wj["rx_packets"] = w.rx_packets;
    wj["tx_packets"] = w.tx_packets;
    nlohmann::json wd = nlohmann::json::object();
    for (std::size_t r = 1; r < kDropReasonCount; ++r)
      if (w.drops[r]) wd[std::string(rules::to_string(static_cast<DropReason>(r)))] = w.drops[r];
    wj["drops"] = wd;
    nlohmann::json wr = nlohmann::json::object();
    for (const auto& r : w.rules) wr[r.overflow ? std::string("overflow") : std::to_string(r.id)] = rule_json(r);
    wj["rules"] = wr;
    nlohmann::json wc = nlohmann::json::object();
    for (std::size_t k = 0; k < kIdentityClassCount; ++k)
      wc[std::string(to_string(static_cast<IdentityClass>(k)))] = {{"packets", w.classes[k].packets},
                                                                 {"dropped", w.classes[k].dropped}};
    wj["identity_classes"] = wc;
    wj["stages"] = stages_json(w.stages);
    wj["trace"] = {{"records", w.trace_records}, {"lost", w.trace_lost}};
    wj["commands"] = w.commands;
    wj["volumetric"] = {{"blocklist_added", w.blocklist_added}, {"overload_bursts", w.overload_bursts}};
    wj["flow_logs"] = {{"written", w.flow_logs}, {"suppressed", w.flow_logs_suppressed}};
    workers.push_back(wj);
  }
  j["workers"] = workers;
  return j.dump(2);
}

}  // namespace zt::dp
