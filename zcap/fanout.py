"""PACKET_FANOUT: several captures on one interface share its packets, none twice.

Sockets that join the same fanout group (same id, same network namespace,
same interface and protocol, same mode and flags) each get a share of the
packets: the kernel picks one member per packet by the group's mode.

    hash      flow hash (skb_get_hash) modulo the number of members: a flow
              always goes to the same member, in order; with `defrag`
              (default) the kernel reassembles IPv4 fragments first, so the
              member gets the whole datagram (never its fragments; those
              of a datagram that never completes reach no member and no
              counter) in the member of its flow; without it fragments go
              by their addresses, as they arrived (docs/pool.md)
    lb        round robin
    cpu       the CPU that received the packet
    rollover  fill one member until its ring is 3/4 full, then the next
    rnd       random
    qm        the receive queue the NIC recorded (skb queue mapping)
    cbpf      a classic BPF program returns the member index (modulo the
              number of members): Fanout("cbpf", program=...).  The kernel
              runs it on the packet from its network header (offset 0 is the
              IP header; link-layer bytes are at SKF_LL_OFF), so compile
              expressions with zcap.compile_filter(expr, linktype=LinkType.RAW)

Flags: `rollover` (a member whose ring is (nearly) full spills to another
member instead of dropping), `ignore_outgoing` (the group skips packets this
host sends), and a group id of None asks the kernel for an unused id
(PACKET_FANOUT_FLAG_UNIQUEID); `Capture.fanout` then reports the id chosen,
for the other members to join.

The group's filter is each member's own: the kernel picks the member first,
then runs that member's socket filter, so members should share one filter.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import socket
import struct
from dataclasses import dataclass, replace
from typing import Any, Optional

from zcap import errors
from zcap.linux import (
    NETLINK_SOCK_DIAG,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    PACKET_DIAG_FANOUT,
    PACKET_DIAG_INFO,
    PACKET_FANOUT,
    PACKET_FANOUT_DATA,
    PACKET_ROLLOVER_STATS,
    PACKET_SHOW_FANOUT,
    PACKET_SHOW_INFO,
    SOCK_DIAG_BY_FAMILY,
    SOL_PACKET,
)

__all__ = ["Fanout", "FanoutError", "MODES"]

# <linux/if_packet.h> (checked against the C header by tests/unit/test_fanout.py)
PACKET_FANOUT_HASH = 0
PACKET_FANOUT_LB = 1
PACKET_FANOUT_CPU = 2
PACKET_FANOUT_ROLLOVER = 3
PACKET_FANOUT_RND = 4
PACKET_FANOUT_QM = 5
PACKET_FANOUT_CBPF = 6
PACKET_FANOUT_EBPF = 7
PACKET_FANOUT_FLAG_ROLLOVER = 0x1000
PACKET_FANOUT_FLAG_UNIQUEID = 0x2000
PACKET_FANOUT_FLAG_IGNORE_OUTGOING = 0x4000
PACKET_FANOUT_FLAG_DEFRAG = 0x8000

MODES = {"hash": PACKET_FANOUT_HASH, "lb": PACKET_FANOUT_LB, "cpu": PACKET_FANOUT_CPU,
         "rollover": PACKET_FANOUT_ROLLOVER, "rnd": PACKET_FANOUT_RND, "qm": PACKET_FANOUT_QM,
         "cbpf": PACKET_FANOUT_CBPF}
_MODE_NAMES = {v: k for k, v in MODES.items()} | {PACKET_FANOUT_EBPF: "ebpf"}
_FLAG_NAMES = ((PACKET_FANOUT_FLAG_DEFRAG, "defrag"), (PACKET_FANOUT_FLAG_ROLLOVER, "rollover"),
               (PACKET_FANOUT_FLAG_IGNORE_OUTGOING, "ignore_outgoing"))


class FanoutError(errors.CaptureError, OSError):
    """A capture could not join its fanout group; the message names the conflict."""


@dataclass(frozen=True)
class Fanout:
    """How a capture joins a PACKET_FANOUT group (see the module docstring).

    group_id: 0..65535, or None for a kernel-chosen unused id.
    defrag: hash mode only: the kernel reassembles IPv4 fragments before it
    picks the member, which gets the datagram instead of its fragments (the
    fragments of a datagram that never completes reach no member and no
    member's counters).  False keeps the wire's frames.
    program: cbpf mode only: a classic BPF program (a zcap.BPFProgram, raw
    (code, jt, jf, k) tuples or `tcpdump -ddd` text) whose return value is the
    index of the member that gets the packet.
    """

    mode: str = "hash"
    group_id: Optional[int] = None
    defrag: bool = True
    rollover: bool = False
    ignore_outgoing: bool = False
    program: Any = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"fanout mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.group_id is not None:
            if not isinstance(self.group_id, int) or isinstance(self.group_id, bool):
                raise TypeError(f"group_id must be an int or None, not {type(self.group_id).__name__}")
            if not 0 <= self.group_id <= 0xFFFF:
                raise ValueError(f"group_id must be between 0 and 65535, not {self.group_id}")
        if self.mode == "cbpf" and self.program is None:
            raise ValueError("fanout mode 'cbpf' needs program=: a classic BPF program "
                             "returning the member index (e.g. zcap.compile_filter(...) or "
                             "[(0x06, 0, 0, 1)])")
        if self.mode != "cbpf" and self.program is not None:
            raise ValueError(f"program= is only for fanout mode 'cbpf', not {self.mode!r}")
        if self.mode == "rollover" and self.rollover:
            raise ValueError("mode 'rollover' already rolls over; the rollover flag is for the "
                             "other modes")

    @classmethod
    def coerce(cls, value: Any) -> Optional[Fanout]:
        """None, a Fanout, or a mode string (shorthand for Fanout(mode))."""
        if value is None or isinstance(value, Fanout):
            return value
        if isinstance(value, str):
            return cls(value)
        raise TypeError(f"fanout must be a zcap.Fanout or a mode string, not {type(value).__name__}")

    @property
    def flags(self) -> int:
        """The PACKET_FANOUT_FLAG_* bits (without UNIQUEID)."""
        f = 0
        if self.defrag and self.mode == "hash":
            f |= PACKET_FANOUT_FLAG_DEFRAG
        if self.rollover:
            f |= PACKET_FANOUT_FLAG_ROLLOVER
        if self.ignore_outgoing:
            f |= PACKET_FANOUT_FLAG_IGNORE_OUTGOING
        return f

    def sockopt(self) -> int:
        """The PACKET_FANOUT setsockopt value: id | (mode | flags) << 16."""
        type_flags = MODES[self.mode] | self.flags
        if self.group_id is None:
            return (type_flags | PACKET_FANOUT_FLAG_UNIQUEID) << 16
        return self.group_id | type_flags << 16

    def describe(self) -> str:
        return _describe(MODES[self.mode], self.flags >> 8)

    def with_group(self, group_id: int) -> Fanout:
        return replace(self, group_id=group_id)


def _describe(mode: int, flags: int) -> str:
    names = [n for bit, n in _FLAG_NAMES if flags & (bit >> 8)]
    text = f"mode {_MODE_NAMES.get(mode, mode)!r}"
    return text + (f" with {'+'.join(names)}" if names else " without flags")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _program_bytes(program: Any, linktype: int, snaplen: int) -> bytes:
    from zcap import bpf
    if isinstance(program, bytes):
        return program
    return bpf.BPFProgram.parse(program, linktype=linktype, snaplen=snaplen).as_bytes()


def join(fd: int, fanout: Fanout, *, interface: str, ifindex: int, protocol: int,
         linktype: int, snaplen: int, netns: Any = None) -> Fanout:
    """Join `fd` (bound, running) to the group; returns the Fanout with its group id."""
    sock = socket.socket(fileno=fd)
    try:
        try:
            sock.setsockopt(SOL_PACKET, PACKET_FANOUT, struct.pack("I", fanout.sockopt()))
        except OSError as exc:
            raise _join_error(exc, fanout, interface=interface, ifindex=ifindex,
                              protocol=protocol, netns=netns) from None
        joined = fanout.with_group(sock.getsockopt(SOL_PACKET, PACKET_FANOUT) & 0xFFFF)
        if fanout.mode == "cbpf":
            code = _program_bytes(fanout.program, linktype, snaplen)
            buf = ctypes.create_string_buffer(code, len(code))
            prog = _SockFprog(len(code) // 8, ctypes.addressof(buf))
            try:
                sock.setsockopt(SOL_PACKET, PACKET_FANOUT_DATA, bytes(prog))
            except OSError as exc:
                raise FanoutError(exc.errno, f"the kernel refused the fanout program "
                                  f"({os.strerror(exc.errno or 0)}): {len(code) // 8} instructions; "
                                  f"it must be a valid classic BPF program") from None
        return joined
    finally:
        sock.detach()


def rollover_stats(fd: int) -> tuple[int, int, int]:
    """PACKET_ROLLOVER_STATS of a member: (rolled over, of them huge flows, failed)."""
    sock = socket.socket(fileno=fd)
    try:
        raw = sock.getsockopt(SOL_PACKET, PACKET_ROLLOVER_STATS, 24)
        return struct.unpack("QQQ", raw)
    except OSError:
        return (0, 0, 0)
    finally:
        sock.detach()


def _join_error(exc: OSError, fanout: Fanout, *, interface: str, ifindex: int,
                protocol: int, netns: Any) -> FanoutError:
    gid = "a kernel-chosen id" if fanout.group_id is None else f"group {fanout.group_id}"
    if exc.errno == _errno.ENOSPC:
        return FanoutError(exc.errno, f"fanout {gid} is full (the kernel allows 256 members)")
    if exc.errno == _errno.ENOMEM and fanout.group_id is None:
        return FanoutError(exc.errno, "the kernel found no unused fanout group id")
    if exc.errno != _errno.EINVAL or fanout.group_id is None:
        return FanoutError(exc.errno, f"joining fanout {gid} failed: {os.strerror(exc.errno or 0)}")
    want = (f"{fanout.describe()} on interface {interface!r} (ifindex {ifindex}), "
            f"protocol 0x{protocol:04x}")
    found = _existing_group(fanout.group_id, netns)
    if found is None:
        return FanoutError(exc.errno,
                           f"fanout group {fanout.group_id} exists with another configuration "
                           f"(mode, flags, interface or protocol) than this capture's: {want}. "
                           f"Use another group_id, or group_id=None for a kernel-chosen one")
    mode, other_ifindex, other_proto = found
    diffs = []
    if mode != MODES[fanout.mode]:
        diffs.append(f"mode {_MODE_NAMES.get(mode, mode)!r}")
    if other_ifindex != ifindex:
        diffs.append(f"interface ifindex {other_ifindex}" if other_ifindex else "interface 'any'")
    if other_proto != protocol:
        diffs.append(f"protocol 0x{other_proto:04x}")
    # sock_diag shows a group's id and mode, not its flags: if nothing else
    # differs, the flags do.
    what = ", ".join(diffs) or (f"mode {_MODE_NAMES.get(mode, mode)!r} on the same interface but "
                                f"other flags (defrag, rollover, ignore_outgoing)")
    return FanoutError(exc.errno,
                       f"fanout group {fanout.group_id} already exists in this network namespace "
                       f"with {what}; this capture asked for {want}. Use another group_id, or "
                       f"group_id=None for a kernel-chosen one")


def _existing_group(group_id: int, netns: Any) -> Optional[tuple[int, int, int]]:
    """(mode, ifindex, protocol) of a member of `group_id`, via sock_diag.

    Asked in the capture's network namespace.  None if packet_diag is missing.
    """
    from zcap import netns as _netns
    try:
        with _netns.entered(netns):
            nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
    except OSError:
        return None
    try:
        nl.settimeout(1.0)
        req = struct.pack("BBHIII", socket.AF_PACKET, 0, 0, 0,
                          PACKET_SHOW_INFO | PACKET_SHOW_FANOUT, 0) + b"\0" * 4
        hdr = struct.pack("IHHII", 16 + len(req), SOCK_DIAG_BY_FAMILY,
                          NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
        nl.send(hdr + req)
        while True:
            data = nl.recv(1 << 16)
            off = 0
            while off + 16 <= len(data):
                length, kind, _, _, _ = struct.unpack_from("IHHII", data, off)
                if kind in (NLMSG_DONE, NLMSG_ERROR) or length < 16:
                    return None
                found = _parse_diag(data[off + 16:off + length], group_id)
                if found is not None:
                    return found
                off += (length + 3) & ~3
    except OSError:
        return None
    finally:
        nl.close()


def _parse_diag(msg: bytes, group_id: int) -> Optional[tuple[int, int, int]]:
    if len(msg) < 16:
        return None
    proto = struct.unpack_from("H", msg, 2)[0]      # pdiag_num, host order
    off, ifindex, fan = 16, 0, None
    while off + 4 <= len(msg):
        alen, atype = struct.unpack_from("HH", msg, off)
        if alen < 4:
            break
        if atype == PACKET_DIAG_INFO and alen >= 8:
            ifindex = struct.unpack_from("I", msg, off + 4)[0]
        elif atype == PACKET_DIAG_FANOUT and alen >= 8:
            fan = struct.unpack_from("I", msg, off + 4)[0]
        off += (alen + 3) & ~3
    if fan is None or fan & 0xFFFF != group_id:
        return None
    return (fan >> 16) & 0xFF, ifindex, proto
