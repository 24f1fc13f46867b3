"""Capture filters: pcap-filter(7) expressions compiled to classic BPF by libpcap.

compile_filter() turns an expression such as "tcp port 80" into a BPFProgram,
which can be attached to a packet socket (SO_ATTACH_FILTER) or run in user
space with BPFProgram.match().  The system's libpcap is loaded at run time
through ctypes, so zcap builds and imports without it; only compiling
expressions needs it, raw programs (BPFProgram.from_text() of `tcpdump -ddd`
output, from_tuples(), from_bytes()) never do.  Compiling in process takes
about 40 µs, where running `tcpdump -ddd` takes about 3 ms.

VLAN on Linux: the kernel strips the 802.1Q tag of most received frames into
packet metadata, so a kernel filter must test `vlan` through the ancillary
loads SKF_AD_VLAN_TAG_PRESENT / SKF_AD_VLAN_TAG.  libpcap generates that code
only for a handle activated on a live Linux interface, never for the
pcap_open_dead() handle used here, so compile_filter(linux_vlan=True) compiles
expressions that mention `vlan` on a briefly activated handle instead (see
_compile_live for the cost).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import re
import struct
import threading
from typing import Any, Optional, Sequence, Union

from zcap import netns as _netns
from zcap._bpf import BPFProgram
from zcap._enums import LinkType
from zcap.errors import CapturePermissionError, FilterError
from zcap.linux import MAX_SNAPLEN

__all__ = ["BPFProgram", "FilterError", "compile_filter", "kernel_program", "libpcap_filter",
           "libpcap_version"]

RawProgram = Union[BPFProgram, str, bytes, Sequence[Sequence[int]]]

LIBPCAP_NAMES = ("libpcap.so.0.8", "libpcap.so")
LIBPCAP_PACKAGE = "libpcap0.8"

_DLT_EN10MB = 1
_DLT_RAW = 12
# LINKTYPE_* values (pcap files, zcap.LinkType) that are not libpcap's DLT_*
# value on Linux; all others are the same number.
_LINKTYPE_TO_DLT = {int(LinkType.RAW): _DLT_RAW}

_PCAP_ERROR_PERM_DENIED = -8
_PCAP_ERRBUF_SIZE = 256
# The live handle of _compile_live listens for this ethertype (IEEE 802 Local
# Experimental 1) only, so no packet is ever queued on it.
_ETH_P_802_EX1 = 0x88B5
_SOCK_FILTER = struct.Struct("=HBBI")
_BPF_RET_K = 0x06
_VLAN_WORD = re.compile(r"\bvlan\b", re.IGNORECASE)


class _BpfInsn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class _BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_BpfInsn))]


class _Libpcap:
    """The few libpcap functions zcap calls, with their C signatures."""

    def __init__(self, lib: ctypes.CDLL, name: str) -> None:
        self.name = name
        p = ctypes.c_void_p

        def fn(symbol: str, restype: Any, *argtypes: Any) -> Any:
            f = getattr(lib, symbol)
            f.restype = restype
            f.argtypes = argtypes
            return f

        self.lib_version = fn("pcap_lib_version", ctypes.c_char_p)
        self.open_dead = fn("pcap_open_dead", p, ctypes.c_int, ctypes.c_int)
        self.create = fn("pcap_create", p, ctypes.c_char_p, ctypes.c_char_p)
        self.set_snaplen = fn("pcap_set_snaplen", ctypes.c_int, p, ctypes.c_int)
        self.set_buffer_size = fn("pcap_set_buffer_size", ctypes.c_int, p, ctypes.c_int)
        self.set_protocol_linux = (fn("pcap_set_protocol_linux", ctypes.c_int, p, ctypes.c_int)
                                   if hasattr(lib, "pcap_set_protocol_linux") else None)
        self.activate = fn("pcap_activate", ctypes.c_int, p)
        self.statustostr = fn("pcap_statustostr", ctypes.c_char_p, ctypes.c_int)
        self.datalink = fn("pcap_datalink", ctypes.c_int, p)
        self.snapshot = fn("pcap_snapshot", ctypes.c_int, p)
        self.compile = fn("pcap_compile", ctypes.c_int, p, ctypes.POINTER(_BpfProgram),
                          ctypes.c_char_p, ctypes.c_int, ctypes.c_uint32)
        self.freecode = fn("pcap_freecode", None, ctypes.POINTER(_BpfProgram))
        self.geterr = fn("pcap_geterr", ctypes.c_char_p, p)
        self.close = fn("pcap_close", None, p)
        self.bpf_filter = fn("bpf_filter", ctypes.c_uint, ctypes.c_char_p, ctypes.c_char_p,
                             ctypes.c_uint, ctypes.c_uint)

    def error(self, p: int) -> str:
        return (self.geterr(p) or b"").decode("utf-8", "replace")


def _open_libpcap(names: Sequence[str]) -> _Libpcap:
    tried = list(names)
    for name in names:
        try:
            return _Libpcap(ctypes.CDLL(name), name)
        except OSError:
            continue
    found = ctypes.util.find_library("pcap")
    if found:
        try:
            return _Libpcap(ctypes.CDLL(found), found)
        except OSError:
            tried.append(found)
    raise FilterError(
        f"compiling filter expressions needs libpcap, which is not installed (tried "
        f"{', '.join(tried)} and the linker's search path); install it with "
        f"`apt-get install {LIBPCAP_PACKAGE}`. A raw program still works without it: "
        f"BPFProgram.from_text() of `tcpdump -ddd` output, or BPFProgram.from_tuples()")


@functools.cache
def _libpcap() -> _Libpcap:
    """The system's libpcap, loaded once (a failure is retried on the next call)."""
    return _open_libpcap(LIBPCAP_NAMES)


