#include "agent_core.hpp"

#include <cstring>

namespace zt::agent {

namespace {

constexpr std::uint16_t kEtherIpv4 = 0x0800;
constexpr std::uint16_t kEtherIpv6 = 0x86DD;

bool unicast(const crypto::InnerView& v) noexcept {
  const auto& d = v.dst;
  if (v.ip_version == 4) {
    if (d[0] >= 224) return false;                       // multicast, reserved, broadcast
    if (d[0] == 169 && d[1] == 254) return false;        // link-local
    if (d[0] == 0) return false;
    return true;
  }
  if (d[0] == 0xFF) return false;                        // multicast
  if (d[0] == 0xFE && (d[1] & 0xC0) == 0x80) return false;  // link-local
  return true;
}

}  // namespace

std::string_view to_string(InboundMode m) noexcept {
  switch (m) {
    case InboundMode::verify: return "verify";
    case InboundMode::trust_appliance: return "trust-appliance";
    case InboundMode::off: return "off";
  }
  return "?";
}

Expected<Tagger> Tagger::create(crypto::Coverage coverage, std::uint16_t lane) {
  auto m = crypto::Minter::create();
  if (!m) return std::unexpected(m.error().message);
  return Tagger(std::move(*m), coverage, lane);
}

OutResult Tagger::encapsulate(const crypto::IdentityKey& key, const crypto::EpochPolicy& policy,
                              std::int64_t now_ns, std::uint8_t* buf, std::size_t inner_len,
                              OutPacket& out) noexcept {
  std::uint8_t* ip = buf + kEncapLen;
  crypto::InnerView iv;
  switch (crypto::parse_inner_ip({ip, inner_len}, iv)) {
    case crypto::PacketError::none: break;
    case crypto::PacketError::inner_fragment: return OutResult::fragment;
    default: return OutResult::not_ip;
  }
  if (!unicast(iv)) return OutResult::not_unicast;
  // Only the IP packet itself travels (a TUN read never has trailing bytes, but be exact).
  const std::size_t ip_len = static_cast<std::size_t>(iv.l4.data() + iv.l4.size() - ip);
  if (kEncapLen + ip_len > 65535 - 8) return OutResult::too_long;

  crypto::TagFields f;
  f.coverage = coverage_;
  f.lane = lane_;
  std::uint64_t ts = crypto::tag_timestamp(policy, key.epoch, now_ns);
  if (key.epoch == last_epoch_ && ts <= last_ts_) ts = last_ts_ + 1;
  f.timestamp_ns = ts;
  crypto::Tag tag;
  switch (minter_.mint(key, f, iv, tag)) {
    case crypto::TagReject::none: break;
    case crypto::TagReject::tag_too_long: return OutResult::too_long;
    default: return OutResult::mint_failed;
  }
  last_epoch_ = key.epoch;
  last_ts_ = ts;

  buf[0] = static_cast<std::uint8_t>(crypto::kTagOptionLen / 4);  // Ver 0 | Opt Len (words)
  buf[1] = 0x40;                                                   // C: a critical option follows
  const std::uint16_t proto = iv.ip_version == 4 ? kEtherIpv4 : kEtherIpv6;
  buf[2] = static_cast<std::uint8_t>(proto >> 8);
  buf[3] = static_cast<std::uint8_t>(proto);
  buf[4] = buf[5] = buf[6] = buf[7] = 0;                           // VNI 0, reserved
  crypto::encode_tag_option(tag, std::span<std::uint8_t, crypto::kTagOptionLen>(buf + 8, crypto::kTagOptionLen));
  out.ip_version = iv.ip_version;
  out.dst = iv.dst;
  out.len = kEncapLen + ip_len;
  return OutResult::ok;
}

Expected<Receiver> Receiver::create(InboundMode mode, bool accept_hdr) {
  auto v = crypto::Verifier::create();
  if (!v) return std::unexpected("inbound verifier: " + v.error().message);
  // An endpoint receives far less than an appliance lcore: 1 Mpps of accepted tags at 1e-6 false
  // drops is a few MiB.
  crypto::ReplayFilterConfig rc;
  rc.packets_per_second = 1e6;
  rc.false_drop_rate = 1e-6;
  auto r = crypto::ReplayFilter::create(rc);
  if (!r) return std::unexpected("inbound replay filter: " + r.error().message);
  return Receiver(std::move(*v), std::move(*r), mode, accept_hdr);
}

std::size_t Receiver::process(const crypto::KeyRing* ring, std::int64_t now_ns,
                              std::span<Datagram> in, Counters& c) noexcept {
  const std::size_t n = in.size() < crypto::kMaxVerifyBurst ? in.size() : crypto::kMaxVerifyBurst;
  std::array<crypto::VerifyInput, crypto::kMaxVerifyBurst> vin;
  std::array<crypto::VerifyResult, crypto::kMaxVerifyBurst> vout;
  std::array<std::uint8_t, crypto::kMaxVerifyBurst> slot;  // in[] index of each vin[] entry
  std::size_t nv = 0;
  for (std::size_t i = 0; i < n; ++i) {
    Datagram& d = in[i];
    d.inner = {};
    ++c.in_datagrams;
    const std::size_t total = kRxHeadroom + d.len;
    if (total > 65535) {
      ++c.in_malformed;
      continue;
    }
    // A synthetic outer IPv4 + UDP/6081 header, so parse_geneve_packet (the same strict parser
    // the tests and ztgen use) runs on the payload the socket delivered.
    std::uint8_t* h = d.buf;
    std::memset(h, 0, kRxHeadroom);
    h[0] = 0x45;
    h[2] = static_cast<std::uint8_t>(total >> 8);
    h[3] = static_cast<std::uint8_t>(total);
    h[8] = 64;
    h[9] = 17;
    const std::size_t udp_len = 8 + d.len;
    h[22] = static_cast<std::uint8_t>(crypto::kGenevePort >> 8);
    h[23] = static_cast<std::uint8_t>(crypto::kGenevePort);
    h[24] = static_cast<std::uint8_t>(udp_len >> 8);
    h[25] = static_cast<std::uint8_t>(udp_len);
    crypto::GeneveView gv;
    crypto::InnerView iv;
    crypto::Tag tag;
    if (crypto::parse_geneve_packet({h, total}, gv) != crypto::PacketError::none ||
        crypto::parse_inner_ip(gv.inner, iv) != crypto::PacketError::none) {
      ++c.in_malformed;
      continue;
    }
    if (const auto r = crypto::decode_tag_body(gv.tag_body, tag); r != crypto::TagReject::none) {
      ++c.in_rejected;
      ++c.in_rejected_by[static_cast<std::size_t>(r)];
      continue;
    }
    const std::size_t inner_len = static_cast<std::size_t>(iv.l4.data() + iv.l4.size() - gv.inner.data());
    d.inner = gv.inner.first(inner_len);
    if (ring == nullptr) {
      if (mode_ == InboundMode::trust_appliance) {
        ++c.in_unverified;
      } else {
        ++c.in_unverifiable;
        d.inner = {};
      }
      continue;
    }
    vin[nv] = crypto::VerifyInput{gv.tag_body, iv, accept_hdr_};
    slot[nv] = static_cast<std::uint8_t>(i);
    ++nv;
  }
  if (nv > 0) verifier_.verify_burst(*ring, now_ns, {vin.data(), nv}, {vout.data(), nv}, &replay_);
  for (std::size_t k = 0; k < nv; ++k) {
    Datagram& d = in[slot[k]];
    const crypto::TagReject r = vout[k].reason;
    if (r == crypto::TagReject::none) {
      ++c.in_verified;
    } else if (r == crypto::TagReject::tag_unknown_identity) {
      if (mode_ == InboundMode::trust_appliance) {
        ++c.in_unverified;
      } else {
        ++c.in_unverifiable;
        d.inner = {};
      }
    } else {
      ++c.in_rejected;
      ++c.in_rejected_by[static_cast<std::size_t>(r)];
      d.inner = {};
    }
  }
  return n;
}

}  // namespace zt::agent
