// Identity-tag verification cost (issues 3 and 5): bursts of 32 tags with a distinct identity per
// lane through zt::crypto::Verifier twice — as configured by default (short MAC inputs through
// ztgate's own multi-lane AES-NI CMAC, crypto/README.md "Own AES-NI CMAC") and with IPsec-MB's
// multi-buffer CMAC for everything (aesni_max_len = 0) — beside OpenSSL's one-at-a-time CMAC on the
// same tags in the same process, for HDR and FULL coverage, 64/512/1500-byte inner packets (and
// more sizes with --sizes), AES-128 and AES-256. Then the replay filter's insert+check cost at
// 15 Mpps sizing.
//
// Prints ns and TSC cycles per tag: median [min, max] over the runs, and the ratios of medians
// (OpenSSL / verifier, IPsec-MB only / verifier).
// --shared-key: every lane of every burst claims the same identity (one key, as a forged-tag
// flood for one identity, or established flows of one workload); --kernel picks the verifier's
// own CMAC kernel (auto, aesni, vaes256, vaes512; crypto/README.md "VAES kernel").
// Usage: crypto_bench [--quick] [--runs N] [--arch auto|sse|avx|avx2|avx512] [--only TEXT]
//                     [--sizes N,N,...] [--no-replay] [--path all|default|mb|openssl]
//                     [--aesni-max N] [--kernel K] [--shared-key]
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <x86intrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "fixtures.hpp"
#include "zt/crypto/replay_filter.hpp"
#include "zt/crypto/verifier.hpp"

using namespace zt::crypto;

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

