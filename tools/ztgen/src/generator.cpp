#include "generator.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "zt/crypto/key_ring.hpp"
#include "zt/crypto/keys.hpp"
#include "zt/crypto/mint.hpp"

namespace zt::ztgen {

namespace {

constexpr std::array<KindInfo, 15> kKinds{{
    {Kind::valid, "valid", "tagged, authentic, current epoch, fresh timestamp"},
    {Kind::forged, "forged", "tagged like valid, one MAC bit flipped"},
    {Kind::replayed, "replayed", "exact copies of the valid frames written before it"},
    {Kind::tag_stripped, "tag-stripped", "the inner packets of the valid frames written before it, untagged"},
    {Kind::expired, "expired", "tagged with the identity's key of epoch e-2 (refused whatever the grace)"},
    {Kind::future, "future", "tagged with the identity's key of epoch e+2"},
    {Kind::unknown_identity, "unknown-identity", "tagged, authentic, by --unknown-identity"},
    {Kind::hdr, "hdr", "tagged with HDR coverage (MAC over the first 16 L4 bytes only)"},
    {Kind::untagged, "untagged", "plain packets from --src"},
    {Kind::spoofed, "spoofed", "untagged, random source address and port, --proto to --dst:--dport"},
    {Kind::syn_flood, "syn-flood", "TCP SYN from random source addresses and ports to --dst:--dport"},
    {Kind::forged_flood, "forged-flood", "tagged as --identity (current epoch and time), random MAC, random sources"},
    {Kind::malformed, "malformed", "parser-hostile frames (truncations, bad lengths, bad checksum, bad Geneve)"},
    {Kind::fragments, "fragments", "IPv4/IPv6 fragments: in order, tiny first fragment, overlapping"},
    {Kind::ipv6_ext, "ipv6-ext", "IPv6 extension-header chains, good and bad"},
}};

constexpr bool is_set_kind(Kind k) { return k == Kind::malformed || k == Kind::fragments || k == Kind::ipv6_ext; }
constexpr bool is_tagged_kind(Kind k) {
  return k == Kind::valid || k == Kind::forged || k == Kind::expired || k == Kind::future ||
         k == Kind::unknown_identity || k == Kind::hdr || k == Kind::forged_flood;
}
// Kinds that open --flows 5-tuples of their own (a block of source ports each).
constexpr bool is_flow_kind(Kind k) {
  return (is_tagged_kind(k) && k != Kind::forged_flood) || k == Kind::untagged;
}

enum class Forge : std::uint8_t { none, flip_bit, noise };

struct Frame {
  std::string_view name;
  Bytes bytes;
};

class Gen {
 public:
  Gen(const Config& c, const Sink& s, crypto::Minter m)
      : c_(c), sink_(s), minter_(std::move(m)), rng_(c.seed) {}

  std::expected<Summary, std::string> run();

 private:
  std::int64_t epoch_at(std::int64_t t) const { return t / (c_.epoch_length_s * crypto::kNsPerSec); }
  std::expected<const crypto::IdentityKey*, std::string> key(std::uint32_t id, std::int64_t epoch);
  void emit(std::span<const std::uint8_t> frame) {
    sink_(frame, now());
    ++n_;
  }
  std::int64_t now() const { return c_.time_base_ns + static_cast<std::int64_t>(n_) * c_.interval_ns; }
  Bytes payload(std::size_t ip_hdr, std::uint8_t proto) {
    const std::size_t hdr = kEthLen + ip_hdr + l4_header_len(proto);
    Bytes p(c_.size > hdr ? c_.size - hdr : 0);
    for (auto& b : p) b = static_cast<std::uint8_t>(rng_());
    return p;
  }
  L4Spec flow_l4(std::uint16_t sport) {
    L4Spec l;
    l.proto = c_.proto;
    l.sport = sport;
    l.dport = c_.dport;
    l.tcp_flags = c_.tcp_flags;
    l.seq = static_cast<std::uint32_t>(rng_());
    l.payload = payload(c_.src.version == 6 ? 40 : 20, c_.proto);
    return l;
  }
  Addr random_source(std::uint8_t version) {
    Addr a;
    a.version = version;
    if (version == 4) {
      const auto r = static_cast<std::uint32_t>(rng_());
      a.b[0] = static_cast<std::uint8_t>(1 + (r >> 24) % 223);  // 1-223, never 127
      if (a.b[0] == 127) a.b[0] = 128;
      a.b[1] = static_cast<std::uint8_t>(r >> 16);
      a.b[2] = static_cast<std::uint8_t>(r >> 8);
      a.b[3] = static_cast<std::uint8_t>(r | 1);
    } else {
      a.b = {0x20, 0x01, 0x0d, 0xb8};  // documentation prefix, random rest
      for (std::size_t i = 4; i < 16; ++i) a.b[i] = static_cast<std::uint8_t>(rng_());
    }
    return a;
  }
  Bytes plain_frame(const Bytes& ip) const {
    return build_eth(c_.dst_mac, c_.src_mac, (ip[0] >> 4) == 6 ? kEtherIpv6 : kEtherIpv4, ip);
  }
  // Inner IP packet → Ethernet + outer IP + UDP/6081 + Geneve(tag) + inner.
  std::expected<Bytes, std::string> tagged_frame(const Bytes& inner, std::uint32_t identity,
                                                 std::int64_t epoch, crypto::Coverage cov, Forge forge,
                                                 const Addr* outer_src = nullptr);

