// Replays every capture in ../shared/testdata/pcaps (real traffic and the malformed packets that
// crashed other parsers) through parse_frame and through parse_mbuf on segmented chains, and
// checks that both agree and that every packet is accounted for: parsed + dropped by reason =
// packets in the file. Then checks what an operator expects of some well-known files.
//
// The folder comes from $ZT_PCAP_DIR, else from the build (meson passes ZT_PCAP_DIR). A missing
// folder fails the test: a replay that silently replays nothing proves nothing.
#include <gtest/gtest.h>

#include <array>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>

#include "capture_frames.hpp"
#include "mbuf_chain.hpp"
#include "packet_builder.hpp"
#include "parse_helpers.hpp"
#include "zt/dataplane/mbuf_parser.hpp"

#ifndef ZT_PCAP_DIR
#error "ZT_PCAP_DIR must name the capture folder (set by tests/dataplane/meson.build)"
#endif

namespace zt::test {
namespace {

namespace fs = std::filesystem;
using dp::ParsedPacket;
using rules::DropReason;
using rules::kDropReasonCount;

struct FileResult {
  int link_type = -1;
  std::uint64_t received = 0;
  std::uint64_t parsed = 0;
  std::uint64_t truncated_records = 0;  // caplen < wire length
  std::uint64_t truncated_parsed = 0;   // ... of which the parser accepted
  std::array<std::uint64_t, kDropReasonCount> drops{};
  std::uint64_t segment_mismatches = 0;
  std::uint64_t datagram_past_frame = 0;  // accepted, yet its IP lengths reach past the bytes
  std::string error;  // could not be opened or link type unknown

