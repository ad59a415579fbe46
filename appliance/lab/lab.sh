#!/usr/bin/env bash
# The ztgate lab on one machine: namespaces zone-a and zone-b, each joined by a veth pair to one
# of ztgate's ports (net_af_packet), ztgate inline between them as a bump in the wire.
#
#   zone-a: zt-a0 10.10.0.1/24 ── zt-a1 ═ ztgate port A ║ port B ═ zt-b1 ── zt-b0 10.10.0.2/24 :zone-b
#
# Usage: lab.sh up | down | status
#        lab.sh demo [--ztgate PATH] [--ztmanager PATH] [--seconds N] [--policy DIR] [--no-manager]
#   up      create the namespaces and veth pairs (offloads off, so af_packet sees real frames)
#   down    remove them (idempotent)
#   demo    up; start ztmanager on 127.0.0.1 (state dir, a copy of the example policy
#           appliance/policy, a PSK and an enrolment token, all under a temp dir) and ztgate with
#           --manager (it enrols, receives revision 1, ACKs); then from zone-a: ping and curl
#           zone-b (allowed), curl a service the policy does not allow (must fail, counted as
#           policy_default_deny), iperf3 (allowed); then edit the policy copy (add a deny that
#           cuts curl :8080 and update its test): the manager publishes revision 2, ztgate applies
#           it, curl :8080 fails (policy_deny), `ztmanager status` shows revision 2 acknowledged,
#           all within 1 s of the edit (measured, printed). Stop ztgate and ztmanager, check
#           ztgate's counters against the kernel's, then down; exit 0 only if all of it behaved.
#           --no-manager runs the same checks with ztgate --policy (no revision-2 step).
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
manager_pid=""
MGR_DIR="" MGR_SYNC="" MGR_ENROL="" MGR_TOKEN=""

# ztmanager on 127.0.0.1 with ephemeral ports; everything under $workdir/manager.
start_manager() {  # ztmanager-path policy-source-dir
  MGR_DIR=$workdir/manager
  mkdir -p "$MGR_DIR"
  cp -r "$2" "$MGR_DIR/policy"
  "$1" psk generate --psk-file "$MGR_DIR/psk" || die "ztmanager psk generate failed"
  "$1" serve --policy-dir "$MGR_DIR/policy" --state-dir "$MGR_DIR/state" --psk-file "$MGR_DIR/psk" \
       --listen 127.0.0.1:0 --enrol-listen 127.0.0.1:0 --poll-ms 100 2>"$workdir/ztmanager.err" &
  manager_pid=$!
  for _ in $(seq 1 100); do
    [[ -f $MGR_DIR/state/endpoints ]] && break
    kill -0 "$manager_pid" 2>/dev/null || { cat "$workdir/ztmanager.err" >&2; die "ztmanager exited during start-up"; }
    sleep 0.1
  done
  [[ -f $MGR_DIR/state/endpoints ]] || die "ztmanager did not listen within 10 s"
  MGR_SYNC=$(awk '$1 == "sync" {print $2}' "$MGR_DIR/state/endpoints")
  MGR_ENROL=$(awk '$1 == "enrol" {print $2}' "$MGR_DIR/state/endpoints")
  grep -q "published revision 1 " "$workdir/ztmanager.err" \
    || { cat "$workdir/ztmanager.err" >&2; die "ztmanager refused the policy in $2"; }
  MGR_TOKEN=$("$1" token create --state-dir "$MGR_DIR/state" --name lab-gw) || die "ztmanager token create failed"
}

stop_manager() {
  [[ -n $manager_pid ]] || return 0
  kill -TERM "$manager_pid" 2>/dev/null || true
  wait "$manager_pid" || die "ztmanager exited with status $? on SIGTERM"
  manager_pid=""
}

# Milliseconds since the epoch.
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

