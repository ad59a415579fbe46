// libFuzzer target for the packet parser. Each input is one frame. It is parsed the way the
// worker parses it (window = first min(size, kParseWindow) bytes, pkt_len = size), checked
// against the invariants a caller relies on, and parsed again through parse_mbuf on 2- and
// 3-segment chains cut at places derived from the input, and through the full parser alone and
// the fast path alone (parser.hpp): any difference is a crash.
#include <array>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "../dataplane/mbuf_chain.hpp"
#include "zt/dataplane/mbuf_parser.hpp"
#include "zt/dataplane/parser.hpp"

namespace {

using zt::dp::DropReason;
using zt::dp::FrameKind;
using zt::dp::IpLayer;
using zt::dp::kParseWindow;
using zt::dp::ParsedPacket;

void require(bool ok) {
  if (!ok) __builtin_trap();
}

// What every accepted layer promises: its headers sit inside the window, its datagram inside
// the frame.
void check_layer(const IpLayer& l, std::size_t window, std::size_t pkt_len) {
  require(l.version == 4 || l.version == 6);
  require(l.l3_off < l.l4_off);
  require(l.l4_off + std::size_t{l.l4_hdr_len} <= window);
  require(l.l4_off + std::size_t{l.l4_len} <= pkt_len);
  require(l.frag != zt::dp::FragKind::later || (l.sport == 0 && l.dport == 0));
}

void check_parsed(const ParsedPacket& p, std::size_t window, std::size_t pkt_len) {
  require(p.pkt_len == pkt_len);
  require(p.l2_len <= window && p.vlan_count <= 2);
  if (p.kind == FrameKind::arp) return;
  check_layer(p.outer, window, pkt_len);
  if (p.kind != FrameKind::geneve) return;
  require(p.geneve_off == p.outer.l4_off + 8u);
  require(p.tag_off == 0 || p.tag_off + zt::dp::kTagBodyLen <= window);
  check_layer(p.inner, window, pkt_len);
  require(p.inner.l3_off >= p.geneve_off + 8u);
  require(p.inner.frag == zt::dp::FragKind::none);
}

std::uint32_t mix(const std::uint8_t* data, std::size_t size) {
  std::uint32_t h = 2166136261u;  // FNV-1a over the first bytes: cheap, input-derived
  for (std::size_t i = 0; i < size && i < 64; ++i) h = (h ^ data[i]) * 16777619u;
  return h ^ static_cast<std::uint32_t>(size);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 60000) return 0;  // one mbuf segment holds at most 65535 bytes
  const std::size_t wlen = size < kParseWindow ? size : kParseWindow;
  // The window in its own allocation of exactly its size: a read past it is an ASan report.
  const std::vector<std::uint8_t> window(data, data + wlen);
  ParsedPacket flat;
  const DropReason reason =
      zt::dp::parse_frame(window, static_cast<std::uint32_t>(size), flat);
  require(static_cast<std::size_t>(reason) < zt::rules::kDropReasonCount);
  if (reason == DropReason::none) check_parsed(flat, wlen, size);
  // The fast path (common frames) answers exactly as the full parser: it never takes a frame
  // the full parser refuses, and what it fills is field for field the full parser's.
  ParsedPacket full, fast;
  require(zt::dp::parse_frame_full(window, static_cast<std::uint32_t>(size), full) == reason);
  if (reason == DropReason::none) require(full == flat);
  if (zt::dp::parse_frame_fast(window, static_cast<std::uint32_t>(size), fast))
    require(reason == DropReason::none && fast == full);

  if (size < 3) return 0;
  const std::uint32_t h = mix(data, size);
  std::size_t a = 1 + h % (size - 1);
  std::size_t b = 1 + (h >> 11) % (size - 1);
  if (a > b) std::swap(a, b);
  std::array<std::uint8_t, kParseWindow> scratch{};
  for (int layout = 0; layout < 2; ++layout) {
    std::vector<std::size_t> cuts{a};
    if (layout == 1 && b != a) cuts.push_back(b);
    const zt::test::MbufChain chain({data, size}, cuts);
    ParsedPacket seg;
    require(zt::dp::parse_mbuf(chain.head(), seg, scratch) == reason);
    require(seg == flat);
  }
  return 0;
}
