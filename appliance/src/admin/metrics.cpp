#include "admin/metrics.hpp"

#include <fmt/format.h>
#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/metric_family.h>

#include <arpa/inet.h>

#include <chrono>

namespace zt::admin {

class CounterCollectable : public prometheus::Collectable {
 public:
  CounterCollectable(dp::Runtime& rt, std::string version) : rt_(rt), version_(std::move(version)) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    using prometheus::MetricType;
    const auto c = rt_.counters();
    const auto snap = rt_.snapshot();
    std::vector<prometheus::MetricFamily> out;
    out.reserve(64);  // `family` hands out references into it: no reallocation
    auto family = [&](const char* name, const char* help, MetricType type) -> prometheus::MetricFamily& {
      out.push_back({name, help, type, {}});
      return out.back();
    };
    auto add = [](prometheus::MetricFamily& f, std::vector<prometheus::ClientMetric::Label> labels, double v) {
      prometheus::ClientMetric m;
      m.label = std::move(labels);
      if (f.type == MetricType::Counter)
        m.counter.value = v;
      else
        m.gauge.value = v;
      f.metric.push_back(std::move(m));
    };

    auto& info = family("ztgate_info", "ztgate version (value 1)", MetricType::Gauge);
    add(info, {{"version", version_}}, 1);
    auto& up = family("ztgate_uptime_seconds", "seconds since ztgate started", MetricType::Gauge);
    add(up, {}, std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count());
    auto& rev = family("ztgate_policy_revision", "policy revision in force (0: none)", MetricType::Gauge);
    add(rev, {}, static_cast<double>(snap ? snap->revision() : 0));
    auto& exp = family("ztgate_policy_expired", "1 when the policy or its keys expired: new flows are refused",
                       MetricType::Gauge);
    add(exp, {}, snap && snap->expired ? 1 : 0);

    // The workers' clock against the wall clock (dataplane/README.md "Clock"): a step is a jump
    // of more than 20 ms either way (NTP step, operator `date`), an adjustment a smaller re-anchor.
    const auto ck = rt_.clock_status();
    add(family("ztgate_clock_steps_total", "times the wall clock stepped (> 20 ms) and the workers followed",
               MetricType::Counter), {}, static_cast<double>(ck.steps));
    add(family("ztgate_clock_adjustments_total", "re-anchors of the workers' clock within 20 ms (drift)",
               MetricType::Counter), {}, static_cast<double>(ck.adjustments));
    add(family("ztgate_clock_last_step_seconds", "size of the last wall-clock step, negative backwards (0: none)",
               MetricType::Gauge), {}, static_cast<double>(ck.last_step_ns) / 1e9);
    add(family("ztgate_clock_offset_seconds", "wall clock minus the workers' clock at the last check, before it acted",
               MetricType::Gauge), {}, static_cast<double>(ck.offset_ns) / 1e9);

    const auto& names = rt_.port_names();
    auto& rxp = family("ztgate_rx_packets_total", "packets received, by port", MetricType::Counter);
    auto& rxb = family("ztgate_rx_bytes_total", "bytes received, by port", MetricType::Counter);
    auto& txp = family("ztgate_tx_packets_total", "packets sent, by port", MetricType::Counter);
    auto& txb = family("ztgate_tx_bytes_total", "bytes sent, by port", MetricType::Counter);
    for (unsigned p = 0; p < dp::kMaxPorts; ++p) {
      std::uint64_t a = 0, b = 0, d = 0, e = 0;
      for (auto& w : c.workers) a += w.rx_packets[p], b += w.rx_bytes[p], d += w.tx_packets[p], e += w.tx_bytes[p];
      add(rxp, {{"port", names[p]}}, static_cast<double>(a));
      add(rxb, {{"port", names[p]}}, static_cast<double>(b));
      add(txp, {{"port", names[p]}}, static_cast<double>(d));
      add(txb, {{"port", names[p]}}, static_cast<double>(e));
    }
    auto& miss = family("ztgate_port_missed_packets_total", "packets the NIC dropped for lack of RX descriptors",
                        MetricType::Counter);
    auto& ierr = family("ztgate_port_rx_errors_total", "erroneous packets the NIC received", MetricType::Counter);
    auto& nombuf = family("ztgate_port_rx_nombuf_total", "RX mbuf allocation failures", MetricType::Counter);
    for (auto& p : c.ports) {
      add(miss, {{"port", p.name}}, static_cast<double>(p.hw_imissed));
      add(ierr, {{"port", p.name}}, static_cast<double>(p.hw_ierrors));
      add(nombuf, {{"port", p.name}}, static_cast<double>(p.hw_rx_nombuf));
    }

