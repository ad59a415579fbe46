"""Component tests: the real ztgate on net_pcap ports forwards what parses, byte for byte, and
drops what does not, each drop counted under its reason."""
import struct

import pytest
from scapy.layers.inet import IP, TCP, UDP, ICMP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrRouting
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

from ztgate_harness import run_ztgate, run_cli

MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def eth(src=MAC_A, dst=MAC_B):
    return Ether(src=src, dst=dst)


def good_frames():
    """One frame of every kind the parser accepts."""
    return [
        eth() / IP(src="10.10.0.1", dst="10.10.0.2") / TCP(sport=40000, dport=80, flags="S"),
        eth() / IP(src="10.10.0.1", dst="10.10.0.2") / UDP(sport=5353, dport=53) / Raw(b"q" * 30),
        eth() / IP(src="10.10.0.1", dst="10.10.0.2") / ICMP() / Raw(b"ping"),
        eth() / IPv6(src="fd00:10::1", dst="fd00:10::2") / TCP(sport=40001, dport=443, flags="S"),
        eth() / IPv6(src="fd00:10::1", dst="fd00:10::2") / IPv6ExtHdrDestOpt() / UDP(sport=1, dport=2) / Raw(b"x" * 8),
        eth(dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="10.10.0.1", pdst="10.10.0.2"),
        eth() / Dot1Q(vlan=10) / IP(src="10.10.0.1", dst="10.10.0.2") / UDP(sport=7, dport=7) / Raw(b"v" * 20),
        eth() / Dot1AD(vlan=100) / Dot1Q(vlan=10) / IP(src="10.10.0.1", dst="10.10.0.2") / TCP(dport=22, flags="S"),
        eth() / IP(src="10.10.0.1", dst="10.10.0.2", options=b"\x01\x01\x01\x00") / TCP(dport=80, flags="S"),
    ]


def test_forwards_every_parsable_frame_from_a_to_b_unchanged(tmp_path):
    frames = [bytes(f) for f in good_frames()]
    r = run_ztgate(tmp_path, frames_a=frames)
    assert r.returncode == 0, r.stderr
    assert r.out_b == frames
    assert r.out_a == []
    assert r.stats["received"] == len(frames)
    assert r.stats["forwarded"] == len(frames)
    assert r.stats["dropped"] == 0
    assert r.stats["ports"][0]["rx_packets"] == len(frames)
    assert r.stats["ports"][1]["tx_packets"] == len(frames)
    assert r.stats["ports"][1]["tx_bytes"] == sum(len(f) for f in frames)


def test_forwards_both_directions_at_once(tmp_path):
    a = [bytes(eth() / IP(src="10.10.0.1", dst="10.10.0.2") / UDP(sport=1000 + i, dport=9) / Raw(b"a" * i)) for i in range(50)]
    b = [bytes(eth(MAC_B, MAC_A) / IP(src="10.10.0.2", dst="10.10.0.1") / UDP(sport=9, dport=1000 + i) / Raw(b"b" * i)) for i in range(70)]
    r = run_ztgate(tmp_path, frames_a=a, frames_b=b)
    assert r.returncode == 0, r.stderr
    assert r.out_b == a
    assert r.out_a == b
    assert r.stats["ports"][0]["rx_packets"] == 50 and r.stats["ports"][0]["tx_packets"] == 70
    assert r.stats["ports"][1]["rx_packets"] == 70 and r.stats["ports"][1]["tx_packets"] == 50


def test_forwards_a_frame_larger_than_one_mbuf_intact(tmp_path):
    # net_pcap chains mbufs for a frame over 2 KiB: the parser must read across segments.
    big = bytes(eth() / IP(src="10.10.0.1", dst="10.10.0.2") / UDP(sport=1, dport=2) / Raw(bytes(range(256)) * 30))
    r = run_ztgate(tmp_path, frames_a=[big])
    assert r.returncode == 0, r.stderr
    assert r.out_b == [big]


def bad_ipv4_checksum():
    f = bytearray(bytes(eth() / IP(src="10.10.0.1", dst="10.10.0.2") / UDP(sport=1, dport=2)))
    f[14 + 10] ^= 0xFF
    return bytes(f)


