// ztagent's tagging cost per packet (issue 9): Tagger::encapsulate (parse the inner IP packet,
// mint the tag with crypto::Minter, write Geneve + option in front) for 64- and 1400-byte inner
// IPv4/UDP packets, FULL and HDR coverage, AES-256 (default) and AES-128, beside OpenSSL's
// AES-CMAC of the same MAC input bytes in the same process:
//   keyed    EVP_MAC_init with the key for every message (the key schedule per packet, which is
//            what Minter does: one agent key, but OpenSSL's CMAC context does not keep it)
//   prekeyed EVP_MAC_init without a key (context re-used, no key schedule): OpenSSL's floor
// Prints TSC cycles and ns per packet, median [min..max] over the runs, and agent/baseline
// ratios of medians. Before timing, every configuration's tag is checked against the baseline
// MAC (exit 1 on a mismatch). Usage: agent_bench [--quick] [--runs N] [--packets N]
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <x86intrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "agent_core.hpp"
#include "zt/crypto/keys.hpp"
#include "zt/crypto/mint.hpp"

using namespace zt;

namespace {

double tsc_hz() {
  using clk = std::chrono::steady_clock;
  const auto t0 = clk::now();
  const auto c0 = __rdtsc();
  while (clk::now() - t0 < std::chrono::milliseconds(200)) {}
  const auto c1 = __rdtsc();
  const auto t1 = clk::now();
  return static_cast<double>(c1 - c0) / std::chrono::duration<double>(t1 - t0).count();
}

struct Stats {
  double median, min, max;
};
Stats stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back()};
}

// An inner IPv4/UDP packet of `len` bytes at buf + kEncapLen.
std::vector<std::uint8_t> make_packet(std::size_t len, std::uint32_t seed) {
  std::vector<std::uint8_t> b(agent::kEncapLen + len);
  std::uint8_t* p = b.data() + agent::kEncapLen;
  p[0] = 0x45;
  p[2] = static_cast<std::uint8_t>(len >> 8);
  p[3] = static_cast<std::uint8_t>(len);
  p[8] = 64;
  p[9] = 17;
  const std::uint8_t src[4] = {10, 10, 0, 1}, dst[4] = {10, 10, 0, 2};
  std::memcpy(p + 12, src, 4);
  std::memcpy(p + 16, dst, 4);
  const std::size_t udp = len - 20;
  p[20] = 0xC0;
  p[21] = static_cast<std::uint8_t>(seed);
  p[22] = 0x14;
  p[23] = 0x51;  // 5201
  p[24] = static_cast<std::uint8_t>(udp >> 8);
  p[25] = static_cast<std::uint8_t>(udp);
  for (std::size_t i = 28; i < len; ++i) p[i] = static_cast<std::uint8_t>(i * 31 + seed);
  return b;
}

struct OpenSslCmac {
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, OSSL_MAC_NAME_CMAC, nullptr);
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);
  ~OpenSslCmac() {
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
  }
  bool keyed(std::span<const std::uint8_t> key, std::span<const std::uint8_t> msg, std::uint8_t* out) {
    char c128[] = "AES-128-CBC", c256[] = "AES-256-CBC";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, key.size() == 16 ? c128 : c256, 0),
        OSSL_PARAM_construct_end()};
    std::size_t n = 0;
    return EVP_MAC_init(ctx, key.data(), key.size(), params) == 1 &&
           EVP_MAC_update(ctx, msg.data(), msg.size()) == 1 && EVP_MAC_final(ctx, out, &n, 16) == 1;
  }
  bool prekeyed(std::span<const std::uint8_t> msg, std::uint8_t* out) {
    std::size_t n = 0;
    return EVP_MAC_init(ctx, nullptr, 0, nullptr) == 1 && EVP_MAC_update(ctx, msg.data(), msg.size()) == 1 &&
           EVP_MAC_final(ctx, out, &n, 16) == 1;
  }
};

}  // namespace

