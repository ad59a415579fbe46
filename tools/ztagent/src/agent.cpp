#include "agent.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

namespace zt::agent {

namespace {

std::int64_t realtime_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * crypto::kNsPerSec + ts.tv_nsec;
}

// Per-kind log limiter: a token bucket of `rate` lines per second (burst 2 s worth); lines it
// refuses are counted and reported with the next line it lets through.
class LogLimiter {
 public:
  explicit LogLimiter(double rate) noexcept : rate_(rate), tokens_(2 * rate) {}
  template <class... A>
  void log(std::int64_t now_ns, fmt::format_string<A...> f, A&&... a) {
    tokens_ += static_cast<double>(now_ns - last_ns_) * 1e-9 * rate_;
    if (tokens_ > 2 * rate_) tokens_ = 2 * rate_;
    last_ns_ = now_ns;
    if (tokens_ < 1) {
      ++suppressed_;
      return;
    }
    tokens_ -= 1;
    std::fputs("ztagent: ", stderr);
    fmt::print(stderr, f, std::forward<A>(a)...);
    if (suppressed_) fmt::print(stderr, " ({} similar lines suppressed)", suppressed_);
    std::fputc('\n', stderr);
    suppressed_ = 0;
  }

 private:
  double rate_;
  double tokens_;
  std::int64_t last_ns_ = 0;
  std::uint64_t suppressed_ = 0;
};

enum LogKind : std::size_t { kLogOut, kLogSend, kLogIn, kLogTun, kLogKey, kLogKinds };

constexpr std::size_t kTunBatch = 64;
constexpr std::size_t kRxBatch = crypto::kMaxVerifyBurst;
constexpr std::size_t kBufLen = 65536 + kRxHeadroom + kEncapLen;

class Agent {
 public:
  Agent(const AgentConfig& cfg, std::unique_ptr<KeySource> keys)
      : cfg_(cfg), keys_(std::move(keys)) {
    for (std::size_t i = 0; i < kLogKinds; ++i) logs_.emplace_back(cfg.log_per_second);
  }

  int run();

 private:
  Expected<void> setup();
  void maintain(std::int64_t now_ns);
  void on_tun() noexcept;
  void on_socket(int fd) noexcept;
  void report(bool table);
  const crypto::IdentityKey* key_for(std::int64_t now_ns) noexcept;

