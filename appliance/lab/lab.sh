#!/usr/bin/env bash
# The ztgate lab on one machine: namespaces zone-a and zone-b, each joined by a veth pair to one
# of ztgate's ports (net_af_packet), ztgate inline between them as a bump in the wire.
#
#   zone-a: zt-a0 10.10.0.1/24 ── zt-a1 ═ ztgate port A ║ port B ═ zt-b1 ── zt-b0 10.10.0.2/24 :zone-b
#
# Usage: lab.sh up | down | demo [--ztgate PATH] [--seconds N] | status
#   up      create the namespaces and veth pairs (offloads off, so af_packet sees real frames)
#   down    remove them (idempotent)
#   demo    up, start ztgate with the example policy (appliance/policy), then from zone-a: ping
#           and curl zone-b (allowed), curl a service the policy does not allow (must fail,
#           counted as policy_default_deny), iperf3 (allowed); stop ztgate, check its counters
#           against the kernel's, then down; exit 0 only if all of it behaved
set -euo pipefail

ZONE_A=zone-a ZONE_B=zone-b
A_IN=zt-a0 A_OUT=zt-a1 B_IN=zt-b0 B_OUT=zt-b1
A_IP=10.10.0.1 B_IP=10.10.0.2
MAC_A=02:7a:00:00:00:01 MAC_B=02:7a:00:00:00:02
HTTP_PORT=8080 IPERF_PORT=5201 DENIED_PORT=9090
POLICY_DIR=""  # default: appliance/policy (the example policy)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

log() { printf '[lab] %s\n' "$*" >&2; }
die() { printf '[lab] FAIL: %s\n' "$*" >&2; exit 1; }

no_offloads() {  # ns iface
  ip netns exec "$1" ethtool -K "$2" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
}

lab_down() {
  for ns in "$ZONE_A" "$ZONE_B"; do
    if ip netns list | grep -qw "$ns"; then
      ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
      ip netns del "$ns"
    fi
  done
  ip link del "$A_OUT" 2>/dev/null || true
  ip link del "$B_OUT" 2>/dev/null || true
}

lab_up() {
  lab_down
  ip netns add "$ZONE_A"
  ip netns add "$ZONE_B"
  ip link add "$A_IN" netns "$ZONE_A" address "$MAC_A" type veth peer name "$A_OUT"
  ip link add "$B_IN" netns "$ZONE_B" address "$MAC_B" type veth peer name "$B_OUT"
  for dev in "$A_OUT" "$B_OUT"; do
    # The appliance side carries no addresses: the host must not answer or originate on it.
    sysctl -qw "net.ipv6.conf.$dev.disable_ipv6=1"
    ethtool -K "$dev" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
    ip link set "$dev" up
  done
  local ns dev ip peer_ip peer_mac
  for side in a b; do
    if [[ $side == a ]]; then ns=$ZONE_A dev=$A_IN ip=$A_IP peer_ip=$B_IP peer_mac=$MAC_B
    else ns=$ZONE_B dev=$B_IN ip=$B_IP peer_ip=$A_IP peer_mac=$MAC_A; fi
    # IPv4 only and a static neighbour: no background chatter, so ztgate's counters can be
    # compared packet for packet with the kernel's.
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$ip/24" dev "$dev"
    ip -n "$ns" link set "$dev" up
    ip -n "$ns" neigh replace "$peer_ip" lladdr "$peer_mac" dev "$dev" nud permanent
    no_offloads "$ns" "$dev"
  done
  log "namespaces $ZONE_A ($A_IP) and $ZONE_B ($B_IP) up; appliance ports $A_OUT and $B_OUT"
}

# Packet counter of an interface inside a namespace: ns iface rx_packets|tx_packets
netstat_of() { ip netns exec "$1" cat "/sys/class/net/$2/statistics/$3"; }

ztgate_pid=""
start_ztgate() {  # ztgate-path stats-file
  "$1" --policy "${POLICY_DIR:-$repo/appliance/policy}" --flows 65536 --port-a "net_af_packet0,iface=$A_OUT,framecnt=${AF_FRAMES:-4096}" --port-b "net_af_packet1,iface=$B_OUT,framecnt=${AF_FRAMES:-4096}" \
       --hugepages off --memory 256 --eal-log-level error --stats-file "$2" \
       >"$workdir/ztgate.out" 2>"$workdir/ztgate.err" &
  ztgate_pid=$!
  for _ in $(seq 1 100); do
    grep -q "forwarding" "$workdir/ztgate.err" 2>/dev/null && return 0
    kill -0 "$ztgate_pid" 2>/dev/null || { cat "$workdir/ztgate.err" >&2; die "ztgate exited during start-up"; }
    sleep 0.1
  done
  die "ztgate did not report forwarding within 10 s"
}

