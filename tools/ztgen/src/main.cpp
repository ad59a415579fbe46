// ztgen — traffic and capture generator for ztgate (DESIGN.md §1): tagged flows (valid, forged,
// replayed, expired, future, unknown identity, HDR), untagged flows, floods, malformed frames,
// fragments and IPv6 extension-header chains, written as an Ethernet pcap.
#include <boost/program_options.hpp>
#include <fmt/format.h>
#include <pcap/pcap.h>

#include <cstdio>
#include <ctime>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "generator.hpp"

namespace po = boost::program_options;
using namespace zt::ztgen;

namespace {

constexpr const char* kUsage = R"(ztgen — traffic and capture generator for ztgate

Usage: ztgen --out FILE.pcap --kind KIND[:COUNT][,KIND[:COUNT]...] [options]
       ztgen --list-kinds

Writes an Ethernet capture (pcap, microsecond timestamps) that ztgate can read through
net_pcap (--port-a net_pcap0,rx_pcap=FILE.pcap,...) or tcpreplay can send. Kinds are written
in the order given; COUNT overrides --count for one kind. Every flow kind (valid, forged,
expired, future, unknown-identity, hdr, untagged) opens --flows 5-tuples of its own: kind
number k (counting flow kinds only, from 0) uses source ports --sport + k*--flows onward,
packet i going to flow i mod --flows. TCP packets carry --tcp-flags (default S, so a flow's
packets are SYN retransmissions a stateful peer accepts).

Tags are minted with the crypto module: the key of identity i in epoch e is derived from the
--key-master file exactly as ztgate derives it from its own --key-master, --key-domain and
--epoch-length, so give both the same three values. Tag timestamps start at the time base
(now + --time-offset-ms, or --time-base-ns) and advance by --interval-ns per packet; a
capture made now verifies when ztgate reads it within its --tag-window-ms.
The same --seed, options and time base give the same bytes.

Kinds:
)";

std::string kinds_text() {
  std::string s;
  for (const auto& k : kind_table()) {
    s += fmt::format("  {:<17} {}\n", k.name, k.what);
    const auto names = set_frame_names(k.kind);
    if (!names.empty()) {
      std::string line = "      frames:";
      for (auto n : names) {
        if (line.size() + n.size() > 92) {
          s += line + "\n";
          line = "             ";
        }
        line += fmt::format(" {}", n);
      }
      s += line + "\n";
    }
  }
  return s;
}

