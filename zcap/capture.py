"""open_live() and Capture: options, checks and errors around the Cython ring.

Setting up follows libpcap's order so no unfiltered packet is ever queued:
the socket is created with protocol 0 (it receives nothing), the ring and any
kernel filter are set up, and only then is it bound to the real protocol.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import warnings
from dataclasses import dataclass
from typing import Any, Iterator, Optional

from zcap import _ring, errors
from zcap import aio as _aio
from zcap import fanout as _fanout
from zcap import filters as _filters
from zcap import netns as _netns
from zcap import timestamps as _timestamps
from zcap._enums import LinkType
from zcap._handle import RingHandle
from zcap.interfaces import InterfaceInfo, lookup_interface
from zcap.linux import (
    ARPHRD_ETHER,
    ARPHRD_LOOPBACK,
    ARPHRD_NONE,
    ARPHRD_RAWIP,
    ETH_P_ALL,
    IFF_UP,
    MAX_SNAPLEN,
    PACKET_ADD_MEMBERSHIP,
    PACKET_IGNORE_OUTGOING,
    PACKET_MR_PROMISC,
    SIOCGIFINDEX,
    SOL_PACKET,
    ioctl_int,
    mem_available,
)
from zcap.sizes import human_size
from zcap.stats import Stats

__all__ = ["open_live", "Capture", "RingGeometry"]

PAGE_SIZE = os.sysconf("SC_PAGESIZE")

# Defaults, chosen by measurement (bench/geometry.py, docs/benchmarks.md):
# the drain cost per packet does not change measurably from 64 KiB to 4 MiB
# blocks, and 1 MiB blocks hold a packet of the maximum snaplen.  The retire
# timeout trades a trickle's latency (it equals the timeout) against how long
# a paused consumer can fall behind, because a block is retired partly empty
# when the timeout strikes first: with 32 x 1 MiB and 10 ms a paused consumer
# survives ~300 ms of 64-byte frames at 275 kpps (50 ms: ~700 ms).
DEFAULT_SNAPLEN = MAX_SNAPLEN
DEFAULT_BLOCK_SIZE = 1 << 20
DEFAULT_BLOCK_COUNT = 32
DEFAULT_TIMEOUT_MS = 10


_MODES = {"ring": _ring.MODE_V3, "copy": _ring.MODE_COPY}
_DIRECTIONS = {"inout": _ring.DIRECTION_INOUT, "in": _ring.DIRECTION_IN, "out": _ring.DIRECTION_OUT}
_COOKED = {"sll": (_ring.COOKED_SLL, LinkType.LINUX_SLL), "sll2": (_ring.COOKED_SLL2, LinkType.LINUX_SLL2)}


@dataclass(frozen=True)
class RingGeometry:
    """A checked ring layout.  Checking happens before any system call."""

    block_size: int
    block_count: int
    frame_size: int       # immediate mode only: one page-aligned frame per packet
    snaplen: int
    timeout_ms: int

    @property
    def total_size(self) -> int:
        return self.block_size * self.block_count

    @staticmethod
    def largest_snaplen(block_size: object, reserve: int = 8) -> int:
        """The default snaplen: 262144, or what one block can hold if less."""
        if not isinstance(block_size, int) or block_size <= 0:
            return DEFAULT_SNAPLEN
        room = block_size - (_ring.TPACKET3_HDR_END + 32 + reserve + _ring.BLOCK_DESC_SIZE)
        return max(1, min(DEFAULT_SNAPLEN, room))

    @classmethod
    def check(cls, *, block_size: int, block_count: int, snaplen: int, timeout_ms: int,
              immediate: bool = False, mtu: int = 1500, reserve: int = 0) -> RingGeometry:
        for name, value in (("block_size", block_size), ("block_count", block_count),
                            ("snaplen", snaplen), ("timeout_ms", timeout_ms)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        if not 1 <= snaplen <= MAX_SNAPLEN:
            raise ValueError(f"snaplen must be between 1 and {MAX_SNAPLEN}, not {snaplen}")
        if block_size < PAGE_SIZE or block_size % PAGE_SIZE:
            raise ValueError(
                f"block_size must be a positive multiple of the page size ({PAGE_SIZE}), "
                f"not {block_size}; e.g. {max(PAGE_SIZE, (block_size // PAGE_SIZE) * PAGE_SIZE)}")
        if block_size > 1 << 30:
            raise ValueError(f"block_size {block_size} is over the 1 GiB limit; use more blocks")
        if block_size & (block_size - 1):
            raise ValueError(
                f"block_size must be a power of two (the kernel allocates blocks in power-of-two "
                f"pages, the rest would be wasted), not {block_size}; e.g. {1 << block_size.bit_length()}")
        if not 2 <= block_count <= 1 << 20:
            raise ValueError(
                f"block_count must be between 2 and {1 << 20}, not {block_count}: the kernel fills "
                f"one block while you read another")
        if not 1 <= timeout_ms <= 3_600_000:
            raise ValueError(f"timeout_ms must be between 1 and 3600000, not {timeout_ms}")
        frame_size = 0
        if immediate:
            data = min(snaplen, max(mtu, 1500) + 14 + 8)
            frame_size = _round_up(_ring.TPACKET2_HDR_END + 16 + 16 + reserve + data, PAGE_SIZE)
            if block_size * block_count // frame_size < 2:
                raise ValueError(
                    f"a {block_size * block_count}-byte ring holds fewer than 2 frames of "
                    f"{frame_size} bytes; use a larger block_size or block_count")
        else:
            need = _ring.TPACKET3_HDR_END + 16 + 16 + reserve + snaplen + _ring.BLOCK_DESC_SIZE
            if need > block_size:
                raise ValueError(
                    f"a {snaplen}-byte snapshot needs frames of {need} bytes, larger than the "
                    f"{block_size}-byte block; use block_size >= {1 << (need - 1).bit_length()} "
                    f"or snaplen <= {block_size - (need - snaplen)}")
        return cls(block_size, block_count, frame_size, snaplen, timeout_ms)


def _round_up(n: int, to: int) -> int:
    return (n + to - 1) // to * to


class _borrowed:
    """A Python socket view of an fd the ring owns; never closes it."""

    def __init__(self, fd: int) -> None:
        self.sock = socket.socket(fileno=fd)

    def __enter__(self) -> socket.socket:
        return self.sock

    def __exit__(self, *exc: object) -> None:
        self.sock.detach()


def _check_interface_name(name: str) -> None:
    """The kernel's dev_valid_name(), before a truncated name reaches an ioctl."""
    bad = next((c for c in name if c == "\0" or c == "/" or c == ":" or c.isspace()), None)
    if not name or len(name.encode()) > 15 or name in (".", "..") or bad is not None:
        why = (f"contains {bad!r}" if bad is not None else
               "is empty" if not name else "is longer than 15 bytes" if len(name.encode()) > 15
               else "is reserved")
        raise errors.InterfaceNotFoundError(
            f"{name!r} is not a valid interface name: it {why} (Linux names are 1-15 bytes "
            f"without NUL, '/', ':' or whitespace); check the name with `ip link`")


