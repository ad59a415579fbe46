"""Component tests: identity-tagged traffic written by the real ztgen through the real ztgate
(net_pcap), under the example policy (appliance/policy) with epoch keys derived on both sides from
one --key-master file. Each case asserts the bytes ztgate sent and its exact drop counters."""
import subprocess
import time

from ztgate_harness import POLICIES, ZTGEN, clear_of_epoch_end, run_ztgate, run_ztgen, write_master

EXAMPLE = POLICIES.parents[2] / "appliance" / "policy"
A, B = "10.10.0.1", "10.10.0.2"
WEB, CLIENT, OPS, UNKNOWN = 1001, 1002, 1003, 4242
EPOCH_S = 900
# ztgate takes one to several seconds to start (more under ASan on a loaded 2-core machine), too
# long for the default ±1 s window: the tags are stamped 5 s ahead and ztgate accepts ±10 s, so a
# capture written now verifies whenever ztgate reads it within 15 s.
AHEAD_MS, WINDOW_MS = 5000, 10000


def keys(master):
    return ["--key-master", master, "--key-domain", "lab", "--epoch-length", EPOCH_S]


def gen(tmp, master, name, *args, offset_ms=AHEAD_MS):
    return run_ztgen(tmp, name, [*keys(master), "--time-offset-ms", offset_ms, "--src", A, "--dst", B, *args])


def strip(frame: bytes) -> bytes:
    """What ztgate's strip mode sends for a tagged frame: the outer MACs, the inner EtherType and
    the inner IP packet (decoded here independently of ztgate and ztgen)."""
    ihl = (frame[14] & 0x0F) * 4
    geneve = 14 + ihl + 8
    inner = frame[geneve + 8 + (frame[geneve] & 0x3F) * 4:]
    ethertype = b"\x86\xdd" if inner[0] >> 4 == 6 else b"\x08\x00"
    return frame[:12] + ethertype + inner


def ztgate_keys(master, mode):
    return ["--key-master", str(master), "--key-domain", "lab", "--epoch-length", str(EPOCH_S),
            "--tag-window-ms", str(WINDOW_MS), "--geneve", mode]


def test_tagged_flows_pass_and_every_bad_tag_is_dropped_for_its_reason(tmp_path):
    master = write_master(tmp_path)
    clear_of_epoch_end(EPOCH_S)
    # 40 flows of web-a to zone-b's iperf port (rule web-to-zone-b), then a replay of the first
    # frame and the first flow's inner packet without its tag. Both come after the first burst
    # of 32, so the flow they hit is already established.
    web = gen(tmp_path, master, "web", "--kind", "valid:40,replayed:1,tag-stripped:1", "--flows", 40,
              "--identity", WEB, "--dport", 5201, "--sport", 41000)
    valid, replayed, stripped = web[:40], web[40], web[41]
    assert replayed == valid[0] and stripped == strip(valid[0])
    forged = gen(tmp_path, master, "forged", "--kind", "forged", "--identity", WEB, "--dport", 5201, "--sport", 42000)
    epochs = gen(tmp_path, master, "epochs", "--kind", "expired,future", "--identity", WEB, "--dport", 5201,
                 "--sport", 42100)
    # Stamped 30 s off the appliance clock, inside the current epoch.
    skew = -30000 if time.time() % EPOCH_S > 60 else 30000
    stale = gen(tmp_path, master, "stale", "--kind", "valid", "--identity", WEB, "--dport", 5201, "--sport", 42200,
                offset_ms=skew)
    unknown = gen(tmp_path, master, "unknown", "--kind", "unknown-identity", "--unknown-identity", UNKNOWN,
                  "--dport", 5201, "--sport", 42300)
    hdr_web = gen(tmp_path, master, "hdr-web", "--kind", "hdr", "--identity", WEB, "--dport", 5201, "--sport", 42400)
    hdr_ops = gen(tmp_path, master, "hdr-ops", "--kind", "hdr", "--identity", OPS, "--dport", 22, "--sport", 42500)
    web_ssh = gen(tmp_path, master, "web-ssh", "--kind", "valid", "--identity", WEB, "--dport", 22, "--sport", 42600)
    # A forged tag to an explicitly denied port: the deny is decided before any MAC, so the drop
    # reason is the policy's, not tag_forged_mac.
    client_ssh = gen(tmp_path, master, "client-ssh", "--kind", "forged", "--identity", CLIENT, "--dport", 22,
                     "--sport", 42700)
    no_syn = gen(tmp_path, master, "no-syn", "--kind", "valid", "--identity", WEB, "--dport", 5201, "--sport", 42800,
                 "--tcp-flags", "A")
    legacy = gen(tmp_path, master, "legacy", "--kind", "untagged:2", "--flows", 2, "--dport", 8080, "--sport", 42900,
                 "--tcp-flags", "S")
    legacy_no_syn = gen(tmp_path, master, "legacy-ack", "--kind", "untagged", "--dport", 8080, "--sport", 43000,
                        "--tcp-flags", "A")
    # From zone B's side: a SYN-ACK for a connection nobody opened.
    spoofed_reply = run_ztgen(tmp_path, "reply", ["--kind", "untagged", "--src", B, "--dst", A, "--sport", 5201,
                                                  "--dport", 43100, "--tcp-flags", "SA"])

    frames_a = (web + forged + epochs + stale + unknown + hdr_web + hdr_ops + web_ssh + client_ssh + no_syn + legacy
                + legacy_no_syn)
    r = run_ztgate(tmp_path, frames_a=frames_a, frames_b=spoofed_reply, policy=EXAMPLE,
                   extra=ztgate_keys(master, "strip"))
    assert r.returncode == 0, r.stderr
    assert r.out_b == [strip(f) for f in valid] + [strip(hdr_ops[0])] + legacy
    assert r.out_a == []
    assert r.stats["drops"] == {
        "tag_replayed": 1,
        "tag_missing": 1,
        "tag_forged_mac": 1,
        "tag_expired_epoch": 1,
        "tag_future_epoch": 1,
        "tag_time_window": 1,
        "tag_hdr_not_allowed": 1,
        # unknown identity (no rule can name it), web-a to ssh (no rule), the spoofed reply
        "policy_default_deny": 3,
        "policy_deny": 1,
        "tcp_no_syn": 2,
    }
    assert r.stats["flows"]["admitted"] == 40 + 1 + 2
    assert r.stats["received"] == len(frames_a) + len(spoofed_reply)
    assert r.stats["received"] == r.stats["forwarded"] + r.stats["dropped"]


