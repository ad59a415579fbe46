#!/usr/bin/env bash
# The appliance's main job on its embedded default, from a fresh Debian 12 machine (as root):
# installs what is missing, builds, then runs the lab twice.
# 1. lab.sh demo: ztmanager serving a copy of the example policy, namespaces zone-a and zone-b
#    with ztgate (enrolled with the manager) inline on AF_PACKET veths; sends ping, curl and
#    iperf3 across it, edits the policy (a deny for curl :8080) and shows revision 2 enforced
#    within a second, checks ztgate's counters against the kernel's, and tears the lab down.
# 2. lab.sh demo-zt: the zero-trust demonstration: ztagents enrolled with the manager tag
#    frontend's and intruder's traffic; frontend reaches what its identity allows (GET /api/,
#    iperf3) and is refused the rest (L7 POST /admin, an explicit deny), intruder and an untagged
#    host are refused, forged tags are dropped, and a live policy edit cuts frontend's running
#    iperf3 (time from the edit printed); a pass/fail table with ztgate's counters.
# Exit 0 only if both passed.
# Usage: appliance/lab/run-lab.sh [--seconds N]   (demo's iperf3 duration, default 3)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
appliance/scripts/install-deps.sh
[[ -f build/build.ninja ]] || meson setup build >build.setup.log 2>&1 || { cat build.setup.log; exit 1; }
ninja -C build appliance/ztgate controlplane/ztmanager tools/ztagent/ztagent tools/ztgen/ztgen
appliance/lab/lab.sh demo --ztgate "$repo/build/appliance/ztgate" --ztmanager "$repo/build/controlplane/ztmanager" "$@"
exec appliance/lab/lab.sh demo-zt --ztgate "$repo/build/appliance/ztgate" --ztmanager "$repo/build/controlplane/ztmanager" \
     --ztagent "$repo/build/tools/ztagent/ztagent" --ztgen "$repo/build/tools/ztgen/ztgen"