  AgentConfig cfg_;
  std::unique_ptr<KeySource> keys_;
  std::vector<LogLimiter> logs_;
  Counters c_;
  Tun tun_;
  Fd sock4_, sock6_, sigfd_, timer_, stats_fd_;
  std::unique_ptr<Tagger> tagger_;
  std::unique_ptr<Receiver> receiver_;
  // The key of the current epoch and the one held ahead for the next; the packet path swaps
  // them at the boundary, the maintenance tick refills `next_`.
  crypto::IdentityKey cur_, next_;
  bool cur_ok_ = false, next_ok_ = false;
  std::shared_ptr<const crypto::KeyRing> ring_;
  std::int64_t ring_epoch_ = -1;
  std::vector<std::uint8_t> tx_buf_;
  std::vector<std::vector<std::uint8_t>> rx_bufs_;
};

Expected<void> Agent::setup() {
  auto emtu = interface_mtu(cfg_.egress);
  if (!emtu) return std::unexpected(emtu.error());
  int mtu = cfg_.mtu;
  if (mtu == 0) mtu = *emtu - static_cast<int>(kMaxOverhead);
  if (mtu < 576 || mtu > *emtu - static_cast<int>(kEncapLen + 28))
    return std::unexpected(fmt::format("--mtu {}: expected 576 to {} (the egress MTU {} less the "
                                       "outer IP, UDP, Geneve and tag headers)",
                                       mtu, *emtu - static_cast<int>(kEncapLen + 28), *emtu));
  auto tun = open_tun(cfg_.tun, mtu);
  if (!tun) return std::unexpected(tun.error());
  tun_ = std::move(*tun);
  for (const auto& r : cfg_.routes)
    if (auto ok = add_route(tun_, r); !ok) return std::unexpected(ok.error());

  // Both directions use UDP 6081 as source and destination: the outer 4-tuple of a flow's two
  // directions is then symmetric, so the appliance's symmetric RSS keeps them on one lcore.
  const std::uint16_t port = cfg_.inbound == InboundMode::off ? 0 : crypto::kGenevePort;
  auto s4 = egress_socket(AF_INET, cfg_.egress, port);
  if (!s4) return std::unexpected(s4.error());
  sock4_ = std::move(*s4);
  if (auto s6 = egress_socket(AF_INET6, cfg_.egress, port); s6) {
    sock6_ = std::move(*s6);
  } else {
    fmt::print(stderr, "ztagent: no IPv6 egress ({}); IPv6 packets from the TUN will be dropped\n", s6.error());
  }

  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGINT, SIGTERM, SIGUSR1, SIGHUP}) sigaddset(&set, s);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  sigfd_ = Fd(signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!sigfd_) return std::unexpected(fmt::format("signalfd: {}", std::strerror(errno)));
  timer_ = Fd(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!timer_) return std::unexpected(fmt::format("timerfd: {}", std::strerror(errno)));
  itimerspec its{};
  its.it_interval.tv_nsec = 200'000'000;
  its.it_value.tv_nsec = 200'000'000;
  timerfd_settime(timer_.get(), 0, &its, nullptr);

  auto tagger = Tagger::create(cfg_.coverage, cfg_.lane);
  if (!tagger) return std::unexpected(tagger.error());
  tagger_ = std::make_unique<Tagger>(std::move(*tagger));
  if (cfg_.inbound != InboundMode::off) {
    auto rx = Receiver::create(cfg_.inbound, cfg_.accept_hdr);
    if (!rx) return std::unexpected(rx.error());
    receiver_ = std::make_unique<Receiver>(std::move(*rx));
  }
  if (!cfg_.stats_file.empty()) {
    stats_fd_ = Fd(::open(cfg_.stats_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!stats_fd_)
      return std::unexpected(fmt::format("--stats-file '{}': {}", cfg_.stats_file, std::strerror(errno)));
  }
  tx_buf_.resize(kBufLen);
  rx_bufs_.assign(kRxBatch, std::vector<std::uint8_t>(kBufLen));

  // Keys before privileges go: a manager source may need its files once more.
  maintain(realtime_ns());
  if (!cur_ok_) return std::unexpected("no key for the current epoch");

  auto dropped = drop_privileges(cfg_.user);
  if (!dropped) return std::unexpected(dropped.error());
  const auto& p = keys_->epoch_policy();
  std::string routes;
  for (const auto& r : cfg_.routes) routes += (routes.empty() ? "" : ",") + r.text;
  fmt::print(stderr,
             "ztagent: identity {} ({} keys, {}, epoch {} s, now epoch {}), tun {} mtu {}, egress {}, "
             "routes [{}], coverage {}, inbound {}{}; {}\n",
             keys_->identity(), keys_->name(), crypto::to_string(cur_.alg), p.length_ns / crypto::kNsPerSec,
             cur_.epoch, tun_.name, tun_.mtu, cfg_.egress, routes, crypto::to_string(cfg_.coverage),
             to_string(cfg_.inbound), ring_ ? "" : " (no inbound key ring)", *dropped);
  return {};
}

void Agent::maintain(std::int64_t now_ns) {
  const std::int64_t e = epoch_at(keys_->epoch_policy(), now_ns);
  if (e < 0) return;
  auto fetch = [&](std::uint64_t epoch, crypto::IdentityKey& into, bool& ok) {
    auto k = keys_->identity_key(epoch);
    if (!k) {
      ++c_.key_fetch_errors;
      logs_[kLogKey].log(now_ns, "key for epoch {}: {}", epoch, k.error());
      return;
    }
    into = *k;
    ok = true;
  };
  if (!cur_ok_ || static_cast<std::int64_t>(cur_.epoch) < e) {
    if (next_ok_ && static_cast<std::int64_t>(next_.epoch) == e) {
      std::swap(cur_, next_);
      next_ok_ = false;
      ++c_.key_rollovers;
    } else {
      cur_ok_ = false;
      fetch(static_cast<std::uint64_t>(e), cur_, cur_ok_);
    }
  }
  if (cur_ok_ && (!next_ok_ || next_.epoch != cur_.epoch + 1)) {
    next_ok_ = false;
    fetch(cur_.epoch + 1, next_, next_ok_);
  }
  if (receiver_ && ring_epoch_ != e) {
    auto ring = keys_->inbound_ring(static_cast<std::uint64_t>(e));
    if (ring) {
      ring_ = std::move(*ring);
      ring_epoch_ = e;
    } else {
      ++c_.key_fetch_errors;
      logs_[kLogKey].log(now_ns, "inbound key ring for epoch {}: {}", e, ring.error());
    }
  }
}

