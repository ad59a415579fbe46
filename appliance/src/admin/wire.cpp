#include "admin/wire.hpp"

#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace zt::admin {

std::string read_only_path(const std::string& admin_path) { return admin_path + ".ro"; }

std::string frame(const std::string& payload) {
  std::string out(4, '\0');
  const auto n = static_cast<std::uint32_t>(payload.size());
  out[0] = static_cast<char>(n >> 24);
  out[1] = static_cast<char>(n >> 16);
  out[2] = static_cast<char>(n >> 8);
  out[3] = static_cast<char>(n);
  out += payload;
  return out;
}

std::uint32_t frame_length(const unsigned char h[4]) noexcept {
  return (std::uint32_t{h[0]} << 24) | (std::uint32_t{h[1]} << 16) | (std::uint32_t{h[2]} << 8) | h[3];
}

namespace {

using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(left);
}

// Waits for `events` on fd until the deadline; false on timeout or error.
bool wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int r = poll(&p, 1, remaining_ms(deadline));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return false;
  }
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

}  // namespace

std::expected<Response, CallError> call(const std::string& path, const Request& req,
                                        std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path))
    return std::unexpected(CallError{fmt::format("socket path '{}' is longer than {} bytes", path,
                                                 sizeof(addr.sun_path) - 1)});
  Fd s;
  s.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s.fd < 0) return std::unexpected(CallError{fmt::format("socket: {}", std::strerror(errno))});
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (connect(s.fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int e = errno;
    return std::unexpected(CallError{std::strerror(e), e});
  }
  std::string out;
  if (!req.SerializeToString(&out)) return std::unexpected(CallError{"cannot serialize the request"});
  out = frame(out);
  std::size_t sent = 0;
  while (sent < out.size()) {
    if (!wait_for(s.fd, POLLOUT, deadline))
      return std::unexpected(CallError{"timed out sending the request"});
    const ssize_t n = send(s.fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return std::unexpected(CallError{fmt::format("sending the request: {}", std::strerror(errno))});
    }
    sent += static_cast<std::size_t>(n);
  }
  std::string in;
  std::uint32_t want = 0;
  bool have_header = false;
  char buf[65536];
  for (;;) {
    if (have_header && in.size() >= 4 + want) break;
    if (!wait_for(s.fd, POLLIN, deadline))
      return std::unexpected(CallError{fmt::format("no answer within {} ms", timeout.count())});
    const ssize_t n = recv(s.fd, buf, sizeof(buf), 0);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return std::unexpected(CallError{fmt::format("reading the answer: {}", std::strerror(errno))});
    }
    if (n == 0) return std::unexpected(CallError{"ztgate closed the connection without an answer"});
    in.append(buf, static_cast<std::size_t>(n));
    if (!have_header && in.size() >= 4) {
      want = frame_length(reinterpret_cast<const unsigned char*>(in.data()));
      if (want > kMaxResponseBytes)
        return std::unexpected(CallError{fmt::format("answer of {} bytes exceeds the {} byte limit", want,
                                                     kMaxResponseBytes)});
      have_header = true;
    }
  }
  Response resp;
  if (!resp.ParseFromArray(in.data() + 4, static_cast<int>(want)))
    return std::unexpected(CallError{"the answer is not a valid admin Response"});
  return resp;
}

}  // namespace zt::admin
