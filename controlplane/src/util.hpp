// Small private helpers shared by the manager and the client: files and logging.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "zt/controlplane/error.hpp"

namespace zt::cp::detail {

inline Result<std::string> read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return fail(fmt::format("cannot read {}", p.string()));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Write to a temporary file, fsync, rename: a crash leaves the old or the new content.
inline Result<void> write_atomic(const std::filesystem::path& p, std::string_view data, mode_t mode = 0600) {
  const std::string tmp = p.string() + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return fail(fmt::format("cannot create {}: {}", tmp, std::strerror(errno)));
  bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  ok = (::fsync(fd) == 0) && ok;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), p.c_str()) != 0)
    return fail(fmt::format("cannot write {}: {}", p.string(), std::strerror(errno)));
  return {};
}

inline void wipe(std::string& s) {
  OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

// "address:port" of a connected socket's peer ("?" when unknown).
inline std::string peer_name(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  char host[INET6_ADDRSTRLEN] = "?";
  unsigned port = 0;
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    port = ntohs(a->sin6_port);
  }
  return fmt::format("{}:{}", host, port);
}

inline std::string random_hex(std::size_t bytes) {
  std::string raw(bytes, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes));
  std::string out;
  for (unsigned char c : raw) out += fmt::format("{:02x}", c);
  return out;
}

inline std::int64_t now_unix() { return static_cast<std::int64_t>(::time(nullptr)); }

inline std::int64_t now_unix_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

template <class... A>
void log(const char* who, fmt::format_string<A...> f, A&&... a) {
  static std::mutex m;
  std::string line = fmt::format(f, std::forward<A>(a)...);
  std::lock_guard g(m);
  std::time_t t = ::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  fmt::print(stderr, "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z {}: {}\n", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, who, line);
  std::fflush(stderr);
}

}  // namespace zt::cp::detail
