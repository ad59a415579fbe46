#!/usr/bin/env bash
# Builds every libFuzzer target and runs each for SECONDS (default 30). Exits non-zero if any
# target fails to build or finds a crash (the crashing input is kept under build-fuzz/artifacts).
#
#   tests/fuzz/run-fuzz.sh [SECONDS] [NAME...]     (names: run only these targets)
#
# A target is tests/fuzz/<name>_fuzz.cpp plus tests/fuzz/<name>.sources (one source path per line,
# relative to the repository root, compiled with it). Optional, per target:
#   <name>.deps       pkg-config modules (or raw -l/-L flags), one per line
#   <name>_seeds.cpp  a program run as `<name>_seeds OUT_DIR PCAP_DIR` to write seed inputs
# Include directories are every */include of the repository. The corpus grows across runs in
# build-fuzz/corpus/<name>.
set -euo pipefail

seconds=${1:-30}
shift || true
only=("$@")
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out="$root/build-fuzz"
cxx=${CXX_FUZZ:-clang++-14}
pcap_dir=${ZT_PCAP_DIR:-$root/../shared/testdata/pcaps}
common=(-std=c++2b -O1 -g -fno-omit-frame-pointer -fno-sanitize-recover=all)

includes=()
for d in "$root"/*/include; do includes+=(-I"$d"); done

# Lines of a list file without comments and blanks.
list() { [[ -f $1 ]] && sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$1" || true; }

# pkg-config flags for <name>.deps; headers of dependencies are system headers (no warnings).
dep_flags() {
  local kind=$1 deps=$2 line
  while read -r line; do
    [[ -z $line ]] && continue
    if [[ $line == -* ]]; then
      [[ $kind == libs ]] && echo "$line"
    elif [[ $kind == cflags ]]; then
      pkg-config --cflags "$line" | sed 's/-I/-isystem /g'
    else
      pkg-config --libs "$line"
    fi
  done < <(list "$deps")
}

mkdir -p "$out"
shopt -s nullglob
targets=("$root"/tests/fuzz/*_fuzz.cpp)
if ((${#targets[@]} == 0)); then
  echo "no fuzz targets under tests/fuzz" >&2
  exit 1
fi

failed=()
for src in "${targets[@]}"; do
  name=$(basename "$src" _fuzz.cpp)
  if ((${#only[@]})) && [[ " ${only[*]} " != *" $name "* ]]; then continue; fi
  dir="$root/tests/fuzz"
  if [[ ! -f $dir/$name.sources ]]; then
    echo "== $name: missing tests/fuzz/$name.sources" >&2
    failed+=("$name(no sources)")
    continue
  fi
  mapfile -t sources < <(list "$dir/$name.sources" | sed "s|^|$root/|")
  # shellcheck disable=SC2207
  cflags=($(dep_flags cflags "$dir/$name.deps"))
  # shellcheck disable=SC2207
  libs=($(dep_flags libs "$dir/$name.deps"))

  echo "== $name: building"
  if ! "$cxx" "${common[@]}" -fsanitize=fuzzer,address,undefined "${includes[@]}" "${cflags[@]}" \
      "$src" "${sources[@]}" -o "$out/${name}_fuzz" "${libs[@]}"; then
    failed+=("$name(build)")
    continue
  fi

  corpus="$out/corpus/$name"
  seeds="$out/seeds/$name"
  artifacts="$out/artifacts/$name"
  mkdir -p "$corpus" "$seeds" "$artifacts"
  if [[ -f $dir/${name}_seeds.cpp ]]; then
    rm -rf "$seeds" && mkdir -p "$seeds"
    if ! "$cxx" "${common[@]}" -fsanitize=address,undefined "${includes[@]}" "${cflags[@]}" \
        "$dir/${name}_seeds.cpp" "${sources[@]}" -o "$out/${name}_seeds" "${libs[@]}" ||
        ! "$out/${name}_seeds" "$seeds" "$pcap_dir"; then
      failed+=("$name(seeds)")
      continue
    fi
  fi

  echo "== $name: fuzzing for ${seconds}s (log: $out/$name.log)"
  rc=0
  "$out/${name}_fuzz" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" "$seeds" \
    >"$out/$name.log" 2>&1 || rc=$?
  grep -E '^(INFO: seed corpus|#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units)' \
    "$out/$name.log" || true
  if ((rc != 0)); then
    tail -n 40 "$out/$name.log" >&2
    echo "== $name: FAILED (exit $rc); crashing input in $artifacts/" >&2
    failed+=("$name")
  else
    echo "== $name: no crash"
  fi
done

if ((${#failed[@]})); then
  echo "fuzz failures: ${failed[*]}" >&2
  exit 1
fi
echo "all fuzz targets ran ${seconds}s without a crash"
