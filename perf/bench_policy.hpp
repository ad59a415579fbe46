// The policy pipeline_full_bench builds its scenarios on (its floods: udp/9999 into zone-b), also
// timed key by key by rules_bench: one definition, so the two benchmarks measure the same policy.
#pragma once

namespace zt::perf {

inline constexpr const char* kPipelineBenchPolicy = R"(
identities:
  - {id: 1001, name: web, labels: {app: web}}
  - {id: 1002, name: client, labels: {app: client}}
segments:
  - {name: zone-a, prefixes: [10.1.0.0/16], labels: {zone: a}}
  - {name: zone-b, prefixes: [10.2.0.0/16], labels: {zone: b}}
rules:
  - {id: 10, name: quic-to-b, from: {labels: {app: web}}, to: {segments: [zone-b]}, proto: udp, ports: [443], action: allow, payload: hdr}
  - {id: 20, name: web-to-b, from: {labels: {app: web}}, to: {segments: [zone-b]}, proto: tcp, ports: [80, 443], action: allow}
  - {id: 30, name: no-telnet, from: any, to: {segments: [zone-b]}, proto: tcp, ports: [23], action: deny}
)";

}  // namespace zt::perf
