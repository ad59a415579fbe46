"""Faults with real processes (issue 10): ztgate killed with SIGKILL mid-traffic and restarted
with its manager down, ztmanager pushing revisions faster than 1000 a minute under traffic, the
whole ztgate stopped (SIGSTOP) and continued, its control thread alone stopped (ptrace) across
the expiry of its keys, and the appliance's wall clock stepped forward and back (libfaketime). Each time the appliance keeps enforcing, recovers on its own, and its
counters add up.

Traffic: a sender paces a cycle of frames (TCP SYNs — a SYN repeated in its flow is a
retransmission a stateful peer accepts — and ICMP echoes) into a veth pair in the root
namespace with no addresses (zt-ht1-s -> zt-ht1-g), about 2000 packets/s; ztgate's port A reads
it (net_pcap rx_iface) and port B writes what ztgate forwards to a capture. A paced stream rather
than net_pcap's infinite replay keeps the volumetric defences (heavy hitters, overload shedding)
out of what these tests measure and leaves the two cores free. Verdicts come from that capture
and from the counters ztgate writes on exit (--stats-file). In appliance/policy rule 400 lets
untagged zone-a ping zone-b and rule 410 lets it reach 8080 and 5201. The manager cases reuse
test_manager.py's Lab (ztmanager and state directories on 127.0.0.1). Needs root (veth)."""
import json
import os
import re
import urllib.request
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import Ether

from test_manager import RULES_8080, RULES_NO_8080, TEST_8080, TEST_NO_8080, Lab, wait_for
from ztgate_harness import (ZTGATE, clear_of_epoch_end, read_frames, run_ztgate, run_ztgen, write_master,
                            write_pcap)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (veth)")

ZTMANAGER = os.environ.get("ZTMANAGER", str(Path(__file__).resolve().parents[2] / "build" / "controlplane" /
                                             "ztmanager"))
POLICY = Path(__file__).resolve().parents[2] / "appliance" / "policy"
CHURN = Path(__file__).resolve().parent / "policies" / "churn"
A, B = "10.10.0.1", "10.10.0.2"
PING, LEGACY = "400", "410"
PACER = """
import socket, sys, time
from scapy.utils import RawPcapReader
iface, cap, pps = sys.argv[1], sys.argv[2], float(sys.argv[3])
frames = [bytes(d) for d, _ in RawPcapReader(cap)]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
nxt, i = time.monotonic(), 0
while True:
    s.send(frames[i % len(frames)])
    i += 1
    nxt += 1.0 / pps
    d = nxt - time.monotonic()
    if d > 0:
        time.sleep(d)
"""


def eth():
    return Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b")


def syns(dport, n, first_sport):
    return [bytes(eth() / IP(src=A, dst=B) / TCP(sport=first_sport + i, dport=dport, flags="S", seq=1000))
            for i in range(n)]


def pings(n, ident=7):
    return [bytes(eth() / IP(src=A, dst=B) / ICMP(id=ident, seq=i)) for i in range(n)]


def sh(*args, check=True):
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


@pytest.fixture
def veth():
    names = ("zt-ht1-s", "zt-ht1-g")
    sh("ip", "link", "del", names[0], check=False)
    sh("ip", "link", "add", names[0], "type", "veth", "peer", "name", names[1])
    try:
        for n in names:
            sh("sysctl", "-qw", f"net.ipv6.conf.{n}.disable_ipv6=1", check=False)
            sh("ethtool", "-K", n, "tso", "off", "gso", "off", "gro", "off", "tx", "off", "rx", "off", check=False)
            sh("ip", "link", "set", n, "up")
        yield names
    finally:
        sh("ip", "link", "del", names[0], check=False)


class Traffic:
    """The pacer: sends `frames` round and round on the veth until stopped."""

    def __init__(self, tmp: Path, veth, frames, pps=2000):
        cap = tmp / "traffic.pcap"
        write_pcap(cap, frames)
        self.p = subprocess.Popen(["/usr/bin/python3", "-c", PACER, veth[0], str(cap), str(pps)])

    def stop(self):
        self.p.kill()
        self.p.wait(timeout=10)


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path)
    yield lab
    lab.teardown()


