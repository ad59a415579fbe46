// The admin socket server (README.md in this folder): two UNIX stream sockets, served by one
// control thread (never a worker lcore) with poll(). The admin socket (PATH) takes every
// command; the read-only socket (PATH.ro) takes only those that change nothing. File
// permissions decide who may connect to which (--admin-group, --admin-ro-group); SO_PEERCRED
// says who did, for the audit log.
//
// One request per connection, bounded in size (kMaxRequestBytes) and time (the request must
// arrive, and the answer be taken, within `timeout`); at most `max_clients` connections are open
// at once. Requests are answered one at a time on the server thread; a client that stalls only
// costs its own connection. The workers never wait for this thread.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <expected>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "admin/wire.hpp"

namespace zt::admin {

struct ServerSettings {
  std::string socket = kDefaultSocket;  // admin socket; the read-only one is PATH.ro
  std::string admin_group;              // group of the admin socket (mode 0660); empty: 0600
  std::string ro_group;                 // group of the read-only socket (0660); empty: 0600
  unsigned max_clients = 8;
  std::chrono::milliseconds timeout{5000};
};

// Who is on the other end of a connection (SO_PEERCRED), and through which socket.
struct Peer {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string user;  // name of uid, or the number
  bool read_only = false;
};

class Server {
 public:
  using Handler = std::function<Response(const Request&, const Peer&)>;

  // Creates the directory of the socket if missing (0755), removes a stale socket file (one
  // nobody answers on), binds both sockets and sets their groups and modes. Refuses a path a
  // live server answers on.
  static std::expected<std::unique_ptr<Server>, std::string> open(const ServerSettings& s, Handler h);
  ~Server();  // stops and removes both socket files
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void start();
  void stop();
  const std::string& path() const noexcept { return paths_[0]; }
  const std::string& ro_path() const noexcept { return paths_[1]; }

 private:
  Server() = default;
  struct Conn;
  void run();
  void accept_on(int listener, bool read_only, std::vector<std::unique_ptr<Conn>>& conns);
  bool on_readable(Conn& c);  // false: close
  bool on_writable(Conn& c);
  void answer(Conn& c, const Response& r);

  ServerSettings settings_;
  Handler handler_;
  int listeners_[2] = {-1, -1};
  std::string paths_[2];
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace zt::admin
