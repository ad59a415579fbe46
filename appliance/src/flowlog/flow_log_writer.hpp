// Flow-log writer (README.md in this folder): turns the workers' FlowLogRecords (deny and audit
// decisions, drained with dp::Control::drain_flow_logs) into JSON lines, one per record, in a
// file and/or syslog, with its own output rate limit.
//
// Control-side code: it allocates, formats and writes; thread-safe (one mutex), so a drain
// loop may write while the admin socket asks it to reopen() after logrotate or set_rate().
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <expected>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>

#include "zt/dataplane/flow_log.hpp"
#include "zt/rules/snapshot.hpp"

namespace zt::appliance::flowlog {

// Names for the record's numbers, from the live policy (names_from) or a test's table. Either
// may be empty: the line then carries only the number / no segment.
struct Names {
  std::function<std::string(const rules::IpAddress& dst)> segment;  // "" when in no segment
  std::function<std::string(std::uint32_t identity)> identity;
};
// Names from a compiled policy: PolicySnapshot::segment_of / identity_name. Holds `policy`.
Names names_from(std::shared_ptr<const rules::PolicySnapshot> policy);

// One record as a JSON object on one line (no newline), keys in this order:
//   {"time":"2026-11-24T07:30:00.123Z","kind":"deny","src":"10.1.0.1","sport":40000,
//    "dst":"10.2.0.5","dport":23,"proto":"tcp","identity":{"id":2,"name":"unauthenticated"},
//    "segment":"zone-b","rule":30,"revision":1,"reason":"policy_deny","worker":0}
// time: RFC 3339, UTC, milliseconds. proto: tcp/udp/icmp/icmpv6 or the number. rule: null when
// the record names none. segment: null when the destination is in no segment. reason: the drop
// reason's name; an audit record without one says "would_deny".
std::string format_line(const dp::FlowLogRecord& r, const Names& names);
std::string format_time(std::int64_t unix_ns);  // RFC 3339 UTC with ms

struct WriterConfig {
  std::string file;               // appended to (created 0640); empty: no file
  bool syslog = false;            // each line also to syslog(LOG_INFO), facility LOG_DAEMON
  std::string syslog_ident = "ztgate";
  std::uint32_t rate = 1000;      // lines per second written; excess is counted, not written
  std::uint32_t burst = 0;        // bucket depth; 0: one second's worth (`rate`)
};

struct WriterStats {
  std::uint64_t written = 0;       // lines written
  std::uint64_t rate_limited = 0;  // records not written: over the writer's rate
  std::uint64_t write_errors = 0;  // records lost to a failed write (disk full, ...)
};

class FlowLogWriter {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  // Opens the file (error names it and why) and syslog if asked.
  static std::expected<std::unique_ptr<FlowLogWriter>, std::string> create(const WriterConfig& cfg,
                                                                           Clock clock = {});
  ~FlowLogWriter();
  FlowLogWriter(const FlowLogWriter&) = delete;
  FlowLogWriter& operator=(const FlowLogWriter&) = delete;

  // Writes one line per record while the rate allows; returns how many were written. The file
  // is flushed once per call.
  std::size_t write(std::span<const dp::FlowLogRecord> records, const Names& names);
  // Closes and reopens the file by name (after logrotate moved it away).
  std::expected<void, std::string> reopen();
  void set_rate(std::uint32_t per_second, std::uint32_t burst = 0);
  WriterStats stats() const;

 private:
  FlowLogWriter(WriterConfig cfg, Clock clock);
  std::expected<void, std::string> open_file();
  bool take_token();

  WriterConfig cfg_;
  Clock clock_;
  mutable std::mutex mu_;
  std::FILE* file_ = nullptr;
  double tokens_ = 0;
  std::chrono::steady_clock::time_point last_;
  WriterStats stats_;
};

}  // namespace zt::appliance::flowlog
