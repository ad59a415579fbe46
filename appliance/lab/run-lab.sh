#!/usr/bin/env bash
# The appliance's main job on its embedded default, from a fresh Debian 12 machine (as root):
# installs what is missing, builds, then runs the lab — ztmanager serving a copy of the example
# policy, namespaces zone-a and zone-b with ztgate (enrolled with the manager) inline on
# AF_PACKET veths — sends ping, curl and iperf3 across it, edits the policy (a deny for curl
# :8080) and shows revision 2 enforced within a second, checks ztgate's counters against the
# kernel's, and tears the lab down.
# Usage: appliance/lab/run-lab.sh [--seconds N]   (iperf3 duration, default 3)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
appliance/scripts/install-deps.sh
[[ -f build/build.ninja ]] || meson setup build >build.setup.log 2>&1 || { cat build.setup.log; exit 1; }
ninja -C build appliance/ztgate controlplane/ztmanager
exec appliance/lab/lab.sh demo --ztgate "$repo/build/appliance/ztgate" --ztmanager "$repo/build/controlplane/ztmanager" "$@"
