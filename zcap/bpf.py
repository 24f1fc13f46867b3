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
from zcap.errors import CapturePermissionError, FilterError

__all__ = ["BPFProgram", "FilterError", "compile_filter", "libpcap_filter", "libpcap_version"]

RawProgram = Union[BPFProgram, str, bytes, Sequence[Sequence[int]]]

MAX_SNAPLEN = 262144                    # libpcap's MAXIMUM_SNAPLEN
LIBPCAP_NAMES = ("libpcap.so.0.8", "libpcap.so")
LIBPCAP_PACKAGE = "libpcap0.8"

_DLT_EN10MB = 1
_DLT_RAW = 12
# LINKTYPE_* values (pcap files, zcap.LinkType) that are not libpcap's DLT_*
# value on Linux; all others are the same number.
_LINKTYPE_TO_DLT = {101: _DLT_RAW}

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
    (with `-y <linktype>`, or `-i <interface>` for linux_vlan).  Errors raise
    FilterError with libpcap's reason.  Host and port names are resolved by
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
        raise FilterError(f"filter {expr!r} compiles to a program Linux would refuse: {exc}") from None


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
