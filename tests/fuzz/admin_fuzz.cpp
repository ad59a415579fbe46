// libFuzzer target for the admin protocol: the real admin socket server
// (appliance/src/admin/server.cpp: framing, size limit, Request parse, version check) on its two
// UNIX sockets in a temporary directory, in front of the real `Service`
// (appliance/src/admin/service.cpp: every verb and its argument parsing) over a real
// `dp::Runtime` (EAL without hugepages, two net_null ports, one worker lcore forwarding),
// appliance/policy compiled by `PolicySource` with local keys, and a `CandidateStore` whose apply
// step does what ztgate_main.cpp's does. The handler records the request it got and from which
// socket, then calls the Service.
//
// Input: byte 0 bit 0 picks the socket (0 admin, 1 read-only); bits 1-3 pick the mode:
//   0      raw: the rest is sent as it is (framing, size limit, parse and version checks);
//   1-7    structured: a Request of kProtocolVersion built from the rest (format at
//          `build_request`), framed and sent; a verb from the Service's list with arguments
//          biased to that verb's argument names and to values its parser cares about.
// Checked for every input:
//   - server: the handler sees a request exactly when the bytes hold a whole frame that parses
//     as a Request of the server's version, and that very request, from the socket the client
//     used; a whole frame (or an oversized length) gets exactly one well-formed Response of
//     kProtocolVersion; ERROR/BAD_VERSION with a message when it was not handled; a partial
//     frame gets none;
//   - service: an unknown verb gets UNKNOWN; a mutating verb on the read-only socket gets
//     REFUSED and changes nothing (candidate, running configuration, history); otherwise OK with
//     a JSON object, or ERROR; every refusal has a non-empty, printable message (valid UTF-8,
//     no control characters: it ends up on a terminal and in the audit line on stderr);
//   - audit: a mutating verb adds exactly one audit record (refused / ok / error as answered),
//     anything else none;
//   - the Service and the Runtime stay usable: every 64 inputs `show status`, `show flows` (a
//     round trip through the worker's mailbox) and `show drops` answer OK.
// A run's state stays bounded: `trace` waits at most 50 ms for at most 64 packets, a capture
// writes only into the temporary directory and is stopped every few inputs, `commit confirmed`
// never blocks (the store's clock is the harness's: one second per input, its timer is the
// harness calling tick()).
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_log.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <google/protobuf/util/message_differencer.h>
#include <nlohmann/json.hpp>

#include "admin/server.hpp"
#include "admin/service.hpp"
#include "admin/wire.hpp"
#include "config/candidate.hpp"
#include "config/volumetric_tunables.hpp"
#include "policy_source.hpp"
#include "zt/rules/policy.hpp"
#include "zt/rules/snapshot.hpp"