start_ztgate() {  # ztgate-path stats-file   (with --manager when start_manager ran)
  local source=(--policy "${POLICY_DIR:-$repo/appliance/policy}")
  [[ -n $MGR_SYNC ]] && source=(--manager "127.0.0.1:$MGR_SYNC" --enrol-port "$MGR_ENROL" --state-dir "$workdir/gw"
                                --psk-file "$MGR_DIR/psk" --manager-ca "$MGR_DIR/state/ca.pem" --enrol-token "$MGR_TOKEN")
  "$1" "${source[@]}" --flows 65536 --port-a "net_af_packet0,iface=$A_OUT,framecnt=${AF_FRAMES:-4096}" --port-b "net_af_packet1,iface=$B_OUT,framecnt=${AF_FRAMES:-4096}" \
       --hugepages off --memory 256 --eal-log-level error --stats-file "$2" \
       >"$workdir/ztgate.out" 2>"$workdir/ztgate.err" &
  ztgate_pid=$!
  for _ in $(seq 1 100); do
    if grep -q "forwarding" "$workdir/ztgate.err" 2>/dev/null; then
      [[ -z $MGR_SYNC ]] && return 0
      grep -q "applied revision 1 from the manager" "$workdir/ztgate.err" && return 0
    fi
    kill -0 "$ztgate_pid" 2>/dev/null || { cat "$workdir/ztgate.err" >&2; die "ztgate exited during start-up"; }
    sleep 0.1
  done
  cat "$workdir/ztgate.err" >&2
  die "ztgate did not report forwarding${MGR_SYNC:+ and revision 1 from the manager} within 10 s"
}

# The operator's edit: a deny that cuts zone-a's untagged curl to :8080, and the policy test that
# described the old behaviour updated to match (the manager publishes only a policy whose tests
# pass). Both files are rewritten in place, as an editor would.
cut_http_edit() {  # policy-dir
  grep -q "name: untagged lab web from zone-a" "$1/tests.yaml" \
    || die "the revision-2 step edits the example policy; $1/tests.yaml has no 'untagged lab web from zone-a' test"
  local rules tests
  rules=$(cat "$1/rules.yaml")
  tests=$(sed '/name: untagged lab web from zone-a/s/expect: allow, rule: legacy-http-from-zone-a/expect: deny, rule: lab-cut-http/' \
            "$1/tests.yaml")
  printf '%s\n\n  - id: 420\n    name: lab-cut-http         # added by lab.sh demo: revision 2\n    from: {segments: [zone-a]}\n    to: {segments: [zone-b]}\n    proto: tcp\n    ports: [%s]\n    action: deny\n' \
         "$rules" "$HTTP_PORT" >"$1/rules.yaml"
  printf '%s\n' "$tests" >"$1/tests.yaml"
}

