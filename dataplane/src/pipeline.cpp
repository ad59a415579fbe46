#include "zt/dataplane/pipeline.hpp"

#include <rte_ether.h>
#include <rte_prefetch.h>

#include <array>
#include <cstring>

#include "zt/dataplane/mbuf_parser.hpp"

namespace zt::dp {

namespace {

using rules::DropReason;

constexpr std::uint8_t kFlagTagged = 1;  // opened with a tag: the initiator must keep tagging
constexpr std::uint8_t kFlagHdrOk = 2;   // the admitting rule accepts HDR coverage
constexpr std::uint8_t kFlagAudit = 4;   // admitted as an audit (would-deny) flow
constexpr std::uint8_t kTcp = 6;
constexpr std::uint8_t kSyn = 0x02, kAck = 0x10;

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
  ParsedPacket pp;
  FlowKey key;
  FlowEntry* flow = nullptr;
  rules::Verdict verdict;
  DropReason drop = DropReason::none;
  KeyDir dir = KeyDir::lo_to_hi;
  std::uint32_t identity = 0;
  bool ip = false;        // an IP packet the policy decides (not ARP)
  bool tagged = false;
  bool verify = false;
};

// The flow bits a verdict sets; kFlagTagged is the flow's own, kept across revisions.
inline std::uint8_t verdict_flags(const rules::Verdict& v, bool tagged) noexcept {
  return static_cast<std::uint8_t>((tagged ? kFlagTagged : 0) | (v.payload_hdr ? kFlagHdrOk : 0) |
                                   (v.disposition == rules::Disposition::audit ? kFlagAudit : 0));
}

inline void count_drop(WorkerCounters& c, DropReason r) noexcept {
  c.drops[static_cast<std::size_t>(r)].inc();
}

// Strips outer Ethernet/IP/UDP/Geneve: the frame becomes the outer MACs + the inner IP packet.
void decapsulate(rte_mbuf* m, const ParsedPacket& pp) noexcept {
  auto* old = rte_pktmbuf_mtod(m, std::uint8_t*);
  std::uint8_t macs[12];
  std::memcpy(macs, old, sizeof macs);
  const std::uint32_t inner_len = (pp.inner.l4_off - pp.inner.l3_off) + pp.inner.l4_len;
  const std::uint16_t cut = static_cast<std::uint16_t>(pp.inner.l3_off - RTE_ETHER_HDR_LEN);
  auto* p = static_cast<std::uint8_t*>(static_cast<void*>(rte_pktmbuf_adj(m, cut)));
  std::memcpy(p, macs, sizeof macs);
  const std::uint16_t et = pp.inner.version == 6 ? RTE_ETHER_TYPE_IPV6 : RTE_ETHER_TYPE_IPV4;
  p[12] = static_cast<std::uint8_t>(et >> 8);
  p[13] = static_cast<std::uint8_t>(et);
  const std::uint32_t want = RTE_ETHER_HDR_LEN + inner_len;
  if (rte_pktmbuf_pkt_len(m) > want) rte_pktmbuf_trim(m, static_cast<std::uint16_t>(rte_pktmbuf_pkt_len(m) - want));
}

}  // namespace

std::expected<std::unique_ptr<Pipeline>, std::string> Pipeline::create(const PipelineConfig& cfg) {
  auto flows = FlowTable::create(cfg.flows);
  if (!flows) return std::unexpected(flows.error());
  crypto::VerifierConfig vc;
  vc.arch = cfg.verifier_arch;
  auto v = crypto::Verifier::create(vc);
  if (!v) return std::unexpected("identity tag verifier: " + v.error().message);
  auto r = crypto::ReplayFilter::create(cfg.replay);
  if (!r) return std::unexpected("replay filter: " + r.error().message);
  return std::unique_ptr<Pipeline>(
      new Pipeline(std::move(*flows), std::move(*v), std::move(*r), cfg.geneve));
}