def libpcap_version() -> str:
    """The loaded libpcap's version string, e.g. "libpcap version 1.10.3 (with TPACKET_V3)"."""
    return (_libpcap().lib_version() or b"").decode()


# libpcap's parser is reentrant since 1.8, but name lookups inside it may not
# be; compiling is fast, so serialise it.
_compile_lock = threading.Lock()


def _compile_on(lib: _Libpcap, p: int, expr: str, optimize: bool, netmask: int) -> bytes:
    """Compile on handle `p`; the packed instructions, or FilterError with libpcap's reason."""
    program = _BpfProgram()
    with _compile_lock:
        if lib.compile(p, ctypes.byref(program), expr.encode(), int(optimize), netmask) < 0:
            raise FilterError(f"cannot compile filter {expr!r}: {lib.error(p)} "
                              f"(expression syntax: man 7 pcap-filter)")
    try:
        return ctypes.string_at(program.bf_insns, program.bf_len * ctypes.sizeof(_BpfInsn))
    finally:
        lib.freecode(ctypes.byref(program))


def _compile_dead(lib: _Libpcap, expr: str, dlt: int, snaplen: int, optimize: bool,
                  netmask: int) -> bytes:
    p = lib.open_dead(dlt, snaplen)
    if not p:
        raise MemoryError("pcap_open_dead() failed")
    try:
        return _compile_on(lib, p, expr, optimize, netmask)
    finally:
        lib.close(p)


def _retarget_returns(code: bytes, old: int, new: int) -> bytes:
    """Make `ret #old` return `new`: libpcap emits `ret #snaplen` and `ret #0` only."""
    if old == new:
        return code
    out = bytearray(code)
    for off in range(0, len(out), _SOCK_FILTER.size):
        op, jt, jf, k = _SOCK_FILTER.unpack_from(out, off)
        if op == _BPF_RET_K and k == old:
            _SOCK_FILTER.pack_into(out, off, op, jt, jf, new)
    return bytes(out)


_live_cache: dict[tuple[str, int, bool, int], bytes] = {}
_live_cache_lock = threading.Lock()
_LIVE_CACHE_SIZE = 64