  std::expected<void, std::string> flow_kind(Kind k, std::uint64_t count, std::uint16_t port_base);
  std::expected<void, std::string> flood(Kind k, std::uint64_t count);
  void copies(Kind k, std::uint64_t count);
  void set_kind(Kind k, std::uint64_t count);

  const Config& c_;
  const Sink& sink_;
  crypto::Minter minter_;
  std::mt19937_64 rng_;
  std::uint64_t n_ = 0;
  std::uint16_t ip_id_ = 1;
  std::map<std::pair<std::uint32_t, std::int64_t>, crypto::IdentityKey> keys_;
  std::vector<Bytes> valid_;       // valid frames kept for replayed / tag-stripped
  std::vector<Bytes> valid_inner_;
};

constexpr std::size_t kKeepValid = 1 << 16;

std::expected<const crypto::IdentityKey*, std::string> Gen::key(std::uint32_t id, std::int64_t epoch) {
  const auto k = std::make_pair(id, epoch);
  if (auto it = keys_.find(k); it != keys_.end()) return &it->second;
  if (epoch < 0) return std::unexpected(fmt::format("epoch {} is before the epoch origin: move the time base", epoch));
  auto sv = crypto::derive_epoch_secret(c_.master, c_.domain, static_cast<std::uint64_t>(epoch));
  if (!sv) return std::unexpected(fmt::format("epoch secret: {}", sv.error().message));
  auto ik = crypto::derive_identity_key(*sv, id, c_.alg);
  if (!ik) return std::unexpected(fmt::format("key of identity {}: {}", id, ik.error().message));
  return &keys_.emplace(k, std::move(*ik)).first->second;
}

std::expected<Bytes, std::string> Gen::tagged_frame(const Bytes& inner, std::uint32_t identity, std::int64_t epoch,
                                                    crypto::Coverage cov, Forge forge, const Addr* outer_src) {
  crypto::InnerView view;
  if (auto e = crypto::parse_inner_ip(inner, view); e != crypto::PacketError::none)
    return std::unexpected(fmt::format("inner packet: {}", crypto::to_string(e)));
  crypto::EpochPolicy ep;
  ep.length_ns = c_.epoch_length_s * crypto::kNsPerSec;
  crypto::TagFields f;
  f.coverage = cov;
  f.timestamp_ns = crypto::tag_timestamp(ep, static_cast<std::uint64_t>(std::max<std::int64_t>(epoch, 0)), now());
  f.lane = c_.lane;
  crypto::Tag tag;
  auto k = key(identity, epoch);
  if (!k) return std::unexpected(k.error());
  if (auto r = minter_.mint(**k, f, view, tag); r != crypto::TagReject::none)
    return std::unexpected(fmt::format("minting the tag: {} (--size too large for a tag?)", crypto::to_string(r)));
  if (forge == Forge::flip_bit) {
    const auto r = rng_();
    tag.mac[r % crypto::kTagMacLen] ^= static_cast<std::uint8_t>(1U << ((r >> 8) % 8));
  } else if (forge == Forge::noise) {  // what a flood sends: no MAC computed at all
    for (auto& b : tag.mac) b = static_cast<std::uint8_t>(rng_());
  }
  crypto::OuterParams o;
  const Addr osrc = outer_src ? *outer_src : c_.outer_src.value_or(c_.src);
  const Addr odst = c_.outer_dst.value_or(c_.dst);
  o.ip_version = osrc.version;
  o.src = osrc.b;
  o.dst = odst.b;
  // Senders vary the outer source port per flow (RSS entropy): a hash of the inner 5-tuple.
  std::uint32_t h = 2166136261u;
  for (std::size_t i = 0; i < std::min<std::size_t>(inner.size(), view.ip_version == 6 ? 44 : 24); ++i)
    if (!(view.ip_version == 4 && (i >= 2 && i < 12))) h = (h ^ inner[i]) * 16777619u;
  o.src_port = static_cast<std::uint16_t>(49152 + h % 16384);
  o.vni = c_.vni;
  Bytes outer;
  if (auto e = crypto::build_geneve_packet(o, tag, inner, outer); e != crypto::PacketError::none)
    return std::unexpected(fmt::format("Geneve packet: {}", crypto::to_string(e)));
  return build_eth(c_.dst_mac, c_.src_mac, o.ip_version == 6 ? kEtherIpv6 : kEtherIpv4, outer);
}

std::expected<void, std::string> Gen::flow_kind(Kind k, std::uint64_t count, std::uint16_t port_base) {
  const std::int64_t cur = epoch_at(c_.time_base_ns);
  for (std::uint64_t i = 0; i < count; ++i) {
    const auto sport = static_cast<std::uint16_t>(port_base + i % c_.flows);
    const Bytes inner = build_ip_packet(c_.src, c_.dst, flow_l4(sport), ip_id_++);
    if (k == Kind::untagged) {
      emit(plain_frame(inner));
      continue;
    }
    std::uint32_t id = c_.identity;
    std::int64_t epoch = cur;
    crypto::Coverage cov = c_.coverage;
    if (k == Kind::expired) epoch = cur - 2;
    if (k == Kind::future) epoch = cur + 2;
    if (k == Kind::unknown_identity) id = c_.unknown_identity;
    if (k == Kind::hdr) cov = crypto::Coverage::hdr;
    auto f = tagged_frame(inner, id, epoch, cov, k == Kind::forged ? Forge::flip_bit : Forge::none);
    if (!f) return std::unexpected(f.error());
    if (k == Kind::valid && valid_.size() < kKeepValid) {
      valid_.push_back(*f);
      valid_inner_.push_back(plain_frame(inner));
    }
    emit(*f);
  }
  return {};
}

std::expected<void, std::string> Gen::flood(Kind k, std::uint64_t count) {
  const std::uint8_t v = c_.dst.version;
  for (std::uint64_t i = 0; i < count; ++i) {
    const Addr src = random_source(v);
    L4Spec l;
    l.proto = k == Kind::syn_flood ? kTcp : c_.proto;
    l.sport = static_cast<std::uint16_t>(1024 + rng_() % 64512);
    l.dport = c_.dport;
    l.tcp_flags = k == Kind::syn_flood ? 0x02 : c_.tcp_flags;
    l.seq = static_cast<std::uint32_t>(rng_());
    l.payload = payload(v == 6 ? 40 : 20, l.proto);
    const Bytes inner = build_ip_packet(src, c_.dst, l, ip_id_++);
    if (k != Kind::forged_flood) {
      emit(plain_frame(inner));
      continue;
    }
    const Addr* outer = c_.outer_src || src.version != c_.outer_dst.value_or(c_.dst).version ? nullptr : &src;
    auto f = tagged_frame(inner, c_.identity, epoch_at(c_.time_base_ns), c_.coverage, Forge::noise, outer);
    if (!f) return std::unexpected(f.error());
    emit(*f);
  }
  return {};
}

void Gen::copies(Kind k, std::uint64_t count) {
  const auto& from = k == Kind::replayed ? valid_ : valid_inner_;
  for (std::uint64_t i = 0; i < count; ++i) emit(from[i % from.size()]);
}

// ---- the hostile sets --------------------------------------------------------------------------

Addr v4_or(const Addr& a, const char* fallback) { return a.version == 4 ? a : *parse_addr(fallback); }
Addr v6_of(const Addr& a, const Addr& fallback) { return a.version == 6 ? a : fallback; }

// IPv6 extension header of `len` bytes (multiple of 8) with a PadN option filling it.
Bytes ext_header(std::uint8_t next, std::size_t len, std::uint8_t routing_type = 0xFF) {
  Bytes h(len, 0);
  h[0] = next;
  h[1] = static_cast<std::uint8_t>(len / 8 - 1);
  if (routing_type != 0xFF) {
    h[2] = routing_type;  // routing header: type, segments left
    h[3] = 0;
  } else if (len >= 8) {
    h[2] = 1;  // PadN
    h[3] = static_cast<std::uint8_t>(len - 4);
  }
  return h;
}

std::vector<Frame> build_set(Kind k, const Config& c) {
  std::vector<Frame> out;
  const Addr s4 = v4_or(c.src, "10.10.0.1"), d4 = v4_or(c.dst, "10.10.0.2");
  const Addr s6 = v6_of(c.src, c.src6), d6 = v6_of(c.dst, c.dst6);
  const auto eth4 = [&](const Bytes& ip) { return build_eth(c.dst_mac, c.src_mac, kEtherIpv4, ip); };
  const auto eth6 = [&](const Bytes& ip) { return build_eth(c.dst_mac, c.src_mac, kEtherIpv6, ip); };
  L4Spec tcp;
  tcp.sport = c.sport;
  tcp.dport = c.dport;
  tcp.tcp_flags = 0x02;
  L4Spec udp = tcp;
  udp.proto = kUdp;
  const Bytes good_tcp = build_ip_packet(s4, d4, tcp);

  if (k == Kind::malformed) {
    const auto with = [&](std::string_view name, auto&& edit) {
      Bytes ip = good_tcp;
      edit(ip);
      out.push_back({name, eth4(ip)});
    };
    const Bytes good = eth4(good_tcp);
    out.push_back({"runt", Bytes(good.begin(), good.begin() + 10)});
    out.push_back({"ipv4-truncated", Bytes(good.begin(), good.begin() + kEthLen + 12)});
    with("ipv4-bad-version", [](Bytes& b) { b[0] = 0x55; fix_ipv4_checksum(b, 0); });
    with("ipv4-bad-ihl", [](Bytes& b) { b[0] = 0x44; });
    with("ipv4-total-length-past-frame", [](Bytes& b) { put16(b, 2, static_cast<std::uint16_t>(b.size() + 20)); fix_ipv4_checksum(b, 0); });
    with("ipv4-bad-checksum", [](Bytes& b) { b[10] ^= 0x5A; });
    with("ipv4-reserved-flag", [](Bytes& b) { b[6] |= 0x80; fix_ipv4_checksum(b, 0); });
    with("tcp-bad-offset", [](Bytes& b) { b[20 + 12] = 4 << 4; });
    with("tcp-truncated", [](Bytes& b) { b.resize(20 + 10); put16(b, 2, 30); fix_ipv4_checksum(b, 0); });
    {
      Bytes ip = build_ip_packet(s4, d4, udp);
      put16(ip, 20 + 4, 100);  // UDP length beyond the datagram
      out.push_back({"udp-bad-length", eth4(ip)});
    }
    // Geneve: outer IPv4/UDP 6081 around `gen` (Geneve header + options + inner).
    const Bytes inner = good_tcp;
    const auto geneve = [&](std::string_view name, std::uint8_t ver, const Bytes& opts, const Bytes& tail) {
      Bytes g(8, 0);
      g[0] = static_cast<std::uint8_t>(ver << 6 | ((opts.size() / 4) & 0x3F));
      put16(g, 2, kEtherIpv4);
      g.insert(g.end(), opts.begin(), opts.end());
      g.insert(g.end(), tail.begin(), tail.end());
      L4Spec u;
      u.proto = kUdp;
      u.sport = 50000;
      u.dport = crypto::kGenevePort;
      u.payload = g;
      out.push_back({name, eth4(build_ip_packet(s4, d4, u))});
    };
    const auto option = [](std::uint16_t cls, std::uint8_t type, std::size_t body_words, std::uint8_t len_field) {
      Bytes o(4 + body_words * 4, 0xA5);
      put16(o, 0, cls);
      o[2] = type;
      o[3] = len_field;
      return o;
    };
    const Bytes tag = option(crypto::kTagOptionClass, crypto::kTagOptionType, 8, 8);
    {
      L4Spec u;
      u.proto = kUdp;
      u.sport = 50000;
      u.dport = crypto::kGenevePort;
      u.payload = Bytes{0x02, 0x00, 0x08};  // 3 bytes of an 8-byte header
      out.push_back({"geneve-truncated", eth4(build_ip_packet(s4, d4, u))});
    }
    geneve("geneve-bad-version", 1, tag, inner);
    geneve("geneve-tag-bad-length", 0, option(crypto::kTagOptionClass, crypto::kTagOptionType, 7, 7), inner);
    {
      Bytes two = tag;
      two.insert(two.end(), tag.begin(), tag.end());
      geneve("geneve-duplicate-tag", 0, two, inner);
    }
    {
      Bytes opts = tag;
      const Bytes crit = option(0x0103, 0x80, 1, 1);  // critical bit, unknown to everyone
      opts.insert(opts.end(), crit.begin(), crit.end());
      geneve("geneve-unknown-critical-option", 0, opts, inner);
    }
    {
      Bytes opts = tag;
      opts[3] = 12;  // option claims 48 bytes, the option area holds 32
      geneve("geneve-option-overrun", 0, opts, inner);
    }
    {
      Bytes f = eth4(good_tcp);
      // 0x88a8 / 0x8100 / 0x8100: three tags, then IPv4
      const Bytes v{0x88, 0xa8, 0x00, 0x0a, 0x81, 0x00, 0x00, 0x0b, 0x81, 0x00, 0x00, 0x0c};
      f.insert(f.begin() + 12, v.begin(), v.end());
      out.push_back({"vlan-too-deep", f});
    }
    {
      Bytes f = eth4(good_tcp);
      put16(f, 12, 0x8847);  // MPLS unicast
      out.push_back({"ethertype-mpls", f});
    }
    {
      const Bytes ip6 = build_ip_packet(s6, d6, tcp);
      const Bytes good6 = eth6(ip6);
      out.push_back({"ipv6-truncated", Bytes(good6.begin(), good6.begin() + kEthLen + 30)});
      Bytes p = ip6;
      put16(p, 4, static_cast<std::uint16_t>(get16(p, 4) + 16));
      out.push_back({"ipv6-payload-length-past-frame", eth6(p)});
    }
  } else if (k == Kind::fragments) {
    // A 56-byte UDP datagram (8 header + 48 payload) in fragments of IPv4 datagram id 0x4242.
    L4Spec u = udp;
    u.payload = Bytes(48, 0x61);
    const Bytes seg = build_l4(s4, d4, u);
    const auto frag4 = [&](std::string_view name, std::uint8_t proto, std::span<const std::uint8_t> part,
                           std::uint16_t off, bool more) {
      Bytes ip = build_ip(s4, d4, proto, part, 0x4242);
      put16(ip, 6, static_cast<std::uint16_t>((more ? 0x2000 : 0) | off / 8));
      fix_ipv4_checksum(ip, 0);
      out.push_back({name, eth4(ip)});
    };
    frag4("ipv4-in-order-first", kUdp, std::span(seg).first(32), 0, true);
    frag4("ipv4-in-order-last", kUdp, std::span(seg).subspan(32), 32, false);
    const Bytes tseg = build_l4(s4, d4, tcp);
    frag4("ipv4-tiny-first", kTcp, std::span(tseg).first(8), 0, true);
    frag4("ipv4-overlap-first", kUdp, std::span(seg).first(32), 0, true);
    frag4("ipv4-overlap-second", kUdp, std::span(seg).subspan(16), 16, false);  // rewrites bytes 16-31
    // IPv6: fragment header (44) in front of the first 32 and the last 24 bytes.
    const Bytes seg6 = build_l4(s6, d6, u);
    const auto frag6 = [&](std::string_view name, std::span<const std::uint8_t> part, std::uint16_t off, bool more) {
      Bytes fh(8, 0);
      fh[0] = kUdp;
      put16(fh, 2, static_cast<std::uint16_t>(off | (more ? 1 : 0)));
      fh[7] = 0x42;
      fh.insert(fh.end(), part.begin(), part.end());
      out.push_back({name, eth6(build_ip(s6, d6, 44, fh))});
    };
    frag6("ipv6-in-order-first", std::span(seg6).first(32), 0, true);
    frag6("ipv6-in-order-last", std::span(seg6).subspan(32), 32, false);
  } else if (k == Kind::ipv6_ext) {
    const Bytes seg6 = build_l4(s6, d6, tcp);
    const auto chain = [&](std::string_view name, std::vector<std::pair<std::uint8_t, Bytes>> hdrs) {
      // hdrs: (type, header) in order; next-header fields are chained here.
      Bytes body;
      for (std::size_t i = 0; i < hdrs.size(); ++i) {
        Bytes h = hdrs[i].second;
        h[0] = i + 1 < hdrs.size() ? hdrs[i + 1].first : kTcp;
        body.insert(body.end(), h.begin(), h.end());
      }
      body.insert(body.end(), seg6.begin(), seg6.end());
      out.push_back({name, eth6(build_ip(s6, d6, hdrs.empty() ? kTcp : hdrs[0].first, body))});
    };
    chain("hop-by-hop-dest-opts-tcp", {{0, ext_header(0, 8)}, {60, ext_header(0, 8)}});
    chain("routing-type0", {{43, ext_header(0, 24, 0)}});
    std::vector<std::pair<std::uint8_t, Bytes>> many;
    for (int i = 0; i < 9; ++i) many.push_back({60, ext_header(0, 8)});
    chain("chain-of-9", many);
    chain("hop-by-hop-not-first", {{60, ext_header(0, 8)}, {0, ext_header(0, 8)}});
    {
      Bytes h = ext_header(59, 8);
      h[1] = 3;  // claims 32 bytes; the packet ends after 8
      out.push_back({"ext-header-truncated", eth6(build_ip(s6, d6, 60, h))});
    }
    {
      Bytes fh(8, 0);  // atomic fragment: offset 0, M = 0 (RFC 6946: a whole datagram)
      fh[0] = kTcp;
      fh.insert(fh.end(), seg6.begin(), seg6.end());
      out.push_back({"atomic-fragment-tcp", eth6(build_ip(s6, d6, 44, fh))});
    }
  }
  return out;
}

void Gen::set_kind(Kind k, std::uint64_t count) {
  const auto set = build_set(k, c_);
  for (std::uint64_t i = 0; i < count; ++i) emit(set[i % set.size()].bytes);
}

std::expected<Summary, std::string> Gen::run() {
  Summary s;
  s.epoch = epoch_at(c_.time_base_ns);
  std::uint32_t block = 0;
  for (const auto& r : c_.kinds) {
    const std::uint64_t before = n_;
    const std::uint64_t count = r.count.value_or(is_set_kind(r.kind) ? set_frame_names(r.kind).size() : c_.count);
    std::expected<void, std::string> ok;
    if (r.kind == Kind::replayed || r.kind == Kind::tag_stripped) {
      if (valid_.empty())
        return std::unexpected(fmt::format("--kind {} copies the valid frames written before it: list valid "
                                           "first, e.g. --kind valid,{}",
                                           to_string(r.kind), to_string(r.kind)));
      copies(r.kind, count);
    } else if (is_set_kind(r.kind)) {
      set_kind(r.kind, count);
    } else if (is_flow_kind(r.kind)) {
      const std::uint32_t base = c_.sport + block * c_.flows;
      ++block;
      if (base + c_.flows - 1 > 65535)
        return std::unexpected(fmt::format("--sport {} + {} flow kinds x --flows {} runs past port 65535", c_.sport,
                                           block, c_.flows));
      ok = flow_kind(r.kind, count, static_cast<std::uint16_t>(base));
    } else {
      ok = flood(r.kind, count);
    }
    if (!ok) return std::unexpected(ok.error());
    s.written.emplace_back(r.kind, n_ - before);
  }
  s.total = n_;
  return s;
}

}  // namespace

std::span<const KindInfo> kind_table() noexcept { return kKinds; }

std::optional<Kind> kind_from_string(std::string_view s) noexcept {
  for (const auto& k : kKinds)
    if (k.name == s) return k.kind;
  return std::nullopt;
}

std::string_view to_string(Kind k) noexcept {
  for (const auto& i : kKinds)
    if (i.kind == k) return i.name;
  return "?";
}

std::vector<std::string_view> set_frame_names(Kind k) {
  std::vector<std::string_view> names;
  Config c;
  c.src = *parse_addr("10.10.0.1");
  c.dst = *parse_addr("10.10.0.2");
  c.src6 = *parse_addr("fd00:10::1");
  c.dst6 = *parse_addr("fd00:10::2");
  for (const auto& f : build_set(k, c)) names.push_back(f.name);
  return names;
}

std::expected<Summary, std::string> generate(const Config& c, const Sink& sink) {
  if (c.kinds.empty()) return std::unexpected("--kind: name at least one kind (see ztgen --help)");
  if (c.flows == 0) return std::unexpected("--flows 0: expected at least 1");
  if (c.epoch_length_s < 10 || c.epoch_length_s > 86400)
    return std::unexpected(fmt::format("--epoch-length {}: expected 10 to 86400 seconds", c.epoch_length_s));
  if (c.src.version != c.dst.version)
    return std::unexpected(fmt::format("--src {} and --dst {}: both IPv4 or both IPv6", to_string(c.src), to_string(c.dst)));
  if (c.outer_src.value_or(c.src).version != c.outer_dst.value_or(c.dst).version)
    return std::unexpected("--outer-src and --outer-dst: both IPv4 or both IPv6");
  if (c.src6.version != 6 || c.dst6.version != 6) return std::unexpected("--src6/--dst6: expected IPv6 addresses");
  if (c.identity < crypto::kFirstTagIdentity || c.unknown_identity < crypto::kFirstTagIdentity)
    return std::unexpected(fmt::format("--identity/--unknown-identity: tags carry identities >= {} (0-255 are reserved)",
                                       crypto::kFirstTagIdentity));
  if (c.size > 9018) return std::unexpected(fmt::format("--size {}: expected at most 9018 (a jumbo frame)", c.size));
  if (c.interval_ns < 0) return std::unexpected("--interval-ns: must not be negative");
  for (const auto& r : c.kinds)
    if (is_tagged_kind(r.kind) && c.master.empty())
      return std::unexpected(fmt::format("--kind {} needs --key-master (the file ztgate's --key-master reads)",
                                         to_string(r.kind)));
  auto m = crypto::Minter::create();
  if (!m) return std::unexpected("minter: " + m.error().message);
  Gen g(c, sink, std::move(*m));
  return g.run();
}

std::expected<std::vector<std::uint8_t>, std::string> read_hex_secret(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::unexpected(fmt::format("--key-master: cannot read '{}'", path));
  std::stringstream ss;
  ss << in.rdbuf();
  std::string hex;
  for (char ch : ss.str())
    if (!std::isspace(static_cast<unsigned char>(ch))) hex += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (hex.size() % 2 != 0) return std::unexpected(fmt::format("--key-master '{}': odd number of hex digits", path));
  std::vector<std::uint8_t> out;
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    unsigned v = 0;
    for (std::size_t k = 0; k < 2; ++k) {
      const char ch = hex[i + k];
      if (!std::isxdigit(static_cast<unsigned char>(ch)))
        return std::unexpected(fmt::format("--key-master '{}': '{}' is not a hex digit (the file holds the secret "
                                           "in hex, e.g. from `openssl rand -hex 32`)", path, ch));
      v = v * 16 + static_cast<unsigned>(std::isdigit(static_cast<unsigned char>(ch)) ? ch - '0' : ch - 'a' + 10);
    }
    out.push_back(static_cast<std::uint8_t>(v));
  }
  if (out.size() < crypto::kMinMasterSecretLen)
    return std::unexpected(fmt::format("--key-master '{}': {} bytes; at least {} are required", path, out.size(),
                                       crypto::kMinMasterSecretLen));
  return out;
}

}  // namespace zt::ztgen
