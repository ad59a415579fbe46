#!/usr/bin/env bash
# The one place ztgate's dependencies are installed: Debian 12 packages only.
# Idempotent: installs only what is missing, so every entry point may call it.
set -euo pipefail

pkgs=(
  # build
  build-essential meson ninja-build pkg-config clang libclang-rt-14-dev
  # fuzzing (tests/fuzz/run-fuzz.sh): clang 16 compiles libstdc++ 12's <expected>, 14 cannot
  clang-16 libclang-rt-16-dev
  # performance report plots (perf/report.sh)
  gnuplot-nox
  # dataplane, crypto, policy
  dpdk dpdk-dev libipsec-mb-dev libhyperscan-dev libssl-dev libyaml-cpp-dev
  # control plane, CLI, logging, pcap
  libprotobuf-dev protobuf-compiler libboost-program-options-dev libfmt-dev
  nlohmann-json3-dev libpcap-dev prometheus-cpp-dev
  # tests
  libgtest-dev libgmock-dev python3-scapy python3-pytest python3-pytest-xdist python3-cryptography tcpdump
  # clock jumps on the appliance (tests/component/test_resilience.py, libfaketime)
  faketime
  # lab
  iproute2 iputils-ping ethtool iperf3 curl python3 procps
  # lab.sh demo-flood replays ztgen's flood captures
  tcpreplay
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing packages: ${missing[*]}; run this script as root" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
