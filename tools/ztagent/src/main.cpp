// ztagent: the endpoint agent. Gives a host one workload identity: packets routed into its TUN
// leave as Geneve packets carrying the identity tag (DESIGN.md §2). tools/ztagent/README.md.
#include <time.h>

#include <boost/program_options.hpp>
#include <fmt/format.h>

#include <cstdio>
#include <iostream>

#include "agent.hpp"
#include "key_source.hpp"

namespace po = boost::program_options;
using namespace zt;

namespace {

constexpr const char* kUsage = R"(ztagent — endpoint agent: tags this host's traffic with its workload identity

Usage: ztagent --egress IFACE --identity ID --key-master FILE [--key-domain D] [--epoch-length S]
               [--tun NAME] [--route PREFIX ...] [options]
       ztagent --egress IFACE --manager HOST:PORT --state-dir DIR --psk-file FILE
               [--enrol-token TOKEN --manager-ca FILE] [--identity ID] [options]

Every IP packet the kernel routes into the TUN device (--tun) is wrapped in Geneve (UDP/6081)
with the identity tag option (class 0xFFF0, type 0x81, 8 words; MAC over the inner packet, FULL
coverage unless --coverage hdr) and sent to the inner destination through a UDP socket bound to
--egress (SO_BINDTODEVICE, so the outer packet never loops into the TUN). Point the routes of
the protected prefixes at the TUN: with --route the agent adds them (needs CAP_NET_ADMIN at
start; they vanish with the TUN), or the operator does (`ip route add PREFIX dev NAME`).
Replies that come back plain (the appliance in strip mode) arrive on --egress: set rp_filter to
0 or 2 (loose) there, since their source is routed via the TUN.

Inbound, Geneve packets on UDP/6081 (the appliance in keep mode, or a peer agent) are parsed,
their tag checked according to --inbound, and the inner packet is written to the TUN.

The key of the current epoch and of the next are held at all times; at the boundary the agent
switches to the next one without dropping a packet. It refuses to start without a valid key.
After opening the TUN and the sockets it drops every capability (and switches to --user), so it
runs unprivileged from then on. SIGUSR1 (or SIGHUP) prints the counters; SIGINT/SIGTERM print
them and exit 0. Exit status 2: refused to start (options or keys), 1: system setup failed.
)";

crypto::Alg parse_alg(const std::string& s, bool& ok) {
  ok = true;
  if (s == "aes256" || s == "aes256-cmac") return crypto::Alg::aes256_cmac;
  if (s == "aes128" || s == "aes128-cmac") return crypto::Alg::aes128_cmac;
  ok = false;
  return crypto::Alg::aes256_cmac;
}

std::int64_t realtime_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * crypto::kNsPerSec + ts.tv_nsec;
}

}  // namespace