def _check_filter_spec(spec: object) -> None:
    """A TypeError naming what a filter may be, before anything tries to iterate it."""
    from zcap import bpf
    if spec is None or isinstance(spec, (str, bytes, bytearray, list, tuple, bpf.BPFProgram)):
        return
    raise TypeError(
        f"filter must be a tcpdump expression (str), a raw program (a list of (code, jt, jf, k) "
        f"tuples, tcpdump -ddd text or a zcap.BPFProgram) or None, not "
        f"{type(spec).__name__} ({spec!r})")


def _linktype_for(hatype: int) -> Optional[LinkType]:
    if hatype in (ARPHRD_ETHER, ARPHRD_LOOPBACK):
        return LinkType.ETHERNET
    if hatype in (ARPHRD_NONE, ARPHRD_RAWIP):
        return LinkType.RAW
    return None


def open_live(interface: str, *, snaplen: Optional[int] = None, promisc: bool = False,
              filter: object = None, timeout_ms: int = DEFAULT_TIMEOUT_MS,
              block_size: int = DEFAULT_BLOCK_SIZE, block_count: int = DEFAULT_BLOCK_COUNT,
              mode: str = "ring", immediate: bool = False, reinsert_vlan: bool = True,
              direction: str = "inout", ignore_outgoing: bool = False, cooked: str = "sll2",
              rxhash: bool = False, netns: _netns.NetnsSpec = None,
              protocol: int = ETH_P_ALL, lock_filter: bool = False,
              tstamp_type: Optional[str] = None,
              link_down_grace: Optional[float] = 1.0,

              fanout: Any = None) -> Capture:
    """Open a live capture on `interface` ("any" for all interfaces).

    snaplen      bytes kept per packet, truncated in the kernel (default: 262144,
                 or as much as one block holds when block_size is smaller)
    promisc      put the interface in promiscuous mode while open
    timeout_ms   block retire timeout: a partly filled block reaches you within it
    block_size   ring block size, a power-of-two multiple of the page size
    block_count  number of blocks; the ring is block_size * block_count bytes
    mode         "ring" (zero copy, TPACKET_V3) or "copy" (recvmmsg into a buffer)
    immediate    deliver each packet as soon as it arrives (TPACKET_V2 frames)
    reinsert_vlan deliver the wire bytes (the default): the kernel strips the outer
                 802.1Q/802.1ad tag of received frames into metadata, and zcap
                 puts it back in place with its TPID and full TCI, as libpcap
                 does.  False delivers the kernel's view instead: the outer
                 tag missing from the bytes (only in pkt.vlan / pkt.vlan_tpid),
                 so a savefile of those packets loses it
    direction    "inout", "in" or "out"
    ignore_outgoing  have the kernel skip packets this host sends
    cooked       "sll2" or "sll": the cooked header used for "any"
    netns        network namespace (name in /run/netns, path or fd) to capture in
    filter       a tcpdump expression, or a raw program (tcpdump -ddd text, a
                 sequence of (code, jt, jf, k), a zcap.BPFProgram); run in the
                 kernel, attached before the socket receives anything, with
                 live libpcap semantics (on the packet before the tag is
                 reinserted).  A program the kernel refuses (`protochain`,
                 libpcap issue #834) runs in user space in the ring walker,
                 with a UserSpaceFilterWarning; stats().filter_location says
                 where the filter runs
    lock_filter  SO_LOCK_FILTER: the filter cannot be changed later (e.g. after
                 privileges are dropped)
    tstamp_type  which clock stamps packets, as libpcap's pcap_set_tstamp_type():
                 "host" (the kernel's, the default) or "adapter_unsynced" (the
                 NIC's own clock, SOF_TIMESTAMPING_RAW_HARDWARE); "adapter"
                 (NIC stamps in system time) needs SOF_TIMESTAMPING_SYS_HARDWARE,
                 which Linux no longer offers.  An interface that cannot do it
                 raises TimestampTypeError (see `ethtool -T IFACE`): never
                 software stamps in disguise.  pkt.ts_source tells which clock
                 stamped each packet.
    link_down_grace  seconds the interface may stay down (a flap) before the
                 iteration ends with InterfaceDownError; None waits for it forever,
                 as libpcap does.  A deleted interface ends it at once
                 (InterfaceGoneError), after every accepted packet was delivered.
    fanout       join a PACKET_FANOUT group: a zcap.Fanout, or a mode string
                 ("hash", "lb", ...) for Fanout(mode); see zcap.fanout
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be 'ring' or 'copy', not {mode!r}")
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be 'inout', 'in' or 'out', not {direction!r}")
    if cooked not in _COOKED:
        raise ValueError(f"cooked must be 'sll2' or 'sll', not {cooked!r}")
    if not isinstance(interface, str):
        raise TypeError(f"interface must be a str, not {type(interface).__name__}")
    _check_interface_name(interface)
    if not isinstance(protocol, int) or isinstance(protocol, bool):
        raise TypeError(f"protocol must be an int ethertype such as 0x0800 (IPv4) or "
                        f"zcap.capture.ETH_P_ALL (every protocol), not {protocol!r}; "
                        f"to select by protocol name use filter=, e.g. filter='ip'")
    if not 0 <= protocol <= 0xFFFF:
        raise ValueError(f"protocol must be an ethertype (0..65535), not {protocol}")
    _check_filter_spec(filter)
    if link_down_grace is not None and not (isinstance(link_down_grace, (int, float))
                                            and link_down_grace >= 0):
        raise ValueError(f"link_down_grace must be None or a number of seconds >= 0, "
                         f"not {link_down_grace!r}")
    fanout = _fanout.Fanout.coerce(fanout)
    if fanout is not None and ignore_outgoing and not fanout.ignore_outgoing:
        # a member's own hook is replaced by the group's: the flag lives there
        fanout = _fanout.Fanout(fanout.mode, fanout.group_id, defrag=fanout.defrag,
                                rollover=fanout.rollover, ignore_outgoing=True,
                                program=fanout.program)
    any_device = interface == "any"
    _timestamps.check_type(tstamp_type, interface, mode)
    if snaplen is None:
        snaplen = RingGeometry.largest_snaplen(block_size)
    if promisc and any_device:
        raise ValueError("promiscuous mode is not supported on the 'any' device; "
                         "open each interface with promisc=True instead")
    # First pass over the geometry with a pessimistic reserve: every ValueError
    # is raised before the first system call.
    RingGeometry.check(block_size=block_size, block_count=block_count, snaplen=snaplen,
                       timeout_ms=timeout_ms, immediate=False if mode == "copy" else immediate,
                       reserve=8)
    wanted = block_size * block_count
    available = mem_available()
    if mode != "copy" and available is not None and wanted > available:
        raise errors.RingAllocationError(
            f"a {human_size(wanted)} ring ({block_count} x {human_size(block_size)}) is more "
            f"than the {human_size(available)} of memory available; use a smaller "
            f"block_count or block_size")

    sock = _netns.packet_socket(netns, socket.SOCK_DGRAM if any_device else socket.SOCK_RAW)
    try:
        if any_device:
            iface = InterfaceInfo("any", 0, IFF_UP, 65536, 0)
            cooked_kind, linktype = _COOKED[cooked]
        else:
            iface = lookup_interface(sock.fileno(), interface, netns)
            if not iface.flags & IFF_UP:
                raise errors.InterfaceDownError(
                    errno.ENETDOWN,
                    f"interface {interface!r} is down; bring it up with `ip link set {interface} up`")
            found = _linktype_for(iface.hatype)
            if found is None:
                # Like libpcap: link layers we do not decode are captured
                # "cooked", with a synthesized Linux header.
                sock.close()
                sock = _netns.packet_socket(netns, socket.SOCK_DGRAM)
                cooked_kind, linktype = _COOKED[cooked]
            else:
                cooked_kind, linktype = _ring.COOKED_NONE, found
        if tstamp_type not in (None, "host"):
            _timestamps.check_interface(tstamp_type, interface, netns)
        try:
            lo_index = ioctl_int(sock.fileno(), SIOCGIFINDEX, "lo")
        except OSError:
            lo_index = -1
        # Loopback's outgoing duplicates can only reach a socket that sees lo:
        # one on "any" or on lo itself.  For any other interface the walker
        # need not look at a packet's address (and batches can stay lazy).
        skip_lo_index = lo_index if any_device or iface.index == lo_index else -1
        reserve = 4 if reinsert_vlan else 0
        if cooked_kind:
            reserve += _ring.SLL2_HDR_LEN - _ring.SLL_HDR_LEN
        geometry = RingGeometry.check(block_size=block_size, block_count=block_count,
                                      snaplen=snaplen, timeout_ms=timeout_ms,
                                      immediate=immediate and mode == "ring",
                                      mtu=iface.mtu, reserve=reserve)
        if cooked_kind == _ring.COOKED_SLL2:
            vlan_offset = -1          # libpcap does not reinsert tags into SLL2 either
        elif cooked_kind == _ring.COOKED_SLL:
            vlan_offset = 14
        elif linktype == LinkType.ETHERNET:
            vlan_offset = 12
        else:
            vlan_offset = -1
        ring_mode = _ring.MODE_V2 if (immediate and mode == "ring") else _MODES[mode]
        # Compiled before the ring exists: a FilterError costs nothing to undo.
        capture_filter = _filters.for_capture(filter, linktype=linktype, snaplen=geometry.snaplen,
                                              reinsert_vlan=reinsert_vlan, interface=interface,
                                              netns=netns)
        fd = sock.detach()
    except BaseException:
        sock.close()
        raise

    # From here on the ring owns the fd and closes it on any failure.
    ring = _ring.Ring(fd, mode=ring_mode, block_size=geometry.block_size,
                      block_count=geometry.block_count, frame_size=geometry.frame_size,
                      timeout_ms=geometry.timeout_ms, snaplen=geometry.snaplen,
                      cooked=cooked_kind, reinsert_vlan=reinsert_vlan, vlan_offset=vlan_offset,
                      lo_ifindex=skip_lo_index, direction=_DIRECTIONS[direction], rxhash=rxhash,
                      reserve=reserve, ifname=interface, linktype=int(linktype),
                      link_down_grace=link_down_grace)
    try:
        with _borrowed(fd) as s:
            if promisc:
                mreq = struct.pack("iHH8s", iface.index, PACKET_MR_PROMISC, 0, b"")
                s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            if ignore_outgoing or (iface.index == lo_index and direction != "out"):
                # The kernel drops loopback's outgoing copies for us (each
                # packet on lo is seen once, as libpcap shows it).
                s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        if fanout is not None:
            # The kernel joins only a bound socket to a group, and a bound
            # socket receives on its own until it joins: it accepts nothing
            # (`ret #0`) until it is a member, then gets its real filter.
            ring.set_filter(_filters.snaplen_only(0), None)
        elif capture_filter.spec is not None or snaplen < MAX_SNAPLEN:
            # The kernel truncates to a filter's return value, so even without a
            # filter a one-line "ret #snaplen" keeps the rest out of the ring.
            capture_filter = _install_filter(ring, capture_filter, geometry.snaplen)
        if tstamp_type not in (None, "host"):
            _timestamps.enable_hardware(s_fd=fd, interface=interface)
        if lock_filter and fanout is None:
            ring.lock_filter()
        # Only now does the socket receive: nothing unfiltered was ever queued.
        ring.bind(iface.index, protocol)
        if fanout is not None:
            fanout = _fanout.join(ring.fileno(), fanout, interface=interface, ifindex=iface.index,
                                  protocol=protocol, linktype=int(linktype),
                                  snaplen=geometry.snaplen, netns=netns)
            capture_filter = _install_filter(ring, capture_filter, geometry.snaplen)
            if lock_filter:
                ring.lock_filter()
    except BaseException:
        ring.close()
        raise
    mode_name = {_ring.MODE_COPY: "copy", _ring.MODE_V2: "immediate"}.get(ring_mode, "ring")
    return Capture(ring, interface=interface, ifindex=iface.index, linktype=linktype,
                   geometry=geometry, mode=mode_name, netns=netns, promisc=promisc,
                   capture_filter=capture_filter, reinsert_vlan=reinsert_vlan, fanout=fanout)


def _install_filter(ring: _ring.Ring, cf: _filters.CaptureFilter,
                    snaplen: int) -> _filters.CaptureFilter:
    """Attach `cf`; if the kernel refuses its program, run it in user space instead."""
    if not cf.user_only:
        try:
            ring.set_filter(cf.kernel, cf.user)
            return cf
        except OSError as exc:
            if exc.errno != errno.EINVAL or cf.user is None:
                raise
            cf = cf.in_user_space(snaplen, f"the kernel refused the program ({exc.strerror})")
    ring.set_filter(cf.kernel, cf.user, user_only=True)
    warnings.warn(cf.warning(), errors.UserSpaceFilterWarning, stacklevel=3)
    return cf


class Capture(RingHandle):
    """A live capture.  Iterate it for packets, or call batches() for blocks.

    The same object serves the sync API and (see zcap.aio) async iteration.
    """

    def __init__(self, ring: _ring.Ring, *, interface: str, ifindex: int, linktype: LinkType,
                 geometry: RingGeometry, mode: str, netns: _netns.NetnsSpec,
                 promisc: bool, capture_filter: _filters.CaptureFilter,
                 reinsert_vlan: bool = True, fanout: Optional[_fanout.Fanout] = None) -> None:
        self._ring = ring
        self.interface = interface
        self.ifindex = ifindex
        self.linktype = linktype
        self.geometry = geometry
        self.snaplen = geometry.snaplen
        self.mode = mode
        self.netns = netns
        self.promisc = promisc
        #: async iteration yields to the event loop after this much work
        self.budget_us = _ring.DEFAULT_BUDGET_US
        self._filter = capture_filter
        self._reinsert_vlan = reinsert_vlan
        #: the fanout group this capture is a member of (with its group id), or None
        self.fanout = fanout

    # -- filtering ----------------------------------------------------------

    @property
    def filter(self) -> Any:
        """The filter in force, as given (an expression or a raw program), or None."""
        return self._filter.spec

    @property
    def filter_program(self) -> Optional[Any]:
        """The compiled BPFProgram of the filter, or None.

        It runs on the packet as the kernel sees it (live semantics): on
        Ethernet with `vlan` tests reading the stripped tag's metadata
        (BPFProgram.match(data, vlan_tci=...)) and the rest the bytes
        without the outer tag.
        """
        return self._filter.user

    @property
    def filter_location(self) -> Optional[str]:
        """Where the filter runs: "kernel", "user" (the kernel refused its
        program; zcap runs it in the ring walker), or None without a filter."""
        return self._filter.location

    def set_filter(self, spec: Any) -> None:
        """Replace the filter while capturing (None removes it).

        No packet the new filter rejects is delivered afterwards, including
        packets an earlier filter let into the ring: those are filtered again
        in user space.  An invalid filter raises FilterError and the previous
        one stays in force; a locked filter (lock_filter=True) raises too.
        """
        _check_filter_spec(spec)
        new = _filters.for_capture(spec, linktype=self.linktype, snaplen=self.snaplen,
                                   reinsert_vlan=self._reinsert_vlan, interface=self.interface,
                                   netns=self.netns)
        if new.spec is None:
            self._ring.set_filter(new.kernel, None)
        else:
            new = _install_filter(self._ring, new, self.snaplen)
        self._filter = new

    # -- iteration ----------------------------------------------------------

    def __iter__(self) -> Iterator[_ring.Packet]:
        """Packets as they arrive; blocks when the ring is empty.

        Ends when the capture is closed (also from another thread) or after
        breakloop().
        """
        return self._ring

    def next(self, timeout: Optional[float] = None) -> Optional[_ring.Packet]:
        """The next packet, or None if `timeout` seconds pass first."""
        return self._ring.next(timeout)

    def batches(self) -> Any:
        """One Batch per ring block (the rest of the current block first).

        Iterate it with `for` or with `async for`.
        """
        return self._ring.batches(budget_us=self.budget_us)

    def next_batch(self, timeout: Optional[float] = None) -> Optional[_ring.Batch]:
        return self._ring.next_batch(timeout)

    # -- async iteration (see zcap.aio) ---------------------------------------

    def __aiter__(self) -> Any:
        """`async for pkt in cap`: awaits only when the ring is empty.

        Every `budget_us` microseconds of work it yields to the event loop
        once, so other tasks stay responsive (on asyncio's loops also when
        the loop's earliest timer falls due).  Ends when the capture closes
        (also from another task or thread) or after breakloop().
        """
        return self._ring.aiter(budget_us=self.budget_us)

    async def anext(self, timeout: Optional[float] = None) -> Optional[_ring.Packet]:
        """The next packet, or None after `timeout` seconds or when the capture closes."""
        return await _aio.anext(self._ring, timeout)

    async def __aenter__(self) -> Capture:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def breakloop(self) -> None:
        """Make a blocked read return (next() gives None, iteration ends)."""
        self._ring.breakloop()

    def stop(self) -> None:
        """Stop capturing without losing a packet the kernel accepted.  Idempotent.

        Safe from another thread or a signal handler.  The kernel stops
        accepting packets at once (the socket is unbound, an RCU barrier; in a
        fanout group, where the kernel refuses that, a reject-all filter).  The
        iteration - for, next(), batches(), async for, Ring.consume() - goes on
        delivering every packet accepted before, with no time limit, and then
        ends: StopIteration / StopAsyncIteration, next() returns None and
        `drained` turns True.  A partly filled block the kernel fails to hand
        over within two block timeouts and a second (its block timer runs
        late only on a very loaded machine) is counted in stats().abandoned.
        """
        self._ring.stop()

    @property
    def stopped(self) -> bool:
        """stop() was called (the capture may still be delivering what came before)."""
        return self._ring.stopped

    @property
    def drained(self) -> bool:
        """After stop(): every packet accepted before it has been delivered or counted."""
        return self._ring.drained

    # -- state --------------------------------------------------------------

    @property
    def ring(self) -> _ring.Ring:
        """The Cython ring, for consumers that cimport zcap._ring."""
        return self._ring

    def stats(self) -> Stats:
        return Stats(mode=self.mode, filter_location=self.filter_location, **self._ring.stats())

    def close(self) -> None:
        """Release the socket, the ring and promiscuous mode.  Idempotent.

        Packets you still hold keep their bytes.  Packets the kernel accepted
        that were not read are counted in stats().abandoned; call stop() and
        finish the iteration first to read them all.
        """
        self._ring.close()

    def __repr__(self) -> str:
        return self._describe(f"{self.mode} {self.linktype.name} "
                              f"{self.geometry.block_count}x{self.geometry.block_size}")
