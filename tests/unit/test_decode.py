"""zcap.decode: dpkt objects per link type, and one-line summaries checked against tcpdump."""

from __future__ import annotations

import shutil
import socket
import struct

import dpkt
import pytest

from tests.unit.savefiles import like_tcpdump, tcpdump_summaries
from zcap import _ring
from zcap.decode import decode_packet, summarize
from zcap.errors import DecodeError
from zcap.savefile import open_writer

MAC_A, MAC_B = b"\x02\0\0\0\0\x01", b"\x02\0\0\0\0\x02"
IP_A, IP_B = socket.inet_aton("10.0.0.1"), socket.inet_aton("10.0.0.2")
IP6_A = socket.inet_pton(socket.AF_INET6, "fe80::1")
IP6_B = socket.inet_pton(socket.AF_INET6, "fe80::2")


def ether(ethertype: int, payload: bytes, dst: bytes = MAC_B, tags: bytes = b"") -> bytes:
    return dst + MAC_A + tags + struct.pack("!H", ethertype) + payload


def ipv4(proto: int, payload: bytes, src: bytes = IP_A, dst: bytes = IP_B, offset: int = 0) -> bytes:
    ip = dpkt.ip.IP(src=src, dst=dst, p=proto, ttl=64, data=payload)
    ip.len = 20 + len(payload)
    ip.offset = offset
    return bytes(ip)


def ipv6(nxt: int, payload: bytes, src: bytes = IP6_A, dst: bytes = IP6_B) -> bytes:
    return bytes(dpkt.ip6.IP6(src=src, dst=dst, nxt=nxt, hlim=64, plen=len(payload), data=payload))


def udp(payload_len: int, sport: int = 40000, dport: int = 9) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + payload_len, 0) + bytes(payload_len)


def tcp(flags: int, seq: int, ack: int = 0, win: int = 64240, opts: bytes = b"", data: bytes = b"",
        urp: int = 0) -> bytes:
    off = (20 + len(opts)) // 4
    return struct.pack("!HHIIBBHHH", 40000, 80, seq, ack, off << 4, flags, win, 0, urp) + opts + data


def icmp(kind: int, code: int, body: bytes) -> bytes:
    return struct.pack("!BBH", kind, code, 0) + body


def fragment6(offset: int, more: int, payload: bytes) -> bytes:
    return ipv6(44, struct.pack("!BBHI", 17, 0, offset | more, 0x1234) + payload)


def arp(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> bytes:
    return struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, sha, spa, tha, tpa)


