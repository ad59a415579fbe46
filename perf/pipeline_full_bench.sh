#!/usr/bin/env bash
# Runs the full-pipeline benchmark (Pipeline::run with a 1M-flow table, tagged traffic, floods),
# then dpdk-testpmd --forward-mode=io on two net_null ports with --record-core-cycles as the
# framework baseline, in the same script run.
# Usage: perf/pipeline_full_bench.sh [--build DIR] [--quick] [--latency] [-- extra pipeline_full_bench args]
#   --latency: also per-packet latency percentiles through the pipeline (pipeline_full_bench --help)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="$repo/build" quick=() latency=() extra=()
while (($#)); do
  case $1 in
    --build) build=$2; shift 2 ;;
    --quick) quick=(--quick); shift ;;
    --latency) latency=(--latency); shift ;;
    --) shift; extra=("$@"); break ;;
    *) echo "usage: $0 [--build DIR] [--quick] [--latency] [-- ARGS...]" >&2; exit 2 ;;
  esac
done
"$build/perf/pipeline_full_bench" "${quick[@]}" "${latency[@]}" "${extra[@]}"

secs=5; [[ ${#quick[@]} -gt 0 ]] && secs=2
"$repo/perf/testpmd_baseline.sh" "$secs"
