"""kernel_program(): cooked (SLL / SLL2) filters rewritten for the kernel's SOCK_DGRAM socket.

The reference is the filter as compiled, run by BPFProgram.match() on the
packet as zcap hands it out: the cooked header zcap's ring walker synthesizes
(checked against zcap._ring.parse_v3_block below), then the network-layer
bytes, with a wire length that includes the header.  The rewritten program,
run on the network-layer bytes alone with the kernel's metadata (protocol,
pkttype, ifindex, hatype) and the kernel's skb->len, must return the same
value for every packet, or kernel_program() must return None.

With root, two more references (tests/live/test_bpf_cooked_kernel.py): the
program libpcap itself attaches to its SOCK_DGRAM socket on "any", read back
with SO_GET_FILTER, and the running kernel, filtering real packets on a veth
pair.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import zcap.bpf as zbpf
from tests.unit.blocks import Pkt, make_block
from tests.unit.test_bpf_engine import (
    ETH_A,
    ETH_B,
    SAMPLES,
    SYN,
    arp,
    ipv4,
    ipv6,
    tcp,
    udp,
    valid_programs,
)
from zcap._ring import parse_v3_block
from zcap.bpf import BPFProgram, compile_filter, kernel_program

SLL, SLL2 = 113, 276
HDRLEN = {SLL: 16, SLL2: 20}
COOKED = {SLL: 1, SLL2: 2}                       # parse_v3_block(cooked=...)
ARPHRD_ETHER, ARPHRD_LOOPBACK, ARPHRD_NONE = 1, 772, 0xFFFE
PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST, PACKET_OTHERHOST, PACKET_OUTGOING = range(5)

# ---------------------------------------------------------------- packets as the kernel sees them


class Net(NamedTuple):
    """A packet as a SOCK_DGRAM packet socket gets it: from the network header, and its sockaddr_ll."""
    data: bytes                     # captured bytes (may be fewer than wirelen)
    wirelen: int                    # skb->len
    protocol: int                   # sll_protocol (host order), SKF_AD_PROTOCOL
    pkttype: int = PACKET_HOST      # SKF_AD_PKTTYPE
    ifindex: int = 2                # SKF_AD_IFINDEX
    hatype: int = ARPHRD_ETHER      # SKF_AD_HATYPE
    addr: bytes = ETH_B             # sll_addr[:sll_halen]

    def meta(self) -> dict:
        return dict(protocol=self.protocol, pkttype=self.pkttype, ifindex=self.ifindex,
                    hatype=self.hatype)


def cooked_header(linktype: int, pkt: Net) -> bytes:
    """The header zcap puts in front (zcap/_walk.pxi _rewrite_front), from the sockaddr_ll."""
    addr = pkt.addr.ljust(8, b"\0")
    if linktype == SLL2:        # protocol, 2 zero bytes, ifindex, hatype, pkttype, halen, addr
        return struct.pack("!HHIHBB8s", pkt.protocol, 0, pkt.ifindex, pkt.hatype, pkt.pkttype,
                           len(pkt.addr), addr)
    return struct.pack("!HHH8sH", pkt.pkttype, pkt.hatype, len(pkt.addr), addr, pkt.protocol)


def cooked(linktype: int, pkt: Net) -> tuple[bytes, int]:
    """(bytes, wirelen) of the packet zcap hands out for it."""
    return cooked_header(linktype, pkt) + pkt.data, pkt.wirelen + HDRLEN[linktype]


def user_verdict(prog: BPFProgram, linktype: int, pkt: Net) -> int:
    """The filter on the packet as the user sees it (metadata too: `ifindex N` reads it on SLL)."""
    data, wirelen = cooked(linktype, pkt)
    return prog.match(data, wirelen, **pkt.meta())


def kernel_verdict(kprog: BPFProgram, pkt: Net) -> int:
    """The rewritten filter as the kernel runs it on the SOCK_DGRAM socket."""
    return kprog.match(pkt.data, pkt.wirelen, net_offset=0, **pkt.meta())


@pytest.mark.parametrize("linktype", [SLL, SLL2])
@pytest.mark.parametrize("pkt", [
    Net(bytes(range(40)), 40, 0x0800, PACKET_OUTGOING, 7, ARPHRD_ETHER, b"\xaa" * 6),
    Net(bytes(60), 1500, 0x86DD, PACKET_BROADCAST, 70000, ARPHRD_LOOPBACK, b""),
    Net(b"", 0, 0x0806, PACKET_MULTICAST, 1, ARPHRD_NONE, b"\x01\x02\x03\x04\x05\x06\x07\x08"),
])
def test_cooked_header_is_what_the_ring_walker_writes(linktype, pkt):
    blk = make_block([Pkt(pkt.data, wirelen=pkt.wirelen, ifindex=pkt.ifindex, pkttype=pkt.pkttype,
                          protocol=pkt.protocol, hatype=pkt.hatype, addr=pkt.addr)],
                     dgram=True, reserve=8)
    ((_, caplen, wirelen, _, data),) = parse_v3_block(blk, cooked=COOKED[linktype])
    assert (data, wirelen) == cooked(linktype, pkt)
    assert caplen == len(pkt.data) + HDRLEN[linktype]


def corpus() -> list[Net]:
    """SAMPLES (not VLAN-tagged) in several metadata and truncation variants, and odd ones."""
    packets: list[Net] = []
    for i, sample in enumerate(s for s in SAMPLES if not s.tags):
        l3 = sample.l3
        variants = [
            dict(pkttype=sample.pkttype, ifindex=2),
            dict(pkttype=PACKET_OUTGOING, ifindex=3, addr=ETH_A),
            dict(pkttype=(PACKET_OTHERHOST, PACKET_HOST, PACKET_BROADCAST)[i % 3], ifindex=1,
                 hatype=(ARPHRD_LOOPBACK, ARPHRD_NONE, ARPHRD_ETHER)[i % 3], addr=b""),
        ]
        for extra in variants:
            for cut in (len(l3), 20, len(l3) // 2):
                packets.append(Net(l3[:cut], len(l3), sample.ethertype, **extra))  # type: ignore[arg-type]
    geneve = struct.pack("!BBHI", 0, 0, 0x6558, 42 << 8) + ETH_A + ETH_B + b"\x08\x00" + bytes(20)
    packets += [
        Net(arp(3), 28, 0x8035),                                                  # RARP
        Net(ipv4(17, udp(40000, 6081, geneve)), 20 + 8 + len(geneve), 0x0800),
        Net(ipv4(17, udp(68, 67, bytes(20)), dst="10.0.0.255"), 48, 0x0800, PACKET_BROADCAST),
        # The protocol field disagreeing with the payload, 802.3 / 802.2 protocols, runts.
        Net(ipv4(6, tcp(1234, 80, SYN)), 40, 0x86DD),
        Net(ipv6(17, udp(53, 53, bytes(8))), 56, 0x0800, PACKET_OUTGOING),
        Net(bytes(3) + b"\x42\x42\x03" + bytes(40), 46, 0x0004),
        Net(bytes(46), 46, 0x0001, PACKET_BROADCAST),
        Net(b"", 0, 0x0800), Net(b"\x45", 1500, 0x0800), Net(bytes(19), 19, 0x0800),
        Net(b"\xff" * 100, 65535, 0xFFFF, 7, 0xFFFFFFFF, 0xFFFF, b"\xff" * 8),
    ]
    return packets


CORPUS = corpus()

# ---------------------------------------------------------------- expressions

# Compiled for both link types; all but UNCONVERTIBLE run in the kernel.
EXPRESSIONS = [
    "", "ip", "ip6", "arp", "rarp", "tcp", "udp", "icmp", "icmp6", "not tcp", "not (tcp or udp)",
    "host 10.0.0.1", "src host 10.0.0.1", "dst host 10.0.0.2", "host 192.168.1.1",
    "net 10.0.0.0/8", "src net 192.168.0.0/16", "host 2001:db8::1", "ip6 net 2001:db8::/32",
    "port 80", "tcp port 443", "udp dst port 53", "src port 1234", "portrange 6000-6010",
    "udp and (port 53 or port 123)", "host 10.0.0.1 and (port 80 or port 443)",
    "not host 10.0.0.1 and not port 22",
    "tcp[tcpflags] & tcp-syn != 0", "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
    "tcp[tcpflags] & tcp-fin != 0", "tcp[13] & 2 != 0",
    "icmp[icmptype] == icmp-echo", "icmp[icmptype] != icmp-echo and icmp[icmptype] != icmp-echoreply",
    "icmp[icmpcode] == 1", "icmp6[icmp6type] == icmp6-echo", "icmp6 and ip6[40] == 128",
    "arp and arp[6:2] == 1", "arp[6:2] == 2", "ether proto 0x88cc", "ether proto \\arp",
    "ip proto 47", "ip6 proto 58", "ip multicast", "ip6 multicast", "ip broadcast",
    "ip[2:2] > 576", "ip[0] & 0xf > 5", "ip[6:2] & 0x1fff != 0", "udp[4:2] > 100",
    "tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420", "ip[1] * 2 / 3 % 5 ^ 1 | 2 & 3 = 1",
    "len > 100", "less 64", "greater 1000", "len <= 1500", "len - 14 > 100", "len = 60",
    "len > 100 and udp", "tcp or len < 50",
    "inbound", "outbound", "inbound and udp", "outbound and not arp",
    "ifindex 3", "ifindex 3 and tcp", "not ifindex 2",
    "pppoes and udp", "geneve",
    "ip[ip[0] - 85:1] = 0", "ip[ip[0] & 0xf] = 0",
]
# Header fields read by offset: each one an ancillary load, or impossible in the kernel.
HEADER_EXPRESSIONS = {
    SLL: ["ether[0:2] = 4", "ether[2:2] = 772", "ether[14:2] = 0x86dd",
          "ether[1] = 4", "ether[4:2] = 6", "ether[6:4] = 0x02000000", "ether[12:2] = 0x0800",
          "ether[14] = 8", "ether[0:4] = 0x40001"],
    SLL2: ["ether[0:2] = 0x86dd", "ether[4:4] = 3", "ether[8:2] = 772", "ether[10] = 4",
           "ether[2:2] = 0", "ether[11] = 6", "ether[12:4] = 0x02000000", "ether[4:2] = 0",
           "ether[0] = 8", "ether[10:2] = 0x406"],
}
# kernel_program() returns None for these: they read the link-layer address,
# halen, the reserved bytes or part of a field, which the kernel has no
# metadata for, or an indirect load whose address X + k the program does not
# keep past the header (ip[0] - 85 may wrap to the header, or beyond).
UNCONVERTIBLE = {
    SLL: {"ether[1] = 4", "ether[4:2] = 6", "ether[6:4] = 0x02000000", "ether[12:2] = 0x0800",
          "ether[14] = 8", "ether[0:4] = 0x40001", "ip[ip[0] - 85:1] = 0"},
    SLL2: {"ether[2:2] = 0", "ether[11] = 6", "ether[12:4] = 0x02000000", "ether[4:2] = 0",
           "ether[0] = 8", "ether[10:2] = 0x406", "ip[ip[0] - 85:1] = 0"},
}
# Where libpcap's fix_program() differs.  It filters these in user space: it
# maps no hatype load, and refuses every `ld [x + k]` with a small k, which
# geneve's code has (kernel_program() proves X + k is past the header).
LIBPCAP_USERLAND_ONLY = {SLL: {"ether[2:2] = 772", "geneve"}, SLL2: {"ether[8:2] = 772", "geneve"}}
# And it runs these in the kernel, wrongly: a load of part of a field, or a
# wider one, becomes the field's whole ancillary value; ld [x + k] is moved
# even when X + k is in the header (here: ip[0] = 0x45 reads cooked byte 0 or 4).
LIBPCAP_WRONG = {
    SLL: {"ether[14] = 8", "ether[0:4] = 0x40001", "ip[ip[0] - 85:1] = 0"},
    SLL2: {"ether[4:2] = 0", "ether[0] = 8", "ether[10:2] = 0x406", "ip[ip[0] - 85:1] = 0"},
}

CASES = [(e, lt) for lt in (SLL, SLL2) for e in EXPRESSIONS + HEADER_EXPRESSIONS[lt]]
PROGRAMS = {(e, lt): compile_filter(e, linktype=lt, netmask=0xFFFFFF00 if "broadcast" in e
                                    else 0xFFFFFFFF) for e, lt in CASES}
KERNEL = {key: kernel_program(prog, key[1]) for key, prog in PROGRAMS.items()}
CONVERTED = [key for key, kprog in KERNEL.items() if kprog is not None]


def test_enough_expressions_run_in_the_kernel():
    for lt in (SLL, SLL2):
        assert sum(1 for _, t in CONVERTED if t == lt) >= 60


@pytest.mark.parametrize(("expr", "linktype"), CASES, ids=[f"{lt}-{e}" for e, lt in CASES])
def test_refused_exactly_where_the_kernel_cannot(expr, linktype):
    assert (KERNEL[expr, linktype] is None) == (expr in UNCONVERTIBLE[linktype])


@pytest.mark.parametrize(("expr", "linktype"), CONVERTED, ids=[f"{lt}-{e}" for e, lt in CONVERTED])
def test_same_verdicts_on_the_corpus(expr, linktype):
    prog, kprog = PROGRAMS[expr, linktype], KERNEL[expr, linktype]
    assert kprog is not None
    verdicts = set()
    for pkt in CORPUS:
        want = user_verdict(prog, linktype, pkt)
        assert kernel_verdict(kprog, pkt) == want, (pkt, want)
        verdicts.add(want != 0)
    if expr not in ("", "ip[1] * 2 / 3 % 5 ^ 1 | 2 & 3 = 1"):
        assert verdicts == {True, False}, "the corpus should both accept and reject"


def test_the_rewrite_itself():
    def k(expr: str, linktype: int) -> str:
        kprog = KERNEL[expr, linktype]
        assert kprog is not None
        return kprog.dump()

    # Payload loads move back by the header, the protocol field becomes [proto].
    assert k("port 80", SLL) == k("port 80", SLL2)
    assert "ldh      [proto]" in k("ip", SLL) and "[14]" not in k("ip", SLL)
    assert "ldxb     4*([0]&0xf)" in k("port 80", SLL2) and "ldh      [x + 2]" in k("port 80", SLL2)
    assert k("inbound", SLL).startswith("(000) ldh      [type]")
    assert k("inbound", SLL2).startswith("(000) ldb      [type]")
    assert k("ether[4:4] = 3", SLL2) == k("ifindex 3", SLL2) == k("ifindex 3", SLL)
    assert k("ether[2:2] = 772", SLL).startswith("(000) ldh      [hatype]")
    # len: the header is added back, jumps over it are relinked.
    assert k("len > 100", SLL2) == ("(000) ld       #pktlen\n(001) add      #20\n"
                                    "(002) jgt      #0x64            jt 3\tjf 4\n"
                                    "(003) ret      #262144\n(004) ret      #0\n")
    prog = PROGRAMS["tcp or len < 50", SLL]
    assert len(KERNEL["tcp or len < 50", SLL]) == len(prog) + 1
    # Nothing to rewrite: the program itself.
    assert kernel_program(PROGRAMS["", SLL], SLL) is PROGRAMS["", SLL]
    assert kernel_program(PROGRAMS["ifindex 3", SLL], SLL) is PROGRAMS["ifindex 3", SLL]


@pytest.mark.parametrize("linktype", [1, 101, 0, 147, 0xFFFF])
def test_other_link_types_are_left_alone(linktype):
    prog = compile_filter("tcp port 80")
    assert kernel_program(prog, linktype) is prog


def test_metadata_and_types_are_kept():
    prog = compile_filter("udp port 53", linktype=SLL2, snaplen=96)
    kprog = kernel_program(prog, SLL2)
    assert kprog is not None
    assert (kprog.expression, kprog.snaplen, kprog.linktype) == ("udp port 53", 96, SLL2)
    assert {k for code, _, _, k in kprog.instructions if code == 0x06} == {0, 96}
    with pytest.raises(TypeError, match="BPFProgram"):
        kernel_program("udp port 53", SLL2)         # type: ignore[arg-type]


# ---------------------------------------------------------------- raw programs

LD_LEN, LDX_LEN, ADD_K, JGT_K, JA, RET_K = 0x80, 0x81, 0x04, 0x25, 0x05, 0x06
LD_ABS, LDB_ABS, LDB_IND, LDX_MSH, LDX_IMM, TAX = 0x20, 0x30, 0x50, 0xB1, 0x01, 0x07


def raw(*insns) -> BPFProgram:
    return BPFProgram.from_tuples(insns)


@pytest.mark.parametrize("linktype", [SLL, SLL2])
@pytest.mark.parametrize(("name", "insns"), [
    ("ldx #pktlen", [(LDX_LEN, 0, 0, 0), (0x87, 0, 0, 0), (RET_K, 0, 0, 1)]),
    ("SKF_NET_OFF", [(LDB_ABS, 0, 0, 0xFFF00000), (RET_K, 0, 0, 1)]),
    ("SKF_LL_OFF", [(LDB_ABS, 0, 0, 0xFFE00000), (RET_K, 0, 0, 1)]),
    ("msh in the header", [(LDX_MSH, 0, 0, 1), (RET_K, 0, 0, 1)]),
    ("msh at a negative offset", [(LDX_MSH, 0, 0, 0xFFF00000), (RET_K, 0, 0, 1)]),
    ("ld [x + k], X unbounded", [(LD_ABS, 0, 0, 40), (TAX, 0, 0, 0), (LDB_IND, 0, 0, 40),
                                 (RET_K, 0, 0, 1)]),
    ("ld [x + k] may hit the header", [(LDX_MSH, 0, 0, 30), (LDB_IND, 0, 0, 0), (RET_K, 0, 0, 1)]),
    ("ld [x + k] may wrap", [(LDX_IMM, 0, 0, 0xFFFFFFF0), (LDB_IND, 0, 0, 40), (RET_K, 0, 0, 1)]),
    ("jump too long after a len insertion",
     [(LD_LEN, 0, 0, 0)] + [(JGT_K, 255, 0, 5)] + [(LD_LEN, 0, 0, 0)] * 254 + [(RET_K, 0, 0, 0),
                                                                              (RET_K, 0, 0, 1)]),
])
def test_raw_programs_the_kernel_cannot_run(linktype, name, insns):
    assert kernel_program(raw(*insns), linktype) is None


@pytest.mark.parametrize("linktype", [SLL, SLL2])
def test_raw_programs_the_kernel_can_run(linktype):
    h = HDRLEN[linktype]
    # X bounded by `ldx #k` and arithmetic: an indirect load below k = hdrlen is fine.
    prog = raw((LDX_IMM, 0, 0, h + 4), (LDB_IND, 0, 0, 2), (0x15, 0, 1, 0x45), (RET_K, 0, 0, 9),
               (RET_K, 0, 0, 0))
    kprog = kernel_program(prog, linktype)
    assert kprog is not None and kprog.instructions[1] == (LDB_IND, 0, 0, (2 - h) & 0xFFFFFFFF)
    pkt = Net(b"\0" * 6 + b"\x45" + bytes(10), 17, 0x0800)
    assert user_verdict(prog, linktype, pkt) == kernel_verdict(kprog, pkt) == 9
    # Unreachable instructions stay as they are; a JA over an insertion is relinked.
    prog = raw((JA, 0, 0, 2), (LDX_LEN, 0, 0, 0), (LDB_ABS, 0, 0, 0xFFE00000), (LD_LEN, 0, 0, 0),
               (JA, 0, 0, 0), (0x16, 0, 0, 0))
    kprog = kernel_program(prog, linktype)
    assert kprog is not None
    assert kprog.instructions == ((JA, 0, 0, 2), (LDX_LEN, 0, 0, 0), (LDB_ABS, 0, 0, 0xFFE00000),
                                  (LD_LEN, 0, 0, 0), (ADD_K, 0, 0, h), (JA, 0, 0, 0),
                                  (0x16, 0, 0, 0))
    assert kernel_verdict(kprog, Net(bytes(30), 1000, 0)) == 1000 + h
    # A jump exactly 255 long after the insertion still fits.
    prog = raw(*([(JGT_K, 254, 0, 5)] + [(LD_LEN, 0, 0, 0)] + [(LDB_ABS, 0, 0, h)] * 253
                 + [(RET_K, 0, 0, 0), (RET_K, 0, 0, 1)]))
    kprog = kernel_program(prog, linktype)
    assert kprog is not None and kprog.instructions[0] == (JGT_K, 255, 0, 5)


# ---------------------------------------------------------------- random packets and programs

CONVERTED_IDS = list(range(len(CONVERTED)))
ETHERTYPES = [0x0800, 0x86DD, 0x0806, 0x8035, 0x88CC, 0x8864, 0x0004, 0x0001]


@st.composite
def net_packets(draw) -> Net:
    """A packet with random metadata: a sample, mutated and cut, or random bytes."""
    if draw(st.booleans()):
        sample = draw(st.sampled_from([s for s in SAMPLES if not s.tags]))
        data = bytearray(sample.l3)
        for pos, value in draw(st.lists(st.tuples(st.integers(0, 100), st.integers(0, 255)),
                                        max_size=4)):
            if pos < len(data):
                data[pos] = value
        protocol = draw(st.one_of(st.just(sample.ethertype), st.sampled_from(ETHERTYPES)))
    else:
        data = bytearray(draw(st.binary(max_size=120)))
        protocol = draw(st.one_of(st.sampled_from(ETHERTYPES), st.integers(0, 0xFFFF)))
    wirelen = len(data) + draw(st.one_of(st.just(0), st.integers(0, 2000)))
    cut = draw(st.integers(0, len(data)))
    return Net(bytes(data[:cut]), wirelen, protocol,
               pkttype=draw(st.integers(0, 7)),
               ifindex=draw(st.one_of(st.integers(1, 4), st.integers(0, 0xFFFFFFFF))),
               hatype=draw(st.sampled_from([ARPHRD_ETHER, ARPHRD_LOOPBACK, ARPHRD_NONE, 0, 776])),
               addr=draw(st.binary(max_size=8)))


@settings(max_examples=1000, deadline=None)
@given(case=st.sampled_from(CONVERTED_IDS), pkt=net_packets())
def test_compiled_filters_on_random_packets(case, pkt):
    expr, linktype = CONVERTED[case]
    kprog = KERNEL[expr, linktype]
    assert kprog is not None
    assert kernel_verdict(kprog, pkt) == user_verdict(PROGRAMS[expr, linktype], linktype, pkt)


@st.composite
def cooked_programs(draw):
    """Random valid programs whose loads aim at the cooked header and just past it."""
    insns = draw(valid_programs(negative_offsets=True, ancillary_loads=True, max_body=20))
    hdr = draw(st.sampled_from([16, 20]))
    out = []
    for code, jt, jf, k in insns:
        if code in (0x20, 0x28, 0x30) and k < 80 and draw(st.booleans()):
            # a header field at its own width, or the payload just past it
            k = draw(st.sampled_from([0, 2, 4, 8, 10, 14, hdr, hdr + 2, hdr + 9]))
            code = draw(st.sampled_from([0x20, 0x28, 0x28, 0x30])) if k >= hdr else \
                {0: 0x28, 2: 0x28, 4: 0x20, 8: 0x28, 10: 0x30, 14: 0x28}[k]
        elif code == LDX_MSH and draw(st.booleans()):
            k = hdr
        elif code in (0x40, 0x48, 0x50) and draw(st.booleans()):
            k = draw(st.integers(0, 40))
        out.append((code, jt, jf, k))
    return out


@settings(max_examples=700, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(insns=cooked_programs(), linktype=st.sampled_from([SLL, SLL2]), pkt=net_packets())
def test_random_programs_are_converted_exactly_or_refused(insns, linktype, pkt):
    prog = BPFProgram.from_tuples(insns)
    kprog = kernel_program(prog, linktype)
    note(f"converted: {kprog is not None}")
    if kprog is not None:
        assert kernel_verdict(kprog, pkt) == user_verdict(prog, linktype, pkt)


ALU_OPS = [0x00, 0x10, 0x20, 0x30, 0x90, 0x40, 0x50, 0xA0, 0x60, 0x70, 0x80]


@settings(max_examples=800, deadline=None)
@given(size=st.sampled_from([0x00, 0x08, 0x10]), data=st.binary(min_size=5, max_size=5),
       x=st.one_of(st.integers(0, 0xFFFFFFFF), st.integers(0, 64), st.just(None)),
       ops=st.lists(st.tuples(st.sampled_from(ALU_OPS), st.booleans(),
                              st.one_of(st.integers(0, 40), st.integers(0, 0xFFFFFFFF))),
                    min_size=1, max_size=6))
def test_register_bounds_hold(size, data, x, ops):
    """The bounds kernel_program() trusts for ld [x + k] contain every value A and X take."""
    insns = [(0x20 | size, 0, 0, 0)]
    if x is None:
        insns.append((LDX_MSH, 0, 0, 4))           # X = 4 * (data[4] & 0xf)
        xval = 4 * (data[4] & 0xF)
    else:
        insns.append((LDX_IMM, 0, 0, x))
        xval = x
    for op, use_x, k in ops:
        if use_x and op != 0x80:
            if op in (0x30, 0x90) and xval == 0:
                continue
            insns.append((0x0C | op, 0, 0, 0))
        else:
            k = k & 31 if op in (0x60, 0x70) else (k or 1) if op in (0x30, 0x90) else k
            insns.append((0x04 | op, 0, 0, 0 if op == 0x80 else k))
    insns += [(0x07, 0, 0, 0), (0x16, 0, 0, 0)]         # tax: A's bounds become X's
    lo, hi = zbpf._x_intervals(insns)[-1] or (1, 0)
    assert lo <= BPFProgram.from_tuples(insns).match(data) <= hi


def test_random_programs_are_often_converted():
    """The property above is not vacuous: a good share of random programs convert."""
    converted = []

    @settings(max_examples=150, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(insns=cooked_programs(), linktype=st.sampled_from([SLL, SLL2]))
    def collect(insns, linktype):
        converted.append(kernel_program(BPFProgram.from_tuples(insns), linktype) is not None)

    collect()
    assert sum(converted) >= len(converted) // 5, (sum(converted), len(converted))
