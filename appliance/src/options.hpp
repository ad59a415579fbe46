// ztgate's command line and config file (Boost.Program_options). Every option can be given on
// the command line or as `name = value` in the file named by --config; the command line wins.
#pragma once

#include <expected>
#include <string>
#include <vector>

#include "manager_source.hpp"
#include "policy_source.hpp"
#include "zt/dataplane/runtime.hpp"

namespace zt::appliance {

struct Options {
  dp::RuntimeConfig runtime;
  std::string policy_dir;      // empty: no policy, every IP packet is dropped (no_policy)
  KeySettings keys;
  ManagerSettings manager;     // host empty: no manager (--policy or no policy)
  std::string stats_file;      // JSON counters written on exit
  unsigned stop_when_idle_ms = 0;
  unsigned stats_interval_s = 0;
  bool quiet = false;
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
