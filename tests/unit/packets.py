"""Build packets header by header, with the header columns each one should give.

Independent of zcap._headers on purpose: the parser is checked against a
model written here from the protocol layouts (and, where dpkt decodes the
same packet, against dpkt).  Used by tests/unit/test_headers.py and
bench/analytics.py.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field
from typing import Optional

TPIDS = (0x8100, 0x88A8, 0x9100)
LINK_ETHERNET, LINK_SLL, LINK_SLL2, LINK_RAW, LINK_NULL, LINK_LOOP = 1, 113, 276, 101, 0, 108
EXT_HOP, EXT_ROUTING, EXT_FRAGMENT, EXT_AH, EXT_DSTOPTS = 0, 43, 44, 51, 60
PORT_PROTOS = (6, 17, 132, 136)


@dataclass
class Spec:
    """One packet's headers, from the link layer to the transport header."""
    link: int = LINK_ETHERNET
    tags: list[tuple[int, int]] = field(default_factory=list)     # (tpid, tci) outermost first
    meta_vlan: Optional[int] = None        # a tag the kernel stripped (not in the bytes)
    mpls: int = 0                          # MPLS labels (Ethernet only)
    l3: str = "ipv4"                       # ipv4, ipv6, arp
    src: bytes = b"\x0a\0\0\1"
    dst: bytes = b"\x0a\0\0\2"
    ttl: int = 64
    ihl: int = 5
    frag_offset: int = 0                   # bytes, a multiple of 8
    more_fragments: bool = False
    dont_fragment: bool = False
    ext: list[int] = field(default_factory=list)   # IPv6 extension headers, in order
    proto: int = 6
    sport: int = 1234
    dport: int = 80
    tcp_flags: int = 0x18
    tcp_doff: int = 5
    icmp: tuple[int, int] = (8, 0)
    payload: bytes = b""


def _ipv4_header(s: Spec, l4len: int) -> bytes:
    frag = (s.frag_offset // 8) | (0x2000 if s.more_fragments else 0) | (0x4000 if s.dont_fragment else 0)
    opts = bytes(range(1, 1 + 4 * (s.ihl - 5)))
    total = 4 * s.ihl + l4len
    return struct.pack("!BBHHHBBH4s4s", 0x40 | s.ihl, 0, total, 1, frag, s.ttl, s.proto, 0,
                       s.src, s.dst) + opts


def _ipv6_headers(s: Spec, l4len: int) -> bytes:
    chain = list(s.ext) + [s.proto]
    exts = b""
    for kind, nxt in zip(chain, chain[1:]):
        if kind == EXT_FRAGMENT:
            exts += struct.pack("!BBHI", nxt, 0, s.frag_offset | (1 if s.more_fragments else 0), 7)
        elif kind == EXT_AH:
            exts += struct.pack("!BBHII", nxt, 2, 0, 1, 2) + b"\0" * 4     # (2 + 2) * 4 = 16 bytes
        else:
            exts += struct.pack("!BB", nxt, 1) + b"\1" * 14                 # (1 + 1) * 8 = 16 bytes
    plen = len(exts) + l4len
    first = chain[0]
    return struct.pack("!IHBB16s16s", 0x60000000, plen, first, s.ttl, s.src, s.dst) + exts


def _l4(s: Spec) -> bytes:
    if s.proto == 6:
        opts = b"\1" * (4 * (s.tcp_doff - 5)) if s.tcp_doff >= 5 else b""
        return struct.pack("!HHIIBBHHH", s.sport, s.dport, 1, 2, s.tcp_doff << 4, s.tcp_flags,
                           1024, 0, 0) + opts + s.payload
    if s.proto in (17, 136):
        return struct.pack("!HHHH", s.sport, s.dport, 8 + len(s.payload), 0) + s.payload
    if s.proto == 132:
        return struct.pack("!HHII", s.sport, s.dport, 1, 0) + s.payload
    if s.proto in (1, 58):
        return struct.pack("!BBHI", s.icmp[0], s.icmp[1], 0, 0) + s.payload
    return s.payload


def _has_l4(s: Spec) -> bool:
    return s.frag_offset == 0 and not (s.l3 == "ipv6" and s.proto in (50, 59))


def build(s: Spec) -> bytes:
    """The packet's bytes as its link type carries them."""
    l4 = _l4(s) if s.frag_offset == 0 else s.payload
    if s.l3 == "ipv4":
        l3 = _ipv4_header(s, len(l4)) + l4
        et = 0x0800
    elif s.l3 == "ipv6":
        l3 = _ipv6_headers(s, len(l4)) + l4
        et = 0x86DD
    else:
        l3 = bytes(28)
        et = 0x0806
    if s.link in (LINK_RAW,):
        return l3
    if s.link in (LINK_NULL, LINK_LOOP):
        family = 2 if s.l3 == "ipv4" else 10 if s.l3 == "ipv6" else 99
        return struct.pack("<I" if s.link == LINK_NULL else "!I", family) + l3
    inner = et
    mpls = b""
    if s.mpls:
        inner = 0x8847
        for i in range(s.mpls):
            mpls += struct.pack("!I", (100 + i) << 12 | (0x100 if i == s.mpls - 1 else 0) | 64)
    tags = b""
    types = [t for t, _ in s.tags] + [inner]
    for (_tpid, tci), nxt in zip(s.tags, types[1:]):
        tags += struct.pack("!HH", tci, nxt)
    first = types[0]
    if s.link == LINK_ETHERNET:
        head = b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", first)
    elif s.link == LINK_SLL:
        head = struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 6 + b"\0\0", first)
    else:
        head = struct.pack("!HHiHBB8s", first, 0, 3, 1, 0, 6, b"\x02" * 6 + b"\0\0")
    return head + tags + mpls + l3


