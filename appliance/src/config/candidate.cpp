#include "config/candidate.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <limits>

namespace zt::appliance::config {

namespace {

constexpr std::string_view kLogLevels[] = {"error", "warning", "notice", "info", "debug"};
constexpr std::uint32_t kMaxTimeoutS = 7 * 24 * 3600;
constexpr std::uint32_t kMaxFlowLogRate = 1'000'000;

struct TimeoutKey {
  std::string_view key;
  std::uint32_t Tunables::*field;
  std::uint32_t def;
};
constexpr TimeoutKey kTimeouts[] = {
    {"flow.timeout.tcp_established", &Tunables::tcp_established_s, 1800},
    {"flow.timeout.tcp_transitory", &Tunables::tcp_transitory_s, 20},
    {"flow.timeout.udp", &Tunables::udp_s, 60},
    {"flow.timeout.icmp", &Tunables::icmp_s, 30},
};

constexpr std::string_view kSegmentPrefix = "segment.";
constexpr std::string_view kModeSuffix = ".mode";
constexpr std::string_view kVolumetricPrefix = "volumetric.";

std::string known_keys() {
  std::string s;
  for (const auto& k : tunable_keys()) s += (s.empty() ? "" : ", ") + k.key;
  return s;
}

std::optional<std::string_view> segment_of_key(std::string_view key) {
  if (!key.starts_with(kSegmentPrefix) || !key.ends_with(kModeSuffix)) return std::nullopt;
  auto name = key.substr(kSegmentPrefix.size(), key.size() - kSegmentPrefix.size() - kModeSuffix.size());
  if (name.empty()) return std::nullopt;
  return name;
}

std::expected<std::uint32_t, std::string> parse_u32(std::string_view key, std::string_view v,
                                                    std::uint32_t lo, std::uint32_t hi) {
  std::uint64_t n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc{} || p != v.data() + v.size() || n < lo || n > hi)
    return std::unexpected(fmt::format("{} '{}': expected an integer from {} to {}", key, v, lo, hi));
  return static_cast<std::uint32_t>(n);
}

}  // namespace

std::string_view to_string(SegmentMode m) noexcept { return m == SegmentMode::audit ? "audit" : "enforce"; }

std::vector<KeyHelp> tunable_keys() {
  return {
      {"segment.<name>.mode", "enforce|audit (overrides the policy's mode of segment <name>)"},
      {"flow.timeout.tcp_established", "seconds, or with a unit: 90s, 30m, 2h (1s to 7 days)"},
      {"flow.timeout.tcp_transitory", "seconds, or with a unit (SYN sent and closing TCP flows)"},
      {"flow.timeout.udp", "seconds, or with a unit"},
      {"flow.timeout.icmp", "seconds, or with a unit"},
      {"log.level", "error|warning|notice|info|debug"},
      {"flowlog.rate", "flow-log records written per second, 0 to 1000000 (0: none)"},
      {"volumetric.<key>", "a volumetric limit; the appliance validates key and value"},
  };
}

std::expected<std::uint32_t, std::string> parse_duration_s(std::string_view text, std::uint32_t bare_unit_s) {
  std::uint64_t n = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc{} || p == text.data())
    return std::unexpected(fmt::format("'{}': expected a number with an optional unit s, m or h", text));
  std::string_view unit(p, static_cast<std::size_t>(text.data() + text.size() - p));
  std::uint64_t mul = bare_unit_s;
  if (unit == "s") mul = 1;
  else if (unit == "m") mul = 60;
  else if (unit == "h") mul = 3600;
  else if (!unit.empty())
    return std::unexpected(fmt::format("'{}': unknown unit '{}' (expected s, m or h)", text, unit));
  if (n > std::numeric_limits<std::uint32_t>::max() / mul)
    return std::unexpected(fmt::format("'{}': too large", text));
  return static_cast<std::uint32_t>(n * mul);
}

