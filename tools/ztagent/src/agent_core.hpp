// The packet work of ztagent, free of sockets and file descriptors so tests and perf/agent_bench
// drive it directly: outbound, an inner IP packet read from the TUN becomes Geneve + identity tag
// in front of it; inbound, a Geneve datagram received on UDP/6081 is parsed, its tag verified
// and the inner IP packet handed back for the TUN. Nothing here allocates, locks, logs, throws
// or makes a syscall; time is a parameter.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "key_source.hpp"
#include "zt/crypto/key_ring.hpp"
#include "zt/crypto/mint.hpp"
#include "zt/crypto/replay_filter.hpp"
#include "zt/crypto/tag_codec.hpp"
#include "zt/crypto/verifier.hpp"

namespace zt::agent {

// Geneve header (8) + the identity tag option (36) written in front of the inner packet.
inline constexpr std::size_t kEncapLen = 8 + crypto::kTagOptionLen;
// Outer IPv6 (40) + UDP (8) + kEncapLen: what the TUN MTU must leave room for.
inline constexpr std::size_t kMaxOverhead = 40 + 8 + kEncapLen;
// Headroom the receive path needs in front of a datagram (a synthetic outer IPv4 + UDP header,
// so the crypto module's strict Geneve parser runs unchanged on a UDP payload).
inline constexpr std::size_t kRxHeadroom = 28;

// Counters: one writer (the agent's single thread). Printed on SIGUSR1 and at exit.
#define ZT_AGENT_COUNTERS(X)                                                                    \
  X(tun_packets, "IP packets read from the TUN")                                                \
  X(tagged, "packets tagged with the identity tag")                                             \
  X(sent, "Geneve packets sent on the egress interface")                                        \
  X(send_errors, "Geneve packets the kernel refused to send (dropped)")                         \
  X(out_not_ip, "TUN packets that are not IPv4/IPv6 or are malformed (dropped)")                \
  X(out_not_unicast, "TUN packets to a multicast, broadcast or link-local address (dropped)")   \
  X(out_fragment, "TUN packets that are IP fragments: a tag covers whole L4 segments (dropped)") \
  X(out_too_long, "TUN packets longer than a tag may cover or than a datagram holds (dropped)") \
  X(out_no_key, "TUN packets without a key for the current epoch (dropped, fail closed)")       \
  X(out_mint_failed, "TUN packets the MAC computation failed on (dropped)")                      \
  X(in_datagrams, "datagrams received on UDP/6081")                                             \
  X(in_malformed, "datagrams that are not a valid Geneve packet with one identity tag")        \
  X(in_verified, "inbound tags verified (authentic, fresh, not replayed)")                      \
  X(in_unverified, "inbound tags accepted unverified (--inbound trust-appliance)")              \
  X(in_rejected, "inbound tags that failed verification (dropped; by reason below)")           \
  X(in_unverifiable, "inbound tags of an identity the agent has no key for (dropped)")          \
  X(delivered, "inner packets written to the TUN")                                              \
  X(tun_write_errors, "inner packets the TUN refused (dropped)")                                \
  X(key_rollovers, "epoch boundaries crossed (switched to the key held ahead)")                 \
  X(key_fetch_errors, "failed key fetches (retried on the next tick)")

struct Counters {
#define ZT_AGENT_COUNTER_FIELD(name, desc) std::uint64_t name = 0;
  ZT_AGENT_COUNTERS(ZT_AGENT_COUNTER_FIELD)
#undef ZT_AGENT_COUNTER_FIELD
  std::array<std::uint64_t, crypto::kTagRejectCount> in_rejected_by{};
};

// Visits (name, value, description) of every counter, then the inbound reject reasons as
// ("in_rejected_<reason>", value, description) for the non-zero ones.
template <class F>
void for_each_counter(const Counters& c, F&& f) {
#define ZT_AGENT_COUNTER_VISIT(name, desc) f(std::string_view{#name}, c.name, std::string_view{desc});
  ZT_AGENT_COUNTERS(ZT_AGENT_COUNTER_VISIT)
#undef ZT_AGENT_COUNTER_VISIT
  for (std::size_t i = 1; i < crypto::kTagRejectCount; ++i)
    if (c.in_rejected_by[i] != 0)
      f(crypto::to_string(static_cast<crypto::TagReject>(i)), c.in_rejected_by[i],
        std::string_view{"inbound tags rejected for this reason"});
}

enum class OutResult : std::uint8_t { ok, not_ip, not_unicast, fragment, too_long, no_key, mint_failed };

// What the agent learnt about an outbound packet: where it goes.
struct OutPacket {
  std::uint8_t ip_version = 4;
  std::array<std::uint8_t, 16> dst{};
  std::size_t len = 0;  // Geneve payload length (kEncapLen + inner IP length)
};

class Tagger {
 public:
  static Expected<Tagger> create(crypto::Coverage coverage, std::uint16_t lane);

  // `inner` is an IP packet read from the TUN at buf + kEncapLen; the Geneve header and the tag
  // are written into buf[0, kEncapLen). On ok, `out` says where to send buf[0, out.len).
  // Timestamps strictly increase per key epoch, so two identical packets never share a MAC.
  OutResult encapsulate(const crypto::IdentityKey& key, const crypto::EpochPolicy& policy,
                        std::int64_t now_ns, std::uint8_t* buf, std::size_t inner_len,
                        OutPacket& out) noexcept;

 private:
  Tagger(crypto::Minter m, crypto::Coverage c, std::uint16_t lane) noexcept
      : minter_(std::move(m)), coverage_(c), lane_(lane) {}
  crypto::Minter minter_;
  crypto::Coverage coverage_;
  std::uint16_t lane_;
  std::uint64_t last_epoch_ = ~std::uint64_t{0};
  std::uint64_t last_ts_ = 0;
};

enum class InboundMode : std::uint8_t {
  verify,           // every tag must verify with a key the agent holds; others are dropped
  trust_appliance,  // tags the agent holds a key for must verify; others pass, counted unverified
  off,              // no inbound socket on 6081
};
std::string_view to_string(InboundMode m) noexcept;

// One received datagram: payload at buf + kRxHeadroom, `len` bytes; buf[0, kRxHeadroom) is
// scratch. On return `inner` is the packet to write to the TUN (empty: dropped).
struct Datagram {
  std::uint8_t* buf = nullptr;
  std::size_t len = 0;
  std::span<const std::uint8_t> inner;
};

class Receiver {
 public:
  static Expected<Receiver> create(InboundMode mode, bool accept_hdr);

  // Handles up to kMaxVerifyBurst datagrams with one batched verification; `ring` may be null
  // (no key material for inbound verification). Updates `c`; returns how many were handled.
  std::size_t process(const crypto::KeyRing* ring, std::int64_t now_ns, std::span<Datagram> in,
                      Counters& c) noexcept;

 private:
  Receiver(crypto::Verifier v, crypto::ReplayFilter r, InboundMode m, bool hdr) noexcept
      : verifier_(std::move(v)), replay_(std::move(r)), mode_(m), accept_hdr_(hdr) {}
  crypto::Verifier verifier_;
  crypto::ReplayFilter replay_;
  InboundMode mode_;
  bool accept_hdr_;
};

}  // namespace zt::agent