def start_manager(lab, poll_ms=100, sync_port=0):
    """Lab.start_manager with a policy-directory poll interval of our own."""
    (lab.state / "endpoints").unlink(missing_ok=True)
    lab.manager = lab.spawn([ZTMANAGER, "serve", "--policy-dir", str(lab.policy), "--state-dir", str(lab.state),
                             "--psk-file", str(lab.psk), "--listen", f"127.0.0.1:{sync_port}",
                             "--enrol-listen", "127.0.0.1:0", "--poll-ms", str(poll_ms),
                             "--settle-ms", str(min(poll_ms, 20))], lab.root / "manager.log")
    wait_for(lambda: (lab.state / "endpoints").exists(), 20, "the manager's endpoints file", lab.manager.log)
    ends = dict(line.split() for line in (lab.state / "endpoints").read_text().splitlines() if line.strip())
    lab.sync_port, lab.enrol_port = int(ends["sync"]), int(ends["enrol"])


def gate_args(tmp: Path, veth, out: Path, stats: Path):
    empty = tmp / "empty.pcap"
    write_pcap(empty, [])
    return ["--port-a", f"net_pcap0,rx_iface={veth[1]},tx_pcap=/dev/null",
            "--port-b", f"net_pcap1,rx_pcap={empty},tx_pcap={out}",
            "--hugepages", "off", "--memory", "128", "--mbufs", "4096", "--flows", "4096",
            "--eal-log-level", "error", "-q", "--stats-file", str(stats)]


def stats_of(path: Path):
    s = json.loads(path.read_text())
    assert s["received"] == s["forwarded"] + s["dropped"], s
    assert s["received"] > 0, s
    return s


def close_8080(lab):
    lab.edit("tests.yaml", TEST_8080, TEST_NO_8080)
    lab.edit("rules.yaml", RULES_8080, RULES_NO_8080)


def test_sigkill_mid_traffic_then_restart_enforces_the_persisted_revision_before_reconnecting(lab, veth, tmp_path):
    allowed, closed = pings(16), syns(8080, 16, 41000)
    traffic = Traffic(tmp_path, veth, allowed + closed)
    start_manager(lab)
    port = lab.sync_port
    first = tmp_path / "first.json"
    gw = lab.spawn([ZTGATE, *gate_args(tmp_path, veth, tmp_path / "first.pcap", first), *lab.manager_args("gw1")],
                   tmp_path / "gw1.log")
    gw.wait_log(r"ztgate: applied revision 1 from the manager")
    close_8080(lab)
    gw.wait_log(r"ztgate: applied revision 2 from the manager")
    time.sleep(0.5)
    gw.p.send_signal(signal.SIGKILL)  # mid-traffic: no stop, no flush, no stats
    assert gw.p.wait(timeout=10) == -signal.SIGKILL
    assert not first.exists()
    assert lab.manager.stop() == 0, lab.manager.log()

    # Back with the manager down: revision 2 from the state directory, from the first packet on.
    out, again = tmp_path / "again.pcap", tmp_path / "again.json"
    gw2 = lab.spawn([ZTGATE, *gate_args(tmp_path, veth, out, again),
                     *lab.manager_args("gw1", sync_port=port, enrol=False)], tmp_path / "gw1-again.log")
    gw2.wait_log(r"ztgate: enforcing persisted revision 2 from the state directory")
    gw2.wait_log(r"forwarding net_pcap0 <-> net_pcap1")
    time.sleep(1.0)
    assert gw2.alive(), gw2.log()
    # The manager returns on its old port: the appliance reconnects on its own and ACKs.
    back = int(time.time())
    start_manager(lab, sync_port=port)

    def acked_again():  # the manager keeps the last ACK across restarts: wait for a newer one
        m = re.search(r"gw1: acked revision=2 at=(\d+)", lab.status())
        return m is not None and int(m.group(1)) >= back
    wait_for(acked_again, 20, "gw1 back in session, ACKing 2 again", gw2.log)
    time.sleep(0.5)
    assert gw2.stop() == 0, gw2.log()
    traffic.stop()
    s = stats_of(again)
    left = read_frames(out)
    # Pings pass under rule 400; 8080, closed by revision 2, meets default deny and never leaves.
    # Nothing was decided without a policy (no_policy) and nothing else dropped.
    assert left and set(left) <= set(allowed), "a frame revision 2 denies left"
    assert s["forwarded"] == len(left) == s["rules"][PING]["packets_forwarded"]
    assert set(s["drops"]) == {"policy_default_deny"}, s["drops"]
    assert LEGACY not in s["rules"] or s["rules"][LEGACY]["packets_forwarded"] == 0
    assert s["control_plane"]["enforced_revision"] == 2, s["control_plane"]


