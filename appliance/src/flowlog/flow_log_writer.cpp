#include "flowlog/flow_log_writer.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "zt/rules/drop_reason.hpp"

namespace zt::appliance::flowlog {

namespace {

std::string address(const std::array<std::uint8_t, 16>& a, std::uint8_t version) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(version == 6 ? AF_INET6 : AF_INET, a.data(), buf, sizeof buf);
  return buf;
}

nlohmann::ordered_json proto_name(std::uint8_t p) {
  switch (p) {
    case 6: return "tcp";
    case 17: return "udp";
    case 1: return "icmp";
    case 58: return "icmpv6";
    default: return p;
  }
}

}  // namespace

std::string format_time(std::int64_t unix_ns) {
  std::int64_t s = unix_ns / 1'000'000'000;
  std::int64_t ms = (unix_ns % 1'000'000'000) / 1'000'000;
  if (ms < 0) ms += 1000, s -= 1;
  const std::time_t t = static_cast<std::time_t>(s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

std::string format_line(const dp::FlowLogRecord& r, const Names& names) {
  nlohmann::ordered_json j;
  j["time"] = format_time(r.time_ns);
  j["kind"] = r.kind == dp::FlowLogKind::audit ? "audit" : "deny";
  j["src"] = address(r.src, r.version);
  j["sport"] = r.sport;
  j["dst"] = address(r.dst, r.version);
  j["dport"] = r.dport;
  j["proto"] = proto_name(r.proto);
  nlohmann::ordered_json id;
  id["id"] = r.identity;
  id["name"] = names.identity ? nlohmann::ordered_json(names.identity(r.identity)) : nlohmann::ordered_json(nullptr);
  j["identity"] = std::move(id);
  std::string seg;
  if (names.segment) {
    rules::IpAddress dst;
    dst.bytes = r.dst;
    dst.v6 = r.version == 6;
    seg = names.segment(dst);
  }
  j["segment"] = seg.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(seg);
  j["rule"] = r.has_rule ? nlohmann::ordered_json(r.rule_id) : nlohmann::ordered_json(nullptr);
  j["revision"] = r.revision;
  const auto reason = static_cast<rules::DropReason>(r.reason);
  if (reason == rules::DropReason::none)
    j["reason"] = r.kind == dp::FlowLogKind::audit ? "would_deny" : "none";
  else
    j["reason"] = std::string(rules::to_string(reason));
  j["worker"] = r.worker;
  return j.dump();
}

Names names_from(std::shared_ptr<const rules::PolicySnapshot> policy) {
  Names n;
  if (!policy) return n;
  n.segment = [policy](const rules::IpAddress& a) -> std::string {
    const auto s = policy->segment_of(a);
    if (s == rules::kNoSegment || s >= policy->source().segments.size()) return {};
    return policy->source().segments[s].name;
  };
  n.identity = [policy](std::uint32_t id) { return policy->identity_name(id); };
  return n;
}

FlowLogWriter::FlowLogWriter(WriterConfig cfg, Clock clock) : cfg_(std::move(cfg)), clock_(std::move(clock)) {
  if (!clock_) clock_ = [] { return std::chrono::steady_clock::now(); };
  if (cfg_.burst == 0) cfg_.burst = cfg_.rate;
  tokens_ = cfg_.burst;
  last_ = clock_();
}

FlowLogWriter::~FlowLogWriter() {
  if (file_ != nullptr) std::fclose(file_);
  if (cfg_.syslog) closelog();
}

std::expected<std::unique_ptr<FlowLogWriter>, std::string> FlowLogWriter::create(const WriterConfig& cfg, Clock clock) {
  if (cfg.file.empty() && !cfg.syslog)
    return std::unexpected("flow log: neither a file nor syslog given (flow_log.file / flow_log.syslog)");
  std::unique_ptr<FlowLogWriter> w(new FlowLogWriter(cfg, std::move(clock)));
  if (!cfg.file.empty())
    if (auto ok = w->open_file(); !ok) return std::unexpected(ok.error());
  if (cfg.syslog) openlog(w->cfg_.syslog_ident.c_str(), LOG_PID | LOG_NDELAY, LOG_DAEMON);
  return w;
}

std::expected<void, std::string> FlowLogWriter::open_file() {
  const int fd = ::open(cfg_.file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) return std::unexpected(fmt::format("flow log '{}': cannot open: {}", cfg_.file, std::strerror(errno)));
  std::FILE* f = ::fdopen(fd, "a");
  if (f == nullptr) {
    ::close(fd);
    return std::unexpected(fmt::format("flow log '{}': {}", cfg_.file, std::strerror(errno)));
  }
  if (file_ != nullptr) std::fclose(file_);
  file_ = f;
  return {};
}

std::expected<void, std::string> FlowLogWriter::reopen() {
  std::lock_guard lk(mu_);
  if (cfg_.file.empty()) return {};
  return open_file();
}

void FlowLogWriter::set_rate(std::uint32_t per_second, std::uint32_t burst) {
  std::lock_guard lk(mu_);
  cfg_.rate = per_second;
  cfg_.burst = burst == 0 ? per_second : burst;
  tokens_ = std::min<double>(tokens_, cfg_.burst);
}

WriterStats FlowLogWriter::stats() const {
  std::lock_guard lk(mu_);
  return stats_;
}

bool FlowLogWriter::take_token() {
  const auto now = clock_();
  const double dt = std::chrono::duration<double>(now - last_).count();
  last_ = now;
  if (dt > 0) tokens_ = std::min<double>(cfg_.burst, tokens_ + dt * cfg_.rate);
  if (tokens_ < 1) return false;
  tokens_ -= 1;
  return true;
}

std::size_t FlowLogWriter::write(std::span<const dp::FlowLogRecord> records, const Names& names) {
  std::lock_guard lk(mu_);
  std::size_t n = 0;
  for (const auto& r : records) {
    if (!take_token()) {
      ++stats_.rate_limited;
      continue;
    }
    const auto line = format_line(r, names);
    bool ok = true;
    if (file_ != nullptr)
      ok = std::fwrite(line.data(), 1, line.size(), file_) == line.size() && std::fputc('\n', file_) != EOF;
    if (cfg_.syslog) ::syslog(LOG_INFO, "%s", line.c_str());
    if (ok) ++stats_.written, ++n;
    else ++stats_.write_errors;
  }
  if (file_ != nullptr && std::fflush(file_) != 0) {
    std::clearerr(file_);
  }
  return n;
}

}  // namespace zt::appliance::flowlog
