"""kernel_program() against libpcap and the running kernel, on a live veth pair.

Moved from tests/unit/test_bpf_cooked.py, whose expressions, programs, corpus
and verdict functions these checks reuse: the program libpcap itself attaches
to its SOCK_DGRAM socket on "any" (read back with SO_GET_FILTER), and the kernel
filtering real packets with every converted program.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import select
import socket
import struct
from typing import Optional

import pytest

import zcap.bpf as zbpf
from tests.unit.test_bpf_cooked import (
    CASES,
    CONVERTED,
    CORPUS,
    KERNEL,
    LD_LEN,
    LIBPCAP_USERLAND_ONLY,
    LIBPCAP_WRONG,
    PACKET_BROADCAST,
    PACKET_HOST,
    PACKET_MULTICAST,
    PACKET_OTHERHOST,
    PACKET_OUTGOING,
    PROGRAMS,
    SLL,
    SLL2,
    Net,
    kernel_verdict,
    user_verdict,
)
from tests.unit.test_bpf_engine import ACK, ETH_A, SAMPLES, SYN, arp, icmp, ipv4, tcp, udp
from zcap import netns as znetns
from zcap.bpf import BPFProgram

SO_ATTACH_FILTER = SO_GET_FILTER = 26
SO_RCVBUFFORCE = 33
ETH_P_ALL = 0x0003
DLT_NAME = {SLL: "LINUX_SLL", SLL2: "LINUX_SLL2"}


class _LivePcap:
    """libpcap's own live "any" handle: activate, set a filter, read back what it attached."""

    def __init__(self) -> None:
        lib = zbpf._libpcap()
        self.lib = lib
        self.raw = ctypes.CDLL(lib.name)
        p = ctypes.c_void_p
        self.raw.pcap_set_datalink.argtypes = [p, ctypes.c_int]
        self.raw.pcap_setfilter.argtypes = [p, ctypes.POINTER(zbpf._BpfProgram)]
        self.raw.pcap_fileno.argtypes = [p]
        self.libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

    def attached(self, netns: str, expr: str, linktype: int) -> tuple[tuple[int, int, int, int], ...]:
        lib, raw = self.lib, self.raw
        errbuf = ctypes.create_string_buffer(256)
        with znetns.entered(netns):
            p = lib.create(b"any", errbuf)
            assert p, errbuf.value
            try:
                lib.set_buffer_size(p, 1)
                if lib.set_protocol_linux is not None:
                    lib.set_protocol_linux(p, 0x88B5)      # hear nothing meanwhile
                assert lib.activate(p) >= 0, lib.error(p)
                if lib.datalink(p) != linktype:
                    assert raw.pcap_set_datalink(p, linktype) == 0, lib.error(p)
                program = zbpf._BpfProgram()
                assert lib.compile(p, ctypes.byref(program), expr.encode(), 1, 0xFFFFFFFF) == 0, \
                    lib.error(p)
                try:
                    assert raw.pcap_setfilter(p, ctypes.byref(program)) == 0, lib.error(p)
                finally:
                    lib.freecode(ctypes.byref(program))
                buf = ctypes.create_string_buffer(8 * 4096)
                count = ctypes.c_uint32(4096)               # SO_GET_FILTER counts instructions
                assert self.libc.getsockopt(raw.pcap_fileno(p), socket.SOL_SOCKET, SO_GET_FILTER,
                                            buf, ctypes.byref(count)) == 0, ctypes.get_errno()
                return tuple(struct.unpack_from("=HBBI", buf, 8 * i) for i in range(count.value))
            finally:
                lib.close(p)


LIBPCAP_CASES = [key for key in CASES if "broadcast" not in key[0]]     # live handles know no netmask