  std::uint64_t dropped() const {
    std::uint64_t n = 0;
    for (const auto d : drops) n += d;
    return n;
  }
  std::uint64_t drops_of(DropReason r) const { return drops[static_cast<std::size_t>(r)]; }
};

fs::path pcap_dir() {
  if (const char* env = std::getenv("ZT_PCAP_DIR"); env != nullptr && *env != '\0') return env;
  return ZT_PCAP_DIR;
}

// SUMMARY.tsv: "./<path>\tdlt=N\tpkts=N\t..." — the record count each file must replay.
std::map<std::string, std::uint64_t> expected_counts(const fs::path& dir) {
  std::map<std::string, std::uint64_t> out;
  std::ifstream in(dir / "SUMMARY.tsv");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string path, field;
    std::getline(fields, path, '\t');
    while (std::getline(fields, field, '\t'))
      if (field.rfind("pkts=", 0) == 0) out[fs::path(path).lexically_normal().string()] =
          std::stoull(field.substr(5));
  }
  return out;
}

// Segment layouts for parse_mbuf: a cut inside the Ethernet header, one in the middle, and three
// segments at places derived from the packet index so boundaries land everywhere across a file.
constexpr std::size_t kMaxSegment = 60000;

std::vector<std::vector<std::size_t>> layouts(std::size_t n, std::uint64_t index) {
  std::vector<std::vector<std::size_t>> out;
  if (n < 2) return out;
  out.push_back({std::min<std::size_t>(7, n - 1)});
  out.push_back({n / 2 == 0 ? 1 : n / 2});
  if (n >= 3) {
    std::size_t a = 1 + (index * 13 + 5) % (n - 1);
    std::size_t b = 1 + (index * 29 + n / 3) % (n - 1);
    if (a > b) std::swap(a, b);
    if (a != b) out.push_back({a, b});
  }
  // An mbuf segment holds at most 65535 bytes (16-bit data_len): the big-TCP captures need more
  // segments, as a NIC would deliver them.
  for (auto& cuts : out)
    for (std::size_t at = cuts.back() + kMaxSegment; at < n; at += kMaxSegment) cuts.push_back(at);
  return out;
}

FileResult replay_file(const fs::path& file) {
  FileResult r;
  r.error = for_each_record(file, r.link_type, [&](const CaptureRecord& rec) {
    const Bytes& frame = rec.frame;
    const std::uint64_t index = r.received++;
    r.truncated_records += rec.truncated;

    ParsedPacket flat;
    // pkt_len is what was captured: a truncated record is a frame that really ends there.
    const DropReason reason = parse(frame, flat);
    if (reason == DropReason::none) {
      ++r.parsed;
      r.truncated_parsed += rec.truncated;
      const auto ends_inside = [&](const dp::IpLayer& l) {
        return l.l4_off + std::uint64_t{l.l4_len} <= frame.size();
      };
      if (flat.kind != dp::FrameKind::arp &&
          (!ends_inside(flat.outer) ||
           (flat.kind == dp::FrameKind::geneve && !ends_inside(flat.inner))))
        ++r.datagram_past_frame;
    } else {
      ++r.drops[static_cast<std::size_t>(reason)];
    }

    for (const auto& cuts : layouts(frame.size(), index)) {
      const MbufChain chain(frame, cuts);
      std::array<std::uint8_t, dp::kParseWindow> scratch{};
      ParsedPacket seg;
      if (dp::parse_mbuf(chain.head(), seg, scratch) != reason || !(seg == flat))
        ++r.segment_mismatches;
    }
  });
  return r;
}

// "./tcpdump/x.pcap": the names SUMMARY.tsv uses.
std::string capture_name(const fs::path& file, const fs::path& dir) {
  return (fs::path(".") / fs::relative(file, dir)).lexically_normal().string();
}

// Replays the whole folder once; the tests below look at the results.
const std::map<std::string, FileResult>& results() {
  static const std::map<std::string, FileResult> all = [] {
    std::map<std::string, FileResult> out;
    const fs::path dir = pcap_dir();
    if (!fs::is_directory(dir)) return out;
    for (const auto& e : fs::recursive_directory_iterator(dir)) {
      const auto ext = e.path().extension();
      if (e.is_regular_file() && (ext == ".pcap" || ext == ".pcapng" || ext == ".cap"))
        out[capture_name(e.path(), dir)] = replay_file(e.path());
    }
    return out;
  }();
  return all;
}

const FileResult& result(const std::string& name) {
  static const FileResult missing{.error = "not in the capture folder"};
  const auto& all = results();
  const auto it = all.find(name);
  return it == all.end() ? missing : it->second;
}

void print_table(const std::map<std::string, FileResult>& all) {
  std::ostringstream os;
  os << std::left << std::setw(62) << "capture" << std::right << std::setw(5) << "dlt"
     << std::setw(7) << "pkts" << std::setw(7) << "parsed" << std::setw(7) << "drop"
     << std::setw(6) << "trunc" << "  drops by reason\n";
  std::uint64_t pkts = 0, parsed = 0, dropped = 0;
  std::array<std::uint64_t, kDropReasonCount> total{};
  for (const auto& [name, r] : all) {
    os << std::left << std::setw(62) << name << std::right << std::setw(5) << r.link_type
       << std::setw(7) << r.received << std::setw(7) << r.parsed << std::setw(7) << r.dropped()
       << std::setw(6) << r.truncated_records << "  ";
    for (std::size_t i = 0; i < kDropReasonCount; ++i)
      if (r.drops[i] != 0) {
        os << rules::to_string(static_cast<DropReason>(i)) << "=" << r.drops[i] << " ";
        total[i] += r.drops[i];
      }
    if (!r.error.empty()) os << "ERROR: " << r.error;
    os << "\n";
    pkts += r.received;
    parsed += r.parsed;
    dropped += r.dropped();
  }
  os << all.size() << " files, " << pkts << " packets, " << parsed << " parsed, " << dropped
     << " dropped\n";
  for (std::size_t i = 0; i < kDropReasonCount; ++i)
    if (total[i] != 0)
      os << "  " << std::left << std::setw(32) << rules::to_string(static_cast<DropReason>(i))
         << std::right << std::setw(6) << total[i] << "\n";
  std::cout << os.str() << std::flush;
}

TEST(CaptureReplay, FindsTheCaptureFolder) {
  const fs::path dir = pcap_dir();
  ASSERT_TRUE(fs::is_directory(dir))
      << "capture folder " << dir << " is missing; set ZT_PCAP_DIR to the folder holding "
      << "shared/testdata/pcaps (expected next to the repository)";
  ASSERT_GE(results().size(), 100u) << "expected the ~117 shared captures in " << dir;
}

TEST(CaptureReplay, AccountsForEveryPacketOfEveryCapture) {
  const auto& all = results();
  ASSERT_FALSE(all.empty()) << "no captures found in " << pcap_dir();
  print_table(all);
  const auto counts = expected_counts(pcap_dir());
  for (const auto& [name, r] : all) {
    SCOPED_TRACE(name);
    EXPECT_EQ(r.error, "");
    EXPECT_EQ(r.parsed + r.dropped(), r.received);
    if (const auto it = counts.find(name); it != counts.end()) {
      EXPECT_EQ(r.received, it->second) << "SUMMARY.tsv lists a different packet count";
    }
  }
}

TEST(CaptureReplay, SegmentedMbufsGiveTheSameVerdictAsContiguousFrames) {
  for (const auto& [name, r] : results()) EXPECT_EQ(r.segment_mismatches, 0u) << name;
}

TEST(CaptureReplay, NeverAcceptsADatagramCutShortByTheCapture) {
  // Truncated records whose cut fell only on Ethernet padding are whole datagrams and may pass;
  // any other truncated record must be dropped.
  std::uint64_t truncated = 0, truncated_parsed = 0;
  for (const auto& [name, r] : results()) {
    EXPECT_EQ(r.datagram_past_frame, 0u) << name;
    truncated += r.truncated_records;
    truncated_parsed += r.truncated_parsed;
  }
  EXPECT_GE(truncated, 50u) << "the shared captures hold dozens of truncated records";
  EXPECT_LT(truncated_parsed, truncated);
}

TEST(CaptureReplay, DropsSomethingInEveryCaptureNamedForAMalformation) {
  // tcpdump and zeek name the captures that crashed or fooled a parser after the bug.
  std::size_t files = 0;
  for (const auto& [name, r] : results()) {
    const auto base = fs::path(name).filename().string();
    bool malformed = false;
    for (const char* word : {"heapoverflow", "invalid", "oobr", "asan", "trunc", "bad-version"})
      malformed = malformed || base.find(word) != std::string::npos;
    if (!malformed) continue;
    ++files;
    EXPECT_GE(r.dropped(), 1u) << name;
  }
  EXPECT_GE(files, 30u);
}

TEST(CaptureReplay, ParsesEveryPacketOfCleanCaptures) {
  for (const char* name : {
           "snort3_demo/codecs/vlan/double_tagging_0x88A8_0x8100.pcap",
           "snort3_demo/inspectors/normalizer/syn_syn.pcap",
           "tcpdump/802.1ad_QinQ.pcap",
           "tcpdump/espudp1.pcap",
           "tcpdump/icmpv6-rfc7112.pcap",
           "tcpdump/tcp_rst_data.pcap",
           "tcpdump/vxlan.pcap",
           "zeek/http-qinq-0.pcap",
           "zeek/ipv4/fragmented-3.pcap",
           "zeek/ipv6-fragmented-dns.pcap",
           "zeek/tcp/handshake-reorder.pcap",
           "zeek/tcp/payload-syn.pcap",  // raw IP link type
           "zeek/tcp/window-scale-range.pcap",
           "zeek/tunnels/gre-within-gre.pcap",
           "zeek/tunnels/gtp/gtp1_gn_normal_incl_fragmentation.pcap",
       }) {
    const FileResult& r = result(name);
    EXPECT_EQ(r.error, "") << name;
    EXPECT_GT(r.received, 0u) << name;
    EXPECT_EQ(r.parsed, r.received) << name;
  }
}

TEST(CaptureReplay, NamesTheExpectedReasonInKnownHostileCaptures) {
  struct Expect {
    const char* name;
    DropReason reason;
    std::uint64_t count;
  };
  for (const auto& e : std::initializer_list<Expect>{
           {"tcpdump/ipv6-routing-header.pcap", DropReason::ipv6_routing_type0, 4},
           {"zeek/ipv6-hbh-routing0.pcap", DropReason::ipv6_routing_type0, 1},
           {"zeek/vlan-qinqinq.pcap", DropReason::vlan_too_deep, 14},
           {"zeek/ipv4/fragmented-syn.pcap", DropReason::frag_first_too_short, 1},
           {"zeek/ipv4/fragmented-1.pcap", DropReason::ipv4_bad_fragment_size, 1},
           {"zeek/chksums/ip4-bad-chksum.pcap", DropReason::ipv4_bad_checksum, 1},
           {"zeek/ipv6_zero_len_ah.pcap", DropReason::ipv6_bad_ext_header, 1},
           {"zeek/ipv6-reassembly-state-leak.pcap", DropReason::udp_bad_length, 2},
           {"tcpdump/ipv6_jumbogram_1.pcap", DropReason::ipv6_jumbogram, 1},
           {"tcpdump/ipv4_invalid_hdr_length.pcap", DropReason::ipv4_bad_ihl, 1},
           {"tcpdump/ipv6_39_byte_header.pcap", DropReason::ipv6_truncated, 1},
           {"tcpdump/LINKTYPE_IPV4_invalid.pcap", DropReason::ipv4_bad_version, 1},
           {"tcpdump/LINKTYPE_IPV6_invalid.pcap", DropReason::ipv6_bad_version, 1},
           {"tcpdump/ipv6-bad-version.pcap", DropReason::ipv6_bad_version, 2},
           // Crafted TCP segments without ACK that are neither SYN nor RST (no flags, a bare FIN):
           // no stack sends them after the SYN (RFC 9293).
           {"snort3_demo/codecs/udp_checksum/ip6_cks.pcap", DropReason::tcp_bad_flags, 2},
           {"zeek/ipv4/fragmented-4.pcap", DropReason::tcp_bad_flags, 2},
           // These Geneve captures carry Ethernet, not IP: nothing an identity tag can bind.
           {"tcpdump/geneve.pcap", DropReason::geneve_inner_unsupported, 39},
           {"zeek/pppoe-over-qinq.pcap", DropReason::ethertype_unsupported, 86},
       }) {
    const FileResult& r = result(e.name);
    EXPECT_EQ(r.error, "") << e.name;
    EXPECT_EQ(r.drops_of(e.reason), e.count) << e.name << ": " << rules::to_string(e.reason);
  }
}

}  // namespace
}  // namespace zt::test
