"""BPFProgram.match() returns what the Linux kernel and libpcap's bpf_filter() return.

Three references:

* libpcap's own interpreter, bpf_filter() (zcap.bpf.libpcap_filter), for the
  compiled programs of test_bpf_compile's expressions over hand-built packets
  and over random ones;
* a small Python model of classic BPF with both semantics (Linux's and
  libpcap's; they differ only for shifts by X >= 32, indirect offsets that
  wrap at 2**32 and negative offsets), checked against bpf_filter() and
  against match() on random valid programs;
* the running kernel itself: a random program attached to a UDP socket on
  127.0.0.1 (no privilege needed) accepts, truncates or drops a datagram
  exactly as match() says.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import time
from typing import NamedTuple, Optional

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.unit.test_bpf_compile import EXPRESSIONS, LINKTYPES, LINUX_VLAN_100
from tests.unit.test_bpf_validate import attach_filter
from zcap._ring import make_packet
from zcap.bpf import BPFProgram, FilterError, compile_filter, libpcap_filter

M32 = 0xFFFFFFFF
SKF_AD_OFF = 0xFFFFF000
SKF_NET_OFF = -0x100000
SKF_LL_OFF = -0x200000
AD = {"protocol": 0, "pkttype": 4, "ifindex": 8, "mark": 20, "queue": 24, "hatype": 28,
      "rxhash": 32, "xor_x": 40, "vlan_tci": 44, "vlan_present": 48, "vlan_tpid": 60}
ACCEPT = (0x06, 0, 0, 0xFFFF)

# ---------------------------------------------------------------- packets


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


ETH_A, ETH_B = mac("00:11:22:33:44:55"), mac("02:00:00:00:00:01")
BROADCAST = b"\xff" * 6


def ether(payload: bytes, ethertype: int, dst: bytes = ETH_A, src: bytes = ETH_B,
          tags: tuple[tuple[int, int], ...] = ()) -> bytes:
    head = dst + src
    for tpid, tci in tags:
        head += struct.pack("!HH", tpid, tci)
    return head + struct.pack("!H", ethertype) + payload


def ipv4(proto: int, payload: bytes, src: str = "10.0.0.1", dst: str = "10.0.0.2",
         frag: int = 0, options: bytes = b"") -> bytes:
    ihl = 5 + len(options) // 4
    head = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 4 * ihl + len(payload), 1, frag, 64, proto, 0,
                       ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    return head + options + payload


def ipv6(nh: int, payload: bytes, src: str = "2001:db8::1", dst: str = "2001:db8::2") -> bytes:
    return (struct.pack("!IHBB", 0x60000000, len(payload), nh, 64) + ipaddress.IPv6Address(src).packed
            + ipaddress.IPv6Address(dst).packed + payload)


def tcp(sport: int, dport: int, flags: int, payload: bytes = b"") -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, flags, 8192, 0, 0) + payload


def udp(sport: int, dport: int, payload: bytes = b"") -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp(kind: int, code: int = 0) -> bytes:
    return struct.pack("!BBHHH", kind, code, 0, 1, 1) + b"ping" * 8


def arp(op: int) -> bytes:
    return struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, ETH_B, bytes([10, 0, 0, 1]),
                       b"\0" * 6, bytes([10, 0, 0, 2]))


SYN, ACK, FIN = 0x02, 0x10, 0x01


class Sample(NamedTuple):
    """A link-layer-less packet: its ethertype and network-layer bytes."""
    ethertype: int
    l3: bytes
    dst: bytes = ETH_A
    tags: tuple[tuple[int, int], ...] = ()
    pkttype: int = 0


SAMPLES = [
    Sample(0x0800, ipv4(6, tcp(1234, 80, SYN))),
    Sample(0x0800, ipv4(6, tcp(443, 5555, SYN | ACK), src="192.168.1.1", dst="10.0.0.1")),
    Sample(0x0800, ipv4(6, tcp(22, 40000, FIN | ACK), options=b"\x01\x01\x01\x00")),
    Sample(0x0800, ipv4(6, tcp(50000, 80, ACK, b"GET / HTTP/1.1\r\n"))),
    Sample(0x0800, ipv4(6, tcp(1, 1023, SYN), src="172.16.5.4", dst="172.31.0.1")),
    Sample(0x0800, ipv4(17, udp(5353, 53, b"\x12\x34" + bytes(30)), dst="8.8.8.8")),
    Sample(0x0800, ipv4(17, udp(123, 123, bytes(48)))),
    Sample(0x0800, ipv4(17, udp(6005, 6005, bytes(200)))),
    Sample(0x0800, ipv4(17, udp(1234, 9, bytes(1400)))),
    Sample(0x0800, ipv4(1, icmp(8))),
    Sample(0x0800, ipv4(1, icmp(0))),
    Sample(0x0800, ipv4(1, icmp(3, 1))),
    Sample(0x0800, ipv4(17, udp(53, 53, bytes(20)), frag=100)),
    Sample(0x0800, ipv4(47, bytes(24))),
    Sample(0x0800, ipv4(17, udp(5353, 5353, bytes(40)), dst="224.0.0.251"), dst=mac("01:00:5e:00:00:fb"),
           pkttype=2),
    Sample(0x0800, ipv4(17, udp(68, 67, bytes(240)), src="0.0.0.0", dst="255.255.255.255"),
           dst=BROADCAST, pkttype=1),
    Sample(0x86DD, ipv6(6, tcp(40000, 22, SYN))),
    Sample(0x86DD, ipv6(17, udp(53, 1053, bytes(60)))),
    Sample(0x86DD, ipv6(58, icmp(128))),
    Sample(0x86DD, ipv6(58, icmp(135)[:4] + bytes(20), dst="ff02::1"), dst=mac("33:33:00:00:00:01"),
           pkttype=2),
    Sample(0x0806, arp(1), dst=BROADCAST, pkttype=1),
    Sample(0x0806, arp(2)),
    Sample(0x0800, ipv4(6, tcp(1234, 80, SYN)), tags=((0x8100, 100),)),
    Sample(0x86DD, ipv6(17, udp(53, 53, bytes(8))), tags=((0x8100, 200),)),
    Sample(0x0800, ipv4(17, udp(53, 53, bytes(8))), tags=((0x88A8, 10), (0x8100, 20))),
    Sample(0x0806, arp(1), tags=((0x8100, 100),), dst=BROADCAST),
    Sample(0x88CC, bytes(40)),
    Sample(0x8847, struct.pack("!I", (100 << 12) | 0x100 | 64) + ipv4(17, udp(1, 2))),
    Sample(0x8864, struct.pack("!BBHHH", 0x11, 0, 1, 40, 0x0021) + ipv4(17, udp(1, 53))),
    Sample(0x0800, ipv4(17, udp(4789, 6081, bytes(30)))),
    Sample(0x0800, ipv4(6, tcp(80, 80, SYN), src="10.0.0.1", dst="10.0.0.1"), pkttype=4),
]


def frame(sample: Sample, linktype: int) -> Optional[bytes]:
    """The sample as a packet of `linktype`; None if that link type cannot carry it."""
    if linktype == 1:
        return ether(sample.l3, sample.ethertype, dst=sample.dst, tags=sample.tags)
    if sample.tags:
        return None                     # a cooked or raw capture carries no in-band tag here
    if linktype == 101:
        return sample.l3 if sample.ethertype in (0x0800, 0x86DD) else None
    if linktype == 113:                  # LINUX_SLL
        return struct.pack("!HHH8sH", sample.pkttype, 1, 6, ETH_B + b"\0\0", sample.ethertype) + sample.l3
    if linktype == 276:                  # LINUX_SLL2
        return struct.pack("!HHIHBB8s", sample.ethertype, 0, 3, 1, sample.pkttype, 6,
                           ETH_B + b"\0\0") + sample.l3
    raise AssertionError(linktype)


def corpus(linktype: int) -> list[tuple[bytes, int]]:
    """(captured bytes, wire length): whole packets, truncated ones, runts."""
    packets: list[tuple[bytes, int]] = []
    for sample in SAMPLES:
        data = frame(sample, linktype)
        if data is None:
            continue
        packets.append((data, len(data)))
        packets.append((data[:34], len(data)))            # caplen < wirelen
        packets.append((data[:len(data) // 2], len(data)))
    packets += [(b"", 0), (b"\x08", 60), (bytes(13), 13), (bytes(64), 64), (b"\xff" * 100, 1514)]
    return packets


# ---------------------------------------------------------------- a Python model of classic BPF

def model(insns, pkt: bytes, wirelen: int, *, kernel: bool, aux: Optional[dict] = None) -> int:
    """Run a valid program the kernel's way (kernel=True) or libpcap bpf_filter()'s."""
    aux = aux or {}

    def load(off: int, size: int) -> Optional[int]:
        if kernel:
            off = off - (1 << 32) if off & 0x80000000 else off
            if SKF_NET_OFF <= off < 0:
                return None                           # the network header's place is unknown here
            if SKF_LL_OFF <= off < SKF_NET_OFF:
                off -= SKF_LL_OFF
            elif off < 0:
                return None
        if off + size > len(pkt):
            return None
        return int.from_bytes(pkt[off:off + size], "big")

    a = x = pc = 0
    mem = [0] * 16
    while True:
        code, jt, jf, k = insns[pc]
        cls, size = code & 7, {0x00: 4, 0x08: 2, 0x10: 1}.get(code & 0x18, 0)
        value: Optional[int]
        if code == 0x06:
            return k
        if code == 0x16:
            return a
        if code in (0x20, 0x28, 0x30):                 # ld [k]
            if k >= SKF_AD_OFF:
                value = ancillary(k - SKF_AD_OFF, a, x, aux) if kernel else None
            else:
                value = load(k, size)
            if value is None:
                return 0
            a = value
        elif code in (0x40, 0x48, 0x50):               # ld [x + k]
            if not kernel and x + k > M32:
                return 0                               # bpf_filter() refuses to wrap
            value = load((x + k) & M32, size)
            if value is None:
                return 0
            a = value
        elif code == 0xB1:                             # ldxb 4*([k]&0xf)
            value = load(k, 1)
            if value is None:
                return 0
            x = (value & 0xF) << 2
        elif code in (0x80, 0x81):
            a, x = (wirelen, x) if code == 0x80 else (a, wirelen)
        elif code in (0x00, 0x01):
            a, x = (k, x) if code == 0x00 else (a, k)
        elif code in (0x60, 0x61):
            a, x = (mem[k], x) if code == 0x60 else (a, mem[k])
        elif code in (0x02, 0x03):
            mem[k] = a if code == 0x02 else x
        elif code == 0x07:
            x = a
        elif code == 0x87:
            a = x
        elif cls == 4:                                 # ALU
            op, src = code & 0xF0, (x if code & 0x08 else k)
            if op == 0x80:
                a = -a & M32
            elif op in (0x30, 0x90) and src == 0:
                return 0
            elif op in (0x60, 0x70):
                if code & 0x08 and not kernel and src >= 32:
                    a = 0                              # bpf_filter(); Linux uses the low 5 bits
                else:
                    a = (a << (src & 31) if op == 0x60 else a >> (src & 31)) & M32
            else:
                a = {0x00: a + src, 0x10: a - src, 0x20: a * src, 0x30: a // max(src, 1),
                     0x90: a % max(src, 1), 0x40: a | src, 0x50: a & src, 0xA0: a ^ src}[op] & M32
        elif code == 0x05:
            pc += k
        elif cls == 5:
            src = x if code & 0x08 else k
            taken = {0x10: a == src, 0x20: a > src, 0x30: a >= src, 0x40: a & src != 0}[code & 0xF0]
            pc += jt if taken else jf
        else:
            raise AssertionError(f"opcode {code:#x}")
        pc += 1


def ancillary(which: int, a: int, x: int, aux: dict) -> Optional[int]:
    present = aux.get("vlan_tci") is not None
    values = {
        AD["protocol"]: aux.get("protocol", 0), AD["pkttype"]: aux.get("pkttype", 0) & 7,
        AD["ifindex"]: aux.get("ifindex", 0), AD["mark"]: aux.get("mark", 0),
        AD["queue"]: aux.get("queue", 0), AD["hatype"]: aux.get("hatype", 0),
        AD["rxhash"]: aux.get("rxhash", 0), AD["xor_x"]: a ^ x,
        AD["vlan_tci"]: aux["vlan_tci"] if present else 0, AD["vlan_present"]: int(present),
        AD["vlan_tpid"]: aux.get("vlan_tpid", 0x8100) if present else 0,
    }
    return values.get(which)


# ---------------------------------------------------------------- random valid programs

EDGES = [0, 1, 2, 3, 4, 7, 8, 12, 13, 14, 15, 16, 20, 31, 32, 33, 63, 64, 255, 256, 0xFFFF, 0x10000,
         0x7FFFFFFF, 0x80000000, 0xFFFFFFFC, 0xFFFFFFFE, 0xFFFFFFFF]
# Negative offsets: relative to the link layer / network header (Linux), never loadable (libpcap).
NEGATIVE = [0xFFE00000, 0xFFE00002, 0xFFE0000C, 0xFFF00000, 0xFFF00004, 0xFFFFF000 - 4]


def k32(extra=()):
    return st.one_of(st.integers(0, 80), st.sampled_from(EDGES + list(extra)), st.integers(0, M32))


@st.composite
def valid_programs(draw, *, negative_offsets: bool = True, ancillary_loads: bool = False,
                   max_body: int = 30):
    """Programs that pass validation: in-range forward jumps, scratch written before read, a ret."""
    offsets = NEGATIVE if negative_offsets else []
    stored = sorted(draw(st.sets(st.integers(0, 15), max_size=4)))
    insns = [(0x02, 0, 0, slot) for slot in stored]
    body = draw(st.integers(0, max_body))
    total = len(insns) + body + 1
    kinds = ["ld_abs", "ld_ind", "msh", "len", "imm", "alu_k", "alu_x", "alu_k", "alu_x", "neg",
             "jmp", "jmp", "ja", "tax", "txa", "st", "ret"]
    if stored:
        kinds.append("ld_mem")
    if ancillary_loads:
        kinds += ["ancillary", "ancillary"]
    while len(insns) < total - 1:
        pc = len(insns)
        room = total - pc - 2                          # the furthest forward jump
        kind = draw(st.sampled_from(kinds))
        size = draw(st.sampled_from([0x00, 0x08, 0x10]))
        if kind == "ld_abs":
            k = draw(st.one_of(st.integers(0, 80), st.sampled_from(EDGES[:-4] + offsets)))
            insn = (0x20 | size, 0, 0, k)
        elif kind == "ld_ind":
            insn = (0x40 | size, 0, 0, draw(k32(offsets)))
        elif kind == "msh":
            insn = (0xB1, 0, 0, draw(st.one_of(st.integers(0, 80), st.sampled_from(offsets or [99]))))
        elif kind == "len":
            insn = (draw(st.sampled_from([0x80, 0x81])), 0, 0, 0)
        elif kind == "imm":
            insn = (draw(st.sampled_from([0x00, 0x01])), 0, 0, draw(k32()))
        elif kind == "ld_mem":
            insn = (draw(st.sampled_from([0x60, 0x61])), 0, 0, draw(st.sampled_from(stored)))
        elif kind == "st":
            insn = (draw(st.sampled_from([0x02, 0x03])), 0, 0, draw(st.integers(0, 15)))
        elif kind == "alu_k":
            op = draw(st.sampled_from([0x00, 0x10, 0x20, 0x30, 0x90, 0x40, 0x50, 0xA0, 0x60, 0x70]))
            k = draw(k32())
            if op in (0x60, 0x70):
                k &= 31
            elif op in (0x30, 0x90):
                k = k or 1
            insn = (0x04 | op, 0, 0, k)
        elif kind == "alu_x":
            op = draw(st.sampled_from([0x00, 0x10, 0x20, 0x30, 0x90, 0x40, 0x50, 0xA0, 0x60, 0x70]))
            insn = (0x0C | op, 0, 0, 0)
        elif kind == "neg":
            insn = (0x84, 0, 0, 0)
        elif kind == "jmp":
            code = draw(st.sampled_from([0x15, 0x1D, 0x25, 0x2D, 0x35, 0x3D, 0x45, 0x4D]))
            jt = draw(st.integers(0, min(room, 255)))
            jf = draw(st.integers(0, min(room, 255)))
            insn = (code, jt, jf, draw(k32()))
        elif kind == "ja":
            insn = (0x05, 0, 0, draw(st.integers(0, room)))
        elif kind in ("tax", "txa"):
            insn = (0x07 if kind == "tax" else 0x87, 0, 0, 0)
        elif kind == "ancillary":
            which = draw(st.sampled_from(sorted(AD.values())))
            insn = (0x20 | size, 0, 0, SKF_AD_OFF + which)
        else:
            insn = draw(st.sampled_from([(0x06, 0, 0, draw(k32())), (0x16, 0, 0, 0)]))
        insns.append(insn)
    insns.append(draw(st.sampled_from([(0x06, 0, 0, draw(k32())), (0x16, 0, 0, 0)])))
    return insns


packets = st.binary(max_size=96)

# ---------------------------------------------------------------- compiled programs vs bpf_filter()

PROGRAMS: dict[tuple[str, int], Optional[BPFProgram]] = {}


def compiled(expr: str, linktype: int) -> Optional[BPFProgram]:
    key = (expr, linktype)
    if key not in PROGRAMS:
        try:
            PROGRAMS[key] = compile_filter(expr, linktype=linktype)
        except FilterError:
            PROGRAMS[key] = None
    return PROGRAMS[key]


def usable(expr: str, linktype: int) -> bool:
    """It compiles for the link type and reads no Linux metadata (bpf_filter() has none)."""
    prog = compiled(expr, linktype)
    return prog is not None and not prog.uses_ancillary


USABLE = [(e, lt) for lt in LINKTYPES for e in EXPRESSIONS if usable(e, lt)]


@pytest.mark.parametrize(("expr", "linktype"), USABLE, ids=[f"{lt}-{e}" for e, lt in USABLE])
def test_compiled_programs_on_the_corpus(expr, linktype):
    prog = compiled(expr, linktype)
    assert prog is not None
    accepted = 0
    for data, wirelen in corpus(linktype):
        expected = libpcap_filter(prog, data, wirelen)
        assert prog.match(data, wirelen) == expected, (data.hex(), wirelen)
        accepted += expected != 0
    if expr in ("", "ip", "tcp", "udp", "port 80", "vlan", "arp", "len > 100"):
        assert accepted, "the corpus should exercise the accepting path"


@settings(max_examples=400, deadline=None)
@given(choice=st.sampled_from(USABLE), sample=st.integers(0, len(SAMPLES) - 1),
       edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
       cut=st.integers(0, 400), extra=st.integers(0, 100))
def test_compiled_programs_on_mutated_packets(choice, sample, edits, cut, extra):
    expr, linktype = choice
    data = frame(SAMPLES[sample], linktype) or frame(SAMPLES[0], linktype)
    assert data is not None
    buf = bytearray(data)
    for pos, value in edits:
        if pos < len(buf):
            buf[pos] = value
    buf = buf[:cut]
    prog = compiled(expr, linktype)
    assert prog is not None
    wirelen = len(buf) + extra
    assert prog.match(bytes(buf), wirelen) == libpcap_filter(prog, bytes(buf), wirelen)


@settings(max_examples=200, deadline=None)
@given(choice=st.sampled_from(USABLE), data=packets, extra=st.integers(0, 2000))
def test_compiled_programs_on_random_bytes(choice, data, extra):
    prog = compiled(*choice)
    assert prog is not None
    assert prog.match(data, len(data) + extra) == libpcap_filter(prog, data, len(data) + extra)


# ---------------------------------------------------------------- random programs

@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(insns=valid_programs(), data=packets, extra=st.integers(0, 64))
def test_random_programs_follow_the_model(insns, data, extra):
    prog = BPFProgram(insns)
    wirelen = len(data) + extra
    linux = model(insns, data, wirelen, kernel=True)
    pcap = model(insns, data, wirelen, kernel=False)
    assert libpcap_filter(prog, data, wirelen) == pcap        # the model is libpcap's semantics ...
    assert prog.match(data, wirelen) == linux                 # ... and the kernel's
    if linux == pcap:
        assert prog.match(data, wirelen) == libpcap_filter(prog, data, wirelen)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(insns=valid_programs(negative_offsets=False), data=packets, extra=st.integers(0, 64))
def test_random_programs_agree_with_bpf_filter(insns, data, extra):
    # Where both semantics give the same answer (almost always), no model is needed.
    wirelen = len(data) + extra
    assume(model(insns, data, wirelen, kernel=True) == model(insns, data, wirelen, kernel=False))
    prog = BPFProgram(insns)
    assert prog.match(data, wirelen) == libpcap_filter(prog, data, wirelen)


@settings(max_examples=300, deadline=None)
@given(insns=valid_programs(ancillary_loads=True), data=packets,
       aux=st.fixed_dictionaries({
           "vlan_tci": st.one_of(st.none(), st.integers(0, 0xFFFF)),
           "vlan_tpid": st.sampled_from([0x8100, 0x88A8]), "ifindex": st.integers(0, M32),
           "protocol": st.integers(0, 0xFFFF), "pkttype": st.integers(0, 255),
           "hatype": st.integers(0, 0xFFFF), "mark": st.integers(0, M32), "rxhash": st.integers(0, M32),
           "queue": st.integers(0, 0xFFFF)}))
def test_random_programs_with_metadata(insns, data, aux):
    prog = BPFProgram(insns)
    assert prog.match(data, len(data), **aux) == model(insns, data, len(data), kernel=True, aux=aux)


# ---------------------------------------------------------------- the kernel as the oracle

SO_NO_CHECK = 11
SO_MEMINFO, SK_MEMINFO_DROPS = 55, 8
ARPHRD_LOOPBACK = 772


class KernelUDP:
    """Run a program in the kernel: as the filter of a UDP socket on 127.0.0.1.

    The filter sees the UDP header and payload; the kernel drops the datagram
    when it returns 0, else trims it to max(8, result) bytes.  A drop shows in
    the socket's drop counter, so no timing is involved.
    """

    def __init__(self) -> None:
        self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rx.bind(("127.0.0.1", 0))
        self.rx.setblocking(False)
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.tx.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)      # checksum 0: predictable bytes
        self.tx.bind(("127.0.0.1", 0))
        self.tx.connect(self.rx.getsockname())
        self.ifindex = socket.if_nametoindex("lo")

    def close(self) -> None:
        self.rx.close()
        self.tx.close()

    def header(self, payload: bytes) -> bytes:
        return struct.pack("!HHHH", self.tx.getsockname()[1], self.rx.getsockname()[1], 8 + len(payload), 0)

    def drops(self) -> int:
        return struct.unpack("9I", self.rx.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 36))[SK_MEMINFO_DROPS]

    def run(self, prog: BPFProgram, payload: bytes) -> int:
        """0 if the kernel dropped the datagram, else how many bytes of it it kept."""
        attach_filter(self.rx, prog.as_bytes())
        before = self.drops()
        self.tx.send(payload)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                return 8 + len(self.rx.recv(65536))
            except BlockingIOError:
                if self.drops() != before:
                    return 0
            time.sleep(0.0001)
        raise AssertionError("the datagram neither arrived nor was dropped")

    def metadata(self) -> dict:
        return dict(protocol=0x0800, pkttype=0, ifindex=self.ifindex, hatype=ARPHRD_LOOPBACK)


@pytest.fixture(scope="module")
def kernel():
    try:
        k = KernelUDP()
    except OSError as exc:
        pytest.skip(f"no loopback UDP socket: {exc}")
    yield k
    k.close()


def kernel_safe(insns) -> bool:
    """Programs whose result the datagram can show: no skb->hash, no negative offsets."""
    return all(not (code in (0x20, 0x28, 0x30) and k == SKF_AD_OFF + AD["rxhash"]) for code, _, _, k in insns)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(insns=valid_programs(negative_offsets=False, ancillary_loads=True), payload=st.binary(max_size=72))
def test_random_programs_agree_with_the_kernel(kernel, insns, payload):
    assume(kernel_safe(insns))
    prog = BPFProgram(insns)
    packet = kernel.header(payload) + payload
    ours = prog.match(packet, **kernel.metadata())
    kept = kernel.run(prog, payload)
    assert kept == (0 if ours == 0 else max(8, min(ours, len(packet)))), prog.dump()


KERNEL_CASES = {
    "shift by X uses its low 5 bits": [(0x00, 0, 0, 1), (0x01, 0, 0, 33), (0x6C, 0, 0, 0), (0x16, 0, 0, 0)],
    "right shift by X >= 32": [(0x00, 0, 0, 64), (0x01, 0, 0, 37), (0x7C, 0, 0, 0), (0x16, 0, 0, 0)],
    "X + k wraps at 2**32": [(0x01, 0, 0, 0xFFFFFFFF), (0x50, 0, 0, 10), (0x16, 0, 0, 0)],
    "division by X = 0": [(0x00, 0, 0, 9), (0x3C, 0, 0, 0), (0x06, 0, 0, 50)],
    "modulo by X = 0": [(0x00, 0, 0, 9), (0x9C, 0, 0, 0), (0x06, 0, 0, 50)],
    "load past the end": [(0x20, 0, 0, 10), (0x06, 0, 0, 50)],
    "ldxb past the end": [(0xB1, 0, 0, 12), (0x06, 0, 0, 50)],
    "ret A is the truncation": [(0x80, 0, 0, 0), (0x14, 0, 0, 3), (0x16, 0, 0, 0)],
    "protocol, ifindex and hatype": [(0x28, 0, 0, SKF_AD_OFF), (0x15, 0, 4, 0x0800),
                                     (0x20, 0, 0, SKF_AD_OFF + 8), (0x15, 0, 2, 0),
                                     (0x28, 0, 0, SKF_AD_OFF + 28), (0x16, 0, 0, 0), (0x06, 0, 0, 0)],
}


@pytest.mark.parametrize("name", KERNEL_CASES)
def test_kernel_semantics_cases(kernel, name):
    insns = list(KERNEL_CASES[name])
    if name.startswith("protocol"):               # compare ifindex with lo's
        insns[3] = (0x15, 0, 2, kernel.ifindex)
    prog = BPFProgram(insns)
    payload = bytes(range(1, 5))
    packet = kernel.header(payload) + payload
    ours = prog.match(packet, **kernel.metadata())
    assert kernel.run(prog, payload) == (0 if ours == 0 else max(8, min(ours, len(packet))))


# ---------------------------------------------------------------- Linux semantics, by hand

def run(insns, data=bytes(range(64)), **kw) -> int:
    return BPFProgram(insns).match(data, **kw)


def test_shift_by_x_uses_low_five_bits_like_linux():
    assert run([(0x00, 0, 0, 1), (0x01, 0, 0, 33), (0x6C, 0, 0, 0), (0x16, 0, 0, 0)]) == 2
    assert run([(0x00, 0, 0, 0x80), (0x01, 0, 0, 39), (0x7C, 0, 0, 0), (0x16, 0, 0, 0)]) == 1
    assert libpcap_filter([(0x00, 0, 0, 1), (0x01, 0, 0, 33), (0x6C, 0, 0, 0), (0x16, 0, 0, 0)], b"") == 0


def test_indirect_offset_wraps_like_linux():
    prog = [(0x01, 0, 0, 0xFFFFFFFF), (0x50, 0, 0, 15), (0x16, 0, 0, 0)]     # ldb [x + 15] -> [14]
    assert run(prog) == 14
    assert libpcap_filter(prog, bytes(range(64))) == 0


def test_negative_offsets_are_header_relative():
    data = bytes(range(64))
    ll = [(0x28, 0, 0, (SKF_LL_OFF + 12) & M32), (0x16, 0, 0, 0)]            # ldh [SKF_LL_OFF + 12]
    assert run(ll, data) == 0x0C0D
    net = [(0x30, 0, 0, (SKF_NET_OFF + 9) & M32), (0x16, 0, 0, 0)]           # ldb [SKF_NET_OFF + 9]
    assert run(net, data) == 0                                              # network header unknown
    assert run(net, data, net_offset=14) == 23
    assert run(net, data, net_offset=60) == 0                               # past the end
    assert run([(0x30, 0, 0, 0x80000000), (0x06, 0, 0, 1)], data) == 0     # below SKF_LL_OFF


def test_loads_check_caplen_and_len_is_wirelen():
    prog = [(0x20, 0, 0, 60), (0x80, 0, 0, 0), (0x16, 0, 0, 0)]             # ld [60]; ld #pktlen
    assert run(prog, bytes(64)) == 64
    assert run(prog, bytes(63)) == 0
    assert BPFProgram(prog).match(bytes(64), 1514) == 1514
    assert run([(0x81, 0, 0, 0), (0x87, 0, 0, 0), (0x16, 0, 0, 0)], bytes(5), wirelen=9) == 9


def test_arithmetic_wraps_at_32_bits():
    assert run([(0x00, 0, 0, M32), (0x04, 0, 0, 2), (0x16, 0, 0, 0)]) == 1
    assert run([(0x00, 0, 0, 1), (0x84, 0, 0, 0), (0x16, 0, 0, 0)]) == M32
    assert run([(0x00, 0, 0, 0x10000), (0x24, 0, 0, 0x10000), (0x16, 0, 0, 0)]) == 0
    assert run([(0x00, 0, 0, 7), (0x01, 0, 0, 2), (0x9C, 0, 0, 0), (0x16, 0, 0, 0)]) == 1


def test_scratch_memory_and_jumps():
    # ld #5; st M[15]; ld #0; ldx M[15]; txa; jset #4 (taken); ret #1; ja +1; ret #2; ret a
    prog = [(0x00, 0, 0, 5), (0x02, 0, 0, 15), (0x00, 0, 0, 0), (0x61, 0, 0, 15), (0x87, 0, 0, 0),
            (0x45, 1, 0, 4), (0x06, 0, 0, 1), (0x05, 0, 0, 1), (0x06, 0, 0, 2), (0x16, 0, 0, 0)]
    assert run(prog) == 5
    prog[5] = (0x45, 1, 0, 2)                                               # jset #2: not taken
    assert run(prog) == 1


# ---------------------------------------------------------------- ancillary data

@pytest.mark.parametrize("size", [0x00, 0x08, 0x10])
@pytest.mark.parametrize(("field", "kw", "expected"), [
    ("protocol", dict(protocol=0x86DD), 0x86DD),
    ("pkttype", dict(pkttype=4), 4),
    ("pkttype", dict(pkttype=0x0F), 7),                 # the kernel's 3-bit field
    ("ifindex", dict(ifindex=0x12345678), 0x12345678),
    ("mark", dict(mark=7), 7),
    ("queue", dict(queue=3), 3),
    ("hatype", dict(hatype=772), 772),
    ("rxhash", dict(rxhash=0xDEADBEEF), 0xDEADBEEF),
    ("vlan_tci", dict(vlan_tci=0xE064), 0xE064),       # the whole TCI: priority, DEI, id
    ("vlan_tci", dict(), 0),
    ("vlan_present", dict(vlan_tci=0), 1),
    ("vlan_present", dict(), 0),
    ("vlan_tpid", dict(vlan_tci=5, vlan_tpid=0x88A8), 0x88A8),
    ("vlan_tpid", dict(vlan_tci=5), 0x8100),
    ("vlan_tpid", dict(vlan_tpid=0x88A8), 0),           # no tag stripped: no TPID
])
def test_ancillary_loads_read_the_metadata(size, field, kw, expected):
    prog = BPFProgram([(0x20 | size, 0, 0, SKF_AD_OFF + AD[field]), (0x16, 0, 0, 0)])
    assert prog.uses_ancillary
    assert prog.match(b"", **kw) == expected           # size does not matter, as in the kernel


def test_ancillary_xor_x():
    prog = [(0x00, 0, 0, 0xF0), (0x01, 0, 0, 0x0F), (0x20, 0, 0, SKF_AD_OFF + 40), (0x16, 0, 0, 0)]
    assert run(prog) == 0xFF


def test_linux_vlan_code_tests_metadata_then_bytes():
    prog = BPFProgram.from_text(LINUX_VLAN_100)
    untagged = ether(ipv4(6, tcp(1, 80, SYN)), 0x0800)
    tagged = ether(ipv4(6, tcp(1, 80, SYN)), 0x0800, tags=((0x8100, 100),))
    other = ether(ipv4(6, tcp(1, 80, SYN)), 0x0800, tags=((0x8100, 101),))
    assert prog.match(untagged, vlan_tci=100) == 262144            # the kernel stripped tag 100
    assert prog.match(untagged, vlan_tci=0x2000 | 100) == 262144   # priority bits are ignored
    assert prog.match(untagged, vlan_tci=101) == 0
    assert prog.match(untagged) == 0
    assert prog.match(tagged) == 262144                            # an unstripped tag in the bytes
    assert prog.match(other) == 0
    # libpcap's bpf_filter() has no metadata: it rejects at the first ancillary load
    assert libpcap_filter(prog, tagged) == 0


def test_inbound_outbound_ifindex_read_metadata():
    inbound, outbound, ifindex = (compile_filter(e) for e in ("inbound", "outbound", "ifindex 3"))
    pkt = ether(b"", 0x0800)
    assert inbound.match(pkt, pkttype=0) and not inbound.match(pkt, pkttype=4)
    assert outbound.match(pkt, pkttype=4) and not outbound.match(pkt, pkttype=0)
    assert ifindex.match(pkt, ifindex=3) and not ifindex.match(pkt, ifindex=4)


# ---------------------------------------------------------------- buffers and arguments

def test_any_buffer():
    prog = compile_filter("tcp port 80")
    data = ether(ipv4(6, tcp(1, 80, SYN)), 0x0800)
    assert prog.match(data) == prog.match(bytearray(data)) == prog.match(memoryview(data)) == 262144
    assert prog.match(memoryview(b"xx" + data)[2:]) == 262144
    assert prog.match(memoryview(data).cast("H")) == 262144
    with pytest.raises(TypeError):
        prog.match("not bytes")


def test_packet_objects_bring_their_wire_length():
    prog = compile_filter("greater 1000")
    data = ether(ipv4(17, udp(1, 2, bytes(1400))), 0x0800)
    packet = make_packet(data[:64], wirelen=len(data))
    assert prog.match(packet) == 262144 == libpcap_filter(prog, packet)
    assert prog.match(packet, 64) == 0
    assert prog.match(data[:64]) == 0


@pytest.mark.parametrize("kw", [dict(wirelen=-1), dict(wirelen=1 << 32), dict(vlan_tci=0x10000),
                                dict(ifindex=-1), dict(pkttype=256), dict(net_offset=1 << 31)])
def test_metadata_out_of_range(kw):
    with pytest.raises(OverflowError):
        compile_filter("tcp").match(b"", **kw)
