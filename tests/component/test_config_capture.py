"""The real ztgate with a YAML config file (--config, --check-config) and a live packet capture
driven by ztctl (capture start/stop), read back with tcpdump."""
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from ztgate_harness import POLICIES, ZTGATE, run_cli, run_ztgate

ROOT = Path(__file__).resolve().parents[2]
ZTCTL = os.environ.get("ZTCTL", str(ROOT / "build" / "appliance" / "src" / "ztctl" / "ztctl"))
EXAMPLE = ROOT / "appliance" / "ztgate.example.yaml"


def test_check_config_accepts_the_shipped_example():
    p = run_cli(["--check-config", str(EXAMPLE)])
    assert p.returncode == 0, p.stderr


def test_check_config_names_the_file_line_and_key_of_a_mistake(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("ports:\n  a: net_null0\n  b: net_null1\n  worker: 2\n")
    p = run_cli(["--check-config", str(bad)])
    assert p.returncode != 0
    assert f"{bad}:4: ports.worker: unknown key" in p.stdout + p.stderr
    bad.write_text("ports:\n  a: net_null0\n  b: net_null1\ntunables:\n  segments: {zone-a: monitor}\n")
    p = run_cli(["--check-config", str(bad)])
    assert p.returncode != 0
    assert f"{bad}:5: segment.zone-a.mode 'monitor': expected enforce or audit" in p.stdout + p.stderr


def test_the_config_file_sets_the_policy_and_the_command_line_wins(tmp_path):
    cfg = tmp_path / "ztgate.yaml"
    # The file says deny-all; --policy on the command line says allow-all and wins.
    cfg.write_text(f"policy:\n  dir: {POLICIES / 'deny-all'}\noperation:\n  quiet: true\n")
    syn = Ether() / IP(src="10.1.0.1", dst="10.2.0.5") / TCP(sport=40000, dport=80, flags="S")
    r = run_ztgate(tmp_path / "file", frames_a=[syn], policy=None, extra=["--config", str(cfg)])
    assert r.returncode == 0, r.stderr
    assert len(r.out_b) == 0, "the file's deny-all policy must apply"
    r = run_ztgate(tmp_path / "override", frames_a=[syn], policy="allow-all", extra=["--config", str(cfg)])
    assert r.returncode == 0, r.stderr
    assert r.out_b == [bytes(syn)]


def test_a_drops_only_capture_opens_in_tcpdump_with_the_dropped_packets(tmp_path):
    sock = tmp_path / "admin.sock"
    out = tmp_path / "drops.pcapng"
    # net_null receives zero-filled 64-byte frames without end: every one is dropped
    # (ethertype_unsupported), which is what a drops-only capture is for.
    gate = subprocess.Popen([ZTGATE, "--port-a", "net_null0", "--port-b", "net_null1", "--hugepages", "off",
                             "--memory", "128", "--mbufs", "4096", "--eal-log-level", "error", "--flows", "4096",
                             "--replay-pps", "100000", "--admin-socket", str(sock), "--policy",
                             str(POLICIES / "allow-all"), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.1)
        ctl = [ZTCTL, "--socket", str(sock)]
        p = subprocess.run([*ctl, "capture", "start", str(out), "--drops-only", "--count", "5"],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stdout + p.stderr
        time.sleep(1.0)
        st = subprocess.run([*ctl, "show", "capture", "--json"], capture_output=True, text=True, timeout=30)
        assert st.returncode == 0, st.stderr
        shown = json.loads(st.stdout)
        assert shown["file"] == str(out) and shown["drops_only"] and shown["written"] == 5, shown
        stop = subprocess.run([*ctl, "capture", "stop"], capture_output=True, text=True, timeout=30)
        assert stop.returncode == 0 and "5 packet(s) written" in stop.stdout, stop.stdout + stop.stderr
        d = subprocess.run(["tcpdump", "-nn", "-r", str(out)], capture_output=True, text=True, timeout=30)
        assert d.returncode == 0, d.stderr
        assert len(d.stdout.splitlines()) == 5
    finally:
        gate.terminate()
        gate.wait(timeout=30)
