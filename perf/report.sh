#!/usr/bin/env bash
# The performance report: runs every benchmark of the project from an existing build (build/ by
# default; it builds nothing) and writes perf/REPORT.md with tables and PNG plots (gnuplot).
# Usage: perf/report.sh [--quick] [--build DIR] [--out DIR] [--only NAME,...]   (--help: details)
exec /usr/bin/python3 "$(dirname "${BASH_SOURCE[0]}")/report.py" "$@"