SYN_OPTS = bytes.fromhex("020405b4" "0402" "080a0000000100000000" "01" "030307")
SACK_OPTS = bytes.fromhex("0101" "050a000003e8000007d0")
# (what, Ethernet frame, zcap's summary); every one is checked against tcpdump too
FRAMES = [
    ("udp", ether(0x0800, ipv4(17, udp(86))), "IP 10.0.0.1.40000 > 10.0.0.2.9: UDP, length 86"),
    ("syn", ether(0x0800, ipv4(6, tcp(0x02, 1, opts=SYN_OPTS))),
     "IP 10.0.0.1.40000 > 10.0.0.2.80: Flags [S], seq 1, win 64240, "
     "options [mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7], length 0"),
    ("psh-ack", ether(0x0800, ipv4(6, tcp(0x18, 1000, 5000, 502, data=b"\1" * 30))),
     "IP 10.0.0.1.40000 > 10.0.0.2.80: Flags [P.], seq 1000:1030, ack 5000, win 502, length 30"),
    ("fin-ack-urg", ether(0x0800, ipv4(6, tcp(0x31, 7, 9, 10, urp=3))),
     "IP 10.0.0.1.40000 > 10.0.0.2.80: Flags [F.U], seq 7, ack 9, win 10, urg 3, length 0"),
    ("rst", ether(0x0800, ipv4(6, tcp(0x04, 4294967295, win=0))),
     "IP 10.0.0.1.40000 > 10.0.0.2.80: Flags [R], seq 4294967295, win 0, length 0"),
    ("sack-wrap", ether(0x0800, ipv4(6, tcp(0x10, 4294967290, 1, 100, SACK_OPTS, b"\2" * 10))),
     "IP 10.0.0.1.40000 > 10.0.0.2.80: Flags [.], seq 4294967290:4, ack 1, win 100, "
     "options [nop,nop,sack 1 {1000:2000}], length 10"),
    ("no-flags", ether(0x0800, ipv4(6, tcp(0, 5))),
     "IP 10.0.0.1.40000 > 10.0.0.2.80: Flags [none], win 64240, length 0"),
    ("ece-cwr", ether(0x0800, ipv4(6, tcp(0xC2, 5))),
     "IP 10.0.0.1.40000 > 10.0.0.2.80: Flags [SEW], seq 5, win 64240, length 0"),
    ("ping", ether(0x0800, ipv4(1, icmp(8, 0, struct.pack("!HH", 1, 2) + bytes(56)))),
     "IP 10.0.0.1 > 10.0.0.2: ICMP echo request, id 1, seq 2, length 64"),
    ("pong", ether(0x0800, ipv4(1, icmp(0, 0, struct.pack("!HH", 1, 2) + bytes(56)), IP_B, IP_A)),
     "IP 10.0.0.2 > 10.0.0.1: ICMP echo reply, id 1, seq 2, length 64"),
    ("port-unreachable", ether(0x0800, ipv4(1, icmp(3, 3, bytes(4) + ipv4(17, udp(20))[:28]), IP_B, IP_A)),
     "IP 10.0.0.2 > 10.0.0.1: ICMP 10.0.0.2 udp port 9 unreachable, length 36"),
    ("host-unreachable", ether(0x0800, ipv4(1, icmp(3, 1, bytes(4) + ipv4(17, udp(20))[:28]), IP_B, IP_A)),
     "IP 10.0.0.2 > 10.0.0.1: ICMP host 10.0.0.2 unreachable, length 36"),
    ("ttl-exceeded", ether(0x0800, ipv4(1, icmp(11, 0, bytes(4) + ipv4(17, udp(20))[:28]), IP_B, IP_A)),
     "IP 10.0.0.2 > 10.0.0.1: ICMP time exceeded in-transit, length 36"),
    ("arp-request", ether(0x0806, arp(1, MAC_A, IP_A, bytes(6), IP_B) + bytes(18), dst=b"\xff" * 6),
     "ARP, Request who-has 10.0.0.2 tell 10.0.0.1, length 46"),
    ("arp-request-unicast", ether(0x0806, arp(1, MAC_A, IP_A, MAC_B, IP_B)),
     "ARP, Request who-has 10.0.0.2 (02:00:00:00:00:02) tell 10.0.0.1, length 28"),
    ("arp-reply", ether(0x0806, arp(2, MAC_B, IP_B, MAC_A, IP_A)),
     "ARP, Reply 10.0.0.2 is-at 02:00:00:00:00:02, length 28"),
    ("udp6", ether(0x86DD, ipv6(17, udp(20))), "IP6 fe80::1.40000 > fe80::2.9: UDP, length 20"),
    ("ping6", ether(0x86DD, ipv6(58, icmp(128, 0, struct.pack("!HH", 1, 2) + bytes(56)))),
     "IP6 fe80::1 > fe80::2: ICMP6, echo request, id 1, seq 2, length 64"),
    ("neighbor-solicitation", ether(0x86DD, ipv6(58, icmp(135, 0, bytes(4) + IP6_B))),
     "IP6 fe80::1 > fe80::2: ICMP6, neighbor solicitation, who has fe80::2, length 24"),
    ("neighbor-advertisement", ether(0x86DD, ipv6(58, icmp(136, 0, b"\x60\0\0\0" + IP6_B), IP6_B, IP6_A)),
     "IP6 fe80::2 > fe80::1: ICMP6, neighbor advertisement, tgt is fe80::2, length 24"),
    ("later-fragment6", ether(0x86DD, fragment6(1232, 0, bytes(100))),
     "IP6 fe80::1 > fe80::2: frag (1232|100)"),
    ("tcp6", ether(0x86DD, ipv6(6, tcp(0x02, 7, win=1000))),
     "IP6 fe80::1.40000 > fe80::2.80: Flags [S], seq 7, win 1000, length 0"),
    ("other-ip-proto", ether(0x0800, ipv4(253, bytes(8))), "IP 10.0.0.1 > 10.0.0.2: ip-proto-253 8"),
    ("later-fragment", ether(0x0800, ipv4(17, bytes(16), offset=185 * 8)),
     "IP 10.0.0.1 > 10.0.0.2: ip-proto-17"),
    ("unknown-ethertype", ether(0x88B5, bytes(46)),
     "02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype Unknown (0x88b5), length 60"),
    ("vlan", ether(0x0800, ipv4(17, udp(86)), tags=struct.pack("!HH", 0x8100, 100)),
     "802.1Q vlan 100, p 0, IP 10.0.0.1.40000 > 10.0.0.2.9: UDP, length 86"),
    ("qinq", ether(0x0800, ipv4(17, udp(86)), tags=struct.pack("!HHHH", 0x88A8, 0x6000 | 200, 0x8100, 100)),
     "802.1ad vlan 200, p 3, 802.1Q vlan 100, p 0, IP 10.0.0.1.40000 > 10.0.0.2.9: UDP, length 86"),
]

