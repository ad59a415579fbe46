#include "options.hpp"

#include <boost/program_options.hpp>
#include <fmt/format.h>

#include "config/config_file.hpp"

#include <fstream>
#include <sstream>

namespace zt::appliance {

namespace po = boost::program_options;

namespace {

constexpr const char* kUsage = R"(ztgate — inline zero-trust network appliance (dataplane daemon)

Usage: ztgate --port-a DEV --port-b DEV [--policy DIR | --manager HOST:PORT ...] [options]
       ztgate --config FILE [options]

ztgate sits between two ports, the zone A side and the zone B side, as a bump in the wire.
Every packet is parsed strictly; every flow is decided by the policy (--policy): default deny,
explicit allow, identity from the packet's Geneve identity tag (verified with the epoch keys
derived from --key-master) or, untagged, from the source segment. Replies of an admitted flow
pass by flow state. ARP passes. What is refused is dropped and counted by reason.
Without --policy or --manager nothing but ARP passes (no_policy): there is no bypass mode.
With --manager the policy and the epoch secrets come from ztmanager instead (signed bundles over
mutual TLS, DESIGN.md §5): the first start enrols with --enrol-token and --manager-ca, later
starts enforce the last good bundle kept in --state-dir at once, even with the manager down.
When the enforced bundle or its keys expire without a newer update, flows admitted before
continue and every new flow is dropped (policy_expired) until the manager sends one.
--manager and --policy exclude each other.
SIGHUP reloads the policy directory hitlessly; a policy that does not validate is refused and
the running one stays. SIGINT or SIGTERM stops the ports, prints the counters and exits.

DEV is a DPDK virtual device spec or a PCI address, e.g.
  net_af_packet0,iface=veth-a,qpairs=1    a Linux interface through AF_PACKET
  net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap
  net_ring0 / net_null0                   in-memory devices for tests and benchmarks
  0000:03:00.0                            a NIC (needs hugepages and a DPDK-bound driver)

Every option below may also be written as `name = value` in the --config file.
)";

}  // namespace

