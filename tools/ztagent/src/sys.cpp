#include "sys.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

namespace zt::agent {

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.release();
  }
  return *this;
}

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

namespace {

std::string err() { return std::strerror(errno); }

bool copy_ifname(char (&dst)[IFNAMSIZ], const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ) return false;
  std::memset(dst, 0, IFNAMSIZ);
  std::memcpy(dst, name.data(), name.size());
  return true;
}

}  // namespace

Expected<Prefix> parse_prefix(const std::string& s) {
  Prefix p;
  p.text = s;
  std::string addr = s;
  int len = -1;
  if (auto slash = s.find('/'); slash != std::string::npos) {
    addr = s.substr(0, slash);
    try {
      std::size_t used = 0;
      len = std::stoi(s.substr(slash + 1), &used);
      if (used != s.size() - slash - 1) len = -2;
    } catch (...) {
      len = -2;
    }
  }
  if (inet_pton(AF_INET, addr.c_str(), p.addr.data()) == 1) {
    p.version = 4;
    if (len == -1) len = 32;
    if (len < 0 || len > 32) return std::unexpected(fmt::format("--route '{}': prefix length must be 0-32", s));
  } else if (inet_pton(AF_INET6, addr.c_str(), p.addr.data()) == 1) {
    p.version = 6;
    if (len == -1) len = 128;
    if (len < 0 || len > 128) return std::unexpected(fmt::format("--route '{}': prefix length must be 0-128", s));
  } else {
    return std::unexpected(fmt::format("--route '{}': expected an IPv4 or IPv6 prefix such as 10.10.0.0/24", s));
  }
  p.len = static_cast<unsigned>(len);
  const unsigned bits = p.version == 4 ? 32 : 128;
  for (unsigned b = p.len; b < bits; ++b)
    if (p.addr[b / 8] & (0x80 >> (b % 8)))
      return std::unexpected(fmt::format("--route '{}': host bits are set past /{}", s, p.len));
  return p;
}

Expected<Tun> open_tun(const std::string& name, int mtu) {
  Tun t;
  ifreq ifr{};
  if (!copy_ifname(ifr.ifr_name, name))
    return std::unexpected(fmt::format("--tun '{}': expected 1 to {} characters", name, IFNAMSIZ - 1));
  Fd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!fd) return std::unexpected(fmt::format("cannot open /dev/net/tun: {}", err()));
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) < 0) {
    if (errno == EPERM)
      return std::unexpected(fmt::format(
          "--tun '{}': creating or attaching the TUN needs CAP_NET_ADMIN; run as root, or create "
          "it beforehand with `ip tuntap add {} mode tun user $USER` and bring it up", name, name));
    if (errno == EBUSY)
      return std::unexpected(fmt::format("--tun '{}': the device is in use (another ztagent?)", name));
    return std::unexpected(fmt::format("--tun '{}': TUNSETIFF: {}", name, err()));
  }
  t.name = ifr.ifr_name;
  Fd ctl(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!ctl) return std::unexpected(fmt::format("socket: {}", err()));
  ifreq q{};
  copy_ifname(q.ifr_name, t.name);
  if (::ioctl(ctl.get(), SIOCGIFINDEX, &q) < 0)
    return std::unexpected(fmt::format("--tun '{}': SIOCGIFINDEX: {}", t.name, err()));
  t.ifindex = q.ifr_ifindex;
  if (::ioctl(ctl.get(), SIOCGIFMTU, &q) < 0)
    return std::unexpected(fmt::format("--tun '{}': SIOCGIFMTU: {}", t.name, err()));
  t.mtu = q.ifr_mtu;
  if (mtu > 0 && t.mtu != mtu) {
    q.ifr_mtu = mtu;
    if (::ioctl(ctl.get(), SIOCSIFMTU, &q) < 0)
      return std::unexpected(fmt::format("--tun '{}': setting MTU {}: {} (needs CAP_NET_ADMIN, or set "
                                         "it beforehand with `ip link set {} mtu {}`)",
                                         t.name, mtu, err(), t.name, mtu));
    t.mtu = mtu;
  }
  if (::ioctl(ctl.get(), SIOCGIFFLAGS, &q) < 0)
    return std::unexpected(fmt::format("--tun '{}': SIOCGIFFLAGS: {}", t.name, err()));
  if (!(q.ifr_flags & IFF_UP)) {
    q.ifr_flags = static_cast<short>(q.ifr_flags | IFF_UP);
    if (::ioctl(ctl.get(), SIOCSIFFLAGS, &q) < 0)
      return std::unexpected(fmt::format("--tun '{}': bringing it up: {} (needs CAP_NET_ADMIN, or "
                                         "`ip link set {} up` beforehand)", t.name, err(), t.name));
  }
  t.fd = std::move(fd);
  return t;
}