@pytest.fixture
def shm_lab():
    """A Lab whose state directories are on tmpfs: the manager and ztgate fsync every revision
    they persist, and on this VM's disk that alone caps the rate near 800 a minute."""
    root = Path(tempfile.mkdtemp(prefix="zt-ht1-", dir="/dev/shm"))
    lab = Lab(root)
    try:
        yield lab
    finally:
        lab.teardown()
        shutil.rmtree(root, ignore_errors=True)


def test_revisions_pushed_at_over_1000_a_minute_under_traffic_drop_nothing_and_the_last_is_enforced(
        shm_lab, veth, tmp_path):
    lab = shm_lab
    # A small policy (policies/churn), so that validating, testing and signing a revision is not
    # what limits the rate (the example policy's Hyperscan compile and 21 tests take ~0.2 s here).
    for f in lab.policy.iterdir():
        f.unlink()
    (lab.policy / "policy.yaml").write_text((CHURN / "policy.yaml").read_text())
    start_manager(lab, poll_ms=5)
    port = lab.sync_port
    out, stats = tmp_path / "out.pcap", tmp_path / "gw.json"
    gw = lab.spawn([ZTGATE, *gate_args(tmp_path, veth, out, stats), *lab.manager_args("gw1")], tmp_path / "gw1.log")
    gw.wait_log(r"ztgate: applied revision 1 from the manager")
    traffic = Traffic(tmp_path, veth, syns(5201, 16, 40000) + pings(16))  # allowed by every revision
    time.sleep(0.3)

    # Rule 500 (a deny of telnet) gains and loses port 2323 every 15 ms for 4 s: each edit is a
    # new revision that changes nothing for the untagged traffic (edits that come faster than
    # the manager publishes are coalesced: it publishes what the directory holds).
    narrow, wide = "ports: [23]", "ports: [23, 2323]"
    t0 = time.monotonic()
    flips = 0
    while time.monotonic() - t0 < 4.0:
        if flips % 2 == 0:
            lab.edit("policy.yaml", narrow, wide)
        else:
            lab.edit("policy.yaml", wide, narrow)
        flips += 1
        time.sleep(0.015)
    lab.edit("policy.yaml", "ports: [8080, 5201]", "ports: [5201]")  # the last: 8080 closes
    seen = []

    def settled():  # the manager published the last edit and gw1 ACKed it
        st = lab.status()
        m = re.search(r"published revision: (\d+)", st)
        seen.append((m and int(m.group(1)), time.monotonic()))
        return (m is not None and f"gw1: acked revision={m.group(1)} " in st + " " and len(seen) > 1
                and seen[-2][0] == seen[-1][0] and seen[-1][1] - t0 > 4.05)
    wait_for(settled, 20, "gw1 to ACK the last revision", gw.log)
    final = seen[-1][0]
    elapsed = seen[-2][1] - t0
    applied = len(re.findall(r"ztgate: applied revision \d+ from the manager", gw.log())) - 1
    time.sleep(0.3)
    assert gw.stop() == 0, gw.log()
    traffic.stop()
    assert lab.manager.stop() == 0, lab.manager.log()
    # The manager published `final - 1` revisions in the window (edits faster than it publishes
    # are coalesced); ztgate applied what reached it, skipping to the newest when it was busy (a
    # push carries a whole signed bundle and a delta from the last it ACKed), and ACKed the last.
    rate = (final - 1) / elapsed * 60
    print(f"\n{final - 1} revisions published in {elapsed:.1f} s under traffic ({rate:.0f} per minute), "
          f"{applied} applied by ztgate; final {final}")
    assert rate >= 1000, f"{final - 1} revisions published in {elapsed:.1f} s"
    assert applied >= 10, f"ztgate applied only {applied} revisions"

    s = stats_of(stats)
    assert s["drops"] == {}, s["drops"]  # no swap dropped a packet
    assert s["forwarded"] == s["received"] == len(read_frames(out))
    assert s["control_plane"]["enforced_revision"] == final, s["control_plane"]

    # The last revision is what was persisted and is enforced: 8080 closed, 5201 open.
    closed, iperf = syns(8080, 1, 45000)[0], syns(5201, 1, 45001)[0]
    r = run_ztgate(tmp_path / "verdicts", frames_a=[closed, iperf], policy=None,
                   extra=lab.manager_args("gw1", sync_port=port, enrol=False))
    assert r.returncode == 0 and "runtime error:" not in r.stderr, r.stderr
    assert f"enforcing persisted revision {final}" in r.stderr
    assert r.out_b == [iperf]
    assert r.stats["drops"] == {"policy_default_deny": 1}


