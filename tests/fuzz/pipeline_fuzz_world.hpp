// What pipeline_fuzz and pipeline_seeds share: the clock, the policy and the key material, so a
// tag minted by the seed program verifies in the fuzz target.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "zt/crypto/key_ring.hpp"
#include "zt/crypto/keys.hpp"
#include "zt/dataplane/snapshot.hpp"
#include "zt/rules/policy.hpp"
#include "zt/rules/snapshot.hpp"

namespace zt::fuzz {

// A fixed wall clock (ns), five minutes into a 15-minute key epoch.
inline constexpr std::int64_t kNow = (1'800'000'000LL + 300) * 1'000'000'000LL;
inline constexpr std::uint32_t kWeb = 1001;

// Default deny; only zone-b (v4 and v6) and the audit segment `rollout` can be reached.
inline const char* kPolicy = R"(
identities:
  - {id: 1001, name: web, labels: {app: web}}
  - {id: 1002, name: client, labels: {app: client}}
segments:
  - {name: zone-a, prefixes: [10.1.0.0/24, "fd00:1::/64"], labels: {zone: a}}
  - {name: zone-b, prefixes: [10.2.0.0/24, "fd00:2::/64"], labels: {zone: b}}
  - {name: rollout, prefixes: [10.3.0.0/24], labels: {zone: rollout}, mode: audit}
rules:
  - {id: 10, name: web-to-b, from: {labels: {app: web}}, to: {segments: [zone-b]}, proto: [tcp, udp], ports: [80, 443], action: allow, payload: hdr}
  - {id: 20, name: legacy-dns, from: {segments: [zone-a]}, to: {segments: [zone-b]}, proto: udp, ports: [53], action: allow}
  - {id: 30, name: no-telnet, from: {segments: [zone-a]}, to: {segments: [zone-b]}, proto: tcp, ports: [23], action: deny}
  - {id: 40, name: legacy-http, from: {segments: [zone-a]}, to: {segments: [zone-b]}, proto: tcp, ports: [8080], action: allow}
  - {id: 50, name: l7-web, from: {segments: [zone-a]}, to: {segments: [zone-b]}, proto: tcp, ports: [8000], action: allow, l7: {methods: [GET], paths: ["^/api/"], deny: ["\\.\\./"]}}
  - {id: 60, name: ping, from: {segments: [zone-a]}, to: {segments: [zone-b]}, proto: icmp, action: allow}
)";

inline std::vector<std::uint8_t> master() { return std::vector<std::uint8_t>(32, 0x42); }
inline crypto::EpochPolicy epoch_policy() { return {}; }  // 15-minute epochs from the Unix epoch
inline std::uint64_t epoch_now() {
  const auto p = epoch_policy();
  return static_cast<std::uint64_t>((kNow - p.origin_ns) / p.length_ns);
}

// Revision 2 of kPolicy, which pipeline_fuzz switches to and back: legacy-http (8080) now under
// L7 inspection (its running flows were not inspected: re-deciding cuts them), l7-web (8000)
// without it (its flows keep going), ping gone (ICMP flows revoked).
inline std::string policy_revision2() {
  std::string t = kPolicy;
  bool ok = true;
  const auto swap = [&t, &ok](const std::string& from, const std::string& to) {
    const auto at = t.find(from);
    if (at == std::string::npos) ok = false;  // kPolicy changed: say so (empty text fails to parse)
    else t.replace(at, from.size(), to);
  };
  swap("ports: [8080], action: allow}", "ports: [8080], action: allow, l7: {methods: [GET]}}");
  swap(R"(ports: [8000], action: allow, l7: {methods: [GET], paths: ["^/api/"], deny: ["\\.\\./"]}})",
       "ports: [8000], action: allow}");
  swap("  - {id: 60, name: ping, from: {segments: [zone-a]}, to: {segments: [zone-b]}, proto: icmp, action: allow}\n", "");
  return ok ? t : std::string("not: [a policy");
}

inline std::shared_ptr<const dp::Snapshot> pipeline_snapshot(std::uint64_t revision = 1) {
  auto p = rules::parse_policy({{"policy.yaml", revision == 1 ? std::string(kPolicy) : policy_revision2()}});
  if (!p) return nullptr;
  auto pol = rules::compile(*p, {.revision = revision});
  if (!pol) return nullptr;
  std::vector<crypto::EpochSecret> svs;
  for (auto e = epoch_now() - 1; e <= epoch_now() + 1; ++e)
    svs.push_back(*crypto::derive_epoch_secret(master(), "test", e));
  std::vector<std::uint32_t> ids;
  for (const auto& i : (*pol)->source().identities) ids.push_back(i.id);
  auto ring = crypto::KeyRing::build(epoch_policy(), svs, ids);
  if (!ring) return nullptr;
  auto s = std::make_shared<dp::Snapshot>();
  s->policy = *pol;
  s->keys = *ring;
  return s;
}

}  // namespace zt::fuzz