std::uint16_t Pipeline::run(rte_mbuf** pkts, std::uint16_t n, unsigned in_port,
                            const Snapshot* snap, const BurstClock& clk,
                            WorkerCounters& c) noexcept {
  std::array<Pkt, kBurst> pk;
  std::array<std::uint8_t, kParseWindow> scratch;
  FlowKey keys[kBurst];
  FlowEntry* found[kBurst];
  std::uint8_t key_of[kBurst];
  unsigned nkeys = 0;
  std::uint64_t bytes = 0;
  n = std::min<std::uint16_t>(n, kBurst);

  for (unsigned i = 0; i < n; ++i) rte_prefetch0(pkts[i]);
  for (unsigned i = 0; i < n && i < kPrefetchAhead; ++i) rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void*));

  // 1. Parse; build flow keys.
  for (unsigned i = 0; i < n; ++i) {
    if (i + kPrefetchAhead < n) rte_prefetch0(rte_pktmbuf_mtod(pkts[i + kPrefetchAhead], void*));
    Pkt& p = pk[i];
    bytes += rte_pktmbuf_pkt_len(pkts[i]);
    p.drop = parse_mbuf(pkts[i], p.pp, scratch);
    if (p.drop != DropReason::none || p.pp.kind == FrameKind::arp) continue;
    p.ip = true;
    p.tagged = p.pp.kind == FrameKind::geneve && p.pp.tag_off != 0;
    const IpLayer& l = p.tagged ? p.pp.inner : p.pp.outer;
    if (l.frag != FragKind::none) {
      p.drop = DropReason::frag_unsupported;
      continue;
    }
    p.key = make_flow_key(l, p.dir);
    keys[nkeys] = p.key;
    key_of[nkeys++] = static_cast<std::uint8_t>(i);
  }
  c.rx_packets[in_port].add(n);
  c.rx_bytes[in_port].add(bytes);

  // 2. Flow table, for the whole burst at once.
  flows_->lookup_bulk(keys, nkeys, found);
  for (unsigned k = 0; k < nkeys; ++k) pk[key_of[k]].flow = found[k];

  // 3. Policy for new flows, before any crypto: a deny costs no MAC.
  const rules::PolicySnapshot* policy = snap != nullptr ? snap->policy.get() : nullptr;
  const std::uint64_t revision = snap != nullptr ? snap->revision() : 0;
  for (unsigned i = 0; i < n; ++i) {
    Pkt& p = pk[i];
    if (!p.ip || p.drop != DropReason::none) continue;
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
      if (p.tagged) {
        p.verify = true;
      } else if ((p.flow->flags & kFlagTagged) && p.dir == p.flow->initiator) {
        p.drop = DropReason::tag_missing;
      }
      continue;
    }
    if (snap->expired) {
      p.drop = DropReason::policy_expired;
      continue;
    }
    if (p.tagged) {
      crypto::Tag t;
      const auto rej = crypto::decode_tag_body({frame + p.pp.tag_off, kTagBodyLen}, t);
      if (rej != crypto::TagReject::none) {
        p.drop = kTagDrop[static_cast<std::size_t>(rej)];
        continue;
      }
      p.identity = t.fields.identity;
    } else {
      p.identity = policy->resolve_untagged(to_rules(l.src.b, l.version));
    }
    rules::FlowKey fk;
    fk.src = p.identity;
    fk.dst = to_rules(l.dst.b, l.version);
    fk.proto = l.proto;
    fk.dport = l.dport;
    p.verdict = policy->classify(fk);
    if (p.verdict.disposition == rules::Disposition::deny) {
      p.drop = p.verdict.reason == DropReason::none ? DropReason::policy_default_deny : p.verdict.reason;
      continue;
    }
    p.verify = p.tagged;
  }

  // 4. Every tagged packet still standing: one batched MAC verification (+ replay filter).
  {
    std::array<crypto::VerifyInput, kBurst> in;
    std::array<crypto::VerifyResult, kBurst> out;
    std::uint8_t who[kBurst];
    std::size_t nv = 0;
    for (unsigned i = 0; i < n; ++i) {
      Pkt& p = pk[i];
      if (!p.verify || p.drop != DropReason::none) continue;
      const auto* frame = rte_pktmbuf_mtod(pkts[i], const std::uint8_t*);
      const IpLayer& l = p.pp.inner;
      crypto::VerifyInput& v = in[nv];
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
      if (snap->keys == nullptr) {
        for (std::size_t k = 0; k < nv; ++k) pk[who[k]].drop = DropReason::tag_no_key;
      } else {
        verifier_.verify_burst(*snap->keys, clk.now_ns, {in.data(), nv}, {out.data(), nv}, &replay_);
        for (std::size_t k = 0; k < nv; ++k) {
          Pkt& p = pk[who[k]];
          if (out[k].reason != crypto::TagReject::none) {
            p.drop = kTagDrop[static_cast<std::size_t>(out[k].reason)];
          } else if (p.flow != nullptr && p.dir == p.flow->initiator &&
                     out[k].identity != p.flow->identity) {
            p.drop = DropReason::tag_identity_mismatch;
          }
        }
      }
    }
  }

  // 5. Admit new flows, follow established ones, forward or drop.
  std::uint16_t keep = 0;
  for (unsigned i = 0; i < n; ++i) {
    Pkt& p = pk[i];
    rte_mbuf* m = pkts[i];
    if (p.drop == DropReason::none && p.ip) {
      const IpLayer& l = p.tagged ? p.pp.inner : p.pp.outer;
      FlowEntry* e = p.flow;
      if (e == nullptr) {
        if (l.proto == kTcp && ((l.tcp_flags & (kSyn | kAck)) != kSyn)) {
          p.drop = DropReason::tcp_no_syn;
        } else {
          switch (flows_->insert(p.key, p.dir, p.identity, clk.tsc, &e)) {
            case InsertResult::inserted:
              e->revision = static_cast<std::uint32_t>(revision);
              e->rule_id = p.verdict.rule_id;
              e->flags = verdict_flags(p.verdict, p.tagged);
              c.new_flows.inc();
              if (p.verdict.disposition == rules::Disposition::audit) c.audit_flows.inc();
              break;
            case InsertResult::exists: break;  // opened earlier in this same burst
            case InsertResult::table_full: p.drop = DropReason::flow_table_full; break;
            case InsertResult::quota_exceeded: p.drop = DropReason::flow_quota_exceeded; break;
          }
        }
      } else if (e->revision != static_cast<std::uint32_t>(revision)) {
        // Admitted under another policy revision: decide again, as the initiator's flow.
        const bool lo_init = e->initiator == KeyDir::lo_to_hi;
        rules::FlowKey fk;
        fk.src = e->identity;
        fk.dst = to_rules(lo_init ? e->key.addr_hi : e->key.addr_lo, e->key.version);
        fk.proto = e->key.proto;
        fk.dport = lo_init ? e->key.port_hi : e->key.port_lo;
        const rules::Verdict v = policy->classify(fk);
        if (v.disposition == rules::Disposition::deny) {
          p.drop = v.reason == DropReason::none ? DropReason::policy_default_deny : v.reason;
          // Later packets of this burst that found the same entry share its fate.
          for (unsigned j = i + 1; j < n; ++j)
            if (pk[j].flow == e) pk[j].drop = p.drop, pk[j].flow = nullptr;
          flows_->erase(e);
          e = nullptr;
          c.revoked_flows.inc();
        } else {
          e->revision = static_cast<std::uint32_t>(revision);
          e->rule_id = v.rule_id;
          e->flags = verdict_flags(v, (e->flags & kFlagTagged) != 0);
        }
      }
      if (e != nullptr && p.drop == DropReason::none) {
        const bool was_reset = e->tcp == TcpState::closed;
        if (l.proto == kTcp && FlowTable::track_tcp(*e, p.dir, l.tcp_flags) == TcpVerdict::invalid) {
          p.drop = was_reset ? DropReason::tcp_after_reset : DropReason::tcp_bad_state;
        } else {
          const auto d = static_cast<unsigned>(p.dir);
          e->last_seen = clk.tsc;
          e->packets[d] += 1;
          e->bytes[d] += rte_pktmbuf_pkt_len(m);
          if (p.tagged && geneve_ == GeneveMode::strip) decapsulate(m, p.pp);
        }
      }
    }
    if (p.drop != DropReason::none) {
      count_drop(c, p.drop);
      rte_pktmbuf_free(m);
    } else {
      pkts[keep++] = m;
    }
  }
  return keep;
}

}  // namespace zt::dp
