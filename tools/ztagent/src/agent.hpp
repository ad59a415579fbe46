// ztagent's runtime: one thread, poll() over the TUN, the egress sockets, a signalfd and a
// maintenance timer. See tools/ztagent/README.md.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "agent_core.hpp"
#include "key_source.hpp"
#include "sys.hpp"

namespace zt::agent {

struct AgentConfig {
  std::string tun = "zt0";
  std::string egress;                  // required: where the Geneve packets leave
  int mtu = 0;                         // 0: egress MTU - kMaxOverhead
  std::vector<Prefix> routes;          // added via the TUN at start
  crypto::Coverage coverage = crypto::Coverage::full;
  std::uint16_t lane = 0;
  InboundMode inbound = InboundMode::verify;
  bool accept_hdr = false;             // inbound: accept HDR-coverage tags
  std::string user;                    // switch to this user after setup
  std::string stats_file;              // JSON counters, written on SIGUSR1 and at exit
  double log_per_second = 5;           // rate limit of each kind of per-packet log line
  bool quiet = false;                  // no counter table at exit
};

// Sets up (TUN, routes, sockets, privileges) and runs until SIGINT/SIGTERM. Returns the exit
// code: 0 after a signal, 1 when setup fails (the message is printed).
int run_agent(const AgentConfig& cfg, std::unique_ptr<KeySource> keys);

}  // namespace zt::agent
