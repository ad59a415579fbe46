#!/usr/bin/env python3
"""Writes tags.json: identity-tag vectors computed from DESIGN.md §2 and crypto/README.md by an
implementation independent of crypto/ (Python `cryptography` for HKDF and AES-CMAC, hand-written
byte layout). Inputs are fixed, so the output is stable; re-run only if the wire format changes:
    /usr/bin/python3 tests/crypto/vectors/gen_tag_vectors.py > tests/crypto/vectors/tags.json
"""
import ipaddress
import json
import struct

from cryptography.hazmat.primitives import cmac, hashes
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ALGS = {"aes128-cmac": 0, "aes256-cmac": 1}


def aes_cmac(key, msg):
    c = cmac.CMAC(algorithms.AES(key))
    c.update(msg)
    return c.finalize()


def epoch_secret(master, domain, epoch, gen):
    d = domain.encode()
    info = b"ztgate/sv" + struct.pack(">H", len(d)) + d + struct.pack(">QB", epoch, gen)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)


def identity_key(sv, identity, epoch, alg):
    blocks = 1 if alg == "aes128-cmac" else 2
    out = b""
    for b in range(1, blocks + 1):
        m = bytes([1]) + struct.pack(">IQ", identity, epoch) + bytes([ALGS[alg], b, 0])
        out += aes_cmac(sv, m)  # the PRF is AES-256-CMAC keyed with SV
    return out


def tag_fields(cov, alg, epoch, gen, identity, ts, lane):
    b0 = (1 << 4) | (1 if cov == "full" else 0)
    return bytes([b0, ALGS[alg], epoch & 0xFF, gen]) + struct.pack(">I", identity) + \
        ts.to_bytes(6, "big") + struct.pack(">H", lane)


def parse_inner(ip):
    v = ip[0] >> 4
    if v == 4:
        ihl = (ip[0] & 15) * 4
        total = struct.unpack(">H", ip[2:4])[0]
        return 4, ip[12:16], ip[16:20], ip[9], ip[ihl:total]
    plen = struct.unpack(">H", ip[4:6])[0]
    nh, off = ip[6], 40
    while nh in (0, 43, 60):
        nh, off = ip[off], off + (ip[off + 1] + 1) * 8
    return 6, ip[8:24], ip[24:40], nh, ip[off:40 + plen]


