"""Component tests: ztgate under faults and floods — an exhausted mbuf pool, and floods of spoofed,
forged and malformed traffic written by the real ztgen. Nothing may crash, nothing may pass that
should not, and every packet must be accounted for in the counters."""
from ztgate_harness import POLICIES, clear_of_epoch_end, run_ztgate, run_ztgen, write_master

EXAMPLE = POLICIES.parents[2] / "appliance" / "policy"
A, B = "10.10.0.1", "10.10.0.2"


def is_subsequence(part, whole):
    it = iter(whole)
    return all(any(p == w for w in it) for p in part)


def test_an_exhausted_mbuf_pool_loses_packets_visibly_and_never_crashes(tmp_path):
    # net_pcap's infinite_rx copies port B's whole capture into mbufs of ztgate's pool when the
    # port is set up and holds them until exit: 1000 of the 1024 mbufs (the smallest pool
    # --mbufs allows). Port A then finds the pool empty after a few packets of every burst;
    # net_pcap has already read the frame from the file, so that frame is lost and counted in
    # the port's rx_nombuf. (Port B's infinite replay needs 32 free mbufs per burst and gets none.)
    hold = run_ztgen(tmp_path, "hold", ["--kind", "malformed:1000"])
    frames = run_ztgen(tmp_path, "flood", ["--kind", "untagged:3000", "--flows", 100, "--proto", "udp",
                                           "--dport", 8080, "--src", A, "--dst", B])
    r = run_ztgate(tmp_path, frames_a=frames, frames_b=hold, mbufs=1024, port_b_args=",infinite_rx=1")
    assert r.returncode == 0, r.stderr
    port_a = r.stats["ports"][0]
    # Every frame of the capture is either received or counted as lost for want of an mbuf.
    assert port_a["hw"]["rx_nombuf"] > 0
    assert port_a["hw"]["ipackets"] + port_a["hw"]["rx_nombuf"] == len(frames)
    assert port_a["rx_packets"] == port_a["hw"]["ipackets"]
    # What the worker saw is accounted for, and what it forwarded is the input, in order.
    assert r.stats["received"] == r.stats["forwarded"] + r.stats["dropped"]
    assert r.stats["dropped"] == 0 and r.stats["forwarded"] == port_a["hw"]["ipackets"]
    assert len(r.out_b) == r.stats["forwarded"]
    assert is_subsequence(r.out_b, frames)


def test_floods_and_malformed_frames_are_all_dropped_and_counted(tmp_path):
    master = write_master(tmp_path)
    clear_of_epoch_end(900)
    keys = ["--key-master", master, "--key-domain", "lab", "--epoch-length", 900, "--time-offset-ms", 5000]
    # SYN flood from spoofed sources to a port no rule opens; spoofed UDP; tags of web-a (allowed
    # to zone-b's port 5201) with random MACs from random sources; the malformed and IPv6
    # extension-header sets.
    syn = run_ztgen(tmp_path, "syn", ["--kind", "syn-flood:2000", "--dst", B, "--dport", 9090, "--seed", 1])
    udp = run_ztgen(tmp_path, "udp", ["--kind", "spoofed:500", "--proto", "udp", "--dst", B, "--dport", 53,
                                      "--seed", 2])
    forged = run_ztgen(tmp_path, "forged", [*keys, "--kind", "forged-flood:500", "--identity", 1001, "--dst", B,
                                            "--dport", 5201, "--seed", 3])
    hostile = run_ztgen(tmp_path, "hostile", ["--kind", "malformed,ipv6-ext", "--src", A, "--dst", B])
    frames = syn + udp + forged + hostile
    r = run_ztgate(tmp_path, frames_a=frames, policy=EXAMPLE,
                   extra=["--key-master", str(master), "--tag-window-ms", "10000"])
    assert r.returncode == 0, r.stderr
    assert r.out_a == [] and r.out_b == []
    assert r.stats["forwarded"] == 0
    assert r.stats["received"] == r.stats["dropped"] == len(frames) == 3000 + 26
    assert r.stats["flows"]["admitted"] == 0
    assert r.stats["drops"] == {
        # 2000 SYN + 500 UDP from unauthenticated sources, and two well-formed IPv6 packets
        # (hop-by-hop + destination options, atomic fragment) from zone-a to a port it may not use
        "policy_default_deny": 2000 + 500 + 2,
        "tag_forged_mac": 500,
        "frame_runt": 1, "ipv4_truncated": 1, "ipv4_bad_version": 1, "ipv4_bad_ihl": 1,
        "ipv4_bad_total_length": 1, "ipv4_bad_checksum": 1, "ipv4_reserved_flag": 1,
        "tcp_bad_offset": 1, "tcp_truncated": 1, "udp_bad_length": 1,
        "geneve_truncated": 1, "geneve_bad_version": 1, "geneve_bad_tag_option": 2,
        "geneve_unknown_critical_option": 1, "geneve_bad_option": 1,
        "vlan_too_deep": 1, "ethertype_unsupported": 1, "ipv6_truncated": 1, "ipv6_bad_payload_length": 1,
        "ipv6_routing_type0": 1, "ipv6_ext_chain_too_long": 1, "ipv6_ext_misplaced": 1, "ipv6_ext_truncated": 1,
    }
