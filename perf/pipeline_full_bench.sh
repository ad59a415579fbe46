#!/usr/bin/env bash
# Runs the full-pipeline benchmark (Pipeline::run with a 1M-flow table, tagged traffic, floods),
# then dpdk-testpmd --forward-mode=io on two net_null ports with --record-core-cycles as the
# framework baseline, in the same script run.
# Usage: perf/pipeline_full_bench.sh [--build DIR] [--quick] [-- extra pipeline_full_bench args]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="$repo/build" quick=() extra=()
while (($#)); do
  case $1 in
    --build) build=$2; shift 2 ;;
    --quick) quick=(--quick); shift ;;
    --) shift; extra=("$@"); break ;;
    *) echo "usage: $0 [--build DIR] [--quick] [-- ARGS...]" >&2; exit 2 ;;
  esac
done
"$build/perf/pipeline_full_bench" "${quick[@]}" "${extra[@]}"

secs=5; [[ ${#quick[@]} -gt 0 ]] && secs=2
echo
echo "baseline: dpdk-testpmd io forwarding between two net_null ports, 1 forwarding lcore, ${secs} s"
# testpmd in a script stops when its stdin closes (DESIGN.md §6): feed it Enter after $secs.
out=$( (sleep "$secs"; echo) | stdbuf -oL dpdk-testpmd -l 0,1 --no-huge --no-shconf -m 512 --no-pci \
        --vdev net_null0 --vdev net_null1 --log-level=lib.*:error -- --forward-mode=io \
        --nb-cores=1 --total-num-mbufs=16384 --burst=32 --record-core-cycles 2>&1) \
  || { echo "$out" | tail -5 >&2; echo "testpmd failed" >&2; exit 1; }
line=$(grep -m1 'CPU cycles/packet' <<<"$out") || { echo "testpmd printed no cycles/packet" >&2; exit 1; }
echo "testpmd io (net_null):    $line"