# Edit the policy, then watch both ends: revision 2 published, applied by ztgate (its log line is
# printed after Runtime::publish returned), acknowledged on the manager, and curl :8080 refused.
revision_two() {  # ztmanager-path
  local t0 t_pub="" t_apply="" t_ack="" t_curl
  t0=$(now_ms)
  cut_http_edit "$MGR_DIR/policy"
  for _ in $(seq 1 300); do
    [[ -z $t_pub ]] && grep -q "published revision 2 " "$workdir/ztmanager.err" && t_pub=$(now_ms)
    [[ -z $t_apply ]] && grep -q "applied revision 2 from the manager" "$workdir/ztgate.err" && t_apply=$(now_ms)
    [[ -n $t_apply ]] && break
    sleep 0.01
  done
  [[ -n $t_apply ]] || { tail -5 "$workdir/ztmanager.err" >&2; die "ztgate did not apply revision 2 within 3 s of the edit"; }
  [[ -n $t_pub ]] || t_pub=$t_apply
  t_curl=$(now_ms)
  if ip netns exec "$ZONE_A" curl -sS --max-time 1 "http://$B_IP:$HTTP_PORT/" >/dev/null 2>&1; then
    die "curl to port $HTTP_PORT still crossed ztgate after revision 2 was applied"
  fi
  for _ in $(seq 1 100); do
    "$1" status --state-dir "$MGR_DIR/state" | grep -q "^lab-gw: acked revision=2 " && { t_ack=$(now_ms); break; }
    sleep 0.01
  done
  [[ -n $t_ack ]] || { "$1" status --state-dir "$MGR_DIR/state" >&2; die "ztmanager status does not show revision 2 acknowledged"; }
  "$1" status --state-dir "$MGR_DIR/state" | sed 's/^/[lab]   ztmanager status: /' >&2
  log "edit -> manager published revision 2: $(( t_pub - t0 )) ms; -> ztgate enforcing it: $(( t_apply - t0 )) ms;" \
      "-> curl :$HTTP_PORT refused (attempt started at $(( t_curl - t0 )) ms)"
  (( t_apply - t0 < 1000 && t_curl - t0 < 1000 )) || die "revision 2 took $(( t_apply - t0 )) ms to reach the dataplane (goal: < 1000 ms)"
  echo $(( t_apply - t0 )) >"${LAB_PROPAGATION_FILE:-/dev/null}"
}

stop_ztgate() {
  [[ -n $ztgate_pid ]] || return 0
  kill -INT "$ztgate_pid" 2>/dev/null || true
  wait "$ztgate_pid" || die "ztgate exited with status $? on SIGINT"
  ztgate_pid=""
}

json_get() { /usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {"d": d}))' "$1" "$2"; }