std::expected<ParseResult, std::string> parse_options(int argc, const char* const argv[]) {
  ParseResult res;
  auto& o = res.options;
  auto& rt = o.runtime;
  std::string hugepages = "auto";
  std::string config;

  po::options_description general("General");
  general.add_options()
      ("help,h", "print this help and exit")
      ("version", "print the version and exit")
      ("config,c", po::value(&config),
       "read options from FILE: YAML if it ends in .yaml or .yml (sections and keys as in "
       "appliance/ztgate.example.yaml), else INI `name = value` lines; the command line wins")
      ("check-config", po::value<std::string>(),
       "validate the YAML config FILE (appliance/ztgate.example.yaml) completely and exit: 0 and "
       "'FILE: configuration valid', or 2 and the error with its line and key; starts nothing");

  po::options_description ports("Ports and workers");
  ports.add_options()
      ("port-a", po::value(&rt.ports[0]), "zone A side device (vdev spec or PCI address)")
      ("port-b", po::value(&rt.ports[1]), "zone B side device (vdev spec or PCI address)")
      ("workers", po::value(&rt.workers)->default_value(1),
       "worker lcores; each polls one RX/TX queue pair per port (symmetric RSS)")
      ("lcores", po::value(&rt.lcores),
       "EAL lcore list, main lcore first (default: 0-<workers>); with '@' an lcore-to-CPU "
       "map such as 0@0,1@1,2@1")
      ("rx-desc", po::value(&rt.rx_desc)->default_value(1024), "RX descriptors per queue")
      ("tx-desc", po::value(&rt.tx_desc)->default_value(1024), "TX descriptors per queue")
      ("mbufs", po::value(&rt.mbufs)->default_value(16383), "mbufs in the packet pool")
      ("promiscuous", po::value(&rt.promiscuous)->default_value(true),
       "put both ports in promiscuous mode (a bump in the wire needs it)");

  std::string geneve = "strip";
  po::options_description pol("Policy, keys and flows");
  pol.add_options()
      ("policy", po::value(&o.policy_dir),
       "policy directory (YAML, see appliance/policy/); validated and compiled at start and on SIGHUP")
      ("key-master", po::value<std::string>(),
       "file holding the trust domain's master secret in hex (>= 32 bytes); epoch secrets are "
       "derived from it locally (lab / stand-alone; the manager will send epoch secrets instead)")
      ("key-domain", po::value(&o.keys.domain)->default_value("lab"), "trust domain name of the keys")
      ("epoch-length", po::value(&o.keys.epoch_length_s)->default_value(900),
       "key epoch length in seconds (DESIGN.md §2)")
      ("tag-window-ms", po::value(&o.keys.tag_window_ms)->default_value(1000),
       "freshness window: a tag whose timestamp is more than this many ms from the appliance clock "
       "is dropped (tag_time_window); senders' clocks must agree within it (PTP/NTP). The workers follow "
       "the wall clock (steps and drift); after the clock steps back by D, tags are judged at the "
       "newest time one was accepted until the clock passes it (replay safety): a sender whose clock "
       "stepped back too is refused for D minus this window. With --key-master only: under --manager "
       "the manager's key schedule sets it")
      ("epoch-grace-ms", po::value(&o.keys.epoch_grace_ms)->default_value(5000),
       "tags of the previous key epoch are still accepted this many ms after a new epoch begins, "
       "then dropped (tag_expired_epoch). With --key-master only, like --tag-window-ms")
      ("geneve", po::value(&geneve)->default_value("strip"),
       "strip|keep — decapsulate tagged packets before forwarding, or forward them as they came")
      ("replay-pps", po::value(&rt.replay_pps)->default_value(15e6, "15000000"),
       "accepted tags per second per worker the replay filter is sized for (memory: about 146 MiB "
       "per worker at 15 Mpps and a 1 s --tag-window-ms, proportional to both); above it, fresh "
       "tags risk being taken for replays (false drops), never the reverse")
      ("flows", po::value(&rt.flows)->default_value(1U << 20), "flow table capacity per worker")
      ("flow-quota", po::value(&rt.flow_quota)->default_value(0),
       "flows one identity may hold per worker (0: no quota); untagged flows count under their "
       "segment's identity, or all together under `unauthenticated`");

  std::string manager, state_dir, psk_file, manager_ca;
  unsigned enrol_port = 7444;
  po::options_description mgr("Manager (instead of --policy)");
  mgr.add_options()
      ("manager", po::value(&manager),
       "HOST:PORT of ztmanager's sync endpoint (mutual TLS); policy and epoch secrets come from it")
      ("enrol-port", po::value(&enrol_port)->default_value(7444),
       "port of ztmanager's enrolment endpoint on the same host (used once, with --enrol-token)")
      ("state-dir", po::value(&state_dir),
       "directory for this appliance's certificate, key, manager CA and last good bundle (mode 0700)")
      ("enrol-token", po::value(&o.manager.enrol_token),
       "one-time token from `ztmanager token create`; used only when --state-dir holds no certificate")
      ("manager-ca", po::value(&manager_ca),
       "the manager's ca.pem, copied out of band: the trust anchor for the first enrolment")
      ("psk-file", po::value(&psk_file),
       "pre-shared secret file (the manager's --psk-file, mode 0600) that unwraps the epoch secrets")
      ("tls-groups", po::value(&o.manager.tls_groups)->default_value("X25519:P-256"),
       "TLS 1.3 key-exchange groups, in preference order");

  po::options_description eal("EAL");
  eal.add_options()
      ("hugepages", po::value(&hugepages)->default_value("auto"),
       "auto|on|off — auto uses hugepages when the machine has some reserved, else "
       "--no-huge with --memory MB")
      ("memory", po::value(&rt.memory_mb)->default_value(256), "EAL memory in MB without hugepages")
      ("file-prefix", po::value(&rt.file_prefix)->default_value("ztgate"),
       "EAL runtime file prefix with hugepages (run two instances with two prefixes)")
      ("eal-log-level", po::value(&rt.eal_log_level)->default_value("notice"),
       "DPDK log level for libraries and drivers (error, warning, notice, info, debug)")
      ("eal-arg", po::value(&rt.extra_eal_args)->composing(),
       "extra argument passed to rte_eal_init verbatim (repeatable)");

  po::options_description ops("Operation");
  ops.add_options()
      ("stats-file", po::value(&o.stats_file), "write the counters as JSON to FILE on exit")
      ("stats-interval", po::value(&o.stats_interval_s)->default_value(0),
       "print the counters every N seconds (0: only on exit)")
      ("stop-when-idle", po::value(&o.stop_when_idle_ms)->default_value(0),
       "exit after MS milliseconds without a received packet (replaying captures); 0: never")
      ("quiet,q", po::bool_switch(&o.quiet), "print no counter table on exit");

  po::options_description adm("Operators (ztctl, audit, metrics)");
  adm.add_options()
      ("admin-socket", po::value(&o.admin.socket)->default_value(o.admin.socket),
       "UNIX socket ztctl talks to; every command, mutating ones audit-logged. PATH.ro beside it takes "
       "only show and test commands. '' disables both")
      ("admin-group", po::value(&o.admin.admin_group),
       "group allowed to connect to the admin socket (mode 0660); default: root only (0600)")
      ("admin-ro-group", po::value(&o.admin.ro_group),
       "group allowed to connect to the read-only socket PATH.ro (mode 0660); default: root only (0600)")
      ("audit-log", po::value(&o.admin.audit_log),
       "also append every mutating admin request (who, what, when, result) to FILE as JSON lines")
      ("metrics-listen", po::value(&o.admin.metrics_listen),
       "serve Prometheus metrics on ADDR:PORT (e.g. 127.0.0.1:9420) at /metrics; default: off")
      ("flow-log", po::value(&o.admin.flow_log),
       "write deny and audit decisions as JSON lines to FILE, or to syslog with 'syslog'; default: off");

  // Volumetric filtering (dataplane/README.md "Volumetric"): appliance-wide limits, split across
  // workers; 0 turns a limit off. Live changes: Control::set_volumetric.
  dp::VolumetricConfig& vol = rt.control.volumetric;
  unsigned vol_v4 = vol.v4_prefix, vol_v6 = vol.v6_prefix;
  po::options_description volo("Volumetric filtering (0 turns a limit off)");
  volo.add_options()
      ("vol-v4-prefix", po::value(&vol_v4)->default_value(vol.v4_prefix),
       "untagged and invalid-tag sources are counted and blocklisted by this IPv4 prefix length")
      ("vol-v6-prefix", po::value(&vol_v6)->default_value(vol.v6_prefix), "the same for IPv6 (1 to 64)")
      ("vol-window-ms", po::value(&vol.window_ms)->default_value(vol.window_ms),
       "counting window of the per-source sketches")
      ("vol-source-pps", po::value(&vol.source_pps)->default_value(vol.source_pps),
       "untagged + invalid-tag packets per second one source prefix may send (source_rate_limited)")
      ("vol-block-pps", po::value(&vol.block_pps)->default_value(vol.block_pps),
       "a source prefix sending more untagged/invalid packets per second is blocklisted (heavy hitter)")
      ("vol-mac-fail-pps", po::value(&vol.mac_fail_pps)->default_value(vol.mac_fail_pps),
       "a source prefix with more tag failures per second is blocklisted for new flows (forged-tag "
       "flood; its established flows keep passing)")
      ("vol-block-ms", po::value(&vol.block_ms)->default_value(vol.block_ms),
       "how long a blocklist entry lasts (then it expires; a source still flooding is added again)")
      ("vol-new-flows-per-source", po::value(&vol.new_flows_per_source)->default_value(vol.new_flows_per_source),
       "new flows per second one source (identity, or prefix when untagged) may open")
      ("vol-new-flows", po::value(&vol.new_flows_global)->default_value(vol.new_flows_global),
       "new flows per second in all (new_flow_rate_limited)")
      ("vol-unverified-share", po::value(&vol.unverified_new_flow_share)->default_value(vol.unverified_new_flow_share),
       "percent of --vol-new-flows that untagged sources may use; the rest is kept for verified identities")
      ("vol-table-watermark", po::value(&vol.table_watermark_pct)->default_value(vol.table_watermark_pct),
       "flow-table fill (percent) above which only MAC-verified identities open new flows (100: off)")
      ("vol-burst-ms", po::value(&vol.burst_ms)->default_value(vol.burst_ms),
       "depth of every token bucket (rate classes, new flows, flow logs): this much time at its rate")
      ("vol-overload-ms", po::value(&vol.overload_ms)->default_value(vol.overload_ms),
       "a worker whose RX bursts stay full this long is behind and sheds new untagged flows (0: never)")
      ("flow-log-rate", po::value(&vol.flow_log_rate)->default_value(vol.flow_log_rate),
       "flow-log records (deny and audit decisions) per second per worker; the rest are counted as suppressed");

  po::options_description all;
  all.add(general).add(ports).add(pol).add(mgr).add(eal).add(ops).add(adm).add(volo);

  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(all).run(), vm);
    const std::string cfg = vm.count("config") ? vm["config"].as<std::string>() : "";
    if (cfg.ends_with(".yaml") || cfg.ends_with(".yml")) {
      auto cf = config::read_config(cfg);
      if (!cf) return std::unexpected(cf.error());
      try {
        po::store(po::command_line_parser(cf->args).options(all).run(), vm);  // argv stored first wins
      } catch (const po::error& e) {
        return std::unexpected(config::annotate_error(*cf, e.what()));
      }
      o.file = std::move(cf->settings);
    } else if (vm.count("config")) {
      std::ifstream in(vm["config"].as<std::string>());
      if (!in)
        return std::unexpected(
            fmt::format("--config: cannot read '{}'", vm["config"].as<std::string>()));
      po::store(po::parse_config_file(in, all), vm);
    }
    po::notify(vm);
  } catch (const po::error& e) {
    return std::unexpected(fmt::format("{} (see ztgate --help)", e.what()));
  }

  if (vm.count("help")) {
    std::ostringstream s;
    s << kUsage << "\n" << all;
    res.exit_now = true;
    res.text = s.str();
    return res;
  }
  if (vm.count("version")) {
    res.exit_now = true;
    res.text = "ztgate " ZT_VERSION "\n";
    return res;
  }
  if (hugepages == "auto")
    rt.hugepages = dp::Hugepages::auto_detect;
  else if (hugepages == "on")
    rt.hugepages = dp::Hugepages::on;
  else if (hugepages == "off")
    rt.hugepages = dp::Hugepages::off;
  else
    return std::unexpected(
        fmt::format("--hugepages '{}': expected auto, on or off", hugepages));
  if (geneve == "strip")
    rt.geneve = dp::GeneveMode::strip;
  else if (geneve == "keep")
    rt.geneve = dp::GeneveMode::keep;
  else
    return std::unexpected(fmt::format("--geneve '{}': expected strip or keep", geneve));
  o.admin.socket_given = !vm["admin-socket"].defaulted();
  if (vm.count("key-master")) o.keys.master_file = vm["key-master"].as<std::string>();
  if (auto ok = check_key_settings(o.keys); !ok) return std::unexpected(ok.error());
  if (!(rt.replay_pps >= 1000 && rt.replay_pps <= 1e9))
    return std::unexpected(fmt::format("--replay-pps {}: expected 1000 to 1000000000", rt.replay_pps));
  rt.tag_window_ns = static_cast<std::int64_t>(o.keys.tag_window_ms) * 1'000'000;
  if (rt.flows < 64)
    return std::unexpected(fmt::format("--flows {}: expected at least 64", rt.flows));
  if (vol_v4 < 1 || vol_v4 > 32) return std::unexpected(fmt::format("--vol-v4-prefix {}: expected 1 to 32", vol_v4));
  if (vol_v6 < 1 || vol_v6 > 64) return std::unexpected(fmt::format("--vol-v6-prefix {}: expected 1 to 64", vol_v6));
  vol.v4_prefix = static_cast<std::uint8_t>(vol_v4);
  vol.v6_prefix = static_cast<std::uint8_t>(vol_v6);
  if (auto v = dp::validate(vol); !v) return std::unexpected(v.error());
  if (rt.ports[0].empty() || rt.ports[1].empty())
    return std::unexpected("both --port-a and --port-b are required (see ztgate --help)");
  if (rt.workers == 0 || rt.workers > 64)
    return std::unexpected(fmt::format("--workers {}: expected 1 to 64", rt.workers));
  if (rt.mbufs < 1024)
    return std::unexpected(fmt::format("--mbufs {}: expected at least 1024", rt.mbufs));
  if (manager.empty()) {
    for (const char* name : {"state-dir", "enrol-token", "manager-ca", "psk-file"})
      if (vm.count(name)) return std::unexpected(fmt::format("--{} is only meaningful with --manager", name));
    return res;
  }
  if (!o.policy_dir.empty())
    return std::unexpected(
        "--manager and --policy are mutually exclusive: the policy comes either from the manager or from a directory");
  if (vm.count("key-master"))
    return std::unexpected("--key-master and --manager are mutually exclusive: with --manager the epoch secrets "
                           "come from the manager");
  for (const char* name : {"tag-window-ms", "epoch-grace-ms"})
    if (!vm[name].defaulted())
      return std::unexpected(fmt::format("--{} does not apply with --manager: the manager's key schedule sets it "
                                         "(ztmanager's options)", name));
  const auto colon = manager.rfind(':');
  unsigned long port = 0;
  std::size_t used = 0;
  try {
    if (colon != std::string::npos && colon + 1 < manager.size()) port = std::stoul(manager.substr(colon + 1), &used);
  } catch (const std::exception&) {
    port = 0;
  }
  if (colon == std::string::npos || colon == 0 || used != manager.size() - colon - 1 || port == 0 || port > 65535)
    return std::unexpected(fmt::format("--manager '{}': expected HOST:PORT, e.g. 127.0.0.1:7443", manager));
  o.manager.host = manager.substr(0, colon);
  if (o.manager.host.size() > 2 && o.manager.host.front() == '[' && o.manager.host.back() == ']')
    o.manager.host = o.manager.host.substr(1, o.manager.host.size() - 2);
  o.manager.port = static_cast<std::uint16_t>(port);
  if (enrol_port == 0 || enrol_port > 65535)
    return std::unexpected(fmt::format("--enrol-port {}: expected 1 to 65535", enrol_port));
  o.manager.enrol_port = static_cast<std::uint16_t>(enrol_port);
  if (state_dir.empty()) return std::unexpected("--state-dir: required with --manager");
  if (psk_file.empty()) return std::unexpected("--psk-file: required with --manager");
  if (o.manager.tls_groups.empty()) return std::unexpected("--tls-groups: must not be empty");
  o.manager.state_dir = state_dir;
  o.manager.psk_file = psk_file;
  o.manager.ca_file = manager_ca;
  return res;
}

}  // namespace zt::appliance
