"""Evasion suite (issue 10): packets built to slip past an inline firewall — fragment tricks
(RFC 1858, 3128, 5722, 7112), extension-header chains, TTL games, impossible TCP flags, IP
options and source routes, VLAN stacking and tunnels hiding a denied flow — through the real
ztgate on net_pcap under tests/component/policies/evasion (zone-a may reach zone-b on tcp/8080,
udp/5353 and ping; ssh to zone-b is explicitly denied; zone-c and every tunnel protocol is
named by no rule).

All cases go through ONE ztgate run (one capture in, one capture out, counters from
--stats-file): a module fixture builds the capture, each parametrized test then checks its own
case — which of its frames left, byte for byte, and that its drop reasons were counted — and one
test checks the whole: the exact drop table, received = forwarded + dropped, and nothing
forwarded that no case expects. Cases never share a flow or a fragment id, so one cannot decide
another.

Default deny holds: where a case forwards something the case says why that is correct."""
from collections import Counter
from dataclasses import dataclass

import pytest
from scapy.contrib.geneve import GENEVE
from scapy.layers.inet import IP, TCP, UDP, IPOption_LSRR, IPOption_RR, IPOption_SSRR
from scapy.layers.inet6 import (IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
                                IPv6ExtHdrRouting, IPv6ExtHdrSegmentRouting)
from scapy.layers.l2 import GRE, Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

from ztgate_harness import run_ztgate

A, B, C = "10.10.0.1", "10.10.0.2", "10.10.0.3"
A6, B6, C6 = "fd00:a::1", "fd00:b::2", "fd00:c::3"
WEB, MDNS = 8080, 5353


def eth():
    return Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b")


@dataclass
class Case:
    name: str
    frames: list            # bytes, in the order they are sent
    forwarded: list         # indices into frames that must leave on port B, in order
    drops: dict             # reason -> count this case adds
    why: str = ""           # where something is forwarded: why that is correct
    admitted: int = 0       # flows this case opens


_sport = iter(range(42000, 43000))
_ipid = iter(range(3000, 4000))


def sport():
    return next(_sport)


def ipid():
    return next(_ipid)


def syn(dst=B, dport=WEB, **ip):
    return eth() / IP(src=A, dst=dst, **ip) / TCP(sport=sport(), dport=dport, flags="S", seq=1000)


def v4frag(proto, ident, off8, more, payload, src=A, dst=B, l2=None):
    """One IPv4 fragment: `payload` are the L4 bytes at offset off8*8."""
    flags = "MF" if more else 0
    return bytes((l2 or eth()) / IP(src=src, dst=dst, id=ident, proto=proto, flags=flags, frag=off8) / Raw(payload))


def l4_bytes(l4):
    """The L4 bytes of `l4` (TCP/UDP + payload) with the checksum of an A -> B packet."""
    return bytes(IP(src=A, dst=B) / l4)[20:]


def v6frag(ident, off8, more, nh, payload, src=A6, dst=B6):
    return bytes(eth() / IPv6(src=src, dst=dst, nh=44) /
                 IPv6ExtHdrFragment(nh=nh, offset=off8, m=int(more), id=ident) / Raw(payload))


