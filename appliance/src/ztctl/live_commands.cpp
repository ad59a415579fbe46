// ztctl's live verbs: one request to a running ztgate over its admin socket (admin/wire.hpp),
// one answer, printed as text or, with --json, as the JSON document ztgate sent. The daemon
// decides; ztctl only parses options and renders.
#include <boost/program_options.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <ctime>
#include <iostream>
#include <map>
#include <optional>

#include "admin/wire.hpp"
#include "command.hpp"
#include "zt/rules/drop_reason.hpp"

namespace po = boost::program_options;
using nlohmann::json;

namespace zt::ctl {
namespace {

struct Verb {
  std::vector<std::string> words;
  std::string synopsis, summary, help;
  bool mutating = false;
  std::function<void(po::options_description&)> options;    // the verb's own options
  std::vector<std::string> positional;                       // names of positional arguments, in order
  std::function<void(const json&, std::ostream&)> render;    // text output
  std::string command = {};                                  // request command; empty: the words
};

std::string joined(const std::vector<std::string>& w) {
  std::string s;
  for (auto& x : w) s += (s.empty() ? "" : " ") + x;
  return s;
}

std::string when(std::int64_t unix_s) {
  if (unix_s <= 0) return "never";
  std::time_t t = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

std::string duration(std::int64_t s) {
  if (s >= 86400) return fmt::format("{}d {}h {}m", s / 86400, s % 86400 / 3600, s % 3600 / 60);
  if (s >= 3600) return fmt::format("{}h {}m {}s", s / 3600, s % 3600 / 60, s % 60);
  if (s >= 60) return fmt::format("{}m {}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

std::string str(const json& j) { return j.is_string() ? j.get<std::string>() : j.dump(); }

// ---- renderers ------------------------------------------------------------------------------
void render_status(const json& j, std::ostream& out) {
  const auto& p = j["policy"];
  out << fmt::format("ztgate {}, up {} (since {})\n", str(j["version"]), duration(j["uptime_s"].get<std::int64_t>()),
                     when(j["started_unix"].get<std::int64_t>()));
  out << fmt::format("Ports:          {} (zone A) <-> {} (zone B), {} worker(s)\n", str(j["ports"][0]),
                     str(j["ports"][1]), j["workers"].get<unsigned>());
  out << fmt::format("Policy:         revision {} ({} rules, {} identities){} from {}\n", p["revision"].get<std::uint64_t>(),
                     p["rules"].get<std::uint64_t>(), p["identities"].get<std::uint64_t>(),
                     p["expired"].get<bool>() ? " EXPIRED: new flows refused" : "", str(p["source"]));
  out << fmt::format("Policy digest:  {}\n", p["digest"].get<std::string>().empty() ? "-" : str(p["digest"]));
  const auto& k = j["keys"];
  out << fmt::format("Key epoch:      {}\n", k["loaded"].get<bool>() ? std::to_string(k["epoch"].get<std::int64_t>())
                                                                    : std::string("no keys loaded (tags are dropped)"));
  if (j["manager"].is_null()) {
    out << "Manager:        none\n";
  } else {
    const auto& m = j["manager"];
    out << fmt::format("Manager:        {} {}, enforced revision {}{}\n", str(m["address"]),
                       m["connected"].get<bool>() ? "connected" : "NOT connected",
                       m["enforced_revision"].get<std::uint64_t>(), m["failed_closed"].get<bool>() ? ", FAILED CLOSED" : "");
  }
  if (j.contains("clock")) {  // the workers follow the wall clock (dataplane/README.md "Clock")
    const auto& c = j["clock"];
    const auto steps = c["steps"].get<std::uint64_t>();
    out << fmt::format("Clock:          {} step{} of the wall clock followed{}\n", steps, steps == 1 ? "" : "s",
                       steps == 0 ? std::string()
                                  : fmt::format(", the last {:+.3f} s at {}", c["last_step_ns"].get<double>() / 1e9,
                                                when(c["last_step_unix_ns"].get<std::int64_t>() / 1'000'000'000)));
  }
  out << fmt::format("Stage timing:   {}\n", j["stage_timing"].get<bool>() ? "on" : "off");
  out << fmt::format("Metrics:        {}\n", str(j["metrics_listen"]).empty() ? "off" : str(j["metrics_listen"]));
}

void render_interfaces(const json& j, std::ostream& out) {
  out << fmt::format("{:<8} {:<18} {:>14} {:>16} {:>14} {:>16} {:>9} {:>9}\n", "side", "name", "rx packets", "rx bytes",
                     "tx packets", "tx bytes", "missed", "nombuf");
  for (auto& i : j["interfaces"]) {
    const json hw = i.contains("hw") ? i["hw"] : json::object();
    out << fmt::format("{:<8} {:<18} {:>14} {:>16} {:>14} {:>16} {:>9} {:>9}\n", str(i["side"]), str(i["name"]),
                       i["rx_packets"].get<std::uint64_t>(), i["rx_bytes"].get<std::uint64_t>(),
                       i["tx_packets"].get<std::uint64_t>(), i["tx_bytes"].get<std::uint64_t>(),
                       hw.value("imissed", std::uint64_t{0}), hw.value("rx_nombuf", std::uint64_t{0}));
  }
}

void render_runtime(const json& j, std::ostream& out) {
  out << fmt::format("Stage timing {} (TSC {:.2f} GHz){}\n", j["stage_timing"].get<bool>() ? "on" : "off",
                     j["tsc_hz"].get<double>() / 1e9,
                     j["stage_timing"].get<bool>() ? "" : "; `ztctl set runtime timing on` to count cycles per stage");
  for (auto& w : j["workers"]) {
    out << fmt::format("worker {} (lcore {}, queue {}): rx {} tx {} dropped {} new flows {}, {:.1f} cycles/packet\n",
                       w["worker"].get<unsigned>(), w["lcore"].get<unsigned>(), w["queue"].get<unsigned>(),
                       w["rx_packets"].get<std::uint64_t>(), w["tx_packets"].get<std::uint64_t>(),
                       w["dropped"].get<std::uint64_t>(), w["new_flows"].get<std::uint64_t>(),
                       w["cycles_per_packet"].get<double>());
    out << fmt::format("  {:<10} {:>12} {:>14} {:>16} {:>14}\n", "stage", "calls", "packets", "cycles", "cycles/packet");
    for (auto& s : w["stages"])
      out << fmt::format("  {:<10} {:>12} {:>14} {:>16} {:>14.1f}\n", str(s["stage"]), s["calls"].get<std::uint64_t>(),
                         s["packets"].get<std::uint64_t>(), s["cycles"].get<std::uint64_t>(),
                         s["cycles_per_packet"].get<double>());
  }
}

void render_drops(const json& j, std::ostream& out) {
  out << fmt::format("Dropped: {} packets\n", j["total"].get<std::uint64_t>());
  if (!j["by_reason"].empty()) {
    out << fmt::format("  {:<32} {:>12}  {}\n", "reason", "packets", "description");
    for (auto& [reason, n] : j["by_reason"].items()) {
      auto r = rules::drop_reason_from_string(reason);
      out << fmt::format("  {:<32} {:>12}  {}\n", reason, n.get<std::uint64_t>(),
                         r ? std::string(rules::describe(*r)) : std::string());
    }
  }
  out << "By worker:\n";
  for (auto& w : j["by_worker"]) {
    std::string parts;
    for (auto& [reason, n] : w["by_reason"].items())
      parts += fmt::format("{}{} {}", parts.empty() ? "" : ", ", reason, n.get<std::uint64_t>());
    out << fmt::format("  worker {} (lcore {}): {}{}\n", w["worker"].get<unsigned>(), w["lcore"].get<unsigned>(),
                       w["total"].get<std::uint64_t>(), parts.empty() ? "" : " (" + parts + ")");
  }
  out << "By rule:\n";
  if (j["by_rule"].empty()) out << "  none\n";
  for (auto& r : j["by_rule"])
    out << fmt::format("  {}: {} packets dropped, {} flow decisions denied\n", str(r["rule"]),
                       r["packets_dropped"].get<std::uint64_t>(), r["flows_denied"].get<std::uint64_t>());
}

void render_flows(const json& j, std::ostream& out) {
  out << fmt::format("{:<3} {:<5} {:<28} {:<28} {:<12} {:>6} {:>10} {:>10} {:>8}  {}\n", "wk", "proto", "source",
                     "destination", "state", "rule", "pkts out", "pkts back", "idle s", "identity");
  for (auto& f : j["flows"]) {
    std::string ident = fmt::format("{}", f["identity"].get<std::uint32_t>());
    if (f.contains("identity_name")) ident = fmt::format("{} ({})", str(f["identity_name"]), ident);
    out << fmt::format("{:<3} {:<5} {:<28} {:<28} {:<12} {:>6} {:>10} {:>10} {:>8.1f}  {}\n", f["worker"].get<unsigned>(),
                       str(f["proto"]), fmt::format("{}:{}", str(f["src"]), f["sport"].get<unsigned>()),
                       fmt::format("{}:{}", str(f["dst"]), f["dport"].get<unsigned>()), str(f["tcp_state"]),
                       f["rule_id"].get<std::uint32_t>(), f["packets_out"].get<std::uint64_t>(),
                       f["packets_back"].get<std::uint64_t>(), f["idle_s"].get<double>(), ident);
  }
  out << fmt::format("{} flow(s){}\n", j["flows"].size(),
                     j["truncated"].get<bool>() ? fmt::format(", more match: raise --limit (now {}) or narrow the filter",
                                                              j["limit"].get<std::size_t>())
                                                : std::string());
}

void render_identities(const json& j, std::ostream& out) {
  out << fmt::format("Identities of revision {}:\n", j["revision"].get<std::uint64_t>());
  for (auto& i : j["identities"]) {
    std::string labels;
    for (auto& [k, v] : i["labels"].items()) labels += fmt::format("{}{}={}", labels.empty() ? "" : ", ", k, str(v));
    out << fmt::format("  {:>8}  {:<24} {}{}\n", i["id"].get<std::uint32_t>(), str(i["name"]), labels,
                       i["reserved"].get<bool>() ? "(reserved)" : "");
  }
  out << "Packets by identity class:\n";
  for (auto& c : j["classes"])
    out << fmt::format("  {:<16} {:>12} packets {:>12} dropped   {}\n", str(c["class"]), c["packets"].get<std::uint64_t>(),
                       c["dropped"].get<std::uint64_t>(), str(c["description"]));
}

void render_policy(const json& j, std::ostream& out) {
  if (!j["loaded"].get<bool>()) {
    out << "No policy loaded: every new flow is dropped (no_policy)\n";
    return;
  }
  out << fmt::format("Policy revision {}, digest {}, default mode {}\n", j["revision"].get<std::uint64_t>(),
                     str(j["digest"]), str(j["default_mode"]));
  out << fmt::format("{:>6} {:<20} {:<6} {:>10} {:>10} {:>12} {:>12}  {}\n", "id", "name", "action", "flows ok",
                     "flows deny", "pkts fwd", "pkts drop", "match");
  auto row = [&](const json& r, const json& h) {
    out << fmt::format("{:>6} {:<20} {:<6} {:>10} {:>10} {:>12} {:>12}  {}\n", r["id"].get<std::uint32_t>(), str(r["name"]),
                       str(r["action"]), h["flows_admitted"].get<std::uint64_t>(), h["flows_denied"].get<std::uint64_t>(),
                       h["packets_forwarded"].get<std::uint64_t>(), h["packets_dropped"].get<std::uint64_t>(),
                       fmt::format("from {} to {} proto {} ports {}{}", str(r["from"]), str(r["to"]),
                                   r["protos"].is_string() ? str(r["protos"]) : fmt::format("{}", fmt::join(r["protos"].get<std::vector<std::string>>(), ",")),
                                   r["ports"].is_string() ? str(r["ports"]) : fmt::format("{}", fmt::join(r["ports"].get<std::vector<std::string>>(), ",")),
                                   r["l7"].get<bool>() ? " +L7" : ""));
  };
  for (auto& r : j["rules"]) row(r, r["hits"]);
  row(json{{"id", 0}, {"name", "(default deny)"}, {"action", "deny"}, {"from", "any"}, {"to", "any"}, {"protos", "any"},
           {"ports", "any"}, {"l7", false}},
      j["default_deny"]);
  for (auto& s : j["segments"])
    out << fmt::format("segment {:<20} {:<8} {}\n", str(s["name"]), str(s["mode"]),
                       fmt::join(s["prefixes"].get<std::vector<std::string>>(), ", "));
}

void render_keys(const json& j, std::ostream& out) {
  if (!j["loaded"].get<bool>()) {
    out << "No keys loaded: tagged packets are dropped (tag_no_key)\n";
    return;
  }
  out << fmt::format("Current epoch {} (length {} s, grace {} ms, accept-ahead {} ms, tag window {} ms), {} identities{}\n",
                     j["current_epoch"].get<std::int64_t>(), j["epoch_length_s"].get<std::int64_t>(),
                     j["grace_ms"].get<std::int64_t>(), j["accept_ahead_ms"].get<std::int64_t>(),
                     j["time_window_ms"].get<std::int64_t>(), j["identities"].get<std::uint64_t>(),
                     str(j["domain"]).empty() ? "" : ", domain " + str(j["domain"]));
  for (auto& e : j["epochs"])
    out << fmt::format("  epoch {:>8} {:<8} {} .. {} (tags accepted until {})\n", e["epoch"].get<std::int64_t>(),
                       str(e["state"]), when(e["starts_unix"].get<std::int64_t>()), when(e["ends_unix"].get<std::int64_t>()),
                       when(e["accepted_until_unix"].get<std::int64_t>()));
  out << "(key material is never shown)\n";
}

void render_control_plane(const json& j, std::ostream& out) {
  out << fmt::format("Policy source: {}, enforced revision {}\n", str(j["source"]), j["enforced_revision"].get<std::uint64_t>());
  if (!j["manager"].is_null()) {
    const auto& m = j["manager"];
    out << fmt::format("Manager {} as {}: {}\n", str(m["manager"]), str(m["identity"]),
                       m["connected"].get<bool>() ? "connected to " + str(m.value("manager_identity", json(""))) :
                       "NOT connected: " + str(m.value("last_session_error", json(""))));
    out << fmt::format("  pushes {}, ACKs {}, NACKs {}; highest accepted revision {}; expires {} ({})\n",
                       m["pushes"].get<std::uint64_t>(), m["acks"].get<std::uint64_t>(), m["nacks"].get<std::uint64_t>(),
                       m["highest_accepted_revision"].get<std::uint64_t>(), when(m["expires_unix"].get<std::int64_t>()),
                       str(m["expires_what"]));
    if (!m["last_reply"].is_null())
      out << fmt::format("  last reply: {} revision {} at {}{}\n", str(m["last_reply"]["kind"]),
                         m["last_reply"]["revision"].get<std::uint64_t>(), when(m["last_reply"]["unix"].get<std::int64_t>()),
                         m["last_reply"].contains("message") ? ": " + str(m["last_reply"]["message"]) : "");
    if (!m["last_nack"].is_null())
      out << fmt::format("  last NACK: revision {} at {}: {} {} ({})\n", m["last_nack"]["revision"].get<std::uint64_t>(),
                         when(m["last_nack"]["unix"].get<std::int64_t>()), str(m["last_nack"]["code"]),
                         str(m["last_nack"]["message"]), str(m["last_nack"]["resource"]));
    if (m.contains("history") && !m["history"].empty()) {
      out << "  replies (oldest first):\n";
      for (auto& h : m["history"])
        out << fmt::format("    {}  {:<4} revision {}{}\n", when(h["unix"].get<std::int64_t>()), str(h["kind"]),
                           h["revision"].get<std::uint64_t>(),
                           h.contains("code") ? fmt::format(": {} {} ({})", str(h["code"]), str(h["message"]),
                                                            str(h["resource"]))
                                              : std::string());
    }
    if (m["failed_closed"].get<bool>()) out << "  FAILED CLOSED: new flows are refused until the manager sends an update\n";
  }
  if (!j["events"].empty()) out << "Events:\n";
  for (auto& e : j["events"])
    out << fmt::format("  {}  {:<32} {}  {}\n", when(e["unix"].get<std::int64_t>()), str(e["what"]),
                       e["ok"].get<bool>() ? "ok    " : "FAILED", str(e["detail"]));
}

void render_test(const json& j, std::ostream& out) {
  out << fmt::format("{}: {} (identity {}) to {} {}/{}: {} by {} (revision {}){}\n",
                     j["disposition"].get<std::string>() == "allow" ? "ALLOW" : j["disposition"].get<std::string>() == "audit" ? "AUDIT" : "DENY",
                     str(j["source"]), j["source_id"].get<std::uint32_t>(), str(j["to"]), str(j["proto"]),
                     j["port"].get<unsigned>(), str(j["disposition"]), str(j["rule"]), j["revision"].get<std::uint64_t>(),
                     str(j["reason"]).empty() ? "" : ", drop reason " + str(j["reason"]));
  for (auto& w : j["why"]) out << "  " << str(w) << "\n";
}

void render_trace(const json& j, std::ostream& out) {
  out << fmt::format("{} of {} packet(s) traced\n", j["packets"].size(), j["requested"].get<std::uint64_t>());
  for (auto& p : j["packets"]) {
    out << fmt::format("#{} {} {} B {} {}:{} -> {}:{} identity {} ({})\n", p["seq"].get<std::uint64_t>(), str(p["port"]),
                       p["length"].get<unsigned>(), str(p["proto"]), str(p["src"]), p["sport"].get<unsigned>(),
                       str(p["dst"]), p["dport"].get<unsigned>(), p["identity"].get<std::uint32_t>(), str(p["class"]));
    out << fmt::format("    {}{}{} -> {}\n", fmt::join(p["steps"].get<std::vector<std::string>>(), " > "),
                       p.contains("disposition") ? ", " + str(p["disposition"]) : "",
                       p.contains("rule") ? " by " + str(p["rule"]) : "",
                       p["forwarded"].get<bool>() ? "FORWARDED" : "DROPPED (" + str(p["drop"]) + ")");
  }
}

void render_done(const json& j, std::ostream& out) {
  if (j.contains("flushed"))
    out << fmt::format("{} flow(s) cleared\n", j["flushed"].get<std::uint64_t>());
  else if (j.contains("cleared"))
    out << fmt::format("counters cleared on {} worker(s)\n", j["workers"].get<unsigned>());
  else if (j.contains("stage_timing"))
    out << fmt::format("stage timing {}\n", j["stage_timing"].get<bool>() ? "on" : "off");
  else
    out << j.dump(2) << "\n";
}

void render_volumetric(const json& j, std::ostream& out) {
  out << "Limits:";
  for (auto& [k, v] : j["limits"].items()) out << " " << k << "=" << v.dump();
  out << "\nTop talkers (untagged and invalid-tag sources, estimated packets this window):\n";
  if (j["top_talkers"].empty()) out << "  none\n";
  for (auto& t : j["top_talkers"])
    out << fmt::format("  {:<44} {:>12} packets\n", str(t["prefix"]), t["packets"].get<std::uint64_t>());
  out << "Blocklist:\n";
  if (j["blocklist"].empty()) out << "  empty\n";
  for (auto& b : j["blocklist"])
    out << fmt::format("  {:<44} worker {} {:<14} {:>12} dropped, expires in {:.1f} s\n", str(b["prefix"]),
                       b["worker"].get<unsigned>(), str(b["reason"]), b["packets"].get<std::uint64_t>(),
                       b["expires_in_ms"].get<double>() / 1000);
}

void render_capture(const json& j, std::ostream& out) {
  if (str(j["file"]).empty()) {
    out << "no capture since ztgate started\n";
    return;
  }
  out << fmt::format("capture {}: {}{}, {} packet(s) written, {} lost", j["active"].get<bool>() ? "running" : "stopped",
                     str(j["file"]), j["drops_only"].get<bool>() ? " (drops only)" : "",
                     j["written"].get<std::uint64_t>(), j["lost"].get<std::uint64_t>());
  if (j["count"].get<std::uint64_t>() != 0) out << fmt::format(", stops at {}", j["count"].get<std::uint64_t>());
  if (j["write_errors"].get<std::uint64_t>() != 0)
    out << fmt::format(", {} write error(s): {}", j["write_errors"].get<std::uint64_t>(), str(j["error"]));
  out << "\n";
}

void render_diff(const json& changes, std::ostream& out) {
  if (changes.empty()) {
    out << "(no changes: the candidate is the running configuration)\n";
    return;
  }
  out << "[edit]\n";
  for (auto& c : changes) {
    if (!c["running"].is_null()) out << "- " << str(c["key"]) << " " << str(c["running"]) << "\n";
    if (!c["candidate"].is_null()) out << "+ " << str(c["key"]) << " " << str(c["candidate"]) << "\n";
  }
}

void render_candidate(const json& j, std::ostream& out) {
  if (j.contains("set")) out << fmt::format("candidate: {} {}\n", str(j["set"]), str(j["value"]));
  if (j.contains("deleted")) out << fmt::format("candidate: {} deleted\n", str(j["deleted"]));
  if (j.contains("message")) out << str(j["message"]) << "\n";
  render_diff(j.contains("changes") ? j["changes"] : j["candidate"], out);
}

void render_configuration(const json& j, std::ostream& out) {
  out << "Running configuration:\n";
  for (auto& [k, v] : j["running"].items()) out << "  " << k << " " << str(v) << "\n";
  if (!j["confirm_pending_s"].is_null())
    out << fmt::format("A commit confirmed is pending: it rolls back in {} s unless `ztctl confirm`\n",
                       j["confirm_pending_s"].get<std::int64_t>());
  out << "Commits (newest first):\n";
  for (auto& h : j["history"])
    out << fmt::format("  {:>3}  {}  {}{}{}{}\n", h["number"].get<std::uint64_t>(), when(h["unix"].get<std::int64_t>()),
                       str(h["who"]), h["confirmed_within_s"].is_null() ? "" : " (commit confirmed)",
                       h["automatic_rollback"].get<bool>() ? " (automatic rollback)" : "",
                       str(h["comment"]).empty() ? "" : ": " + str(h["comment"]));
}

void render_message(const json& j, std::ostream& out) {
  out << str(j["message"]) << "\n";
}

void flow_filter_options(po::options_description& o) {
  o.add_options()("identity", po::value<std::string>(), "only flows opened by this identity (name or id)")(
      "address", po::value<std::string>(), "only flows with this address at either end")(
      "port", po::value<std::string>(), "only flows with this port at either end");
}

std::vector<Verb> verbs() {
  std::vector<Verb> v;
  auto none = [](po::options_description&) {};
  v.push_back({{"show", "status"}, "[--json]", "version, uptime, policy revision and digest, key epoch, manager, clock steps",
               "What ztgate runs: its version and uptime, the policy revision and digest in force, the key epoch,\n"
               "and the manager connection.",
               false, none, {}, render_status});
  v.push_back({{"show", "interfaces"}, "[--json]", "both ports: packets and bytes each way, NIC drops",
               "Per port: packets and bytes received and sent (summed over workers) and the NIC's counters.",
               false, none, {}, render_interfaces});
  v.push_back({{"show", "runtime"}, "[--json]", "per worker: packets, cycles per packet, cycles per pipeline stage",
               "Per worker: packets, drops, new flows, busy cycles per packet and, while stage timing is on\n"
               "(`ztctl set runtime timing on`), cycles per packet for each pipeline stage.",
               false, none, {}, render_runtime});
  v.push_back({{"show", "drops"}, "[--all] [--json]", "dropped packets by reason, by worker, by rule",
               "Dropped packets by reason (with what each reason means), by worker, and by the rule that decided\n"
               "them. Reasons and rules that dropped nothing are left out unless --all.",
               false, [](po::options_description& o) { o.add_options()("all", po::bool_switch(), "also list reasons and rules at zero"); },
               {}, render_drops});
  v.push_back({{"show", "flows"}, "[--identity ID] [--address IP] [--port N] [--limit N] [--json]",
               "established flows, filtered, at most --limit",
               "The flows in the workers' flow tables, oriented from the side that opened them. Filters combine\n"
               "(all must match). At most --limit flows are shown; the output says when more match.",
               false, [](po::options_description& o) {
                 flow_filter_options(o);
                 o.add_options()("limit", po::value<std::string>()->default_value("100"), "show at most N flows (1-100000)");
               }, {}, render_flows});
  v.push_back({{"show", "identities"}, "[--json]", "identities of the policy in force; packets by identity class",
               "The identities the policy in force declares (id, name, labels), and packets and drops by identity\n"
               "class (verified, unverified, segment, unauthenticated, invalid).",
               false, none, {}, render_identities});
  v.push_back({{"show", "policy"}, "[--json]", "rules in force with their hit counts",
               "Every rule of the policy in force with flows admitted/denied and packets forwarded/dropped, the\n"
               "default deny, and the segments with their mode (enforce or audit).",
               false, none, {}, render_policy});
  v.push_back({{"show", "keys"}, "[--json]", "key epochs held and their validity (never the keys)",
               "The key epochs ztgate holds (previous, current, next), when each starts and ends, and until when\n"
               "its tags are accepted. Key material is never shown.",
               false, none, {}, render_keys});
  v.push_back({{"show", "control-plane"}, "[--json]", "policy source, manager session, ACK/NACK history",
               "Where the policy comes from; with a manager: the session, pushes, ACKs and NACKs, the last reply\n"
               "and the last NACK with its code and offending resource; local policy loads and re-keys.",
               false, none, {}, render_control_plane});
  v.push_back({{"test", "policy"}, "--from SRC --to IP [--proto P] [--port N] [--method M --path P] [--json]",
               "what the live policy decides for a flow, and which rule",
               "Asks the policy in force (the same lookup the workers run) what it decides for a new flow from\n"
               "SRC (identity name or id, or a source address for an untagged sender) to IP, and names the rule.",
               false, [](po::options_description& o) {
                 o.add_options()("from", po::value<std::string>()->required(), "source identity (name or id) or address")(
                     "to", po::value<std::string>()->required(), "destination address")(
                     "proto", po::value<std::string>()->default_value("tcp"), "tcp, udp, icmp, icmpv6 or a number")(
                     "port", po::value<std::string>()->default_value("0"), "destination port")(
                     "method", po::value<std::string>(), "HTTP method, to check a rule's L7 part")(
                     "path", po::value<std::string>(), "HTTP path, to check a rule's L7 part");
               }, {}, render_test});
  v.push_back({{"clear", "counters"}, "", "zero every worker's counters (audit-logged)",
               "Zeroes every counter of every worker (drops, rules, ports, stages). Audit-logged.", true, none, {},
               render_done});
  v.push_back({{"clear", "flows"}, "[--identity ID] [--address IP] [--port N]",
               "remove flows (all, or those matching the filter; audit-logged)",
               "Removes the matching flows from every worker's flow table (all flows without a filter); their next\n"
               "packets are decided by the policy again, as new flows. Audit-logged.",
               true, flow_filter_options, {}, render_done});
  v.push_back({{"set", "runtime", "timing"}, "on|off", "count cycles per pipeline stage (show runtime)",
               "Switches per-stage cycle counting on every worker on or off (it costs a few cycles per burst).\n"
               "Audit-logged.",
               true, [](po::options_description& o) { o.add_options()("value", po::value<std::string>()->required(), "on or off"); },
               {"value"}, render_done});
  v.push_back({{"trace"}, "N [--wait MS] [--json]", "the next N packets' path through the pipeline",
               "Traces the next N packets on every worker (waiting at most --wait ms for them), then prints each\n"
               "one's path through the stages with the decision: rule, verdict, drop reason. Audit-logged.",
               true, [](po::options_description& o) {
                 o.add_options()("packets", po::value<std::string>()->required(), "how many packets (1-10000)")(
                     "wait", po::value<std::string>()->default_value("2000"), "wait at most MS ms for them (0-10000)");
               }, {"packets"}, render_trace});
  v.push_back({{"show", "volumetric"}, "[--top N] [--json]", "limits, top talkers, blocklist with expiry",
               "The volumetric limits in force, the sources sending the most untagged or invalid-tag packets\n"
               "(by prefix, summed over workers) and the dynamic blocklist with each entry's time left: a\n"
               "heavy_hitter entry drops everything its prefix sends, a tag_failures entry only what is not\n"
               "part of an established flow (the prefix opens no new flow).",
               false, [](po::options_description& o) {
                 o.add_options()("top", po::value<std::string>()->default_value("16"), "top talkers to list (1-1000)");
               }, {}, render_volumetric});
  v.push_back({{"clear", "blocklist"}, "[PREFIX]", "remove blocklist entries (all, or those overlapping PREFIX)",
               "Removes dynamic blocklist entries overlapping PREFIX (inside it or holding it), or all. Audit-logged.",
               true, [](po::options_description& o) { o.add_options()("prefix", po::value<std::string>(), "e.g. 10.1.0.0/24"); },
               {"prefix"}, [](const json& j, std::ostream& out) {
                 out << fmt::format("{} blocklist entr{} removed ({})\n", j["removed"].get<std::uint64_t>(),
                                    j["removed"].get<std::uint64_t>() == 1 ? "y" : "ies", str(j["prefix"]));
               }});
  v.push_back({{"capture", "start"}, "FILE [--drops-only] [--count N] [--snaplen B]",
               "copy packets with their verdict into a pcapng file (tcpdump -r, wireshark)",
               "Every worker copies the packets it decides (only the dropped ones with --drops-only; at most\n"
               "--count, at most --snaplen bytes each) into FILE, written by ztgate (a path on ztgate's machine;\n"
               "a relative path is made absolute here). Each packet carries its port and, as a comment, the\n"
               "verdict and drop reason. Copies the workers cannot queue are counted as lost, never waited for.\n"
               "Audit-logged.",
               true, [](po::options_description& o) {
                 o.add_options()("file", po::value<std::string>()->required(), "the pcapng file")(
                     "drops-only", po::bool_switch(), "only packets the pipeline dropped")(
                     "count", po::value<std::string>()->default_value("0"), "stop after N packets (0: at capture stop)")(
                     "snaplen", po::value<std::string>()->default_value("0"), "bytes kept per packet, 64-2048 (0: 2048)");
               }, {"file"}, render_capture});
  v.push_back({{"capture", "stop"}, "", "stop the capture and close its file",
               "Stops the running capture, writes what is queued and closes the file. Audit-logged.", true, none, {},
               render_capture});
  v.push_back({{"show", "capture"}, "[--json]", "the running (or last) capture: file, packets written, lost",
               "The capture in progress, or the last one: file, mode, packets written and lost.", false, none, {},
               render_capture});
  v.push_back({{"set"}, "KEY VALUE", "stage a live tunable in the candidate (then `ztctl commit`)",
               "Stages KEY VALUE in the shared candidate configuration; `ztctl commit` applies the whole candidate.\n"
               "Keys: segment.<name>.mode enforce|audit, flow.timeout.{tcp_established,tcp_transitory,udp,icmp},\n"
               "log.level error|warning|notice|info|debug, flowlog.rate N, volumetric.<key> N (v4_prefix, source_pps,\n"
               "block_pps, mac_fail_pps, block_ms, new_flows, ...). Audit-logged.",
               true, [](po::options_description& o) {
                 o.add_options()("key", po::value<std::string>()->required(), "the tunable")(
                     "value", po::value<std::string>()->required(), "its new value");
               }, {"key", "value"}, render_candidate});
  v.push_back({{"delete"}, "KEY", "revert a tunable to its default in the candidate",
               "Reverts KEY to its default in the candidate (segment and volumetric keys: drops the override).",
               true, [](po::options_description& o) { o.add_options()("key", po::value<std::string>()->required(), "the tunable"); },
               {"key"}, render_candidate});
  v.push_back({{"show", "candidate"}, "[--json]", "the candidate's changes against running (a diff)",
               "The staged changes as a diff against the running configuration (- running, + candidate).",
               false, none, {}, render_candidate});
  v.push_back({{"show", "configuration"}, "[--json]", "running tunables and the commit history",
               "The running live tunables, a pending commit confirmed, and the last commits (for rollback N).",
               false, none, {}, render_configuration});
  v.push_back({{"commit"}, "[--comment TEXT]", "apply the candidate as one unit (confirms a pending commit confirmed)",
               "Validates and applies the whole candidate; on any error nothing changes. A plain commit also\n"
               "confirms a pending `commit confirmed`. Audit-logged.",
               true, [](po::options_description& o) { o.add_options()("comment", po::value<std::string>(), "kept in the history"); },
               {}, render_message});
  v.push_back({{"commit", "confirmed"}, "N [--comment TEXT]", "apply the candidate; roll back after N unless confirmed",
               "Applies the candidate like commit, then rolls back by itself after N (minutes; or 30s, 10m, 1h)\n"
               "unless `ztctl confirm` or a plain `ztctl commit` comes first. Audit-logged.",
               true, [](po::options_description& o) {
                 o.add_options()("confirmed", po::value<std::string>()->required(), "N minutes, or 30s, 10m, 1h")(
                     "comment", po::value<std::string>(), "kept in the history");
               }, {"confirmed"}, render_message, "commit"});
  v.push_back({{"commit", "check"}, "", "validate the candidate without applying it",
               "Validates every key of the candidate again; applies nothing.", false, none, {}, render_message});
  v.push_back({{"confirm"}, "", "keep a pending commit confirmed",
               "Confirms a pending `commit confirmed`: it stays. Audit-logged.", true, none, {}, render_message});
  v.push_back({{"rollback"}, "N", "load the N-th previous configuration into the candidate",
               "Loads the configuration of the N-th previous commit into the candidate (0: running); `ztctl commit`\n"
               "then applies it. Audit-logged.",
               true, [](po::options_description& o) { o.add_options()("n", po::value<std::string>()->required(), "0-20"); },
               {"n"}, render_candidate});
  return v;
}

int run_verb(const Verb& verb, const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  const std::string name = joined(verb.words);
  po::options_description opts("options");
  std::string socket;
  const char* env = std::getenv("ZTCTL_SOCKET");
  opts.add_options()("help,h", "this text")(
      "socket", po::value(&socket)->default_value(env && *env ? env : admin::kDefaultSocket),
      "ztgate's admin socket (ztgate --admin-socket; env ZTCTL_SOCKET); show/test fall back to PATH.ro")(
      "timeout", po::value<unsigned>()->default_value(10000), "give up after MS milliseconds");
  if (verb.words[0] == "show" || verb.words[0] == "test" || verb.words[0] == "trace" || verb.words[0] == "set" ||
      verb.words[0] == "delete" || verb.words[0] == "commit" || verb.words[0] == "rollback")
    opts.add_options()("json", "print ztgate's answer as JSON");
  verb.options(opts);
  po::positional_options_description pos;
  for (auto& p : verb.positional) pos.add(p.c_str(), 1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(opts).positional(pos).run(), vm);
    if (vm.count("help")) {
      out << "usage: ztctl " << name << " " << verb.synopsis << "\n\n" << verb.help << "\n\n" << opts;
      return kExitOk;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    err << "ztctl " << name << ": " << e.what() << "; see `ztctl " << name << " --help`\n";
    return kExitUsage;
  }
  if (name == "capture start" && vm.count("file")) {  // ztgate writes it: make the operator's path absolute
    std::error_code ec;
    const auto abs = std::filesystem::absolute(vm["file"].as<std::string>(), ec);
    if (!ec) vm.at("file").value() = abs.string();
  }
  admin::Request req;
  req.set_version(admin::kProtocolVersion);
  req.set_command(verb.command.empty() ? name : verb.command);
  for (auto& [k, v] : vm) {
    if (k == "help" || k == "socket" || k == "timeout" || k == "json") continue;
    if (v.value().type() == typeid(std::string))
      (*req.mutable_args())[k] = v.as<std::string>();
    else if (v.value().type() == typeid(bool) && v.as<bool>())
      (*req.mutable_args())[k] = "1";  // a switch
  }
  const std::chrono::milliseconds timeout(vm["timeout"].as<unsigned>());
  auto resp = admin::call(socket, req, timeout);
  std::string used = socket;
  if (!resp && resp.error().connect_errno == EACCES && !verb.mutating) {
    // Not in the admin group: the read-only socket answers show and test commands.
    used = admin::read_only_path(socket);
    resp = admin::call(used, req, timeout);
  }
  if (!resp) {
    const auto& e = resp.error();
    if (e.connect_errno == ENOENT || e.connect_errno == ECONNREFUSED) {
      err << fmt::format("ztctl: cannot reach ztgate at {}: {}; is ztgate running, and is this its --admin-socket "
                         "(ztctl --socket PATH)?\n", used, e.message);
      return kExitUnavailable;
    }
    if (e.connect_errno == EACCES) {
      if (verb.mutating)
        err << fmt::format("ztctl: permission denied on {}: '{}' changes state and needs the admin socket, open to root "
                           "and to the group given by ztgate --admin-group\n", used, name);
      else
        err << fmt::format("ztctl: permission denied on {} and {}: '{}' needs membership of ztgate's --admin-group or "
                           "--admin-ro-group (or root)\n", socket, used, name);
      return kExitRefused;
    }
    err << fmt::format("ztctl: {}: {}\n", used, e.message);
    return kExitUnavailable;
  }
  switch (resp->status()) {
    case admin::Response::OK: break;
    case admin::Response::REFUSED:
      err << "ztctl: refused: " << resp->message() << "\n";
      return kExitRefused;
    case admin::Response::BAD_VERSION:
    case admin::Response::UNKNOWN:
      err << "ztctl: " << resp->message() << "\n";
      return kExitUsage;
    case admin::Response::BUSY:
      err << "ztctl: " << resp->message() << "\n";
      return kExitUnavailable;
    default:
      err << "ztctl " << name << ": " << resp->message() << "\n";
      return kExitFailure;
  }
  json j = json::parse(resp->json(), nullptr, false);
  if (j.is_discarded()) {
    err << "ztctl: ztgate's answer is not JSON\n";
    return kExitFailure;
  }
  if (vm.count("json"))
    out << j.dump(2) << "\n";
  else
    verb.render(j, out);
  return kExitOk;
}

}  // namespace

void register_live_commands(Registry& registry) {
  for (auto& v : verbs()) {
    Command c;
    c.words = v.words;
    c.synopsis = v.synopsis;
    c.summary = v.summary;
    c.run = [v](const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
      return run_verb(v, args, out, err);
    };
    registry.add(std::move(c));
  }
}

}  // namespace zt::ctl