def test_sigstop_and_sigcont_stall_nothing_for_good_and_the_counters_add_up(lab, veth, tmp_path):
    allowed, denied = syns(5201, 16, 40000), syns(9090, 16, 41000)
    start_manager(lab)
    out, stats = tmp_path / "out.pcap", tmp_path / "gw.json"
    gw = lab.spawn([ZTGATE, *gate_args(tmp_path, veth, out, stats), *lab.manager_args("gw1")], tmp_path / "gw1.log")
    gw.wait_log(r"ztgate: applied revision 1 from the manager")
    traffic = Traffic(tmp_path, veth, allowed + denied)  # after the first policy: no no_policy drops
    time.sleep(0.5)
    gw.p.send_signal(signal.SIGSTOP)  # every thread: workers, control, manager sync
    time.sleep(2.0)
    gw.p.send_signal(signal.SIGCONT)
    time.sleep(0.5)
    assert gw.alive(), gw.log()
    # The control plane still works: a new revision is applied and ACKed.
    close_8080(lab)
    gw.wait_log(r"ztgate: applied revision 2 from the manager", timeout=30)
    wait_for(lambda: "gw1: acked revision=2" in lab.status(), 20, "gw1 acked 2", gw.log)
    time.sleep(0.3)
    assert gw.stop() == 0, gw.log()
    traffic.stop()
    s = stats_of(stats)
    left = read_frames(out)
    assert left and set(left) <= set(allowed)
    assert s["forwarded"] == len(left) == s["rules"][LEGACY]["packets_forwarded"]
    # 9090 meets default deny. After the stall the worker finds its RX queue full: it is behind
    # and sheds new untagged flows (overload_shed, dataplane/README.md "Volumetric") until it has
    # caught up; the senders' SYNs are retried and the allowed ones pass again.
    assert set(s["drops"]) <= {"policy_default_deny", "overload_shed"}, s["drops"]
    assert s["rules"]["0"]["packets_dropped"] == s["drops"]["policy_default_deny"] > 0
    port_a = s["ports"][0]
    assert port_a["rx_packets"] == port_a["hw"]["ipackets"] == s["received"], port_a


# --- the control thread alone stalled (ptrace) ----------------------------------------------------

class ThreadStall:
    """Stops one thread of a process, the others running on: ptrace(PTRACE_SEIZE) attaches to that
    thread only and PTRACE_INTERRUPT stops it (no group stop, unlike SIGSTOP); PTRACE_DETACH lets it
    go. ztgate's main thread is its control loop (expiry checks, re-keying, clock following, stats);
    the workers, the manager sync and the admin socket have threads of their own."""
    SEIZE, INTERRUPT, DETACH = 0x4206, 0x4207, 17

    def __init__(self, tid):
        import ctypes
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        self.tid = tid
        assert self.libc.ptrace(self.SEIZE, tid, None, None) == 0, f"PTRACE_SEIZE: errno {ctypes.get_errno()}"
        assert self.libc.ptrace(self.INTERRUPT, tid, None, None) == 0, f"PTRACE_INTERRUPT: errno {ctypes.get_errno()}"
        _, status = os.waitpid(tid, 0x40000000)  # __WALL: the interrupt stop
        assert os.WIFSTOPPED(status), status
        state = Path(f"/proc/{tid}/status").read_text()
        assert re.search(r"State:\s+t", state), state  # tracing stop: this thread only

    def release(self):
        assert self.libc.ptrace(self.DETACH, self.tid, None, None) == 0