    auto& drops = family("ztgate_drops_total", "packets dropped, by reason and worker (ztctl show drops)",
                         MetricType::Counter);
    auto& flows = family("ztgate_new_flows_total", "flows admitted, by worker", MetricType::Counter);
    auto& audit = family("ztgate_audit_flows_total", "flows admitted only because their segment is in audit mode",
                         MetricType::Counter);
    auto& revoked = family("ztgate_revoked_flows_total", "established flows cut by a new policy revision",
                           MetricType::Counter);
    auto& busy = family("ztgate_worker_busy_cycles_total", "TSC cycles spent on polls that found packets",
                        MetricType::Counter);
    auto& stage = family("ztgate_stage_cycles_total", "TSC cycles per pipeline stage (while stage timing is on)",
                         MetricType::Counter);
    for (std::size_t i = 0; i < c.workers.size(); ++i) {
      const auto& w = c.workers[i];
      const std::string wl = std::to_string(i);
      for (std::size_t r = 1; r < rules::kDropReasonCount; ++r)
        add(drops, {{"reason", std::string(rules::to_string(static_cast<rules::DropReason>(r)))}, {"worker", wl}},
            static_cast<double>(w.drops[r]));
      add(flows, {{"worker", wl}}, static_cast<double>(w.new_flows));
      add(audit, {{"worker", wl}}, static_cast<double>(w.audit_flows));
      add(revoked, {{"worker", wl}}, static_cast<double>(w.revoked_flows));
      add(busy, {{"worker", wl}}, static_cast<double>(w.busy_cycles));
      for (std::size_t s = 0; s < dp::kStageCount; ++s)
        add(stage, {{"stage", std::string(dp::to_string(static_cast<dp::Stage>(s)))}, {"worker", wl}},
            static_cast<double>(w.stages[s].cycles));
    }

    auto& cls_p = family("ztgate_identity_class_packets_total", "packets by identity class", MetricType::Counter);
    auto& cls_d = family("ztgate_identity_class_dropped_total", "dropped packets by identity class",
                         MetricType::Counter);
    for (std::size_t k = 0; k < dp::kIdentityClassCount; ++k) {
      const auto cls = static_cast<dp::IdentityClass>(k);
      const auto v = c.identity_class(cls);
      add(cls_p, {{"class", std::string(dp::to_string(cls))}}, static_cast<double>(v.packets));
      add(cls_d, {{"class", std::string(dp::to_string(cls))}}, static_cast<double>(v.dropped));
    }

    auto& r_adm = family("ztgate_rule_flows_admitted_total", "new flows each rule admitted", MetricType::Counter);
    auto& r_den = family("ztgate_rule_flows_denied_total", "flow decisions each rule denied", MetricType::Counter);
    auto& r_fwd = family("ztgate_rule_packets_forwarded_total", "packets of each rule's flows forwarded",
                         MetricType::Counter);
    auto& r_drp = family("ztgate_rule_packets_dropped_total", "packets decided by each rule and dropped",
                         MetricType::Counter);
    for (auto& r : c.rules()) {
      const std::string id = r.overflow ? "overflow" : std::to_string(r.id);
      add(r_adm, {{"rule", id}}, static_cast<double>(r.flows_admitted));
      add(r_den, {{"rule", id}}, static_cast<double>(r.flows_denied));
      add(r_fwd, {{"rule", id}}, static_cast<double>(r.packets_forwarded));
      add(r_drp, {{"rule", id}}, static_cast<double>(r.packets_dropped));
    }
    return out;
  }

 private:
  dp::Runtime& rt_;
  std::string version_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

std::expected<std::unique_ptr<Metrics>, std::string> Metrics::listen(const std::string& listen) {
  const auto colon = listen.rfind(':');
  std::string host = colon == std::string::npos ? std::string() : listen.substr(0, colon);
  const std::string port = colon == std::string::npos ? std::string() : listen.substr(colon + 1);
  const bool v6 = host.size() > 2 && host.front() == '[' && host.back() == ']';
  if (v6) host = host.substr(1, host.size() - 2);
  unsigned char buf[16];
  if (host.empty() || port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(port) > 65535 || inet_pton(v6 ? AF_INET6 : AF_INET, host.c_str(), buf) != 1)
    return std::unexpected(fmt::format("--metrics-listen '{}': expected ADDR:PORT with a numeric address, e.g. "
                                       "127.0.0.1:9420 or [::1]:9420",
                                       listen));
  std::unique_ptr<Metrics> m(new Metrics());
  try {
    m->exposer_ = std::make_unique<prometheus::Exposer>(listen, 2);
  } catch (const std::exception& e) {
    return std::unexpected(fmt::format("--metrics-listen '{}': cannot listen (address in use or not local?): {}",
                                       listen, e.what()));
  }
  return m;
}

void Metrics::serve(dp::Runtime& rt, std::string version) {
  collectable_ = std::make_shared<CounterCollectable>(rt, std::move(version));
  exposer_->RegisterCollectable(collectable_);
}

Metrics::~Metrics() {
  if (exposer_ && collectable_) exposer_->RemoveCollectable(collectable_);
  exposer_.reset();
}

int Metrics::port() const {
  auto ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

}  // namespace zt::admin
