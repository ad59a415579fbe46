#include "zt/dataplane/pipeline.hpp"

#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_ether.h>
#include <rte_prefetch.h>
#include <rte_ring.h>

#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstring>
#include <memory>

#include <fmt/format.h>

#include "zt/dataplane/capture.hpp"
#include "zt/dataplane/mbuf_parser.hpp"

namespace zt::dp {

namespace {

using rules::DropReason;

constexpr std::uint8_t kFlagTagged = 1;  // opened with a tag: the initiator must keep tagging
constexpr std::uint8_t kFlagHdrOk = 2;   // the admitting rule accepts HDR coverage
constexpr std::uint8_t kFlagAudit = 4;   // admitted as an audit (would-deny) flow
constexpr std::uint8_t kTcp = 6;
constexpr std::uint8_t kFin = 0x01, kSyn = 0x02, kAck = 0x10;

// TagReject → DropReason, by name (crypto/ may not see rules/), computed at compile time.
constexpr auto kTagDrop = [] {
  std::array<DropReason, crypto::kTagRejectCount> t{};
  for (std::size_t i = 0; i < crypto::kTagRejectCount; ++i) {
    const auto r = rules::drop_reason_from_string(crypto::to_string(static_cast<crypto::TagReject>(i)));
    t[i] = r ? *r : DropReason::tag_forged_mac;
  }
  t[0] = DropReason::none;
  return t;
}();
static_assert(kTagDrop[static_cast<std::size_t>(crypto::TagReject::tag_replayed)] == DropReason::tag_replayed);

rules::IpAddress to_rules(const std::array<std::uint8_t, 16>& a, std::uint8_t version) noexcept {
  rules::IpAddress r;
  r.bytes = a;
  r.v6 = version == 6;
  return r;
}

struct Pkt {
  // Not initialised here: the parser fills `pp` whole (parse_mbuf too, when it refuses the
  // chain), and `verdict` is written by classify for every packet that reads it (a new flow:
  // kStepClassified). Leaving both out of the constructor saves clearing ~180 bytes a packet
  // (the parsed headers used to be cleared twice: here and by the parser). The flow key is not
  // here at all: pass 1 builds it straight into the array the bulk lookup reads (`kslot`).
  union { ParsedPacket pp; };
  union { rules::Verdict verdict; };
  Pkt() noexcept {}  // NOLINT: the members below keep their initialisers
  // The members below are set by the constructor: kept small and adjacent (a few stores).
  FlowEntry* flow = nullptr;
  std::uint32_t identity = 0;
  std::uint32_t rule = 0;
  std::uint32_t frag = kNoFrag;  // its datagram's entry in the fragment table
  std::uint32_t meter_id = 0;    // the identity whose bucket it is
  std::uint16_t rate_class = rules::kNoRateClass;  // metered: checked in pass 3, consumed in 5
  std::uint16_t steps = 0;  // TraceStep bits
  DropReason drop = DropReason::none;
  KeyDir dir = KeyDir::lo_to_hi;
  std::uint8_t kslot = 0;  // its key in the burst's key array (when it has one)
  bool ip = false;        // an IP packet the policy decides (not ARP)
  bool tagged = false;
  bool verify = false;
  bool has_rule = false;  // `rule` decided it (counters by rule, trace)
  bool tag_bad = false;   // failed a tag check: identity class `invalid`
  bool frag_later = false;       // a non-first fragment: follows its first one (pass 5)
  bool no_flow = false;  // no flow can hold it (may_hold_flow_v4): no key, no flow lookup
};

// Who sent it, as far as this packet tells (counters.hpp, IdentityClass).
IdentityClass identity_class(const Pkt& p) noexcept {
  if (!p.ip) return IdentityClass::none;
  if (p.tag_bad || p.drop == DropReason::tag_missing) return IdentityClass::invalid;
  if (p.tagged) return (p.steps & kStepMacOk) ? IdentityClass::verified : IdentityClass::unverified;
  // Untagged: the identity resolved for a new flow, or the one that opened its flow.
  if (rules::is_segment_source_identity(p.identity)) return IdentityClass::segment;
  if (p.identity >= rules::kFirstDeclaredIdentity) return IdentityClass::verified;  // a reply
  return IdentityClass::unauthenticated;
}

// One trace record per packet while the budget lasts; a full ring loses the record, counted.
void trace_burst(const Pkt* pk, unsigned n, unsigned in_port,
                 std::uint64_t revision, std::uint64_t tsc, rte_ring* ring, std::uint64_t& left,
                 std::uint64_t& seq, WorkerCounters& c) noexcept {
  for (unsigned i = 0; i < n && left != 0; ++i, --left) {
    const Pkt& p = pk[i];
    TraceRecord r;
    r.seq = ++seq;
    r.tsc = tsc;
    r.revision = revision;
    r.port = static_cast<std::uint8_t>(in_port);
    r.length = static_cast<std::uint16_t>(p.pp.pkt_len);
    const bool parse_failed = !p.ip && p.drop != DropReason::none;
    if (p.ip) {
      const IpLayer& l = p.tagged ? p.pp.inner : p.pp.outer;
      r.src = l.src.b;
      r.dst = l.dst.b;
      r.sport = l.sport;
      r.dport = l.dport;
      r.proto = l.proto;
      r.version = l.version;
    }
    r.identity = p.identity;
    r.rule_id = p.rule;
    r.has_rule = p.has_rule;
    r.drop = static_cast<std::uint16_t>(p.drop);
    r.cls = identity_class(p);
    r.disposition = static_cast<std::uint8_t>((p.steps & kStepClassified) ? p.verdict.disposition
                                                                          : rules::Verdict{}.disposition);
    r.steps = static_cast<std::uint16_t>(p.steps | (parse_failed ? 0 : kStepParsed) |
                                         (p.tagged ? kStepTagged : 0) |
                                         (p.drop == DropReason::none ? kStepForwarded : 0));
    if (rte_ring_sp_enqueue_elem(ring, &r, sizeof r) == 0)
      c.trace_records.inc();
    else
      c.trace_lost.inc();
  }
}

// The flow bits a verdict sets; kFlagTagged is the flow's own, kept across revisions.
inline std::uint8_t verdict_flags(const rules::Verdict& v, bool tagged) noexcept {
  return static_cast<std::uint8_t>((tagged ? kFlagTagged : 0) | (v.payload_hdr ? kFlagHdrOk : 0) |
                                   (v.disposition == rules::Disposition::audit ? kFlagAudit : 0));
}

inline void count_drop_n(WorkerCounters& c, DropReason r, unsigned n) noexcept {
  c.drops[static_cast<std::size_t>(r)].add(n);
}

// parse_mbuf with its common case inlined here: a first segment that holds the whole window is
// parsed in place (the parser's fast path inlines too: no call per packet); a chain, or a first
// segment shorter than the window, goes through parse_mbuf (gathered into `scratch`).
[[gnu::always_inline]] inline DropReason parse_pkt(const rte_mbuf* m, ParsedPacket& out,
                                                   std::array<std::uint8_t, kParseWindow>& scratch) noexcept {
  const std::uint32_t pkt_len = rte_pktmbuf_pkt_len(m);
  const std::uint32_t want = std::min<std::uint32_t>(pkt_len, kParseWindow);
  if (rte_pktmbuf_data_len(m) >= want) [[likely]]
    return parse_frame_inlined({rte_pktmbuf_mtod(m, const std::uint8_t*), want}, pkt_len, out);
  return parse_mbuf(m, out, scratch);
}

// Frees a burst's drops. The common case, every mbuf direct, holding one reference, one segment
// and from one pool, goes back to the mempool in one put without rte_pktmbuf_free_bulk's
// per-mbuf segment walk: that reads `next`, on the mbuf's second cache line, which nothing else
// on a drop touches (a single-segment mbuf has `next` NULL: rte_mbuf_check's invariant, which
// the mempool also keeps for free mbufs). Anything else takes the general bulk free.
inline void free_dropped(rte_mbuf** v, unsigned n) noexcept {
  rte_mempool* const pool = v[0]->pool;
  // refcnt and nb_segs are bytes 2-5 of the 8-byte rearm word (data_off, refcnt, nb_segs,
  // port): both 1 is one compare. Any difference is ORed into `odd`.
  static_assert(offsetof(rte_mbuf, refcnt) == offsetof(rte_mbuf, data_off) + 2 &&
                offsetof(rte_mbuf, nb_segs) == offsetof(rte_mbuf, data_off) + 4);
  static_assert(std::endian::native == std::endian::little);
  constexpr std::uint64_t kOne = 0x0000'0001'0001'0000ULL;  // refcnt 1, nb_segs 1
  std::uint64_t odd = 0;
  for (unsigned i = 0; i < n; ++i) {
    const rte_mbuf* m = v[i];
    std::uint64_t rearm;
    std::memcpy(&rearm, &m->data_off, sizeof rearm);
    odd |= ((rearm & 0x0000'FFFF'FFFF'0000ULL) ^ kOne) |
           (reinterpret_cast<std::uintptr_t>(m->pool) ^ reinterpret_cast<std::uintptr_t>(pool)) |
           (m->ol_flags & (RTE_MBUF_F_INDIRECT | RTE_MBUF_F_EXTERNAL));
  }
  if (odd == 0) [[likely]]
    rte_mempool_put_bulk(pool, reinterpret_cast<void* const*>(v), n);
  else
    rte_pktmbuf_free_bulk(v, n);
}

// One flow-log record (flow_log.hpp), if the worker's flow-log bucket has a token and the ring
// room; otherwise counted as suppressed. Only refused or audited new flows get here.
void flow_log(rte_ring* ring, Volumetric& vol, const VolumetricPlan* vp, const IpLayer& l,
              std::uint32_t identity, std::uint32_t rule, bool has_rule, DropReason reason,
              FlowLogKind kind, const BurstClock& clk, std::uint64_t revision, WorkerCounters& c) noexcept {
  if (ring == nullptr || vp == nullptr) return;
  if (!vol.flow_log_token(*vp, clk.tsc)) {
    c.flow_logs_suppressed.inc();
    return;
  }
  FlowLogRecord r;
  r.time_ns = clk.now_ns;
  r.revision = revision;
  r.src = l.src.b;
  r.dst = l.dst.b;
  r.identity = identity;
  r.rule_id = rule;
  r.has_rule = has_rule;
  r.sport = l.sport;
  r.dport = l.dport;
  r.reason = static_cast<std::uint16_t>(reason);
  r.proto = l.proto;
  r.version = l.version;
  r.kind = kind;
  if (rte_ring_sp_enqueue_elem(ring, &r, sizeof r) == 0)
    c.flow_logs.inc();
  else
    c.flow_logs_suppressed.inc();
}

// The outer L3 source of a frame, read with the fewest checks (the parser has not run): up to
// two VLAN tags, IPv4 or IPv6. Null when the frame is anything else or too short (the parser
// will judge it).
inline const std::uint8_t* peek_source(const rte_mbuf* m, std::uint8_t& version) noexcept {
  const auto* d = rte_pktmbuf_mtod(m, const std::uint8_t*);
  const std::uint32_t len = m->data_len;
  std::uint32_t off = 12;
  if (len < 14) return nullptr;
  std::uint16_t et = static_cast<std::uint16_t>((d[12] << 8) | d[13]);
  for (unsigned tags = 0; (et == RTE_ETHER_TYPE_VLAN || et == RTE_ETHER_TYPE_QINQ) && tags < 2; ++tags) {
    off += 4;
    if (len < off + 2) return nullptr;
    et = static_cast<std::uint16_t>((d[off] << 8) | d[off + 1]);
  }
  off += 2;
  if (et == RTE_ETHER_TYPE_IPV4 && len >= off + 20) {
    version = 4;
    return d + off + 12;
  }
  if (et == RTE_ETHER_TYPE_IPV6 && len >= off + 40) {
    version = 6;
    return d + off + 8;
  }
  return nullptr;
}

// Strips outer Ethernet/IP/UDP/Geneve: the frame becomes the outer MACs + the inner IP packet.
// A tagged frame is one segment (pass 3 drops it otherwise: tagged_frame_segmented) and the
// parser placed the inner packet inside it, so the cut and the trim are plain field updates
// (what rte_pktmbuf_adj/trim do for one segment, without their checks and segment walk).
void decapsulate(rte_mbuf* m, const ParsedPacket& pp) noexcept {
  auto* old = rte_pktmbuf_mtod(m, std::uint8_t*);
  const std::uint32_t inner_len = (pp.inner.l4_off - pp.inner.l3_off) + pp.inner.l4_len;
  const std::uint16_t cut = static_cast<std::uint16_t>(pp.inner.l3_off - RTE_ETHER_HDR_LEN);
  std::uint8_t* p = old + cut;
  std::uint64_t mac8;  // the outer MACs, as two loads and two stores (no libc call)
  std::uint32_t mac4;
  std::memcpy(&mac8, old, 8);
  std::memcpy(&mac4, old + 8, 4);
  std::memcpy(p, &mac8, 8);
  std::memcpy(p + 8, &mac4, 4);
  const std::uint16_t et = pp.inner.version == 6 ? RTE_ETHER_TYPE_IPV6 : RTE_ETHER_TYPE_IPV4;
  p[12] = static_cast<std::uint8_t>(et >> 8);
  p[13] = static_cast<std::uint8_t>(et);
  const auto want = static_cast<std::uint16_t>(RTE_ETHER_HDR_LEN + inner_len);
  m->data_off = static_cast<std::uint16_t>(m->data_off + cut);
  m->data_len = want;
  m->pkt_len = want;
}

// A flow admitted under another policy revision, decided again as its initiator's next packet
// would be: what the policy of `revision` says of the initiator's identity towards the
// responder's address and port.
struct Redecision {
  rules::Verdict v;
  DropReason drop = DropReason::none;  // the deny's reason (revoked), or policy_l7_deny (cut)
  bool revoked = false;                // denied: the caller erases the flow and counts it
};

// Allowed: the flow takes the new revision, rule and flags (an L7 rule its first bytes were not
// inspected for cuts it: L7Inspector::revised). Denied: the flow is left as it is, `revoked`.
Redecision redecide(FlowEntry& e, const rules::PolicySnapshot& policy, std::uint32_t revision) noexcept {
  const bool lo_init = e.initiator == KeyDir::lo_to_hi;
  const auto& dst = lo_init ? e.key.addr_hi : e.key.addr_lo;
  const std::uint16_t dport = lo_init ? e.key.port_hi : e.key.port_lo;
  Redecision r;
  if (e.key.version == 4) {  // the IPv4 entry new flows take (rules/README.md "IPv4 entries")
    r.v = policy.classify_v4(e.identity, rules::v4_host_order(dst.data()), e.key.proto, dport);
  } else {
    rules::FlowKey fk;
    fk.src = e.identity;
    fk.dst = to_rules(dst, e.key.version);
    fk.proto = e.key.proto;
    fk.dport = dport;
    r.v = policy.classify(fk);
  }
  if (r.v.disposition == rules::Disposition::deny) {
    r.revoked = true;
    r.drop = r.v.reason == DropReason::none ? DropReason::policy_default_deny : r.v.reason;
    return r;
  }
  e.revision = revision;
  e.rule_id = r.v.rule_id;
  e.flags = static_cast<std::uint8_t>(verdict_flags(r.v, (e.flags & kFlagTagged) != 0) | (e.flags & kFlowL7Bits));
  r.drop = L7Inspector::revised(e, r.v);
  return r;
}

inline void count_revoked(WorkerCounters& c, rules::RuleId rule) noexcept {
  c.revoked_flows.inc();
  c.rules.slot(rule).flows_denied.inc();
}

// FlowTable::age's hook for flows of another revision met by the aging sweep.
struct AgingPolicy {
  const rules::PolicySnapshot* policy;
  std::uint32_t revision;
  WorkerCounters* c;
};
bool age_stale_flow(void* ctx, FlowEntry& e) noexcept {
  const auto& a = *static_cast<const AgingPolicy*>(ctx);
  const Redecision r = redecide(e, *a.policy, a.revision);
  if (r.revoked && a.c != nullptr) count_revoked(*a.c, r.v.rule_id);
  return r.revoked;
}

}  // namespace

unsigned Pipeline::age(std::uint64_t tsc, unsigned buckets, const Snapshot* snap, WorkerCounters* c) noexcept {
  frags_->age(tsc, buckets);
  l7_->age(*flows_, buckets);
  return age_flows(tsc, buckets, snap, c);
}

unsigned Pipeline::age_flows(std::uint64_t tsc, unsigned buckets, const Snapshot* snap, WorkerCounters* c) noexcept {
  if (snap == nullptr || snap->policy == nullptr) return flows_->age(tsc, buckets, last_revision_);
  AgingPolicy a{snap->policy.get(), static_cast<std::uint32_t>(snap->revision()), c};
  // At most ~32 re-decisions a call (~450 cycles each at 1M flows: perf/README part 7), so an
  // idle poll after a policy change is back at its RX queues within a few µs.
  constexpr unsigned kStaleBudget = 32;
  return flows_->age(tsc, buckets, snap->revision(), {age_stale_flow, &a, kStaleBudget});
}

std::expected<std::unique_ptr<Pipeline>, std::string> Pipeline::create(const PipelineConfig& cfg) {
  auto flows = FlowTable::create(cfg.flows);
  if (!flows) return std::unexpected(flows.error());
  crypto::VerifierConfig vc;
  vc.arch = cfg.verifier_arch;
  auto v = crypto::Verifier::create(vc);
  if (!v) return std::unexpected("identity tag verifier: " + v.error().message);
  auto r = crypto::ReplayFilter::create(cfg.replay);
  if (!r) return std::unexpected("replay filter: " + r.error().message);
  auto frags = FragTable::create(cfg.frags);
  if (!frags) return std::unexpected(frags.error());
  auto l7 = L7Inspector::create(cfg.l7);
  if (!l7) return std::unexpected(l7.error());
  auto vol = Volumetric::create(cfg.volumetric);
  if (!vol) return std::unexpected(vol.error());
  std::unique_ptr<Pipeline> pipe(
      new Pipeline(std::move(*flows), std::move(*v), std::move(*r), cfg.geneve));
  pipe->frags_ = std::move(*frags);
  pipe->l7_ = std::move(*l7);
  pipe->vol_ = std::move(*vol);
  if (cfg.flow_log_depth != 0) {
    static std::atomic<unsigned> next{0};
    const std::string name = fmt::format("zt_flog{}", next.fetch_add(1));
    pipe->flow_log_ = rte_ring_create_elem(name.c_str(), sizeof(FlowLogRecord), cfg.flow_log_depth, SOCKET_ID_ANY,
                                           RING_F_SP_ENQ | RING_F_SC_DEQ | RING_F_EXACT_SZ);
    if (pipe->flow_log_ == nullptr)
      return std::unexpected(fmt::format("cannot create the flow-log ring '{}' ({} records): {}", name,
                                         cfg.flow_log_depth, rte_strerror(rte_errno)));
  }
  return pipe;
}

Pipeline::~Pipeline() { rte_ring_free(flow_log_); }

unsigned Pipeline::drain_flow_logs(FlowLogRecord* out, unsigned max) noexcept {
  if (flow_log_ == nullptr) return 0;
  return rte_ring_sc_dequeue_burst_elem(flow_log_, out, sizeof(FlowLogRecord), max, nullptr);
}

// Drops every packet whose outer source prefix is on the blocklist as a heavy hitter, before
// anything else looks at it: one hash probe each. Keeps the rest in order; counts the dropped
// ones as received (unauthenticated class: their tag, if any, is never read) and `blocklisted`.
// A source listed for tag failures is kept and marked: pass 3 lets its packets through only as
// part of a flow already in the table (Volumetric::Listed).
std::uint16_t Pipeline::drop_blocklisted(rte_mbuf** pkts, std::uint16_t n, unsigned in_port,
                                         const VolumetricPlan& vp, std::uint64_t tsc,
                                         WorkerCounters& c, std::uint32_t& tag_listed,
                                         std::uint64_t* tag_listed_key) noexcept {
  rte_mbuf* gone[kBurst];
  unsigned ng = 0;
  std::uint16_t keep = 0;
  std::uint64_t bytes = 0;
  // Headers first (they hold the data pointers), then the data lines, all before the walk.
  for (unsigned i = 0; i < n; ++i) rte_prefetch0(pkts[i]);
  for (unsigned i = 0; i < n; ++i) rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void*));
  for (unsigned i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    std::uint8_t version = 0;
    const std::uint8_t* src = peek_source(m, version);
    const std::uint64_t key = src != nullptr ? vol_->source_hash(src, version, vp) : 0;
    const Volumetric::Listed how = src != nullptr ? vol_->listed(key, tsc) : Volumetric::Listed::no;
    if (how == Volumetric::Listed::drop) {
      bytes += rte_pktmbuf_pkt_len(m);
      gone[ng++] = m;
      continue;
    }
    if (how == Volumetric::Listed::established_only) {
      tag_listed |= std::uint32_t{1} << keep;
      tag_listed_key[keep] = key;
    }
    pkts[keep++] = m;
  }
  if (ng != 0) {
    rte_pktmbuf_free_bulk(gone, ng);
    count_drop_n(c, DropReason::blocklisted, ng);
    c.rx_packets[in_port].add(ng);
    c.rx_bytes[in_port].add(bytes);
    auto& k = c.classes[static_cast<std::size_t>(IdentityClass::unauthenticated)];
    k.packets.add(ng);
    k.dropped.add(ng);
  }
  return keep;
}

template <bool kTimed>
std::uint16_t Pipeline::run_burst(rte_mbuf** pkts, std::uint16_t n, unsigned in_port,
                                  const Snapshot* snap, const BurstClock& clk,
                                  WorkerCounters& c) noexcept {
  // Stage cycle counters: compiled out of the untimed instance (no TSC read at all).
  std::uint64_t t_stage = 0;
  if constexpr (kTimed) t_stage = rte_rdtsc();
  const auto stamp = [&](Stage s, unsigned packets) {
    if constexpr (kTimed) {
      const std::uint64_t t = rte_rdtsc();
      StageCounter& st = c.stages[static_cast<std::size_t>(s)];
      st.calls.inc();
      st.packets.add(packets);
      st.cycles.add(t - t_stage);
      t_stage = t;
    }
  };
  // Each Pkt is constructed in pass 1, only for the n packets the burst has.
  alignas(Pkt) std::byte pk_mem[kBurst * sizeof(Pkt)];
  Pkt* const pk = reinterpret_cast<Pkt*>(pk_mem);
  std::array<std::uint8_t, kParseWindow> scratch;
  // The burst's flow keys, built in place by pass 1 (raw storage: every byte is written by
  // make_flow_key_into before it is read) and read there by the bulk lookup; no copy.
  alignas(FlowKey) std::byte key_mem[kBurst * sizeof(FlowKey)];
  FlowKey* const keys = reinterpret_cast<FlowKey*>(key_mem);
  FlowEntry* found[kBurst];
  unsigned nkeys = 0;
  std::uint64_t bytes = 0;
  n = std::min<std::uint16_t>(n, kBurst);

  // Volumetric: the blocklist before anything else, and whether this worker is behind.
  const VolumetricPlan* vp = snap != nullptr ? snap->volumetric.get() : nullptr;
  bool overloaded = false;
  std::uint32_t tag_listed = 0;  // bit i: packet i's source is listed for tag failures
  std::uint64_t tag_listed_key[kBurst];  // written only for those
  if (vp != nullptr) {
    vol_->begin(*vp, clk.tsc);
    overloaded = vol_->overloaded(n, kBurst, *vp, clk.tsc);
    if (overloaded) c.overload_bursts.inc();
    if (vol_->blocklist_live(clk.tsc)) [[unlikely]] {
      n = drop_blocklisted(pkts, n, in_port, *vp, clk.tsc, c, tag_listed, tag_listed_key);
      if (n == 0) return 0;
    }
  }
  // Flows age on idle polls (worker.cpp). A worker that is never idle would keep its expired
  // flows, and past the admission watermark refuse every new untagged flow for flows long gone:
  // while the table is that full (or 7/8 full), each burst first ages one bucket (<= 8
  // entries, before the lookup so no packet holds an entry it removes). Below it: one compare.
  if (const std::uint64_t pct = vp != nullptr ? std::min(vp->cfg.table_watermark_pct, 87U) : 87U;
      std::uint64_t{flows_->size()} * 100 >= std::uint64_t{flows_->capacity()} * pct) [[unlikely]]
    age_flows(clk.tsc, 1, snap, &c);
  // An untagged or invalid-tag packet from the outer source of packet i: counted per source
  // prefix; a tag failure also counts toward blocklisting a forged-tag flooder.
  // always_inline: outlined, its cost would fall outside run_burst (dataplane/README "Sources").
  const auto from_source = [&](const SourceRef& src, bool tag_failure) __attribute__((always_inline))
                               -> DropReason {
    if (tag_failure && vol_->tag_failed(src, *vp, clk.tsc)) {
      c.blocklist_added.inc();
      return DropReason::none;  // the packet keeps its tag reason; its successors are blocklisted
    }
    bool added = false;
    const DropReason d = vol_->account_source(src, *vp, clk.tsc, added);
    if (added) c.blocklist_added.inc();
    return d;
  };
  // The source of an outer layer, hashed (no prefix built).
  const auto source_of = [&](const IpLayer& outer) __attribute__((always_inline)) {
    return vol_->source(outer.src.b.data(), outer.version, *vp);
  };

  for (unsigned i = 0; i < n; ++i) rte_prefetch0(pkts[i]);
  // A frame's first three lines, as far as it has them: a tagged frame's inner headers start at
  // byte 86 (IPv4 outer), and a FULL tag's MAC reads the covered L4 to its end.
  const auto prefetch_frame = [](const rte_mbuf* m) __attribute__((always_inline)) {
    const auto* d = rte_pktmbuf_mtod(m, const std::uint8_t*);
    rte_prefetch0(d);
    if (m->data_len > RTE_CACHE_LINE_SIZE) rte_prefetch0(d + RTE_CACHE_LINE_SIZE);
    if (m->data_len > 2 * RTE_CACHE_LINE_SIZE) rte_prefetch0(d + 2 * RTE_CACHE_LINE_SIZE);
  };
  for (unsigned i = 0; i < n && i < kPrefetchAhead; ++i) prefetch_frame(pkts[i]);
  const rules::PolicySnapshot* policy = snap != nullptr ? snap->policy.get() : nullptr;
  const std::uint64_t revision = snap != nullptr ? snap->revision() : 0;
  last_revision_ = snap != nullptr ? revision : FlowTable::kUnknownRevision;
  // Packets no flow of this policy can hold skip the flow table only while every flow in it is
  // of this revision (older ones must be found to be re-decided and erased).
  const bool no_flow_ok = policy != nullptr && flows_->all_flows_at(static_cast<std::uint32_t>(revision));

  std::uint32_t untagged = 0;  // bit i: packet i is untagged IP that pass 3 decides (key or no_flow)

  // 1. Parse; build flow keys.
  for (unsigned i = 0; i < n; ++i) {
    if (i + kPrefetchAhead < n) prefetch_frame(pkts[i + kPrefetchAhead]);
    Pkt& p = *std::construct_at(pk + i);
    bytes += rte_pktmbuf_pkt_len(pkts[i]);
    p.drop = parse_pkt(pkts[i], p.pp, scratch);
    if (p.drop != DropReason::none || p.pp.kind == FrameKind::arp) continue;
    p.ip = true;
    p.tagged = p.pp.kind == FrameKind::geneve && p.pp.tag_off != 0;
    const IpLayer& l = p.tagged ? p.pp.inner : p.pp.outer;
    if (l.frag == FragKind::later) {  // no ports: no key of its own (dataplane/README "Fragments")
      const FragResult f = frags_->add_later(l, more_fragments(pkts[i], l), clk.tsc);
      p.drop = f.drop;
      p.frag = f.slot;
      p.frag_later = true;
      continue;
    }
    // An untagged packet no rule covers in either direction (a flood to a closed port) cannot
    // be in the flow table: the policy decides it in pass 3 without a key or a lookup
    // (dataplane/README.md "Packets no flow can hold"). Tagged packets are not asked: for them
    // the answer is nearly always "may", and the established path should not pay the question.
    if (no_flow_ok && !p.tagged && l.version == 4 && l.frag == FragKind::none &&
        !policy->may_hold_flow_v4(rules::v4_host_order(l.src.b.data()), rules::v4_host_order(l.dst.b.data()),
                                  l.proto, l.sport, l.dport)) {
      p.no_flow = true;
      untagged |= std::uint32_t{1} << i;
      continue;
    }
    FlowKey& key = keys[nkeys];
    make_flow_key_into(l, key, p.dir);
    if (l.frag == FragKind::first) [[unlikely]] {  // decided like any packet; its datagram remembers how
      const FragResult f = frags_->open_first(l, key, p.dir, clk.tsc);
      p.drop = f.drop;
      p.frag = f.slot;
      if (p.drop != DropReason::none) continue;
    }
    p.kslot = static_cast<std::uint8_t>(nkeys++);
    if (!p.tagged) untagged |= std::uint32_t{1} << i;
  }
  c.rx_packets[in_port].add(n);
  c.rx_bytes[in_port].add(bytes);
  stamp(Stage::parse, n);

  // 2. Flow table, for the whole burst at once (pass 3 picks up each packet's answer).
  flows_->lookup_bulk(keys, nkeys, found);
  stamp(Stage::lookup, n);

  // Untagged packets from a flow's initiator side, and untagged new flows, count toward their
  // outer source in pass 3 (from_source): their keys are hashed and their sketch lines
  // prefetched here, all at once, so an untagged flood's misses overlap instead of queueing.
  std::uint64_t src_key[kBurst];  // packet i's outer source key: the bits of `hashed`, and tag failures
  std::uint32_t hashed = 0;
  if (vp != nullptr && policy != nullptr) {
    for (std::uint32_t m = untagged & ~tag_listed; m != 0; m &= m - 1) {
      const unsigned i = static_cast<unsigned>(std::countr_zero(m));
      const Pkt& p = pk[i];
      if (const FlowEntry* e = p.no_flow ? nullptr : found[p.kslot]; e != nullptr && p.dir != e->initiator)
        continue;  // a reply: not counted
      src_key[i] = source_of(p.pp.outer).key;
      vol_->prefetch_packets(src_key[i]);
      hashed |= std::uint32_t{1} << i;
    }
  }
  // The source of untagged packet i (outer layer `o`), hashed above (or now, should pass 3 ask
  // for another).
  const auto untagged_source = [&](unsigned i, const IpLayer& o) __attribute__((always_inline)) {
    if ((hashed >> i) & 1) [[likely]]
      return SourceRef{src_key[i], o.src.b.data(), o.version};
    return source_of(o);
  };

  // 3. Policy for new flows, before any crypto: a deny costs no MAC.
  // Read once per burst: the snapshot is immutable, and the burst clock is one time.
  const bool no_new_flows = snap != nullptr && (snap->expired || clk.now_ns >= snap->expires_ns);
  unsigned nverify = 0;
  for (unsigned i = 0; i < n; ++i) {
    Pkt& p = pk[i];
    // Exactly the packets pass 1 gave a key: IP, not dropped, not a later fragment.
    if (!p.ip || p.drop != DropReason::none || p.frag_later) continue;
    if (FlowEntry* e = p.no_flow ? nullptr : found[p.kslot]; e != nullptr) {
      p.flow = e;
      p.rule = e->rule_id;
      p.has_rule = true;
      p.identity = e->identity;
      p.steps |= kStepFlowFound;
    }
    if (policy == nullptr) {
      p.drop = DropReason::no_policy;
      continue;
    }
    const IpLayer& l = p.tagged ? p.pp.inner : p.pp.outer;
    const auto* frame = rte_pktmbuf_mtod(pkts[i], const std::uint8_t*);
    if (p.tagged && pkts[i]->nb_segs != 1) {
      p.drop = DropReason::tagged_frame_segmented;
      continue;
    }
    if (p.flow != nullptr) {
      if (p.flow->flags & kFlowCut) {  // cut by L7: both directions drop until it ages out
        p.drop = DropReason::policy_l7_deny;
        continue;
      }
      if (p.tagged) {
        p.verify = true;
        ++nverify;
        // Its tag is nearly always authentic: the replay filter's lines are fetched now, so
        // their misses overlap the burst's MACs (pass 4 checks them only after the compare).
        replay_.prefetch(frame + p.pp.tag_off + crypto::kTagMacOffset);
      } else if ((p.flow->flags & kFlagTagged) && p.dir == p.flow->initiator) {
        p.drop = DropReason::tag_missing;
        continue;
      }
      if (vp != nullptr && p.dir == p.flow->initiator) {
        // What the initiator sends is metered: its rule's rate class (checked now, consumed
        // after the MAC); untagged senders also count toward their source prefix.
        if (!p.tagged && (p.drop = from_source(untagged_source(i, p.pp.outer), false)) != DropReason::none) continue;
        if (!vp->rule_class.empty()) {
          const std::uint16_t rc = vp->rate_class_of(p.flow->rule_id);
          if (rc != rules::kNoRateClass) {
            p.rate_class = rc;
            p.meter_id = p.flow->identity;
            if (!vol_->meter_check(p.meter_id, rc, rte_pktmbuf_pkt_len(pkts[i]), *vp, clk.tsc))
              p.drop = DropReason::rate_limited;
          }
        }
      }
      continue;
    }
    if ((tag_listed >> i) & 1) [[unlikely]] {
      // Its source is listed for tag failures: no new flow from it (established ones passed
      // above). Before the tag and the policy: no MAC (Volumetric::Listed). Still counted toward
      // its prefix, so past --vol-block-pps it becomes a heavy hitter, dropped before the parser.
      p.drop = DropReason::blocklisted;
      vol_->count_listed_drop(tag_listed_key[i], clk.tsc);
      (void)from_source({tag_listed_key[i], p.pp.outer.src.b.data(), p.pp.outer.version}, false);  // hashed already
      continue;
    }
    if (no_new_flows) [[unlikely]] {
      p.drop = DropReason::policy_expired;
      continue;
    }
    if (p.tagged) {
      crypto::TagFields t;  // the fields only: the MAC is compared where it lies (pass 4)
      const auto rej = crypto::decode_tag_fields({frame + p.pp.tag_off, kTagBodyLen}, t);
      if (rej != crypto::TagReject::none) {
        p.drop = kTagDrop[static_cast<std::size_t>(rej)];
        p.tag_bad = true;
        if (vp != nullptr) (void)from_source(source_of(p.pp.outer), true);  // counted; the tag's reason stands
        continue;
      }
      p.identity = t.identity;
    } else {
      if (vp != nullptr) {
        // A worker behind sheds new untagged flows first; every untagged new-flow packet counts
        // toward its source prefix (heavy hitters go on the blocklist).
        if (overloaded) {
          p.drop = DropReason::overload_shed;
          continue;
        }
        if ((p.drop = from_source(untagged_source(i, p.pp.outer), false)) != DropReason::none) continue;
      }
    }
    // Untagged: the source's identity (resolve_untagged) comes with the verdict, one lookup less.
    // IPv4: the addresses as numbers, no rules::FlowKey; the reach test and port filter are
    // inline (rules/README.md "IPv4 entries").
    if (l.version == 4) [[likely]] {
      const std::uint32_t dst = rules::v4_host_order(l.dst.b.data());
      p.verdict = p.tagged ? policy->classify_v4(p.identity, dst, l.proto, l.dport)
                           : policy->classify_untagged_v4(rules::v4_host_order(l.src.b.data()), dst, l.proto,
                                                          l.dport, p.identity);
    } else {
      rules::FlowKey fk;
      fk.src = p.identity;
      fk.dst = to_rules(l.dst.b, l.version);
      fk.proto = l.proto;
      fk.dport = l.dport;
      p.verdict = p.tagged ? policy->classify(fk)
                           : policy->classify_untagged(to_rules(l.src.b, l.version), fk, p.identity);
    }
    p.rule = p.verdict.rule_id;
    p.has_rule = true;
    p.steps |= kStepClassified;
    if (p.verdict.disposition == rules::Disposition::deny) {
      p.drop = p.verdict.reason == DropReason::none ? DropReason::policy_default_deny : p.verdict.reason;
      continue;
    }
    p.verify = p.tagged;
    nverify += p.tagged;
    if (vp != nullptr && p.verdict.rate_class != rules::kNoRateClass) {
      // Before the MAC: a spent budget costs no crypto; nothing is consumed until pass 5.
      p.rate_class = p.verdict.rate_class;
      p.meter_id = p.identity;
      if (!vol_->meter_check(p.meter_id, p.rate_class, rte_pktmbuf_pkt_len(pkts[i]), *vp, clk.tsc))
        p.drop = DropReason::rate_limited;
    }
  }

  stamp(Stage::classify, n);

  // 4. Every tagged packet still standing: one batched MAC verification (+ replay filter).
  // Failed tags count toward their outer source after pass 5 (their sketch lines are prefetched
  // here and have arrived by then; nothing in pass 5 reads what that counting changes).
  std::uint8_t failed[kBurst];  // their keys go to src_key[] (the burst's source keys)
  unsigned nfailed = 0;
  if (nverify != 0) {
    // Raw storage: an entry is constructed only for a packet that is verified (every field is
    // then written), so a burst with nothing to verify (a flood) zeroes no 2.8 KB array.
    alignas(crypto::VerifyInput) std::byte in_mem[kBurst * sizeof(crypto::VerifyInput)];
    auto* const in = reinterpret_cast<crypto::VerifyInput*>(in_mem);
    std::uint8_t who[kBurst];
    std::size_t nv = 0;
    for (unsigned i = 0; i < n; ++i) {
      Pkt& p = pk[i];
      if (!p.verify || p.drop != DropReason::none) continue;
      const auto* frame = rte_pktmbuf_mtod(pkts[i], const std::uint8_t*);
      const IpLayer& l = p.pp.inner;
      crypto::VerifyInput& v = *std::construct_at(in + nv);
      v.tag = {frame + p.pp.tag_off, kTagBodyLen};
      v.inner.ip_version = l.version;
      v.inner.src = l.src.b;
      v.inner.dst = l.dst.b;
      v.inner.proto = l.proto;
      v.inner.l4 = {frame + l.l4_off, l.l4_len};
      v.hdr_allowed = p.flow != nullptr ? (p.flow->flags & kFlagHdrOk) != 0 : p.verdict.payload_hdr;
      who[nv++] = static_cast<std::uint8_t>(i);
    }
    if (nv != 0) {
      // Raw storage too: verify_burst writes out[k] for every k < nv (verifier.hpp).
      alignas(crypto::VerifyResult) std::byte out_mem[kBurst * sizeof(crypto::VerifyResult)];
      auto* const out = reinterpret_cast<crypto::VerifyResult*>(out_mem);
      if (snap->keys == nullptr) {
        for (std::size_t k = 0; k < nv; ++k) pk[who[k]].drop = DropReason::tag_no_key, pk[who[k]].tag_bad = true;
      } else {
        verifier_.verify_burst(*snap->keys, clk.now_ns, {in, nv}, {out, nv}, &replay_);
        // Failed tags count toward their outer source (after pass 5): their sketch lines are
        // prefetched here, so a forged flood's misses overlap pass 5 instead of queueing.
        for (std::size_t k = 0; k < nv; ++k) {
          Pkt& p = pk[who[k]];
          p.steps |= kStepMacChecked;
          if (out[k].reason != crypto::TagReject::none) {
            p.drop = kTagDrop[static_cast<std::size_t>(out[k].reason)];
            p.tag_bad = true;
            if (vp != nullptr) {
              const std::uint64_t key = src_key[who[k]] = source_of(p.pp.outer).key;  // tagged: not hashed before
              vol_->prefetch_failure(key);
              failed[nfailed++] = who[k];
            }
          } else if (p.flow != nullptr && p.dir == p.flow->initiator &&
                     out[k].identity != p.flow->identity) {
            p.drop = DropReason::tag_identity_mismatch;
            p.steps |= kStepMacOk;
            p.tag_bad = true;
          } else {
            p.steps |= kStepMacOk;
          }
        }
      }
    }
  }

  stamp(Stage::verify, n);

  // 5. Admit new flows, follow established ones, forward or drop.
  std::uint16_t keep = 0;
  rte_mbuf* gone[kBurst];
  unsigned ngone = 0;
  std::array<std::uint16_t, kIdentityClassCount> cls_packets{}, cls_dropped{};
  // Per-burst counting (dataplane/README "Finish"): a burst is mostly one rule and one drop
  // reason, so counts run up in registers and reach the shared counters when the rule or the
  // reason changes and once at the end, instead of a load and a store per packet and counter.
  RuleSlot* rule_slot = nullptr;  // the last rule counted
  rules::RuleId rule_of_slot = 0;
  unsigned run_fwd = 0, run_dropped = 0, run_denied = 0;  // for rule_slot, not yet added
  DropReason run_reason = DropReason::none;
  unsigned run_drops = 0;  // drops of run_reason, not yet added
  const auto flush_rule = [&]() noexcept {
    if (rule_slot == nullptr) return;
    if (run_fwd != 0) rule_slot->packets_forwarded.add(run_fwd);
    if (run_dropped != 0) rule_slot->packets_dropped.add(run_dropped);
    if (run_denied != 0) rule_slot->flows_denied.add(run_denied);
    run_fwd = run_dropped = run_denied = 0;
  };
  // Members read on every packet, in locals: the loop stores pointers (gone[], flow fields),
  // which GCC must assume may alias any pointer member, so it would reload them each time.
  CaptureTap* const capture = capture_;
  rte_ring* const flow_log_ring = flow_log_;
  for (unsigned i = 0; i < n; ++i) {
    Pkt& p = pk[i];
    rte_mbuf* m = pkts[i];
    if (p.frag_later && p.drop == DropReason::none) {
      // The fate of the datagram's first fragment, and the flow that one belongs to.
      const FragFollow f = frags_->follow(p.frag);
      p.drop = f.drop;
      if (p.drop == DropReason::none) {
        p.dir = f.dir, p.flow = flows_->lookup(f.flow);
        if (p.flow == nullptr) p.drop = DropReason::frag_no_first;  // its flow is gone since
        else if (p.flow->flags & kFlowCut) p.drop = DropReason::policy_l7_deny;
        else p.identity = p.flow->identity;
      }
    }
    if (p.drop == DropReason::none && p.ip) {
      const IpLayer& l = p.tagged ? p.pp.inner : p.pp.outer;
      FlowEntry* e = p.flow;
      if (e == nullptr) {
        if (l.proto == kTcp && ((l.tcp_flags & (kSyn | kAck)) != kSyn)) {
          p.drop = DropReason::tcp_no_syn;
        } else if (l.proto == kTcp && (l.tcp_flags & kFin)) {
          p.drop = DropReason::tcp_bad_state;  // SYN+FIN: refused before it can take an entry
        } else if (vp != nullptr &&
                   (p.drop = vol_->admit(p.tagged ? vol_->identity_key(p.identity) : untagged_source(i, l).key,
                                         p.tagged, flows_->size(), flows_->capacity(), *vp, clk.tsc)) !=
                       DropReason::none) {
          // new-flow admission refused it (rate, or the table above its watermark)
        } else if (p.rate_class != rules::kNoRateClass &&
                   !vol_->meter_consume(p.meter_id, p.rate_class, rte_pktmbuf_pkt_len(m), *vp, clk.tsc)) {
          p.drop = DropReason::rate_limited;  // its identity's earlier packets spent the budget
        } else if (p.no_flow) [[unlikely]] {
          // No key: the policy denies such a packet in pass 3 by construction (the same port
          // filters); should that ever not hold, it is dropped, never admitted keyless.
          p.drop = DropReason::policy_default_deny;
        } else {
          switch (flows_->insert(keys[p.kslot], p.dir, p.identity, clk.tsc, &e)) {
            case InsertResult::inserted:
              e->revision = static_cast<std::uint32_t>(revision);
              e->rule_id = p.verdict.rule_id;
              e->flags = verdict_flags(p.verdict, p.tagged);
              if (p.verdict.l7 != rules::kNoL7 &&
                  (p.drop = l7_->open(*e, p.verdict, *policy, m, l, *flows_)) != DropReason::none) {
                flows_->erase(e);  // no L7 state: refused, never let through uninspected
                e = nullptr;
                if (p.drop == DropReason::policy_l7_deny)
                  flow_log(flow_log_, *vol_, vp, l, p.identity, p.verdict.rule_id, true, p.drop,
                           FlowLogKind::deny, clk, revision, c);
                break;
              }
              c.new_flows.inc();
              c.rules.slot(p.verdict.rule_id).flows_admitted.inc();
              p.steps |= kStepAdmitted;
              if (p.verdict.disposition == rules::Disposition::audit) {
                c.audit_flows.inc();
                flow_log(flow_log_, *vol_, vp, l, p.identity, p.verdict.rule_id, true, DropReason::none,
                         FlowLogKind::audit, clk, revision, c);
              }
              break;
            case InsertResult::exists:
              // Opened earlier in this same burst: this packet is held to that flow exactly as
              // on its next burst (an untagged or re-tagged copy from the initiator's side must
              // not ride on the tagged packet that opened it).
              if (p.dir == e->initiator) {
                if ((e->flags & kFlagTagged) && !p.tagged) p.drop = DropReason::tag_missing;
                else if (p.tagged && p.identity != e->identity) p.drop = DropReason::tag_identity_mismatch;
              }
              break;
            case InsertResult::table_full: p.drop = DropReason::flow_table_full; break;
            case InsertResult::quota_exceeded: p.drop = DropReason::flow_quota_exceeded; break;
          }
        }
      } else if (e->revision != static_cast<std::uint32_t>(revision)) {
        // Admitted under another policy revision: decide again, as the initiator's flow.
        const Redecision r = redecide(*e, *policy, static_cast<std::uint32_t>(revision));
        p.rule = r.v.rule_id;
        p.steps |= kStepReclassified;
        p.drop = r.drop;
        if (r.revoked) {
          // Later packets of this burst that found the same entry share its fate.
          for (unsigned j = i + 1; j < n; ++j)
            if (pk[j].flow == e) pk[j].drop = p.drop, pk[j].flow = nullptr, pk[j].rule = r.v.rule_id;
          flows_->erase(e);
          e = nullptr;
          count_revoked(c, r.v.rule_id);
          p.steps |= kStepRevoked;
        }
      }
      if (e != nullptr && p.drop == DropReason::none) {
        p.rule = e->rule_id;
        p.has_rule = true;
        const bool was_reset = e->tcp == TcpState::closed;
        if (e->flags & kFlowCut) {
          p.drop = DropReason::policy_l7_deny;  // cut earlier in this burst
        } else if (l.proto == kTcp && !p.frag_later &&
                   FlowTable::track_tcp(*e, p.dir, l.tcp_flags) == TcpVerdict::invalid) {
          p.drop = was_reset ? DropReason::tcp_after_reset : DropReason::tcp_bad_state;
        } else if ((e->flags & kFlowL7) && p.dir == e->initiator &&
                   (p.drop = l7_->inspect(*e, *policy, revision, m, l)) != DropReason::none) {
          // L7 refused it (a deny also cut the flow: logged once, when it is cut)
          if (e->flags & kFlowCut)
            flow_log(flow_log_, *vol_, vp, l, e->identity, e->rule_id, true, p.drop, FlowLogKind::deny, clk,
                     revision, c);
        } else if (p.rate_class != rules::kNoRateClass && (p.steps & kStepClassified) == 0 &&
                   !vol_->meter_consume(p.meter_id, p.rate_class, rte_pktmbuf_pkt_len(m), *vp, clk.tsc)) {
          p.drop = DropReason::rate_limited;  // established: consumed only now, after the MAC
        } else {
          const auto d = static_cast<unsigned>(p.dir);
          e->last_seen = clk.tsc;
          e->packets[d] += 1;
          e->bytes[d] += rte_pktmbuf_pkt_len(m);
          if (p.tagged && geneve_ == GeneveMode::strip) decapsulate(m, p.pp);
        }
      }
    }
    if (p.frag != kNoFrag && !p.frag_later) frags_->decide(p.frag, p.drop);  // later ones follow
    const bool dropped = p.drop != DropReason::none;
    if (capture != nullptr) capture->offer(m, p.drop, in_port, clk.now_ns);  // capture.hpp
    if (dropped) {
      if (p.drop != run_reason) {
        if (run_drops != 0) count_drop_n(c, run_reason, run_drops);
        run_reason = p.drop, run_drops = 0;
      }
      ++run_drops;
      gone[ngone++] = m;  // freed together after the loop
    } else {
      pkts[keep++] = m;
    }
    const auto cls = static_cast<std::size_t>(identity_class(p));
    ++cls_packets[cls];
    cls_dropped[cls] = static_cast<std::uint16_t>(cls_dropped[cls] + dropped);
    if (p.has_rule) {
      if (rule_slot == nullptr || rule_of_slot != p.rule) [[unlikely]] {
        flush_rule();
        rule_slot = &c.rules.slot(p.rule), rule_of_slot = p.rule;
      }
      run_dropped += dropped;
      run_fwd += !dropped;
      // A new flow the policy refused (an audit "would deny" is an admission, counted above).
      if ((p.steps & kStepClassified) && p.verdict.disposition == rules::Disposition::deny) {
        ++run_denied;
        if (flow_log_ring != nullptr)  // no ring: skip the call (a flood's every packet gets here)
          flow_log(flow_log_ring, *vol_, vp, p.tagged ? p.pp.inner : p.pp.outer, p.identity, p.rule, true, p.drop,
                   FlowLogKind::deny, clk, revision, c);
      }
    }
  }
  flush_rule();
  if (run_drops != 0) count_drop_n(c, run_reason, run_drops);
  for (std::size_t k = 0; k < kIdentityClassCount; ++k) {
    if (cls_packets[k] == 0) continue;
    c.classes[k].packets.add(cls_packets[k]);
    if (cls_dropped[k] != 0) c.classes[k].dropped.add(cls_dropped[k]);
  }
  // One mempool put for the burst's drops instead of one per packet.
  if (ngone != 0) free_dropped(gone, ngone);
  // Tag failures of pass 4 count toward their outer sources, in burst order (the tag's reason
  // stands; a source crossing --vol-mac-fail-pps is listed for the bursts after this one).
  for (unsigned f = 0; f < nfailed; ++f) {
    const IpLayer& o = pk[failed[f]].pp.outer;
    (void)from_source({src_key[failed[f]], o.src.b.data(), o.version}, true);
  }
  stamp(Stage::finish, n);
  if (trace_left_ != 0) [[unlikely]]
    trace_burst(pk, n, in_port, revision, clk.tsc, trace_ring_, trace_left_, trace_seq_, c);
  return keep;
}

template std::uint16_t Pipeline::run_burst<false>(rte_mbuf**, std::uint16_t, unsigned, const Snapshot*,
                                                  const BurstClock&, WorkerCounters&) noexcept;
template std::uint16_t Pipeline::run_burst<true>(rte_mbuf**, std::uint16_t, unsigned, const Snapshot*,
                                                 const BurstClock&, WorkerCounters&) noexcept;

}  // namespace zt::dp