def test_a_stalled_control_thread_stalls_no_worker_and_expiry_still_fails_closed(lab, veth, tmp_path):
    """ztgate's control thread alone is stopped (ptrace) with the manager gone, across the moment
    its keys run out. The workers go on forwarding the flows they have, and fail closed at the
    expiry by themselves (the snapshot carries it): new flows are refused as policy_expired while
    the thread that would mark the snapshot expired is still stopped. Released, it catches up."""
    epochs = ["--epoch-seconds", "3", "--epoch-grace-ms", "200", "--tag-window-ms", "200"]
    lab.start_manager(extra=epochs)
    out, stats, sock = tmp_path / "out.pcap", tmp_path / "gw.json", tmp_path / "admin.sock"
    gw = lab.spawn([ZTGATE, *gate_args(tmp_path, veth, out, stats), "--admin-socket", str(sock),
                    *lab.manager_args("gw1")], tmp_path / "gw1.log")
    gw.wait_log(r"ztgate: applied revision 1 from the manager")
    ztctl = os.environ.get("ZTCTL", str(Path(ZTGATE).resolve().parent / "src" / "ztctl" / "ztctl"))

    def counters():
        r = subprocess.run([ztctl, "show", "drops", "--json", "--socket", str(sock)], capture_output=True,
                           text=True, timeout=15)
        assert r.returncode == 0, r.stderr
        drops = json.loads(r.stdout)["by_reason"]
        r = subprocess.run([ztctl, "show", "interfaces", "--json", "--socket", str(sock)], capture_output=True,
                           text=True, timeout=15)
        assert r.returncode == 0, r.stderr
        ifs = json.loads(r.stdout)["interfaces"]
        return drops, ifs[0]["rx_packets"], ifs[1]["tx_packets"]

    # Established traffic first: 16 allowed flows (SYNs repeated in their flows, rule 410).
    allowed = syns(5201, 16, 40000)
    traffic = Traffic(tmp_path, veth, allowed, pps=1000)
    try:
        time.sleep(0.5)
        assert lab.manager.stop() == 0, lab.manager.log()
        expiry = int(re.findall(r"keys expire at unix (\d+)", gw.log())[-1])
        assert expiry - time.time() > 0.3, "the keys expire too soon to stall before them"
        stall = ThreadStall(gw.p.pid)  # the main thread's id is the process id
        try:
            before, rx_before, tx_before = counters()
            assert "policy_expired" not in before, before
            # New flows, one SYN each, from now on: allowed by rule 410 until the expiry.
            (tmp_path / "fresh").mkdir()
            fresh = Traffic(tmp_path / "fresh", veth, syns(5201, 3000, 50000), pps=300)
            wait_for(lambda: time.time() > expiry + 1.0, 15, "the keys' expiry to pass")
            during, rx_during, tx_during = counters()
            fresh.stop()
            assert re.search(r"State:\s+t", Path(f"/proc/{gw.p.pid}/status").read_text())  # still stopped
            # The workers ran: they received and forwarded while the control thread was stopped...
            assert rx_during > rx_before and tx_during > tx_before, (rx_before, rx_during, tx_before, tx_during)
            # ... and refused new flows at the expiry by themselves.
            assert during.get("policy_expired", 0) > 0, during
            assert "revision 1 expired" not in gw.log(), gw.log()  # the control thread has said nothing yet
        finally:
            stall.release()
        # Released: the control loop marks the revision expired and says so.
        gw.wait_log(r"ztgate: revision 1 expired \(keys expiry", timeout=10)
        time.sleep(0.3)
    finally:
        traffic.stop()
    assert gw.stop() == 0, gw.log()
    st = stats_of(stats)
    assert set(st["drops"]) == {"policy_expired"}, st["drops"]
    assert st["drops"]["policy_expired"] >= during["policy_expired"]
    # Every frame forwarded belongs to a flow admitted before the expiry: the 16 established
    # ones, and fresh ones whose SYN came before it.
    left = read_frames(out)
    assert left and set(allowed) <= set(left)


# --- clock jumps (libfaketime) ----------------------------------------------------------------

FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"
SENDER = """
import socket, sys, time
from scapy.utils import RawPcapReader
iface, cap, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
for data, meta in RawPcapReader(cap):
    at = start + meta.sec + meta.usec / 1e6
    while time.time() < at:
        time.sleep(min(0.002, max(0.0, at - time.time())))
    s.send(bytes(data))
"""