int main(int argc, char** argv) {
  agent::AgentConfig cfg;
  agent::LocalKeyConfig local;
  agent::ManagerKeyConfig mgr;
  std::vector<std::string> routes;
  std::string coverage = "full", alg = "aes256", inbound = "verify";
  unsigned identity = 0, lane = 0;
  std::vector<unsigned> peers;

  po::options_description general("General");
  general.add_options()
      ("help,h", "print this help and exit")
      ("egress", po::value(&cfg.egress), "interface the Geneve packets leave and arrive on (required)")
      ("identity", po::value(&identity),
       "this host's workload identity id (policy identities.yaml, >= 256); with --manager it "
       "comes from the certificate and, if given, must match it")
      ("tun", po::value(&cfg.tun)->default_value("zt0"), "TUN device name (created if absent)")
      ("mtu", po::value(&cfg.mtu)->default_value(0),
       "TUN MTU; 0: the egress MTU less 92 bytes (outer IPv6 40 + UDP 8 + Geneve 8 + tag 36)")
      ("route", po::value(&routes)->composing(),
       "PREFIX routed into the TUN, e.g. 10.10.0.2/32 (repeatable; needs CAP_NET_ADMIN)")
      ("coverage", po::value(&coverage)->default_value("full"),
       "full|hdr — MAC over the whole inner L4 segment, or its first 16 bytes (only where the "
       "destination's policy says `payload: hdr`)")
      ("alg", po::value(&alg)->default_value("aes256"), "aes256|aes128 — the tag's CMAC")
      ("lane", po::value(&lane)->default_value(0), "sender lane in the tag (0-65535; one per agent instance on a host)")
      ("inbound", po::value(&inbound)->default_value("verify"),
       "verify|trust-appliance|off — inbound tags must verify with a key this agent holds "
       "(verify); or tags of identities it holds no key for pass unverified, trusting the "
       "appliance that forwarded them in keep mode (trust-appliance); or no inbound socket (off)")
      ("accept-hdr", po::bool_switch(&cfg.accept_hdr), "inbound: accept HDR-coverage tags (default: FULL only)")
      ("user", po::value(&cfg.user), "switch to this user after setup")
      ("stats-file", po::value(&cfg.stats_file), "write the counters as JSON to FILE on SIGUSR1 and at exit")
      ("log-rate", po::value(&cfg.log_per_second)->default_value(5),
       "at most this many per-packet log lines per second of each kind (the rest are counted)")
      ("quiet,q", po::bool_switch(&cfg.quiet), "print no counter table at exit");

  po::options_description lk("Local keys (lab and tests: derive K(i,e) as ztgate does from --key-master)");
  lk.add_options()
      ("key-master", po::value(&local.master_file),
       "file holding the trust domain's master secret in hex (>= 32 bytes), the file ztgate reads")
      ("key-domain", po::value(&local.domain)->default_value("lab"), "trust domain name (ztgate's --key-domain)")
      ("epoch-length", po::value(&local.epoch_length_s)->default_value(900),
       "key epoch length in seconds (ztgate's --epoch-length, 10-86400)")
      ("peer-identity", po::value(&peers)->composing(),
       "an identity whose inbound tags this agent verifies besides its own (repeatable)");

  po::options_description mk("Manager keys (production: only this identity's K(i,e) reaches the host)");
  mk.add_options()
      ("manager", po::value(&mgr.manager), "HOST:PORT of ztmanager's sync endpoint (mutual TLS)")
      ("enrol-port", po::value(&mgr.enrol_port)->default_value(7444),
       "ztmanager's enrolment port on the same host (first start only)")
      ("state-dir", po::value(&mgr.state_dir), "directory for the agent's certificate and key (mode 0700)")
      ("enrol-token", po::value(&mgr.enrol_token), "one-time token from `ztmanager token create` (first start)")
      ("manager-ca", po::value(&mgr.manager_ca), "the manager's ca.pem, copied out of band")
      ("psk-file", po::value(&mgr.psk_file), "pre-shared secret that unwraps the key material");

  po::options_description all;
  all.add(general).add(lk).add(mk);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(all).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    fmt::print(stderr, "ztagent: {} (see --help)\n", e.what());
    return 2;
  }
  if (vm.count("help")) {
    std::cout << kUsage << '\n' << all << '\n';
    return 0;
  }
  auto refuse = [](const std::string& why) {
    fmt::print(stderr, "ztagent: refusing to start: {}\n", why);
    return 2;
  };
  if (cfg.egress.empty()) return refuse("--egress IFACE is required (the interface towards the appliance)");
  if (!vm.count("identity") && !vm.count("manager"))
    return refuse("--identity ID is required (the workload identity this host tags with)");
  if (coverage == "full") cfg.coverage = crypto::Coverage::full;
  else if (coverage == "hdr") cfg.coverage = crypto::Coverage::hdr;
  else return refuse(fmt::format("--coverage '{}': expected full or hdr", coverage));
  bool ok = false;
  local.alg = mgr.alg = parse_alg(alg, ok);
  if (!ok) return refuse(fmt::format("--alg '{}': expected aes256 or aes128", alg));
  if (inbound == "verify") cfg.inbound = agent::InboundMode::verify;
  else if (inbound == "trust-appliance") cfg.inbound = agent::InboundMode::trust_appliance;
  else if (inbound == "off") cfg.inbound = agent::InboundMode::off;
  else return refuse(fmt::format("--inbound '{}': expected verify, trust-appliance or off", inbound));
  if (lane > 0xFFFF) return refuse(fmt::format("--lane {}: expected 0-65535", lane));
  cfg.lane = static_cast<std::uint16_t>(lane);
  if (cfg.log_per_second <= 0) return refuse("--log-rate: expected a positive number");
  for (const auto& r : routes) {
    auto p = agent::parse_prefix(r);
    if (!p) return refuse(p.error());
    cfg.routes.push_back(*p);
  }
  local.identity = mgr.identity = identity;
  for (unsigned p : peers) local.peer_identities.push_back(p);

  const bool has_local = vm.count("key-master") != 0;
  const bool has_mgr = vm.count("manager") != 0;
  if (has_local && has_mgr)
    return refuse("--key-master and --manager are mutually exclusive: keys come either from the "
                  "local master secret (lab) or from the manager");
  if (!has_local && !has_mgr)
    return refuse("no key source: give --key-master FILE (lab: the master secret ztgate uses) or "
                  "--manager HOST:PORT; the agent never sends untagged packets");
  if (has_mgr && !peers.empty())
    return refuse("--peer-identity needs --key-master: with --manager the agent holds only its own key");
  auto src = has_local ? agent::make_local_key_source(local, realtime_ns())
                       : agent::make_manager_key_source(mgr, realtime_ns());
  if (!src) return refuse(src.error());
  return agent::run_agent(cfg, std::move(*src));
}