// The packet path's key choice: the current key, or at the boundary the one held ahead.
const crypto::IdentityKey* Agent::key_for(std::int64_t now_ns) noexcept {
  const auto& p = keys_->epoch_policy();
  const std::int64_t e = (now_ns - p.origin_ns) / p.length_ns;
  if (cur_ok_ && static_cast<std::int64_t>(cur_.epoch) == e) return &cur_;
  if (next_ok_ && static_cast<std::int64_t>(next_.epoch) == e) {
    std::swap(cur_, next_);  // SecretBytes: a 32-byte copy, no allocation
    next_ok_ = false;
    ++c_.key_rollovers;
    return &cur_;
  }
  return nullptr;
}

void Agent::on_tun() noexcept {
  std::uint8_t* buf = tx_buf_.data();
  for (std::size_t i = 0; i < kTunBatch; ++i) {
    const ssize_t n = ::read(tun_.fd.get(), buf + kEncapLen, kBufLen - kEncapLen);
    if (n <= 0) break;
    ++c_.tun_packets;
    const std::int64_t now = realtime_ns();
    const crypto::IdentityKey* key = key_for(now);
    if (key == nullptr) {
      ++c_.out_no_key;
      logs_[kLogKey].log(now, "no key for the current epoch: packet dropped (fail closed)");
      continue;
    }
    OutPacket op;
    switch (tagger_->encapsulate(*key, keys_->epoch_policy(), now, buf, static_cast<std::size_t>(n), op)) {
      case OutResult::ok: break;
      case OutResult::not_ip: ++c_.out_not_ip; continue;
      case OutResult::not_unicast: ++c_.out_not_unicast; continue;
      case OutResult::fragment:
        ++c_.out_fragment;
        logs_[kLogOut].log(now, "dropped an IP fragment from {}: lower the sender's packet size", tun_.name);
        continue;
      case OutResult::too_long: ++c_.out_too_long; continue;
      case OutResult::no_key: ++c_.out_no_key; continue;
      case OutResult::mint_failed: ++c_.out_mint_failed; continue;
    }
    ++c_.tagged;
    ssize_t sent;
    if (op.ip_version == 4) {
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(crypto::kGenevePort);
      std::memcpy(&a.sin_addr, op.dst.data(), 4);
      sent = ::sendto(sock4_.get(), buf, op.len, 0, reinterpret_cast<sockaddr*>(&a), sizeof a);
    } else if (sock6_) {
      sockaddr_in6 a{};
      a.sin6_family = AF_INET6;
      a.sin6_port = htons(crypto::kGenevePort);
      std::memcpy(&a.sin6_addr, op.dst.data(), 16);
      sent = ::sendto(sock6_.get(), buf, op.len, 0, reinterpret_cast<sockaddr*>(&a), sizeof a);
    } else {
      sent = -1;
      errno = EAFNOSUPPORT;
    }
    if (sent == static_cast<ssize_t>(op.len)) {
      ++c_.sent;
    } else {
      ++c_.send_errors;
      char dst[INET6_ADDRSTRLEN] = "?";
      inet_ntop(op.ip_version == 4 ? AF_INET : AF_INET6, op.dst.data(), dst, sizeof dst);
      logs_[kLogSend].log(now, "sending to {} via {}: {}", dst, cfg_.egress, std::strerror(errno));
    }
  }
}