@pytest.mark.skipif(not Path(FAKETIME_LIB).exists(), reason="needs Debian's faketime (install-deps.sh)")
def test_clock_jumps_forward_and_back_neither_admit_stale_tags_nor_stop_fresh_ones(tmp_path, veth):
    """ztgate runs under libfaketime and follows its wall clock while running (dataplane/README.md
    "Clock"): started 30 s behind it refuses every tag for its time, and taking the fake clock
    back to true makes fresh tags pass without a restart. Then the clock steps +30 s (tags
    refused: the appliance is wrong), back to true (fresh tags pass at once: nothing was
    accepted at the wrong time), back 0.9 s and back 2.5 s more. A sender stamps tags with the
    true time, except in the last phase, where its clock stepped back with ztgate's. Copies of
    accepted tags are sent through every step; none passes. A step back holds tag verification
    at the newest time it accepted a tag at: tags of the clock that stepped back 2.5 s are
    refused for 2.5 s - W (1 s), and no longer."""
    # A one-day key epoch: the +-30 s steps stay inside one epoch, and the waits below (up to
    # 100 s with 900 s epochs, in 11 % of the runs) happen only within a minute of midnight UTC.
    epoch = 86400
    master = write_master(tmp_path)
    clear_of_epoch_end(epoch, 60)
    while time.time() % epoch < 40:  # -30 s must not step back into the previous epoch
        time.sleep(0.5)
    clock = tmp_path / "faketime.rc"
    clock.write_text("-30\n")  # wrong at start
    # Only the wall clock is faked (monotonic time never jumps). Under ASan the preloaded
    # libfaketime comes before the sanitizer runtime, which ASan refuses unless told it is fine.
    asan = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS", ""), "verify_asan_link_order=0"]))
    env = dict(os.environ, LD_PRELOAD=FAKETIME_LIB, FAKETIME_TIMESTAMP_FILE=str(clock), FAKETIME_NO_CACHE="1",
               FAKETIME_DONT_FAKE_MONOTONIC="1", ASAN_OPTIONS=asan)
    out, stats, empty = tmp_path / "out.pcap", tmp_path / "gw.json", tmp_path / "empty.pcap"
    write_pcap(empty, [])
    cmd = [ZTGATE, "--policy", str(Path(__file__).resolve().parents[2] / "appliance" / "policy"),
           "--key-master", str(master), "--key-domain", "lab", "--epoch-length", str(epoch), "--geneve", "keep",
           "--port-a", f"net_pcap0,rx_iface={veth[1]},tx_pcap=/dev/null",
           "--port-b", f"net_pcap1,rx_pcap={empty},tx_pcap={out}",
           "--hugepages", "off", "--memory", "128", "--mbufs", "4096", "--flows", "4096", "--replay-pps", "100000",
           "--eal-log-level", "error", "-q", "--stats-file", str(stats), "--metrics-listen", "127.0.0.1:0"]
    log = tmp_path / "gw.log"
    gw = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    metrics = ""
    try:
        wait_for(lambda: "forwarding" in log.read_text(), 30, "ztgate forwarding", log.read_text)
        # t0 on a whole second: the replay filter's periods (W = 1 s) are whole seconds of
        # ztgate's clock, and the copies after the 0.9 s step are placed to land one period
        # before the one holding their MACs, where a clock that just followed the step would
        # judge them fresh and the filter alone would not find them.
        t0 = float(int(time.time()) + 2)

        def tags(name, at, n, interval, stamp_offset=0.0, sport=41000):
            return run_ztgen(tmp_path, name, ["--key-master", master, "--key-domain", "lab", "--epoch-length", epoch,
                                              "--time-base-ns", int((t0 + at + stamp_offset) * 1e9),
                                              "--interval-ns", int(interval * 1e9), "--kind", f"valid:{n}",
                                              "--flows", 1, "--identity", 1001, "--dport", 5201, "--sport", sport])
        # Phases of fresh tags, one every 20 ms, stamped with the time they are sent (F: with
        # the sender's clock, 3.4 s behind, one every 40 ms). Steps, 0.4-0.5 s before a phase:
        steps = [(0.5, "+0"), (1.6, "+30"), (2.6, "+0"), (3.6, "-0.9"), (4.6, "-3.4")]
        at = {"A": 0.0, "B": 1.0, "C": 2.0, "D": 3.0, "E": 4.0}
        fresh = {k: tags(k, a, 25, 0.02, sport=41000 + 10 * i) for i, (k, a) in enumerate(at.items())}
        fresh["F"] = tags("F", 4.7, 51, 0.04, stamp_offset=-3.4, sport=41100)
        at["F"] = 4.7
        plan = [(at[k] + (0.04 if k == "F" else 0.02) * j, f) for k in fresh for j, f in enumerate(fresh[k])]
        copies = [(2.01 + 0.02 * j, f) for j, f in enumerate(fresh["B"])]     # after +30 s: stale
        copies += [(3.01 + 0.02 * j, f) for j, f in enumerate(fresh["B"])]    # after -30 s: stale
        copies += [(3.62 + 0.02 * j, f) for j, f in enumerate(fresh["D"])]    # after -0.9 s: fresh-looking
        copies += [(5.01 + 0.02 * j, f) for j, f in enumerate(fresh["E"])]    # while held after -2.5 s
        copies += [(6.41 + 0.02 * j, f) for j, f in enumerate(fresh["D"])]    # at the wall time D was sent
        plan = sorted(plan + copies, key=lambda x: x[0])
        cap = tmp_path / "plan.pcap"
        with open(cap, "wb") as fh:
            fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
            for t, f in plan:
                fh.write(struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(f), len(f)))
                fh.write(f)
        sender = subprocess.Popen(["/usr/bin/python3", "-c", SENDER, veth[0], str(cap), repr(t0)])
        for when, step in steps:
            while time.time() < t0 + when:
                time.sleep(0.005)
            clock.write_text(step + "\n")
        assert sender.wait(timeout=30) == 0
        time.sleep(0.5)
        assert gw.poll() is None, log.read_text()
        port = re.search(r"Prometheus metrics on \S+ \(port (\d+)\)", log.read_text())
        assert port, log.read_text()
        with urllib.request.urlopen(f"http://127.0.0.1:{port.group(1)}/metrics", timeout=5) as r:
            metrics = r.read().decode()
    finally:
        if gw.poll() is None:
            gw.send_signal(signal.SIGTERM)
        rc = gw.wait(timeout=20)
    text = log.read_text()
    assert rc == 0, text
    assert "runtime error:" not in text
    left = read_frames(out)
    assert set(left) <= {f for k in fresh for f in fresh[k]}
    # No copy of an accepted tag left, whatever the clock did (a copy is byte-identical to its
    # original, so the original and a copy both leaving would show as a frame left twice).
    assert len(left) == len(set(left)), "a tag passed twice"
    # Wrong at start, and 30 s ahead: refused. Corrected (forward, then back 30 s): every fresh
    # tag passes within 0.5 s of the correction, no restart. Back 0.9 s: no fresh tag refused.
    for k, expect in (("A", 0), ("B", 25), ("C", 0), ("D", 25), ("E", 25)):
        assert sum(f in left for f in fresh[k]) == expect, (k, expect, text)
    # Back 2.5 s more (from -0.9 to -3.4 s), senders too: their tags are refused while ztgate
    # holds at the newest time it accepted a tag (E's last, ~0.1 s before the step), i.e. for
    # 2.5 s - W = 1.5 s after the step, then pass. The bound, with 0.2 s for the step to be
    # noticed (every 100 ms) and E's last tag to arrive; and refused from the start, or the
    # hold would be shorter than the replay filter needs.
    step_f = 4.6
    passed = [at["F"] + 0.04 * j for j, f in enumerate(fresh["F"]) if f in left]
    refused = [at["F"] + 0.04 * j for j, f in enumerate(fresh["F"]) if f not in left]
    assert passed and min(passed) >= step_f + 1.5 - 0.3, (passed, refused)
    assert not refused or max(refused) <= step_f + 1.5 + 0.2, (passed, refused)
    s = stats_of(stats)
    assert set(s["drops"]) <= {"tag_time_window", "tag_replayed"}, s["drops"]
    assert s["drops"].get("tag_replayed", 0) == 75, s["drops"]  # every copy that reached the filter
    assert s["forwarded"] == len(left) and s["received"] == len(plan), s
    assert s["clock"]["steps"] == 5, s["clock"]
    assert abs(s["clock"]["last_step_ns"] + 2.5e9) < 50e6, s["clock"]
    # An operator's monitoring sees the same steps (Prometheus, scraped before the stop).
    assert re.search(r"^ztgate_clock_steps_total 5$", metrics, re.M), metrics
    step = re.search(r"^ztgate_clock_last_step_seconds (\S+)$", metrics, re.M)
    assert step and abs(float(step.group(1)) + 2.5) < 0.05, metrics
    assert re.search(r"wall clock stepped back 2\.[45]\d\d s.*refused for up to 1\.[45]\d\d s", text), text


