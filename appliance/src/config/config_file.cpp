#include "config/config_file.hpp"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <sstream>

namespace zt::appliance::config {

namespace {

// Section → keys. A key with an option maps to `--option=value`; a key without one is a
// FileSettings field (handled by name below).
const std::vector<ConfigKey> kKeys = {
    {"ports.a", "port-a"},
    {"ports.b", "port-b"},
    {"ports.workers", "workers"},
    {"ports.lcores", "lcores"},
    {"ports.rx_desc", "rx-desc"},
    {"ports.tx_desc", "tx-desc"},
    {"ports.mbufs", "mbufs"},
    {"ports.promiscuous", "promiscuous"},
    {"policy.dir", "policy"},
    {"policy.geneve", "geneve"},
    {"policy.replay_pps", "replay-pps"},
    {"policy.flows", "flows"},
    {"policy.flow_quota", "flow-quota"},
    {"keys.master", "key-master"},
    {"keys.domain", "key-domain"},
    {"keys.epoch_length", "epoch-length"},
    {"keys.tag_window_ms", "tag-window-ms"},
    {"keys.epoch_grace_ms", "epoch-grace-ms"},
    {"manager.address", "manager"},
    {"manager.enrol_port", "enrol-port"},
    {"manager.state_dir", "state-dir"},
    {"manager.enrol_token", "enrol-token"},
    {"manager.ca", "manager-ca"},
    {"manager.psk_file", "psk-file"},
    {"manager.tls_groups", "tls-groups"},
    {"eal.hugepages", "hugepages"},
    {"eal.memory", "memory"},
    {"eal.file_prefix", "file-prefix"},
    {"eal.log_level", "eal-log-level"},
    {"eal.args", "eal-arg"},  // a list
    {"operation.stats_file", "stats-file"},
    {"operation.stats_interval", "stats-interval"},
    {"operation.stop_when_idle", "stop-when-idle"},
    {"operation.quiet", "quiet"},  // a switch: true adds --quiet
    {"admin.socket", "admin-socket"},
    {"admin.group", "admin-group"},
    {"admin.readonly_group", "admin-ro-group"},
    {"admin.audit_log", "audit-log"},
    {"metrics.listen", "metrics-listen"},
    {"volumetric.v4_prefix", "vol-v4-prefix"},
    {"volumetric.v6_prefix", "vol-v6-prefix"},
    {"volumetric.window_ms", "vol-window-ms"},
    {"volumetric.source_pps", "vol-source-pps"},
    {"volumetric.block_pps", "vol-block-pps"},
    {"volumetric.mac_fail_pps", "vol-mac-fail-pps"},
    {"volumetric.block_ms", "vol-block-ms"},
    {"volumetric.new_flows_per_source", "vol-new-flows-per-source"},
    {"volumetric.new_flows", "vol-new-flows"},
    {"volumetric.unverified_share", "vol-unverified-share"},
    {"volumetric.table_watermark", "vol-table-watermark"},
    {"volumetric.burst_ms", "vol-burst-ms"},
    {"volumetric.overload_ms", "vol-overload-ms"},
    {"flow_log.worker_rate", "flow-log-rate"},  // records per second per worker (dataplane)
    {"flow_log.file", ""},
    {"flow_log.syslog", ""},
    {"flow_log.syslog_ident", ""},
    {"flow_log.rate", ""},                       // lines per second the writer writes
    {"tunables.segments", ""},       // map: segment name → enforce|audit
    {"tunables.flow_timeouts", ""},  // map: tcp_established|tcp_transitory|udp|icmp → duration
    {"tunables.log_level", ""},
    {"tunables.volumetric", ""},     // map: key → value
};

int line_of(const YAML::Node& n) { return n.Mark().line + 1; }

std::string where(const std::string& path, const YAML::Node& n, std::string_view key) {
  return fmt::format("{}:{}: {}", path, line_of(n), key);
}

std::string allowed_in(std::string_view section) {
  std::string s;
  for (const auto& k : kKeys) {
    std::string_view key = k.key;
    if (!key.starts_with(section) || key.size() <= section.size() || key[section.size()] != '.') continue;
    s += (s.empty() ? "" : ", ") + std::string(key.substr(section.size() + 1));
  }
  return s;
}

std::string sections() {
  std::string s;
  for (const auto& k : kKeys) {
    std::string_view key = k.key;
    auto sec = std::string(key.substr(0, key.find('.')));
    if (s.find(sec) == std::string::npos) s += (s.empty() ? "" : ", ") + sec;
  }
  return s;
}

std::expected<std::string, std::string> scalar(const std::string& path, const YAML::Node& n, std::string_view key) {
  if (!n.IsScalar()) return std::unexpected(fmt::format("{}: expected a single value, not a list or map", where(path, n, key)));
  return n.Scalar();
}

std::expected<bool, std::string> boolean(const std::string& path, const YAML::Node& n, std::string_view key) {
  bool b = false;
  if (!n.IsScalar() || !YAML::convert<bool>::decode(n, b))
    return std::unexpected(fmt::format("{}: expected true or false", where(path, n, key)));
  return b;
}

// Tunables: staged through set_tunable so the file and `set` accept exactly the same values.
std::expected<void, std::string> read_tunables(const std::string& path, const YAML::Node& sec, Tunables& t,
                                               const VolumetricValidator& volumetric) {
  for (const auto& kv : sec) {
    const auto name = kv.first.as<std::string>();
    const auto key = "tunables." + name;
    const YAML::Node& v = kv.second;
    auto stage = [&](const YAML::Node& at, const std::string& skey,
                     const YAML::Node& val) -> std::expected<void, std::string> {
      auto s = scalar(path, val, skey);
      if (!s) return std::unexpected(s.error());
      auto ok = set_tunable(t, skey, *s, volumetric);
      if (!ok) return std::unexpected(fmt::format("{}:{}: {}", path, line_of(at), ok.error()));
      return {};
    };
    if (name == "log_level") {
      if (auto ok = stage(v, "log.level", v); !ok) return ok;
      continue;
    }
    if (name != "segments" && name != "flow_timeouts" && name != "volumetric")
      return std::unexpected(fmt::format("{}: unknown key (expected {})", where(path, kv.first, key),
                                         allowed_in("tunables")));
    if (!v.IsMap())
      return std::unexpected(fmt::format("{}: expected a map of name: value", where(path, v, key)));
    for (const auto& e : v) {
      const auto sub = e.first.as<std::string>();
      std::string skey;
      if (name == "segments") {
        skey = "segment." + sub + ".mode";
      } else if (name == "flow_timeouts") {
        skey = "flow.timeout." + sub;
      } else {
        if (!volumetric) {  // kept as written; validated when the appliance applies it
          auto s = scalar(path, e.second, key + "." + sub);
          if (!s) return std::unexpected(s.error());
          t.volumetric[sub] = *s;
          continue;
        }
        skey = "volumetric." + sub;
      }
      if (auto ok = stage(e.first, skey, e.second); !ok) return ok;
    }
  }
  return {};
}

// Which option an error message of parse_options is about: the first "--name" in it.
std::string option_in(const std::string& msg) {
  std::string best;
  std::size_t at = std::string::npos;
  for (const auto& k : kKeys) {
    if (*k.option == 0) continue;
    const std::string o = std::string("--") + k.option;
    for (auto p = msg.find(o); p != std::string::npos; p = msg.find(o, p + 1)) {
      const auto end = p + o.size();
      const bool whole = end == msg.size() || !(std::isalnum(static_cast<unsigned char>(msg[end])) || msg[end] == '-');
      if (whole && p < at) at = p, best = k.option;
    }
  }
  // Boost.PO names options without dashes in some messages ("the argument ('x') for option
  // '--workers' is invalid" has them; "option 'workers'" in others).
  if (best.empty())
    for (const auto& k : kKeys)
      if (*k.option != 0 && msg.find(std::string("'") + k.option + "'") != std::string::npos) return k.option;
  return best;
}

}  // namespace

const std::vector<ConfigKey>& config_keys() { return kKeys; }

std::string annotate_error(const ConfigFile& cf, const std::string& error) {
  const auto opt = option_in(error);
  const auto line = cf.line_of.find(opt);
  if (opt.empty() || line == cf.line_of.end()) return error;
  return fmt::format("{}:{}: {}: {}", cf.path, line->second, cf.key_of.at(opt), error);
}

std::expected<ConfigFile, std::string> read_config(const std::string& path, const VolumetricValidator& volumetric) {
  std::ifstream in(path);
  if (!in) return std::unexpected(fmt::format("{}: cannot read the config file", path));
  YAML::Node root;
  try {
    root = YAML::Load(in);
  } catch (const YAML::Exception& e) {
    return std::unexpected(fmt::format("{}:{}: not valid YAML: {}", path, e.mark.line + 1, e.msg));
  }
  ConfigFile cf;
  cf.path = path;
  if (root.IsNull()) return cf;  // an empty file: everything from the command line
  if (!root.IsMap())
    return std::unexpected(fmt::format("{}:{}: expected sections ({}) at the top level", path, line_of(root), sections()));
  auto& st = cf.settings;
  try {
    for (const auto& sec : root) {
      const auto sname = sec.first.as<std::string>();
      const YAML::Node& body = sec.second;
      if (allowed_in(sname).empty())
        return std::unexpected(fmt::format("{}: unknown section (expected one of {})", where(path, sec.first, sname), sections()));
      if (body.IsNull()) continue;
      if (!body.IsMap())
        return std::unexpected(fmt::format("{}: expected a map of key: value", where(path, body, sname)));
      if (sname == "tunables") {
        if (auto ok = read_tunables(path, body, st.tunables, volumetric); !ok) return std::unexpected(ok.error());
        continue;
      }
      for (const auto& kv : body) {
        const auto key = sname + "." + kv.first.as<std::string>();
        const YAML::Node& v = kv.second;
        const auto it = std::find_if(kKeys.begin(), kKeys.end(), [&](const ConfigKey& k) { return key == k.key; });
        if (it == kKeys.end())
          return std::unexpected(fmt::format("{}: unknown key (expected {} in section {})", where(path, kv.first, key),
                                             allowed_in(sname), sname));
        const std::string option = it->option;
        if (!option.empty()) {
          if (cf.line_of.count(option))
            return std::unexpected(fmt::format("{}: given twice (first on line {})", where(path, kv.first, key),
                                               cf.line_of[option]));
          cf.line_of[option] = line_of(kv.first);
          cf.key_of[option] = key;
          if (option == "eal-arg") {
            if (!v.IsSequence())
              return std::unexpected(fmt::format("{}: expected a list of EAL arguments", where(path, v, key)));
            for (const auto& a : v) {
              auto s = scalar(path, a, key);
              if (!s) return std::unexpected(s.error());
              cf.args.push_back("--eal-arg=" + *s);
            }
          } else if (option == "quiet") {
            auto b = boolean(path, v, key);
            if (!b) return std::unexpected(b.error());
            if (*b) cf.args.push_back("--quiet");
          } else {
            auto s = scalar(path, v, key);
            if (!s) return std::unexpected(s.error());
            cf.args.push_back(fmt::format("--{}={}", option, *s));
          }
          continue;
        }
        if (key == "flow_log.syslog") {
          auto b = boolean(path, v, key);
          if (!b) return std::unexpected(b.error());
          st.flow_log.syslog = *b;
          continue;
        }
        auto s = scalar(path, v, key);
        if (!s) return std::unexpected(s.error());
        if (key == "flow_log.file") st.flow_log.file = *s;
        else if (key == "flow_log.syslog_ident") st.flow_log.syslog_ident = *s;
        else if (key == "flow_log.rate") {
          auto ok = set_tunable(st.tunables, "flowlog.rate", *s);
          if (!ok) return std::unexpected(fmt::format("{}: {}", where(path, kv.first, key), ok.error()));
        }
      }
    }
  } catch (const YAML::Exception& e) {
    return std::unexpected(fmt::format("{}:{}: {}", path, e.mark.line + 1, e.msg));
  }
  return cf;
}

std::expected<FileSettings, std::string> load_config(const std::string& path, Options& out,
                                                     const VolumetricValidator& volumetric) {
  auto cf = read_config(path, volumetric);
  if (!cf) return std::unexpected(cf.error());
  std::vector<const char*> argv{"ztgate"};
  for (const auto& a : cf->args) argv.push_back(a.c_str());
  auto r = parse_options(static_cast<int>(argv.size()), argv.data());
  if (!r) {
    const auto opt = option_in(r.error());
    if (!opt.empty() && !cf->line_of.count(opt)) {  // required, and not in the file
      const auto it = std::find_if(kKeys.begin(), kKeys.end(), [&](const ConfigKey& k) { return opt == k.option; });
      return std::unexpected(fmt::format("{}: {} (key {})", path, r.error(), it->key));
    }
    const auto msg = annotate_error(*cf, r.error());
    return std::unexpected(msg == r.error() ? fmt::format("{}: {}", path, msg) : msg);
  }
  out = std::move(r->options);
  return std::move(cf->settings);
}

}  // namespace zt::appliance::config
