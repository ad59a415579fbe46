// Policy deltas (controlplane/README.md "Deltas"): what changed between two consecutive
// published revisions, in identities (by id), segments (by name) and rules (by id).
//
// The signed full bundle stays the unit of enforcement. A delta is for people (the appliance
// logs it, the stats JSON shows it) and for cross-checking: the manager computes it from the two
// parsed policies and signs it; the appliance computes it again from the two full policies it
// holds and refuses the push when they disagree.
//
//   pb::PolicyDelta d = compute_delta(base_policy, 2, next_policy, 3);           // manager
//   if (auto ok = check_delta(d, base_policy, 2, next_policy, 3); !ok) nack(ok.error());  // appliance
//   log(describe_delta(d, base_policy));  // "delta from 2: +identity frontend-2 (2003), ~segment zone-b, rules +1 -0 ~0"
//
// Control-path code: allocates, O(n log n) in the size of the policies.
#pragma once

#include <cstdint>
#include <expected>
#include <string>

#include "zt/controlplane/bundle.hpp"
#include "zt/rules/policy.hpp"

namespace zt::cp {

// The delta from `base` (revision `base_revision`) to `next` (revision `revision`), entries
// sorted by key. Moving a definition within or between files is not a change.
pb::PolicyDelta compute_delta(const rules::Policy& base, std::uint64_t base_revision, const rules::Policy& next,
                              std::uint64_t revision);

// Succeeds when `delta` says exactly what compute_delta(base, next) says (order aside). Otherwise
// a NACK_CODE_DELTA_MISMATCH refusal whose message says what the delta claims and what the two
// bundles show, and whose resource names the first offending entry ("delta.identities[2003]",
// "delta.segments[zone-b]", "delta.rules[200]", or a header field such as "delta.source_digest").
std::expected<void, Refusal> check_delta(const pb::PolicyDelta& delta, const rules::Policy& base,
                                         std::uint64_t base_revision, const rules::Policy& next,
                                         std::uint64_t revision);

// One line for logs: "delta from 2: +identity frontend-2 (2003), -identity web-a (1001),
// ~segment zone-b, rules +1 -0 ~0" ('+' new, '~' changed, '-' removed; `base` tells new from
// changed and names removed identities).
std::string describe_delta(const pb::PolicyDelta& delta, const rules::Policy& base);

}  // namespace zt::cp
