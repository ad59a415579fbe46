// Shared fixtures for the crypto tests and the crypto benchmark (perf/crypto_bench.cpp): inner
// packets, a trust domain with a fixed epoch layout, and helpers to mint one tag. No GoogleTest
// dependency, so the benchmark can use them; a fixture that cannot be built aborts loudly.
#pragma once

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <array>
#include <random>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "zt/crypto/key_ring.hpp"
#include "zt/crypto/keys.hpp"
#include "zt/crypto/mint.hpp"
#include "zt/crypto/tag_codec.hpp"
#include "zt/crypto/verifier.hpp"

namespace zt::crypto::test {

inline void require(bool ok, const char* what, const std::string& detail = {}) {
  if (ok) return;
  std::fprintf(stderr, "fixture failed: %s %s\n", what, detail.c_str());
  std::abort();
}

// Every message length 0..max_len of both algorithms, once each, in a shuffled order: the
// multi-lane CMAC kernel tests cut it into bursts.
struct CmacCase {
  Alg alg;
  std::size_t len;
};
inline std::vector<CmacCase> shuffled_cmac_cases(std::size_t max_len, std::mt19937_64& rng) {
  std::vector<CmacCase> cases;
  for (Alg a : {Alg::aes128_cmac, Alg::aes256_cmac})
    for (std::size_t len = 0; len <= max_len; ++len) cases.push_back({a, len});
  std::shuffle(cases.begin(), cases.end(), rng);
  return cases;
}

inline std::vector<std::uint8_t> from_hex(const std::string& h) {
  std::vector<std::uint8_t> out;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2)
    out.push_back(static_cast<std::uint8_t>(std::stoi(h.substr(i, 2), nullptr, 16)));
  return out;
}

inline std::string to_hex(std::span<const std::uint8_t> b) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (std::uint8_t c : b) {
    s += d[c >> 4];
    s += d[c & 15];
  }
  return s;
}

inline void put16(std::vector<std::uint8_t>& v, std::size_t at, std::uint16_t x) {
  v[at] = static_cast<std::uint8_t>(x >> 8);
  v[at + 1] = static_cast<std::uint8_t>(x);
}

// IPv4 + UDP (proto 17) or TCP (6) with a patterned payload.
inline std::vector<std::uint8_t> ipv4_packet(std::uint8_t proto, std::size_t payload,
                                             std::uint8_t seed = 1,
                                             std::array<std::uint8_t, 4> src = {10, 1, 0, 5},
                                             std::array<std::uint8_t, 4> dst = {10, 2, 0, 9}) {
  const std::size_t l4h = proto == 6 ? 20 : 8;
  std::vector<std::uint8_t> p(20 + l4h + payload, 0);
  p[0] = 0x45;
  put16(p, 2, static_cast<std::uint16_t>(p.size()));
  p[8] = 64;
  p[9] = proto;
  std::copy(src.begin(), src.end(), p.begin() + 12);
  std::copy(dst.begin(), dst.end(), p.begin() + 16);
  put16(p, 20, 40000);
  put16(p, 22, proto == 6 ? 443 : 53);
  if (proto == 6) p[32] = 5 << 4;
  else put16(p, 24, static_cast<std::uint16_t>(8 + payload));
  for (std::size_t i = 0; i < payload; ++i)
    p[20 + l4h + i] = static_cast<std::uint8_t>(seed + 13 * i);
  return p;
}

inline std::vector<std::uint8_t> ipv6_packet(std::uint8_t proto, std::size_t payload,
                                             std::uint8_t seed = 1) {
  const std::size_t l4h = proto == 6 ? 20 : 8;
  std::vector<std::uint8_t> p(40 + l4h + payload, 0);
  p[0] = 0x60;
  put16(p, 4, static_cast<std::uint16_t>(l4h + payload));
  p[6] = proto;
  p[7] = 64;
  p[8] = 0xfd;
  p[23] = 5;
  p[24] = 0xfd;
  p[39] = 9;
  put16(p, 40, 40000);
  put16(p, 42, 443);
  if (proto == 6) p[52] = 5 << 4;
  else put16(p, 44, static_cast<std::uint16_t>(8 + payload));
  for (std::size_t i = 0; i < payload; ++i)
    p[40 + l4h + i] = static_cast<std::uint8_t>(seed + 13 * i);
  return p;
}

