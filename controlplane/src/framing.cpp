#include "zt/controlplane/framing.hpp"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include <fmt/format.h>

namespace zt::cp {

Result<std::string> encode_frame(const google::protobuf::MessageLite& msg, std::size_t max_frame) {
  const std::size_t n = msg.ByteSizeLong();
  if (n > max_frame)
    return fail(fmt::format("message of {} bytes exceeds the {}-byte frame limit", n, max_frame));
  std::string out(kFrameHeaderLen + n, '\0');
  out[0] = static_cast<char>((n >> 24) & 0xff);
  out[1] = static_cast<char>((n >> 16) & 0xff);
  out[2] = static_cast<char>((n >> 8) & 0xff);
  out[3] = static_cast<char>(n & 0xff);
  if (!msg.SerializeToArray(out.data() + kFrameHeaderLen, static_cast<int>(n)))
    return fail("message could not be serialized (missing required field?)");
  return out;
}

Result<std::uint32_t> decode_frame_header(std::span<const std::uint8_t, kFrameHeaderLen> h,
                                          std::size_t max_frame) {
  const std::uint32_t n = (std::uint32_t{h[0]} << 24) | (std::uint32_t{h[1]} << 16) |
                          (std::uint32_t{h[2]} << 8) | std::uint32_t{h[3]};
  if (n > max_frame)
    return fail(fmt::format("peer announced a {}-byte frame, above the {}-byte limit; closing", n,
                            max_frame));
  return n;
}

Result<void> write_message(ByteStream& s, const google::protobuf::MessageLite& msg, std::size_t max_frame) {
  auto frame = encode_frame(msg, max_frame);
  if (!frame) return std::unexpected(frame.error());
  return s.write_all({reinterpret_cast<const std::uint8_t*>(frame->data()), frame->size()});
}

Result<void> read_message(ByteStream& s, google::protobuf::MessageLite& msg,
                          std::chrono::milliseconds timeout, std::size_t max_frame) {
  std::array<std::uint8_t, kFrameHeaderLen> header{};
  if (auto r = s.read_exact(header, timeout); !r) return r;
  auto n = decode_frame_header(header, max_frame);
  if (!n) return std::unexpected(n.error());
  std::vector<std::uint8_t> body(*n);
  if (auto r = s.read_exact(body, timeout); !r)
    return fail(fmt::format("truncated frame: expected {} bytes of body: {}", *n, r.error().message));
  if (!msg.ParseFromArray(body.data(), static_cast<int>(body.size())))
    return fail(fmt::format("frame of {} bytes is not a valid {}", *n, msg.GetTypeName()));
  return {};
}

static int poll_in(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  for (;;) {
    int r = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (r < 0 && errno == EINTR) continue;
    return r;
  }
}

Result<void> FdStream::read_exact(std::span<std::uint8_t> out, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::size_t got = 0;
  while (got < out.size()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() < 0) left = std::chrono::milliseconds(0);
    int r = poll_in(fd_, left);
    if (r == 0) return fail(fmt::format("timed out after {} ms waiting for data", timeout.count()));
    if (r < 0) return fail(fmt::format("poll: {}", std::strerror(errno)));
    ssize_t n = ::read(fd_, out.data() + got, out.size() - got);
    if (n == 0) return fail(fmt::format("connection closed after {} of {} bytes", got, out.size()));
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return fail(fmt::format("read: {}", std::strerror(errno)));
    }
    got += static_cast<std::size_t>(n);
  }
  return {};
}

Result<void> FdStream::write_all(std::span<const std::uint8_t> data) {
  std::size_t put = 0;
  while (put < data.size()) {
    ssize_t n = ::write(fd_, data.data() + put, data.size() - put);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(fmt::format("write: {}", std::strerror(errno)));
    }
    put += static_cast<std::size_t>(n);
  }
  return {};
}

bool FdStream::readable(std::chrono::milliseconds timeout) { return poll_in(fd_, timeout) > 0; }

}  // namespace zt::cp