# where zcap says less than tcpdump (no GRE or STP decoder, no IPv6 extension header
# names: tcpdump says "HBH 40000 > 9: UDP, length 12"), or words it its own way
OWN_WORDS = [
    ("udp6-hop-by-hop", ether(0x86DD, ipv6(0, bytes([17, 0, 1, 4, 0, 0, 0, 0]) + udp(12))),
     "IP6 fe80::1.40000 > fe80::2.9: UDP, length 12"),
    ("first-fragment6", ether(0x86DD, fragment6(0, 1, struct.pack("!HHHH", 40000, 9, 3000, 0) + bytes(40))),
     "IP6 fe80::1.40000 > fe80::2.9: UDP, length 2992"),        # tcpdump: "frag (0|48) 40000 > 9: ..."
    ("gre", ether(0x0800, ipv4(47, bytes(8))), "IP 10.0.0.1 > 10.0.0.2: ip-proto-47 8"),
    ("cut-ip", ether(0x0800, ipv4(17, udp(86)))[:30], "IP [|ip]"),
    ("cut-udp", ether(0x0800, ipv4(17, udp(86)))[:38], "IP 10.0.0.1 > 10.0.0.2: [|udp]"),
    ("802.3", ether(46, b"\x42\x42\x03" + bytes(43)), "802.3, length 46"),
    ("ip-version-6-in-ipv4", ether(0x0800, b"\x65" + ipv4(17, udp(20))[1:]), "IP, wrong version 6"),
    ("runt", b"\x02\0\0", "[|ether]"),
]


def packet(data: bytes, linktype: int = 1, wirelen: int | None = None):
    return _ring.make_packet(data, ts_ns=1_700_000_000 * 10**9, linktype=linktype, wirelen=wirelen)


@pytest.mark.parametrize("what, data, expected", FRAMES + OWN_WORDS, ids=[f[0] for f in FRAMES + OWN_WORDS])
def test_summaries(what, data, expected):
    wirelen = 300 if what == "cut-udp" else None
    assert summarize(packet(data, wirelen=wirelen)) == expected


@pytest.fixture(scope="module")
def tcpdump_says(tmp_path_factory):
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed")
    path = tmp_path_factory.mktemp("decode") / "kinds.pcap"
    with open_writer(path, linktype=1) as w:
        for i, (_, data, _) in enumerate(FRAMES):
            w.write_raw(data, 1_700_000_000 * 10**9 + i)
    lines = tcpdump_summaries(path)
    assert len(lines) == len(FRAMES)
    return dict(zip((f[0] for f in FRAMES), lines))


@pytest.mark.parametrize("what, data, expected", FRAMES, ids=[f[0] for f in FRAMES])
def test_summaries_say_what_tcpdump_says(tcpdump_says, what, data, expected):
    assert like_tcpdump(expected, tcpdump_says[what]), tcpdump_says[what]


COOKED_UDP = ipv4(17, udp(20))


def sll(payload: bytes, pkttype: int = 0, ethertype: int = 0x0800) -> bytes:
    return struct.pack("!HHH8sH", pkttype, 1, 6, MAC_A + b"\0\0", ethertype) + payload


def sll2(payload: bytes, pkttype: int = 0, ethertype: int = 0x0800) -> bytes:
    return struct.pack("!HHiHBB8s", ethertype, 0, 3, 1, pkttype, 6, MAC_A + b"\0\0") + payload