stop_ztgate() {
  [[ -n $ztgate_pid ]] || return 0
  kill -INT "$ztgate_pid" 2>/dev/null || true
  wait "$ztgate_pid" || die "ztgate exited with status $? on SIGINT"
  ztgate_pid=""
}

json_get() { /usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {"d": d}))' "$1" "$2"; }

lab_demo() {
  local ztgate="$repo/build/appliance/ztgate" seconds=3
  while (($#)); do
    case $1 in
      --ztgate) ztgate=$2; shift 2 ;;
      --seconds) seconds=$2; shift 2 ;;
      --policy) POLICY_DIR=$2; shift 2 ;;
      *) die "demo: unknown argument '$1' (expected --ztgate PATH, --seconds N, --policy DIR)" ;;
    esac
  done
  [[ -x $ztgate ]] || die "no ztgate binary at $ztgate (build first, or pass --ztgate)"
  workdir=$(mktemp -d /tmp/ztgate-lab.XXXXXX)
  trap 'stop_ztgate || true; lab_down; rm -rf "$workdir"' EXIT

  lab_up
  start_ztgate "$ztgate" "$workdir/stats.json"
  log "ztgate running (pid $ztgate_pid) between $A_OUT and $B_OUT"

  mkdir -p "$workdir/www"
  echo "hello from zone-b through ztgate" >"$workdir/www/index.html"
  ip netns exec "$ZONE_B" /usr/bin/python3 -m http.server "$HTTP_PORT" --bind "$B_IP" \
      --directory "$workdir/www" >/dev/null 2>&1 &
  ip netns exec "$ZONE_B" /usr/bin/python3 -m http.server "$DENIED_PORT" --bind "$B_IP" \
      --directory "$workdir/www" >/dev/null 2>&1 &
  ip netns exec "$ZONE_B" iperf3 -s -B "$B_IP" -p "$IPERF_PORT" -1 >/dev/null 2>&1 &
  sleep 0.5

  local a_tx0 a_rx0 b_tx0 b_rx0
  a_tx0=$(netstat_of "$ZONE_A" "$A_IN" tx_packets) a_rx0=$(netstat_of "$ZONE_A" "$A_IN" rx_packets)
  b_tx0=$(netstat_of "$ZONE_B" "$B_IN" tx_packets) b_rx0=$(netstat_of "$ZONE_B" "$B_IN" rx_packets)

  log "ping $B_IP from $ZONE_A (policy: legacy-ping-from-zone-a)"
  ip netns exec "$ZONE_A" ping -c 2 -i 0.2 -W 2 "$B_IP" >/dev/null || die "ping across ztgate failed"

  log "curl http://$B_IP:$HTTP_PORT/ from $ZONE_A (policy: legacy-http-from-zone-a)"
  local body
  body=$(ip netns exec "$ZONE_A" curl -sS --max-time 10 "http://$B_IP:$HTTP_PORT/") || die "curl across ztgate failed"
  [[ $body == "hello from zone-b through ztgate" ]] || die "curl got an unexpected body: $body"
  log "curl: got '$body'"

  log "curl http://$B_IP:$DENIED_PORT/ from $ZONE_A: a server listens, but no rule allows it"
  if ip netns exec "$ZONE_A" curl -sS --max-time 2 "http://$B_IP:$DENIED_PORT/" >/dev/null 2>&1; then
    die "curl to port $DENIED_PORT crossed ztgate although the policy denies it"
  fi
  log "curl to port $DENIED_PORT: refused by ztgate, as the policy says"

  log "iperf3 -c $B_IP for $seconds s from $ZONE_A"
  ip netns exec "$ZONE_A" iperf3 -c "$B_IP" -p "$IPERF_PORT" -t "$seconds" -J >"$workdir/iperf.json" \
      || die "iperf3 across ztgate failed: $(cat "$workdir/iperf.json")"
  local gbps
  gbps=$(json_get "$workdir/iperf.json" 'round(d["end"]["sum_received"]["bits_per_second"]/1e9, 3)')
  log "iperf3: $gbps Gbit/s received in $ZONE_B"

  sleep 0.3  # let the last ACKs cross
  local a_tx a_rx b_tx b_rx
  a_tx=$(( $(netstat_of "$ZONE_A" "$A_IN" tx_packets) - a_tx0 )) a_rx=$(( $(netstat_of "$ZONE_A" "$A_IN" rx_packets) - a_rx0 ))
  b_tx=$(( $(netstat_of "$ZONE_B" "$B_IN" tx_packets) - b_tx0 )) b_rx=$(( $(netstat_of "$ZONE_B" "$B_IN" rx_packets) - b_rx0 ))
  stop_ztgate
  cat "$workdir/ztgate.out"

  # What crossed ztgate must match what the far side's kernel received, packet for packet, in
  # both directions. On the ingress side the kernel may count a few more than ztgate read: an
  # AF_PACKET ring that overflows drops frames before any PMD sees them (the lab uses 4096-frame
  # rings, so normally none); they are shown, never hidden.
  local za_rx zb_tx zb_rx za_tx dropped denied after_rst
  za_rx=$(json_get "$workdir/stats.json" 'd["ports"][0]["rx_packets"]')
  zb_tx=$(json_get "$workdir/stats.json" 'd["ports"][1]["tx_packets"]')
  zb_rx=$(json_get "$workdir/stats.json" 'd["ports"][1]["rx_packets"]')
  za_tx=$(json_get "$workdir/stats.json" 'd["ports"][0]["tx_packets"]')
  dropped=$(json_get "$workdir/stats.json" 'd["dropped"]')
  denied=$(json_get "$workdir/stats.json" 'd["drops"].get("policy_default_deny", 0)')
  # iperf3 ends its data connection with a reset while segments are still in flight; those
  # arrive after the RST crossed ztgate and are dropped as tcp_after_reset (the receiver would
  # discard them too).
  after_rst=$(json_get "$workdir/stats.json" 'd["drops"].get("tcp_after_reset", 0)')
  printf '\n%-36s %12s %12s\n' "" "kernel" "ztgate" >&2
  printf '%-36s %12s %12s\n' "zone-a sent / port A received" "$a_tx" "$za_rx" >&2
  printf '%-36s %12s %12s\n' "port B sent / zone-b received" "$b_rx" "$zb_tx" >&2
  printf '%-36s %12s %12s\n' "zone-b sent / port B received" "$b_tx" "$zb_rx" >&2
  printf '%-36s %12s %12s\n' "port A sent / zone-a received" "$a_rx" "$za_tx" >&2
  printf '%-36s %12s %12s\n' "dropped by ztgate" "" "$dropped" >&2
  printf '%-36s %12s %12s\n' "  of which policy_default_deny" "" "$denied" >&2
  printf '%-36s %12s %12s\n' "  of which tcp_after_reset" "" "$after_rst" >&2
  printf '%-36s %12s\n\n' "lost in AF_PACKET rings before ztgate" "$(( a_tx - za_rx + b_tx - zb_rx ))" >&2
  [[ $b_rx == "$zb_tx" && $a_rx == "$za_tx" ]] \
    || die "what ztgate sent does not match what the zones received (table above)"
  (( za_rx <= a_tx && zb_rx <= b_tx )) || die "ztgate counted packets the zones never sent (table above)"
  (( denied >= 1 )) || die "the denied curl left no policy_default_deny drop"
  (( dropped == denied + after_rst )) \
    || die "ztgate dropped $((dropped - denied - after_rst)) packets of allowed lab traffic (see the drop table)"
  (( za_rx + zb_rx == zb_tx + za_tx + dropped )) || die "ztgate's own accounting does not add up"
  log "PASS: ping, curl and iperf3 crossed ztgate as the policy allows, the denied service did not; what it forwarded matches what the zones received"
  echo "$gbps" >"${LAB_GBPS_FILE:-/dev/null}"
}

# Sourced (by perf/lab_throughput.sh): provide the functions only.
[[ ${BASH_SOURCE[0]} == "$0" ]] || return 0

case ${1:-} in
  up) lab_up ;;
  down) lab_down; log "lab removed" ;;
  demo) shift; lab_demo "$@" ;;
  status) ip netns list; ip -br link show | grep -E "zt-(a|b)1" || true ;;
  *) echo "usage: $0 up|down|demo [--ztgate PATH] [--seconds N]|status" >&2; exit 2 ;;
esac
