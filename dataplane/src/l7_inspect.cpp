#include "zt/dataplane/l7_inspect.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include <fmt/format.h>

namespace zt::dp {

struct L7Inspector::State {
  const FlowEntry* flow;     // owner (the address is the pool's key)
  FlowKey key;               // the owner's key when opened: tells a reused entry apart
  rules::Verdict verdict;    // the allow verdict whose L7 program applies
  std::uint64_t revision;    // policy revision `verdict` came from
  std::uint32_t base;        // sequence number of the first payload byte
  std::uint16_t len;         // payload bytes inspected (buffered), <= bound
  std::uint16_t line_end;    // bytes through the request line's CRLF; 0 until it is whole
  std::uint16_t method_len;
  std::uint16_t path_off, path_len;
  std::uint16_t segments;    // payload segments that added bytes
  bool audit;                // the destination segment is in audit mode: would-deny passes
  bool live;
};

struct L7Inspector::Staged {
  std::shared_ptr<const rules::PolicySnapshot> policy;
  rules::L7Scratch scratch;
};

namespace {

constexpr std::uint8_t kTcp = 6;
constexpr std::uint8_t kSyn = 0x02;
constexpr unsigned kReclaimScan = 32;

bool is_tchar(std::uint8_t c) noexcept {  // RFC 9110 token characters
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}
bool is_digit(std::uint8_t c) noexcept { return c >= '0' && c <= '9'; }

// method SP request-target SP HTTP-version CRLF (RFC 9112 §3), `nl` the index of the LF.
bool parse_request_line(const std::uint8_t* b, std::size_t nl, std::uint16_t& mlen,
                        std::uint16_t& poff, std::uint16_t& plen) noexcept {
  if (nl < 1 || b[nl - 1] != '\r') return false;
  const std::size_t end = nl - 1;
  std::size_t i = 0;
  while (i < end && is_tchar(b[i])) ++i;
  if (i == 0 || i > 32 || i >= end || b[i] != ' ') return false;
  mlen = static_cast<std::uint16_t>(i);
  const std::size_t p = ++i;
  while (i < end && b[i] > 0x20 && b[i] < 0x7F) ++i;
  if (i == p || i >= end || b[i] != ' ') return false;
  poff = static_cast<std::uint16_t>(p);
  plen = static_cast<std::uint16_t>(i - p);
  ++i;
  return end - i == 8 && std::memcmp(b + i, "HTTP/", 5) == 0 && is_digit(b[i + 5]) &&
         b[i + 6] == '.' && is_digit(b[i + 7]);
}

bool audit_mode(const rules::PolicySnapshot& policy, const rules::Verdict& v) noexcept {
  const auto& pol = policy.source();
  const auto mode = v.segment < pol.segments.size()
                        ? pol.segments[v.segment].mode.value_or(pol.defaults.mode)
                        : pol.defaults.mode;
  return mode == rules::SegmentMode::audit;
}

std::uint32_t read_seq(const rte_mbuf* m, const IpLayer& l) noexcept {
  std::uint8_t tmp[4];
  const auto* p = static_cast<const std::uint8_t*>(rte_pktmbuf_read(m, l.l4_off + 4u, 4, tmp));
  if (p == nullptr) return 0;
  return static_cast<std::uint32_t>(p[0]) << 24 | static_cast<std::uint32_t>(p[1]) << 16 |
         static_cast<std::uint32_t>(p[2]) << 8 | p[3];
}

}  // namespace

std::expected<std::unique_ptr<L7Inspector>, std::string> L7Inspector::create(const L7Config& cfg) {
  if (cfg.flows == 0 || cfg.flows > (1u << 22))
    return std::unexpected(fmt::format(
        "L7 flow pool {} out of range (1 to 4194304 flows per worker)", cfg.flows));
  if (cfg.bound < 64)
    return std::unexpected(fmt::format(
        "L7 inspection bound {} bytes is below 64: no request line fits", cfg.bound));
  if (cfg.max_segments == 0)
    return std::unexpected("L7 segments per flow must be at least 1");
  std::unique_ptr<L7Inspector> t(new L7Inspector());
  t->capacity_ = cfg.flows;
  t->bound_ = cfg.bound;
  t->max_segments_ = cfg.max_segments;
  std::uint32_t slots = 2;
  while (slots < 2ull * cfg.flows) slots <<= 1;
  t->index_mask_ = slots - 1;
  auto up = [](std::size_t n) { return (n + 63) & ~std::size_t{63}; };
  const std::size_t s_bytes = up(sizeof(State) * cfg.flows);
  const std::size_t b_bytes = up(std::size_t{cfg.bound} * cfg.flows);
  const std::size_t i_bytes = up(sizeof(std::uint32_t) * slots);
  const std::size_t f_bytes = up(sizeof(std::uint32_t) * cfg.flows);
  const std::size_t g_bytes = up(cfg.bound);
  const std::size_t total = s_bytes + b_bytes + i_bytes + f_bytes + g_bytes;
  t->mem_ = std::calloc(1, total);
  if (t->mem_ == nullptr)
    return std::unexpected(fmt::format(
        "L7: cannot allocate {} bytes for {} flows x {} bytes; lower the pool or the bound", total,
        cfg.flows, cfg.bound));
  auto* base = static_cast<std::uint8_t*>(t->mem_);
  t->states_ = reinterpret_cast<State*>(base);
  t->bufs_ = base + s_bytes;
  t->index_ = reinterpret_cast<std::uint32_t*>(base + s_bytes + b_bytes);
  t->free_ = reinterpret_cast<std::uint32_t*>(base + s_bytes + b_bytes + i_bytes);
  t->gather_ = base + s_bytes + b_bytes + i_bytes + f_bytes;
  for (std::uint32_t i = 0; i < cfg.flows; ++i) t->free_[i] = cfg.flows - 1 - i;
  t->free_top_ = cfg.flows;
  return t;
}

L7Inspector::~L7Inspector() {
  delete current_;
  delete staged_.load();
  for (auto& r : retired_) delete r.load();
  std::free(mem_);
}

// ---- scratch hand-off ------------------------------------------------------------------------

std::expected<void, std::string> L7Inspector::prepare(
    std::shared_ptr<const rules::PolicySnapshot> policy) {
  for (auto& r : retired_) delete r.exchange(nullptr, std::memory_order_acq_rel);
  if (!policy) return {};
  auto s = std::make_unique<Staged>();
  s->policy = std::move(policy);
  if (auto r = s->policy->prepare_scratch(s->scratch); !r)
    return std::unexpected("L7 inspection: " + r.error());
  delete staged_.exchange(s.release(), std::memory_order_acq_rel);  // one never adopted
  return {};
}

bool L7Inspector::ready(const rules::PolicySnapshot* policy) noexcept {
  if (current_ != nullptr && current_->policy.get() == policy) return true;
  Staged* s = staged_.load(std::memory_order_acquire);
  if (s == nullptr || s->policy.get() != policy) return false;
  // Somewhere to retire the scratch in use (the control path empties these slots).
  unsigned slot = kRetireSlots;
  if (current_ != nullptr) {
    for (unsigned i = 0; i < kRetireSlots && slot == kRetireSlots; ++i)
      if (retired_[i].load(std::memory_order_relaxed) == nullptr) slot = i;
    if (slot == kRetireSlots) return false;
  }
  s = staged_.exchange(nullptr, std::memory_order_acq_rel);
  if (s == nullptr) return false;  // the control path replaced it meanwhile: not ours to keep
  if (s->policy.get() != policy) {
    // A newer one was staged between our load and the exchange: put it back for its snapshot.
    Staged* expected = nullptr;
    if (!staged_.compare_exchange_strong(expected, s, std::memory_order_acq_rel)) {
      // Yet another was staged: `s` is stale; retire it (never freed here).
      for (auto& r : retired_) {
        Staged* none = nullptr;
        if (r.compare_exchange_strong(none, s, std::memory_order_acq_rel)) return false;
      }
      staged_.store(s, std::memory_order_release);  // unreachable in practice; keep it owned
    }
    return false;
  }
  if (current_ != nullptr) retired_[slot].store(current_, std::memory_order_release);
  current_ = s;
  return true;
}

// ---- the pool --------------------------------------------------------------------------------

std::uint32_t L7Inspector::hash(const FlowEntry* e) const noexcept {
  const auto v = reinterpret_cast<std::uintptr_t>(e) >> 3;
  return static_cast<std::uint32_t>((v * 0x9E3779B97F4A7C15ULL) >> 32);
}

std::uint32_t L7Inspector::find(const FlowEntry* e) const noexcept {
  std::uint32_t s = hash(e) & index_mask_;
  for (std::uint32_t n = 0; n <= index_mask_; ++n, s = (s + 1) & index_mask_) {
    const std::uint32_t v = index_[s];
    if (v == 0) return kNoL7State;
    if (states_[v - 1].flow == e) return v - 1;
  }
  return kNoL7State;
}

bool L7Inspector::index_insert(const FlowEntry* e, std::uint32_t st) noexcept {
  std::uint32_t s = hash(e) & index_mask_;
  for (std::uint32_t n = 0; n <= index_mask_; ++n, s = (s + 1) & index_mask_) {
    if (index_[s] == 0) {
      index_[s] = st + 1;
      return true;
    }
  }
  return false;
}

void L7Inspector::release(std::uint32_t st) noexcept {
  State& S = states_[st];
  std::uint32_t i = hash(S.flow) & index_mask_;
  while (index_[i] != st + 1) i = (i + 1) & index_mask_;  // present: inserted with it
  index_[i] = 0;
  for (std::uint32_t j = (i + 1) & index_mask_; index_[j] != 0; j = (j + 1) & index_mask_) {
    const std::uint32_t home = hash(states_[index_[j] - 1].flow) & index_mask_;
    const bool movable = i <= j ? (home <= i || home > j) : (home <= i && home > j);
    if (movable) {
      index_[i] = index_[j];
      index_[j] = 0;
      i = j;
    }
  }
  S.live = false;
  S.flow = nullptr;
  free_[free_top_++] = st;
  --used_;
}

bool L7Inspector::stale(std::uint32_t st, FlowTable& flows) const noexcept {
  const State& S = states_[st];
  return flows.lookup(S.key) != S.flow || (S.flow->flags & kFlowL7) == 0;
}

std::uint32_t L7Inspector::allocate(FlowTable& flows) noexcept {
  if (free_top_ == 0) {
    for (unsigned n = 0; n < kReclaimScan; ++n) {
      const std::uint32_t i = cursor_;
      cursor_ = cursor_ + 1 == capacity_ ? 0 : cursor_ + 1;
      if (states_[i].live && stale(i, flows)) {
        release(i);
        ++stats_.reclaimed;
      }
    }
    if (free_top_ == 0) return kNoL7State;
  }
  ++used_;
  return free_[--free_top_];
}

unsigned L7Inspector::age(FlowTable& flows, unsigned n) noexcept {
  unsigned freed = 0;
  n = std::min(n, capacity_);
  for (unsigned k = 0; k < n && used_ != 0; ++k) {
    const std::uint32_t i = cursor_;
    cursor_ = cursor_ + 1 == capacity_ ? 0 : cursor_ + 1;
    if (states_[i].live && stale(i, flows)) {
      release(i);
      ++freed;
    }
  }
  stats_.reclaimed += freed;
  return freed;
}

// ---- decisions -------------------------------------------------------------------------------

DropReason L7Inspector::deny(FlowEntry& e, std::uint32_t st) noexcept {
  if (st != kNoL7State) release(st);
  e.flags = static_cast<std::uint8_t>((e.flags & ~kFlowL7) | kFlowCut);
  // Ages out on the short closing timeout; until then every packet of it drops (kFlowCut).
  if (e.tcp != TcpState::none) e.tcp = TcpState::closed;
  ++stats_.denied;
  return DropReason::policy_l7_deny;
}

DropReason L7Inspector::finish(FlowEntry& e, std::uint32_t st) noexcept {
  release(st);
  e.flags = static_cast<std::uint8_t>((e.flags & ~kFlowL7) | kFlowL7Done);
  ++stats_.finished;
  return DropReason::none;
}

DropReason L7Inspector::revised(FlowEntry& e, const rules::Verdict& v) noexcept {
  if (v.l7 == rules::kNoL7 || (e.flags & (kFlowL7 | kFlowL7Done)) != 0) return DropReason::none;
  // Now under an L7 rule, but its first bytes went by uninspected: cut rather than guess.
  e.flags = static_cast<std::uint8_t>(e.flags | kFlowCut);
  if (e.tcp != TcpState::none) e.tcp = TcpState::closed;
  return DropReason::policy_l7_deny;
}

DropReason L7Inspector::open(FlowEntry& e, const rules::Verdict& v,
                             const rules::PolicySnapshot& policy, const rte_mbuf* m,
                             const IpLayer& l, FlowTable& flows) noexcept {
  if (!ready(&policy)) return DropReason::l7_not_ready;
  std::uint32_t st = find(&e);
  if (st == kNoL7State) {  // (else: a state left by an earlier flow in this entry: reuse it)
    st = allocate(flows);
    if (st == kNoL7State) {
      ++stats_.pool_full;
      return DropReason::l7_pool_full;
    }
    states_[st].flow = &e;
    if (!index_insert(&e, st)) {  // cannot happen: the index has twice the pool's slots
      free_[free_top_++] = st;
      --used_;
      return DropReason::l7_pool_full;
    }
  }
  State& S = states_[st];
  S.flow = &e;
  S.key = e.key;
  S.verdict = v;
  S.revision = policy.revision();
  S.base = read_seq(m, l) + 1;  // the SYN's sequence number + 1
  S.len = S.line_end = S.method_len = S.path_off = S.path_len = S.segments = 0;
  S.audit = audit_mode(policy, v);
  S.live = true;
  e.flags = static_cast<std::uint8_t>((e.flags & ~kFlowL7Bits) | kFlowL7);
  ++stats_.opened;
  return DropReason::none;
}

DropReason L7Inspector::inspect(FlowEntry& e, const rules::PolicySnapshot& policy,
                                std::uint64_t revision, const rte_mbuf* m,
                                const IpLayer& l) noexcept {
  if (l.frag != FragKind::none) return deny(e, find(&e));  // its payload is not all here
  if (l.proto != kTcp || l.l4_len <= l.l4_hdr_len) return DropReason::none;
  L7Segment s;
  s.seq = read_seq(m, l);
  s.syn = (l.tcp_flags & kSyn) != 0;
  s.payload_len = l.l4_len - l.l4_hdr_len;
  const std::uint32_t n = std::min<std::uint32_t>(s.payload_len, bound_);
  const auto* p = static_cast<const std::uint8_t*>(
      rte_pktmbuf_read(m, static_cast<std::uint32_t>(l.l4_off) + l.l4_hdr_len, n, gather_));
  if (p == nullptr) return deny(e, find(&e));
  s.payload = {p, n};
  return inspect_segment(e, policy, revision, s);
}

DropReason L7Inspector::inspect_segment(FlowEntry& e, const rules::PolicySnapshot& policy,
                                        std::uint64_t revision, const L7Segment& s) noexcept {
  const std::uint32_t st = find(&e);
  if (st == kNoL7State) return deny(e, st);  // state lost: never pass uninspected
  if (s.payload_len == 0) return DropReason::none;
  if (!ready(&policy)) return DropReason::l7_not_ready;
  State& S = states_[st];
  std::uint8_t* buf = bufs_ + static_cast<std::size_t>(st) * bound_;

  if (S.revision != revision) {
    // Another policy revision: the L7 program index belongs to the snapshot. Decide again, as
    // the pipeline does for the flow, from the initiator's side.
    const bool lo_init = e.initiator == KeyDir::lo_to_hi;
    rules::FlowKey fk;
    fk.src = e.identity;
    fk.dst.bytes = lo_init ? e.key.addr_hi : e.key.addr_lo;
    fk.dst.v6 = e.key.version == 6;
    fk.proto = e.key.proto;
    fk.dport = lo_init ? e.key.port_hi : e.key.port_lo;
    const rules::Verdict v = policy.classify(fk);
    if (v.disposition == rules::Disposition::deny) return deny(e, st);
    if (v.l7 == rules::kNoL7) return finish(e, st);  // the policy no longer asks for L7
    S.verdict = v;
    S.revision = revision;
    S.audit = audit_mode(policy, v);
  }

  const std::uint32_t data_seq = s.seq + (s.syn ? 1u : 0u);
  const auto rel = static_cast<std::int32_t>(data_seq - S.base);
  // Bytes before the stream's first byte, or a gap: nothing held, the sender retransmits.
  if (rel < 0 || static_cast<std::uint32_t>(rel) > S.len) return DropReason::l7_out_of_order;
  const std::uint32_t seen = std::min<std::uint32_t>(S.len - static_cast<std::uint32_t>(rel), s.payload_len);
  if (seen > s.payload.size() ||
      std::memcmp(s.payload.data(), buf + rel, seen) != 0)  // a retransmission that lies
    return deny(e, st);
  const std::uint32_t fresh = s.payload_len - seen;
  const std::uint32_t take = std::min<std::uint32_t>(fresh, bound_ - S.len);
  if (fresh == 0) return DropReason::none;  // a plain retransmission of inspected bytes
  const std::uint32_t old_len = S.len;
  std::memcpy(buf + S.len, s.payload.data() + seen, take);
  S.len = static_cast<std::uint16_t>(S.len + take);
  const bool at_bound = S.len >= bound_;
  if (++S.segments > max_segments_ && !at_bound) return deny(e, st);  // rescans stay bounded

  if (S.line_end == 0) {
    const auto* nl = static_cast<const std::uint8_t*>(std::memchr(buf + old_len, '\n', S.len - old_len));
    if (nl == nullptr) return at_bound ? deny(e, st) : DropReason::none;  // a partial line
    const auto at = static_cast<std::size_t>(nl - buf);
    if (!parse_request_line(buf, at, S.method_len, S.path_off, S.path_len)) return deny(e, st);
    S.line_end = static_cast<std::uint16_t>(at + 1);
  }
  const std::string_view method(reinterpret_cast<const char*>(buf), S.method_len);
  const std::string_view path(reinterpret_cast<const char*>(buf) + S.path_off, S.path_len);
  const auto r = policy.check_l7(S.verdict, method, path, {buf, S.len}, current_->scratch);
  if (r.outcome != rules::L7Outcome::allowed) {
    if (!S.audit) return deny(e, st);
    ++stats_.audited;  // audit segment: the would-deny is counted, the flow passes
    return finish(e, st);
  }
  return at_bound ? finish(e, st) : DropReason::none;
}

}  // namespace zt::dp
