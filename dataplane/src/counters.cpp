#include "zt/dataplane/counters.hpp"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

namespace zt::dp {

using rules::DropReason;
using rules::kDropReasonCount;

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
  return w;
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
    workers.push_back(wj);
  }
  j["workers"] = workers;
  return j.dump(2);
}

}  // namespace zt::dp
