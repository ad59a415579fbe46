// Shared by the parser tests: run parse_frame the way the worker does, and print drop reasons by
// name in GoogleTest failure messages.
#pragma once

#include <algorithm>
#include <ostream>
#include <span>
#include <vector>

#include "zt/dataplane/parser.hpp"
#include "zt/rules/drop_reason.hpp"

namespace zt::rules {
inline void PrintTo(DropReason r, std::ostream* os) { *os << to_string(r); }
}  // namespace zt::rules

namespace zt::test {

// Parses `frame` through a window copied into its own allocation of exactly the window's size,
// so AddressSanitizer reports any read past the window.
inline rules::DropReason parse(std::span<const std::uint8_t> frame, dp::ParsedPacket& out) {
  const std::size_t n = std::min(frame.size(), dp::kParseWindow);
  const std::vector<std::uint8_t> window(frame.begin(), frame.begin() + static_cast<long>(n));
  return dp::parse_frame(window, static_cast<std::uint32_t>(frame.size()), out);
}

inline rules::DropReason parse(std::span<const std::uint8_t> frame) {
  dp::ParsedPacket out;
  return parse(frame, out);
}

}  // namespace zt::test
