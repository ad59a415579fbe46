#!/usr/bin/env bash
# iperf3 throughput across the lab (zone-a → zone-b over AF_PACKET veths) with ztgate inline,
# beside dpdk-testpmd --forward-mode=io on the very same lab in the same run: the ratio is the
# figure (absolute Gbit/s drift on shared machines).
#
# ztgate runs with the example policy (appliance/policy), so the iperf3 flow is admitted by a rule
# and then followed by flow state, as in production.
# Usage: perf/lab_throughput.sh [--ztgate PATH] [--seconds N] [--runs N] [--policy DIR]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
source "$repo/appliance/lab/lab.sh"

ztgate="$repo/build/appliance/ztgate" seconds=4 runs=3 POLICY="$repo/appliance/policy"
while (($#)); do
  case $1 in
    --ztgate) ztgate=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --policy) POLICY=$2; shift 2 ;;
    *) echo "usage: $0 [--ztgate PATH] [--seconds N] [--runs N] [--policy DIR]" >&2; exit 2 ;;
  esac
done
command -v dpdk-testpmd >/dev/null || die "dpdk-testpmd not found (Debian package dpdk)"
[[ -x $ztgate ]] || die "no ztgate at $ztgate"

workdir=$(mktemp -d /tmp/ztgate-perf.XXXXXX)
fwd_pid=""
cleanup() {
  if [[ -n $fwd_pid ]]; then kill -INT "$fwd_pid" 2>/dev/null || true; fi
  pkill -f "^sleep 86399$" 2>/dev/null || true
  lab_down
  rm -rf "$workdir"
}
trap cleanup EXIT

ports="net_af_packet0,iface=$A_OUT,framecnt=4096 net_af_packet1,iface=$B_OUT,framecnt=4096"

start_forwarder() {  # testpmd|ztgate
  local a b
  read -r a b <<<"$ports"
  if [[ $1 == testpmd ]]; then
    # testpmd in a script stops when its stdin closes: keep it open (DESIGN.md §6).
    sleep 86399 | stdbuf -oL dpdk-testpmd -l 0,1 --no-huge --no-shconf -m 512 --no-pci --vdev "$a" --vdev "$b" \
        --log-level=lib.*:error -- --forward-mode=io --nb-cores=1 --total-num-mbufs=16384 >"$workdir/fwd.log" 2>&1 &
    sleep 0.2; fwd_pid=$(pgrep -n -f "^dpdk-testpmd -l 0,1 --no-huge")
    for _ in $(seq 1 100); do grep -q "Press enter to exit" "$workdir/fwd.log" && return 0; sleep 0.1; done
    die "testpmd did not start: $(tail -5 "$workdir/fwd.log")"
  else
    "$ztgate" --policy "$POLICY" --flows 65536 --port-a "$a" --port-b "$b" --hugepages off --memory 256 --eal-log-level error --quiet \
        >"$workdir/fwd.log" 2>&1 &
    fwd_pid=$!
    for _ in $(seq 1 100); do grep -q "forwarding" "$workdir/fwd.log" && return 0; sleep 0.1; done
    die "ztgate did not start: $(tail -5 "$workdir/fwd.log")"
  fi
}

stop_forwarder() {
  kill -INT "$fwd_pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$fwd_pid" 2>/dev/null || break; sleep 0.1; done
  pkill -f "^sleep 86399$" 2>/dev/null || true
  fwd_pid=""
}

measure() {  # testpmd|ztgate → Gbit/s
  lab_up >/dev/null 2>&1
  start_forwarder "$1"
  ip netns exec "$ZONE_B" iperf3 -s -B "$B_IP" -1 >/dev/null 2>&1 &
  sleep 0.3
  ip netns exec "$ZONE_A" iperf3 -c "$B_IP" -t "$seconds" -J >"$workdir/iperf.json" || die "iperf3 failed under $1"
  stop_forwarder
  lab_down
  json_get "$workdir/iperf.json" 'round(d["end"]["sum_received"]["bits_per_second"]/1e9, 3)'
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print (NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2}'; }

declare -a tp zg
for ((i = 1; i <= runs; i++)); do  # interleaved, so drift hits both alike
  tp+=("$(measure testpmd)")
  zg+=("$(measure ztgate)")
  printf 'run %d: testpmd io %s Gbit/s, ztgate %s Gbit/s\n' "$i" "${tp[-1]}" "${zg[-1]}"
done
mt=$(median "${tp[@]}") mz=$(median "${zg[@]}")
printf '\niperf3 zone-a → zone-b, %d runs of %d s, AF_PACKET veths, 1 worker lcore\n' "$runs" "$seconds"
printf '%-22s median %8s Gbit/s   min %s  max %s\n' "dpdk-testpmd io" "$mt" "$(median "$(printf '%s\n' "${tp[@]}" | sort -g | head -1)")" "$(printf '%s\n' "${tp[@]}" | sort -g | tail -1)"
printf '%-22s median %8s Gbit/s   min %s  max %s\n' "ztgate" "$mz" "$(printf '%s\n' "${zg[@]}" | sort -g | head -1)" "$(printf '%s\n' "${zg[@]}" | sort -g | tail -1)"
awk -v z="$mz" -v t="$mt" 'BEGIN { printf "ratio ztgate / testpmd: %.3f (target >= 0.9)\n", (t > 0 ? z / t : 0) }'
