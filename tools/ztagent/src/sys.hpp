// The agent's contact with the kernel, all on the setup path: the TUN device, routes to it,
// the egress UDP sockets, and dropping privileges once they are open.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "key_source.hpp"

namespace zt::agent {

// A file descriptor closed on destruction.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) noexcept : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd();
  int get() const noexcept { return fd_; }
  int release() noexcept {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  explicit operator bool() const noexcept { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

struct Prefix {
  std::uint8_t version = 4;
  std::array<std::uint8_t, 16> addr{};
  unsigned len = 32;
  std::string text;
};
// "10.10.0.2", "10.10.0.0/24", "fd00:10::/64". Host bits must be zero.
Expected<Prefix> parse_prefix(const std::string& s);

struct Tun {
  Fd fd;
  std::string name;
  int ifindex = 0;
  int mtu = 0;
};
// Opens (creating if needed) TUN `name` in IFF_TUN|IFF_NO_PI mode, non-blocking, sets its MTU
// (0: leave it) and brings it up. A device created beforehand with `ip tuntap add NAME mode tun
// user USER` (already up, MTU set) opens without any capability.
Expected<Tun> open_tun(const std::string& name, int mtu);

// Adds (or replaces) a route to `p` via the TUN (netlink RTM_NEWROUTE). The kernel removes it
// with the device when the agent exits.
Expected<void> add_route(const Tun& tun, const Prefix& p);

// MTU and index of an interface.
Expected<int> interface_mtu(const std::string& ifname);

// A non-blocking UDP socket of family AF_INET or AF_INET6 bound to `ifname` (SO_BINDTODEVICE:
// the outer packet leaves there, whatever the routing table says for the inner destination,
// so it cannot loop into the TUN) and to `port` (0: ephemeral). DF set (no outer fragments).
Expected<Fd> egress_socket(int family, const std::string& ifname, std::uint16_t port);

// After setup: switch to `user` (if not empty), drop every capability (effective, permitted,
// inheritable, bounding set) and set no_new_privs. Returns a description of what was done.
Expected<std::string> drop_privileges(const std::string& user);

}  // namespace zt::agent