namespace {

using namespace zt::admin;
namespace cfg = zt::appliance::config;

void require(bool ok) {
  if (!ok) __builtin_trap();
}

// The Service's verbs (service.cpp's constructor) and the argument names each one reads. Checked
// against the Service at start: a verb it does not know stops the target.
struct Verb {
  const char* name;
  std::vector<const char*> args;
};
const std::vector<Verb> kVerbs = {
    {"show status", {}},
    {"show interfaces", {}},
    {"show runtime", {}},
    {"show drops", {"all"}},
    {"show flows", {"identity", "address", "port", "limit"}},
    {"show identities", {}},
    {"show policy", {}},
    {"show keys", {}},
    {"show control-plane", {}},
    {"test policy", {"from", "to", "proto", "port", "method", "path"}},
    {"clear counters", {}},
    {"clear flows", {"identity", "address", "port"}},
    {"set runtime timing", {"value"}},
    {"trace", {"packets", "wait"}},
    {"show volumetric", {"top"}},
    {"clear blocklist", {"prefix"}},
    {"capture start", {"file", "drops-only", "count", "snaplen"}},
    {"capture stop", {}},
    {"show capture", {}},
    {"set", {"key", "value"}},
    {"delete", {"key"}},
    {"show candidate", {}},
    {"show configuration", {}},
    {"commit", {"comment", "confirmed"}},
    {"commit check", {}},
    {"confirm", {}},
    {"rollback", {"n"}},
};

// Values the parsers branch on, per argument name (the policy is appliance/policy).
const std::map<std::string, std::vector<const char*>> kValues = {
    {"all", {"1", "0"}},
    {"identity", {"1001", "web-a", "db-b", "2", "nobody", "4294967296"}},
    {"address", {"10.10.0.2", "fd00:10::2", "10.10.0.1", "::", "256.1.1.1"}},
    {"port", {"80", "443", "0", "65535", "65536", "-1"}},
    {"limit", {"1", "100", "100000", "0", "100001"}},
    {"from", {"web-a", "client-a", "10.10.0.1", "fd00:10::1", "ops-a", "1004"}},
    {"to", {"10.10.0.2", "10.10.0.3", "fd00:10::2", "10.10.0.9", "10.10.0.2/32"}},
    {"proto", {"tcp", "udp", "icmp", "icmpv6", "6", "17", "300"}},
    {"method", {"GET", "POST", "HEAD", ""}},
    {"path", {"/", "/api/v1", "/../etc/passwd", ""}},
    {"value", {"on", "off", "1s", "90s", "10m", "2h", "enforce", "audit", "debug", "error", "0", "1000000",
               "4294967295"}},
    {"packets", {"1", "10", "10000", "10001", "0"}},
    {"wait", {"0", "50", "10001"}},
    {"top", {"1", "16", "1000", "1001"}},
    {"prefix", {"10.10.0.0/24", "fd00::/8", "0.0.0.0/0", "10.10.0.1/33", "10.10.0.1"}},
    {"file", {"/capture.pcapng", "relative.pcapng", ""}},
    {"drops-only", {"1", "0"}},
    {"count", {"0", "10", "1000000000", "1000000001"}},
    {"snaplen", {"0", "63", "64", "2048", "2049"}},
    {"key",
     {"flow.timeout.tcp_established", "flow.timeout.tcp_transitory", "flow.timeout.udp", "flow.timeout.icmp",
      "log.level", "flowlog.rate", "segment.zone-b.mode", "segment.zone-b-rollout.mode", "segment.nosuch.mode",
      "volumetric.source_pps", "volumetric.v4_prefix", "volumetric.window_ms", "volumetric.unverified_share",
      "volumetric.table_watermark", "volumetric.new_flows", "volumetric.block_ms", "volumetric.nosuch"}},
    {"comment", {"change", ""}},
    {"confirmed", {"1s", "1", "10m", "0", "8d"}},
    {"n", {"0", "1", "2", "20", "21", "1001"}},
};

std::vector<const char*> all_arg_names() {
  std::vector<const char*> v;
  for (auto& [k, _] : kValues) v.push_back(k.c_str());
  return v;
}

// Valid UTF-8 (proto3 strings must be; the server refuses a Request that is not).
bool valid_utf8(const std::string& s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    std::uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (std::size_t k = 1; k < n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d >> 6) != 2) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n;
  }
  return true;
}

// What a person can read on a terminal or in a log line: valid UTF-8, no control characters
// (C0, DEL, and C1: U+0080-U+009F, 0xC2 0x80-0x9F in UTF-8).
bool printable(const std::string& s) {
  if (!valid_utf8(s)) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7F) return false;
    if (c == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) <= 0x9F) return false;
  }
  return true;
}

