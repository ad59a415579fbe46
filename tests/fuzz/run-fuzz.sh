#!/usr/bin/env bash
# Builds every libFuzzer target and runs each for SECONDS (default 30). Exits non-zero if any
# target fails to build or finds a crash (the crashing input is kept under build-fuzz/artifacts).
#
#   tests/fuzz/run-fuzz.sh [SECONDS] [NAME...]     (names: run only these targets)
#
# CI runs it with 20 s per target (tests/run-all.sh); a longer hunt is, for example,
#   tests/fuzz/run-fuzz.sh 3600 pipeline          (one target, one hour)
#   FUZZ_JOBS=2 tests/fuzz/run-fuzz.sh 1800       (each target on 2 processes)
#   FUZZ_PARALLEL=2 tests/fuzz/run-fuzz.sh 20     (two targets at a time: CI, one per core)
#
# A target is tests/fuzz/<name>_fuzz.cpp plus tests/fuzz/<name>.sources (one source path per line,
# relative to the repository root, compiled with it; a `.proto` line is run through protoc into
# build-fuzz/gen and its .pb.cc compiled). Optional, per target:
#   <name>.deps       pkg-config modules, raw -l/-L flags, or -IDIR (relative to the root), one a line
#   <name>_seeds.cpp  a program run as `<name>_seeds OUT_DIR PCAP_DIR` to write seed inputs
#   regressions/<name>/  inputs that once crashed (or nearly did) the target: run first, every time
# Include directories are every */include of the repository. The corpus grows across runs in
# build-fuzz/corpus/<name>.
#
# Compiler: clang++-16 (CXX_FUZZ overrides). libstdc++ 12's <expected> wants __cpp_concepts
# >= 202002L, which clang 16 implements (P0848) but does not announce; we announce it for it.
# Every source file is compiled once into build-fuzz/obj and shared by the targets that list it;
# build-fuzz/build.ninja (generated here) rebuilds only what changed.
set -euo pipefail

seconds=${1:-30}
shift || true
only=("$@")
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dir="$root/tests/fuzz"
out="$root/build-fuzz"
cxx=${CXX_FUZZ:-clang++-16}
fuzz_jobs=${FUZZ_JOBS:-1}
fuzz_parallel=${FUZZ_PARALLEL:-1}
pcap_dir=${ZT_PCAP_DIR:-$root/../shared/testdata/pcaps}
common="-std=c++2b -Wno-macro-redefined -D__cpp_concepts=202002L -O1 -gline-tables-only \
-fno-omit-frame-pointer -fno-sanitize-recover=all"

if ! command -v "$cxx" >/dev/null; then
  echo "run-fuzz: $cxx not found; install clang-16 and libclang-rt-16-dev" \
       "(appliance/scripts/install-deps.sh) or set CXX_FUZZ" >&2
  exit 1
fi