inline InnerView view_of(const std::vector<std::uint8_t>& ip) {
  InnerView v;
  require(parse_inner_ip(ip, v) == PacketError::none, "parse_inner_ip");
  return v;
}

// A trust domain: master secret, 15-minute epochs from a fixed origin, a set of identities.
struct Domain {
  static constexpr std::int64_t kOrigin = 1'700'000'000LL * kNsPerSec;
  EpochPolicy policy{};
  std::vector<std::uint8_t> master = std::vector<std::uint8_t>(32, 0x5A);
  std::vector<std::uint32_t> ids;

  explicit Domain(std::size_t n_ids = 64, bool accept_aes128 = true) {
    policy.origin_ns = kOrigin;
    policy.accept_aes128 = accept_aes128;
    for (std::size_t i = 0; i < n_ids; ++i) ids.push_back(static_cast<std::uint32_t>(1000 + i));
  }
  std::int64_t at(std::uint64_t epoch, std::int64_t offset_ns) const {
    return policy.origin_ns + static_cast<std::int64_t>(epoch) * policy.length_ns + offset_ns;
  }
  EpochSecret sv(std::uint64_t e, std::uint8_t gen = 0) const {
    auto s = derive_epoch_secret(master, "test.example", e, gen);
    require(s.has_value(), "derive_epoch_secret", s ? "" : s.error().message);
    return *s;
  }
  // Ring with epochs e-1, e, e+1.
  std::shared_ptr<const KeyRing> ring(std::uint64_t e) const {
    std::vector<EpochSecret> s{sv(e - 1), sv(e), sv(e + 1)};
    auto r = KeyRing::build(policy, s, ids);
    require(r.has_value(), "KeyRing::build", r ? "" : r.error().message);
    return *r;
  }
  IdentityKey key(std::uint32_t id, std::uint64_t e, Alg alg, std::uint8_t gen = 0) const {
    auto k = derive_identity_key(sv(e, gen), id, alg);
    require(k.has_value(), "derive_identity_key", k ? "" : k.error().message);
    return *k;
  }
};

// One tagged packet: inner IP bytes + 32-byte body, kept together so spans stay valid.
struct Tagged {
  std::vector<std::uint8_t> inner_ip;
  std::array<std::uint8_t, kTagBodyLen> body{};
  bool hdr_allowed = false;
  VerifyInput input() const {
    VerifyInput in;
    in.tag = body;
    require(parse_inner_ip(inner_ip, in.inner) == PacketError::none, "parse_inner_ip");
    in.hdr_allowed = hdr_allowed;
    return in;
  }
};

inline Tagged mint_packet(Minter& m, const IdentityKey& k, std::int64_t now,
                          const EpochPolicy& pol, std::vector<std::uint8_t> ip,
                          Coverage cov = Coverage::full, std::uint16_t lane = 0) {
  Tagged t;
  t.inner_ip = std::move(ip);
  TagFields f;
  f.coverage = cov;
  f.timestamp_ns = tag_timestamp(pol, k.epoch, now);
  f.lane = lane;
  Tag tag;
  InnerView v;
  require(parse_inner_ip(t.inner_ip, v) == PacketError::none, "parse_inner_ip");
  require(m.mint(k, f, v, tag) == TagReject::none, "Minter::mint");
  encode_tag_body(tag, t.body);
  t.hdr_allowed = cov == Coverage::hdr;
  return t;
}

}  // namespace zt::crypto::test
