"""Component tests: ztgate taking its policy and epoch secrets from the real ztmanager (DESIGN.md
§5, issue 7) — real processes on 127.0.0.1: enrolment, revisions applied and ACKed, a policy
whose tests fail never applied, the manager gone (last good kept, persisted revision enforced at
a restart, verdicts on real frames), keys expiring (fail closed, restored by the manager), a NACK
shown by ztgate (log line and --stats-file "control_plane"), and bad arguments."""
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, Ether

from ztgate_harness import POLICIES, ZTGATE, run_cli, run_ztgate

REPO = POLICIES.parents[2]
EXAMPLE = REPO / "appliance" / "policy"
ZTMANAGER = os.environ.get("ZTMANAGER", str(REPO / "build" / "controlplane" / "ztmanager"))
A, B = "10.10.0.1", "10.10.0.2"
NULL_PORTS = ["--port-a", "net_null0", "--port-b", "net_null1", "--hugepages", "off", "--memory", "128",
              "--mbufs", "4096", "--flows", "4096", "--eal-log-level", "error", "-q"]

# Revision 2 of the example policy: untagged zone-a hosts lose port 8080 (the lab web server).
RULES_8080 = "ports: [8080, 5201]          # the lab's web server and iperf3"
RULES_NO_8080 = "ports: [5201]                # iperf3 only: the lab web server is closed"
TEST_8080 = "port: 8080, expect: allow, rule: legacy-http-from-zone-a}"
TEST_NO_8080 = "port: 8080, expect: deny, rule: default}"
# A policy whose own tests fail: the manager must never publish it.
TEST_IPERF = "port: 5201, expect: allow, rule: legacy-http-from-zone-a}"
TEST_IPERF_WRONG = "port: 5201, expect: deny, rule: default}"


def wait_for(predicate, timeout, what, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}" + (f"\n--- log ---\n{log()}" if log else ""))


class Proc:
    """A background process whose stderr+stdout go to a log file read back by the test."""

    def __init__(self, cmd, log: Path):
        self.log_path = log
        self.out = open(log, "ab")
        self.p = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.STDOUT)

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, pattern, timeout=20):
        rx = re.compile(pattern)
        wait_for(lambda: rx.search(self.log()) is not None, timeout, f"/{pattern}/ in {self.log_path.name}", self.log)

    def alive(self):
        return self.p.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=10)
                raise AssertionError(f"{self.log_path.name}: no exit within {timeout} s of signal {sig}\n{self.log()}")
        self.out.close()
        assert "runtime error:" not in self.log(), self.log()  # UBSan reports do not change the exit code
        return self.p.returncode

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(timeout=10)
        self.out.close()