# Lines of a list file without comments and blanks.
list() { [[ -f $1 ]] && sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$1" || true; }

# The sources of a target: lines of <name>.sources, globs expanded (relative to the repository
# root), a line "!PATTERN" removes what it matches from the lines before it.
sources_of() {
  local line f out=()
  while read -r line; do
    if [[ $line == '!'* ]]; then
      local keep=()
      for f in "${out[@]}"; do [[ $f == ${line#!} ]] || keep+=("$f"); done
      out=("${keep[@]}")
    elif [[ $line == *[*?[]* ]]; then
      while read -r f; do out+=("${f#"$root"/}"); done < <(compgen -G "$root/$line" | sort)
    else
      out+=("$line")
    fi
  done < <(list "$1")
  ((${#out[@]})) && printf '%s\n' "${out[@]}"
  return 0
}

# pkg-config flags for a .deps file; headers of dependencies are system headers (no warnings).
dep_flags() {
  local kind=$1 deps=$2 line
  while read -r line; do
    [[ -z $line ]] && continue
    if [[ $line == -I* ]]; then  # an include directory, relative to the repository root
      [[ $kind == cflags ]] && echo "-I$root/${line#-I}"
    elif [[ $line == -* ]]; then
      [[ $kind == libs ]] && echo "$line"
    elif [[ $kind == cflags ]]; then
      pkg-config --cflags "$line" | sed 's/-I/-isystem /g'
    else
      pkg-config --libs "$line"
    fi
  done < <(list "$deps")
  return 0
}

obj_of() { echo "obj/${1%.*}.o"; }  # repository-relative source -> object under build-fuzz

mkdir -p "$out/gen"
shopt -s nullglob
all=() targets=()
for src in "$dir"/*_fuzz.cpp; do
  name=$(basename "$src" _fuzz.cpp)
  all+=("$name")
  if ((${#only[@]})) && [[ " ${only[*]} " != *" $name "* ]]; then continue; fi
  targets+=("$name")
done
if ((${#targets[@]} == 0)); then
  echo "no fuzz targets under tests/fuzz${only:+ named ${only[*]}}" >&2
  exit 1
fi

# One ninja file for all targets (the same flags whatever is selected, so objects stay valid):
# objects shared, header dependencies tracked; only the selected targets are built.
all_cflags="" protos=()
for name in "${all[@]}"; do
  all_cflags+=" $(dep_flags cflags "$dir/$name.deps" | tr '\n' ' ')"
  while read -r s; do [[ $s == *.proto ]] && protos+=("$s"); done < <(sources_of "$dir/$name.sources")
done
includes="-I$out/gen"
for d in "$root"/*/include; do includes+=" -I$d"; done
{
  echo "cxx = $cxx"
  echo "cflags = $common $includes $all_cflags"
  echo "rule cxx"
  echo "  command = \$cxx -MD -MF \$out.d \$cflags \$san -c \$in -o \$out"
  echo "  depfile = \$out.d"
  echo "  deps = gcc"
  echo "  description = CXX \$out"
  echo "rule link"
  echo "  command = \$cxx \$san \$in -o \$out \$libs"
  echo "  description = LINK \$out"
  echo "rule protoc"
  echo "  command = protoc --proto_path=\$pdir --cpp_out=$out/gen \$in"
  echo "  description = PROTOC \$in"
  gen=()
  for p in $(printf '%s\n' "${protos[@]}" | sort -u); do
    b=$(basename "$p" .proto)
    echo "build gen/$b.pb.cc gen/$b.pb.h: protoc $root/$p"
    echo "  pdir = $root/$(dirname "$p")"
    gen+=("gen/$b.pb.h")
  done
  order=${gen[*]:+ || ${gen[*]}}
  declare -A seen=()
  lib_san="-fsanitize=fuzzer-no-link,address,undefined"
  for name in "${all[@]}"; do
    objs=()
    while read -r s; do
      if [[ $s == *.proto ]]; then
        s="build-fuzz/gen/$(basename "$s" .proto).pb.cc"
        o="obj/gen/$(basename "$s" .cc).o"
        in="gen/$(basename "$s")"
      else
        o=$(obj_of "$s")
        in="$root/$s"
      fi
      objs+=("$o")
      if [[ -z ${seen[$o]:-} ]]; then
        seen[$o]=1
        echo "build $o: cxx $in$order"
        echo "  san = $lib_san"
      fi
    done < <(sources_of "$dir/$name.sources")
    libs=$(dep_flags libs "$dir/$name.deps" | tr '\n' ' ')
    echo "build obj/fuzz/${name}_fuzz.o: cxx $dir/${name}_fuzz.cpp$order"
    echo "  san = $lib_san"
    echo "build ${name}_fuzz: link obj/fuzz/${name}_fuzz.o ${objs[*]}"
    echo "  san = -fsanitize=fuzzer,address,undefined"
    echo "  libs = $libs"
    if [[ -f $dir/${name}_seeds.cpp ]]; then
      echo "build obj/fuzz/${name}_seeds.o: cxx $dir/${name}_seeds.cpp$order"
      echo "  san = -fsanitize=address,undefined"
      echo "build ${name}_seeds: link obj/fuzz/${name}_seeds.o ${objs[*]}"
      echo "  san = -fsanitize=address,undefined"
      echo "  libs = $libs"
    fi
  done
} >"$out/build.ninja.new"
mv "$out/build.ninja.new" "$out/build.ninja"

failed=()
echo "== building ${targets[*]} (log: $out/build.log)"
build_ok=1
wanted=()
for name in "${targets[@]}"; do
  wanted+=("${name}_fuzz")
  [[ -f $dir/${name}_seeds.cpp ]] && wanted+=("${name}_seeds")
done
ninja -C "$out" -k 0 "${wanted[@]}" >"$out/build.log" 2>&1 || build_ok=0
if ((!build_ok)); then
  grep -E 'error|FAILED' "$out/build.log" | head -n 40 >&2
fi

# One target: seeds, then fuzzing; a failure leaves $out/<name>.failed saying what failed (the
# targets may run side by side, FUZZ_PARALLEL, so results travel through files).
run_target() {
  local name=$1
  rm -f "$out/$name.failed"
  if [[ ! -x $out/${name}_fuzz ]] || { ((!build_ok)) && ! ninja -C "$out" "${name}_fuzz" >/dev/null 2>&1; }; then
    echo "== $name: build FAILED (see $out/build.log)" >&2
    echo "$name(build)" >"$out/$name.failed"
    return
  fi
  local corpus="$out/corpus/$name" seeds="$out/seeds/$name" artifacts="$out/artifacts/$name"
  mkdir -p "$corpus" "$seeds" "$artifacts"
  if [[ -f $dir/${name}_seeds.cpp ]]; then
    rm -rf "$seeds" && mkdir -p "$seeds"
    if ! "$out/${name}_seeds" "$seeds" "$pcap_dir"; then
      echo "$name(seeds)" >"$out/$name.failed"
      return
    fi
  fi
  local dirs=("$corpus" "$seeds")
  [[ -d $dir/regressions/$name ]] && dirs+=("$dir/regressions/$name")

  echo "== $name: fuzzing for ${seconds}s (log: $out/$name.log)"
  local rc=0 extra=()
  ((fuzz_jobs > 1)) && extra=(-fork="$fuzz_jobs" -ignore_crashes=0)
  "$out/${name}_fuzz" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "${extra[@]}" "${dirs[@]}" \
    >"$out/$name.log" 2>&1 || rc=$?
  grep -E '^(INFO: seed corpus|#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units)' \
    "$out/$name.log" | sed "s/^/$name: /" || true
  if ((rc != 0)); then
    tail -n 40 "$out/$name.log" >&2
    echo "== $name: FAILED (exit $rc); crashing input in $artifacts/" >&2
    echo "$name" >"$out/$name.failed"
  else
    echo "== $name: no crash"
  fi
}

# FUZZ_PARALLEL targets at a time (CI: one per core), each on its own process.
running=0
for name in "${targets[@]}"; do
  if ((running >= fuzz_parallel)); then
    wait -n || true
    ((running--))
  fi
  run_target "$name" &
  ((++running))
done
wait
for name in "${targets[@]}"; do
  if [[ -f $out/$name.failed ]]; then failed+=("$(cat "$out/$name.failed")"); fi
done

if ((${#failed[@]})); then
  echo "fuzz failures: ${failed[*]}" >&2
  exit 1
fi
echo "all fuzz targets ran ${seconds}s without a crash"
