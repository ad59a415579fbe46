// Flow-log records (DESIGN.md §5 "Flow logs as JSON lines for deny and audit verdicts").
//
// A worker writes one record per new-flow decision that an operator must be able to audit: a
// policy deny (including default deny and L7 deny of a new flow) and an audit admission (a
// would-deny forwarded in an `audit` segment). Records go to the worker's flow-log ring (an SPSC
// rte_ring of these records, created by the control side), rate-limited per worker by a token
// bucket; a full ring or an empty bucket drops the record and counts it
// (`WorkerCounters::flow_logs_suppressed`), the worker never waits for the reader. The control
// side drains the rings (`Control::drain_flow_logs`) and writes JSON lines (appliance/).
#pragma once

#include <array>
#include <cstdint>
#include <type_traits>

namespace zt::dp {

enum class FlowLogKind : std::uint8_t {
  deny = 0,   // the flow was refused (`reason` says why, `rule_id` by which rule)
  audit = 1,  // a would-deny admitted in an audit segment (`rule_id`: the rule that would deny)
};

struct FlowLogRecord {
  std::int64_t time_ns = 0;    // wall clock of the burst (BurstClock::now_ns)
  std::uint64_t revision = 0;  // policy revision that decided it
  std::array<std::uint8_t, 16> src{}, dst{};  // initiator, responder; IPv4 in the first 4 bytes
  std::uint32_t identity = 0;  // source identity (claimed by the tag, or resolved when untagged)
  std::uint32_t rule_id = 0;   // valid when `has_rule`
  std::uint16_t sport = 0, dport = 0;
  std::uint16_t reason = 0;    // rules::DropReason (0 = none: an audit admission)
  std::uint8_t proto = 0;
  std::uint8_t version = 0;    // 4 or 6
  FlowLogKind kind = FlowLogKind::deny;
  std::uint8_t has_rule = 0;
  std::uint8_t worker = 0;     // filled in by the worker
  std::uint8_t pad = 0;
};
static_assert(sizeof(FlowLogRecord) % 8 == 0 && std::is_trivially_copyable_v<FlowLogRecord>,
              "rte_ring elements are copied as 4-byte words");

}  // namespace zt::dp