// Bytes as a valid UTF-8 string (each byte of an invalid sequence becomes '?').
std::string utf8(const std::uint8_t* p, std::size_t n) {
  std::string s(reinterpret_cast<const char*>(p), n);
  if (valid_utf8(s)) return s;
  std::string out;
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t len = 0;  // the longest valid sequence starting at i (at most 4 bytes)
    for (std::size_t k = 1; k <= 4 && i + k <= s.size(); ++k)
      if (valid_utf8(s.substr(i, k))) len = k;
    if (len == 0) {
      out += '?';
      ++i;
    } else {
      out += s.substr(i, len);
      i += len;
    }
  }
  return out;
}

// Structured input (after byte 0):
//   byte: verb = kVerbs[b % n]; b >= 0xF8: the command is the next string (up to '\0'), the
//         verb it names if any (admin_seeds.cpp spells its seeds out this way);
//   then records until the end: a key byte, then a value up to '\0' (or the end):
//     key < 0xC0: the verb's argument names[key % n] (all names if it has none);
//     key < 0xF0: all argument names[key % n];  else: the value is "KEY=VALUE" (fuzzed key);
//     a value starting 0x01 X is kValues[name][X % n] followed by the rest.
Request build_request(const std::uint8_t* p, std::size_t n) {
  Request req;
  req.set_version(kProtocolVersion);
  static const auto kAll = all_arg_names();
  std::size_t i = 0;
  auto next_string = [&] {
    std::size_t j = i;
    while (j < n && p[j] != 0) ++j;
    std::string s = utf8(p + i, j - i);
    i = j < n ? j + 1 : j;
    return s;
  };
  const Verb* verb = nullptr;
  if (i < n) {
    const std::uint8_t b = p[i++];
    if (b >= 0xF8) {
      req.set_command(next_string());
      for (auto& v : kVerbs)  // a verb spelled out still biases the keys to its arguments
        if (req.command() == v.name) verb = &v;
    } else {
      verb = &kVerbs[b % kVerbs.size()];
      req.set_command(verb->name);
    }
  } else {
    req.set_command("show status");
  }
  auto& args = *req.mutable_args();
  while (i < n) {
    const std::uint8_t k = p[i++];
    std::string key, value;
    if (k < 0xF0) {
      const auto& names = k < 0xC0 && verb != nullptr && !verb->args.empty() ? verb->args : kAll;
      key = names[k % names.size()];
      if (i + 1 < n && p[i] == 0x01) {
        const auto it = kValues.find(key);
        const std::uint8_t x = p[i + 1];
        i += 2;
        value = it == kValues.end() ? std::string() : it->second[x % it->second.size()];
        value += next_string();
      } else {
        value = next_string();
      }
    } else {
      const std::string kv = next_string();
      const auto eq = kv.find('=');
      key = kv.substr(0, eq);
      value = eq == std::string::npos ? std::string() : kv.substr(eq + 1);
    }
    args[key] = value;
  }
  return req;
}

// ---- the appliance -----------------------------------------------------------------------------
struct World {
  std::string dir;
  std::unique_ptr<zt::dp::Runtime> runtime;
  std::optional<zt::appliance::PolicySource> source;
  EventLog events;
  AuditLog audit;
  std::string audit_path;
  std::atomic<std::int64_t> clock_s{0};  // the candidate store's steady clock, seconds
  std::unique_ptr<cfg::CandidateStore> candidate;
  std::unique_ptr<Service> service;
  std::unique_ptr<Server> server;
  cfg::Tunables applied;
  zt::dp::VolumetricConfig base_volumetric;
  std::map<std::string, std::optional<zt::rules::SegmentMode>> policy_modes;
  // What reached the handler.
  std::mutex mu;
  std::optional<Request> seen;
  bool seen_ro = false;
  std::uint64_t runs = 0;
};
World* g;

