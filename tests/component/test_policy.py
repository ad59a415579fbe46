"""Component tests: ztgate enforcing a policy directory — verdicts on real frames, a broken
policy refused at start with file:line:column, and SIGHUP reloads that are refused or applied."""
import shutil
import signal
import subprocess
import time

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether

from ztgate_harness import POLICIES, ZTGATE, run_ztgate

REPO = POLICIES.parents[2]
EXAMPLE = REPO / "appliance" / "policy"
A, B = "10.10.0.1", "10.10.0.2"


def frame(src, dst, l4):
    return bytes(Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b") / IP(src=src, dst=dst) / l4)


def test_example_policy_admits_allowed_untagged_flows_and_drops_the_rest_by_reason(tmp_path):
    allowed = frame(A, B, TCP(sport=40000, dport=8080, flags="S"))      # legacy-http-from-zone-a
    denied = frame(A, B, TCP(sport=40001, dport=9090, flags="S"))       # no rule: default deny
    no_syn = frame(A, B, TCP(sport=40002, dport=8080, flags="A"))       # mid-stream, no flow
    udp = frame(A, B, UDP(sport=5000, dport=53))                         # no rule
    arp = bytes(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=A, pdst=B))
    r = run_ztgate(tmp_path, frames_a=[allowed, denied, no_syn, udp, arp], policy=EXAMPLE)
    assert r.returncode == 0, r.stderr
    assert r.out_b == [allowed, arp]
    assert r.stats["drops"] == {"policy_default_deny": 2, "tcp_no_syn": 1}
    assert r.stats["flows"]["admitted"] == 1


def test_replies_pass_by_flow_state_and_unsolicited_ones_do_not(tmp_path):
    syn = frame(A, B, TCP(sport=40000, dport=8080, flags="S"))
    synack = frame(B, A, TCP(sport=8080, dport=40000, flags="SA"))
    stray = frame(B, A, TCP(sport=8080, dport=41111, flags="SA"))
    # Port B's capture is replayed after port A's frames went through (same worker, A first).
    r = run_ztgate(tmp_path, frames_a=[syn], frames_b=[synack, stray], policy=EXAMPLE)
    assert r.returncode == 0, r.stderr
    assert r.out_b == [syn]
    assert r.out_a == [synack]
    assert sum(r.stats["drops"].values()) == 1


def test_without_a_policy_only_arp_crosses(tmp_path):
    arp = bytes(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=A, pdst=B))
    r = run_ztgate(tmp_path, frames_a=[frame(A, B, UDP(dport=53)), arp], policy=None)
    assert r.returncode == 0, r.stderr
    assert r.out_b == [arp]
    assert r.stats["drops"] == {"no_policy": 1}
    assert "every IP packet is dropped (no_policy)" in r.stderr


def test_a_broken_policy_is_refused_at_start_naming_file_line_and_column(tmp_path):
    pol = tmp_path / "policy"
    shutil.copytree(EXAMPLE, pol)
    (pol / "rules.yaml").write_text((pol / "rules.yaml").read_text().replace("ports: [22]", "ports: [22-20]", 1))
    r = subprocess.run([ZTGATE, "--policy", str(pol), "--port-a", "net_null0", "--port-b", "net_null1",
                        "--hugepages", "off", "--flows", "4096", "--eal-log-level", "error"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert f"policy '{pol}' refused:" in r.stderr
    assert f"{pol}/rules.yaml:" in r.stderr
    assert "port range 22-20 is reversed; write 20-22" in r.stderr


def test_sighup_refuses_a_broken_policy_keeps_the_running_one_and_applies_a_good_one(tmp_path):
    pol = tmp_path / "policy"
    shutil.copytree(EXAMPLE, pol)
    log = tmp_path / "ztgate.log"
    with open(log, "w") as errf:
        proc = subprocess.Popen([ZTGATE, "--policy", str(pol), "--port-a", "net_null0", "--port-b", "net_null1",
                                 "--hugepages", "off", "--memory", "128", "--mbufs", "4096", "--flows", "4096",
                                 "--eal-log-level", "error", "--quiet"],
                                stdout=subprocess.PIPE, stderr=errf, text=True)

    def wait_log(pattern, timeout=30):
        # Waits on what ztgate says, not on a fixed sleep: start-up takes seconds on a loaded box.
        deadline = time.time() + timeout
        while time.time() < deadline:
            if pattern in log.read_text():
                return
            assert proc.poll() is None, log.read_text()
            time.sleep(0.05)
        raise AssertionError(f"ztgate never said {pattern!r}:\n{log.read_text()}")

    try:
        wait_log("ztgate: forwarding")
        good = (pol / "rules.yaml").read_text()
        (pol / "rules.yaml").write_text(good + "\n  - {id: 999, name: broken, from: {identities: [nobody]}, to: any, action: allow}\n")
        proc.send_signal(signal.SIGHUP)
        wait_log("stays in force")
        (pol / "rules.yaml").write_text(good)
        proc.send_signal(signal.SIGHUP)
        wait_log("reloaded policy, revision 2")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    err = log.read_text()
    assert proc.returncode == 0, err
    assert "reload refused, revision 1 stays in force" in err
    assert "nobody" in err
    assert "reloaded policy, revision 2" in err
