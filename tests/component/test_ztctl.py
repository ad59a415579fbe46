"""ztctl's live verbs against a real ztgate (net_pcap virtual devices): every show in text and
JSON with numbers matching the traffic sent, the read-only socket, the audit log, the Prometheus
endpoint against `show drops`, and the errors an operator sees when ztgate is absent or the
request is refused. One ztgate serves the whole module (the traffic is replayed once at start
and the counters then stay put); the trace and stage-timing tests use a second one fed forever."""
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from scapy.all import ICMP, IP, TCP, UDP, Ether

from ztgate_harness import POLICIES, ZTGATE, write_master, write_pcap

ZTCTL = os.environ.get("ZTCTL", str(Path(ZTGATE).resolve().parent / "src" / "ztctl" / "ztctl"))
MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
NOBODY = 65534  # uid and gid of nobody / nogroup on Debian

# l7-http: zone-a 10.10.0.1 may reach zone-b 10.10.0.2 on tcp/8080 (rule 10) and by ICMP (rule 20).
SYNS = 5       # allowed, rule 10, one flow each
PINGS = 2      # allowed, rule 20: one ICMP flow (the flow key has no ICMP id)
DENIED = 3     # udp/53: default deny, one decision per packet (a denied flow is not kept)
BAD_CSUM = 1   # ipv4_bad_checksum


def frames():
    e = Ether(src=MAC_A, dst=MAC_B)
    out = [e / IP(src="10.10.0.1", dst="10.10.0.2") / TCP(sport=40000 + i, dport=8080, flags="S") for i in range(SYNS)]
    out += [e / IP(src="10.10.0.1", dst="10.10.0.2") / ICMP(id=100 + i) for i in range(PINGS)]
    out += [e / IP(src="10.10.0.1", dst="10.10.0.2") / UDP(sport=5000, dport=53) for _ in range(DENIED)]
    out += [e / IP(src="10.10.0.1", dst="10.10.0.2", chksum=0x1234) / UDP(sport=1, dport=2)]
    return out


def ztctl(*args, uid=None, socket_path=None, timeout=15):
    cmd = [ZTCTL, *map(str, args)]
    if socket_path:
        cmd += ["--socket", str(socket_path)]
    if uid is not None:
        cmd = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def ztctl_json(*args, **kw):
    r = ztctl(*args, "--json", **kw)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