def _compile_live(lib: _Libpcap, expr: str, snaplen: int, optimize: bool, netmask: int,
                  netns: _netns.NetnsSpec, device: Optional[str]) -> bytes:
    """Compile for a live Linux Ethernet socket: VLAN tests use the kernel's metadata.

    libpcap generates SKF_AD_VLAN_TAG_PRESENT code only on a handle whose
    activation found the kernel's BPF extensions (pcap-linux.c sets
    BPF_SPECIAL_VLAN_HANDLING in setup_socket()).  So this activates a handle
    on `device` or, failing that, on "lo" (libpcap gives loopback the Ethernet
    link type), inside `netns`, compiles on it and closes it at once.  The
    handle listens for one unused ethertype and has the smallest ring libpcap
    sets up (one 256 KiB block); activating and closing it still costs about
    35 ms (the kernel waits for an RCU grace period when a ring is set up and
    when the socket closes), and needs CAP_NET_RAW.  The code depends only on
    the expression and the running kernel, so each one is compiled once per
    process and cached.
    """
    key = (expr, snaplen, optimize, netmask)
    with _live_cache_lock:
        cached = _live_cache.get(key)
    if cached is not None:
        return cached
    problems: list[str] = []
    with _netns.entered(netns):
        for name in dict.fromkeys([d for d in (device, "lo") if d]):
            code = _compile_on_device(lib, name, expr, snaplen, optimize, netmask, problems)
            if code is not None:
                with _live_cache_lock:
                    if len(_live_cache) >= _LIVE_CACHE_SIZE:
                        del _live_cache[next(iter(_live_cache))]
                    _live_cache[key] = code
                return code
    where = "" if netns is None else f" in network namespace {netns!r}"
    raise FilterError(
        f"cannot compile filter {expr!r} for a live Linux socket (linux_vlan=True): libpcap "
        f"generates its VLAN code only on an activated Ethernet interface, and none could be "
        f"opened{where} ({'; '.join(problems)}). Pass device= an Ethernet interface that is up "
        f"there (the capture's own), or bring lo up (ip link set lo up)")


def _compile_on_device(lib: _Libpcap, name: str, expr: str, snaplen: int, optimize: bool,
                       netmask: int, problems: list[str]) -> Optional[bytes]:
    """Compile on a handle activated on interface `name`; None (and why) if that fails."""
    errbuf = ctypes.create_string_buffer(_PCAP_ERRBUF_SIZE)
    p = lib.create(name.encode(), errbuf)
    if not p:
        problems.append(f"{name}: {errbuf.value.decode('utf-8', 'replace')}")
        return None
    try:
        lib.set_snaplen(p, min(snaplen, MAX_SNAPLEN))
        lib.set_buffer_size(p, 1)
        if lib.set_protocol_linux is not None:
            lib.set_protocol_linux(p, _ETH_P_802_EX1)
        status = lib.activate(p)
        if status == _PCAP_ERROR_PERM_DENIED:
            raise CapturePermissionError(
                f"compiling {expr!r} for a live Linux socket (linux_vlan=True) opens a packet "
                f"socket, which needs CAP_NET_RAW: run as root, or compile with linux_vlan=False")
        if status < 0:
            reason = (lib.statustostr(status) or b"").decode()
            detail = lib.error(p)
            problems.append(f"{name}: {detail or reason}")
            return None
        if lib.datalink(p) != _DLT_EN10MB:
            problems.append(f"{name} is not an Ethernet interface")
            return None
        code = _compile_on(lib, p, expr, optimize, netmask)
        return _retarget_returns(code, lib.snapshot(p), snaplen)
    finally:
        lib.close(p)


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, not {value}")
    return value