@pytest.mark.parametrize(("expr", "linktype"), LIBPCAP_CASES, ids=[f"{lt}-{e}" for e, lt in LIBPCAP_CASES])
def test_what_libpcap_attaches(module_testbed, expr, linktype):
    """libpcap's kernel program is ours, up to `len`; where it filters in user space, so do we
    (except LIBPCAP_USERLAND_ONLY).  An empty program read back: nothing attached, user space."""
    theirs = _LivePcap().attached(module_testbed.netns, expr, linktype)
    prog = PROGRAMS[expr, linktype]
    ours = KERNEL[expr, linktype]
    as_libpcap = zbpf._fix_program(prog, linktype, header_in_len=False)
    if not theirs:
        assert ours is None or expr in LIBPCAP_USERLAND_ONLY[linktype]
        return
    assert expr not in LIBPCAP_USERLAND_ONLY[linktype]
    if expr in LIBPCAP_WRONG[linktype]:
        # We refuse what libpcap gets wrong: its program disagrees with the filter.
        assert ours is None
        wrong = BPFProgram.from_tuples(theirs)
        assert any(kernel_verdict(wrong, pkt) != user_verdict(prog, linktype, pkt) for pkt in CORPUS)
        return
    assert ours is not None and as_libpcap is not None
    assert theirs == as_libpcap.instructions
    uses_len = any(code == LD_LEN for code, _, _, _ in prog.instructions)
    assert (ours == as_libpcap) == (not uses_len)


class _Listener:
    """An unbound SOCK_DGRAM packet socket in the namespace: every interface, as "any"."""

    def __init__(self, netns: str, kprog: Optional[BPFProgram] = None) -> None:
        with znetns.entered(netns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
        if kprog is not None:
            code = kprog.as_bytes()
            self._code = ctypes.create_string_buffer(code, len(code))
            fprog = struct.pack("HL", len(kprog), ctypes.addressof(self._code))
            self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        self.sock.setblocking(False)

    def drain(self, ifindex: dict[str, int], expect: int = 0) -> list[Net]:
        """What is queued; with `expect`, wait (up to 2 s) until that many are there."""
        got: list[Net] = []
        while True:
            try:
                data, (name, proto, pkttype, hatype, addr) = self.sock.recvfrom(1 << 16)
            except BlockingIOError:
                if len(got) >= expect or not select.select([self.sock], [], [], 2.0)[0]:
                    break
                continue
            got.append(Net(data, len(data), proto, pkttype, ifindex[name], hatype, addr))
        self.sock.close()
        return got


def _frames(testbed) -> list[bytes]:
    """The samples as Ethernet frames from a to b: to b, broadcast, multicast, another host."""
    a, b = testbed.mac(testbed.a), testbed.mac(testbed.b)
    dsts = [b, b"\xff" * 6, bytes.fromhex("01005e0000fb"), ETH_A]
    frames = []
    for i, sample in enumerate(s for s in SAMPLES if not s.tags):
        frames.append(dsts[i % 4] + a + struct.pack("!H", sample.ethertype) + sample.l3)
    frames.append(b + a + b"\x08\x00" + ipv4(17, udp(9, 9, bytes(1400))))
    frames.append(b + a + b"\x08\x00" + ipv4(6, tcp(80, 1234, SYN | ACK, b"GET / HTTP/1.1\r\n")))
    frames.append(b + a + b"\x08\x06" + arp(2))
    frames.append(b + a + b"\x08\x00" + ipv4(1, icmp(8)))
    return frames


def test_the_kernel_filters_as_the_user_program_does(testbed):
    """Every converted program attached to a SOCK_DGRAM socket on the veth pair keeps exactly
    the packets its user-level program accepts, with the header zcap would synthesize."""
    ifindex = {name: testbed.ifindex(name) for name in ("lo", testbed.a, testbed.b)}
    frames = _frames(testbed)
    listeners = {key: _Listener(testbed.netns, KERNEL[key]) for key in CONVERTED}
    everything = _Listener(testbed.netns)
    with testbed.sender() as sender:
        sender.send_all(frames)
    seen = everything.drain(ifindex, expect=2 * len(frames))            # out on a, in on b
    assert len(seen) == 2 * len(frames)
    assert {p.pkttype for p in seen} >= {PACKET_OUTGOING, PACKET_HOST, PACKET_BROADCAST,
                                         PACKET_MULTICAST, PACKET_OTHERHOST}
    for (expr, linktype), listener in listeners.items():
        expected = [p for p in seen if user_verdict(PROGRAMS[expr, linktype], linktype, p)]
        assert listener.drain(ifindex, expect=len(expected)) == expected, (expr, linktype)
