#!/usr/bin/env bash
# iperf3 goodput zone-a → zone-b through ztgate on two paths of ONE lab setup, alternated run by
# run (issue 9's figure: the ratio is the cost of zero trust on this rig):
#
#   untagged  10.10.0.6 → zone-b, straight out of zt-a0 (plain TCP, MSS 1460). ztgate parses it,
#             classifies it by address (rule 140 of appliance/lab/policy-zt-perf), follows it in
#             its flow table and forwards it.
#   tagged    frontend 10.10.0.1 → zone-b through ztagent: the kernel routes it into the TUN
#             zt-fe0 (MTU 1408, so MSS 1368), the agent reads each packet, mints its AES-256-CMAC
#             identity tag over the whole segment (FULL), wraps it in Geneve (+72 B) and sends
#             it with one sendto; ztgate adds to the untagged work the tag's MAC verification,
#             the replay filter, the identity-based rule (110) and the decapsulation (strip mode).
#
# The set-up is lab.sh demo-zt's (namespace zt-lab-gw with ztmanager and ztgate --manager, the
# agent enrolled with a token and holding only its own epoch keys), with the perf policy and
# only frontend's agent. Replies come back plain (strip mode) on both paths.
# Usage: perf/agent_throughput.sh [--runs N] [--seconds S] [--ztgate P] [--ztmanager P] [--ztagent P]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
source "$repo/appliance/lab/lab.sh"

usage() {
  echo "usage: $0 [--runs N] [--seconds S] [--ztgate PATH] [--ztmanager PATH] [--ztagent PATH]" >&2
  echo "  alternates N iperf3 runs of S seconds (defaults 3 and 4) from an untagged zone-a host and" >&2
  echo "  from ztagent 'frontend' through the same ztgate; prints Gbit/s per run, median, min-max" >&2
  echo "  and the ratio tagged / untagged. Binaries default to ztgate's build tree." >&2
  exit 2
}
ztgate="$repo/build/appliance/ztgate" runs=3 seconds=4
ZTMANAGER="" ZTAGENT=""
while (($#)); do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --ztgate) ztgate=$2; shift 2 ;;
    --ztmanager) ZTMANAGER=$2; shift 2 ;;
    --ztagent) ZTAGENT=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "unknown argument '$1'" >&2; usage ;;
  esac
done
[[ $runs =~ ^[1-9][0-9]*$ && $seconds =~ ^[1-9][0-9]*$ ]] || die "--runs and --seconds take positive integers"
[[ -x $ztgate ]] || die "no ztgate at $ztgate (build first, or pass --ztgate)"
build=$(cd "$(dirname "$ztgate")/.." && pwd)
: "${ZTMANAGER:=$build/controlplane/ztmanager}" "${ZTAGENT:=$build/tools/ztagent/ztagent}"
for b in "$ZTMANAGER" "$ZTAGENT"; do
  [[ -x $b ]] || die "no $(basename "$b") binary at $b (ninja -C <build>, or pass --$(basename "$b"))"
done
command -v iperf3 >/dev/null || die "iperf3 is not installed (appliance/scripts/install-deps.sh)"
(( EUID == 0 )) || die "needs root (network namespaces, veths, TUN)"

workdir=$(mktemp -d /tmp/ztgate-agent-perf.XXXXXX)
# Whatever happens (failure, Ctrl-C, kill): stop the agent, ztgate and ztmanager, remove the
# namespaces and the temp dir (lab.sh's zt_cleanup).
trap 'trap - EXIT INT TERM; zt_cleanup' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

zt_up
a_tx0=$(netstat_of "$ZONE_A" "$A_IN" tx_packets)  # before ztgate reads port A
NS_RUN=(ip netns exec "$GW_NS") MGR_LISTEN=$M_GW_IP MGR_EXTRA=(--epoch-seconds "$ZT_EPOCH")
start_manager "$ZTMANAGER" "$repo/appliance/lab/policy-zt-perf"
ZTGATE_EXTRA=(--geneve strip --quiet --file-prefix zt-agent-perf)
start_ztgate "$ztgate" "$workdir/stats.json"
# Strip mode: replies come back plain, so the agent opens no inbound Geneve socket.
zt_start_agent frontend "$FE_ID" "$FE_TUN" --route "$B_IP/32" --inbound off
agent_pid=${zt_agent_pids[0]}
ip netns exec "$ZONE_B" iperf3 -s -B "$B_IP" -p "$ZT_IPERF" >/dev/null 2>&1 &
wait_until 10 "zone-b's iperf3 server" bash -c "ip netns exec $ZONE_B ss -Hltn 'sport = :$ZT_IPERF' | grep -q LISTEN"
log "ztmanager, ztgate (strip) and ztagent frontend ($FE_ID, TUN $FE_TUN mtu $(ip -n "$ZONE_A" -o link show "$FE_TUN" | sed -n 's/.* mtu \([0-9]*\).*/\1/p')) up"

# The agent's 'tagged' counter, fresh: SIGUSR1 makes it rewrite its --stats-file.
agent_tagged() {
  local f="$workdir/agent-frontend.json" t0 end
  t0=$(stat -c %.9Y "$f" 2>/dev/null || echo 0)
  kill -USR1 "$agent_pid" 2>/dev/null || die "ztagent frontend is no longer running: $(tail -3 "$workdir/agent-frontend.err")"
  end=$(( $(now_ms) + 3000 ))
  until [[ $(stat -c %.9Y "$f" 2>/dev/null || echo 0) != "$t0" ]]; do
    (( $(now_ms) < end )) || die "ztagent did not write its counters on SIGUSR1 within 3 s"
    sleep 0.02
  done
  sleep 0.05  # let the write finish
  json_get "$f" 'd["tagged"]'
}