void Agent::on_socket(int fd) noexcept {
  std::array<mmsghdr, kRxBatch> msgs{};
  std::array<iovec, kRxBatch> iov{};
  for (std::size_t i = 0; i < kRxBatch; ++i) {
    iov[i].iov_base = rx_bufs_[i].data() + kRxHeadroom;
    iov[i].iov_len = kBufLen - kRxHeadroom;
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  const int n = ::recvmmsg(fd, msgs.data(), kRxBatch, MSG_DONTWAIT, nullptr);
  if (n <= 0) return;
  std::array<Datagram, kRxBatch> d;
  for (int i = 0; i < n; ++i) {
    d[static_cast<std::size_t>(i)].buf = rx_bufs_[static_cast<std::size_t>(i)].data();
    d[static_cast<std::size_t>(i)].len = msgs[static_cast<std::size_t>(i)].msg_len;
  }
  const std::int64_t now = realtime_ns();
  const std::uint64_t rejected = c_.in_rejected + c_.in_malformed + c_.in_unverifiable;
  receiver_->process(ring_.get(), now, {d.data(), static_cast<std::size_t>(n)}, c_);
  if (c_.in_rejected + c_.in_malformed + c_.in_unverifiable != rejected)
    logs_[kLogIn].log(now, "dropped inbound Geneve packets (malformed {}, rejected {}, unverifiable {} in total)",
                      c_.in_malformed, c_.in_rejected, c_.in_unverifiable);
  for (int i = 0; i < n; ++i) {
    const auto inner = d[static_cast<std::size_t>(i)].inner;
    if (inner.empty()) continue;
    if (::write(tun_.fd.get(), inner.data(), inner.size()) == static_cast<ssize_t>(inner.size())) {
      ++c_.delivered;
    } else {
      ++c_.tun_write_errors;
      logs_[kLogTun].log(now, "writing to {}: {}", tun_.name, std::strerror(errno));
    }
  }
}

void Agent::report(bool table) {
  if (table) {
    fmt::print(stderr, "ztagent counters (identity {}, key epoch {}):\n", keys_->identity(), cur_.epoch);
    for_each_counter(c_, [](std::string_view name, std::uint64_t v, std::string_view desc) {
      fmt::print(stderr, "  {:<24} {:>12}  {}\n", name, v, desc);
    });
  }
  if (cfg_.stats_file.empty()) return;
  nlohmann::json j;
  for_each_counter(c_, [&](std::string_view name, std::uint64_t v, std::string_view) { j[std::string(name)] = v; });
  j["identity"] = keys_->identity();
  j["key_epoch"] = cur_.epoch;
  // Opened at setup, before privileges were dropped: rewrite it in place.
  const std::string text = j.dump(2) + "\n";
  if (::ftruncate(stats_fd_.get(), 0) < 0 ||
      ::pwrite(stats_fd_.get(), text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()))
    fmt::print(stderr, "ztagent: cannot write --stats-file '{}': {}\n", cfg_.stats_file, std::strerror(errno));
}

int Agent::run() {
  if (auto ok = setup(); !ok) {
    fmt::print(stderr, "ztagent: refusing to start: {}\n", ok.error());
    return 1;
  }
  fmt::print(stderr, "ztagent: running\n");
  std::array<pollfd, 5> pfd{};
  std::size_t np = 0;
  auto add = [&](int fd) { pfd[np++] = pollfd{fd, POLLIN, 0}; };
  add(tun_.fd.get());
  add(sigfd_.get());
  add(timer_.get());
  if (receiver_) {
    add(sock4_.get());
    if (sock6_) add(sock6_.get());
  }
  for (;;) {
    const int r = ::poll(pfd.data(), np, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      fmt::print(stderr, "ztagent: poll: {}\n", std::strerror(errno));
      report(!cfg_.quiet);
      return 1;
    }
    if (pfd[0].revents & POLLIN) on_tun();
    for (std::size_t i = 3; i < np; ++i)
      if (pfd[i].revents & POLLIN) on_socket(pfd[i].fd);
    if (pfd[2].revents & POLLIN) {
      std::uint64_t ticks;
      while (::read(timer_.get(), &ticks, sizeof ticks) > 0) {}
      maintain(realtime_ns());
    }
    if (pfd[1].revents & POLLIN) {
      signalfd_siginfo si;
      while (::read(sigfd_.get(), &si, sizeof si) == sizeof si) {
        if (si.ssi_signo == SIGUSR1 || si.ssi_signo == SIGHUP) {
          report(true);
        } else {
          report(!cfg_.quiet);
          return 0;
        }
      }
    }
  }
}

}  // namespace

int run_agent(const AgentConfig& cfg, std::unique_ptr<KeySource> keys) {
  Agent a(cfg, std::move(keys));
  return a.run();
}

}  // namespace zt::agent