// OpenSSL baseline: one pre-keyed CMAC context per (identity, alg), re-initialised per tag (no
// key schedule per tag), the same decode and pre-checks as the Verifier, constant-time compare.
struct OpenSslVerifier {
  EVP_MAC* mac = nullptr;
  std::vector<EVP_MAC_CTX*> ctx;  // index (id - 1000) * 2 + alg
  ~OpenSslVerifier() {
    for (auto* c : ctx) EVP_MAC_CTX_free(c);
    EVP_MAC_free(mac);
  }
  void init(const test::Domain& dom, std::uint64_t epoch) {
    mac = EVP_MAC_fetch(nullptr, OSSL_MAC_NAME_CMAC, nullptr);
    for (std::uint32_t id : dom.ids)
      for (Alg a : {Alg::aes128_cmac, Alg::aes256_cmac}) {
        auto k = dom.key(id, epoch, a);
        char c128[] = "AES-128-CBC", c256[] = "AES-256-CBC";
        OSSL_PARAM p[] = {OSSL_PARAM_construct_utf8_string(
                              OSSL_MAC_PARAM_CIPHER, a == Alg::aes128_cmac ? c128 : c256, 0),
                          OSSL_PARAM_construct_end()};
        EVP_MAC_CTX* c = EVP_MAC_CTX_new(mac);
        test::require(EVP_MAC_init(c, k.bytes().data(), k.bytes().size(), p) == 1, "EVP_MAC_init");
        ctx.push_back(c);
      }
  }
  std::size_t verify(const KeyRing& ring, std::int64_t now, std::span<const VerifyInput> in) {
    std::size_t ok = 0;
    for (const VerifyInput& v : in) {
      Tag t;
      if (decode_tag_body(v.tag, t) != TagReject::none) continue;
      const CachedKey* key = nullptr;
      std::uint64_t epoch = 0;
      if (ring.precheck(t.fields, v.hdr_allowed, now, key, epoch) != TagReject::none) continue;
      EVP_MAC_CTX* c = ctx[(t.fields.identity - 1000) * 2 + static_cast<std::size_t>(t.fields.alg)];
      std::array<std::uint8_t, kMaxPseudoHeaderLen> ph;
      const std::size_t phn = write_pseudo_header(v.inner, ph);
      const std::size_t l4n = covered_l4_len(t.fields.coverage, v.inner.l4.size());
      std::uint8_t out[16];
      std::size_t n = 0;
      if (EVP_MAC_init(c, nullptr, 0, nullptr) != 1 || EVP_MAC_update(c, v.tag.data(), 16) != 1 ||
          EVP_MAC_update(c, ph.data(), phn) != 1 ||
          (l4n && EVP_MAC_update(c, v.inner.l4.data(), l4n) != 1) ||
          EVP_MAC_final(c, out, &n, 16) != 1)
        continue;
      ok += CRYPTO_memcmp(out, v.tag.data() + 16, 16) == 0;
    }
    return ok;
  }
};

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  int runs = 7;
  std::string arch = "auto";
  std::string only;
  bool no_replay = false;
  std::size_t aesni_max = kDefaultAesniMaxLen;
  std::string kernel = "auto";
  bool shared_key = false;
  std::string path = "all";  // which columns to time: all, default, mb, openssl (for perf record)
  std::vector<std::size_t> sizes = {64, 512, 1500};
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--quick") quick = true;
    else if (a == "--runs" && i + 1 < argc) runs = std::max(1, std::atoi(argv[++i]));
    else if (a == "--arch" && i + 1 < argc) arch = argv[++i];
    else if (a == "--only" && i + 1 < argc) only = argv[++i];
    else if (a == "--no-replay") no_replay = true;
    else if (a == "--shared-key") shared_key = true;
    else if (a == "--kernel" && i + 1 < argc) kernel = argv[++i];
    else if (a == "--path" && i + 1 < argc) path = argv[++i];
    else if (a == "--aesni-max" && i + 1 < argc) aesni_max = std::strtoul(argv[++i], nullptr, 10);
    else if (a == "--sizes" && i + 1 < argc) {
      sizes.clear();
      for (const char* p = argv[++i]; *p;) {
        char* end = nullptr;
        const long v = std::strtol(p, &end, 10);
        if (end == p || v < 28 || v > 9000) {
          std::fprintf(stderr, "--sizes: inner packet sizes 28..9000, comma-separated\n");
          return 2;
        }
        sizes.push_back(static_cast<std::size_t>(v));
        p = *end == ',' ? end + 1 : end;
      }
    } else {
      std::fprintf(stderr,
                   "usage: %s [--quick] [--runs N] [--arch auto|sse|avx|avx2|avx512] [--only TEXT]\n"
                   "          [--sizes N,N,...] [--no-replay] [--path all|default|mb|openssl]\n"
                   "          [--aesni-max N] [--kernel auto|aesni|vaes256|vaes512] [--shared-key]\n"
                   "  --only TEXT   only the rows whose label contains TEXT, e.g. \"AES-256 HDR\"\n"
                   "  --sizes       inner packet sizes in bytes (default 64,512,1500)\n"
                   "  --no-replay   skip the replay filter part\n"
                   "  --path P      time only that column (the others print 0), e.g. under perf record\n"
                   "  --aesni-max N the verifier's AES-NI cut-off (VerifierConfig::aesni_max_len,\n"
                   "                MAC input bytes; default %zu; 0 = IPsec-MB only)\n"
                   "  --kernel K    the verifier's own CMAC kernel (VerifierConfig::kernel)\n"
                   "  --shared-key  one identity (one key) in every lane instead of 32 distinct\n",
                   argv[0], kDefaultAesniMaxLen);
      return 2;
    }
  }
  if (quick) runs = std::min(runs, 5);
  const std::size_t pool = 512;                       // tagged packets, 16 bursts
  const std::size_t reps = quick ? 2 : 200;           // passes over the pool per run

  const double hz = tsc_hz();
  VerifierConfig vc;
  vc.arch = arch;
  vc.aesni_max_len = aesni_max;
  vc.kernel = kernel;
  auto vr = Verifier::create(vc);
  vc.aesni_max_len = 0;
  auto vm = Verifier::create(vc);
  if (!vr || !vm) {
    std::fprintf(stderr, "crypto_bench: %s\n", (!vr ? vr : vm).error().message.c_str());
    return 1;
  }
  Verifier& verifier = *vr;
  Verifier& verifier_mb = *vm;
  auto minter = Minter::create();
  test::Domain dom(pool);  // one identity per pooled packet: 32 distinct identities per burst
  constexpr std::uint64_t kEpoch = 1000;
  auto ring = dom.ring(kEpoch);
  const std::int64_t now = dom.at(kEpoch, 60 * kNsPerSec);
  OpenSslVerifier ossl;
  ossl.init(dom, kEpoch);

  std::printf("crypto_bench: verifier %s (\"mb\": %s), TSC %.3f GHz, %d runs x %zu tags, %s%s\n",
              std::string(verifier.arch()).c_str(), std::string(verifier_mb.arch()).c_str(),
              hz / 1e9, runs, pool * reps,
              shared_key ? "one identity in every lane" : "a distinct identity per lane",
              quick ? " (--quick: figures are not meaningful)" : "");
  // Columns 1-3 keep the layout perf/report.py parses (verifier as configured, OpenSSL, ratio);
  // the IPsec-MB-only verifier and its ratio to the default follow.
  std::printf("%-8s %-4s %5s | %-28s | %-28s | %-6s | %-28s | %s\n", "alg", "cov", "bytes",
              "verifier burst ns/tag (cyc)", "OpenSSL 1-by-1 ns/tag (cyc)", "ratio",
              "IPsec-MB only ns/tag (cyc)", "mb/verifier");
  std::printf("%-8s %-4s %5s | %-28s | %-28s | %-6s | %-28s |\n", "", "", "", "median [min..max]",
              "median [min..max]", "", "median [min..max]");

  bool all_ok = true;
  for (Alg alg : {Alg::aes128_cmac, Alg::aes256_cmac})
    for (Coverage cov : {Coverage::hdr, Coverage::full})
      for (std::size_t bytes : sizes) {
        char label[64];
        std::snprintf(label, sizeof label, "%-8s %-4s %5zu", alg == Alg::aes128_cmac ? "AES-128" : "AES-256",
                      cov == Coverage::hdr ? "HDR" : "FULL", bytes);
        std::string squeezed;  // the label with single spaces: --only "AES-256 HDR 64"
        for (char ch : std::string_view(label))
          if (!(ch == ' ' && !squeezed.empty() && squeezed.back() == ' ')) squeezed += ch;
        if (!only.empty() && squeezed.find(only) == std::string::npos) continue;
        std::vector<test::Tagged> tagged;
        tagged.reserve(pool);
        for (std::size_t i = 0; i < pool; ++i)
          tagged.push_back(test::mint_packet(*minter, dom.key(dom.ids[shared_key ? 0 : i], kEpoch, alg), now,
                                             dom.policy, test::ipv4_packet(17, bytes - 28,
                                             static_cast<std::uint8_t>(i)), cov,
                                             static_cast<std::uint16_t>(i)));
        std::vector<VerifyInput> in;
        for (auto& t : tagged) in.push_back(t.input());
        std::vector<VerifyResult> out(kMaxVerifyBurst);

        std::vector<double> own_cyc, mb_cyc, ossl_cyc;
        auto burst_run = [&](Verifier& v) {
          if (path != "all" && path != (&v == &verifier ? "default" : "mb")) return 0.0;
          std::size_t accepted = 0;
          const auto c0 = __rdtsc();
          for (std::size_t rep = 0; rep < reps; ++rep)
            for (std::size_t i = 0; i < pool; i += kMaxVerifyBurst) {
              v.verify_burst(*ring, now, std::span(in).subspan(i, kMaxVerifyBurst), out);
              for (const auto& o : out) accepted += o.reason == TagReject::none;
            }
          const auto c1 = __rdtsc();
          if (accepted != pool * reps) all_ok = false;
          return static_cast<double>(c1 - c0) / static_cast<double>(pool * reps);
        };
        for (int r = 0; r < runs; ++r) {
          own_cyc.push_back(burst_run(verifier));
          mb_cyc.push_back(burst_run(verifier_mb));
          const auto c1 = __rdtsc();
          std::size_t ok2 = 0;
          const bool do_ossl = path == "all" || path == "openssl";
          if (do_ossl)
            for (std::size_t rep = 0; rep < reps; ++rep) ok2 += ossl.verify(*ring, now, in);
          const auto c2 = __rdtsc();
          if (do_ossl && ok2 != pool * reps) all_ok = false;
          ossl_cyc.push_back(static_cast<double>(c2 - c1) / static_cast<double>(pool * reps));
        }
        const Stats d = stats(own_cyc), m = stats(mb_cyc), o = stats(ossl_cyc);
        auto ns = [&](double c) { return c * 1e9 / hz; };
        char a[64], b[64], c[64];
        std::snprintf(a, sizeof a, "%.1f [%.1f..%.1f] (%.0f)", ns(d.median), ns(d.min), ns(d.max), d.median);
        std::snprintf(b, sizeof b, "%.1f [%.1f..%.1f] (%.0f)", ns(m.median), ns(m.min), ns(m.max), m.median);
        std::snprintf(c, sizeof c, "%.1f [%.1f..%.1f] (%.0f)", ns(o.median), ns(o.min), ns(o.max), o.median);
        std::printf("%s | %-28s | %-28s | %5.2fx | %-28s | %.2fx\n", label, a, c,
                    o.median / d.median, b, m.median / d.median);
      }
  if (!all_ok) {
    std::fprintf(stderr, "crypto_bench: a tag failed to verify; figures are invalid\n");
    return 1;
  }

  if (no_replay) return 0;
  // Replay filter at 15 Mpps per lcore, 1 s window, false drops <= 1e-4.
  auto rf = ReplayFilter::create(ReplayFilterConfig{15e6, kNsPerSec, 1e-4});
  if (!rf) {
    std::fprintf(stderr, "crypto_bench: %s\n", rf.error().message.c_str());
    return 1;
  }
  const auto& sz = rf->sizing();
  std::printf("\nreplay filter: 3 x %zu blocks (%zu MiB), k=%u, false-drop bound %.2g\n",
              sz.blocks_per_filter, sz.bytes >> 20, sz.k, sz.false_drop_rate);
  const std::size_t n_ops = quick ? 20'000 : 2'000'000;
  std::vector<std::array<std::uint8_t, 16>> macs(n_ops);
  std::mt19937_64 rng(7);
  for (auto& m : macs)
    for (auto& b : m) b = static_cast<std::uint8_t>(rng());
  // Warm the filters to a steady state: two full periods already recorded.
  const std::int64_t t0 = 1'700'000'000LL * kNsPerSec;
  {
    const std::size_t warm = quick ? 20'000 : 15'000'000;
    std::array<std::uint8_t, 16> m{};
    for (std::size_t i = 0; i < 2 * warm; ++i) {
      for (auto& b : m) b = static_cast<std::uint8_t>(rng());
      rf->check_and_insert(m, t0 + (i < warm ? 0 : kNsPerSec));
    }
  }
  std::vector<double> seq, batched;
  std::size_t dups = 0;
  for (int r = 0; r < runs; ++r) {
    // Fresh MACs every run (untimed), so no run measures the cheaper duplicate path.
    const std::uint64_t salt = rng();
    for (auto& m : macs)
      for (int k = 0; k < 8; ++k) m[k] ^= static_cast<std::uint8_t>(salt >> (8 * k));
    const std::int64_t now2 = t0 + 2 * kNsPerSec + r;  // third period: checks touch all 3 filters
    const auto c0 = __rdtsc();
    for (std::size_t i = 0; i < n_ops / 2; ++i) dups += rf->check_and_insert(macs[i], now2);
    const auto c1 = __rdtsc();
    for (std::size_t i = n_ops / 2; i < n_ops; i += 32) {
      const std::size_t e = std::min(n_ops, i + 32);
      for (std::size_t j = i; j < e; ++j) rf->prefetch(macs[j].data());
      for (std::size_t j = i; j < e; ++j) dups += rf->check_and_insert(macs[j], now2);
    }
    const auto c2 = __rdtsc();
    seq.push_back(static_cast<double>(c1 - c0) / static_cast<double>(n_ops / 2));
    batched.push_back(static_cast<double>(c2 - c1) / static_cast<double>(n_ops - n_ops / 2));
  }
  const Stats s = stats(seq), b = stats(batched);
  std::printf("replay insert+check, one at a time: %.1f cycles [%.1f..%.1f] = %.1f ns\n", s.median,
              s.min, s.max, s.median * 1e9 / hz);
  std::printf("replay insert+check, 32 prefetched: %.1f cycles [%.1f..%.1f] = %.1f ns\n", b.median,
              b.min, b.max, b.median * 1e9 / hz);
  std::printf("fresh MACs taken for replays (false drops): %zu of %zu\n", dups, n_ops * runs);
  return 0;
}
