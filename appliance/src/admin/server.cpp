#include "admin/server.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace zt::admin {

using Clock = std::chrono::steady_clock;

struct Server::Conn {
  int fd = -1;
  Peer peer;
  Clock::time_point deadline;
  std::string in;
  std::string out;
  std::size_t sent = 0;
  bool answered = false;
  ~Conn() {
    if (fd >= 0) close(fd);
  }
};

namespace {

std::expected<gid_t, std::string> group_id(const std::string& name, const char* option) {
  std::vector<char> buf(16384);
  group g{};
  group* res = nullptr;
  if (getgrnam_r(name.c_str(), &g, buf.data(), buf.size(), &res) == 0 && res) return res->gr_gid;
  // A number is accepted too.
  char* end = nullptr;
  const unsigned long v = std::strtoul(name.c_str(), &end, 10);
  if (!name.empty() && end && *end == '\0') return static_cast<gid_t>(v);
  return std::unexpected(fmt::format("--{} '{}': no such group (create it, or give a group id)", option, name));
}

std::string user_name(uid_t uid) {
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* res = nullptr;
  if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &res) == 0 && res) return res->pw_name;
  return std::to_string(uid);
}

// Binds a listening socket at `path`: refuses a path a live server answers on, replaces a stale one.
std::expected<int, std::string> listen_at(const std::string& path, const std::string& group, const char* option) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path))
    return std::unexpected(fmt::format("--admin-socket '{}': longer than {} bytes", path, sizeof(addr.sun_path) - 1));
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);

  std::error_code ec;
  const auto dir = std::filesystem::path(path).parent_path();
  if (!dir.empty() && !std::filesystem::exists(dir, ec)) {
    std::filesystem::create_directories(dir, ec);
    if (ec) return std::unexpected(fmt::format("--admin-socket '{}': cannot create {}: {}", path, dir.string(), ec.message()));
    chmod(dir.c_str(), 0755);
  }
  struct stat st{};
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return std::unexpected(fmt::format("--admin-socket '{}': exists and is not a socket; remove it or choose another path", path));
    const int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const bool live = probe >= 0 && connect(probe, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
    if (probe >= 0) close(probe);
    if (live)
      return std::unexpected(fmt::format("--admin-socket '{}': another ztgate answers on it; give each instance its "
                                         "own --admin-socket", path));
    unlink(path.c_str());
  }
  gid_t gid = 0;
  if (!group.empty()) {
    auto g = group_id(group, option);
    if (!g) return std::unexpected(g.error());
    gid = *g;
  }
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return std::unexpected(fmt::format("--admin-socket: socket: {}", std::strerror(errno)));
  // Created owner-only, then opened up to the group: nobody else can connect in between.
  const mode_t old = umask(0177);
  const int b = bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  const int bind_errno = errno;
  umask(old);
  if (b != 0) {
    close(fd);
    return std::unexpected(fmt::format("--admin-socket '{}': bind: {}", path, std::strerror(bind_errno)));
  }
  if (!group.empty() && (chown(path.c_str(), static_cast<uid_t>(-1), gid) != 0 || chmod(path.c_str(), 0660) != 0)) {
    const int e = errno;
    close(fd);
    unlink(path.c_str());
    return std::unexpected(fmt::format("--{} '{}': cannot give {} to the group: {}", option, group, path, std::strerror(e)));
  }
  if (listen(fd, 16) != 0) {
    const int e = errno;
    close(fd);
    unlink(path.c_str());
    return std::unexpected(fmt::format("--admin-socket '{}': listen: {}", path, std::strerror(e)));
  }
  return fd;
}

}  // namespace

std::expected<std::unique_ptr<Server>, std::string> Server::open(const ServerSettings& s, Handler h) {
  std::unique_ptr<Server> srv(new Server());
  srv->settings_ = s;
  srv->handler_ = std::move(h);
  srv->paths_[0] = s.socket;
  srv->paths_[1] = read_only_path(s.socket);
  auto a = listen_at(srv->paths_[0], s.admin_group, "admin-group");
  if (!a) return std::unexpected(a.error());
  srv->listeners_[0] = *a;
  auto r = listen_at(srv->paths_[1], s.ro_group, "admin-ro-group");
  if (!r) return std::unexpected(r.error());  // the destructor removes the first socket
  srv->listeners_[1] = *r;
  return srv;
}

Server::~Server() {
  stop();
  for (int i = 0; i < 2; ++i) {
    if (listeners_[i] >= 0) {
      close(listeners_[i]);
      unlink(paths_[i].c_str());
    }
  }
}

void Server::start() {
  stop_.store(false);
  thread_ = std::thread([this] { run(); });
}

void Server::stop() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