def tcp_bad_offset():
    f = bytearray(bytes(eth() / IP(src="10.10.0.1", dst="10.10.0.2") / TCP(dport=80)))
    f[14 + 20 + 12] = 0x30  # data offset 3 words < 5
    return bytes(f)


BAD = {
    "frame_runt": bytes(8),
    "ethertype_unsupported": bytes(eth() / Raw(b"\x88\xcc" + bytes(40)))[:12] + b"\x88\xcc" + bytes(40),
    "ipv4_bad_checksum": bad_ipv4_checksum(),
    "ipv4_bad_total_length": bytes(eth() / IP(src="10.10.0.1", dst="10.10.0.2", len=400) / UDP()),
    "frag_first_too_short": bytes(eth() / IP(src="10.10.0.1", dst="10.10.0.2", flags="MF", proto=6) / Raw(b"\x00" * 8)),
    "tcp_bad_offset": tcp_bad_offset(),
    "udp_bad_length": bytes(eth() / IP(src="10.10.0.1", dst="10.10.0.2") / UDP(len=200) / Raw(b"z" * 10)),
    "ipv6_bad_payload_length": bytes(eth() / IPv6(src="fd00::1", dst="fd00::2", plen=900) / UDP()),
    "vlan_too_deep": bytes(eth() / Dot1AD(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / IP() / UDP()),
    # RFC 5095 deprecates the type 0 routing header: source routing through the appliance.
    "ipv6_routing_type0": bytes(eth() / IPv6(src="fd00::1", dst="fd00::2") / IPv6ExtHdrRouting(type=0, addresses=["fd00::3"]) / UDP()),
}


def test_drops_malformed_frames_and_counts_each_reason(tmp_path):
    good = [bytes(f) for f in good_frames()]
    mixed = []
    for i, bad in enumerate(BAD.values()):
        mixed.append(bad)
        mixed.append(good[i % len(good)])
    r = run_ztgate(tmp_path, frames_a=mixed)
    assert r.returncode == 0, r.stderr
    assert r.out_b == [good[i % len(good)] for i in range(len(BAD))]
    assert r.stats["received"] == len(mixed)
    assert r.stats["forwarded"] == len(BAD)
    assert r.stats["dropped"] == len(BAD)
    assert r.stats["drops"] == {reason: 1 for reason in BAD}


def test_prints_counters_table_on_exit(tmp_path):
    r = run_ztgate(tmp_path, frames_a=[BAD["ipv4_bad_checksum"]] + [bytes(f) for f in good_frames()[:2]])
    assert r.returncode == 0
    assert "ipv4_bad_checksum" in r.stdout
    assert "IPv4 header checksum is wrong" in r.stdout
    assert "total: received 3 = forwarded 2 + dropped 1" in r.stdout


def test_help_documents_every_option():
    r = run_cli(["--help"])
    assert r.returncode == 0
    for opt in ["--port-a", "--port-b", "--workers", "--lcores", "--hugepages", "--memory",
                "--mbufs", "--rx-desc", "--tx-desc", "--config", "--stats-file",
                "--stop-when-idle", "--eal-arg", "--file-prefix", "--promiscuous"]:
        assert opt in r.stdout, opt


@pytest.mark.parametrize("args,message", [
    ([], "both --port-a and --port-b are required"),
    (["--port-a", "net_null0", "--port-b", "net_null1", "--workers", "0"], "--workers 0"),
    (["--port-a", "net_null0", "--port-b", "net_null1", "--hugepages", "maybe"], "--hugepages 'maybe'"),
    (["--port-a", "net_null0", "--bogus"], "unrecognised option '--bogus'"),
    (["--config", "/nonexistent/ztgate.conf"], "cannot read '/nonexistent/ztgate.conf'"),
])
def test_rejects_bad_arguments_with_a_message_naming_them(args, message):
    r = run_cli(args)
    assert r.returncode == 2
    assert message in r.stderr


def test_names_the_port_option_when_a_device_does_not_exist():
    r = run_cli(["--port-a", "net_af_packet0,iface=zt-no-such-if", "--port-b", "net_null1",
                 "--hugepages", "off", "--eal-log-level", "error"])
    assert r.returncode == 1
    assert "--port-a" in r.stderr


def test_refuses_the_same_device_on_both_sides():
    r = run_cli(["--port-a", "net_null0", "--port-b", "net_null0,size=64", "--hugepages", "off"])
    assert r.returncode == 1
    assert "name the same device" in r.stderr


def test_reads_ports_from_a_config_file(tmp_path):
    frames = [bytes(f) for f in good_frames()[:3]]
    from ztgate_harness import POLICIES, write_pcap, read_frames
    write_pcap(tmp_path / "a.pcap", frames)
    write_pcap(tmp_path / "b.pcap", [])
    conf = tmp_path / "ztgate.conf"
    conf.write_text(
        f"port-a = net_pcap0,rx_pcap={tmp_path}/a.pcap,tx_pcap={tmp_path}/oa.pcap\n"
        f"port-b = net_pcap1,rx_pcap={tmp_path}/b.pcap,tx_pcap={tmp_path}/ob.pcap\n"
        "hugepages = off\nmemory = 128\nmbufs = 4096\nstop-when-idle = 400\neal-log-level = error\n"
        f"flows = 4096\npolicy = {POLICIES / 'allow-all'}\n")
    r = run_cli(["--config", str(conf), "--quiet"])
    assert r.returncode == 0, r.stderr
    assert read_frames(tmp_path / "ob.pcap") == frames


def test_two_workers_each_forward_their_own_queue(tmp_path):
    from ztgate_harness import ZTGATE, POLICIES, write_pcap, read_frames
    import json, subprocess
    q0 = [bytes(eth() / IP(src="10.10.0.1", dst="10.10.0.2") / UDP(sport=100 + i, dport=9)) for i in range(40)]
    q1 = [bytes(eth() / IP(src="10.10.0.3", dst="10.10.0.2") / UDP(sport=200 + i, dport=9)) for i in range(25)]
    write_pcap(tmp_path / "q0.pcap", q0)
    write_pcap(tmp_path / "q1.pcap", q1)
    write_pcap(tmp_path / "empty.pcap", [])
    t = tmp_path
    p = subprocess.run([
        ZTGATE,
        "--port-a", f"net_pcap0,rx_pcap={t}/q0.pcap,rx_pcap={t}/q1.pcap,tx_pcap={t}/oa0.pcap,tx_pcap={t}/oa1.pcap",
        "--port-b", f"net_pcap1,rx_pcap={t}/empty.pcap,rx_pcap={t}/empty.pcap,tx_pcap={t}/ob0.pcap,tx_pcap={t}/ob1.pcap",
        "--workers", "2", "--lcores", "0@0,1@1,2@1", "--hugepages", "off", "--memory", "256",
        "--flows", "65536", "--policy", str(POLICIES / "allow-all"),
        "--mbufs", "4096", "--stop-when-idle", "400", "--stats-file", f"{t}/s.json",
        "--eal-log-level", "error"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    st = json.loads((t / "s.json").read_text())
    assert [w["rx_packets"][0] for w in st["workers"]] == [40, 25]
    assert [w["tx_packets"][1] for w in st["workers"]] == [40, 25]
    assert read_frames(t / "ob0.pcap") == q0
    assert read_frames(t / "ob1.pcap") == q1


def test_stops_cleanly_on_sigterm_under_load_with_every_packet_counted(tmp_path):
    # net_null ports receive an endless stream of 64-byte all-zero frames (EtherType 0), so the
    # worker is busy dropping when SIGTERM arrives.
    import json, signal, subprocess, time
    from ztgate_harness import ZTGATE
    proc = subprocess.Popen([ZTGATE, "--port-a", "net_null0", "--port-b", "net_null1", "--hugepages", "off",
                             "--memory", "128", "--mbufs", "4096", "--flows", "4096", "--stats-file", f"{tmp_path}/s.json",
                             "--eal-log-level", "error"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "signal 15, stopping" in err
    st = json.loads((tmp_path / "s.json").read_text())
    assert st["received"] > 1000
    assert st["forwarded"] == 0
    assert st["drops"] == {"ethertype_unsupported": st["received"]}
    assert f"total: received {st['received']} = forwarded 0 + dropped {st['received']}" in out