def mac_input(fields, cov, ip):
    v, src, dst, proto, l4 = parse_inner(ip)
    ph = src + dst + bytes([proto]) + struct.pack(">H", len(l4))
    ph += bytes((16 - len(ph) % 16) % 16)
    covered = l4 if cov == "full" else l4[:16]
    return fields + ph + covered


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(">%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def geneve_packet(outer, option, inner_ip):
    v, _, _, _, l4 = parse_inner(inner_ip)
    inner_len = len(inner_ip)  # vectors carry no trailing bytes
    geneve = bytes([len(option) // 4, 0x40]) + struct.pack(">H", 0x0800 if v == 4 else 0x86DD) + \
        outer["vni"].to_bytes(3, "big") + b"\0" + option
    udp_len = 8 + len(geneve) + inner_len
    src = ipaddress.ip_address(outer["src"]).packed
    dst = ipaddress.ip_address(outer["dst"]).packed
    udp = struct.pack(">HHHH", outer["src_port"], 6081, udp_len, 0) + geneve + inner_ip
    pseudo = src + dst + struct.pack(">HH", 17, udp_len) if outer["ip_version"] == 4 else \
        src + dst + struct.pack(">IxxxB", udp_len, 17)
    c = csum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack(">H", c) + udp[8:]
    if outer["ip_version"] == 4:
        hdr = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0, 0x4000, outer["ttl"], 17, 0,
                          src, dst)
        hdr = hdr[:10] + struct.pack(">H", csum(hdr)) + hdr[12:]
    else:
        hdr = struct.pack(">IHBB16s16s", 0x60000000, udp_len, 17, outer["ttl"], src, dst)
    return hdr + udp


def ipv4(proto, l4, src="10.1.0.5", dst="10.2.0.9"):
    h = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0x1234, 0x4000, 63, proto, 0,
                    ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed)
    h = h[:10] + struct.pack(">H", csum(h)) + h[12:]
    return h + l4


def ipv6(nh, l4, ext=b"", src="fd00:a::5", dst="fd00:b::9"):
    first = 0 if ext else nh
    return struct.pack(">IHBB16s16s", 0x60000000, len(ext) + len(l4), first, 62,
                       ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed) + ext + l4


def udp(sport, dport, payload):
    return struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload


def tcp(sport, dport, payload):
    return struct.pack(">HHIIBBHHH", sport, dport, 1000, 2000, 5 << 4, 0x18, 65535, 0, 0) + payload


def pattern(n, seed):
    return bytes((seed + 7 * i) & 0xFF for i in range(n))


MASTER = bytes(range(0x40, 0x60))  # 32 bytes

CASES = [
    ("ipv4-udp-full-aes256", "aes256-cmac", "full", ipv4(17, udp(40000, 53, pattern(20, 1))), 4),
    ("ipv4-udp-full-aes128", "aes128-cmac", "full", ipv4(17, udp(40000, 53, pattern(20, 1))), 4),
    ("ipv4-tcp-1400-full-aes256", "aes256-cmac", "full",
     ipv4(6, tcp(51000, 443, pattern(1400, 9))), 4),
    ("ipv4-tcp-1400-hdr-aes256", "aes256-cmac", "hdr",
     ipv4(6, tcp(51000, 443, pattern(1400, 9))), 4),
    ("ipv4-icmp-8-hdr-aes128", "aes128-cmac", "hdr",
     ipv4(1, bytes([8, 0, 0xF7, 0xFF, 0, 0, 0, 0])), 6),
    ("ipv6-udp-full-aes256", "aes256-cmac", "full",
     ipv6(17, udp(41000, 51820, pattern(148, 3))), 6),
    ("ipv6-hbh-tcp-hdr-aes128", "aes128-cmac", "hdr",
     ipv6(6, tcp(52000, 8443, pattern(64, 5)), ext=bytes([6, 0, 1, 4, 0, 0, 0, 0])), 4),
    ("ipv6-udp-empty-payload-full-aes128", "aes128-cmac", "full",
     ipv6(17, udp(41001, 9999, b"")), 6),
]


def main():
    vectors = []
    for i, (name, alg, cov, inner, outer_v) in enumerate(CASES):
        epoch = 1900 + i * 37          # low byte varies: exercises the 8-bit epoch field
        gen = i % 3
        identity = 0x00010000 + 1000 + i
        ts = 123_456_789_012 + i * 1_000_003
        lane = 7 * i
        sv = epoch_secret(MASTER, "corp.example", epoch, gen)
        key = identity_key(sv, identity, epoch, alg)
        fields = tag_fields(cov, alg, epoch, gen, identity, ts, lane)
        mi = mac_input(fields, cov, inner)
        mac = aes_cmac(key, mi)
        body = fields + mac
        option = struct.pack(">HBB", 0xFFF0, 0x81, 8) + body
        outer = {"ip_version": outer_v,
                 "src": "192.0.2.10" if outer_v == 4 else "2001:db8::10",
                 "dst": "198.51.100.20" if outer_v == 4 else "2001:db8::20",
                 "src_port": 50000 + i, "ttl": 64, "vni": 0x00ABC0 + i}
        vectors.append({
            "name": name, "master": MASTER.hex(), "domain": "corp.example",
            "epoch": epoch, "generation": gen, "sv": sv.hex(),
            "identity": identity, "alg": alg, "key": key.hex(),
            "coverage": cov, "timestamp_ns": ts, "lane": lane,
            "inner_ip": inner.hex(), "mac_input": mi.hex(), "tag_body": body.hex(),
            "outer": outer, "geneve_packet": geneve_packet(outer, option, inner).hex(),
        })
    print(json.dumps({
        "format": "ztgate identity tag v1 vectors (DESIGN.md §2, crypto/README.md)",
        "generator": "tests/crypto/vectors/gen_tag_vectors.py (Python cryptography, independent of crypto/)",
        "vectors": vectors}, indent=1))


if __name__ == "__main__":
    main()