void Server::accept_on(int listener, bool read_only, std::vector<std::unique_ptr<Conn>>& conns) {
  for (;;) {
    const int fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN: none left (or a transient error: try on the next poll)
    auto c = std::make_unique<Conn>();
    c->fd = fd;
    c->deadline = Clock::now() + settings_.timeout;
    c->peer.read_only = read_only;
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
      c->peer.pid = cred.pid;
      c->peer.uid = cred.uid;
      c->peer.gid = cred.gid;
    }
    c->peer.user = user_name(c->peer.uid);
    if (conns.size() >= settings_.max_clients) {
      Response r;
      r.set_version(kProtocolVersion);
      r.set_status(Response::BUSY);
      r.set_message(fmt::format("ztgate is serving {} admin clients already; try again", conns.size()));
      answer(*c, r);
      on_writable(*c);  // best effort, never waits
      continue;          // closed here
    }
    conns.push_back(std::move(c));
  }
}

void Server::answer(Conn& c, const Response& r) {
  std::string body;
  r.SerializeToString(&body);
  c.out = frame(body);
  c.sent = 0;
  c.answered = true;
  c.deadline = Clock::now() + settings_.timeout;  // the client has this long to take the answer
}

bool Server::on_readable(Conn& c) {
  char buf[4096];
  for (;;) {
    const ssize_t n = recv(c.fd, buf, sizeof(buf), 0);
    if (n == 0) return false;
    if (n < 0) return errno == EAGAIN || errno == EINTR;
    c.in.append(buf, static_cast<std::size_t>(n));
    if (c.in.size() >= 4) {
      const std::uint32_t want = frame_length(reinterpret_cast<const unsigned char*>(c.in.data()));
      if (want > kMaxRequestBytes) {
        Response r;
        r.set_version(kProtocolVersion);
        r.set_status(Response::ERROR);
        r.set_message(fmt::format("request of {} bytes exceeds the {} byte limit", want, kMaxRequestBytes));
        answer(c, r);
        return true;
      }
      if (c.in.size() >= 4 + want) {
        Request req;
        Response resp;
        if (!req.ParseFromArray(c.in.data() + 4, static_cast<int>(want))) {
          resp.set_version(kProtocolVersion);
          resp.set_status(Response::ERROR);
          resp.set_message("the request is not a valid admin Request message");
        } else if (req.version() != kProtocolVersion) {
          resp.set_version(kProtocolVersion);
          resp.set_status(Response::BAD_VERSION);
          resp.set_message(fmt::format("admin protocol version {} is not supported; this ztgate speaks version {} "
                                       "(use the ztctl of the same release)",
                                       req.version(), kProtocolVersion));
        } else {
          resp = handler_(req, c.peer);
          resp.set_version(kProtocolVersion);
        }
        answer(c, resp);
        return true;
      }
    }
  }
}

bool Server::on_writable(Conn& c) {
  while (c.sent < c.out.size()) {
    const ssize_t n = send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) return errno == EAGAIN || errno == EINTR;
    c.sent += static_cast<std::size_t>(n);
  }
  return false;  // all sent: close
}

void Server::run() {
  std::vector<std::unique_ptr<Conn>> conns;
  std::vector<pollfd> fds;
  while (!stop_.load(std::memory_order_relaxed)) {
    fds.clear();
    fds.push_back({listeners_[0], POLLIN, 0});
    fds.push_back({listeners_[1], POLLIN, 0});
    for (auto& c : conns) fds.push_back({c->fd, static_cast<short>(c->answered ? POLLOUT : POLLIN), 0});
    const int r = poll(fds.data(), fds.size(), 200);
    if (r < 0 && errno != EINTR) break;
    const auto now = Clock::now();
    std::vector<bool> keep(conns.size(), true);
    for (std::size_t i = 0; i < conns.size(); ++i) {
      auto& c = *conns[i];
      const short ev = fds[i + 2].revents;
      if (ev & (POLLERR | POLLNVAL)) {
        keep[i] = false;
      } else if (!c.answered && (ev & (POLLIN | POLLHUP))) {
        keep[i] = on_readable(c);
        if (keep[i] && c.answered) keep[i] = on_writable(c);
      } else if (c.answered && (ev & POLLOUT)) {
        keep[i] = on_writable(c);
      }
      if (keep[i] && now > c.deadline) keep[i] = false;  // too slow to ask or to take the answer
    }
    std::size_t j = 0;
    for (std::size_t i = 0; i < conns.size(); ++i)
      if (keep[i]) conns[j++] = std::move(conns[i]);
    conns.resize(j);
    if (fds[0].revents & POLLIN) accept_on(listeners_[0], false, conns);
    if (fds[1].revents & POLLIN) accept_on(listeners_[1], true, conns);
  }
}

}  // namespace zt::admin