int main(int argc, char** argv) {
  int runs = 7;
  std::size_t packets = 20000;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      runs = 3;
      packets = 2000;
    } else if (a == "--runs" && i + 1 < argc) {
      runs = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--packets" && i + 1 < argc) {
      packets = static_cast<std::size_t>(std::max(1, std::atoi(argv[++i])));
    } else {
      std::fprintf(stderr, "usage: agent_bench [--quick] [--runs N] [--packets N]\n");
      return 2;
    }
  }
  std::vector<std::uint8_t> master(32);
  for (std::size_t i = 0; i < master.size(); ++i) master[i] = static_cast<std::uint8_t>(i * 7 + 1);
  crypto::EpochPolicy policy;
  policy.length_ns = 900 * crypto::kNsPerSec;
  const std::uint64_t epoch = 2'000'000;
  const std::int64_t t0 = policy.origin_ns + static_cast<std::int64_t>(epoch) * policy.length_ns + crypto::kNsPerSec;
  auto sv = crypto::derive_epoch_secret(master, "bench", epoch);
  if (!sv) {
    std::fprintf(stderr, "agent_bench: %s\n", sv.error().message.c_str());
    return 1;
  }
  const double hz = tsc_hz();
  std::printf("agent_bench: ztagent tagging (Tagger::encapsulate: parse + Minter + Geneve header) vs "
              "OpenSSL AES-CMAC of the same MAC input, TSC %.3f GHz, %d runs x %zu packets\n",
              hz / 1e9, runs, packets);
  std::printf("%-8s %-4s %5s | %-30s | %-30s | %-30s | agent/keyed agent/prekeyed\n", "alg", "cov", "bytes",
              "agent cyc/pkt median [min..max]", "OpenSSL keyed cyc/pkt", "OpenSSL prekeyed cyc/pkt");
  int failures = 0;
  OpenSslCmac ossl;
  for (crypto::Alg alg : {crypto::Alg::aes256_cmac, crypto::Alg::aes128_cmac})
    for (crypto::Coverage cov : {crypto::Coverage::full, crypto::Coverage::hdr})
      for (std::size_t len : {std::size_t{64}, std::size_t{1400}}) {
        auto key = crypto::derive_identity_key(*sv, 1001, alg);
        auto tagger = agent::Tagger::create(cov, 0);
        if (!key || !tagger) {
          std::fprintf(stderr, "agent_bench: setup failed\n");
          return 1;
        }
        // 64 distinct packets, cycled (cache-resident, as a TUN read buffer is).
        std::vector<std::vector<std::uint8_t>> pk;
        std::vector<std::vector<std::uint8_t>> macin;
        for (std::uint32_t s = 0; s < 64; ++s) pk.push_back(make_packet(len, s));
        // Cross-check: the agent's tag equals OpenSSL's CMAC over the documented MAC input.
        for (std::uint32_t s = 0; s < 64; ++s) {
          agent::OutPacket op;
          if (tagger->encapsulate(*key, policy, t0, pk[s].data(), len, op) != agent::OutResult::ok) {
            std::fprintf(stderr, "agent_bench: encapsulate refused a packet\n");
            return 1;
          }
          crypto::Tag tag;
          crypto::decode_tag_option({pk[s].data() + 8, crypto::kTagOptionLen}, tag);
          crypto::InnerView iv;
          crypto::parse_inner_ip({pk[s].data() + agent::kEncapLen, len}, iv);
          std::array<std::uint8_t, 16> head;
          crypto::encode_tag_fields(tag.fields, head);
          std::vector<std::uint8_t> in(crypto::kMaxMacInputLen);
          in.resize(crypto::build_mac_input(head, cov, iv, in));
          std::uint8_t mac[16];
          if (!ossl.keyed(key->bytes(), in, mac) || std::memcmp(mac, tag.mac.data(), 16) != 0) ++failures;
          macin.push_back(std::move(in));
        }
        std::vector<double> ag, kd, pkd;
        std::uint64_t sink = 0;
        for (int r = 0; r < runs; ++r) {
          std::int64_t now = t0 + r;
          const auto c0 = __rdtsc();
          for (std::size_t i = 0; i < packets; ++i) {
            agent::OutPacket op;
            tagger->encapsulate(*key, policy, now + static_cast<std::int64_t>(i), pk[i & 63].data(), len, op);
            sink += op.len;
          }
          const auto c1 = __rdtsc();
          std::uint8_t mac[16];
          for (std::size_t i = 0; i < packets; ++i) {
            ossl.keyed(key->bytes(), macin[i & 63], mac);
            sink += mac[0];
          }
          const auto c2 = __rdtsc();
          for (std::size_t i = 0; i < packets; ++i) {
            ossl.prekeyed(macin[i & 63], mac);
            sink += mac[0];
          }
          const auto c3 = __rdtsc();
          ag.push_back(static_cast<double>(c1 - c0) / static_cast<double>(packets));
          kd.push_back(static_cast<double>(c2 - c1) / static_cast<double>(packets));
          pkd.push_back(static_cast<double>(c3 - c2) / static_cast<double>(packets));
        }
        const Stats a = stats(ag), k = stats(kd), p = stats(pkd);
        auto cell = [&](const Stats& s) {
          char b[64];
          std::snprintf(b, sizeof b, "%.0f [%.0f..%.0f] %.0f ns", s.median, s.min, s.max, s.median / hz * 1e9);
          return std::string(b);
        };
        std::printf("%-8s %-4s %5zu | %-30s | %-30s | %-30s | %.2fx %.2fx%s\n",
                    alg == crypto::Alg::aes256_cmac ? "AES-256" : "AES-128", cov == crypto::Coverage::full ? "FULL" : "HDR",
                    len, cell(a).c_str(), cell(k).c_str(), cell(p).c_str(), a.median / k.median, a.median / p.median,
                    sink == 0 ? " " : "");
      }
  if (failures) {
    std::fprintf(stderr, "agent_bench: %d tags differ from OpenSSL's CMAC of the MAC input\n", failures);
    return 1;
  }
  std::printf("cross-check: every tag equals OpenSSL's CMAC of its MAC input (256 tags)\n");
  return 0;
}