# --- ztagent killed and restarted mid-traffic ---------------------------------------------------

CLIENT = """
import socket, sys, time
end = time.time() + float(sys.argv[1])
while time.time() < end:
    t, ok = time.time(), False
    try:
        s = socket.create_connection(("10.10.0.2", 5201), timeout=0.4)
        s.sendall(b"ping"); s.shutdown(socket.SHUT_WR)
        ok = s.recv(100) == b"zone-b got ping"
        s.close()
    except OSError:
        pass
    print(f"{t:.3f} {int(ok)}", flush=True)
    time.sleep(max(0.0, t + 0.1 - time.time()))
"""
SERVER = """
import socket
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("10.10.0.2", 5201)); l.listen(64)
while True:
    c, _ = l.accept(); d = b""
    while True:
        x = c.recv(65536)
        if not x: break
        d += x
    c.sendall(b"zone-b got " + d); c.close()
"""


def test_ztagent_killed_mid_traffic_fails_closed_and_traffic_resumes_when_it_is_back(tmp_path):
    """zt-ht1-c (10.10.0.9: in no zone, so untagged it is `unauthenticated`) runs ztagent as web-a
    (1001), which appliance/policy's rule 100 lets reach zone-b tcp/5201 (zt-ht1-d, 10.10.0.2)
    through ztgate (strip). A client opens a connection every 100 ms. The agent is killed with
    SIGKILL: its TUN and routes vanish, the client's packets leave untagged and ztgate refuses
    them — nothing crosses. A new agent: connections succeed again, with no ztgate restart."""
    from test_agent import EPOCH, MAC_C, MAC_D, Netns, nsx, start_agent, wait_line
    master = tmp_path / "master.hex"
    master.write_text(os.urandom(32).hex() + "\n")
    master.chmod(0o600)
    net = Netns()
    try:
        net.add_ns("zt-ht1-c")
        net.add_ns("zt-ht1-d")
        net.veth("zt-ht1-c", "zt-ht1-c0", "10.10.0.9/24", "zt-ht1-c1", mac=MAC_C)
        net.veth("zt-ht1-d", "zt-ht1-d0", "10.10.0.2/24", "zt-ht1-d1", mac=MAC_D)
        nsx("zt-ht1-c", "ip", "neigh", "replace", "10.10.0.2", "lladdr", MAC_D, "dev", "zt-ht1-c0", "nud", "permanent")
        nsx("zt-ht1-d", "ip", "neigh", "replace", "10.10.0.9", "lladdr", MAC_C, "dev", "zt-ht1-d0", "nud", "permanent")
        gate_log, gate_stats = tmp_path / "ztgate.log", tmp_path / "ztgate.json"
        # The agents' key epoch (test_agent.EPOCH, 10 s): the test may cross a boundary, both roll.
        gate = subprocess.Popen([ZTGATE, "--policy", str(POLICY), "--key-master", str(master), "--epoch-length", str(EPOCH),
                                 "--geneve", "strip", "--flows", "4096",
                                 "--port-a", "net_af_packet0,iface=zt-ht1-c1,framecnt=1024",
                                 "--port-b", "net_af_packet1,iface=zt-ht1-d1,framecnt=1024",
                                 "--hugepages", "off", "--memory", "128", "--mbufs", "4095", "--file-prefix", "zt-ht1",
                                 "--eal-log-level", "error", "-q", "--stats-file", str(gate_stats)],
                                stdout=subprocess.DEVNULL, stderr=open(gate_log, "w"))
        net.procs.append(gate)
        wait_line(gate_log, "forwarding", gate, timeout=30)
        net.popen("zt-ht1-d", ["/usr/bin/python3", "-c", SERVER], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        agent, _, _ = start_agent(net, tmp_path, "zt-ht1-c", "zt-ht1-t", "zt-ht1-c0", 1001, master, ["10.10.0.2/32"])
        client_out = tmp_path / "client.txt"
        client = net.popen("zt-ht1-c", ["/usr/bin/python3", "-c", CLIENT, "6"], stdout=open(client_out, "w"),
                           stderr=subprocess.DEVNULL)
        time.sleep(1.5)
        killed = time.time()
        agent.kill()  # SIGKILL: no cleanup of its own
        agent.wait(timeout=10)
        time.sleep(1.2)
        restarted = time.time()
        start_agent(net, tmp_path, "zt-ht1-c", "zt-ht1-t", "zt-ht1-c0", 1001, master, ["10.10.0.2/32"])
        assert client.wait(timeout=30) == 0
        assert gate.poll() is None, gate_log.read_text()
        gate.send_signal(signal.SIGTERM)
        assert gate.wait(timeout=20) == 0, gate_log.read_text()
    finally:
        net.close()
    tries = [(float(t), ok == "1") for t, ok in (line.split() for line in client_out.read_text().splitlines())]
    before = [ok for t, ok in tries if t < killed - 0.2]
    # Connections started while no agent runs (the last one before the kill may still finish).
    outage = [ok for t, ok in tries if killed + 0.1 < t < restarted]
    after = [ok for t, ok in tries if t > restarted + 1.0]
    assert before and all(before), tries
    assert outage and not any(outage), "a connection crossed with no agent to tag it"
    assert after and all(after), tries
    s = stats_of(gate_stats)
    # The untagged attempts of the outage met default deny (10.10.0.9 is in no zone); no tag failed.
    assert s["drops"].get("policy_default_deny", 0) >= 1, s["drops"]
    assert not any(k.startswith("tag_") and k != "tag_missing" for k in s["drops"]), s["drops"]
