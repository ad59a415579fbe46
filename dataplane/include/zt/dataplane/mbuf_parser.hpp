// Feeds the parser from an rte_mbuf, single- or multi-segment.
#pragma once

#include <rte_mbuf.h>

#include <algorithm>

#include "zt/dataplane/parser.hpp"

namespace zt::dp {

// Parses the frame in `m`. When the first segment holds the whole inspection window the parser
// reads it in place; otherwise the window is gathered across segments into `scratch` first.
inline DropReason parse_mbuf(const rte_mbuf* m, ParsedPacket& out,
                             std::array<std::uint8_t, kParseWindow>& scratch) noexcept {
  const std::uint32_t pkt_len = rte_pktmbuf_pkt_len(m);
  const std::uint32_t want = std::min<std::uint32_t>(pkt_len, kParseWindow);
  const auto* p = static_cast<const std::uint8_t*>(rte_pktmbuf_read(m, 0, want, scratch.data()));
  if (p == nullptr) [[unlikely]] {  // chain shorter than pkt_len says
    out = ParsedPacket{};             // callers may leave `out` uninitialised (the pipeline does)
    return DropReason::frame_runt;
  }
  return parse_frame({p, want}, pkt_len, out);
}

}  // namespace zt::dp
