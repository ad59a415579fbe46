// ztgate's command line and config file (Boost.Program_options). Every option can be given on
// the command line or as `name = value` in the file named by --config; the command line wins.
#pragma once

#include <expected>
#include <string>
#include <vector>

#include "config/file_settings.hpp"
#include "manager_source.hpp"
#include "policy_source.hpp"
#include "zt/dataplane/runtime.hpp"

namespace zt::appliance {

// The operator interfaces (appliance/src/admin/README.md).
struct AdminOptions {
  std::string socket = "/run/ztgate/admin.sock";  // --admin-socket; empty: none (PATH.ro beside it)
  bool socket_given = false;   // given explicitly: failing to open it stops ztgate
  std::string admin_group;     // --admin-group
  std::string ro_group;        // --admin-ro-group
  std::string audit_log;       // --audit-log FILE
  std::string metrics_listen;  // --metrics-listen ADDR:PORT; empty: no metrics endpoint
  std::string flow_log;        // --flow-log FILE|syslog; empty: no flow log
};

struct Options {
  dp::RuntimeConfig runtime;
  std::string policy_dir;      // empty: no policy, every IP packet is dropped (no_policy)
  KeySettings keys;
  ManagerSettings manager;     // host empty: no manager (--policy or no policy)
  std::string stats_file;      // JSON counters written on exit
  unsigned stop_when_idle_ms = 0;
  unsigned stats_interval_s = 0;
  bool quiet = false;
  AdminOptions admin;
  config::FileSettings file;  // what a YAML --config file holds beyond options (flow log, tunables)
};

// What parse_options decided: run with these options, or print `text` and exit with `exit_code`.
struct ParseResult {
  Options options;
  bool exit_now = false;
  int exit_code = 0;
  std::string text;
};

std::expected<ParseResult, std::string> parse_options(int argc, const char* const argv[]);

}  // namespace zt::appliance
