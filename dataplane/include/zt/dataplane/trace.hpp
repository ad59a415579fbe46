// Per-packet trace records (dataplane/README.md "Control API"): while a worker's trace budget
// lasts, its pipeline writes one record per packet it decides to that worker's trace ring (an
// SPSC rte_ring of these records, created by the control side). A full ring drops the record
// and counts it (`WorkerCounters::trace_lost`); the worker never waits for the reader.
#pragma once

#include <array>
#include <cstdint>
#include <type_traits>

#include "zt/dataplane/counters.hpp"
#include "zt/rules/drop_reason.hpp"

namespace zt::dp {

// What happened to the packet on its way through the pipeline (TraceRecord::steps bits).
enum TraceStep : std::uint16_t {
  kStepParsed = 1 << 0,        // parsed whole (else `drop` is the parser's reason)
  kStepTagged = 1 << 1,        // carried an identity tag
  kStepFlowFound = 1 << 2,     // belonged to an established flow
  kStepClassified = 1 << 3,    // a new-flow policy decision was made (`disposition`)
  kStepMacChecked = 1 << 4,    // its tag went through MAC + replay verification
  kStepMacOk = 1 << 5,         // ... and passed
  kStepAdmitted = 1 << 6,      // opened a new flow
  kStepReclassified = 1 << 7,  // its flow was decided again under a new policy revision
  kStepRevoked = 1 << 8,       // ... and that decision cut the flow
  kStepForwarded = 1 << 9,     // handed to transmit (else `drop` says why not)
};

struct TraceRecord {
  std::uint64_t seq = 0;       // per worker, from 1: a gap means records were lost
  std::uint64_t tsc = 0;       // the burst's clock
  std::uint64_t revision = 0;  // policy revision that decided the packet (0: none loaded)
  std::array<std::uint8_t, 16> src{}, dst{};  // as sent (inner packet of a tagged frame); IPv4
                                              // in the first 4 bytes
  std::uint32_t identity = 0;  // claimed / resolved identity, or the flow's
  std::uint32_t rule_id = 0;   // the rule that decided it (valid when `has_rule`)
  std::uint16_t sport = 0, dport = 0;
  std::uint16_t drop = 0;      // rules::DropReason; 0 = forwarded
  std::uint16_t steps = 0;     // TraceStep bits
  std::uint16_t length = 0;    // frame length as received
  std::uint8_t port = 0;       // port index it arrived on (0 = zone A side)
  std::uint8_t proto = 0;
  std::uint8_t version = 0;    // 4, 6, or 0 (not IP)
  IdentityClass cls = IdentityClass::none;
  std::uint8_t disposition = 0;  // rules::Disposition of the new-flow decision (kStepClassified)
  std::uint8_t has_rule = 0;

  rules::DropReason drop_reason() const noexcept { return static_cast<rules::DropReason>(drop); }
  bool forwarded() const noexcept { return (steps & kStepForwarded) != 0; }
};
static_assert(sizeof(TraceRecord) % 8 == 0 && std::is_trivially_copyable_v<TraceRecord>,
              "rte_ring elements are copied as 4-byte words");

}  // namespace zt::dp