def compile_filter(expr: str, *, linktype: int = 1, snaplen: int = MAX_SNAPLEN,
                   optimize: bool = True, netmask: int = 0xFFFFFFFF, linux_vlan: bool = False,
                   netns: _netns.NetnsSpec = None, device: Optional[str] = None) -> BPFProgram:
    """Compile a pcap-filter(7) expression into a validated BPFProgram.

    linktype    LINKTYPE_* of the packets (zcap.LinkType): 1 Ethernet, 113/276
                Linux cooked (SLL/SLL2), 101 raw IP
    snaplen     what an accepting program returns (bytes to keep)
    optimize    run libpcap's optimizer, as tcpdump does
    netmask     IPv4 netmask for `ip broadcast` (0xFFFFFFFF: unknown)
    linux_vlan  generate code for a Linux kernel socket, which sees VLAN tags
                as metadata: `vlan` tests use SKF_AD_VLAN_TAG_PRESENT /
                SKF_AD_VLAN_TAG, as libpcap does for live captures.  Only
                Ethernet has such code; an expression that mentions `vlan`
                is then compiled on a briefly activated handle (CAP_NET_RAW,
                ~35 ms the first time, cached after that) on `device` or "lo"
                in network namespace `netns`.

    The result is exactly what `tcpdump -ddd` prints for the same expression
    (with `-y <linktype>`, or `-i <interface>` for linux_vlan), for every
    expression libpcap compiles; only what libpcap rejects raises FilterError,
    with libpcap's reason.  Some programs libpcap generates cannot be attached
    to a Linux socket (`protochain` jumps backwards; live `vlan and vlan and
    pppoes and tcp` reads a scratch word before writing it): their
    `kernel_refusal` says why, and a capture runs them in user space.  Host and port names are resolved by
    libpcap while compiling, so a host name costs a DNS lookup.
    """
    if not isinstance(expr, str):
        raise TypeError(f"a filter expression is a str, not {type(expr).__name__}; "
                        f"use BPFProgram.parse() for raw programs")
    if "\0" in expr:
        raise FilterError(f"filter expression {expr!r} contains a NUL character")
    _check_int("linktype", linktype, 0, 0xFFFF)
    _check_int("snaplen", snaplen, 1, 0x7FFFFFFF)
    _check_int("netmask", netmask, 0, 0xFFFFFFFF)
    lib = _libpcap()
    dlt = _LINKTYPE_TO_DLT.get(linktype, linktype)
    if linux_vlan and dlt == _DLT_EN10MB and _VLAN_WORD.search(expr):
        code = _compile_live(lib, expr, snaplen, bool(optimize), netmask, netns, device)
    else:
        code = _compile_dead(lib, expr, dlt, snaplen, bool(optimize), netmask)
    try:
        return BPFProgram.from_bytes(code, linktype=linktype, snaplen=snaplen, expression=expr)
    except FilterError as exc:
        raise FilterError(f"filter {expr!r} compiles to a program zcap cannot run: {exc}") from None


def libpcap_filter(prog: RawProgram, buf: Any, wirelen: Optional[int] = None) -> int:
    """Run `prog` on one packet with libpcap's own interpreter, bpf_filter().

    The reference BPFProgram.match() is tested against.  bpf_filter() knows no
    Linux ancillary data: it rejects a packet when the program reaches such a
    load.  `wirelen` defaults as in match(): the object's `wirelen`, else its
    length.
    """
    program = BPFProgram.parse(prog)
    data = bytes(memoryview(buf))
    if wirelen is None:
        wirelen = getattr(buf, "wirelen", None)
        if not isinstance(wirelen, int):
            wirelen = len(data)
    return int(_libpcap().bpf_filter(program.as_bytes(), data, wirelen, len(data)))


# ---------------------------------------------------------------- cooked captures in the kernel

