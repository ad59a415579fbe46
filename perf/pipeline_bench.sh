#!/usr/bin/env bash
# Runs the pipeline benchmark, then dpdk-testpmd --forward-mode=io on two net_null ports with
# --record-core-cycles as the framework baseline, in the same script run.
# Usage: perf/pipeline_bench.sh [--build DIR] [--quick]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="$repo/build" quick=()
while (($#)); do
  case $1 in
    --build) build=$2; shift 2 ;;
    --quick) quick=(--quick); shift ;;
    *) echo "usage: $0 [--build DIR] [--quick]" >&2; exit 2 ;;
  esac
done
"$build/perf/pipeline_bench" "${quick[@]}"

secs=5; [[ ${#quick[@]} -gt 0 ]] && secs=2
"$repo/perf/testpmd_baseline.sh" "$secs"
