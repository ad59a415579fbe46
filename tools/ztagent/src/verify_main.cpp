// ztagent-verify: checks the identity tags in a capture with the crypto module's verifier
// (IPsec-MB, the appliance's path), independently of the agent's minting (OpenSSL). For tests and
// for operators debugging an agent: `tcpdump -w x.pcap udp port 6081`, then
//   ztagent-verify --key-master FILE --identity 1001 x.pcap
// Each packet is verified at its capture time. Prints a JSON summary on stdout; exit 0 when
// every Geneve packet carried a tag that verified, 1 otherwise, 2 on bad usage.
#include <pcap/pcap.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <ctime>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "key_source.hpp"
#include "zt/crypto/replay_filter.hpp"
#include "zt/crypto/verifier.hpp"

using namespace zt;

int main(int argc, char** argv) {
  agent::LocalKeyConfig cfg;
  std::string pcap_path;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        fmt::print(stderr, "ztagent-verify: {} needs a value\n", a);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--key-master") cfg.master_file = val();
    else if (a == "--key-domain") cfg.domain = val();
    else if (a == "--epoch-length") cfg.epoch_length_s = std::stoll(val());
    else if (a == "--identity") cfg.peer_identities.push_back(static_cast<std::uint32_t>(std::stoul(val())));
    else if (a == "--help" || a == "-h") {
      std::cout << "Usage: ztagent-verify --key-master FILE [--key-domain D] [--epoch-length S] "
                   "--identity ID [--identity ID ...] CAPTURE.pcap\n"
                   "Verifies every Geneve identity tag in the capture at its capture time (JSON "
                   "summary on stdout; exit 0 only if all verified).\n";
      return 0;
    } else if (!a.empty() && a[0] == '-') {
      fmt::print(stderr, "ztagent-verify: unknown option {}\n", a);
      return 2;
    } else pcap_path = a;
  }
  if (pcap_path.empty() || cfg.peer_identities.empty()) {
    fmt::print(stderr, "ztagent-verify: need --identity and a capture (see --help)\n");
    return 2;
  }
  cfg.identity = cfg.peer_identities.front();
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  auto src = agent::make_local_key_source(cfg, ts.tv_sec * crypto::kNsPerSec + ts.tv_nsec);
  if (!src) {
    fmt::print(stderr, "ztagent-verify: {}\n", src.error());
    return 2;
  }
  auto verifier = crypto::Verifier::create();
  crypto::ReplayFilterConfig rc;
  rc.packets_per_second = 1e5;
  auto replay = crypto::ReplayFilter::create(rc);
  if (!verifier || !replay) {
    fmt::print(stderr, "ztagent-verify: cannot create the verifier\n");
    return 2;
  }
  char errbuf[PCAP_ERRBUF_SIZE];
  pcap_t* pc = pcap_open_offline_with_tstamp_precision(pcap_path.c_str(), PCAP_TSTAMP_PRECISION_NANO, errbuf);
  if (!pc) {
    fmt::print(stderr, "ztagent-verify: {}: {}\n", pcap_path, errbuf);
    return 2;
  }
  const int dlt = pcap_datalink(pc);
  std::map<std::int64_t, std::shared_ptr<const crypto::KeyRing>> rings;
  std::map<std::string, std::uint64_t> reasons;
  std::set<std::uint64_t> epochs;
  std::set<std::uint32_t> identities;
  std::uint64_t frames = 0, geneve = 0, verified = 0, malformed = 0;
  pcap_pkthdr* h;
  const u_char* data;
  while (pcap_next_ex(pc, &h, &data) == 1) {
    ++frames;
    std::size_t off = 0;
    std::uint16_t ethertype = 0;
    if (dlt == DLT_EN10MB) {
      if (h->caplen < 14) continue;
      off = 14;
      ethertype = static_cast<std::uint16_t>(data[12] << 8 | data[13]);
      while ((ethertype == 0x8100 || ethertype == 0x88A8) && h->caplen >= off + 4) {
        ethertype = static_cast<std::uint16_t>(data[off + 2] << 8 | data[off + 3]);
        off += 4;
      }
    } else if (dlt == DLT_LINUX_SLL) {
      if (h->caplen < 16) continue;
      off = 16;
      ethertype = static_cast<std::uint16_t>(data[14] << 8 | data[15]);
    } else if (dlt == DLT_RAW) {
      ethertype = h->caplen && (data[0] >> 4) == 6 ? 0x86DD : 0x0800;
    } else {
      fmt::print(stderr, "ztagent-verify: unsupported link type {}\n", dlt);
      return 2;
    }
    if (ethertype != 0x0800 && ethertype != 0x86DD) continue;
    std::span<const std::uint8_t> ip(data + off, h->caplen - off);
    // Only UDP to 6081 counts as Geneve; anything else (ARP, plain replies) is skipped.
    crypto::GeneveView gv;
    const auto pe = crypto::parse_geneve_packet(ip, gv);
    if (pe == crypto::PacketError::not_udp || pe == crypto::PacketError::not_geneve_port) continue;
    ++geneve;
    crypto::InnerView iv;
    if (pe != crypto::PacketError::none || crypto::parse_inner_ip(gv.inner, iv) != crypto::PacketError::none) {
      ++malformed;
      ++reasons[std::string(crypto::to_string(pe))];
      continue;
    }
    const std::int64_t now = static_cast<std::int64_t>(h->ts.tv_sec) * crypto::kNsPerSec + h->ts.tv_usec;
    const std::int64_t e = agent::epoch_at((*src)->epoch_policy(), now);
    auto& ring = rings[e];
    if (!ring) {
      auto r = (*src)->inbound_ring(static_cast<std::uint64_t>(e));
      if (!r) {
        fmt::print(stderr, "ztagent-verify: {}\n", r.error());
        return 2;
      }
      ring = *r;
    }
    crypto::VerifyInput in{gv.tag_body, iv, true};
    crypto::VerifyResult out;
    verifier->verify_burst(*ring, now, {&in, 1}, {&out, 1}, &*replay);
    ++reasons[std::string(crypto::to_string(out.reason))];
    if (out.reason == crypto::TagReject::none) {
      ++verified;
      epochs.insert(out.epoch);
      identities.insert(out.identity);
    }
  }
  pcap_close(pc);
  nlohmann::json j;
  j["frames"] = frames;
  j["geneve"] = geneve;
  j["verified"] = verified;
  j["malformed"] = malformed;
  j["reasons"] = reasons;
  j["epochs"] = epochs;
  j["identities"] = identities;
  std::cout << j.dump() << '\n';
  return geneve > 0 && verified == geneve ? 0 : 1;
}