_LINKTYPE_LINUX_SLL = int(LinkType.LINUX_SLL)
_LINKTYPE_LINUX_SLL2 = int(LinkType.LINUX_SLL2)
_M32 = 0xFFFFFFFF
_SKF_AD_OFF = 0xFFFFF000                # SKF_AD_OFF (-0x1000) as an unsigned k
_SKF_AD_PROTOCOL, _SKF_AD_PKTTYPE, _SKF_AD_IFINDEX, _SKF_AD_HATYPE = 0, 4, 8, 28
_BPF_W, _BPF_H, _BPF_B = 0x00, 0x08, 0x10
_BPF_LD, _BPF_LDX, _BPF_ALU, _BPF_JMP, _BPF_RET = 0x00, 0x01, 0x04, 0x05, 0x06
_BPF_ABS, _BPF_IND, _BPF_MSH = 0x20, 0x40, 0xA0
_LD_W_LEN, _LDX_W_LEN, _LDX_B_MSH = 0x80, 0x81, 0xB1
_JA, _ADD_K = 0x05, 0x04
_BPF_MAXINSNS = 4096
_INTERVAL_TOP = (0, _M32)

# Link type -> (cooked header length, {(offset, load size): ancillary load}).  The
# header fields a socket filter can read as packet metadata, each only at its
# own offset and width, where the ancillary value is exactly what the
# synthesized header holds: SLL (16 bytes) pkttype(2) hatype(2) halen(2)
# addr(8) protocol(2); SLL2 (20 bytes) protocol(2) reserved(2) ifindex(4)
# hatype(2) pkttype(1) halen(1) addr(8).
_COOKED_FIELDS: dict[int, tuple[int, dict[tuple[int, int], int]]] = {
    _LINKTYPE_LINUX_SLL: (16, {(0, _BPF_H): _SKF_AD_PKTTYPE, (2, _BPF_H): _SKF_AD_HATYPE,
                               (14, _BPF_H): _SKF_AD_PROTOCOL}),
    _LINKTYPE_LINUX_SLL2: (20, {(0, _BPF_H): _SKF_AD_PROTOCOL, (4, _BPF_W): _SKF_AD_IFINDEX,
                                (8, _BPF_H): _SKF_AD_HATYPE, (10, _BPF_B): _SKF_AD_PKTTYPE}),
}

_Interval = tuple[int, int]


def _alu_interval(op: int, a: _Interval, b: _Interval) -> _Interval:
    """Bounds of A <op> B for A in a, B in b, with 32-bit wrap-around giving up (TOP)."""
    (alo, ahi), (blo, bhi) = a, b
    if op == 0x00:                                          # add
        lo, hi = alo + blo, ahi + bhi
    elif op == 0x10:                                        # sub
        lo, hi = alo - bhi, ahi - blo
    elif op == 0x20:                                        # mul
        lo, hi = alo * blo, ahi * bhi
    elif op == 0x30:                                        # div (by 0: the program returns 0)
        lo, hi = alo // max(bhi, 1), ahi // max(blo, 1)
    elif op == 0x90:                                        # mod
        lo, hi = 0, min(ahi, max(bhi - 1, 0))
    elif op == 0x50:                                        # and
        lo, hi = 0, min(ahi, bhi)
    elif op in (0x40, 0xA0):                                # or, xor
        lo, hi = 0, (1 << max(ahi, bhi).bit_length()) - 1
    elif op == 0x60:                                        # lsh (by X: X & 31)
        if bhi > 31:
            return _INTERVAL_TOP
        lo, hi = alo << blo, ahi << bhi
    elif op == 0x70:                                        # rsh
        lo, hi = (alo >> bhi, ahi >> blo) if bhi <= 31 else (0, ahi)
    elif op == 0x80:                                        # neg
        return (0, 0) if a == (0, 0) else _INTERVAL_TOP
    else:
        return _INTERVAL_TOP
    return (lo, hi) if 0 <= lo <= hi <= _M32 else _INTERVAL_TOP


