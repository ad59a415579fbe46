// The live tunables of a running ztgate and their Junos-style candidate store (README.md in this
// folder): `set KEY VALUE` stages a change in a candidate, `show candidate` diffs it against
// running, `commit` applies it through a callback as one unit (a failure leaves running as it
// was and says why), `commit confirmed N` rolls back by itself unless confirmed within N,
// `rollback N` loads the N-th previous committed configuration into the candidate.
//
// Control-path code: every method locks, may allocate, and never touches a worker. Time comes
// from an injected clock; `tick()` (or the timer thread of `start_timer`) performs a due
// confirmed-commit rollback.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <expected>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace zt::appliance::config {

enum class SegmentMode : std::uint8_t { enforce, audit };
std::string_view to_string(SegmentMode m) noexcept;

// Everything `set` can change on a running ztgate. Unset optionals/absent map entries mean "as
// the policy / start-up options say" (no override).
struct Tunables {
  std::map<std::string, SegmentMode> segment_mode;  // segment name → override of the policy's mode
  // Flow idle timeouts in seconds (FlowTimeouts: tcp_transitory covers SYN and closing states).
  std::uint32_t tcp_established_s = 1800;
  std::uint32_t tcp_transitory_s = 20;
  std::uint32_t udp_s = 60;
  std::uint32_t icmp_s = 30;
  std::string log_level = "notice";     // error|warning|notice|info|debug
  std::uint32_t flow_log_rate = 1000;   // flow-log records per second written (0: none)
  std::map<std::string, std::string> volumetric;  // key=value, validated by the owner's callback

  friend bool operator==(const Tunables&, const Tunables&) = default;
};

// The tunables as KEY → VALUE text, in key order (what `show configuration` prints).
std::map<std::string, std::string> flatten(const Tunables& t);

// Stages KEY VALUE into `t`; the error names the key and what is allowed. `volumetric`
// validates `volumetric.<k>` (k, value); without it, volumetric keys are refused.
using VolumetricValidator = std::function<std::expected<void, std::string>(std::string_view key,
                                                                          std::string_view value)>;
using SegmentValidator = std::function<std::expected<void, std::string>(std::string_view segment)>;
std::expected<void, std::string> set_tunable(Tunables& t, std::string_view key, std::string_view value,
                                             const VolumetricValidator& volumetric = {},
                                             const SegmentValidator& segment = {});
// Reverts KEY to its default (segment/volumetric: removes the override).
std::expected<void, std::string> delete_tunable(Tunables& t, std::string_view key);

// The keys `set` knows, with what each accepts (for `set ?` and error messages).
struct KeyHelp {
  std::string key;
  std::string accepts;
};
std::vector<KeyHelp> tunable_keys();

// "90", "90s", "10m", "2h" → seconds; "N" alone means `bare_unit_s` seconds each.
std::expected<std::uint32_t, std::string> parse_duration_s(std::string_view text, std::uint32_t bare_unit_s);

struct DiffLine {
  std::string key;
  std::optional<std::string> running, candidate;  // absent: not set on that side
};
std::vector<DiffLine> diff(const Tunables& running, const Tunables& candidate);
// Junos `show | compare` style: "[edit]" then "- key value" / "+ key value" lines; "" if equal.
std::string render_diff(const std::vector<DiffLine>& d);

struct CommitRecord {
  std::uint64_t number = 0;  // increasing from 1 per process
  std::string who;
  std::string comment;
  std::chrono::system_clock::time_point when;
  std::optional<std::chrono::seconds> confirm_within;  // a `commit confirmed`
  bool automatic_rollback = false;                     // made by the confirm timer
  Tunables config;                                     // what became running
};

class CandidateStore {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  using WallClock = std::function<std::chrono::system_clock::time_point()>;
  // Applies `next` to the dataplane/logging. Called with the store's lock held (commits are
  // serialised; it must not call back into the store). An error leaves running unchanged and
  // is returned to the committer.
  using ApplyFn = std::function<std::expected<void, std::string>(const Tunables& next)>;
  // Called after an automatic rollback (who/why for the audit log); may be empty.
  using NotifyFn = std::function<void(const CommitRecord&, const std::string& error)>;

  static constexpr std::size_t kHistory = 20;  // committed configurations kept (rollback 1..20)

  struct Options {
    Tunables initial;  // running at start (the config file's / command line's tunables)
    ApplyFn apply;
    VolumetricValidator volumetric;
    SegmentValidator segment;
    Clock clock;           // default: steady_clock::now
    WallClock wall_clock;  // default: system_clock::now
    NotifyFn on_auto_rollback;
  };
  explicit CandidateStore(Options o);
  ~CandidateStore();  // stops the timer thread
  CandidateStore(const CandidateStore&) = delete;
  CandidateStore& operator=(const CandidateStore&) = delete;

  // Candidate editing (one shared candidate, like Junos `configure` without `private`).
  std::expected<void, std::string> set(std::string_view key, std::string_view value);
  std::expected<void, std::string> remove(std::string_view key);
  void discard();  // candidate := running (`rollback 0`)
  // `rollback N`: the configuration of the N-th previous commit becomes the candidate
  // (0: running); `commit` then applies it. Error names the N available.
  std::expected<void, std::string> rollback(unsigned n);

  std::vector<DiffLine> show_candidate() const;
  Tunables running() const;
  Tunables candidate() const;

  struct CommitOptions {
    std::string who;
    std::string comment;
    std::optional<std::chrono::seconds> confirmed;  // `commit confirmed N`
  };
  struct CommitResult {
    std::uint64_t number = 0;  // 0: nothing changed (only confirmed a pending commit, or no-op)
    bool confirmed_pending = false;  // a previous `commit confirmed` was confirmed by this one
    std::string message;             // what to print ("commit complete", ...)
  };
  // Validates and applies the candidate; running and history change only if `apply` succeeds.
  // With a `commit confirmed` pending, a plain commit confirms it (Junos); a new `commit
  // confirmed` restarts the timer and still falls back to the configuration before the first.
  std::expected<CommitResult, std::string> commit(const CommitOptions& o);
  // Validates the candidate again without applying (`commit check`).
  std::expected<void, std::string> check() const;
  // Confirms a pending `commit confirmed`; error if there is none.
  std::expected<void, std::string> confirm(std::string_view who);
  // Seconds left before a pending confirmed commit rolls back.
  std::optional<std::chrono::seconds> confirm_remaining() const;

  // History, newest first: [0] is running.
  std::vector<CommitRecord> history() const;

  // Performs a due automatic rollback (the configuration before the unconfirmed commit becomes
  // running and candidate). Returns true if it rolled back. If applying it fails, running stays,
  // the error goes to on_auto_rollback and the next tick tries again.
  bool tick();
  // A thread calling tick() every `period` until the store is destroyed or stop_timer().
  void start_timer(std::chrono::milliseconds period);
  void stop_timer();

 private:
  std::expected<CommitResult, std::string> commit_locked(const CommitOptions& o, bool automatic);
  std::chrono::steady_clock::time_point now() const { return opt_.clock(); }

  Options opt_;
  mutable std::mutex mu_;
  Tunables candidate_;
  std::deque<CommitRecord> history_;  // [0] = running
  std::uint64_t next_number_ = 1;
  std::optional<std::chrono::steady_clock::time_point> confirm_deadline_;
  Tunables before_confirmed_;  // what an unconfirmed commit rolls back to
  std::mutex timer_mu_;
  std::condition_variable timer_cv_;
  bool timer_stop_ = false;
  std::thread timer_;
};

}  // namespace zt::appliance::config
