#!/usr/bin/env bash
# The framework baseline the dataplane benchmarks print beside their own figures:
# dpdk-testpmd --forward-mode=io between two net_null ports, one forwarding lcore, with
# --record-core-cycles. Prints testpmd's "CPU cycles/packet" line.
# Usage: perf/testpmd_baseline.sh [SECONDS]   (default 5)
set -euo pipefail
secs=${1:-5}
echo
echo "baseline: dpdk-testpmd io forwarding between two net_null ports, 1 forwarding lcore, ${secs} s"
# testpmd in a script stops when its stdin closes (DESIGN.md §6): feed it Enter after $secs.
out=$( (sleep "$secs"; echo) | stdbuf -oL dpdk-testpmd -l 0,1 --no-huge --no-shconf -m 512 --no-pci \
        --vdev net_null0 --vdev net_null1 --log-level=lib.*:error -- --forward-mode=io \
        --nb-cores=1 --total-num-mbufs=16384 --burst=32 --record-core-cycles 2>&1) \
  || { echo "$out" | tail -5 >&2; echo "testpmd failed" >&2; exit 1; }
line=$(grep -m1 'CPU cycles/packet' <<<"$out") || { echo "testpmd printed no cycles/packet" >&2; exit 1; }
echo "testpmd io (net_null):    $line"