std::expected<std::vector<KindRequest>, std::string> parse_kinds(const std::vector<std::string>& args) {
  std::vector<KindRequest> out;
  for (const auto& arg : args) {
    std::stringstream ss(arg);
    std::string item;
    while (std::getline(ss, item, ',')) {
      if (item.empty()) continue;
      KindRequest r;
      std::string name = item;
      if (const auto colon = item.find(':'); colon != std::string::npos) {
        name = item.substr(0, colon);
        const std::string n = item.substr(colon + 1);
        std::size_t used = 0;
        unsigned long long v = 0;
        try {
          v = std::stoull(n, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (n.empty() || used != n.size())
          return std::unexpected(fmt::format("--kind '{}': COUNT after ':' must be a number", item));
        r.count = v;
      }
      const auto k = kind_from_string(name);
      if (!k) return std::unexpected(fmt::format("--kind '{}': unknown kind (ztgen --list-kinds names them)", name));
      r.kind = *k;
      out.push_back(r);
    }
  }
  return out;
}

std::expected<std::uint8_t, std::string> parse_proto(const std::string& s) {
  if (s == "tcp") return kTcp;
  if (s == "udp") return kUdp;
  if (s == "icmp" || s == "icmpv6") return kIcmp;
  try {
    std::size_t used = 0;
    const unsigned long v = std::stoul(s, &used);
    if (used == s.size() && v <= 255) return static_cast<std::uint8_t>(v);
  } catch (const std::exception&) {
  }
  return std::unexpected(fmt::format("--proto '{}': expected tcp, udp, icmp or a protocol number 0-255", s));
}

std::expected<std::uint8_t, std::string> parse_tcp_flags(const std::string& s) {
  std::uint8_t f = 0;
  for (char c : s) {
    switch (c) {
      case 'F': f |= 0x01; break;
      case 'S': f |= 0x02; break;
      case 'R': f |= 0x04; break;
      case 'P': f |= 0x08; break;
      case 'A': f |= 0x10; break;
      case 'U': f |= 0x20; break;
      default:
        return std::unexpected(fmt::format("--tcp-flags '{}': letters F S R P A U only (e.g. S, SA, A, FA)", s));
    }
  }
  return f;
}

int run(int argc, char** argv) {
  Config c;
  std::string out, src = "10.10.0.1", dst = "10.10.0.2", src6 = "fd00:10::1", dst6 = "fd00:10::2";
  std::string outer_src, outer_dst, proto = "tcp", flags = "S", key_master, coverage = "full", alg = "aes256";
  std::string src_mac = "02:00:00:00:00:0a", dst_mac = "02:00:00:00:00:0b";
  std::vector<std::string> kinds;
  unsigned sport = c.sport, dport = c.dport, lane = 0;
  long long time_offset_ms = 0;

  po::options_description what("Output and traffic");
  what.add_options()
      ("help,h", "print this help and exit")
      ("list-kinds", "print the kinds and the frames of each set kind, then exit")
      ("out,o", po::value(&out), "capture to write ('-': standard output)")
      ("kind,k", po::value(&kinds)->composing(), "KIND[:COUNT] list, comma separated (repeatable)")
      ("count,n", po::value(&c.count)->default_value(1),
       "packets per kind without its own COUNT (set kinds without COUNT: the whole set once)")
      ("flows", po::value(&c.flows)->default_value(1), "distinct 5-tuples per flow kind")
      ("size", po::value(&c.size)->default_value(64),
       "Ethernet frame size (bytes, no FCS) of the plain packet or of a tagged packet's inner packet; "
       "random payload fills it (tagged frames are 72 bytes larger on the wire over IPv4)")
      ("seed", po::value(&c.seed)->default_value(1), "seed of every random choice (payloads, spoofed sources, flipped bits)");

  po::options_description addr("Addresses and ports");
  addr.add_options()
      ("src", po::value(&src)->default_value(src), "source address of the (inner) packets (IPv4 or IPv6)")
      ("dst", po::value(&dst)->default_value(dst), "destination address of the (inner) packets")
      ("src6", po::value(&src6)->default_value(src6), "IPv6 source of the IPv6 frames of the set kinds when --src is IPv4")
      ("dst6", po::value(&dst6)->default_value(dst6), "IPv6 destination of the same")
      ("outer-src", po::value(&outer_src), "outer (Geneve) source address (default: --src)")
      ("outer-dst", po::value(&outer_dst), "outer (Geneve) destination address (default: --dst)")
      ("sport", po::value(&sport)->default_value(sport), "first source port (see the flow kinds above)")
      ("dport", po::value(&dport)->default_value(dport), "destination port (ICMP: unused)")
      ("proto", po::value(&proto)->default_value(proto), "tcp, udp, icmp (icmpv6 over IPv6) or a protocol number")
      ("tcp-flags", po::value(&flags)->default_value(flags), "TCP flags of flow packets: letters F S R P A U")
      ("src-mac", po::value(&src_mac)->default_value(src_mac), "Ethernet source address")
      ("dst-mac", po::value(&dst_mac)->default_value(dst_mac), "Ethernet destination address");

  po::options_description tag("Identity tags (same meaning as ztgate's options)");
  tag.add_options()
      ("identity", po::value(&c.identity)->default_value(c.identity), "identity id of the tagged kinds (>= 256)")
      ("unknown-identity", po::value(&c.unknown_identity)->default_value(c.unknown_identity),
       "identity id of the unknown-identity kind (one the policy does not know)")
      ("key-master", po::value(&key_master), "file with the trust domain's master secret in hex (>= 32 bytes)")
      ("key-domain", po::value(&c.domain)->default_value(c.domain), "trust domain name of the keys")
      ("epoch-length", po::value(&c.epoch_length_s)->default_value(c.epoch_length_s), "key epoch length in seconds")
      ("coverage", po::value(&coverage)->default_value(coverage),
       "full|hdr — what the MAC of valid/forged/expired/future/unknown-identity tags covers (hdr: first 16 L4 bytes)")
      ("alg", po::value(&alg)->default_value(alg), "aes256|aes128 — the tag's CMAC algorithm")
      ("lane", po::value(&lane)->default_value(0), "sender lane written in the tags")
      ("vni", po::value(&c.vni)->default_value(0), "Geneve VNI (24 bits)")
      ("time-offset-ms", po::value(&time_offset_ms)->default_value(0),
       "time base = now (CLOCK_REALTIME) + this many ms; e.g. 1000 for a capture ztgate reads a second later")
      ("time-base-ns", po::value(&c.time_base_ns),
       "time base as absolute ns since the Unix epoch, instead of now (reproducible captures)")
      ("interval-ns", po::value(&c.interval_ns)->default_value(c.interval_ns),
       "time between consecutive packets (tag timestamps and capture times)");

  po::options_description all;
  all.add(what).add(addr).add(tag);
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, all), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    fmt::print(stderr, "ztgen: {} (see ztgen --help)\n", e.what());
    return 2;
  }
  if (vm.count("help")) {
    std::cout << kUsage << kinds_text() << "\n" << all << "\n";
    return 0;
  }
  if (vm.count("list-kinds")) {
    std::cout << kinds_text();
    return 0;
  }
  const auto fail = [](const std::string& msg) {
    fmt::print(stderr, "ztgen: {}\n", msg);
    return 2;
  };
  if (out.empty()) return fail("--out: required (a capture file, or '-' for standard output)");
  auto k = parse_kinds(kinds);
  if (!k) return fail(k.error());
  c.kinds = std::move(*k);
  const auto parse_a = [](const std::string& v, Addr& to) {
    auto a = parse_addr(v);
    if (!a) return false;
    to = *a;
    return true;
  };
  for (auto [name, v, to] : {std::tuple{"--src", &src, &c.src}, std::tuple{"--dst", &dst, &c.dst},
                             std::tuple{"--src6", &src6, &c.src6}, std::tuple{"--dst6", &dst6, &c.dst6}})
    if (!parse_a(*v, *to)) return fail(fmt::format("{} '{}': not an IPv4 or IPv6 address", name, *v));
  for (auto [name, v, to] : {std::tuple{"--outer-src", &outer_src, &c.outer_src},
                             std::tuple{"--outer-dst", &outer_dst, &c.outer_dst}}) {
    if (v->empty()) continue;
    Addr a;
    if (!parse_a(*v, a)) return fail(fmt::format("{} '{}': not an IPv4 or IPv6 address", name, *v));
    *to = a;
  }
  for (auto [name, v, to] : {std::tuple{"--src-mac", &src_mac, &c.src_mac}, std::tuple{"--dst-mac", &dst_mac, &c.dst_mac}}) {
    auto m = parse_mac(*v);
    if (!m) return fail(fmt::format("{} '{}': expected six hex bytes, e.g. 02:00:00:00:00:0a", name, *v));
    *to = *m;
  }
  if (sport == 0 || sport > 65535) return fail(fmt::format("--sport {}: expected 1 to 65535", sport));
  if (dport > 65535) return fail(fmt::format("--dport {}: expected 0 to 65535", dport));
  if (lane > 65535) return fail(fmt::format("--lane {}: expected 0 to 65535", lane));
  if (c.vni > 0xFFFFFF) return fail(fmt::format("--vni {}: expected 0 to 16777215", c.vni));
  c.sport = static_cast<std::uint16_t>(sport);
  c.dport = static_cast<std::uint16_t>(dport);
  c.lane = static_cast<std::uint16_t>(lane);
  auto p = parse_proto(proto);
  if (!p) return fail(p.error());
  c.proto = *p;
  auto f = parse_tcp_flags(flags);
  if (!f) return fail(f.error());
  c.tcp_flags = *f;
  if (coverage == "full")
    c.coverage = zt::crypto::Coverage::full;
  else if (coverage == "hdr")
    c.coverage = zt::crypto::Coverage::hdr;
  else
    return fail(fmt::format("--coverage '{}': expected full or hdr", coverage));
  if (alg == "aes256")
    c.alg = zt::crypto::Alg::aes256_cmac;
  else if (alg == "aes128")
    c.alg = zt::crypto::Alg::aes128_cmac;
  else
    return fail(fmt::format("--alg '{}': expected aes256 or aes128", alg));
  if (!key_master.empty()) {
    auto m = read_hex_secret(key_master);
    if (!m) return fail(m.error());
    c.master = std::move(*m);
  }
  if (!vm.count("time-base-ns")) {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    c.time_base_ns = static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
  }
  c.time_base_ns += time_offset_ms * 1'000'000;

  pcap_t* dead = pcap_open_dead(DLT_EN10MB, 65535);
  if (dead == nullptr) return fail("libpcap: pcap_open_dead failed");
  pcap_dumper_t* dump = out == "-" ? pcap_dump_fopen(dead, stdout) : pcap_dump_open(dead, out.c_str());
  if (dump == nullptr) {
    const std::string err = pcap_geterr(dead);
    pcap_close(dead);
    return fail(fmt::format("--out '{}': {}", out, err));
  }
  auto sum = generate(c, [&](std::span<const std::uint8_t> frame, std::int64_t t) {
    pcap_pkthdr h{};
    h.ts.tv_sec = static_cast<time_t>(t / 1'000'000'000);
    h.ts.tv_usec = static_cast<suseconds_t>((t % 1'000'000'000) / 1000);
    h.caplen = h.len = static_cast<bpf_u_int32>(frame.size());
    pcap_dump(reinterpret_cast<u_char*>(dump), &h, frame.data());
  });
  const bool flushed = pcap_dump_flush(dump) == 0;
  pcap_dump_close(dump);
  pcap_close(dead);
  if (!sum) {
    if (out != "-") std::remove(out.c_str());
    return fail(sum.error());
  }
  if (!flushed) return fail(fmt::format("--out '{}': write failed", out));
  std::string by_kind;
  for (const auto& [kind, n] : sum->written) by_kind += fmt::format(" {}={}", to_string(kind), n);
  fmt::print(stderr, "ztgen: {} packets to {}:{} (epoch {} of domain '{}')\n", sum->total, out == "-" ? "stdout" : out,
             by_kind, sum->epoch, c.domain);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    fmt::print(stderr, "ztgen: {}\n", e.what());
    return 1;
  }
}