std::expected<void, std::string> set_tunable(Tunables& t, std::string_view key, std::string_view value,
                                             const VolumetricValidator& volumetric,
                                             const SegmentValidator& segment) {
  if (auto seg = segment_of_key(key)) {
    SegmentMode m;
    if (value == "enforce") m = SegmentMode::enforce;
    else if (value == "audit") m = SegmentMode::audit;
    else return std::unexpected(fmt::format("{} '{}': expected enforce or audit", key, value));
    if (segment) {
      if (auto ok = segment(*seg); !ok) return std::unexpected(fmt::format("{}: {}", key, ok.error()));
    }
    t.segment_mode[std::string(*seg)] = m;
    return {};
  }
  for (const auto& tk : kTimeouts) {
    if (key != tk.key) continue;
    auto s = parse_duration_s(value, 1);
    if (!s) return std::unexpected(fmt::format("{} {}", key, s.error()));
    if (*s < 1 || *s > kMaxTimeoutS)
      return std::unexpected(fmt::format("{} '{}': expected 1s to 7 days ({} s)", key, value, kMaxTimeoutS));
    t.*tk.field = *s;
    return {};
  }
  if (key == "log.level") {
    if (std::find(std::begin(kLogLevels), std::end(kLogLevels), value) == std::end(kLogLevels))
      return std::unexpected(
          fmt::format("log.level '{}': expected error, warning, notice, info or debug", value));
    t.log_level = std::string(value);
    return {};
  }
  if (key == "flowlog.rate") {
    auto n = parse_u32(key, value, 0, kMaxFlowLogRate);
    if (!n) return std::unexpected(n.error());
    t.flow_log_rate = *n;
    return {};
  }
  if (key.starts_with(kVolumetricPrefix) && key.size() > kVolumetricPrefix.size()) {
    const auto k = key.substr(kVolumetricPrefix.size());
    if (!volumetric)
      return std::unexpected(fmt::format("{}: this appliance has no volumetric tunables", key));
    if (auto ok = volumetric(k, value); !ok) return std::unexpected(fmt::format("{}: {}", key, ok.error()));
    t.volumetric[std::string(k)] = std::string(value);
    return {};
  }
  return std::unexpected(fmt::format("unknown key '{}': expected one of {}", key, known_keys()));
}

std::expected<void, std::string> delete_tunable(Tunables& t, std::string_view key) {
  const Tunables defaults;
  if (auto seg = segment_of_key(key)) {
    t.segment_mode.erase(std::string(*seg));
    return {};
  }
  for (const auto& tk : kTimeouts)
    if (key == tk.key) {
      t.*tk.field = tk.def;
      return {};
    }
  if (key == "log.level") {
    t.log_level = defaults.log_level;
    return {};
  }
  if (key == "flowlog.rate") {
    t.flow_log_rate = defaults.flow_log_rate;
    return {};
  }
  if (key.starts_with(kVolumetricPrefix) && key.size() > kVolumetricPrefix.size()) {
    t.volumetric.erase(std::string(key.substr(kVolumetricPrefix.size())));
    return {};
  }
  return std::unexpected(fmt::format("unknown key '{}': expected one of {}", key, known_keys()));
}

std::map<std::string, std::string> flatten(const Tunables& t) {
  std::map<std::string, std::string> m;
  for (const auto& [name, mode] : t.segment_mode)
    m[fmt::format("{}{}{}", kSegmentPrefix, name, kModeSuffix)] = std::string(to_string(mode));
  for (const auto& tk : kTimeouts) m[std::string(tk.key)] = std::to_string(t.*tk.field);
  m["log.level"] = t.log_level;
  m["flowlog.rate"] = std::to_string(t.flow_log_rate);
  for (const auto& [k, v] : t.volumetric) m[std::string(kVolumetricPrefix) + k] = v;
  return m;
}

std::vector<DiffLine> diff(const Tunables& running, const Tunables& candidate) {
  const auto a = flatten(running), b = flatten(candidate);
  std::vector<DiffLine> out;
  auto i = a.begin();
  auto j = b.begin();
  while (i != a.end() || j != b.end()) {
    if (j == b.end() || (i != a.end() && i->first < j->first)) {
      out.push_back({i->first, i->second, std::nullopt});
      ++i;
    } else if (i == a.end() || j->first < i->first) {
      out.push_back({j->first, std::nullopt, j->second});
      ++j;
    } else {
      if (i->second != j->second) out.push_back({i->first, i->second, j->second});
      ++i, ++j;
    }
  }
  return out;
}

