// Writes the seed corpus for admin_fuzz: every verb of the Service with the arguments an
// operator would give (and a few it should refuse), on the admin socket, some on the read-only
// one; plus raw frames for the server (a whole request, another protocol version, an oversized
// length, a partial frame). Structured seeds spell the verb and each key out (admin_fuzz.cpp,
// `build_request`): byte 0 = socket | mode << 1, 0xF8 VERB '\0', then 0xF0 "KEY=VALUE" '\0' each.
//   admin_seeds OUT_DIR [IGNORED]
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "admin/wire.hpp"

namespace fs = std::filesystem;

namespace {

struct Seed {
  bool read_only;
  std::string command;
  std::vector<std::pair<std::string, std::string>> args;
};

std::string structured(const Seed& s) {
  std::string b;
  b += static_cast<char>((s.read_only ? 1 : 0) | (1 << 1));
  b += '\xF8';
  b += s.command;
  b += '\0';
  for (auto& [k, v] : s.args) {
    b += '\xF0';
    b += k + "=" + v;
    b += '\0';
  }
  return b;
}

std::string raw(bool read_only, const std::string& bytes) {
  return std::string(1, static_cast<char>(read_only ? 1 : 0)) + bytes;
}

std::string framed_request(std::uint32_t version, const std::string& command) {
  zt::admin::Request r;
  r.set_version(version);
  r.set_command(command);
  return zt::admin::frame(r.SerializeAsString());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  const fs::path out = argv[1];
  fs::create_directories(out);
  const std::vector<Seed> seeds = {
      {false, "show status", {}},
      {false, "show interfaces", {}},
      {false, "show runtime", {}},
      {false, "show drops", {{"all", "1"}}},
      {false, "show flows", {{"address", "10.10.0.2"}, {"port", "80"}, {"limit", "10"}}},
      {true, "show flows", {{"identity", "web-a"}}},
      {false, "show identities", {}},
      {false, "show policy", {}},
      {false, "show keys", {}},
      {false, "show control-plane", {}},
      {false, "show volumetric", {{"top", "4"}}},
      {false, "show capture", {}},
      {false, "show candidate", {}},
      {false, "show configuration", {}},
      {false, "test policy", {{"from", "web-a"}, {"to", "10.10.0.2"}, {"proto", "tcp"}, {"port", "80"},
                              {"method", "GET"}, {"path", "/index.html"}}},
      {true, "test policy", {{"from", "client-a"}, {"to", "10.10.0.2"}, {"port", "22"}}},
      {false, "test policy", {{"from", "10.10.0.1"}, {"to", "fd00:10::2"}, {"proto", "udp"}, {"port", "53"}}},
      {false, "clear counters", {}},
      {false, "clear flows", {{"identity", "1001"}}},
      {false, "clear flows", {{"address", "10.10.0.2"}, {"port", "443"}}},
      {false, "clear blocklist", {{"prefix", "10.10.0.0/24"}}},
      {false, "clear blocklist", {}},
      {false, "set runtime timing", {{"value", "on"}}},
      {false, "set runtime timing", {{"value", "off"}}},
      {false, "trace", {{"packets", "4"}, {"wait", "20"}}},
      {false, "capture start", {{"file", "/capture.pcapng"}, {"count", "10"}, {"snaplen", "128"}, {"drops-only", "1"}}},
      {false, "capture start", {{"file", "relative.pcapng"}}},
      {false, "capture stop", {}},
      {false, "set", {{"key", "flow.timeout.udp"}, {"value", "90s"}}},
      {false, "set", {{"key", "flow.timeout.tcp_established"}, {"value", "2h"}}},
      {false, "set", {{"key", "segment.zone-b.mode"}, {"value", "audit"}}},
      {false, "set", {{"key", "segment.nosuch.mode"}, {"value", "audit"}}},
      {false, "set", {{"key", "volumetric.source_pps"}, {"value", "5000"}}},
      {false, "set", {{"key", "volumetric.v4_prefix"}, {"value", "24"}}},
      {false, "set", {{"key", "log.level"}, {"value", "debug"}}},
      {false, "set", {{"key", "flowlog.rate"}, {"value", "10"}}},
      {true, "set", {{"key", "flow.timeout.udp"}, {"value", "30"}}},
      {false, "delete", {{"key", "flow.timeout.udp"}}},
      {false, "delete", {{"key", "segment.zone-b.mode"}}},
      {false, "commit", {{"comment", "fuzz"}}},
      {false, "commit", {{"confirmed", "1s"}}},
      {true, "commit", {}},
      {false, "commit check", {}},
      {true, "commit check", {}},
      {false, "confirm", {}},
      {false, "rollback", {{"n", "1"}}},
      {false, "rollback", {{"n", "0"}}},
      {false, "show nothing", {}},
  };
  int written = 0;
  auto write_seed = [&](const std::string& bytes) {
    std::ofstream(out / ("seed-" + std::to_string(written++)), std::ios::binary) << bytes;
  };
  for (auto& s : seeds) write_seed(structured(s));
  write_seed(raw(false, framed_request(zt::admin::kProtocolVersion, "show status")));
  write_seed(raw(true, framed_request(zt::admin::kProtocolVersion, "clear counters")));
  write_seed(raw(false, framed_request(zt::admin::kProtocolVersion + 1, "show status")));
  write_seed(raw(false, std::string("\x00\x01\x00\x01", 4)));  // 65537 bytes announced
  write_seed(raw(false, framed_request(zt::admin::kProtocolVersion, "show status").substr(0, 6)));
  std::printf("admin_seeds: %d seeds in %s\n", written, out.c_str());
  return 0;
}