@pytest.mark.parametrize("linktype, data, cls, expected", [
    (113, sll(COOKED_UDP), dpkt.sll.SLL, "IP 10.0.0.1.40000 > 10.0.0.2.9: UDP, length 20"),
    (113, sll(b"\0" * 20, ethertype=0x88B5), dpkt.sll.SLL, "ethertype Unknown (0x88b5), length 36"),
    (276, sll2(COOKED_UDP), None, "In  IP 10.0.0.1.40000 > 10.0.0.2.9: UDP, length 20"),
    (276, sll2(COOKED_UDP, pkttype=4), None, "Out IP 10.0.0.1.40000 > 10.0.0.2.9: UDP, length 20"),
    (101, COOKED_UDP, dpkt.ip.IP, "IP 10.0.0.1.40000 > 10.0.0.2.9: UDP, length 20"),
    (101, ipv6(17, udp(4)), dpkt.ip6.IP6, "IP6 fe80::1.40000 > fe80::2.9: UDP, length 4"),
    (228, COOKED_UDP, dpkt.ip.IP, "IP 10.0.0.1.40000 > 10.0.0.2.9: UDP, length 20"),
    (229, ipv6(17, udp(4)), dpkt.ip6.IP6, "IP6 fe80::1.40000 > fe80::2.9: UDP, length 4"),
    (0, struct.pack("<I", 2) + COOKED_UDP, dpkt.loopback.Loopback,
     "IP 10.0.0.1.40000 > 10.0.0.2.9: UDP, length 20"),
    (0, struct.pack(">I", 2) + COOKED_UDP, dpkt.loopback.Loopback,       # written on a big-endian host
     "IP 10.0.0.1.40000 > 10.0.0.2.9: UDP, length 20"),
    (0, struct.pack("<I", 10) + ipv6(17, udp(4)), dpkt.loopback.Loopback,  # Linux AF_INET6
     "IP6 fe80::1.40000 > fe80::2.9: UDP, length 4"),
    (0, struct.pack("<I", 30) + ipv6(17, udp(4)), dpkt.loopback.Loopback,  # macOS AF_INET6
     "IP6 fe80::1.40000 > fe80::2.9: UDP, length 4"),
    (108, struct.pack(">I", 24) + ipv6(17, udp(4)), dpkt.loopback.Loopback,
     "IP6 fe80::1.40000 > fe80::2.9: UDP, length 4"),
    (0, struct.pack("<I", 0x0008000F) + COOKED_UDP, dpkt.loopback.Loopback,
     "AF Unknown (251660288), length 52"),                                # as tcpdump words it
])
def test_other_link_types(linktype, data, cls, expected):
    pkt = packet(data, linktype)
    decoded = decode_packet(pkt)
    if cls is None:
        assert type(decoded).__name__ == "SLL2" and decoded.intindex == 3
    else:
        assert isinstance(decoded, cls)
    assert pkt.decode().__class__ is decoded.__class__
    assert summarize(pkt) == pkt.summary() == expected


def test_decode_gives_dpkt_objects_to_the_application_layer():
    eth = decode_packet(packet(FRAMES[0][1]))
    assert isinstance(eth, dpkt.ethernet.Ethernet)
    assert isinstance(eth.data, dpkt.ip.IP) and isinstance(eth.data.data, dpkt.udp.UDP)
    assert eth.data.data.dport == 9
    tagged = decode_packet(packet(FRAMES[-1][1]))
    assert [t.id for t in tagged.vlan_tags] == [200, 100]


@pytest.mark.parametrize("linktype, data, match", [
    (147, b"\0" * 20, "link type 147 is not one zcap decodes"),
    (101, b"\x50" + bytes(19), "raw IP packet with IP version 5, neither 4 nor 6"),
    (101, b"", "raw IP packet with IP version 0"),
    (1, b"\x02\0\0", "dpkt could not parse this 3-byte Ethernet packet"),
    (0, b"\2\0", "loopback packet of 2 bytes, shorter than its 4-byte header"),
])
def test_decode_errors_say_what_is_wrong(linktype, data, match):
    with pytest.raises(DecodeError, match=match):
        decode_packet(packet(data, linktype))


def test_summary_of_an_undecoded_link_type():
    assert summarize(packet(b"\0" * 20, 147)) == "link type 147, length 20"
