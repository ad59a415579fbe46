"""Runs the real ztgate binary on net_pcap virtual devices and reads back what it sent.

Shared by the component tests: build frames with Scapy, write them as the capture a port
receives, run ztgate until it has been idle, then compare the captures it wrote and the
counters it reported (--stats-file)."""
import contextlib
import json
import struct
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from scapy.utils import RawPcapReader

POLICIES = Path(__file__).resolve().parent / "policies"
ZTGATE = os.environ.get("ZTGATE", str(Path(__file__).resolve().parents[2] / "build" / "appliance" / "ztgate"))
ZTGEN = os.environ.get("ZTGEN", str(Path(__file__).resolve().parents[2] / "build" / "tools" / "ztgen" / "ztgen"))


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    stats: dict
    out_a: list  # raw frames ztgate sent out of port A
    out_b: list  # raw frames ztgate sent out of port B


def write_pcap(path: Path, frames):
    """Writes frames (Scapy packets or bytes) as an Ethernet capture; an empty list gives a
    capture with only the file header, which net_pcap accepts as a source with no packets."""
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, f in enumerate(frames):
            data = bytes(f)
            out.write(struct.pack("<IIII", i, 0, len(data), len(data)))
            out.write(data)


def read_frames(path: Path):
    if not path.exists() or path.stat().st_size == 0:
        return []
    return [bytes(data) for data, _meta in RawPcapReader(str(path))]


def policy_args(policy):
    """--policy for a policy under tests/component/policies (a name) or anywhere (a Path)."""
    if policy is None:
        return []
    return ["--policy", str(policy if isinstance(policy, Path) else POLICIES / policy)]


def run_ztgate(tmp: Path, frames_a=(), frames_b=(), extra=(), in_a: Path = None, timeout=60,
               policy="allow-all", idle_ms=400, mbufs=4096, port_b_args="") -> Run:
    """Feeds frames_a into port A and frames_b into port B (or the capture in_a as is), under
    `policy` (default: allow-all, for tests of forwarding mechanics; None: no policy).
    `port_b_args` is appended to port B's net_pcap device spec (e.g. ",infinite_rx=1")."""
    tmp.mkdir(parents=True, exist_ok=True)
    if in_a is None:
        in_a = tmp / "in_a.pcap"
        write_pcap(in_a, frames_a)
    in_b = tmp / "in_b.pcap"
    write_pcap(in_b, frames_b)
    out_a, out_b, stats = tmp / "out_a.pcap", tmp / "out_b.pcap", tmp / "stats.json"
    for f in (out_a, out_b, stats):
        f.unlink(missing_ok=True)
    cmd = [
        ZTGATE,
        "--port-a", f"net_pcap0,rx_pcap={in_a},tx_pcap={out_a}",
        "--port-b", f"net_pcap1,rx_pcap={in_b},tx_pcap={out_b}{port_b_args}",
        "--hugepages", "off", "--memory", "128", "--mbufs", str(mbufs),
        "--stop-when-idle", str(idle_ms), "--stats-file", str(stats),
        "--eal-log-level", "error", "--flows", "65536", "--replay-pps", "100000",
        *policy_args(policy),
        *extra,
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    st = json.loads(stats.read_text()) if stats.exists() else {}
    return Run(p.returncode, p.stdout, p.stderr, st, read_frames(out_a), read_frames(out_b))


def write_master(tmp: Path) -> Path:
    """A trust domain's master secret in the hex file format --key-master reads (32 random bytes)."""
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "master.hex"
    path.write_text(os.urandom(32).hex() + "\n")
    return path


def clear_of_epoch_end(epoch_s: int, margin_s: float = 15):
    """Waits until the current key epoch (origin 0, as ztgate and ztgen count) has more than
    `margin_s` left, so tags written now and read within that margin are decided by the epoch
    they were written for (waits at most `margin_s`, in margin_s / epoch_s of the runs)."""
    while time.time() % epoch_s > epoch_s - margin_s:
        time.sleep(0.5)


def wait_forwarding(proc, timeout=20):
    """Reads a ztgate started with stderr=PIPE (text) until it logs that it forwards (EAL and
    ports up)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stderr.readline()
        assert line, "ztgate exited before forwarding"
        if "ztgate: forwarding" in line:
            return
    raise AssertionError(f"ztgate did not start forwarding within {timeout} s")


@contextlib.contextmanager
def veth_pair(out_if: str, in_if: str):
    """A veth pair in the root namespace with no addresses: IPv6 off (no frames of the kernel's
    own, e.g. router solicitations), offloads off (AF_PACKET sees frames as sent). Removed after."""
    subprocess.run(["ip", "link", "del", out_if], capture_output=True)
    subprocess.run(["ip", "link", "add", out_if, "type", "veth", "peer", "name", in_if], check=True)
    try:
        for i in (out_if, in_if):
            subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{i}.disable_ipv6=1"], check=True)
            subprocess.run(["ip", "link", "set", i, "up"], check=True)
            subprocess.run(["ethtool", "-K", i, "tso", "off", "gso", "off", "gro", "off", "tx", "off", "rx", "off"],
                           capture_output=True)
        yield
    finally:
        subprocess.run(["ip", "link", "del", out_if], capture_output=True)


def run_ztgen(tmp: Path, name: str, args) -> list:
    """Runs the real ztgen binary writing tmp/<name>.pcap and returns the frames it wrote."""
    tmp.mkdir(parents=True, exist_ok=True)
    out = tmp / f"{name}.pcap"
    p = subprocess.run([ZTGEN, "--out", str(out), *[str(a) for a in args]], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, f"ztgen {' '.join(map(str, args))}: {p.stderr}"
    return read_frames(out)


def run_cli(args, timeout=30):
    return subprocess.run([ZTGATE, *args], capture_output=True, text=True, timeout=timeout)
