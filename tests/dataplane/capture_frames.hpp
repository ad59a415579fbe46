// Reads capture files (pcap or pcapng, through libpcap) as Ethernet frames the parser takes:
// link types without Ethernet get a synthetic Ethernet header whose EtherType says what the link
// header said (or, for raw IP, what the version nibble says). Used by the capture replay test and
// by the fuzz seed generator.
#pragma once

#include <pcap/pcap.h>

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace zt::test {

struct CaptureRecord {
  std::vector<std::uint8_t> frame;  // Ethernet frame of the captured bytes
  std::uint32_t wire_len = 0;       // length on the wire; > captured bytes for a cut record
  bool truncated = false;
};

inline std::optional<std::vector<std::uint8_t>> to_ethernet(int link_type,
                                                            const std::uint8_t* data,
                                                            std::size_t caplen) {
  auto with_eth = [&](std::uint16_t ethertype, std::size_t strip) {
    std::vector<std::uint8_t> f{0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01,
                                static_cast<std::uint8_t>(ethertype >> 8),
                                static_cast<std::uint8_t>(ethertype)};
    if (caplen > strip) f.insert(f.end(), data + strip, data + caplen);
    return f;
  };
  auto by_version = [&](std::size_t strip) -> std::uint16_t {
    return caplen > strip && (data[strip] >> 4) == 6 ? 0x86DD : 0x0800;
  };
  switch (link_type) {
    case DLT_EN10MB:
      return std::vector<std::uint8_t>(data, data + caplen);
    case DLT_RAW:
    case 101:  // LINKTYPE_RAW, should libpcap hand it through unmapped
      return with_eth(by_version(0), 0);
    case DLT_IPV4:
      return with_eth(0x0800, 0);
    case DLT_IPV6:
      return with_eth(0x86DD, 0);
    case DLT_SLIP:  // 16-byte header: direction, then a compressed-SLIP header copy
      return with_eth(by_version(16), 16);
    case DLT_LINUX_SLL:  // 16-byte cooked header, protocol in bytes 14-15
      return with_eth(caplen >= 16 ? static_cast<std::uint16_t>(data[14] << 8 | data[15]) : 0,
                      16);
    case DLT_LINUX_SLL2:  // 20-byte cooked header, protocol in bytes 0-1
      return with_eth(caplen >= 2 ? static_cast<std::uint16_t>(data[0] << 8 | data[1]) : 0, 20);
    default:
      return std::nullopt;
  }
}

// Calls `fn` for each record of `path`. Returns "" or what went wrong (open/read error, unknown
// link type); `link_type` receives the file's link type.
inline std::string for_each_record(const std::string& path, int& link_type,
                                   const std::function<void(const CaptureRecord&)>& fn) {
  std::array<char, PCAP_ERRBUF_SIZE> err{};
  pcap_t* p = pcap_open_offline(path.c_str(), err.data());
  if (p == nullptr) return std::string("cannot open: ") + err.data();
  link_type = pcap_datalink(p);
  std::string error;
  pcap_pkthdr* hdr = nullptr;
  const std::uint8_t* data = nullptr;
  int rc = 0;
  while ((rc = pcap_next_ex(p, &hdr, &data)) == 1) {
    auto frame = to_ethernet(link_type, data, hdr->caplen);
    if (!frame) {
      error = "unsupported link type " + std::to_string(link_type);
      break;
    }
    fn(CaptureRecord{std::move(*frame), hdr->len, hdr->caplen < hdr->len});
  }
  if (rc == PCAP_ERROR && error.empty()) error = std::string("read error: ") + pcap_geterr(p);
  pcap_close(p);
  return error;
}

}  // namespace zt::test
