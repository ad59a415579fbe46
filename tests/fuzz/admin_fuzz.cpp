// libFuzzer target for the admin protocol decoder: the real admin socket server
// (appliance/src/admin/server.cpp: framing, size limit, Request parse, version check) on its two
// UNIX sockets in a temporary directory, fed the input bytes by a client connection.
//
// Input: byte 0 bit 0 picks the socket (0 admin, 1 read-only); the rest is sent as it is, then
// the client shuts its write side down and reads until the server closes. The handler stands in
// for the Service (which needs a running dataplane) and records what reached it. Checked:
//   - the handler sees a request exactly when the bytes hold a whole frame that parses as a
//     Request of the server's protocol version, and it sees that very request, from the socket
//     the client used (Peer::read_only);
//   - a whole frame (or an oversized length) gets exactly one answer: a well-formed frame holding
//     a Response of version kProtocolVersion, whose status says why when it was not handled
//     (ERROR for an oversized or unparsable request, BAD_VERSION for another version), with a
//     message a person can read; a partial frame gets no answer;
//   - the server keeps serving: every input opens a new connection to the same server.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "admin/server.hpp"
#include "admin/wire.hpp"

namespace {

using namespace zt::admin;

void require(bool ok) {
  if (!ok) __builtin_trap();
}

struct Seen {
  std::mutex mu;
  std::optional<Request> req;
  bool read_only = false;
};

Seen g_seen;
std::unique_ptr<Server> g_server;

int connect_to(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  require(fd >= 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  require(path.size() < sizeof(a.sun_path));
  std::memcpy(a.sun_path, path.c_str(), path.size());
  int r;
  do r = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  while (r < 0 && errno == EINTR);
  require(r == 0);
  return fd;
}

// Everything the server sends until it closes. libFuzzer's SIGALRM (its -timeout watchdog)
// interrupts system calls: EINTR is retried, it is not an answer. The server's own timeout is
// 10 s and libFuzzer reports a unit slower than -timeout (10 s) as a hang.
std::string read_all(int fd) {
  std::string got;
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, 1000);
    if (r < 0 && errno == EINTR) continue;
    require(r >= 0);
    if (r == 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return got;
    got.append(buf, static_cast<std::size_t>(n));
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  char tmpl[] = "/tmp/ztfuzz-admin-XXXXXX";
  require(::mkdtemp(tmpl) != nullptr);
  ServerSettings s;
  s.socket = std::string(tmpl) + "/admin.sock";
  s.timeout = std::chrono::milliseconds(10000);  // generous: a loaded CI machine must not fail it
  auto srv = Server::open(s, [](const Request& req, const Peer& peer) {
    std::lock_guard lock(g_seen.mu);
    g_seen.req = req;
    g_seen.read_only = peer.read_only;
    Response r;
    r.set_status(Response::OK);
    r.set_json("{}");
    return r;
  });
  require(srv.has_value());
  g_server = std::move(*srv);
  g_server->start();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const bool ro = (data[0] & 1) != 0;
  const std::string bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  {
    std::lock_guard lock(g_seen.mu);
    g_seen.req.reset();
  }

  const int fd = connect_to(ro ? g_server->ro_path() : g_server->path());
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the server may answer and close early (oversized length)
    sent += static_cast<std::size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  const std::string answer = read_all(fd);
  ::close(fd);

  // What the bytes are, decoded independently.
  std::optional<std::uint32_t> want;
  if (bytes.size() >= 4) want = frame_length(reinterpret_cast<const unsigned char*>(bytes.data()));
  const bool oversized = want && *want > kMaxRequestBytes;
  const bool whole = want && !oversized && bytes.size() >= 4 + std::size_t{*want};
  Request expect;
  const bool parses = whole && expect.ParseFromArray(bytes.data() + 4, static_cast<int>(*want));
  const bool handled = parses && expect.version() == kProtocolVersion;

  std::optional<Request> seen;
  bool seen_ro = false;
  {
    std::lock_guard lock(g_seen.mu);
    seen = g_seen.req;
    seen_ro = g_seen.read_only;
  }
  require(seen.has_value() == handled);
  if (handled) {
    require(seen->SerializeAsString() == expect.SerializeAsString());
    require(seen_ro == ro);
  }

  if (!whole && !oversized) {
    require(answer.empty());  // a partial frame gets no answer
    return 0;
  }
  require(answer.size() >= 4);
  const std::uint32_t len = frame_length(reinterpret_cast<const unsigned char*>(answer.data()));
  require(answer.size() == 4 + std::size_t{len});
  Response r;
  require(r.ParseFromArray(answer.data() + 4, static_cast<int>(len)));
  require(r.version() == kProtocolVersion);
  if (oversized || !parses) {
    require(r.status() == Response::ERROR && !r.message().empty());
  } else if (!handled) {
    require(r.status() == Response::BAD_VERSION && !r.message().empty());
  } else {
    require(r.status() == Response::OK && r.json() == "{}");
  }
  return 0;
}