def test_keep_mode_forwards_tagged_frames_unchanged(tmp_path):
    master = write_master(tmp_path)
    clear_of_epoch_end(EPOCH_S)
    web = gen(tmp_path, master, "web", "--kind", "valid:3", "--flows", 3, "--identity", WEB, "--dport", 5201,
              "--size", 200)
    ops = gen(tmp_path, master, "ops", "--kind", "hdr", "--identity", OPS, "--dport", 22, "--sport", 41000)
    legacy = gen(tmp_path, master, "legacy", "--kind", "untagged", "--dport", 8080, "--sport", 42000)
    forged = gen(tmp_path, master, "forged", "--kind", "forged", "--identity", WEB, "--dport", 5201, "--sport", 43000)
    r = run_ztgate(tmp_path, frames_a=web + ops + legacy + forged, policy=EXAMPLE, extra=ztgate_keys(master, "keep"))
    assert r.returncode == 0, r.stderr
    assert r.out_b == web + ops + legacy
    assert len(web[0]) == 200 + 72  # the inner frame size asked for, plus outer IPv4/UDP/Geneve/tag
    assert r.stats["drops"] == {"tag_forged_mac": 1}


def test_ztgen_is_reproducible_and_refuses_what_it_cannot_write(tmp_path):
    master = write_master(tmp_path)
    fixed = ["--key-master", master, "--time-base-ns", "1790000000000000000", "--kind",
             "valid:2,forged,spoofed:2,forged-flood,malformed"]
    one = run_ztgen(tmp_path, "one", [*fixed, "--seed", 7])
    two = run_ztgen(tmp_path, "two", [*fixed, "--seed", 7])
    other = run_ztgen(tmp_path, "other", [*fixed, "--seed", 8])
    assert one == two
    assert one != other and len(one) == len(other) == 2 + 1 + 2 + 1 + 20

    def refused(args):
        p = subprocess.run([ZTGEN, "--out", str(tmp_path / "x.pcap"), *map(str, args)], capture_output=True, text=True,
                           timeout=30)
        assert p.returncode == 2, p.stderr
        return p.stderr

    assert "--kind replayed copies the valid frames written before it" in refused(
        ["--key-master", master, "--kind", "replayed"])
    assert "--kind valid needs --key-master" in refused(["--kind", "valid"])
    assert "--kind 'bogus': unknown kind" in refused(["--kind", "bogus"])
    assert "--src 'nowhere': not an IPv4 or IPv6 address" in refused(["--kind", "untagged", "--src", "nowhere"])
    assert "--coverage 'half': expected full or hdr" in refused(["--kind", "untagged", "--coverage", "half"])
