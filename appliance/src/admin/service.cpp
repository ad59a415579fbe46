#include "admin/service.hpp"

#include <fmt/format.h>
#include <rte_cycles.h>

#include <algorithm>
#include <charconv>
#include <ctime>
#include <iostream>
#include <thread>

#include "config/candidate.hpp"
#include "manager_source.hpp"
#include "zt/rules/policy.hpp"
#include "zt/rules/snapshot.hpp"
#include "zt/rules/tools.hpp"

namespace zt::admin {

nlohmann::json clock_status_json(const dp::ClockStatus& c) {
  return {{"checks", c.checks},       {"adjustments", c.adjustments},           {"steps", c.steps},
          {"last_step_ns", c.last_step_ns}, {"last_step_unix_ns", c.last_step_unix_ns}, {"offset_ns", c.offset_ns}};
}

using nlohmann::json;

namespace {

std::int64_t unix_now() { return static_cast<std::int64_t>(std::time(nullptr)); }

std::string iso_time(std::int64_t unix_s) {
  std::time_t t = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string address_string(const std::array<std::uint8_t, 16>& b, std::uint8_t version) {
  rules::IpAddress a;
  a.v6 = version == 6;
  std::copy(b.begin(), b.end(), a.bytes.begin());
  return rules::to_string(a);
}

template <typename T>
std::expected<T, std::string> number_arg(const google::protobuf::Map<std::string, std::string>& args,
                                         const std::string& name, T def, T lo, T hi) {
  auto it = args.find(name);
  if (it == args.end()) return def;
  T v{};
  const auto& s = it->second;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < lo || v > hi)
    return std::unexpected(fmt::format("--{} '{}': expected a number from {} to {}", name, s, lo, hi));
  return v;
}

std::string arg(const google::protobuf::Map<std::string, std::string>& args, const std::string& name) {
  auto it = args.find(name);
  return it == args.end() ? std::string() : it->second;
}

std::string selector_text(const rules::Selector& s) {
  if (s.any) return "any";
  std::vector<std::string> parts;
  if (!s.identities.empty()) parts.push_back(fmt::format("identities [{}]", fmt::join(s.identities, ", ")));
  if (!s.segments.empty()) parts.push_back(fmt::format("segments [{}]", fmt::join(s.segments, ", ")));
  if (s.labels) {
    std::vector<std::string> kv;
    for (auto& [k, v] : *s.labels) kv.push_back(k + "=" + v);
    parts.push_back(fmt::format("labels {{{}}}", fmt::join(kv, ", ")));
  }
  return parts.empty() ? "nothing" : fmt::format("{}", fmt::join(parts, " or "));
}

json labels_json(const rules::Labels& l) {
  json j = json::object();
  for (auto& [k, v] : l) j[k] = v;
  return j;
}

const char* kSides[dp::kMaxPorts] = {"zone A", "zone B"};

// A message echoes what the client sent (an unknown verb, a bad argument); it goes to the
// operator's terminal and into the audit line on stderr. Control characters (C0, DEL, C1) are
// shown as escapes, so a request can neither forge a log line nor steer a terminal (found by
// tests/fuzz admin). Requests are valid UTF-8 (proto3 strings), so a C1 is 0xC2 0x80-0x9F.
std::string printable_text(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    const auto next = i + 1 < s.size() ? static_cast<unsigned char>(s[i + 1]) : 0;
    if (c < 0x20 || c == 0x7F) {
      out += fmt::format("\\x{:02x}", c);
    } else if (c == 0xC2 && next >= 0x80 && next <= 0x9F) {
      out += fmt::format("\\u{:04x}", next);
      ++i;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
void EventLog::add(std::string what, bool ok, std::string detail) {
  std::lock_guard lock(mu_);
  events_.push_back({{"unix", unix_now()}, {"what", std::move(what)}, {"ok", ok}, {"detail", std::move(detail)}});
  while (events_.size() > kKeep) events_.pop_front();
}

json EventLog::json() const {
  std::lock_guard lock(mu_);
  nlohmann::json a = nlohmann::json::array();
  for (auto& e : events_) a.push_back(e);
  return a;
}

std::expected<void, std::string> AuditLog::open(const std::string& path) {
  if (path.empty()) return {};
  file_.open(path, std::ios::app);
  if (!file_) return std::unexpected(fmt::format("--audit-log '{}': cannot open for appending", path));
  return {};
}

void AuditLog::record(const Peer& who, const Request& req, const std::string& result, const std::string& detail) {
  json args = json::object();
  for (auto& [k, v] : req.args()) args[k] = v;
  const auto now = unix_now();
  std::lock_guard lock(mu_);
  std::cerr << fmt::format("ztgate: audit {} user={} uid={} pid={} socket={} command='{}' args={} result={}{}\n",
                           iso_time(now), who.user, who.uid, who.pid, who.read_only ? "read-only" : "admin",
                           req.command(), args.dump(-1, ' ', false, json::error_handler_t::replace), result, detail.empty() ? "" : " (" + detail + ")");
  if (file_.is_open()) {
    file_ << json{{"time", iso_time(now)}, {"unix", now},     {"user", who.user},
                  {"uid", who.uid},        {"pid", who.pid},  {"socket", who.read_only ? "read-only" : "admin"},
                  {"command", req.command()}, {"args", args}, {"result", result},
                  {"detail", detail}}
                 .dump(-1, ' ', false, json::error_handler_t::replace)
          << "\n";
    file_.flush();
  }
}

// ---------------------------------------------------------------------------------------------
bool Service::is_mutating(const std::string& command) {
  return !(command.starts_with("show ") || command == "test policy" || command == "commit check");
}

Service::Service(dp::Runtime& rt, const appliance::ManagerSource* manager, ServiceInfo info, EventLog& events,
                 AuditLog& audit)
    : rt_(rt), manager_(manager), info_(std::move(info)), events_(events), audit_(audit),
      started_(std::chrono::steady_clock::now()), started_unix_(unix_now()) {
  auto add = [this](const char* name, auto method) {
    commands_[name] = Entry{is_mutating(name), [this, method](const Args& a) { return (this->*method)(a); }};
  };
  add("show status", &Service::show_status);
  add("show interfaces", &Service::show_interfaces);
  add("show runtime", &Service::show_runtime);
  add("show drops", &Service::show_drops);
  add("show flows", &Service::show_flows);
  add("show identities", &Service::show_identities);
  add("show policy", &Service::show_policy);
  add("show keys", &Service::show_keys);
  add("show control-plane", &Service::show_control_plane);
  add("test policy", &Service::test_policy);
  add("clear counters", &Service::clear_counters);
  add("clear flows", &Service::clear_flows);
  add("set runtime timing", &Service::set_runtime_timing);
  add("trace", &Service::trace);
  add("show volumetric", &Service::show_volumetric);
  add("clear blocklist", &Service::clear_blocklist);
  add("capture start", &Service::capture_start);
  add("capture stop", &Service::capture_stop);
  add("show capture", &Service::show_capture);
  add("set", &Service::set_key);
  add("delete", &Service::delete_key);
  add("show candidate", &Service::show_candidate);
  add("show configuration", &Service::show_configuration);
  add("commit", &Service::commit);
  add("commit check", &Service::commit_check);
  add("confirm", &Service::confirm);
  add("rollback", &Service::rollback);
}

Response Service::handle(const Request& req, const Peer& peer) {
  Response r;
  auto it = commands_.find(req.command());
  if (it == commands_.end()) {
    r.set_status(Response::UNKNOWN);
    r.set_message(fmt::format("unknown command '{}' (this ztgate is version {}; see `ztctl --help`)",
                              printable_text(req.command()), info_.version));
    return r;
  }
  const bool mutating = it->second.mutating;
  if (mutating && peer.read_only) {
    r.set_status(Response::REFUSED);
    r.set_message(fmt::format("'{}' changes the appliance's state and is refused on the read-only socket; "
                              "use the admin socket {} (group-restricted)",
                              req.command(), info_.admin_socket));
    audit_.record(peer, req, "refused", "read-only socket");
    return r;
  }
  std::expected<json, std::string> out;
  current_ = peer;
  try {
    out = it->second.fn(req.args());
  } catch (const std::exception& e) {  // control path: a bug must not take ztgate down
    out = std::unexpected(fmt::format("internal error: {}", e.what()));
  }
  if (out) {
    r.set_status(Response::OK);
    // Never throws: text that is not UTF-8 (none is known to reach an answer) is replaced, not
    // left to kill the server thread outside the try above.
    r.set_json(out->dump(-1, ' ', false, json::error_handler_t::replace));
  } else {
    r.set_status(Response::ERROR);
    r.set_message(printable_text(out.error()));
  }
  if (mutating) audit_.record(peer, req, out ? "ok" : "error", out ? std::string() : r.message());
  return r;
}

// ---------------------------------------------------------------------------------------------
std::expected<json, std::string> Service::show_status(const Args&) {
  const auto snap = rt_.snapshot();
  const auto now = std::chrono::steady_clock::now();
  json j;
  j["version"] = info_.version;
  j["started_unix"] = started_unix_;
  j["uptime_s"] = std::chrono::duration_cast<std::chrono::seconds>(now - started_).count();
  j["workers"] = rt_.worker_count();
  j["ports"] = {rt_.port_names()[0], rt_.port_names()[1]};
  json p;
  p["source"] = info_.policy_source;
  if (snap && snap->policy) {
    p["revision"] = snap->policy->revision();
    p["digest"] = snap->policy->digest();
    p["rules"] = snap->policy->stats().rules;
    p["identities"] = snap->policy->stats().identities;
    p["expired"] = snap->expired;
  } else {
    p["revision"] = 0;
    p["digest"] = "";
    p["rules"] = 0;
    p["identities"] = 0;
    p["expired"] = false;
  }
  j["policy"] = p;
  json k;
  k["loaded"] = snap && snap->keys;
  if (snap && snap->keys) {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    k["epoch"] = snap->keys->epoch_at(static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec);
  } else {
    k["epoch"] = nullptr;
  }
  j["keys"] = k;
  if (manager_) {
    auto m = json::parse(manager_->status_json());
    j["manager"] = {{"address", m.value("manager", "")},
                    {"connected", m.value("connected", false)},
                    {"enforced_revision", m.value("enforced_revision", 0)},
                    {"failed_closed", m.value("failed_closed", false)}};
  } else {
    j["manager"] = nullptr;
  }
  j["clock"] = clock_status_json(rt_.clock_status());
  j["stage_timing"] = stage_timing_;
  j["admin_socket"] = info_.admin_socket;
  j["metrics_listen"] = info_.metrics_listen;
  return j;
}

std::expected<json, std::string> Service::show_interfaces(const Args&) {
  const auto c = rt_.counters();
  json a = json::array();
  for (unsigned p = 0; p < dp::kMaxPorts; ++p) {
    std::uint64_t rx = 0, rxb = 0, tx = 0, txb = 0;
    for (auto& w : c.workers) {
      rx += w.rx_packets[p];
      rxb += w.rx_bytes[p];
      tx += w.tx_packets[p];
      txb += w.tx_bytes[p];
    }
    json i{{"index", p},         {"side", kSides[p]}, {"name", rt_.port_names()[p]},
           {"rx_packets", rx},   {"rx_bytes", rxb},   {"tx_packets", tx},
           {"tx_bytes", txb}};
    if (p < c.ports.size()) {
      auto& h = c.ports[p];
      i["hw"] = {{"ipackets", h.hw_ipackets}, {"opackets", h.hw_opackets}, {"imissed", h.hw_imissed},
                 {"ierrors", h.hw_ierrors},   {"oerrors", h.hw_oerrors},   {"rx_nombuf", h.hw_rx_nombuf}};
    }
    a.push_back(i);
  }
  return json{{"interfaces", a}};
}

std::expected<json, std::string> Service::show_runtime(const Args&) {
  const auto c = rt_.counters();
  json ws = json::array();
  for (std::size_t i = 0; i < c.workers.size(); ++i) {
    auto& w = c.workers[i];
    std::uint64_t rx = 0, tx = 0, dropped = 0;
    for (unsigned p = 0; p < dp::kMaxPorts; ++p) rx += w.rx_packets[p], tx += w.tx_packets[p];
    for (auto d : w.drops) dropped += d;
    json stages = json::array();
    for (std::size_t s = 0; s < dp::kStageCount; ++s) {
      auto& st = w.stages[s];
      stages.push_back({{"stage", std::string(dp::to_string(static_cast<dp::Stage>(s)))},
                        {"calls", st.calls},
                        {"packets", st.packets},
                        {"cycles", st.cycles},
                        {"cycles_per_packet", st.packets ? static_cast<double>(st.cycles) / st.packets : 0.0}});
    }
    ws.push_back({{"worker", i},
                  {"lcore", w.lcore},
                  {"queue", w.queue},
                  {"rx_packets", rx},
                  {"tx_packets", tx},
                  {"dropped", dropped},
                  {"new_flows", w.new_flows},
                  {"busy_cycles", w.busy_cycles},
                  {"cycles_per_packet", rx ? static_cast<double>(w.busy_cycles) / rx : 0.0},
                  {"stages", stages}});
  }
  // The flow idle timeouts the workers use (flow.timeout.* once committed; before that, the
  // start-up defaults Runtime creates the flow tables with), in seconds.
  const std::uint64_t hz = rte_get_tsc_hz();
  const dp::FlowTimeouts ft = rt_.control().flow_timeouts().value_or(dp::make_timeouts(hz));
  const auto secs = [hz](std::uint64_t ticks) { return hz ? static_cast<double>(ticks) / static_cast<double>(hz) : 0.0; };
  const json timeouts = {{"tcp_syn", secs(ft.tcp_syn)}, {"tcp_established", secs(ft.tcp_established)},
                         {"tcp_closing", secs(ft.tcp_closing)}, {"udp", secs(ft.udp)},
                         {"icmp", secs(ft.icmp)}, {"other", secs(ft.other)}};
  return json{{"stage_timing", stage_timing_}, {"tsc_hz", hz}, {"flow_timeouts_s", timeouts}, {"workers", ws}};
}

std::expected<json, std::string> Service::show_drops(const Args& args) {
  const bool all = arg(args, "all") == "1";
  const auto c = rt_.counters();
  const auto snap = rt_.snapshot();
  json by_reason = json::object();
  for (std::size_t r = 0; r < rules::kDropReasonCount; ++r) {
    const auto reason = static_cast<rules::DropReason>(r);
    if (reason == rules::DropReason::none) continue;
    const auto n = c.drops(reason);
    if (n || all) by_reason[std::string(rules::to_string(reason))] = n;
  }
  json by_worker = json::array();
  for (std::size_t i = 0; i < c.workers.size(); ++i) {
    json reasons = json::object();
    std::uint64_t total = 0;
    for (std::size_t r = 1; r < rules::kDropReasonCount; ++r) {
      const auto n = c.workers[i].drops[r];
      total += n;
      if (n || all) reasons[std::string(rules::to_string(static_cast<rules::DropReason>(r)))] = n;
    }
    by_worker.push_back({{"worker", i}, {"lcore", c.workers[i].lcore}, {"total", total}, {"by_reason", reasons}});
  }
  json by_rule = json::array();
  for (auto& r : c.rules()) {
    if (!r.packets_dropped && !r.flows_denied && !all) continue;
    std::string name;
    if (r.overflow)
      name = "(rules beyond the counter slots)";
    else if (snap && snap->policy)
      name = rules::describe_rule(*snap->policy, r.id);
    by_rule.push_back({{"rule_id", r.id},
                       {"overflow", r.overflow},
                       {"rule", name},
                       {"packets_dropped", r.packets_dropped},
                       {"flows_denied", r.flows_denied}});
  }
  return json{{"total", c.dropped_total()}, {"by_reason", by_reason}, {"by_worker", by_worker}, {"by_rule", by_rule}};
}

namespace {

std::expected<dp::FlowFilter, std::string> parse_filter(const google::protobuf::Map<std::string, std::string>& args,
                                                        const dp::Snapshot* snap) {
  dp::FlowFilter f;
  if (auto id = arg(args, "identity"); !id.empty()) {
    std::uint32_t v = 0;
    auto [p, ec] = std::from_chars(id.data(), id.data() + id.size(), v);
    if (ec == std::errc() && p == id.data() + id.size()) {
      f.identity = v;
    } else if (snap && snap->policy) {
      auto byname = snap->policy->identity_by_name(id);
      if (!byname) return std::unexpected(fmt::format("--identity '{}': no identity of that name or number in revision {}",
                                                      id, snap->policy->revision()));
      f.identity = *byname;
    } else {
      return std::unexpected(fmt::format("--identity '{}': no policy loaded to resolve the name; give the number", id));
    }
  }
  if (auto a = arg(args, "address"); !a.empty()) {
    auto addr = rules::parse_address(a);
    if (!addr) return std::unexpected(fmt::format("--address '{}': expected an IPv4 or IPv6 address", a));
    f.address = *addr;
  }
  if (args.contains("port")) {
    auto p = number_arg<unsigned>(args, "port", 0, 0, 65535);
    if (!p) return std::unexpected(p.error());
    f.port = static_cast<std::uint16_t>(*p);
  }
  return f;
}

json filter_json(const dp::FlowFilter& f) {
  json j = json::object();
  if (f.identity) j["identity"] = *f.identity;
  if (f.address) j["address"] = rules::to_string(*f.address);
  if (f.port) j["port"] = *f.port;
  return j;
}

}  // namespace

std::expected<json, std::string> Service::show_flows(const Args& args) {
  const auto snap = rt_.snapshot();
  auto f = parse_filter(args, snap.get());
  if (!f) return std::unexpected(f.error());
  auto limit = number_arg<std::size_t>(args, "limit", 100, 1, 100000);
  if (!limit) return std::unexpected(limit.error());
  auto dump = rt_.control().dump_flows(*f, *limit);
  if (!dump) return std::unexpected(dump.error());
  const std::uint64_t now = rte_rdtsc();
  const double hz = static_cast<double>(rte_get_tsc_hz());
  json flows = json::array();
  for (auto& r : dump->flows) {
    json fj{{"worker", r.worker},
            {"proto", rules::proto_name(r.proto)},
            {"src", address_string(r.src, r.version)},
            {"sport", r.sport},
            {"dst", address_string(r.dst, r.version)},
            {"dport", r.dport},
            {"identity", r.identity},
            {"rule_id", r.rule_id},
            {"revision", r.revision},
            {"tcp_state", std::string(dp::to_string(r.tcp))},
            {"packets_out", r.packets_out},
            {"packets_back", r.packets_back},
            {"bytes_out", r.bytes_out},
            {"bytes_back", r.bytes_back},
            {"idle_s", now > r.last_seen && hz > 0 ? static_cast<double>(now - r.last_seen) / hz : 0.0}};
    if (snap && snap->policy) fj["identity_name"] = snap->policy->identity_name(r.identity);
    flows.push_back(fj);
  }
  return json{{"filter", filter_json(*f)}, {"limit", *limit}, {"truncated", dump->truncated}, {"flows", flows}};
}

std::expected<json, std::string> Service::show_identities(const Args&) {
  const auto snap = rt_.snapshot();
  const auto c = rt_.counters();
  json ids = json::array();
  ids.push_back({{"id", rules::kUnauthenticated},
                 {"name", "unauthenticated"},
                 {"labels", json::object()},
                 {"reserved", true}});
  if (snap && snap->policy)
    for (auto& i : snap->policy->source().identities)
      ids.push_back({{"id", i.id}, {"name", i.name}, {"labels", labels_json(i.labels)}, {"reserved", false}});
  json classes = json::array();
  for (std::size_t k = 0; k < dp::kIdentityClassCount; ++k) {
    const auto cls = static_cast<dp::IdentityClass>(k);
    const auto v = c.identity_class(cls);
    classes.push_back({{"class", std::string(dp::to_string(cls))},
                       {"description", std::string(dp::describe(cls))},
                       {"packets", v.packets},
                       {"dropped", v.dropped}});
  }
  return json{{"revision", snap ? snap->revision() : 0}, {"identities", ids}, {"classes", classes}};
}

std::expected<json, std::string> Service::show_policy(const Args&) {
  const auto snap = rt_.snapshot();
  const auto c = rt_.counters();
  std::map<rules::RuleId, dp::CounterSnapshot::Worker::Rule> hits;
  for (auto& r : c.rules())
    if (!r.overflow) hits[r.id] = r;
  auto hit_json = [&](rules::RuleId id) {
    auto it = hits.find(id);
    dp::CounterSnapshot::Worker::Rule r{};
    if (it != hits.end()) r = it->second;
    return json{{"flows_admitted", r.flows_admitted},
                {"flows_denied", r.flows_denied},
                {"packets_forwarded", r.packets_forwarded},
                {"packets_dropped", r.packets_dropped}};
  };
  json j;
  if (!snap || !snap->policy) {
    j["loaded"] = false;
    j["revision"] = 0;
    j["rules"] = json::array();
    return j;
  }
  const auto& pol = snap->policy->source();
  j["loaded"] = true;
  j["revision"] = snap->policy->revision();
  j["digest"] = snap->policy->digest();
  j["default_mode"] = pol.defaults.mode == rules::SegmentMode::audit ? "audit" : "enforce";
  json rs = json::array();
  for (auto& r : pol.rules) {
    std::vector<std::string> protos, ports;
    for (auto p : r.protos) protos.push_back(rules::proto_name(p));
    for (auto& p : r.ports) ports.push_back(p.lo == p.hi ? std::to_string(p.lo) : fmt::format("{}-{}", p.lo, p.hi));
    json rj{{"id", r.id},
            {"name", r.name},
            {"action", r.action == rules::Action::allow ? "allow" : "deny"},
            {"from", selector_text(r.from)},
            {"to", selector_text(r.to)},
            {"protos", protos.empty() ? json("any") : json(protos)},
            {"ports", ports.empty() ? json("any") : json(ports)},
            {"l7", r.l7.has_value()},
            {"hits", hit_json(r.id)}};
    if (r.rate) rj["rate"] = {{"pps", r.rate->pps}, {"bps", r.rate->bps}};
    rs.push_back(rj);
  }
  j["rules"] = rs;
  j["default_deny"] = hit_json(rules::kDefaultRule);
  json segs = json::array();
  for (auto& s : pol.segments) {
    std::vector<std::string> pfx;
    for (auto& p : s.prefixes) pfx.push_back(rules::to_string(p));
    const auto mode = s.mode.value_or(pol.defaults.mode);
    segs.push_back({{"name", s.name}, {"prefixes", pfx}, {"mode", mode == rules::SegmentMode::audit ? "audit" : "enforce"}});
  }
  j["segments"] = segs;
  return j;
}

std::expected<json, std::string> Service::show_keys(const Args&) {
  const auto snap = rt_.snapshot();
  json j;
  j["domain"] = info_.key_domain;
  if (!snap || !snap->keys) {
    j["loaded"] = false;
    j["epochs"] = json::array();
    return j;
  }
  const auto& ring = *snap->keys;
  const auto& pol = ring.policy();
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  const std::int64_t now = static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
  const std::int64_t cur = ring.epoch_at(now);
  j["loaded"] = true;
  j["current_epoch"] = cur;
  j["epoch_length_s"] = pol.length_ns / 1'000'000'000;
  j["grace_ms"] = pol.grace_ns / 1'000'000;
  j["accept_ahead_ms"] = pol.accept_ahead_ns / 1'000'000;
  j["time_window_ms"] = pol.time_window_ns / 1'000'000;
  j["aes128_accepted"] = pol.accept_aes128;
  j["identities"] = ring.identity_count();
  json eps = json::array();
  for (std::int64_t e = cur - 1; e <= cur + 1; ++e) {
    if (e < 0 || !ring.has_epoch(static_cast<std::uint64_t>(e))) continue;
    const auto start = ring.epoch_start(static_cast<std::uint64_t>(e));
    // What a tag of this epoch is accepted for: from accept-ahead before its start to grace after its end.
    eps.push_back({{"epoch", e},
                   {"state", e < cur ? "previous" : e == cur ? "current" : "next"},
                   {"starts_unix", start / 1'000'000'000},
                   {"ends_unix", (start + pol.length_ns) / 1'000'000'000},
                   {"accepted_from_unix", (start - pol.accept_ahead_ns) / 1'000'000'000},
                   {"accepted_until_unix", (start + pol.length_ns + pol.grace_ns) / 1'000'000'000}});
  }
  j["epochs"] = eps;
  return j;
}

std::expected<json, std::string> Service::show_control_plane(const Args&) {
  json j;
  j["source"] = info_.policy_source;
  const auto snap = rt_.snapshot();
  j["enforced_revision"] = snap ? snap->revision() : 0;
  j["manager"] = manager_ ? json::parse(manager_->status_json()) : json(nullptr);
  j["events"] = events_.json();
  return j;
}

std::expected<json, std::string> Service::test_policy(const Args& args) {
  const auto snap = rt_.snapshot();
  if (!snap || !snap->policy)
    return std::unexpected("no policy is loaded: every new flow is dropped (no_policy)");
  rules::TraceQuery q;
  q.from = arg(args, "from");
  if (q.from.empty()) return std::unexpected("--from is required: an identity name or id, or a source address");
  auto to = rules::parse_address(arg(args, "to"));
  if (!to) return std::unexpected(fmt::format("--to '{}': expected a destination address", arg(args, "to")));
  q.to = *to;
  const auto proto_text = arg(args, "proto").empty() ? std::string("tcp") : arg(args, "proto");
  auto proto = rules::parse_proto(proto_text);
  if (!proto) return std::unexpected(fmt::format("--proto '{}': expected tcp, udp, icmp, icmpv6 or a number", proto_text));
  q.proto = *proto;
  auto port = number_arg<unsigned>(args, "port", 0, 0, 65535);
  if (!port) return std::unexpected(port.error());
  q.port = static_cast<std::uint16_t>(*port);
  if (args.contains("method") || args.contains("path"))
    q.http = rules::HttpRequest{arg(args, "method").empty() ? "GET" : arg(args, "method"),
                                arg(args, "path").empty() ? "/" : arg(args, "path"), ""};
  auto t = rules::trace(*snap->policy, q);
  if (!t) return std::unexpected(t.error());
  const auto& d = t->decision;
  json j{{"revision", snap->policy->revision()},
         {"from", q.from},
         {"source", t->source_name},
         {"source_id", d.key.src},
         {"to", rules::to_string(q.to)},
         {"proto", rules::proto_name(q.proto)},
         {"port", q.port},
         {"disposition", std::string(rules::to_string(d.disposition))},
         {"rule_id", d.verdict.rule_id},
         {"rule", rules::describe_rule(*snap->policy, d.verdict.rule_id)},
         {"reason", d.reason == rules::DropReason::none ? std::string() : std::string(rules::to_string(d.reason))},
         {"why", t->conclusion}};
  if (d.l7) j["l7"] = std::string(rules::to_string(d.l7->outcome));
  return j;
}

std::expected<json, std::string> Service::clear_counters(const Args&) {
  if (auto r = rt_.control().reset_counters(); !r) return std::unexpected(r.error());
  return json{{"cleared", "counters"}, {"workers", rt_.worker_count()}};
}

std::expected<json, std::string> Service::clear_flows(const Args& args) {
  const auto snap = rt_.snapshot();
  auto f = parse_filter(args, snap.get());
  if (!f) return std::unexpected(f.error());
  auto n = rt_.control().flush_flows(*f);
  if (!n) return std::unexpected(n.error());
  return json{{"filter", filter_json(*f)}, {"flushed", *n}};
}

std::expected<json, std::string> Service::set_runtime_timing(const Args& args) {
  const auto v = arg(args, "value");
  if (v != "on" && v != "off") return std::unexpected(fmt::format("set runtime timing '{}': expected on or off", v));
  if (auto r = rt_.control().set_stage_timing(v == "on"); !r) return std::unexpected(r.error());
  stage_timing_ = v == "on";
  return json{{"stage_timing", stage_timing_}};
}

std::expected<json, std::string> Service::trace(const Args& args) {
  auto n = number_arg<std::uint64_t>(args, "packets", 10, 1, 10000);
  if (!n) return std::unexpected(n.error());
  auto wait_ms = number_arg<unsigned>(args, "wait", 2000, 0, 10000);
  if (!wait_ms) return std::unexpected(wait_ms.error());
  std::vector<dp::TraceRecord> records;
  rt_.control().drain_trace(records);  // leftovers of an earlier trace
  records.clear();
  if (auto r = rt_.control().trace(*n); !r) return std::unexpected(r.error());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(*wait_ms);
  while (records.size() < *n && std::chrono::steady_clock::now() < deadline) {
    rt_.control().drain_trace(records, *n - records.size());
    if (records.size() < *n) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  (void)rt_.control().trace(0);
  rt_.control().drain_trace(records, *n - std::min<std::size_t>(records.size(), *n));
  const auto snap = rt_.snapshot();
  json out = json::array();
  for (auto& t : records) {
    std::vector<std::string> steps;
    static constexpr std::pair<std::uint16_t, const char*> kSteps[] = {
        {dp::kStepParsed, "parsed"},         {dp::kStepTagged, "tagged"},
        {dp::kStepFlowFound, "flow-found"},  {dp::kStepClassified, "classified"},
        {dp::kStepMacChecked, "mac-checked"}, {dp::kStepMacOk, "mac-ok"},
        {dp::kStepAdmitted, "admitted"},     {dp::kStepReclassified, "reclassified"},
        {dp::kStepRevoked, "revoked"},       {dp::kStepForwarded, "forwarded"}};
    for (auto& [bit, name] : kSteps)
      if (t.steps & bit) steps.push_back(name);
    json r{{"seq", t.seq},
           {"port", kSides[t.port < dp::kMaxPorts ? t.port : 0]},
           {"length", t.length},
           {"version", t.version},
           {"proto", t.version ? rules::proto_name(t.proto) : std::string("-")},
           {"src", t.version ? address_string(t.src, t.version) : std::string()},
           {"dst", t.version ? address_string(t.dst, t.version) : std::string()},
           {"sport", t.sport},
           {"dport", t.dport},
           {"identity", t.identity},
           {"class", std::string(dp::to_string(t.cls))},
           {"steps", steps},
           {"revision", t.revision},
           {"forwarded", t.forwarded()},
           {"drop", t.forwarded() ? std::string() : std::string(rules::to_string(t.drop_reason()))}};
    if (t.steps & dp::kStepClassified)
      r["disposition"] = std::string(rules::to_string(static_cast<rules::Disposition>(t.disposition)));
    if (t.has_rule) {
      r["rule_id"] = t.rule_id;
      if (snap && snap->policy) r["rule"] = rules::describe_rule(*snap->policy, t.rule_id);
    }
    out.push_back(r);
  }
  return json{{"requested", *n}, {"packets", out}};
}


// ---- volumetric ------------------------------------------------------------------------------
namespace {

json volumetric_entries(const std::vector<dp::VolumetricEntry>& v, bool blocklist) {
  json a = json::array();
  for (auto& e : v) {
    json j{{"prefix", fmt::format("{}/{}", address_string(e.prefix, e.version), e.prefix_len)},
           {"worker", e.worker},
           {"packets", e.packets}};
    if (blocklist) {
      j["expires_in_ms"] = e.expires_in_ms;
      j["reason"] = e.reason == 1 ? "heavy_hitter" : e.reason == 2 ? "tag_failures" : "control";
    }
    a.push_back(j);
  }
  return a;
}

}  // namespace

std::expected<json, std::string> Service::show_volumetric(const Args& args) {
  auto top = number_arg<std::size_t>(args, "top", 16, 1, 1000);
  if (!top) return std::unexpected(top.error());
  auto talkers = rt_.control().top_talkers(*top);
  if (!talkers) return std::unexpected(talkers.error());
  auto blocked = rt_.control().blocklist();
  if (!blocked) return std::unexpected(blocked.error());
  const auto v = rt_.control().volumetric();
  json limits{{"v4_prefix", v.v4_prefix},
              {"v6_prefix", v.v6_prefix},
              {"window_ms", v.window_ms},
              {"source_pps", v.source_pps},
              {"block_pps", v.block_pps},
              {"mac_fail_pps", v.mac_fail_pps},
              {"block_ms", v.block_ms},
              {"new_flows_per_source", v.new_flows_per_source},
              {"new_flows_global", v.new_flows_global},
              {"unverified_new_flow_share", v.unverified_new_flow_share},
              {"table_watermark_pct", v.table_watermark_pct},
              {"burst_ms", v.burst_ms},
              {"overload_ms", v.overload_ms},
              {"flow_log_rate", v.flow_log_rate}};
  return json{{"limits", limits},
              {"top_talkers", volumetric_entries(*talkers, false)},
              {"blocklist", volumetric_entries(*blocked, true)}};
}

std::expected<json, std::string> Service::clear_blocklist(const Args& args) {
  std::optional<rules::IpPrefix> prefix;
  if (auto p = arg(args, "prefix"); !p.empty()) {
    prefix = rules::parse_prefix(p, true);
    if (!prefix) return std::unexpected(fmt::format("clear blocklist '{}': expected a prefix such as 10.1.0.0/24", p));
  }
  auto n = rt_.control().clear_blocklist(prefix);
  if (!n) return std::unexpected(n.error());
  return json{{"prefix", prefix ? rules::to_string(*prefix) : std::string("all")}, {"removed", *n}};
}

// ---- packet capture (dataplane/include/zt/dataplane/capture.hpp) -------------------------------
namespace {
json capture_json(const dp::CaptureStatus& st) {
  return json{{"active", st.active}, {"file", st.file}, {"drops_only", st.drops_only}, {"count", st.count},
              {"written", st.written}, {"lost", st.lost}, {"write_errors", st.write_errors}, {"error", st.error}};
}
}  // namespace

std::expected<json, std::string> Service::capture_start(const Args& args) {
  dp::CaptureRequest r;
  r.file = arg(args, "file");
  if (r.file.empty() || r.file.front() != '/')
    return std::unexpected(fmt::format("capture start '{}': expected an absolute path for the pcapng file", r.file));
  r.drops_only = arg(args, "drops-only") == "1";
  auto count = number_arg<std::uint64_t>(args, "count", 0, 0, 1'000'000'000);
  if (!count) return std::unexpected(count.error());
  r.count = *count;
  auto snap = number_arg<unsigned>(args, "snaplen", 0, 0, 2048);
  if (!snap) return std::unexpected(snap.error());
  if (*snap != 0 && *snap < 64) return std::unexpected(fmt::format("--snaplen '{}': expected 64 to 2048 (0: 2048)", *snap));
  r.snaplen = static_cast<std::uint16_t>(*snap);
  for (const auto& n : rt_.port_names()) r.port_names.push_back(n);
  if (auto ok = rt_.capture().start(r); !ok) return std::unexpected(ok.error());
  return capture_json(rt_.capture().status());
}

std::expected<json, std::string> Service::capture_stop(const Args&) {
  if (!rt_.capture().status().active) {
    // Stopped already (its --count reached): say what the last one wrote.
    auto st = rt_.capture().status();
    if (st.file.empty()) return std::unexpected("capture stop: no capture is running (ztctl capture start FILE)");
    return capture_json(st);
  }
  auto st = rt_.capture().stop();
  if (!st) return std::unexpected(st.error());
  return capture_json(*st);
}

std::expected<json, std::string> Service::show_capture(const Args&) {
  return capture_json(rt_.capture().status());
}

// ---- candidate configuration -------------------------------------------------------------------
std::expected<appliance::config::CandidateStore*, std::string> Service::store() const {
  if (!candidate_) return std::unexpected("this ztgate has no candidate configuration store");
  return candidate_;
}

namespace {

json diff_json(const std::vector<appliance::config::DiffLine>& d) {
  json a = json::array();
  for (auto& l : d)
    a.push_back({{"key", l.key},
                 {"running", l.running ? json(*l.running) : json(nullptr)},
                 {"candidate", l.candidate ? json(*l.candidate) : json(nullptr)}});
  return a;
}

}  // namespace

std::expected<json, std::string> Service::set_key(const Args& args) {
  auto st = store();
  if (!st) return std::unexpected(st.error());
  const auto key = arg(args, "key"), value = arg(args, "value");
  if (key.empty() || value.empty()) return std::unexpected("set KEY VALUE: both are required (`ztctl set --help`)");
  if (auto r = (*st)->set(key, value); !r) return std::unexpected(r.error());
  return json{{"set", key}, {"value", value}, {"candidate", diff_json((*st)->show_candidate())}};
}

std::expected<json, std::string> Service::delete_key(const Args& args) {
  auto st = store();
  if (!st) return std::unexpected(st.error());
  const auto key = arg(args, "key");
  if (auto r = (*st)->remove(key); !r) return std::unexpected(r.error());
  return json{{"deleted", key}, {"candidate", diff_json((*st)->show_candidate())}};
}

// ---- flow timeouts (the apply step of flow.timeout.*) ---------------------------------------

std::expected<dp::FlowTimeouts, std::string> flow_timeouts_from(const appliance::config::Tunables& t,
                                                                std::uint64_t ticks_per_second) {
  constexpr std::uint32_t kMax = 7 * 24 * 3600;  // as `set` allows
  if (ticks_per_second == 0) return std::unexpected("flow.timeout.*: the TSC frequency is unknown (0 Hz)");
  const std::pair<const char*, std::uint32_t> keys[] = {{"flow.timeout.tcp_established", t.tcp_established_s},
                                                        {"flow.timeout.tcp_transitory", t.tcp_transitory_s},
                                                        {"flow.timeout.udp", t.udp_s},
                                                        {"flow.timeout.icmp", t.icmp_s}};
  for (auto& [key, v] : keys)
    if (v < 1 || v > kMax)
      return std::unexpected(fmt::format("{} {}: expected 1s to 7 days ({} s)", key, v, kMax));
  // 7 days at a 10 GHz TSC is ~6e15 ticks: no overflow in 64 bits.
  const auto ticks = [ticks_per_second](std::uint32_t s) { return std::uint64_t{s} * ticks_per_second; };
  dp::FlowTimeouts out = dp::make_timeouts(ticks_per_second);  // `other` keeps its default
  out.tcp_syn = ticks(t.tcp_transitory_s);
  out.tcp_established = ticks(t.tcp_established_s);
  out.tcp_closing = ticks(t.tcp_transitory_s);
  out.udp = ticks(t.udp_s);
  out.icmp = ticks(t.icmp_s);
  return out;
}

bool flow_timeouts_differ(const appliance::config::Tunables& a, const appliance::config::Tunables& b) {
  return a.tcp_established_s != b.tcp_established_s || a.tcp_transitory_s != b.tcp_transitory_s ||
         a.udp_s != b.udp_s || a.icmp_s != b.icmp_s;
}

std::expected<void, std::string> apply_flow_timeouts(dp::Control& control, const appliance::config::Tunables& running,
                                                     const appliance::config::Tunables& next,
                                                     std::uint64_t ticks_per_second) {
  if (!flow_timeouts_differ(running, next)) return {};
  auto t = flow_timeouts_from(next, ticks_per_second);
  if (!t) return std::unexpected(t.error());
  if (auto r = control.set_flow_timeouts(*t); !r) {
    // Running stays as it was: put the workers that answered back on its timeouts (best effort;
    // a worker that did not answer takes the new ones, then these, once it runs again).
    if (auto old = flow_timeouts_from(running, ticks_per_second)) (void)control.set_flow_timeouts(*old);
    return std::unexpected(fmt::format("flow.timeout.*: not every worker took the new timeouts ({}); "
                                       "commit again once they answer",
                                       r.error()));
  }
  return {};
}

std::expected<json, std::string> Service::show_candidate(const Args&) {
  auto st = store();
  if (!st) return std::unexpected(st.error());
  const auto d = (*st)->show_candidate();
  return json{{"changes", diff_json(d)}, {"text", appliance::config::render_diff(d)}};
}

std::expected<json, std::string> Service::show_configuration(const Args&) {
  auto st = store();
  if (!st) return std::unexpected(st.error());
  json running = json::object();
  for (auto& [k, v] : appliance::config::flatten((*st)->running())) running[k] = v;
  json hist = json::array();
  for (auto& h : (*st)->history())
    hist.push_back({{"number", h.number},
                    {"who", h.who},
                    {"comment", h.comment},
                    {"unix", std::chrono::duration_cast<std::chrono::seconds>(h.when.time_since_epoch()).count()},
                    {"confirmed_within_s", h.confirm_within ? json(h.confirm_within->count()) : json(nullptr)},
                    {"automatic_rollback", h.automatic_rollback}});
  const auto left = (*st)->confirm_remaining();
  return json{{"running", running},
              {"history", hist},
              {"confirm_pending_s", left ? json(left->count()) : json(nullptr)}};
}

std::expected<json, std::string> Service::commit(const Args& args) {
  auto st = store();
  if (!st) return std::unexpected(st.error());
  appliance::config::CandidateStore::CommitOptions o;
  o.who = fmt::format("{} (uid {})", current_.user, current_.uid);
  o.comment = arg(args, "comment");
  if (auto c = arg(args, "confirmed"); !c.empty()) {
    auto s = appliance::config::parse_duration_s(c, 60);
    if (!s) return std::unexpected(fmt::format("commit confirmed: {}", s.error()));
    o.confirmed = std::chrono::seconds(*s);
  }
  auto r = (*st)->commit(o);
  if (!r) return std::unexpected(r.error());
  return json{{"number", r->number}, {"confirmed_pending", r->confirmed_pending}, {"message", r->message},
              {"confirm_within_s", o.confirmed ? json(o.confirmed->count()) : json(nullptr)}};
}

std::expected<json, std::string> Service::commit_check(const Args&) {
  auto st = store();
  if (!st) return std::unexpected(st.error());
  if (auto r = (*st)->check(); !r) return std::unexpected(r.error());
  return json{{"message", "configuration check succeeds"}};
}

std::expected<json, std::string> Service::confirm(const Args&) {
  auto st = store();
  if (!st) return std::unexpected(st.error());
  if (auto r = (*st)->confirm(current_.user); !r) return std::unexpected(r.error());
  return json{{"message", "commit confirmed; it stays"}};
}

std::expected<json, std::string> Service::rollback(const Args& args) {
  auto st = store();
  if (!st) return std::unexpected(st.error());
  auto n = number_arg<unsigned>(args, "n", 1, 0, 1000);
  if (!n) return std::unexpected(n.error());
  if (auto r = (*st)->rollback(*n); !r) return std::unexpected(r.error());
  return json{{"message", fmt::format("configuration {} loaded into the candidate; `ztctl commit` applies it", *n)},
              {"candidate", diff_json((*st)->show_candidate())}};
}

}  // namespace zt::admin