std::string render_diff(const std::vector<DiffLine>& d) {
  if (d.empty()) return {};
  std::string s = "[edit]\n";
  for (const auto& l : d) {
    if (l.running) s += fmt::format("- {} {}\n", l.key, *l.running);
    if (l.candidate) s += fmt::format("+ {} {}\n", l.key, *l.candidate);
  }
  return s;
}

CandidateStore::CandidateStore(Options o) : opt_(std::move(o)) {
  if (!opt_.clock) opt_.clock = [] { return std::chrono::steady_clock::now(); };
  if (!opt_.wall_clock) opt_.wall_clock = [] { return std::chrono::system_clock::now(); };
  candidate_ = opt_.initial;
  CommitRecord start;
  start.number = 0;
  start.who = "startup";
  start.comment = "configuration at start";
  start.when = opt_.wall_clock();
  start.config = opt_.initial;
  history_.push_front(std::move(start));
}

CandidateStore::~CandidateStore() { stop_timer(); }

std::expected<void, std::string> CandidateStore::set(std::string_view key, std::string_view value) {
  std::lock_guard lk(mu_);
  Tunables next = candidate_;
  auto ok = set_tunable(next, key, value, opt_.volumetric, opt_.segment);
  if (!ok) return ok;
  candidate_ = std::move(next);
  return {};
}

std::expected<void, std::string> CandidateStore::remove(std::string_view key) {
  std::lock_guard lk(mu_);
  return delete_tunable(candidate_, key);
}

void CandidateStore::discard() {
  std::lock_guard lk(mu_);
  candidate_ = history_.front().config;
}

std::expected<void, std::string> CandidateStore::rollback(unsigned n) {
  std::lock_guard lk(mu_);
  if (n >= history_.size())
    return std::unexpected(fmt::format("rollback {}: only 0 to {} exist ({} commit(s) kept)", n,
                                       history_.size() - 1, history_.size()));
  candidate_ = history_[n].config;
  return {};
}

std::vector<DiffLine> CandidateStore::show_candidate() const {
  std::lock_guard lk(mu_);
  return diff(history_.front().config, candidate_);
}

Tunables CandidateStore::running() const {
  std::lock_guard lk(mu_);
  return history_.front().config;
}

Tunables CandidateStore::candidate() const {
  std::lock_guard lk(mu_);
  return candidate_;
}

std::vector<CommitRecord> CandidateStore::history() const {
  std::lock_guard lk(mu_);
  return {history_.begin(), history_.end()};
}

std::expected<void, std::string> CandidateStore::check() const {
  std::lock_guard lk(mu_);
  // Re-validate every key: a volumetric or segment validator may have changed its mind since
  // the value was staged (a new policy without that segment).
  Tunables scratch;
  for (const auto& [k, v] : flatten(candidate_))
    if (auto ok = set_tunable(scratch, k, v, opt_.volumetric, opt_.segment); !ok) return ok;
  return {};
}

std::optional<std::chrono::seconds> CandidateStore::confirm_remaining() const {
  std::lock_guard lk(mu_);
  if (!confirm_deadline_) return std::nullopt;
  const auto left = *confirm_deadline_ - now();
  return std::max(std::chrono::seconds{0}, std::chrono::ceil<std::chrono::seconds>(left));
}

std::expected<void, std::string> CandidateStore::confirm(std::string_view who) {
  std::lock_guard lk(mu_);
  if (!confirm_deadline_)
    return std::unexpected(fmt::format("confirm ({}): no commit confirmed is pending", who));
  confirm_deadline_.reset();
  return {};
}

std::expected<CandidateStore::CommitResult, std::string> CandidateStore::commit(const CommitOptions& o) {
  std::lock_guard lk(mu_);
  return commit_locked(o, false);
}