def _x_intervals(insns: Sequence[tuple[int, int, int, int]]) -> list[Optional[_Interval]]:
    """For each instruction, bounds on X whenever it is reached (None: never reached).

    A forward pass of interval analysis over A, X and M[]: classic BPF jumps
    only forward, so every predecessor is done before an instruction is
    visited, and merging paths just widens the bounds.
    """
    n = len(insns)
    states: list[Optional[list[_Interval]]] = [None] * n
    states[0] = [(0, 0), (0, 0)] + [_INTERVAL_TOP] * 16       # A, X, M[0..15]
    result: list[Optional[_Interval]] = [None] * n

    def flow(target: int, state: list[_Interval]) -> None:
        old = states[target]
        states[target] = list(state) if old is None else [
            (min(p[0], q[0]), max(p[1], q[1])) for p, q in zip(old, state)]

    for pc, (code, jt, jf, k) in enumerate(insns):
        s = states[pc]
        if s is None:
            continue
        states[pc] = None
        result[pc] = s[1]
        cls = code & 0x07
        size = {_BPF_W: _M32, _BPF_H: 0xFFFF, _BPF_B: 0xFF}.get(code & 0x18, _M32)
        if cls == _BPF_RET:
            continue
        if cls == _BPF_JMP:
            if code == _JA:
                flow(pc + 1 + k, s)
            else:
                flow(pc + 1 + jt, s)
                flow(pc + 1 + jf, s)
            continue
        if code == _LDX_B_MSH:
            s[1] = (0, 60)
        elif code in (_LD_W_LEN, _LDX_W_LEN):
            s[code & 1] = _INTERVAL_TOP
        elif cls == _BPF_LD and code & 0xE0 in (_BPF_ABS, _BPF_IND):
            ancillary = code & 0xE0 == _BPF_ABS and k >= _SKF_AD_OFF
            s[0] = _INTERVAL_TOP if ancillary else (0, size)
        elif cls in (_BPF_LD, _BPF_LDX):                      # imm, mem
            s[cls] = (k, k) if code & 0xE0 == 0x00 else s[2 + k]
        elif cls in (0x02, 0x03):                             # st, stx
            s[2 + k] = s[cls - 2]
        elif cls == _BPF_ALU:
            s[0] = _alu_interval(code & 0xF0, s[0], s[1] if code & 0x08 else (k, k))
        elif code == 0x07:                                    # tax
            s[1] = s[0]
        elif code == 0x87:                                    # txa
            s[0] = s[1]
        flow(pc + 1, s)
    return result


def kernel_program(prog: BPFProgram, linktype: int) -> Optional[BPFProgram]:
    """The program to attach to a SOCK_DGRAM packet socket for a cooked capture.

    zcap captures the "any" device (and link types it does not decode) on a
    SOCK_DGRAM socket and puts a synthesized Linux cooked header, SLL
    (`linktype` 113, 16 bytes) or SLL2 (276, 20 bytes), in front of each
    packet, as libpcap does.  A filter compiled for that link type reads the
    header, but the kernel runs the socket filter on the packet as the socket
    sees it: from the network header, with no cooked header.  This rewrites
    `prog` as libpcap's fix_program() does (pcap-linux.c), so that the kernel,
    running it on that packet with its metadata, returns exactly what
    prog.match() returns on the packet as zcap hands it out (cooked header
    included, in its bytes and its wire length).  It returns None when no
    program can do that, and the capture must filter in user space; and
    `prog` itself for any other link type, or when nothing needs rewriting.

    * Loads past the header move back by its length: ld/ldh/ldb [k] and
      ldxb 4*([k]&0xf), and ld [x + k] when the bounds the program puts on
      X prove X + k past the header (and below 2**31, so that it does not
      wrap); otherwise None.  libpcap moves every ld [x + k] whose k is past
      the header, which is wrong when X + k wraps into it (ip[ip[0] - 85]),
      and refuses the others, such as geneve's, which are done here.
    * A load of exactly one header field becomes the ancillary load of the
      kernel metadata it was made from: SLL pkttype, hatype, protocol; SLL2
      protocol, ifindex, hatype, pkttype.  Anything else in the header (the
      link-layer address, halen, SLL2's reserved bytes, part of a field or a
      load wider than it): None.  libpcap does not map hatype, and maps any
      load at a field's offset whatever its width, wrongly.
    * `len` (ld #pktlen) is the length with the header, as in the packets
      zcap hands out and in a savefile of them, so an `add #hdrlen` follows
      it; `ldx #pktlen`, which libpcap never emits: None.  libpcap leaves
      BPF_LEN alone and runs its user-space filter with the length without
      the header too: in a live libpcap capture on "any", `len` does not
      count the header, though the packet's length, and a saved file filtered
      again, do.
    * Ancillary loads are kept, as libpcap keeps them.  Loads relative to
      SKF_NET_OFF / SKF_LL_OFF (which libpcap never emits): None.
    * Return values are kept, as libpcap keeps them; in the kernel, an
      accepting program's value is how many bytes after the cooked header
      to keep.
    * A program Linux refuses whatever its loads (prog.kernel_refusal: a
      backward jump, an unset scratch read): None.
    """
    if not isinstance(prog, BPFProgram):
        raise TypeError(f"kernel_program() takes a BPFProgram, not {type(prog).__name__}")
    return _fix_program(prog, linktype, header_in_len=True)