def expected(s: Spec) -> dict[str, object]:
    """The header columns of the whole packet (not truncated)."""
    vids = ([s.meta_vlan] if s.meta_vlan is not None else []) + [tci & 0xFFF for _, tci in s.tags]
    ip_native = s.link in (LINK_RAW, LINK_NULL, LINK_LOOP)
    l2 = 0 if s.link == LINK_RAW else 4 if ip_native else {1: 14, 113: 16, 276: 20}[s.link]
    l3 = l2 + (0 if ip_native else 4 * len(s.tags) + 4 * s.mpls)
    et = {"ipv4": 0x0800, "ipv6": 0x86DD, "arp": 0x0806}[s.l3]
    e: dict[str, object] = dict(
        ethertype=0 if ip_native and s.l3 == "arp" else (0x8847 if s.mpls else et),
        vlan_outer=vids[0] if vids else -1, vlan_inner=vids[1] if len(vids) > 1 else -1,
        mpls_label=100 if s.mpls else -1,
        ip_version=0, ip_src=0, ip_dst=0, ip6_src=bytes(16), ip6_dst=bytes(16), proto=-1,
        sport=-1, dport=-1, tcp_flags=-1, l3_offset=-1, l4_offset=-1, payload_offset=-1,
        frag_offset=0, frag_flags=0, parse_flags=0, ttl=-1, icmp_type=-1, icmp_code=-1)
    if s.link == LINK_RAW and s.l3 == "arp":
        e["parse_flags"] = 2
        return e
    if s.l3 == "arp":
        return e
    e["l3_offset"] = l3
    e["ttl"] = s.ttl
    fragmented = s.frag_offset > 0 or s.more_fragments or (s.l3 == "ipv6" and EXT_FRAGMENT in s.ext)
    if s.l3 == "ipv4":
        e.update(ip_version=4, ip_src=int.from_bytes(s.src, "big"), ip_dst=int.from_bytes(s.dst, "big"))
        l4 = l3 + 4 * s.ihl
        e["frag_flags"] = (1 if s.more_fragments else 0) | (2 if s.dont_fragment else 0)
        fragmented = s.frag_offset > 0 or s.more_fragments
    else:
        e.update(ip_version=6, ip6_src=s.src, ip6_dst=s.dst)
        l4 = l3 + 40 + 16 * sum(1 for x in s.ext if x != EXT_FRAGMENT) + 8 * s.ext.count(EXT_FRAGMENT)
        e["frag_flags"] = 1 if (s.more_fragments and EXT_FRAGMENT in s.ext) else 0
    e["proto"] = s.proto
    e["frag_offset"] = s.frag_offset
    if fragmented:
        e["parse_flags"] = 8
    if s.frag_offset > 0:
        e["payload_offset"] = l4
        return e
    if s.l3 == "ipv6" and s.proto in (50, 59):
        return e
    e["l4_offset"] = l4
    if s.proto in PORT_PROTOS:
        e.update(sport=s.sport, dport=s.dport)
        hl = {6: 4 * s.tcp_doff, 17: 8, 136: 8, 132: 12}[s.proto]
        e["payload_offset"] = l4 + hl
        if s.proto == 6:
            e["tcp_flags"] = s.tcp_flags
            if s.tcp_doff < 5:
                e["payload_offset"] = -1
                e["parse_flags"] = int(e["parse_flags"]) | 2    # type: ignore[call-overload]
    elif s.proto in (1, 58):
        e.update(icmp_type=s.icmp[0], icmp_code=s.icmp[1])
    return e


def random_spec(rng: random.Random, *, link: Optional[int] = None, v6_share: float = 0.3,
                vlan_share: float = 0.3) -> Spec:
    """A plausible packet: mixed IPv4/IPv6, some VLAN tags, TCP/UDP mostly."""
    s = Spec(link=LINK_ETHERNET if link is None else link)
    if rng.random() < vlan_share and s.link == LINK_ETHERNET:
        s.tags = [(0x8100, rng.randrange(1, 4095))]
        if rng.random() < 0.2:
            s.tags.insert(0, (0x88A8, rng.randrange(1, 4095)))
    if rng.random() < v6_share:
        s.l3 = "ipv6"
        s.src = rng.randbytes(16)
        s.dst = rng.randbytes(16)
    else:
        s.src = rng.randbytes(4)
        s.dst = rng.randbytes(4)
    s.proto = rng.choice((6, 6, 17, 17, 1 if s.l3 == "ipv4" else 58))
    s.sport = rng.randrange(1, 65536)
    s.dport = rng.choice((53, 80, 443, rng.randrange(1, 65536)))
    return s
