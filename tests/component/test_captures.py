"""Every Ethernet capture in ../shared/testdata/pcaps replays through the real ztgate on net_pcap
without a crash, and every packet is accounted for: received = forwarded + dropped by reason,
and received = the records in the file. Under a default-deny policy with no identities nothing
but ARP crosses; under allow-all only whole, well-formed frames do."""
import csv
import os
import struct
from pathlib import Path

import pytest

from ztgate_harness import run_ztgate

SHARED = Path(os.environ.get("ZT_SHARED_DIR", Path(__file__).resolve().parents[3] / "shared"))
PCAPS = SHARED / "testdata" / "pcaps"


def ethernet_captures():
    index = PCAPS / "INDEX.tsv"
    if not index.exists():
        return []
    rows = csv.DictReader(index.open(), delimiter="\t")
    out = []
    for r in rows:
        if r["linktype"] != "EN10MB":
            continue  # net_pcap ignores the link type; the parser replay test covers the rest
        path = PCAPS / r["source"] / Path(r["path_in_repo"]).name
        if not path.exists():
            matches = list(PCAPS.rglob(Path(r["path_in_repo"]).name))
            path = matches[0] if matches else path
        out.append(path)
    return out


def records(path: Path):
    """(data, caplen, wirelen) of each record of a classic pcap file."""
    data = path.read_bytes()
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    off, out = 24, []
    while off + 16 <= len(data):
        _, _, caplen, wirelen = struct.unpack(endian + "IIII", data[off:off + 16])
        out.append((data[off + 16:off + 16 + caplen], caplen, wirelen))
        off += 16 + caplen
    return out


def test_the_shared_captures_are_there():
    assert PCAPS.is_dir(), f"missing {PCAPS}: the capture replay needs ../shared beside the repo"
    assert len(ethernet_captures()) >= 50


@pytest.mark.parametrize("pcap", ethernet_captures(), ids=lambda p: p.name)
def test_replays_capture_under_default_deny_with_full_accounting(tmp_path, pcap):
    policy = "deny-all"
    assert pcap.exists(), pcap
    recs = records(pcap)
    if any(c > 65535 for _, c, _ in recs):
        pytest.skip("records over 65535 bytes are mangled by net_pcap itself (see the pcaps "
                    "README); the parser replay test feeds this file to the parser directly")
    r = run_ztgate(tmp_path, in_a=pcap, policy=policy, idle_ms=250)
    assert r.returncode == 0, r.stderr[-2000:]
    st = r.stats
    assert st["received"] == len(recs)
    assert st["received"] == st["forwarded"] + st["dropped"]
    assert sum(st["drops"].values()) == st["dropped"]
    assert len(r.out_b) == st["forwarded"]
    # What comes out is byte for byte a frame that went in, and never one the capture cut short:
    # a truncated frame must not be forwarded as if it were whole. (A capture that dropped only
    # the Ethernet padding and FCS of a minimum-size frame, wire length <= 64, cut nothing.)
    whole = {d for d, c, w in recs if c == w or w <= 64}
    for frame in r.out_b:
        assert frame in whole, f"forwarded a frame that is not a whole input frame: {frame[:64].hex()}"
    if policy == "deny-all":
        # Default deny with no identities: nothing but ARP (which a bump in the wire passes) may
        # cross, and every IP packet is refused by the policy or earlier.
        for frame in r.out_b:
            ethertype = frame[12:14]
            i = 14
            while ethertype in (b"\x81\x00", b"\x88\xa8"):
                ethertype, i = frame[i + 2:i + 4], i + 4
            assert ethertype == b"\x08\x06", f"default deny forwarded a non-ARP frame: {frame[:64].hex()}"


def test_replays_every_capture_under_allow_all_forwarding_only_whole_frames(tmp_path):
    """All captures in one run with a policy that allows everything: the pipeline past the
    parser (flows, TCP state) sees every packet; accounting holds and what comes out is whole."""
    frames, whole = [], set()
    for pcap in ethernet_captures():
        recs = records(pcap)
        if any(c > 65535 for _, c, _ in recs):
            continue
        frames += [d for d, _, _ in recs]
        whole |= {d for d, c, w in recs if c == w or w <= 64}
    r = run_ztgate(tmp_path, frames_a=frames, policy="allow-all", timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    st = r.stats
    assert st["received"] == len(frames)
    assert st["received"] == st["forwarded"] + st["dropped"]
    assert len(r.out_b) == st["forwarded"] > 0
    for frame in r.out_b:
        assert frame in whole