def _fix_program(prog: BPFProgram, linktype: int, *, header_in_len: bool) -> Optional[BPFProgram]:
    """kernel_program(); header_in_len=False leaves `len` alone, as libpcap does."""
    cooked = _COOKED_FIELDS.get(linktype)
    if cooked is None:
        return prog
    if prog.kernel_refusal is not None:
        return None                     # backward jumps / unset scratch: Linux refuses it anyway
    hdrlen, fields = cooked
    insns = prog.instructions
    x_bounds = _x_intervals(insns)
    out: list[tuple[int, int, int, int]] = []
    new_pc: list[int] = []                  # where each instruction of prog lands in out
    for pc, (code, jt, jf, k) in enumerate(insns):
        new_pc.append(len(out))
        cls, mode, size = code & 0x07, code & 0xE0, code & 0x18
        if x_bounds[pc] is None:
            pass                                              # never runs: keep it as it is
        elif code == _LD_W_LEN and header_in_len:
            out += [(code, jt, jf, k), (_ADD_K, 0, 0, hdrlen)]
            continue
        elif code == _LDX_W_LEN and header_in_len:
            return None
        elif cls == _BPF_LD and mode == _BPF_ABS:
            if k >= _SKF_AD_OFF:
                pass                                          # already metadata
            elif k >= 0x80000000:
                return None                                   # SKF_NET_OFF / SKF_LL_OFF relative
            elif k >= hdrlen:
                k -= hdrlen
            elif (k, size) in fields:
                k = _SKF_AD_OFF + fields[k, size]
            else:
                return None
        elif code == _LDX_B_MSH:
            if not hdrlen <= k < 0x80000000:
                return None
            k -= hdrlen
        elif cls == _BPF_LD and mode == _BPF_IND:
            lo, hi = x_bounds[pc] or _INTERVAL_TOP
            if lo + k < hdrlen or hi + k >= 0x80000000:
                return None
            k = (k - hdrlen) & _M32
        out.append((code, jt, jf, k))
    if len(out) > len(insns):
        # Jumps over an inserted instruction get longer.
        for pc, (code, jt, jf, k) in enumerate(insns):
            if code & 0x07 != _BPF_JMP:
                continue
            at = new_pc[pc]
            if code == _JA:
                out[at] = (code, 0, 0, new_pc[pc + 1 + k] - at - 1)
                continue
            jt, jf = new_pc[pc + 1 + jt] - at - 1, new_pc[pc + 1 + jf] - at - 1
            if max(jt, jf) > 0xFF:
                return None
            out[at] = (code, jt, jf, k)
        if len(out) > _BPF_MAXINSNS:
            return None
    if tuple(out) == insns:
        return prog
    return BPFProgram(out, linktype=prog.linktype, snaplen=prog.snaplen,
                      expression=prog.expression)