class Lab:
    """A policy directory, a pre-shared secret, one ztmanager and the ztgates under test."""

    def __init__(self, root: Path):
        self.root = root
        self.policy = root / "policy"
        shutil.copytree(EXAMPLE, self.policy)
        self.state = root / "manager-state"
        self.psk = root / "psk"
        r = subprocess.run([ZTMANAGER, "psk", "generate", "--psk-file", str(self.psk)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        self.procs = []
        self.manager = None
        self.sync_port = 0
        self.enrol_port = 0

    def start_manager(self, sync_port=0, extra=()):
        (self.state / "endpoints").unlink(missing_ok=True)
        self.manager = self.spawn([ZTMANAGER, "serve", "--policy-dir", str(self.policy), "--state-dir", str(self.state),
                                   "--psk-file", str(self.psk), "--listen", f"127.0.0.1:{sync_port}",
                                   "--enrol-listen", "127.0.0.1:0", "--poll-ms", "100", *extra],
                                  self.root / "manager.log")
        wait_for(lambda: (self.state / "endpoints").exists(), 20, "the manager's endpoints file", self.manager.log)
        ends = dict(line.split() for line in (self.state / "endpoints").read_text().splitlines() if line.strip())
        self.sync_port, self.enrol_port = int(ends["sync"]), int(ends["enrol"])
        return self.manager

    def token(self, name):
        r = subprocess.run([ZTMANAGER, "token", "create", "--state-dir", str(self.state), "--name", name],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    def status(self):
        r = subprocess.run([ZTMANAGER, "status", "--state-dir", str(self.state)], capture_output=True, text=True,
                           timeout=30)
        return r.stdout

    def manager_args(self, name, sync_port=None, enrol=True):
        args = ["--manager", f"127.0.0.1:{sync_port or self.sync_port}", "--state-dir", str(self.root / name),
                "--psk-file", str(self.psk)]
        if enrol:
            args += ["--enrol-port", str(self.enrol_port), "--enrol-token", self.token(name),
                     "--manager-ca", str(self.state / "ca.pem")]
        return args

    def spawn(self, cmd, log):
        p = Proc(cmd, log)
        self.procs.append(p)
        return p

    def ztgate(self, args, log_name):
        return self.spawn([ZTGATE, *NULL_PORTS, *args], self.root / log_name)

    def edit(self, file, old, new):
        path = self.policy / file
        text = path.read_text()
        assert old in text, f"{old!r} not in {path}"
        tmp = path.with_name("." + path.name + ".tmp")
        tmp.write_text(text.replace(old, new, 1))
        tmp.replace(path)

    def teardown(self):
        for p in self.procs:
            p.kill()


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path)
    yield lab
    lab.teardown()


def frame(src, dst, l4):
    return bytes(Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b") / IP(src=src, dst=dst) / l4)


def test_revisions_from_the_manager_are_applied_acked_kept_and_persisted(lab, tmp_path):
    lab.start_manager()
    stats = tmp_path / "gw1-stats.json"
    gw = lab.ztgate([*lab.manager_args("gw1"), "--stats-file", str(stats)], "gw1.log")
    gw.wait_log(r"ztgate: enrolled with the manager as spiffe://[^ ]+/appliance/gw1")
    gw.wait_log(r"ztgate: applied revision 1 from the manager")
    wait_for(lambda: "gw1: acked revision=1" in lab.status(), 20, "gw1 acked 1 in ztmanager status")

    # An edit of the policy (tests updated with it) becomes revision 2 on both ends.
    lab.edit("tests.yaml", TEST_8080, TEST_NO_8080)
    lab.edit("rules.yaml", RULES_8080, RULES_NO_8080)
    # The push carried the signed delta from revision 1 (one rule's ports changed); ztgate
    # checked it against both bundles and says what changed.
    gw.wait_log(r"ztgate: applied revision 2 from the manager \(delta from 1: rules \+0 -0 ~1; ")
    wait_for(lambda: "gw1: acked revision=2" in lab.status(), 20, "gw1 acked 2 in ztmanager status")

    # A policy whose tests fail is never published, so never applied: ztgate stays at 2.
    lab.edit("tests.yaml", TEST_IPERF, TEST_IPERF_WRONG)
    lab.manager.wait_log(r"policy refused \(1 of \d+ policy tests failed\); still serving revision 2")
    time.sleep(1.0)
    assert "revision 3" not in gw.log()
    assert "published revision: 2" in lab.status()
    assert "gw1: acked revision=2" in lab.status()

    # The manager goes away: ztgate keeps running on revision 2 and retries.
    assert lab.manager.stop() == 0, lab.manager.log()
    gw.wait_log(r"session with manager ended")
    time.sleep(1.0)
    assert gw.alive(), gw.log()
    assert "failing closed" not in gw.log()
    assert gw.stop() == 0, gw.log()  # SIGTERM stops the sync thread, then the workers
    assert "signal 15, stopping" in gw.log()
    # Its --stats-file shows the control plane as it was: revision 2 enforced and ACKed, the
    # manager gone, not failed closed.
    cp = json.loads(stats.read_text())["control_plane"]
    assert cp["manager"] == f"127.0.0.1:{lab.sync_port}" and cp["identity"].endswith("/appliance/gw1"), cp
    assert cp["enforced_revision"] == 2 and cp["highest_accepted_revision"] == 2, cp
    assert cp["last_reply"]["kind"] == "ack" and cp["last_reply"]["revision"] == 2, cp
    assert cp["acks"] >= 2 and cp["nacks"] == 0 and cp["last_nack"] is None, cp
    # The reply history (ztctl show control-plane): the ACKs of revisions 1 then 2, in order (a
    # revision pushed again with a new epoch's secrets, at a 15-minute boundary, ACKs again).
    assert [h["kind"] for h in cp["history"]] == ["ack"] * len(cp["history"]), cp
    revisions = [h["revision"] for h in cp["history"]]
    assert [r for i, r in enumerate(revisions) if i == 0 or r != revisions[i - 1]][-2:] == [1, 2], cp
    assert cp["last_delta"]["revision"] == 2 and cp["last_delta"]["base_revision"] == 1, cp
    assert cp["last_delta"]["summary"] == "delta from 1: rules +0 -0 ~1", cp
    assert cp["connected"] is False and cp["last_session_error"], cp
    assert cp["failed_closed"] is False, cp

    # Restarted with the manager down, it enforces the persisted revision 2 at once.
    gw2 = lab.ztgate(lab.manager_args("gw1", enrol=False), "gw1-restart.log")
    gw2.wait_log(r"ztgate: enforcing persisted revision 2 from the state directory")
    gw2.wait_log(r"forwarding net_null0 <-> net_null1")
    assert gw2.stop(signal.SIGINT) == 0, gw2.log()

    # Verdicts of the persisted revision 2 on real frames, manager still down: untagged zone-a
    # traffic to 8080 (allowed in revision 1) is now denied, 5201 still passes.
    closed = frame(A, B, TCP(sport=40000, dport=8080, flags="S"))
    iperf = frame(A, B, TCP(sport=40001, dport=5201, flags="S"))
    other = frame(A, B, TCP(sport=40002, dport=9090, flags="S"))
    arp = bytes(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=A, pdst=B))
    r = run_ztgate(tmp_path / "verdicts", frames_a=[closed, iperf, other, arp], policy=None,
                   extra=lab.manager_args("gw1", enrol=False))
    assert r.returncode == 0 and "runtime error:" not in r.stderr, r.stderr
    assert "enforcing persisted revision 2" in r.stderr
    assert r.out_b == [iperf, arp]
    assert r.stats["drops"] == {"policy_default_deny": 2}


def test_expired_keys_fail_closed_and_the_manager_restores_enforcement(lab, tmp_path):
    # Short epochs: a push carries the secrets of epochs e-1..e+1, so with the manager gone the
    # keys run out within two epochs.
    epochs = ["--epoch-seconds", "3", "--epoch-grace-ms", "200", "--tag-window-ms", "200"]
    lab.start_manager(extra=epochs)
    port = lab.sync_port
    gw = lab.ztgate(lab.manager_args("gw1"), "gw1.log")
    gw.wait_log(r"ztgate: applied revision 1 from the manager")
    assert lab.manager.stop() == 0, lab.manager.log()
    gw.wait_log(r"ztgate: revision 1 expired \(keys expiry .*failing closed.*policy_expired", timeout=20)
    assert gw.alive(), gw.log()
    lab.start_manager(sync_port=port, extra=epochs)
    gw.wait_log(r"applied revision 1 from the manager .*enforcement restored", timeout=30)
    assert gw.stop() == 0, gw.log()
    assert lab.manager.stop() == 0, lab.manager.log()

    # Restarted after the persisted keys ran out, with the manager down: it fails closed before
    # the first packet — a new untagged flow revision 1 allows is dropped as policy_expired.
    expiry = int(re.findall(r"keys expire at unix (\d+)", gw.log())[-1])
    wait_for(lambda: time.time() > expiry + 0.5, 15, "the persisted keys to expire")
    iperf = frame(A, B, TCP(sport=40001, dport=5201, flags="S"))
    arp = bytes(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=A, pdst=B))
    r = run_ztgate(tmp_path / "verdicts", frames_a=[iperf, arp], policy=None,
                   extra=lab.manager_args("gw1", sync_port=port, enrol=False))
    assert r.returncode == 0 and "runtime error:" not in r.stderr, r.stderr
    assert "enforcing persisted revision 1" in r.stderr
    assert "failing closed" in r.stderr
    assert r.out_b == [arp]
    assert r.stats["drops"] == {"policy_expired": 1}


def test_a_nack_is_logged_by_ztgate_and_shown_in_its_stats_file(lab, tmp_path):
    lab.start_manager()
    wrong = tmp_path / "other-psk"
    r = subprocess.run([ZTMANAGER, "psk", "generate", "--psk-file", str(wrong)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    args = lab.manager_args("gw1")
    args[args.index("--psk-file") + 1] = str(wrong)  # provisioned with another pre-shared secret
    stats = tmp_path / "gw1-stats.json"
    gw = lab.ztgate([*args, "--stats-file", str(stats)], "gw1.log")
    gw.wait_log(r"ztgate: NACK revision 1 from the manager: NACK_CODE_KEY_UNWRAP_FAILED: .*"
                r"\[resource: keys\.secrets\[epoch=\d+\]\]; still enforcing no policy")
    wait_for(lambda: "gw1: nacked revision=1 code=NACK_CODE_KEY_UNWRAP_FAILED" in lab.status(), 20,
             "the NACK in ztmanager status")
    assert "applied revision" not in gw.log()
    assert gw.stop() == 0, gw.log()
    cp = json.loads(stats.read_text())["control_plane"]
    assert cp["enforced_revision"] == 0 and cp["connected"] is True, cp
    assert cp["last_reply"]["kind"] == "nack" and cp["last_reply"]["revision"] == 1, cp
    nack = cp["last_nack"]
    assert nack["code"] == "NACK_CODE_KEY_UNWRAP_FAILED" and nack["resource"].startswith("keys.secrets[epoch="), cp
    assert "psk" in nack["message"].lower(), cp
    assert cp["nacks"] >= 1 and cp["acks"] == 0 and cp["failed_closed"] is False, cp
    assert cp["history"][0]["kind"] == "nack" and cp["history"][0]["code"] == "NACK_CODE_KEY_UNWRAP_FAILED", cp


def test_without_a_persisted_bundle_and_no_manager_nothing_crosses(lab):
    lab.start_manager()
    args = lab.manager_args("gw1")
    lab.manager.stop()
    # Enrolment needs the manager: without it ztgate exits 1 and says why.
    r = run_cli([*NULL_PORTS, *args], timeout=60)
    assert r.returncode == 1, r.stderr
    assert "enrolment with 127.0.0.1:" in r.stderr


@pytest.mark.parametrize("args, option", [
    (["--manager", "127.0.0.1:7443", "--policy", str(EXAMPLE), "--state-dir", "/tmp/x", "--psk-file", "/tmp/p"],
     "--manager and --policy are mutually exclusive"),
    (["--manager", "127.0.0.1:7443", "--state-dir", "/tmp/x"], "--psk-file"),
    (["--manager", "127.0.0.1:7443", "--psk-file", "/tmp/p"], "--state-dir"),
    (["--manager", "127.0.0.1", "--state-dir", "/tmp/x", "--psk-file", "/tmp/p"], "--manager '127.0.0.1'"),
    (["--manager", "127.0.0.1:99999", "--state-dir", "/tmp/x", "--psk-file", "/tmp/p"], "--manager"),
    (["--manager", "127.0.0.1:7443", "--state-dir", "/tmp/x", "--psk-file", "/tmp/p", "--enrol-port", "0"],
     "--enrol-port"),
    (["--manager", "127.0.0.1:7443", "--state-dir", "/tmp/x", "--psk-file", "/tmp/p", "--key-master", "/tmp/k"],
     "--key-master"),
    (["--psk-file", "/tmp/p"], "--psk-file is only meaningful with --manager"),
])
def test_bad_manager_arguments_exit_2_naming_the_option(args, option):
    r = run_cli([*NULL_PORTS, *args])
    assert r.returncode == 2, r.stderr
    assert option in r.stderr


def test_missing_files_and_a_missing_token_exit_2_naming_the_option(lab, tmp_path):
    state = tmp_path / "gw"
    base = [*NULL_PORTS, "--manager", "127.0.0.1:7443", "--state-dir", str(state)]
    r = run_cli([*base, "--psk-file", str(tmp_path / "nope")])
    assert r.returncode == 2 and "--psk-file" in r.stderr, r.stderr
    r = run_cli([*base, "--psk-file", str(lab.psk)])
    assert r.returncode == 2 and "--enrol-token" in r.stderr, r.stderr
    r = run_cli([*base, "--psk-file", str(lab.psk), "--enrol-token", "zt1-x"])
    assert r.returncode == 2 and "--manager-ca" in r.stderr, r.stderr
    assert "forwarding" not in r.stderr
