// What a YAML config file holds beyond ztgate's command-line options (config_file.hpp). Kept
// apart so options.hpp can hold it without including the config-file reader.
#pragma once

#include <string>

#include "config/candidate.hpp"

namespace zt::appliance::config {

struct FlowLogSettings {
  std::string file;          // JSON lines appended here; empty: none
  bool syslog = false;       // also / instead: syslog(LOG_INFO) with ident `syslog_ident`
  std::string syslog_ident = "ztgate";
};

// Settings of the file that are not ztgate command-line options.
struct FileSettings {
  FlowLogSettings flow_log;
  Tunables tunables;  // running configuration at start (CandidateStore); flow_log.rate → flow_log_rate
};

}  // namespace zt::appliance::config
