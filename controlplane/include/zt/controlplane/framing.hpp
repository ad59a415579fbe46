// Length-delimited Protobuf framing (DESIGN.md §5): a 4-byte big-endian length, then the
// serialized message. Frames larger than the configured maximum are refused before any byte of
// the body is read, so a peer cannot make us allocate an arbitrary amount.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include <google/protobuf/message_lite.h>

#include "zt/controlplane/error.hpp"

namespace zt::cp {

inline constexpr std::size_t kDefaultMaxFrame = 8u << 20;  // 8 MiB: a 100k-rule policy fits
inline constexpr std::size_t kFrameHeaderLen = 4;

// A byte stream with bounded waits (TLS connection, or a plain fd in tests).
class ByteStream {
 public:
  virtual ~ByteStream() = default;
  // Reads exactly out.size() bytes or fails (closed, timeout, I/O error).
  virtual Result<void> read_exact(std::span<std::uint8_t> out, std::chrono::milliseconds timeout) = 0;
  virtual Result<void> write_all(std::span<const std::uint8_t> data) = 0;
  // Whether bytes can be read without waiting longer than `timeout` (also true at EOF).
  virtual bool readable(std::chrono::milliseconds timeout) = 0;
};

// Header + body as one buffer. Fails when the message is larger than `max_frame`.
Result<std::string> encode_frame(const google::protobuf::MessageLite& msg,
                                 std::size_t max_frame = kDefaultMaxFrame);

// The body length announced by a header; fails when it exceeds `max_frame`.
Result<std::uint32_t> decode_frame_header(std::span<const std::uint8_t, kFrameHeaderLen> header,
                                          std::size_t max_frame = kDefaultMaxFrame);

Result<void> write_message(ByteStream& s, const google::protobuf::MessageLite& msg,
                           std::size_t max_frame = kDefaultMaxFrame);

// Reads one frame and parses it into `msg`. A truncated frame, an oversized frame or a body that
// does not parse are errors; the stream should then be closed.
Result<void> read_message(ByteStream& s, google::protobuf::MessageLite& msg,
                          std::chrono::milliseconds timeout,
                          std::size_t max_frame = kDefaultMaxFrame);

// A ByteStream over a connected plain socket/pipe fd (tests, local tools). Does not own the fd.
class FdStream final : public ByteStream {
 public:
  explicit FdStream(int fd) : fd_(fd) {}
  Result<void> read_exact(std::span<std::uint8_t> out, std::chrono::milliseconds timeout) override;
  Result<void> write_all(std::span<const std::uint8_t> data) override;
  bool readable(std::chrono::milliseconds timeout) override;

 private:
  int fd_;
};

}  // namespace zt::cp
