// Writes the seed corpus for parser_fuzz: every packet of the shared captures (as Ethernet
// frames) and the packets the unit tests build, including the Geneve identity-tag shapes that
// random mutation would take long to find.
//   parser_seeds OUT_DIR [PCAP_DIR]
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "../dataplane/capture_frames.hpp"
#include "../dataplane/packet_builder.hpp"

namespace fs = std::filesystem;
using zt::test::Bytes;
using zt::test::PacketBuilder;

namespace {

int written = 0;

void write_seed(const fs::path& dir, const Bytes& frame) {
  std::ofstream(dir / ("seed-" + std::to_string(written++)), std::ios::binary)
      .write(reinterpret_cast<const char*>(frame.data()), static_cast<std::streamsize>(frame.size()));
}

void built_seeds(const fs::path& dir) {
  using namespace zt::test;
  const auto tag = tag_option();
  write_seed(dir, PacketBuilder{}.eth().ipv4().tcp().payload(20).build());
  write_seed(dir, PacketBuilder{}.eth().vlan(0x88A8, 1).vlan(0x8100, 2).ipv6().tcp().build());
  write_seed(dir, PacketBuilder{}.eth().arp().padding(18).build());
  write_seed(dir, PacketBuilder{}.eth().ipv4({.options = {1, 7, 7, 4, 0, 0, 0, 0}}).udp().build());
  write_seed(dir, PacketBuilder{}.eth().ipv4({.more_fragments = true}).tcp().payload(12).build());
  write_seed(dir, PacketBuilder{}.eth().ipv4({.frag_offset = 64}).raw(6, Bytes(16, 0)).build());
  write_seed(dir, PacketBuilder{}.eth().ipv6().ipv6_ext({.type = 0}).ipv6_ext({.type = 43,
                      .len = 24}).ipv6_ext({.type = 51, .len = 16}).ipv6_ext({.type = 60})
                      .udp().payload(4).build());
  write_seed(dir, PacketBuilder{}.eth().ipv6().ipv6_frag({.more_fragments = true})
                      .ipv6_ext({.type = 60}).tcp().payload(28).build());
  write_seed(dir, PacketBuilder{}.eth().ipv6().ipv6_frag({.offset = 8}).raw(17, Bytes(8, 0))
                      .build());
  write_seed(dir, PacketBuilder{}.eth().ipv6().icmpv6().payload(8).build());
  write_seed(dir, PacketBuilder{}.eth().ipv4().udp({.dport = 6081}).geneve({.options = {tag}})
                      .ipv4().tcp().payload(10).build());
  write_seed(dir, PacketBuilder{}.eth().ipv6().udp({.dport = 6081})
                      .geneve({.options = {{.cls = 0x0102, .type = 0x05, .body = Bytes(8, 0)},
                                           tag}})
                      .ipv6().udp().payload(10).build());
  write_seed(dir, PacketBuilder{}.eth().ipv4().udp({.dport = 6081}).geneve({}).ipv4()
                      .udp({.dport = 6081}).geneve({}).ipv4().icmp().build());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR [PCAP_DIR]\n", argv[0]);
    return 2;
  }
  const fs::path out = argv[1];
  fs::create_directories(out);
  built_seeds(out);
  if (argc >= 3 && fs::is_directory(argv[2])) {
    for (const auto& e : fs::recursive_directory_iterator(argv[2])) {
      if (!e.is_regular_file() || e.path().extension() != ".pcap") continue;
      int link_type = 0;
      zt::test::for_each_record(e.path().string(), link_type,
                                [&](const zt::test::CaptureRecord& r) {
                                  if (r.frame.size() <= 4096) write_seed(out, r.frame);
                                });
    }
  }
  std::printf("%d seeds in %s\n", written, out.c_str());
  return 0;
}