// What ztgate_main.cpp's CandidateStore apply step does (it is a lambda in main(), so copied
// here), without the flow-log writer this target has none of.
std::expected<void, std::string> apply(const cfg::Tunables& next) {
  auto& runtime = *g->runtime;
  if (auto t = flow_timeouts_from(next, rte_get_tsc_hz()); !t) return std::unexpected(t.error());
  static const std::map<std::string, std::uint32_t> kLevels = {
      {"error", RTE_LOG_ERR}, {"warning", RTE_LOG_WARNING}, {"notice", RTE_LOG_NOTICE},
      {"info", RTE_LOG_INFO}, {"debug", RTE_LOG_DEBUG}};
  const auto level = kLevels.find(next.log_level);
  if (level == kLevels.end()) return std::unexpected("log.level '" + next.log_level + "': unknown");
  auto volumetric = cfg::volumetric_from(next, g->base_volumetric);
  if (!volumetric) return std::unexpected(volumetric.error());
  std::shared_ptr<const zt::dp::Snapshot> republish;
  if (next.segment_mode != g->applied.segment_mode) {
    const auto snap = runtime.snapshot();
    if (!snap || !snap->policy) return std::unexpected("segment.*.mode: no policy is loaded");
    zt::rules::Policy pol = snap->policy->source();
    for (auto& s : pol.segments) {
      if (!g->policy_modes.contains(s.name)) g->policy_modes[s.name] = s.mode;
      auto o = next.segment_mode.find(s.name);
      s.mode = o == next.segment_mode.end() ? g->policy_modes[s.name]
               : o->second == cfg::SegmentMode::audit ? zt::rules::SegmentMode::audit
                                                       : zt::rules::SegmentMode::enforce;
    }
    auto compiled = zt::rules::compile(pol, {.revision = snap->policy->revision()});
    if (!compiled) return std::unexpected("segment.*.mode: the policy does not compile with it");
    auto s2 = std::make_shared<zt::dp::Snapshot>(*snap);
    s2->policy = *compiled;
    republish = std::move(s2);
  }
  if (auto r = apply_flow_timeouts(runtime.control(), g->applied, next, rte_get_tsc_hz()); !r)
    return std::unexpected(r.error());
  if (auto r = runtime.control().set_volumetric(*volumetric); !r) return std::unexpected(r.error());
  if (republish) runtime.publish(republish);
  // DPDK's own log at debug would bury the fuzzer's output; the level is checked, not applied.
  g->applied = next;
  return {};
}

// What the handler passes on to the Service: the request as it came, except what would leave
// the run's bounds (files outside the temporary directory, long waits).
Request bounded(const Request& in) {
  Request r = in;
  auto& a = *r.mutable_args();
  auto cap = [&](const char* name, unsigned max, const char* dflt) {
    auto it = a.find(name);
    if (it == a.end()) {
      if (dflt != nullptr) a[name] = dflt;
      return;
    }
    unsigned long v = 0;
    const auto& s = it->second;
    if (!s.empty() && s.size() < 10 && s.find_first_not_of("0123456789") == std::string::npos) {
      v = std::stoul(s);
      if (v > max) it->second = std::to_string(max);
    }
  };
  if (r.command() == "trace") {
    cap("packets", 64, nullptr);
    cap("wait", 50, "50");
  }
  if (r.command() == "capture start") {
    auto it = a.find("file");
    if (it != a.end() && !it->second.empty() && it->second.front() == '/') it->second = g->dir + "/capture.pcapng";
  }
  return r;
}

int connect_to(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  require(fd >= 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  require(path.size() < sizeof(a.sun_path));
  std::memcpy(a.sun_path, path.c_str(), path.size());
  int r;
  do r = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  while (r < 0 && errno == EINTR);
  require(r == 0);
  return fd;
}

// Everything the server sends until it closes. libFuzzer's SIGALRM (its -timeout watchdog)
// interrupts system calls: EINTR is retried, it is not an answer. The server's own timeout is
// 10 s and libFuzzer reports a unit slower than -timeout (10 s) as a hang.
std::string read_all(int fd) {
  std::string got;
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, 1000);
    if (r < 0 && errno == EINTR) continue;
    require(r >= 0);
    if (r == 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return got;
    got.append(buf, static_cast<std::size_t>(n));
  }
}