def cases():
    out = []

    def case(name, frames, forwarded, drops, why="", admitted=0):
        out.append(Case(name, [bytes(f) for f in frames], forwarded, drops, why, admitted))

    # --- IPv4 fragments -------------------------------------------------------------------
    seg = l4_bytes(TCP(sport=sport(), dport=WEB, flags="S") / Raw(b"t" * 40))  # 60 bytes
    i = ipid()
    case("tiny_first_fragment_rfc1858",
         [v4frag(6, i, 0, True, seg[:16]), v4frag(6, i, 2, False, seg[16:])], [],
         {"frag_first_too_short": 1, "frag_no_first": 1})
    seg = l4_bytes(TCP(sport=sport(), dport=WEB, flags="S") / Raw(b"t" * 40))
    i = ipid()
    case("tiny_first_fragment_in_qinq",
         [v4frag(6, i, 0, True, seg[:8], l2=eth() / Dot1AD(vlan=10) / Dot1Q(vlan=20)),
          v4frag(6, i, 1, False, seg[8:], l2=eth() / Dot1AD(vlan=10) / Dot1Q(vlan=20))], [],
         # the second one starts at offset 8 of TCP: the RFC 1858 header rewrite shape
         {"frag_first_too_short": 1, "ipv4_bad_fragment_size": 1})

    # RFC 3128: a fragment at offset 8 rewrites the TCP flags/offset of an allowed first fragment.
    seg = l4_bytes(TCP(sport=sport(), dport=WEB, flags="S") / Raw(b"t" * 20))  # 40 bytes
    i = ipid()
    first, evil = v4frag(6, i, 0, True, seg[:24]), v4frag(6, i, 1, False, b"\x00" * 4 + b"\x50\x12" + b"r" * 10)
    case("tcp_header_overwrite_rfc3128_first_then_overwrite", [first, evil], [0],
         {"ipv4_bad_fragment_size": 1}, admitted=1,
         why="the first fragment is a whole, allowed SYN header on its own; the rewrite never "
             "leaves, so the receiver never completes the datagram")
    seg = l4_bytes(TCP(sport=sport(), dport=WEB, flags="S") / Raw(b"t" * 20))
    i = ipid()
    first, evil = v4frag(6, i, 0, True, seg[:24]), v4frag(6, i, 1, False, b"\x00" * 4 + b"\x50\x12" + b"r" * 10)
    case("tcp_header_overwrite_rfc3128_overwrite_then_first", [evil, first], [1],
         {"ipv4_bad_fragment_size": 1}, admitted=1,
         why="as above: the overwrite is refused whatever the order, the honest first fragment is allowed")

    # RFC 5722-style overlap in both orders (UDP to the allowed port).
    dgram = l4_bytes(UDP(sport=sport(), dport=MDNS) / Raw(b"u" * 56))  # 64 bytes
    i = ipid()
    f0, f1, f2 = v4frag(17, i, 0, True, dgram[:32]), v4frag(17, i, 4, False, dgram[32:]), \
        v4frag(17, i, 3, True, b"X" * 16)  # [24, 40) overlaps both
    case("overlap_after_first", [f0, f2, f1], [0], {"frag_overlap": 2}, admitted=1,
         why="the first fragment was decided before the overlap arrived; the overlap poisons the "
             "datagram so nothing after it leaves and the receiver cannot reassemble it")
    dgram = l4_bytes(UDP(sport=sport(), dport=MDNS) / Raw(b"u" * 56))
    i = ipid()
    f0, f1, f2 = v4frag(17, i, 0, True, dgram[:32]), v4frag(17, i, 4, False, dgram[32:]), \
        v4frag(17, i, 3, True, b"X" * 16)
    case("overlap_before_first", [f2, f1, f0], [2], {"frag_no_first": 2}, admitted=1,
         why="later fragments are never held or sent before their first: both are dropped, the "
             "lone first fragment is an allowed header that cannot be completed")
    # A second first fragment of the same datagram naming another port (denied ssh): ambiguity.
    dgram = l4_bytes(UDP(sport=sport(), dport=MDNS) / Raw(b"u" * 56))
    i = ipid()
    case("second_first_fragment_rewrites_ports",
         [v4frag(17, i, 0, True, dgram[:32]), v4frag(17, i, 0, True, dgram[:2] + b"\x00\x16" + dgram[4:32]),
          v4frag(17, i, 4, False, dgram[32:])], [0], {"frag_overlap": 2}, admitted=1,
         why="first fragment forwarded as allowed; the rewrite and everything after it drop")
    # Exact duplicates: stricter than 'drop the duplicate only' — the datagram is poisoned.
    dgram = l4_bytes(UDP(sport=sport(), dport=MDNS) / Raw(b"u" * 56))
    i = ipid()
    f0, f1, f2 = v4frag(17, i, 0, True, dgram[:32]), v4frag(17, i, 4, True, dgram[32:56]), \
        v4frag(17, i, 7, False, dgram[56:])
    case("duplicate_fragment", [f0, f1, f1, f2], [0, 1], {"frag_overlap": 2}, admitted=1,
         why="fragments before the duplicate follow their allowed first fragment; the duplicate "
             "poisons the datagram (RFC 5722), so its last fragment never leaves")
    # Same (src, dst, id), other protocol: another datagram (the receiver keys on the protocol too).
    dgram = l4_bytes(UDP(sport=sport(), dport=MDNS) / Raw(b"u" * 24))  # 32 bytes
    i = ipid()
    case("fragments_disagree_in_protocol",
         [v4frag(17, i, 0, True, dgram[:16]), v4frag(6, i, 2, False, dgram[16:])], [0],
         {"frag_no_first": 1}, admitted=1,
         why="the UDP first fragment is allowed; the TCP piece has no first fragment of its own")
    # A denied first fragment takes its datagram down with it.
    seg = l4_bytes(TCP(sport=sport(), dport=22, flags="S") / Raw(b"t" * 20))
    i = ipid()
    case("fragments_of_a_denied_datagram", [v4frag(6, i, 0, True, seg[:24]), v4frag(6, i, 3, False, seg[24:])],
         [], {"policy_deny": 2})

    # --- IPv6 fragments and extension headers ----------------------------------------------
    seg = l4_bytes(TCP(sport=sport(), dport=WEB, flags="S") / Raw(b"t" * 20))
    i = ipid()
    case("ipv6_first_fragment_without_l4_header_rfc7112",
         [v6frag(i, 0, True, 6, seg[:8]), v6frag(i, 1, False, 6, seg[8:])], [],
         {"frag_first_too_short": 1, "frag_no_first": 1})
    i = ipid()
    dst = bytes([6, 1]) + b"\x01\x0c" + b"\x00" * 12  # destination options, 16 bytes
    case("ipv6_first_fragment_cutting_the_extension_chain",
         [v6frag(i, 0, True, 60, dst[:8]), v6frag(i, 1, False, 60, dst[8:] + seg)], [],
         {"frag_first_too_short": 1, "frag_no_first": 1})
    i = ipid()
    case("ipv6_nested_fragment_headers",
         [eth() / IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(nh=44, m=1, id=i) /
          IPv6ExtHdrFragment(nh=6, m=1, id=i) / TCP(sport=sport(), dport=WEB, flags="S") / Raw(b"p" * 4)], [],
         {"ipv6_bad_fragment": 1})
    legal = (eth() / IPv6(src=A6, dst=B6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() /
             IPv6ExtHdrSegmentRouting(addresses=[B6], segleft=0) / IPv6ExtHdrFragment(m=0, offset=0, id=ipid()) /
             IPv6ExtHdrDestOpt() / TCP(sport=sport(), dport=WEB, flags="S"))
    case("ipv6_long_legal_chain_with_atomic_fragment", [legal], [0], {}, admitted=1,
         why="five headers in RFC 8200 order, a spent routing header (segments left 0) and an atomic "
             "fragment (RFC 6946: a whole datagram) to the allowed port")
    chain = eth() / IPv6(src=A6, dst=B6)
    for _ in range(9):
        chain = chain / IPv6ExtHdrDestOpt()
    case("ipv6_chain_of_nine", [chain / TCP(sport=sport(), dport=WEB, flags="S")], [],
         {"ipv6_ext_chain_too_long": 1})
    # 14 + 40 + 8 (hop-by-hop) + 456 (destination options: two PadN) puts TCP at byte 518, past
    # the 512 bytes the parser inspects: a header it cannot see is a header it cannot judge.
    big = bytes([6, 56]) + b"\x01\xff" + b"\x00" * 255 + b"\x01\xc3" + b"\x00" * 195
    case("ipv6_chain_past_the_window",
         [eth() / IPv6(src=A6, dst=B6) / IPv6ExtHdrHopByHop(nh=60) / Raw(big) /
          Raw(bytes(TCP(sport=sport(), dport=WEB, flags="S")))], [], {"header_chain_too_long": 1})
    case("ipv6_atomic_fragment_to_denied_port",
         [eth() / IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(m=0, offset=0, id=ipid()) /
          TCP(sport=sport(), dport=9999, flags="S")], [], {"policy_default_deny": 1})
    case("ipv6_segment_routing_to_elsewhere",
         [eth() / IPv6(src=A6, dst=B6) / IPv6ExtHdrSegmentRouting(addresses=[C6, B6], segleft=1) /
          TCP(sport=sport(), dport=WEB, flags="S")], [], {"ip_source_route": 1})
    case("ipv6_routing_type0",
         [eth() / IPv6(src=A6, dst=B6) / IPv6ExtHdrRouting(addresses=[C6], segleft=1) /
          TCP(sport=sport(), dport=WEB, flags="S")], [], {"ipv6_routing_type0": 1})
    # IPv6 later fragments: only the offset-zero fragment's next header counts (RFC 8200 §4.5).
    dgram = l4_bytes(UDP(sport=sport(), dport=MDNS) / Raw(b"u" * 24))
    i = ipid()
    case("ipv6_fragments_disagree_in_next_header",
         [v6frag(i, 0, True, 17, dgram[:16]), v6frag(i, 2, False, 6, dgram[16:])], [0, 1], {}, admitted=1,
         why="RFC 8200 §4.5: receivers take the next header of the offset-zero fragment only, so the "
             "later piece is part of the allowed UDP datagram, not a TCP one")

    # --- TTL / hop limit ----------------------------------------------------------------------
    case("ttl_zero", [syn(ttl=0)], [], {"ip_ttl_zero": 1})
    case("hop_limit_zero", [eth() / IPv6(src=A6, dst=B6, hlim=0) / TCP(sport=sport(), dport=WEB, flags="S")], [],
         {"ip_ttl_zero": 1})
    case("ttl_one", [syn(ttl=1)], [0], {}, admitted=1,
         why="a bump in the wire does not route, so it neither decrements nor expires TTL; the next "
             "hop decides. Insertion by TTL cannot change an L7 verdict: a retransmission must "
             "repeat the bytes already inspected")

    # --- TCP -----------------------------------------------------------------------------------
    def tcp(flags, dport=WEB, **kw):
        return eth() / IP(src=A, dst=B) / TCP(sport=sport(), dport=dport, flags=flags, **kw)

    case("tcp_data_offset_4", [tcp("S", dataofs=4)], [], {"tcp_bad_offset": 1})
    case("tcp_data_offset_past_segment", [tcp("S", dataofs=15)], [], {"tcp_bad_offset": 1})
    case("tcp_syn_fin", [tcp("SF")], [], {"tcp_bad_state": 1})
    case("tcp_syn_rst", [tcp("SR")], [], {"tcp_bad_flags": 1})
    case("tcp_syn_rst_ack", [tcp("SRA")], [], {"tcp_bad_flags": 1})
    case("tcp_no_flags", [tcp("")], [], {"tcp_bad_flags": 1})
    case("tcp_fin_only", [tcp("F")], [], {"tcp_bad_flags": 1})
    case("tcp_xmas", [tcp("FPU")], [], {"tcp_bad_flags": 1})
    case("tcp_ack_without_handshake", [tcp("A")], [], {"tcp_no_syn": 1})
    case("tcp_rst_without_flow", [tcp("R")], [], {"tcp_no_syn": 1})

    # --- IPv4 options --------------------------------------------------------------------------
    case("ipv4_record_route", [syn(options=[IPOption_RR(routers=["0.0.0.0"] * 2)])], [0], {}, admitted=1,
         why="record route changes nothing about where the packet goes; options are left to policy")
    case("ipv4_loose_source_route", [syn(options=[IPOption_LSRR(routers=[C])])], [], {"ip_source_route": 1})
    case("ipv4_strict_source_route", [syn(options=[IPOption_SSRR(routers=[C])])], [], {"ip_source_route": 1})
    for n, opt in (("length_0", b"\x07\x00\x00\x00"), ("length_1", b"\x44\x01\x00\x00"),
                   ("length_past_header", b"\x07\x0c\x04\x00")):
        # scapy will not build bad options: patch them over four NOPs and fix the checksum
        raw = bytearray(bytes(eth() / IP(src=A, dst=B, ihl=6, options=b"\x01\x01\x01\x01") /
                              TCP(sport=sport(), dport=WEB, flags="S")))
        raw[34:38] = opt
        raw[24:26] = b"\x00\x00"
        s = sum(int.from_bytes(raw[14 + k:16 + k], "big") for k in range(0, 24, 2))
        s = (s & 0xFFFF) + (s >> 16)
        raw[24:26] = ((~((s & 0xFFFF) + (s >> 16))) & 0xFFFF).to_bytes(2, "big")
        case(f"ipv4_option_{n}", [bytes(raw)], [], {"ipv4_bad_options": 1})

    # --- VLAN ----------------------------------------------------------------------------------
    def tagged(*tags):
        l2 = eth()
        for t in tags:
            l2 = l2 / t
        return l2 / IP(src=A, dst=B) / TCP(sport=sport(), dport=WEB, flags="S")

    case("vlan_802_1q", [tagged(Dot1Q(vlan=10))], [0], {}, admitted=1, why="one tag, allowed flow")
    case("vlan_qinq", [tagged(Dot1AD(vlan=10), Dot1Q(vlan=20))], [0], {}, admitted=1,
         why="802.1ad + 802.1Q, the depth ztgate accepts, allowed flow")
    case("vlan_three_tags", [tagged(Dot1AD(vlan=10), Dot1Q(vlan=20), Dot1Q(vlan=30))], [], {"vlan_too_deep": 1})
    case("vlan_qinq_to_denied_port",
         [eth() / Dot1AD(vlan=10) / Dot1Q(vlan=20) / IP(src=A, dst=B) / TCP(sport=sport(), dport=22, flags="S")],
         [], {"policy_deny": 1})

    # --- tunnels hiding a denied flow ----------------------------------------------------------
    hidden = IP(src=A, dst=C) / TCP(sport=sport(), dport=22, flags="S")
    case("gre_hiding_ssh_to_zone_c", [eth() / IP(src=A, dst=B) / GRE(proto=0x0800) / hidden], [],
         {"policy_default_deny": 1})
    case("ipv4_in_ipv6", [eth() / IPv6(src=A6, dst=B6, nh=4) / hidden], [], {"policy_default_deny": 1})
    case("ipv6_in_ipv4", [eth() / IP(src=A, dst=B, proto=41) / IPv6(src=A6, dst=C6) /
                          TCP(sport=sport(), dport=22, flags="S")], [], {"policy_default_deny": 1})
    case("ipv4_in_ipv4", [eth() / IP(src=A, dst=B, proto=4) / hidden], [], {"policy_default_deny": 1})
    inner_geneve = IP(src=A, dst=B) / UDP(sport=sport(), dport=6081) / GENEVE(proto=0x0800) / hidden
    case("geneve_inside_geneve", [eth() / IP(src=A, dst=B) / UDP(sport=sport(), dport=6081) /
                                  GENEVE(proto=0x0800) / inner_geneve], [], {"tunnel_nested": 1})
    case("untagged_geneve_hiding_ssh", [eth() / IP(src=A, dst=B) / UDP(sport=sport(), dport=6081) /
                                        GENEVE(proto=0x0800) / hidden], [], {"policy_default_deny": 1})
    gen = bytes(IP(src=A, dst=B, id=ipid()) / UDP(sport=sport(), dport=6081) / GENEVE(proto=0x0800) / hidden)
    case("fragmented_geneve", [v4frag(17, int.from_bytes(gen[4:6], "big"), 0, True, gen[20:36])], [],
         {"geneve_fragmented": 1})
    return out


CASES = cases()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    frames = [f for c in CASES for f in c.frames]
    owner = {}
    for c in CASES:
        for f in set(c.frames):
            assert owner.setdefault(f, c.name) == c.name, f"{c.name} and {owner[f]} share a frame"
    r = run_ztgate(tmp_path_factory.mktemp("evasion"), frames_a=frames, policy="evasion")
    assert r.returncode == 0, r.stderr
    assert "runtime error:" not in r.stderr, r.stderr
    return r


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(run, case):
    out = [f for f in run.out_b if f in case.frames]
    assert out == [case.frames[i] for i in case.forwarded], (
        f"{case.name}: forwarded {[case.frames.index(f) for f in out]}, expected {case.forwarded}")
    for reason, n in case.drops.items():
        assert run.stats["drops"].get(reason, 0) >= n, f"{case.name}: {reason} not counted: {run.stats['drops']}"


def test_every_frame_is_accounted_for_and_nothing_else_leaves(run):
    expected_out = [c.frames[i] for c in CASES for i in c.forwarded]
    expected_drops = Counter()
    for c in CASES:
        expected_drops.update(c.drops)
    sent = sum(len(c.frames) for c in CASES)
    assert run.out_b == expected_out
    assert run.out_a == []
    assert run.stats["drops"] == dict(expected_drops)
    assert run.stats["received"] == sent == run.stats["forwarded"] + run.stats["dropped"]
    assert run.stats["forwarded"] == len(expected_out)
    assert run.stats["flows"]["admitted"] == sum(c.admitted for c in CASES)