measure() {  # source-ip → "Gbit/s retransmits"
  local out="$workdir/iperf-$1.json"
  ip netns exec "$ZONE_A" iperf3 -c "$B_IP" -B "$1" -p "$ZT_IPERF" -t "$seconds" -J >"$out" 2>&1 \
    || die "iperf3 from $1 failed: $(json_get "$out" 'd.get("error", "?")' 2>/dev/null || tail -3 "$out")"
  json_get "$out" '"%.3f %d" % (d["end"]["sum_received"]["bits_per_second"] / 1e9, d["end"]["sum_sent"].get("retransmits", 0))'
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print (NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2}'; }
lo() { printf '%s\n' "$@" | sort -g | head -1; }
hi() { printf '%s\n' "$@" | sort -g | tail -1; }

declare -a ut tg
tagged_before=$(agent_tagged)
tagged_total=0
for ((i = 1; i <= runs; i++)); do  # alternated, so drift hits both paths alike
  read -r g r_ut < <(measure "$UT_IP"); ut+=("$g")
  before=$(agent_tagged)
  read -r g r_tg < <(measure "$FE_IP"); tg+=("$g")
  after=$(agent_tagged)
  tagged_total=$(( tagged_total + after - before ))
  printf 'run %d: untagged %s Gbit/s (%s retransmits), tagged %s Gbit/s (%s retransmits, %d packets tagged by ztagent)\n' \
    "$i" "${ut[-1]}" "$r_ut" "${tg[-1]}" "$r_tg" "$(( after - before ))"
done
untagged_tagged=$(( $(agent_tagged) - tagged_before - tagged_total ))  # must stay 0: nothing else uses the TUN

# The TUN vanishes with the agent: packets the kernel dropped because the agent did not read them in time.
tun_dropped=$(netstat_of "$ZONE_A" "$FE_TUN" tx_dropped)
reap "$agent_pid" TERM 10 || die "ztagent exited with status $? on SIGTERM"
zt_agent_pids=()
stop_ztgate
stop_manager
a="$workdir/agent-frontend.json" s="$workdir/stats.json"
lost=$(json_get "$a" 'd["out_no_key"] + d["send_errors"] + d["out_too_long"] + d["out_fragment"]')
rule() { json_get "$s" "d['rules'].get('$1', {}).get('$2', 0)"; }
fwd110=$(rule 110 packets_forwarded) fwd140=$(rule 140 packets_forwarded)
flows110=$(rule 110 flows_admitted) flows140=$(rule 140 flows_admitted)
# Frames zone-a's kernel sent that ztgate's port A never read (AF_PACKET ring full).
ring_lost=$(( $(netstat_of "$ZONE_A" "$A_IN" tx_packets) - a_tx0 - $(json_get "$s" 'd["ports"][0]["rx_packets"]') ))
drops=$(json_get "$s" '", ".join(f"{r} {n}" for r, n in sorted(d["drops"].items(), key=lambda kv: -kv[1]) if n) or "none"')
classes=$(json_get "$s" '", ".join(c + " " + str(v["packets"]) for c, v in d["identity_classes"].items() if v["packets"])')

mu=$(median "${ut[@]}") mt=$(median "${tg[@]}")
printf '\niperf3 zone-a → zone-b through ztgate (strip mode, 1 worker lcore, AF_PACKET veths), %d alternated runs of %d s\n' "$runs" "$seconds"
printf '%-44s median %7s Gbit/s   min %s  max %s\n' "untagged 10.10.0.6 (rule 140)" "$mu" "$(lo "${ut[@]}")" "$(hi "${ut[@]}")"
printf '%-44s median %7s Gbit/s   min %s  max %s\n' "tagged: frontend via ztagent (rule 110)" "$mt" "$(lo "${tg[@]}")" "$(hi "${tg[@]}")"
awk -v t="$mt" -v u="$mu" 'BEGIN { printf "ratio tagged / untagged (medians): %.3f\n", (u > 0 ? t / u : 0) }'
cat <<EOF
  untagged path: ztgate's parse + policy lookup (by address) + flow table, forwarding; MSS 1460.
  tagged path adds: the TUN (kernel → agent → kernel), ztagent's AES-256-CMAC tag minted per packet
    over the whole segment, Geneve encapsulation (+72 B, one sendto per packet), the TUN's MTU
    1408 (MSS 1368), and in ztgate the tag's MAC verification, replay filter and decapsulation.
ztagent frontend: $tagged_total packets tagged during the tagged runs, $untagged_tagged during the untagged ones;
  out_no_key + send_errors + too long + fragments: $lost
zone-a frames lost in ztgate's AF_PACKET ring (never read): $ring_lost; TUN $FE_TUN tx_dropped: $tun_dropped
ztgate: rule 110 (tagged) $flows110 flows, $fwd110 packets forwarded; rule 140 (untagged) $flows140 flows, $fwd140 packets forwarded
  identity classes: $classes
  drops: $drops
EOF
# The figure means something only if each path really was the path it claims to be.
(( tagged_total > 0 && fwd110 > 0 && flows110 >= runs )) || die "the tagged runs were not tagged by ztagent and admitted by rule 110"
(( untagged_tagged == 0 && fwd140 > 0 && flows140 >= runs )) || die "the untagged runs did not go untagged through rule 140"
