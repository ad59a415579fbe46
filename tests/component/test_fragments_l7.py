"""Component tests: the real ztgate on net_pcap ports follows IP fragments to their datagram's
verdict and inspects HTTP request lines (dataplane/README.md "Fragments" and "L7"): the frames
that leave, byte for byte, and the drops by reason.

The pipeline tells a flow's directions by addresses, not by ports, and decides a burst in passes
(a flow opened by a packet exists for the next burst, not for the rest of its own). So the TCP
test sends only the clients' SYNs on port A, fewer than a burst, and everything that follows —
replies and the clients' later segments, in capture order — on port B, which the worker polls
after A: each SYN has opened its flow before anything else of its session is decided."""
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from ztgate_harness import run_ztgate

MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
CLIENT, SERVER = "10.10.0.1", "10.10.0.2"


def eth():
    return Ether(src=MAC_A, dst=MAC_B)


def frags(pkt, size=32):
    return [bytes(eth() / f) for f in fragment(pkt, fragsize=size)]


def test_fragments_follow_their_first_fragment_and_overlaps_and_orphans_drop(tmp_path):
    ping = frags(IP(src=CLIENT, dst=SERVER, id=101) / ICMP(id=7, seq=1) / Raw(b"p" * 100))
    denied = frags(IP(src=CLIENT, dst=SERVER, id=102) / UDP(sport=5000, dport=9) / Raw(b"u" * 80))
    # Datagram 103: a first fragment [0,32), then [24,56) overlapping it, then the honest rest.
    ping2 = frags(IP(src=CLIENT, dst=SERVER, id=103) / ICMP(id=7, seq=2) / Raw(b"q" * 100))
    overlap = bytes(eth() / IP(src=CLIENT, dst=SERVER, id=103, proto=1, flags="MF", frag=3) / Raw(b"X" * 32))
    orphan = bytes(eth() / IP(src=CLIENT, dst=SERVER, id=104, proto=1, frag=4) / Raw(b"o" * 16))
    assert len(ping) == 4 and len(denied) == 3 and len(ping2) == 4
    frames = ping + denied + [ping2[0], overlap] + ping2[1:] + [orphan]
    r = run_ztgate(tmp_path, frames_a=frames, policy="l7-http")
    assert r.returncode == 0, r.stderr
    assert r.out_b == ping + [ping2[0]]
    assert r.stats["drops"] == {"policy_default_deny": 3, "frag_overlap": 4, "frag_no_first": 1}
    assert r.stats["received"] == len(frames)
    assert r.stats["forwarded"] == 5


def tcp(src, dst, sport, dport, flags, seq, ack=0, data=b""):
    pkt = eth() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack)
    return bytes(pkt / Raw(data)) if data else bytes(pkt)


def session(sport, segments):
    """Handshake on CLIENT:sport -> SERVER:8080, then the client's data segments (in the order
    given, each (offset, bytes)). Returns (handshake frames, data frames)."""
    isn, srv = 1000, 9000
    hs = [tcp(CLIENT, SERVER, sport, 8080, "S", isn),
          tcp(SERVER, CLIENT, 8080, sport, "SA", srv, isn + 1),
          tcp(CLIENT, SERVER, sport, 8080, "A", isn + 1, srv + 1)]
    data = [tcp(CLIENT, SERVER, sport, 8080, "PA", isn + 1 + off, srv + 1, b) for off, b in segments]
    return hs, data


def test_http_request_lines_are_inspected_across_segments(tmp_path):
    get_hs, get = session(41000, [(0, b"GET /index.html HTTP/1.1\r\nHost: b\r\n\r\n")])
    post_hs, post = session(41001, [(0, b"POST /form HTTP/1.1\r\n\r\n")])
    a, b = b"GET / HTTP/1.1\r\nReferer: /etc/pa", b"sswd\r\n\r\n"
    split_hs, split = session(41002, [(0, a), (len(a), b)])
    # The same split sent in reverse order: the second half first is ahead of the stream.
    rev_hs, rev = session(41003, [(len(a), b), (0, a), (len(a), b)])
    # 1400 + 700 bytes and no line end within the 2048-byte bound: the second segment is denied.
    long_hs, long_line = session(41004, [(0, b"GET /" + b"a" * 1395), (1400, b"b" * 700 + b" HTTP/1.1\r\n")])
    sessions = [(get_hs, get), (post_hs, post), (split_hs, split), (rev_hs, rev), (long_hs, long_line)]
    syns = [hs[0] for hs, _ in sessions]
    rest = [f for hs, data in sessions for f in hs[1:] + data]
    r = run_ztgate(tmp_path, frames_a=syns, frames_b=rest, policy="l7-http")
    assert r.returncode == 0, r.stderr
    assert "l7_not_ready" not in r.stats.get("drops", {}), (
        "the runtime published the policy without Pipeline::prepare: no L7 scratch on the workers")
    assert r.out_b == syns
    assert r.out_a == (get_hs[1:] + get + post_hs[1:] + split_hs[1:] + split[:1] + rev_hs[1:] + rev[1:2]
                       + long_hs[1:] + long_line[:1])
    assert r.stats["drops"] == {"policy_l7_deny": 4, "l7_out_of_order": 1}