Expected<void> add_route(const Tun& tun, const Prefix& p) {
  Fd nl(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!nl) return std::unexpected(fmt::format("netlink socket: {}", err()));
  struct {
    nlmsghdr nh;
    rtmsg rt;
    char attrs[128];
  } req{};
  req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(rtmsg));
  req.nh.nlmsg_type = RTM_NEWROUTE;
  req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
  req.nh.nlmsg_seq = 1;
  req.rt.rtm_family = p.version == 4 ? AF_INET : AF_INET6;
  req.rt.rtm_dst_len = static_cast<unsigned char>(p.len);
  req.rt.rtm_table = RT_TABLE_MAIN;
  req.rt.rtm_protocol = RTPROT_STATIC;
  req.rt.rtm_scope = RT_SCOPE_LINK;
  req.rt.rtm_type = RTN_UNICAST;
  auto put = [&](unsigned short type, const void* data, std::size_t len) {
    auto* a = reinterpret_cast<rtattr*>(reinterpret_cast<char*>(&req) + NLMSG_ALIGN(req.nh.nlmsg_len));
    a->rta_type = type;
    a->rta_len = static_cast<unsigned short>(RTA_LENGTH(len));
    std::memcpy(RTA_DATA(a), data, len);
    req.nh.nlmsg_len = NLMSG_ALIGN(req.nh.nlmsg_len) + RTA_ALIGN(a->rta_len);
  };
  put(RTA_DST, p.addr.data(), p.version == 4 ? 4 : 16);
  const std::uint32_t oif = static_cast<std::uint32_t>(tun.ifindex);
  put(RTA_OIF, &oif, sizeof oif);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(nl.get(), &req, req.nh.nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0)
    return std::unexpected(fmt::format("--route {}: netlink send: {}", p.text, err()));
  char buf[4096];
  const ssize_t n = ::recv(nl.get(), buf, sizeof buf, 0);
  if (n < 0) return std::unexpected(fmt::format("--route {}: netlink receive: {}", p.text, err()));
  auto* h = reinterpret_cast<nlmsghdr*>(buf);
  if (NLMSG_OK(h, static_cast<unsigned>(n)) && h->nlmsg_type == NLMSG_ERROR) {
    auto* e = static_cast<nlmsgerr*>(NLMSG_DATA(h));
    if (e->error != 0) {
      const int code = -e->error;
      if (code == EPERM)
        return std::unexpected(fmt::format("--route {}: adding a route needs CAP_NET_ADMIN; run as "
                                           "root or let the operator add it (`ip route add {} dev {}`)",
                                           p.text, p.text, tun.name));
      return std::unexpected(fmt::format("--route {} dev {}: {}", p.text, tun.name, std::strerror(code)));
    }
  }
  return {};
}

Expected<int> interface_mtu(const std::string& ifname) {
  ifreq q{};
  if (!copy_ifname(q.ifr_name, ifname))
    return std::unexpected(fmt::format("--egress '{}': not an interface name", ifname));
  Fd ctl(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!ctl) return std::unexpected(fmt::format("socket: {}", err()));
  if (::ioctl(ctl.get(), SIOCGIFMTU, &q) < 0)
    return std::unexpected(fmt::format("--egress '{}': {}", ifname, errno == ENODEV ? "no such interface" : err()));
  return q.ifr_mtu;
}

Expected<Fd> egress_socket(int family, const std::string& ifname, std::uint16_t port) {
  Fd s(::socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s) return std::unexpected(fmt::format("UDP socket ({}): {}", family == AF_INET ? "IPv4" : "IPv6", err()));
  if (::setsockopt(s.get(), SOL_SOCKET, SO_BINDTODEVICE, ifname.c_str(),
                   static_cast<socklen_t>(ifname.size())) < 0)
    return std::unexpected(fmt::format("--egress '{}': SO_BINDTODEVICE: {}", ifname, err()));
  const int buf = 4 << 20;
  ::setsockopt(s.get(), SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  ::setsockopt(s.get(), SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  if (family == AF_INET) {
    const int pmtu = IP_PMTUDISC_DO;
    ::setsockopt(s.get(), IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof pmtu);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0)
      return std::unexpected(fmt::format("binding UDP port {} on {}: {}", port, ifname, err()));
  } else {
    const int one = 1;
    ::setsockopt(s.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    const int pmtu = IPV6_PMTUDISC_DO;
    ::setsockopt(s.get(), IPPROTO_IPV6, IPV6_MTU_DISCOVER, &pmtu, sizeof pmtu);
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(port);
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0)
      return std::unexpected(fmt::format("binding UDP port {} on {} (IPv6): {}", port, ifname, err()));
  }
  return s;
}

Expected<std::string> drop_privileges(const std::string& user) {
  std::string what;
  // The bounding set first (needs CAP_SETPCAP, which a root start still has).
  for (int cap = 0; cap <= 63; ++cap) {
    if (::prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 1) continue;
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EPERM && errno != EINVAL)
      return std::unexpected(fmt::format("dropping capability {} from the bounding set: {}", cap, err()));
  }
  if (!user.empty()) {
    errno = 0;
    const passwd* pw = ::getpwnam(user.c_str());
    if (pw == nullptr) return std::unexpected(fmt::format("--user '{}': no such user", user));
    const uid_t uid = pw->pw_uid;
    const gid_t gid = pw->pw_gid;
    if (::setgroups(0, nullptr) < 0 && errno != EPERM)
      return std::unexpected(fmt::format("--user '{}': setgroups: {}", user, err()));
    if (::setresgid(gid, gid, gid) < 0)
      return std::unexpected(fmt::format("--user '{}': setresgid({}): {}", user, gid, err()));
    if (::setresuid(uid, uid, uid) < 0)
      return std::unexpected(fmt::format("--user '{}': setresuid({}): {}", user, uid, err()));
    what = fmt::format("running as {} (uid {}, gid {})", user, uid, gid);
  } else {
    what = fmt::format("running as uid {}", ::getuid());
  }
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (::syscall(SYS_capset, &hdr, data) < 0)
    return std::unexpected(fmt::format("clearing capabilities: {}", err()));
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    return std::unexpected(fmt::format("PR_SET_NO_NEW_PRIVS: {}", err()));
  return what + ", no capabilities, no_new_privs";
}

}  // namespace zt::agent