std::string exchange(bool ro, const std::string& bytes) {
  const int fd = connect_to(ro ? g->server->ro_path() : g->server->path());
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the server may answer and close early (oversized length)
    sent += static_cast<std::size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  std::string answer = read_all(fd);
  ::close(fd);
  return answer;
}

// Audit records appended since `offset` (one JSON object a line).
std::vector<nlohmann::json> audit_since(std::uintmax_t& offset) {
  std::ifstream f(g->audit_path, std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  std::vector<nlohmann::json> out;
  std::string line;
  while (std::getline(f, line)) {
    offset += line.size() + 1;
    auto j = nlohmann::json::parse(line, nullptr, false);
    require(!j.is_discarded());
    out.push_back(std::move(j));
  }
  return out;
}

const Verb* find_verb(const std::string& command) {
  for (auto& v : kVerbs)
    if (command == v.name) return &v;
  return nullptr;
}

void require_ok(const Response& r) {
  require(r.status() == Response::OK);
  auto j = nlohmann::json::parse(r.json(), nullptr, false);
  require(!j.is_discarded() && j.is_object());
}

Response direct(const char* command, bool ro) {
  Request req;
  req.set_version(kProtocolVersion);
  req.set_command(command);
  Peer p;
  p.user = "fuzz";
  p.read_only = ro;
  return g->service->handle(req, p);
}

// The Service and the Runtime still answer: status, a mailbox round trip, counters.
void check_still_serving() {
  const auto s = direct("show status", true);
  require_ok(s);
  const auto j = nlohmann::json::parse(s.json());
  require(j["workers"] == 1 && j["policy"]["revision"] == 1);
  require_ok(direct("show flows", true));
  require_ok(direct("show drops", true));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  g = new World();
  char tmpl[] = "/tmp/ztfuzz-admin-XXXXXX";
  require(::mkdtemp(tmpl) != nullptr);
  g->dir = tmpl;
  std::atexit([] {  // sockets, audit log, capture, key file
    std::error_code ec;
    std::filesystem::remove_all(g->dir, ec);
  });
  const std::filesystem::path root = std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();

  // The worker lcore polls net_null without pause: it and the main lcore share one CPU (the last
  // this process may use) and it runs at a lower priority (nice 10, inherited from this thread
  // while EAL creates it), so the fuzzer, the server thread and a second fuzz process in CI keep
  // their share. The fuzzer's own thread then gets back every CPU and its priority.
  cpu_set_t all;
  require(sched_getaffinity(0, sizeof(all), &all) == 0);
  int last = 0;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &all)) last = c;
  const int old_nice = getpriority(PRIO_PROCESS, 0);
  require(setpriority(PRIO_PROCESS, 0, 10) == 0);
  zt::dp::RuntimeConfig rc;
  rc.ports = {"net_null0", "net_null1"};
  rc.workers = 1;
  rc.lcores = "0@" + std::to_string(last) + ",1@" + std::to_string(last);
  rc.hugepages = zt::dp::Hugepages::off;
  rc.memory_mb = 256;
  rc.mbufs = 4095;
  rc.rx_desc = 512;
  rc.tx_desc = 512;
  rc.flows = 1024;
  rc.replay_pps = 1e5;
  rc.eal_log_level = "error";
  rc.extra_eal_args = {"--no-telemetry"};
  auto rt = zt::dp::Runtime::create(rc);
  if (!rt) fprintf(stderr, "admin_fuzz: %s\n", rt.error().c_str());
  require(rt.has_value());
  g->runtime = std::move(*rt);
  require(g->runtime->start().has_value());
  require(setpriority(PRIO_PROCESS, 0, old_nice) == 0);
  require(sched_setaffinity(0, sizeof(all), &all) == 0);
  rte_log_set_global_level(RTE_LOG_ERR);

  // appliance/policy with local keys, as `ztgate --policy DIR --key-master FILE` loads it.
  const std::string master = g->dir + "/master.hex";
  std::ofstream(master) << std::string(64, '4') << "\n";
  zt::appliance::KeySettings keys;
  keys.master_file = master;
  auto src = zt::appliance::PolicySource::create(root / "appliance" / "policy", keys);
  if (!src) fprintf(stderr, "admin_fuzz: %s\n", src.error().c_str());
  require(src.has_value());
  g->source.emplace(std::move(*src));
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  auto snap = g->source->load(static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec);
  if (!snap) fprintf(stderr, "admin_fuzz: %s\n", snap.error().c_str());
  require(snap.has_value());
  g->runtime->publish(*snap);
  g->events.add("policy loaded", true, "revision 1 from appliance/policy");

  g->audit_path = g->dir + "/audit.jsonl";
  require(g->audit.open(g->audit_path).has_value());
  ServiceInfo info;
  info.version = "fuzz";
  info.policy_source = "directory " + (root / "appliance" / "policy").string();
  info.key_domain = keys.domain;
  info.admin_socket = g->dir + "/admin.sock";
  g->service = std::make_unique<Service>(*g->runtime, nullptr, info, g->events, g->audit);

  g->applied.log_level = "error";
  g->base_volumetric = g->runtime->control().volumetric();
  cfg::CandidateStore::Options co;
  co.initial = g->applied;
  co.volumetric = cfg::volumetric_validator(g->base_volumetric);
  co.segment = [](std::string_view name) -> std::expected<void, std::string> {
    const auto s = g->runtime->snapshot();
    if (s && s->policy)
      for (auto& seg : s->policy->source().segments)
        if (seg.name == name) return {};
    return std::unexpected("segment '" + std::string(name) + "' is not in the policy in force");
  };
  co.apply = [](const cfg::Tunables& next) { return apply(next); };
  co.clock = [] { return std::chrono::steady_clock::time_point(std::chrono::seconds(g->clock_s.load())); };
  co.on_auto_rollback = [](const cfg::CommitRecord&, const std::string& error) {
    Peer system;
    system.user = "system";
    Request req;
    req.set_command("commit (automatic rollback: not confirmed in time)");
    g->audit.record(system, req, error.empty() ? "ok" : "error", error);
  };
  g->candidate = std::make_unique<cfg::CandidateStore>(std::move(co));
  g->service->set_candidate(g->candidate.get());

  // Every verb of the list is one the Service knows (asked on the read-only socket: nothing
  // changes, a mutating verb is refused).
  for (auto& v : kVerbs) {
    Request req;
    req.set_version(kProtocolVersion);
    req.set_command(v.name);
    Peer p;
    p.read_only = true;
    const auto r = g->service->handle(bounded(req), p);
    if (r.status() == Response::UNKNOWN) fprintf(stderr, "admin_fuzz: the Service has no verb '%s'\n", v.name);
    require(r.status() != Response::UNKNOWN);
  }
  check_still_serving();

  ServerSettings s;
  s.socket = g->dir + "/admin.sock";
  s.timeout = std::chrono::milliseconds(10000);  // generous: a loaded CI machine must not fail it
  auto srv = Server::open(s, [](const Request& req, const Peer& peer) {
    {
      std::lock_guard lock(g->mu);
      g->seen = req;
      g->seen_ro = peer.read_only;
    }
    return g->service->handle(bounded(req), peer);
  });
  require(srv.has_value());
  g->server = std::move(*srv);
  g->server->start();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const bool ro = (data[0] & 1) != 0;
  const bool raw = ((data[0] >> 1) & 7) == 0;
  const std::string bytes = raw ? std::string(reinterpret_cast<const char*>(data) + 1, size - 1)
                                : frame(build_request(data + 1, size - 1).SerializeAsString());
  {
    std::lock_guard lock(g->mu);
    g->seen.reset();
  }
  static std::uintmax_t audit_offset = 0;
  (void)audit_since(audit_offset);  // records of the harness's own housekeeping
  const auto running_before = g->candidate->running();
  const auto candidate_before = g->candidate->candidate();
  const auto history_before = g->candidate->history().size();

  const std::string answer = exchange(ro, bytes);

  // What the bytes are, decoded independently.
  std::optional<std::uint32_t> want;
  if (bytes.size() >= 4) want = frame_length(reinterpret_cast<const unsigned char*>(bytes.data()));
  const bool oversized = want && *want > kMaxRequestBytes;
  const bool whole = want && !oversized && bytes.size() >= 4 + std::size_t{*want};
  Request expect;
  const bool parses = whole && expect.ParseFromArray(bytes.data() + 4, static_cast<int>(*want));
  const bool handled = parses && expect.version() == kProtocolVersion;
  require(raw || handled);  // a structured request always reaches the Service

  std::optional<Request> seen;
  bool seen_ro = false;
  {
    std::lock_guard lock(g->mu);
    seen = g->seen;
    seen_ro = g->seen_ro;
  }
  require(seen.has_value() == handled);
  if (handled) {
    // Field by field: a map's serialized order is not defined.
    require(google::protobuf::util::MessageDifferencer::Equals(*seen, expect));
    require(seen_ro == ro);
  }

  if (!whole && !oversized) {
    require(answer.empty());  // a partial frame gets no answer
  } else {
    require(answer.size() >= 4);
    const std::uint32_t len = frame_length(reinterpret_cast<const unsigned char*>(answer.data()));
    require(answer.size() == 4 + std::size_t{len});  // exactly one Response
    Response r;
    require(r.ParseFromArray(answer.data() + 4, static_cast<int>(len)));
    require(r.version() == kProtocolVersion);
    if (oversized || !parses) {
      require(r.status() == Response::ERROR && !r.message().empty());
    } else if (!handled) {
      require(r.status() == Response::BAD_VERSION && !r.message().empty());
    } else {
      // The Service's answer.
      const Verb* verb = find_verb(expect.command());
      const bool mutating = Service::is_mutating(expect.command());
      if (verb == nullptr) {
        require(r.status() == Response::UNKNOWN);
      } else if (mutating && ro) {
        require(r.status() == Response::REFUSED);
      } else {
        require(r.status() == Response::OK || r.status() == Response::ERROR);
      }
      if (r.status() == Response::OK) {
        require_ok(r);
      } else {
        require(!r.message().empty() && printable(r.message()));
      }
      // Nothing on the read-only socket, and no `show`, changes the configuration.
      if (ro || !mutating || verb == nullptr) {
        require(g->candidate->running() == running_before);
        require(g->candidate->candidate() == candidate_before);
        require(g->candidate->history().size() == history_before);
      }
      // One audit record for a known mutating verb, saying what the client was told.
      const auto records = audit_since(audit_offset);
      if (verb != nullptr && mutating) {
        require(records.size() == 1);
        require(records[0]["command"] == expect.command());
        require(records[0]["socket"] == (ro ? "read-only" : "admin"));
        require(records[0]["result"] == (r.status() == Response::REFUSED ? "refused"
                                         : r.status() == Response::OK    ? "ok"
                                                                         : "error"));
      } else {
        require(records.empty());
      }
    }
  }

  // Housekeeping, as ztgate's main loop does: the store's clock moves on (a `commit confirmed`
  // not confirmed in time rolls back here), the capture is written and kept short.
  ++g->runs;
  g->clock_s.fetch_add(1);
  g->candidate->tick();
  g->runtime->capture().poll();
  if (g->runtime->capture().status().active && (g->runs % 8 == 0 || g->runtime->capture().status().written > 256))
    (void)g->runtime->capture().stop();
  if (g->runs % 64 == 0) check_still_serving();
  return 0;
}