std::expected<CandidateStore::CommitResult, std::string> CandidateStore::commit_locked(const CommitOptions& o,
                                                                                   bool automatic) {
  if (o.confirmed && (o.confirmed->count() < 1 || o.confirmed->count() > 24 * 3600))
    return std::unexpected(fmt::format("commit confirmed {}s: expected 1 second to 24 hours", o.confirmed->count()));
  CommitResult res;
  const bool changes = candidate_ != history_.front().config;
  // Junos: a plain commit confirms a pending `commit confirmed` (once it succeeded); a new
  // `commit confirmed` restarts the timer but keeps the configuration to fall back to (the
  // one before the first unconfirmed commit).
  res.confirmed_pending = confirm_deadline_.has_value() && !automatic;
  if (res.confirmed_pending && !o.confirmed && !changes) confirm_deadline_.reset();
  if (!changes && !automatic) {
    if (o.confirmed && confirm_deadline_) confirm_deadline_ = now() + *o.confirmed;
    else if (o.confirmed)
      return std::unexpected("commit confirmed: the candidate has no changes to confirm later");
    res.message = res.confirmed_pending ? "commit confirmed; no changes" : "no changes to commit";
    return res;
  }
  if (!automatic) {
    Tunables scratch;
    for (const auto& [k, v] : flatten(candidate_))
      if (auto ok = set_tunable(scratch, k, v, opt_.volumetric, opt_.segment); !ok)
        return std::unexpected(fmt::format("commit refused, running unchanged: {}", ok.error()));
  }
  if (opt_.apply) {
    if (auto ok = opt_.apply(candidate_); !ok)
      return std::unexpected(fmt::format("commit failed, running unchanged: {}", ok.error()));
  }
  if (res.confirmed_pending && !o.confirmed) confirm_deadline_.reset();
  const Tunables previous = history_.front().config;
  CommitRecord r;
  r.number = next_number_++;
  r.who = o.who;
  r.comment = o.comment;
  r.when = opt_.wall_clock();
  r.confirm_within = o.confirmed;
  r.automatic_rollback = automatic;
  r.config = candidate_;
  history_.push_front(std::move(r));
  while (history_.size() > kHistory + 1) history_.pop_back();
  res.number = history_.front().number;
  if (o.confirmed) {
    if (!confirm_deadline_) before_confirmed_ = previous;
    confirm_deadline_ = now() + *o.confirmed;
    res.message = fmt::format("commit complete; it rolls back in {} s unless confirmed ({} or commit)",
                              o.confirmed->count(), "confirm");
  } else {
    res.message = "commit complete";
  }
  return res;
}

bool CandidateStore::tick() {
  CommitRecord rec;
  std::string error;
  {
    std::lock_guard lk(mu_);
    if (!confirm_deadline_ || now() < *confirm_deadline_) return false;
    const Tunables saved_candidate = candidate_;
    candidate_ = before_confirmed_;
    CommitOptions o;
    o.who = "system";
    o.comment = "automatic rollback: commit confirmed was not confirmed in time";
    auto r = commit_locked(o, true);
    if (!r) {
      candidate_ = saved_candidate;
      error = r.error();
      rec.who = o.who;
      rec.comment = o.comment;
      rec.automatic_rollback = true;
      rec.config = before_confirmed_;
    } else {
      confirm_deadline_.reset();
      rec = history_.front();
    }
  }
  if (opt_.on_auto_rollback) opt_.on_auto_rollback(rec, error);
  return error.empty();
}

void CandidateStore::start_timer(std::chrono::milliseconds period) {
  stop_timer();
  {
    std::lock_guard lk(timer_mu_);
    timer_stop_ = false;
  }
  timer_ = std::thread([this, period] {
    std::unique_lock lk(timer_mu_);
    while (!timer_cv_.wait_for(lk, period, [this] { return timer_stop_; })) {
      lk.unlock();
      tick();
      lk.lock();
    }
  });
}

void CandidateStore::stop_timer() {
  {
    std::lock_guard lk(timer_mu_);
    timer_stop_ = true;
  }
  timer_cv_.notify_all();
  if (timer_.joinable()) timer_.join();
}

}  // namespace zt::appliance::config