lab_demo() {
  local ztgate="$repo/build/appliance/ztgate" ztmanager="" seconds=3 use_manager=1
  while (($#)); do
    case $1 in
      --ztgate) ztgate=$2; shift 2 ;;
      --ztmanager) ztmanager=$2; shift 2 ;;
      --seconds) seconds=$2; shift 2 ;;
      --policy) POLICY_DIR=$2; shift 2 ;;
      --no-manager) use_manager=0; shift ;;
      *) die "demo: unknown argument '$1' (expected --ztgate PATH, --ztmanager PATH, --seconds N, --policy DIR, --no-manager)" ;;
    esac
  done
  [[ -x $ztgate ]] || die "no ztgate binary at $ztgate (build first, or pass --ztgate)"
  # Default: the ztmanager of the same build tree as ztgate.
  [[ -n $ztmanager ]] || ztmanager=$(cd "$(dirname "$ztgate")/.." && pwd)/controlplane/ztmanager
  (( use_manager == 0 )) || [[ -x $ztmanager ]] \
    || die "no ztmanager binary at $ztmanager (build it: ninja -C <build> controlplane/ztmanager, or pass --ztmanager)"
  workdir=$(mktemp -d /tmp/ztgate-lab.XXXXXX)
  # Whatever happens (failure, Ctrl-C, kill), stop both daemons and remove the lab and temp dir.
  trap 'trap - EXIT INT TERM; stop_ztgate >/dev/null 2>&1 || true; stop_manager >/dev/null 2>&1 || true; lab_down; rm -rf "$workdir"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  lab_up
  if (( use_manager )); then
    start_manager "$ztmanager" "${POLICY_DIR:-$repo/appliance/policy}"
    log "ztmanager running (pid $manager_pid): sync 127.0.0.1:$MGR_SYNC, enrolment 127.0.0.1:$MGR_ENROL, revision 1"
  fi
  start_ztgate "$ztgate" "$workdir/stats.json"
  log "ztgate running (pid $ztgate_pid) between $A_OUT and $B_OUT${MGR_SYNC:+, enrolled as lab-gw, enforcing revision 1 from the manager}"

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
  (( use_manager == 0 )) || revision_two "$ztmanager"
  sleep 0.3
  local a_tx a_rx b_tx b_rx
  a_tx=$(( $(netstat_of "$ZONE_A" "$A_IN" tx_packets) - a_tx0 )) a_rx=$(( $(netstat_of "$ZONE_A" "$A_IN" rx_packets) - a_rx0 ))
  b_tx=$(( $(netstat_of "$ZONE_B" "$B_IN" tx_packets) - b_tx0 )) b_rx=$(( $(netstat_of "$ZONE_B" "$B_IN" rx_packets) - b_rx0 ))
  stop_ztgate
  stop_manager
  cat "$workdir/ztgate.out"

  # What crossed ztgate must match what the far side's kernel received, packet for packet, in
  # both directions. On the ingress side the kernel may count a few more than ztgate read: an
  # AF_PACKET ring that overflows drops frames before any PMD sees them (the lab uses 4096-frame
  # rings, so normally none); they are shown, never hidden.
  local za_rx zb_tx zb_rx za_tx dropped denied after_rst cut
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
  cut=$(json_get "$workdir/stats.json" 'd["drops"].get("policy_deny", 0)')  # revision 2's deny
  printf '\n%-36s %12s %12s\n' "" "kernel" "ztgate" >&2
  printf '%-36s %12s %12s\n' "zone-a sent / port A received" "$a_tx" "$za_rx" >&2
  printf '%-36s %12s %12s\n' "port B sent / zone-b received" "$b_rx" "$zb_tx" >&2
  printf '%-36s %12s %12s\n' "zone-b sent / port B received" "$b_tx" "$zb_rx" >&2
  printf '%-36s %12s %12s\n' "port A sent / zone-a received" "$a_rx" "$za_tx" >&2
  printf '%-36s %12s %12s\n' "dropped by ztgate" "" "$dropped" >&2
  printf '%-36s %12s %12s\n' "  of which policy_default_deny" "" "$denied" >&2
  printf '%-36s %12s %12s\n' "  of which tcp_after_reset" "" "$after_rst" >&2
  printf '%-36s %12s %12s\n' "  of which policy_deny (revision 2)" "" "$cut" >&2
  printf '%-36s %12s\n\n' "lost in AF_PACKET rings before ztgate" "$(( a_tx - za_rx + b_tx - zb_rx ))" >&2
  [[ $b_rx == "$zb_tx" && $a_rx == "$za_tx" ]] \
    || die "what ztgate sent does not match what the zones received (table above)"
  (( za_rx <= a_tx && zb_rx <= b_tx )) || die "ztgate counted packets the zones never sent (table above)"
  (( denied >= 1 )) || die "the denied curl left no policy_default_deny drop"
  (( use_manager == 0 || cut >= 1 )) || die "the curl cut by revision 2 left no policy_deny drop"
  (( dropped == denied + after_rst + cut )) \
    || die "ztgate dropped $((dropped - denied - after_rst - cut)) packets of allowed lab traffic (see the drop table)"
  (( za_rx + zb_rx == zb_tx + za_tx + dropped )) || die "ztgate's own accounting does not add up"
  log "PASS: ping, curl and iperf3 crossed ztgate as the policy allows, the denied service did not;${MGR_SYNC:+ revision 2 from ztmanager cut curl :$HTTP_PORT within 1 s of the edit;} what it forwarded matches what the zones received"
  echo "$gbps" >"${LAB_GBPS_FILE:-/dev/null}"
}

# Sourced (by perf/lab_throughput.sh): provide the functions only.
[[ ${BASH_SOURCE[0]} == "$0" ]] || return 0

case ${1:-} in
  up) lab_up ;;
  down) lab_down; log "lab removed" ;;
  demo) shift; lab_demo "$@" ;;
  status) ip netns list; ip -br link show | grep -E "zt-(a|b)1" || true ;;
  *) echo "usage: $0 up|down|status|demo [--ztgate PATH] [--ztmanager PATH] [--seconds N] [--policy DIR] [--no-manager]" >&2; exit 2 ;;
esac