class Gate:
    def __init__(self, tmp: Path, policy, in_a: Path, port_a_args="", extra=()):
        self.tmp = tmp
        self.sock = tmp / "admin.sock"
        self.audit = tmp / "audit.log"
        self.log = open(tmp / "ztgate.err", "w+")
        write_pcap(tmp / "in_b.pcap", [])
        self.proc = subprocess.Popen([
            ZTGATE,
            "--port-a", f"net_pcap0,rx_pcap={in_a},tx_pcap={tmp / 'out_a.pcap'}{port_a_args}",
            "--port-b", f"net_pcap1,rx_pcap={tmp / 'in_b.pcap'},tx_pcap={tmp / 'out_b.pcap'}",
            "--hugepages", "off", "--memory", "128", "--mbufs", "4096", "--eal-log-level", "error",
            "--flows", "65536", "--replay-pps", "100000", "--policy", str(POLICIES / policy),
            "--admin-socket", str(self.sock), "--admin-ro-group", str(NOBODY), "--audit-log", str(self.audit),
            "--metrics-listen", "127.0.0.1:0", *extra,
        ], stdout=subprocess.DEVNULL, stderr=self.log, text=True)
        self.metrics_port = None
        deadline = time.time() + 20
        while time.time() < deadline:
            text = self.stderr()
            m = re.search(r"Prometheus metrics on \S+ \(port (\d+)\)", text)
            if m and self.sock.exists():
                self.metrics_port = int(m.group(1))
                return
            assert self.proc.poll() is None, f"ztgate exited: {text}"
            time.sleep(0.05)
        raise AssertionError(f"ztgate did not open its admin socket: {self.stderr()}")

    def stderr(self):
        self.log.flush()
        return (self.tmp / "ztgate.err").read_text()

    def scrape(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def close(self):
        self.proc.terminate()
        rc = self.proc.wait(timeout=20)
        err = self.stderr()
        self.log.close()
        # Under ASan/UBSan a report ends up here: it fails the module, not just a log.
        assert "Sanitizer" not in err and "runtime error:" not in err, err
        assert rc == 0, err


@pytest.fixture(scope="module")
def gate():
    # Under /tmp, world-traversable, so `nobody` can reach the read-only socket.
    tmp = Path(tempfile.mkdtemp(prefix="zt-ztctl-"))
    os.chmod(tmp, 0o755)
    write_pcap(tmp / "in_a.pcap", frames())
    g = Gate(tmp, "l7-http", tmp / "in_a.pcap",
             extra=["--key-master", str(write_master(tmp)), "--flow-log", str(tmp / "flow.log")])
    total = SYNS + PINGS + DENIED + BAD_CSUM
    deadline = time.time() + 10
    while time.time() < deadline:
        ifs = ztctl_json("show", "interfaces", socket_path=g.sock)["interfaces"]
        if ifs[0]["rx_packets"] == total:
            break
        time.sleep(0.05)
    yield g
    g.close()
    shutil.rmtree(tmp, ignore_errors=True)


# ---- show, in text and JSON ----------------------------------------------------------------

def test_show_status_names_version_policy_revision_digest_and_key_epoch(gate):
    j = ztctl_json("show", "status", socket_path=gate.sock)
    assert j["version"] and j["workers"] == 1
    assert j["policy"]["revision"] == 1 and re.fullmatch(r"[0-9a-f]{64}", j["policy"]["digest"])
    assert j["policy"]["rules"] == 2
    assert j["keys"]["loaded"] and j["keys"]["epoch"] == int(time.time()) // 900
    assert j["manager"] is None
    t = ztctl("show", "status", socket_path=gate.sock)
    assert t.returncode == 0
    assert f"revision 1 (2 rules" in t.stdout and j["policy"]["digest"] in t.stdout
    assert f"Key epoch:      {j['keys']['epoch']}" in t.stdout


def test_show_interfaces_counts_what_was_sent_and_forwarded(gate):
    ifs = ztctl_json("show", "interfaces", socket_path=gate.sock)["interfaces"]
    sent = SYNS + PINGS + DENIED + BAD_CSUM
    assert ifs[0]["side"] == "zone A" and ifs[0]["rx_packets"] == sent
    assert ifs[1]["tx_packets"] == SYNS + PINGS and ifs[1]["rx_packets"] == 0
    t = ztctl("show", "interfaces", socket_path=gate.sock).stdout
    assert re.search(rf"zone A\s+net_pcap0\s+{sent}\s", t)
    assert re.search(rf"zone B\s+net_pcap1\s+0\s+0\s+{SYNS + PINGS}\s", t)


def test_show_drops_by_reason_worker_and_rule(gate):
    j = ztctl_json("show", "drops", socket_path=gate.sock)
    assert j["total"] == DENIED + BAD_CSUM
    assert j["by_reason"] == {"policy_default_deny": DENIED, "ipv4_bad_checksum": BAD_CSUM}
    assert j["by_worker"][0]["total"] == DENIED + BAD_CSUM
    [rule] = j["by_rule"]
    assert rule["rule_id"] == 0 and rule["packets_dropped"] == DENIED and rule["flows_denied"] == DENIED
    t = ztctl("show", "drops", socket_path=gate.sock).stdout
    assert f"Dropped: {DENIED + BAD_CSUM} packets" in t
    assert re.search(rf"policy_default_deny\s+{DENIED}\s+no allow rule matched", t)
    assert re.search(rf"ipv4_bad_checksum\s+{BAD_CSUM}\s+IPv4 header checksum is wrong", t)
    assert len(ztctl_json("show", "drops", "--all", socket_path=gate.sock)["by_reason"]) > 20


def test_show_flows_filters_and_bounds_its_output(gate):
    j = ztctl_json("show", "flows", socket_path=gate.sock)
    assert len(j["flows"]) == SYNS + 1 and not j["truncated"]
    tcp = [f for f in j["flows"] if f["proto"] == "tcp"]
    assert sorted(f["sport"] for f in tcp) == [40000 + i for i in range(SYNS)]
    assert all(f["rule_id"] == 10 and f["tcp_state"] == "syn_sent" and f["packets_out"] == 1 for f in tcp)
    one = ztctl_json("show", "flows", "--port", 40002, socket_path=gate.sock)["flows"]
    assert [f["sport"] for f in one] == [40002]
    ident = tcp[0]["identity"]
    assert len(ztctl_json("show", "flows", "--identity", ident, socket_path=gate.sock)["flows"]) == SYNS + 1
    assert ztctl_json("show", "flows", "--address", "10.99.0.1", socket_path=gate.sock)["flows"] == []
    limited = ztctl_json("show", "flows", "--limit", 2, socket_path=gate.sock)
    assert len(limited["flows"]) == 2 and limited["truncated"]
    t = ztctl("show", "flows", "--limit", 2, socket_path=gate.sock).stdout
    assert "2 flow(s), more match: raise --limit" in t and "10.10.0.2:8080" in t
    bad = ztctl("show", "flows", "--address", "not-an-ip", socket_path=gate.sock)
    assert bad.returncode == 1 and "--address 'not-an-ip': expected an IPv4 or IPv6 address" in bad.stderr


def test_show_runtime_counts_each_workers_packets(gate):
    [w] = ztctl_json("show", "runtime", socket_path=gate.sock)["workers"]
    assert w["rx_packets"] == SYNS + PINGS + DENIED + BAD_CSUM and w["tx_packets"] == SYNS + PINGS
    assert w["new_flows"] == SYNS + 1 and w["cycles_per_packet"] > 0
    assert [s["stage"] for s in w["stages"]] == ["parse", "lookup", "classify", "verify", "finish", "tx"]
    t = ztctl("show", "runtime", socket_path=gate.sock).stdout
    assert f"worker 0 (lcore 1, queue 0): rx {w['rx_packets']} tx {SYNS + PINGS} dropped {DENIED + BAD_CSUM}" in t


def test_show_identities_and_identity_classes(gate):
    j = ztctl_json("show", "identities", socket_path=gate.sock)
    assert {"id": 2, "name": "unauthenticated", "labels": {}, "reserved": True} in j["identities"]
    cls = {c["class"]: c for c in j["classes"]}
    assert cls["segment"]["packets"] == SYNS + PINGS + DENIED and cls["segment"]["dropped"] == DENIED
    assert cls["none"]["dropped"] == BAD_CSUM and cls["verified"]["packets"] == 0
    assert re.search(rf"segment\s+{SYNS + PINGS + DENIED} packets\s+{DENIED} dropped",
                     ztctl("show", "identities", socket_path=gate.sock).stdout)


def test_show_policy_lists_rules_with_hit_counts(gate):
    j = ztctl_json("show", "policy", socket_path=gate.sock)
    rules = {r["id"]: r for r in j["rules"]}
    assert rules[10]["name"] == "web-with-l7" and rules[10]["l7"] and rules[10]["ports"] == ["8080"]
    assert rules[10]["hits"]["flows_admitted"] == SYNS and rules[10]["hits"]["packets_forwarded"] == SYNS
    assert rules[20]["hits"]["flows_admitted"] == 1 and rules[20]["hits"]["packets_forwarded"] == PINGS
    assert j["default_deny"]["flows_denied"] == DENIED and j["default_deny"]["packets_dropped"] == DENIED
    t = ztctl("show", "policy", socket_path=gate.sock).stdout
    assert re.search(rf"10 web-with-l7\s+allow\s+{SYNS}\s+0\s+{SYNS}\s+0\s+from segments \[zone-a\]", t)
    assert re.search(rf"0 \(default deny\)\s+deny\s+0\s+{DENIED}\s+0\s+{DENIED}", t)


def test_show_keys_gives_epochs_and_validity_never_key_bytes(gate):
    j = ztctl_json("show", "keys", socket_path=gate.sock)
    now = int(time.time())
    assert j["loaded"] and j["current_epoch"] == now // 900 and j["epoch_length_s"] == 900
    cur = [e for e in j["epochs"] if e["state"] == "current"]
    assert len(cur) == 1 and cur[0]["starts_unix"] <= now < cur[0]["ends_unix"]
    master = (gate.tmp / "master.hex").read_text().strip()
    r = ztctl("show", "keys", socket_path=gate.sock)
    assert "key material is never shown" in r.stdout
    assert master[:16] not in r.stdout and master[:16] not in json.dumps(j)


def test_show_control_plane_without_manager_lists_policy_loads(gate):
    j = ztctl_json("show", "control-plane", socket_path=gate.sock)
    assert j["manager"] is None and j["enforced_revision"] == 1 and j["source"].startswith("directory ")
    assert j["events"][0]["what"] == "policy loaded" and j["events"][0]["ok"]
    assert "policy loaded" in ztctl("show", "control-plane", socket_path=gate.sock).stdout


def test_test_policy_asks_the_live_snapshot_and_names_the_rule(gate):
    allow = ztctl_json("test", "policy", "--from", "10.10.0.1", "--to", "10.10.0.2", "--port", 8080,
                       socket_path=gate.sock)
    assert allow["disposition"] == "allow" and allow["rule_id"] == 10 and allow["rule"] == "rule 10 (web-with-l7)"
    deny = ztctl("test", "policy", "--from", "10.10.0.1", "--to", "10.10.0.2", "--proto", "udp", "--port", 53,
                 socket_path=gate.sock)
    assert deny.returncode == 0 and deny.stdout.startswith("DENY: untagged from 10.10.0.1/32 (segment zone-a)")
    assert "udp/53: deny by default deny (no rule matched) (revision 1), drop reason policy_default_deny" in deny.stdout
    bad = ztctl("test", "policy", "--from", "10.10.0.1", "--to", "nowhere", socket_path=gate.sock)
    assert bad.returncode == 1 and "--to 'nowhere'" in bad.stderr


def test_show_volumetric_gives_limits_talkers_and_blocklist(gate):
    j = ztctl_json("show", "volumetric", socket_path=gate.sock)
    assert j["limits"]["v4_prefix"] == 24 and j["limits"]["block_pps"] == 1000000
    assert j["blocklist"] == []
    assert all(set(t) == {"prefix", "worker", "packets"} for t in j["top_talkers"])
    t = ztctl("show", "volumetric", socket_path=gate.sock).stdout
    assert "Blocklist:\n  empty" in t and "block_pps=1000000" in t


def test_flow_log_has_one_json_line_per_denied_flow(gate):
    deadline = time.time() + 5
    lines = []
    while time.time() < deadline and len(lines) < DENIED:
        path = gate.tmp / "flow.log"
        lines = path.read_text().splitlines() if path.exists() else []
        time.sleep(0.05)
    recs = [json.loads(line) for line in lines]
    assert len(recs) == DENIED
    for r in recs:
        assert (r["kind"], r["src"], r["dst"], r["dport"], r["proto"], r["rule"], r["reason"], r["segment"]) == (
            "deny", "10.10.0.1", "10.10.0.2", 53, "udp", 0, "policy_default_deny", "zone-b")


# ---- Prometheus ----------------------------------------------------------------------------

def metric_sums(text, name, label):
    out = {}
    for m in re.finditer(rf'^{name}{{([^}}]*)}} (\S+)$', text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        out[labels[label]] = out.get(labels[label], 0) + float(m.group(2))
    return out


def test_prometheus_shows_the_same_drop_counts_as_show_drops(gate):
    text = subprocess.run(["curl", "-sf", f"http://127.0.0.1:{gate.metrics_port}/metrics"], capture_output=True,
                          text=True, timeout=10).stdout
    drops = ztctl_json("show", "drops", socket_path=gate.sock)
    by_reason = {k: v for k, v in metric_sums(text, "ztgate_drops_total", "reason").items() if v}
    assert by_reason == drops["by_reason"]
    assert metric_sums(text, "ztgate_rule_packets_dropped_total", "rule")["0"] == DENIED
    assert metric_sums(text, "ztgate_tx_packets_total", "port")["net_pcap1"] == SYNS + PINGS
    assert re.search(r"^ztgate_policy_revision 1$", text, re.M)
    # Bounded labels: never an address nor an identity name.
    assert "10.10.0." not in text and "zone-a" not in text


# ---- sockets, permissions, protocol --------------------------------------------------------

def test_read_only_socket_serves_show_to_its_group_and_refuses_changes(gate):
    # nobody is not root: the admin socket (0600) refuses it, ztctl falls back to PATH.ro (group nogroup).
    r = ztctl("show", "drops", "--json", uid=NOBODY, socket_path=gate.sock)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["total"] == DENIED + BAD_CSUM
    r = ztctl("clear", "counters", uid=NOBODY, socket_path=gate.sock)
    assert r.returncode == 4 and "permission denied" in r.stderr and "--admin-group" in r.stderr
    r = ztctl("clear", "counters", uid=NOBODY, socket_path=f"{gate.sock}.ro")
    assert r.returncode == 4 and "refused on the read-only socket" in r.stderr
    assert ztctl_json("show", "drops", socket_path=gate.sock)["total"] == DENIED + BAD_CSUM  # nothing cleared
    audit = [json.loads(line) for line in gate.audit.read_text().splitlines()]
    assert {"uid": NOBODY, "user": "nobody", "command": "clear counters", "socket": "read-only",
            "result": "refused"}.items() <= audit[-1].items()
    assert "audit" in gate.stderr() and "user=nobody uid=65534" in gate.stderr()


def raw_request(path, payload: bytes, header=None):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(str(path))
    s.sendall((header if header is not None else struct.pack(">I", len(payload))) + payload)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data


def test_refuses_an_unknown_protocol_version_and_an_oversized_request(gate):
    # Request{version: 2, command: "show status"} in protobuf wire format.
    answer = raw_request(gate.sock, b"\x08\x02\x12\x0bshow status")
    assert b"admin protocol version 2 is not supported; this ztgate speaks version 1" in answer
    answer = raw_request(gate.sock, b"", header=struct.pack(">I", 1 << 20))
    assert b"request of 1048576 bytes exceeds the 65536 byte limit" in answer


def test_a_stalled_client_does_not_block_others(gate):
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stalled.connect(str(gate.sock))
    stalled.sendall(b"\x00\x00")  # half a header, then nothing
    try:
        t0 = time.time()
        assert ztctl_json("show", "status", socket_path=gate.sock)["policy"]["revision"] == 1
        assert time.time() - t0 < 2
    finally:
        stalled.close()


def test_absent_daemon_gives_a_message_and_exit_status_3(tmp_path):
    r = ztctl("show", "status", socket_path=tmp_path / "none.sock")
    assert r.returncode == 3
    assert f"cannot reach ztgate at {tmp_path / 'none.sock'}" in r.stderr and "is ztgate running" in r.stderr
    r = ztctl("--socket", tmp_path / "none.sock", "clear", "counters")  # --socket before the verb works too
    assert r.returncode == 3


def test_refuses_a_second_instance_on_the_same_admin_socket(gate, tmp_path):
    write_pcap(tmp_path / "a.pcap", [])
    r = subprocess.run([ZTGATE, "--port-a", f"net_pcap0,rx_pcap={tmp_path / 'a.pcap'}",
                        "--port-b", f"net_pcap1,rx_pcap={tmp_path / 'a.pcap'}", "--hugepages", "off",
                        "--memory", "128", "--mbufs", "1024", "--eal-log-level", "error", "--flows", "1024",
                        "--replay-pps", "100000", "--admin-socket", str(gate.sock), "--stop-when-idle", "100"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "another ztgate answers on it" in r.stderr
    assert ztctl_json("show", "status", socket_path=gate.sock)["policy"]["revision"] == 1  # first one intact


# ---- changes (last: they alter the module's ztgate) ----------------------------------------

def test_clear_flows_with_a_filter_then_clear_counters_are_audit_logged(gate):
    j = ztctl_json("show", "flows", socket_path=gate.sock)
    before = len(j["flows"])
    r = ztctl("clear", "flows", "--port", 40001, socket_path=gate.sock)
    assert r.returncode == 0 and "1 flow(s) cleared" in r.stdout
    assert len(ztctl_json("show", "flows", socket_path=gate.sock)["flows"]) == before - 1
    assert ztctl_json("show", "flows", "--port", 40001, socket_path=gate.sock)["flows"] == []
    r = ztctl("clear", "counters", socket_path=gate.sock)
    assert r.returncode == 0, r.stderr
    assert ztctl_json("show", "drops", socket_path=gate.sock)["total"] == 0
    assert ztctl_json("show", "interfaces", socket_path=gate.sock)["interfaces"][0]["rx_packets"] == 0
    assert metric_sums(gate.scrape(), "ztgate_drops_total", "reason").get("policy_default_deny") == 0
    audit = [json.loads(line) for line in gate.audit.read_text().splitlines()]
    assert [(a["command"], a["args"], a["result"], a["uid"]) for a in audit[-2:]] == [
        ("clear flows", {"port": "40001"}, "ok", 0), ("clear counters", {}, "ok", 0)]


def test_a_key_with_a_newline_cannot_forge_an_audit_line(gate):
    # The key is echoed in the error message, which the stderr audit line carries: a newline in
    # it once started a second line reading as a forged record (found by the admin fuzz target).
    forged = "x\nztgate: audit 2026-01-01T00:00:00Z user=root uid=0 pid=1 socket=admin command='commit' args={} result=ok"
    before = gate.stderr().count("\n")
    r = ztctl("set", forged, "1", socket_path=gate.sock)
    assert r.returncode != 0 and "\\x0aztgate: audit" in r.stderr, r.stderr
    new = gate.stderr().splitlines()[before:]
    assert len([line for line in new if line.startswith("ztgate: audit")]) == 1, new
    assert "command='set'" in new[-1] and "result=error" in new[-1], new
    assert json.loads(gate.audit.read_text().splitlines()[-1])["result"] == "error"


def test_a_read_only_user_cannot_set(gate):
    r = ztctl("set", "log.level", "debug", uid=NOBODY, socket_path=gate.sock)
    assert r.returncode == 4 and "permission denied" in r.stderr
    r = ztctl("set", "log.level", "debug", socket_path=f"{gate.sock}.ro")
    assert r.returncode == 4 and "'set' changes the appliance's state and is refused" in r.stderr
    assert ztctl_json("show", "candidate", socket_path=gate.sock)["changes"] == []


def test_a_flow_timeout_commit_reaches_the_workers_and_delete_restores_the_default(gate):
    # (An apply that fails leaving running unchanged: tests/appliance/candidate_test.cpp.)
    assert ztctl("set", "flow.timeout.udp", "30", socket_path=gate.sock).returncode == 0
    r = ztctl("commit", socket_path=gate.sock)
    assert r.returncode == 0, r.stderr
    assert ztctl_json("show", "configuration", socket_path=gate.sock)["running"]["flow.timeout.udp"] == "30"
    assert ztctl_json("show", "runtime", socket_path=gate.sock)["flow_timeouts_s"]["udp"] == 30
    assert ztctl("delete", "flow.timeout.udp", socket_path=gate.sock).returncode == 0
    assert ztctl("commit", socket_path=gate.sock).returncode == 0
    assert ztctl_json("show", "runtime", socket_path=gate.sock)["flow_timeouts_s"]["udp"] == 60
    assert "no changes" in ztctl("show", "candidate", socket_path=gate.sock).stdout


def test_commit_confirmed_rolls_back_when_not_confirmed(gate):
    deny = ["test", "policy", "--from", "10.10.0.1", "--to", "10.10.0.2", "--proto", "udp", "--port", 53]
    assert ztctl_json(*deny, socket_path=gate.sock)["disposition"] == "deny"
    assert ztctl("set", "segment.zone-b.mode", "audit", socket_path=gate.sock).returncode == 0
    t = ztctl("show", "candidate", socket_path=gate.sock).stdout
    assert "[edit]\n+ segment.zone-b.mode audit" in t
    r = ztctl("commit", "confirmed", "1s", "--comment", "try audit", socket_path=gate.sock)
    assert r.returncode == 0 and "rolls back in 1 s" in r.stdout
    assert ztctl_json(*deny, socket_path=gate.sock)["disposition"] == "audit"  # in force at once
    deadline = time.time() + 5
    while time.time() < deadline:
        running = ztctl_json("show", "configuration", socket_path=gate.sock)["running"]
        if "segment.zone-b.mode" not in running:
            break
        time.sleep(0.1)
    assert "segment.zone-b.mode" not in running
    assert ztctl_json(*deny, socket_path=gate.sock)["disposition"] == "deny"
    history = ztctl_json("show", "configuration", socket_path=gate.sock)["history"]
    assert history[0]["automatic_rollback"] and history[1]["comment"] == "try audit"
    audit = [json.loads(line) for line in gate.audit.read_text().splitlines()]
    assert any(a["command"].startswith("commit (automatic rollback") and a["result"] == "ok" for a in audit)


def test_commit_confirmed_then_confirm_keeps_the_change(gate):
    assert ztctl("set", "volumetric.source_pps", "5000", socket_path=gate.sock).returncode == 0
    assert ztctl("commit", "confirmed", "1s", socket_path=gate.sock).returncode == 0
    assert ztctl("confirm", socket_path=gate.sock).returncode == 0
    time.sleep(1.5)
    assert ztctl_json("show", "volumetric", socket_path=gate.sock)["limits"]["source_pps"] == 5000
    assert ztctl("rollback", 1, socket_path=gate.sock).returncode == 0
    assert ztctl("commit", socket_path=gate.sock).returncode == 0
    assert ztctl_json("show", "volumetric", socket_path=gate.sock)["limits"]["source_pps"] == 0
    r = ztctl("clear", "blocklist", "10.10.0.0/24", socket_path=gate.sock)
    assert r.returncode == 0 and "0 blocklist entries removed (10.10.0.0/24)" in r.stdout


@pytest.fixture
def busy_gate(tmp_path):
    """A ztgate fed one allowed UDP frame over and over (net_pcap infinite_rx)."""
    os.chmod(tmp_path, 0o755)
    write_pcap(tmp_path / "loop.pcap", [Ether(src=MAC_A, dst=MAC_B) / IP(src="10.1.0.1", dst="10.2.0.1") /
                                        UDP(sport=7000, dport=7001) / (b"x" * 18)])
    g = Gate(tmp_path, "allow-all", tmp_path / "loop.pcap", port_a_args=",infinite_rx=1")
    yield g
    g.close()


def test_trace_and_stage_timing_on_live_traffic(busy_gate):
    r = ztctl("trace", 3, "--json", socket_path=busy_gate.sock)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert len(j["packets"]) == 3
    for p in j["packets"]:
        assert (p["src"], p["dst"], p["proto"], p["sport"], p["dport"]) == ("10.1.0.1", "10.2.0.1", "udp", 7000, 7001)
        assert p["forwarded"] and p["rule_id"] == 1 and "parsed" in p["steps"] and "forwarded" in p["steps"]
    t = ztctl("trace", 1, socket_path=busy_gate.sock)
    assert "1 of 1 packet(s) traced" in t.stdout and "10.1.0.1:7000 -> 10.2.0.1:7001" in t.stdout
    assert "FORWARDED" in t.stdout
    assert ztctl("set", "runtime", "timing", "on", socket_path=busy_gate.sock).returncode == 0
    time.sleep(0.2)
    j = ztctl_json("show", "runtime", socket_path=busy_gate.sock)
    assert j["stage_timing"]
    stages = {s["stage"]: s for s in j["workers"][0]["stages"]}
    assert stages["parse"]["packets"] > 0 and stages["parse"]["cycles_per_packet"] > 0
    assert "cycles/packet" in ztctl("show", "runtime", socket_path=busy_gate.sock).stdout
    bad = ztctl("set", "runtime", "timing", "maybe", socket_path=busy_gate.sock)
    assert bad.returncode == 1 and "expected on or off" in bad.stderr


def test_check_config_validates_a_yaml_file_without_starting(tmp_path):
    example = Path(__file__).resolve().parents[2] / "appliance" / "ztgate.example.yaml"
    r = subprocess.run([ZTGATE, "--check-config", str(example)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and f"{example}: configuration valid" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("ports:\n  a: net_null0\n  b: net_null1\n  workers: 99\n")
    r = subprocess.run([ZTGATE, "--check-config", str(bad)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "--workers 99: expected 1 to 64" in r.stderr and f"{bad}:4" in r.stderr


def test_live_flow_timeouts_age_flows_out_and_an_unconfirmed_commit_restores_them(tmp_path):
    os.chmod(tmp_path, 0o755)
    e = Ether(src=MAC_A, dst=MAC_B) / IP(src="10.1.0.1", dst="10.2.0.1")
    write_pcap(tmp_path / "in_a.pcap", [e / UDP(sport=7000, dport=7001), e / TCP(sport=7002, dport=80, flags="S")])
    g = Gate(tmp_path, "allow-all", tmp_path / "in_a.pcap")  # both frames replayed once, at start
    try:
        def flows():
            return {f["proto"]: f for f in ztctl_json("show", "flows", socket_path=g.sock)["flows"]}

        def wait_for(cond, what, seconds=4):
            deadline = time.time() + seconds
            while not cond():
                assert time.time() < deadline, what
                time.sleep(0.1)

        wait_for(lambda: set(flows()) == {"udp", "tcp"}, "the UDP and TCP flows were not opened")
        opened = time.time()
        assert ztctl_json("show", "runtime", socket_path=g.sock)["flow_timeouts_s"]["udp"] == 60
        time.sleep(max(0.0, opened + 1.5 - time.time()))
        assert "udp" in flows(), "idle 1.5 s: the default 60 s UDP timeout keeps the flow"

        bad = ztctl("set", "flow.timeout.udp", "0", socket_path=g.sock)
        assert bad.returncode == 1 and "flow.timeout.udp '0': expected 1s to 7 days" in bad.stderr
        assert ztctl("set", "flow.timeout.udp", "1", socket_path=g.sock).returncode == 0
        r = ztctl("commit", socket_path=g.sock)
        assert r.returncode == 0, r.stderr
        assert ztctl_json("show", "configuration", socket_path=g.sock)["running"]["flow.timeout.udp"] == "1"
        assert "  flow.timeout.udp 1\n" in ztctl("show", "configuration", socket_path=g.sock).stdout
        t = ztctl_json("show", "runtime", socket_path=g.sock)["flow_timeouts_s"]
        assert (t["udp"], t["tcp_syn"], t["tcp_closing"], t["tcp_established"]) == (1, 20, 20, 1800)
        wait_for(lambda: "udp" not in flows(), "the UDP flow, idle > 1 s, outlived its new 1 s timeout", 3)
        assert "tcp" in flows(), "the SYN-sent TCP flow keeps its 20 s timeout"

        # commit confirmed, not confirmed: the SYN flow goes under 1 s, then 20 s is back.
        assert ztctl("set", "flow.timeout.tcp_transitory", "1", socket_path=g.sock).returncode == 0
        assert ztctl("commit", "confirmed", "1s", socket_path=g.sock).returncode == 0
        assert ztctl_json("show", "runtime", socket_path=g.sock)["flow_timeouts_s"]["tcp_syn"] == 1
        wait_for(lambda: flows() == {}, "the SYN-sent flow outlived a 1 s transitory timeout", 3)

        def rolled_back():
            running = ztctl_json("show", "configuration", socket_path=g.sock)["running"]
            return running["flow.timeout.tcp_transitory"] == "20"
        wait_for(rolled_back, "commit confirmed 1s was not rolled back", 5)
        t = ztctl_json("show", "runtime", socket_path=g.sock)["flow_timeouts_s"]
        assert (t["udp"], t["tcp_syn"], t["tcp_closing"]) == (1, 20, 20), "the rollback restores the workers' timeouts"
    finally:
        g.close()


def test_a_reload_that_revokes_an_idle_flow_cuts_it_without_waiting_for_its_next_packet(tmp_path):
    # Two flows open at start and then stay idle; the reload drops the rule of one of them. The
    # worker's aging decides both again under the new revision: the revoked one leaves `show
    # flows` and counts as revoked, the other one stays, now of the new revision.
    os.chmod(tmp_path, 0o755)
    pol = tmp_path / "policy"
    pol.mkdir()
    head = ("segments:\n"
            "  - {name: zone-a, prefixes: [10.1.0.0/24], labels: {zone: a}}\n"
            "  - {name: zone-b, prefixes: [10.2.0.0/24], labels: {zone: b}}\n"
            "rules:\n"
            "  - {id: 1, name: app-udp, from: {segments: [zone-a]}, to: {segments: [zone-b]}, proto: udp, ports: [7001], action: allow}\n")
    web = "  - {id: 2, name: web, from: {segments: [zone-a]}, to: {segments: [zone-b]}, proto: tcp, ports: [80], action: allow}\n"
    (pol / "policy.yaml").write_text(head + web)
    e = Ether(src=MAC_A, dst=MAC_B) / IP(src="10.1.0.1", dst="10.2.0.1")
    write_pcap(tmp_path / "in_a.pcap", [e / UDP(sport=7000, dport=7001), e / TCP(sport=7002, dport=80, flags="S")])
    g = Gate(tmp_path, pol, tmp_path / "in_a.pcap")
    try:
        def flows():
            return {f["proto"]: f for f in ztctl_json("show", "flows", socket_path=g.sock)["flows"]}

        def revoked():
            m = re.findall(r'^ztgate_revoked_flows_total\{[^}]*\} (\S+)$', g.scrape(), re.M)
            return sum(float(v) for v in m)

        deadline = time.time() + 5
        while set(flows()) != {"udp", "tcp"}:
            assert time.time() < deadline, "the UDP and TCP flows were not opened"
            time.sleep(0.05)
        assert {f["revision"] for f in flows().values()} == {1}
        assert revoked() == 0
        (pol / "policy.yaml").write_text(head)
        g.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while "reloaded policy, revision 2" not in g.stderr():
            assert time.time() < deadline, g.stderr()
            time.sleep(0.05)
        deadline = time.time() + 5
        while set(flows()) != {"udp"}:
            assert time.time() < deadline, f"the idle TCP flow outlived the revision that revokes it: {flows()}"
            time.sleep(0.05)
        assert flows()["udp"]["revision"] == 2
        assert flows()["udp"]["rule_id"] == 1
        assert revoked() == 1
    finally:
        g.close()
