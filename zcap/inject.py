"""open_inject() and Injector: zero-copy transmit through a PACKET_TX_RING.

    with zcap.inject.open_inject("eth0") as inj:
        inj.send(frame)                           # any buffer: bytes, memoryview, a Packet
        inj.send_many(frames)                     # one send() per batch of frames
        inj.send_sequence(template, 1_000_000, seq_offset=42, pps=100_000)   # C speed, GIL released
        inj.send_packets(zcap.offline.open_offline("trace.pcap"), respect_timestamps=True)
        print(inj.stats())

Frames are written straight into a ring of TPACKET_V2 frames shared with the
kernel: each is copied once, from the caller's buffer into its ring frame,
and one send() hands a whole batch to the kernel, which reads the frames
from the ring (no copy through a socket buffer, no system call per frame).
The ownership protocol is in zcap/_tx.pyx (TxRing).

The socket is bound with protocol 0, so it receives nothing.  It only sends
Ethernet frames (interfaces of type Ethernet or loopback), each at least the
14-byte header and at most the interface's MTU + 14 bytes (+ 4 when its
ethertype is 802.1Q), checked before anything is written: a frame that does
not fit raises ValueError naming the sizes.

Refused frames.  The kernel marks a frame TP_STATUS_WRONG_FORMAT when it
refuses it, then stops at it on every send().  That cannot happen to a frame
zcap checked unless the interface changed under the injector (its MTU was
lowered).  zcap then drops that frame, counts it in stats().errors, keeps the
frames queued behind it (they are sent) and raises FrameRejectedError; the
injector goes on with the new MTU.

An injector is for one thread at a time.  close() from another thread stops
a running send_sequence()/send_packets() within ~50 ms.
"""

from __future__ import annotations

import errno
import os
from dataclasses import asdict, dataclass
from typing import Any, Iterable, NamedTuple, Optional

from zcap import _tx, errors
from zcap import netns as _netns
from zcap._handle import RingHandle
from zcap.interfaces import lookup_interface
from zcap.linux import ARPHRD_ETHER, ARPHRD_LOOPBACK, IFF_UP, mem_available

__all__ = ["open_inject", "Injector", "TxGeometry", "TxStats", "SendResult",
           "DEFAULT_RING_BYTES", "TX_HEADER"]

PAGE_SIZE = os.sysconf("SC_PAGESIZE")
TX_HEADER = _tx.TX_DATA_OFFSET       # bytes of a ring frame before its data (the tpacket2_hdr)
ETH_HLEN = _tx.ETH_HLEN
VLAN_HLEN = _tx.VLAN_HLEN
TPACKET_ALIGNMENT = 16

# Geometry defaults.  A frame holds the largest frame the interface sends,
# MTU + Ethernet header + an 802.1Q tag, after the 32-byte frame header.  Up
# to a page, frames are a power of two (1500 MTU: 2048 bytes, two per page),
# so they never straddle a page and blocks are single pages: order-0
# allocations the kernel always finds.  Larger (jumbo) frames are 16-aligned
# and packed into blocks of a power-of-two size of at least four frames
# (9000 MTU: 9056-byte frames, seven per 64 KiB block, 3% waste); the kernel
# allocates blocks in power-of-two pages, so other sizes would waste memory.
# The ring is ~4 MiB (2048 frames at 1500 MTU): enough for a device to drain
# while the next batch is written; pacing never fills it.
DEFAULT_RING_BYTES = 4 << 20
MIN_BLOCKS = 2
MAX_FRAME_SIZE = 1 << 24
MAX_FRAME_COUNT = 1 << 20
DEFAULT_TIMEOUT = 5.0           # seconds send()/send_many()/flush()/close() wait for the device
DEFAULT_BATCH = 64              # frames per send() when not paced (bench/tx_rate.py)


def _align(n: int) -> int:
    return (n + TPACKET_ALIGNMENT - 1) // TPACKET_ALIGNMENT * TPACKET_ALIGNMENT


@dataclass(frozen=True)
class TxGeometry:
    """A transmit ring layout (see the defaults above)."""

    frame_size: int       #: bytes per ring frame, header included
    frame_count: int      #: frames in the ring (whole blocks)
    block_size: int       #: bytes per kernel block: a power-of-two number of pages

    @property
    def frames_per_block(self) -> int:
        return self.block_size // self.frame_size

    @property
    def ring_bytes(self) -> int:
        return self.block_size * (self.frame_count // self.frames_per_block)

    @staticmethod
    def check_args(frame_size: object, frame_count: object) -> None:
        """Type and range checks that need no interface: before any system call."""
        for name, value, top in (("frame_size", frame_size, MAX_FRAME_SIZE),
                                 ("frame_count", frame_count, MAX_FRAME_COUNT)):
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int or None, not {type(value).__name__}")
            if not 1 <= value <= top:
                raise ValueError(f"{name} must be between 1 and {top}, not {value}")
        smallest = _align(TX_HEADER + ETH_HLEN)
        if isinstance(frame_size, int) and (frame_size < smallest or frame_size % TPACKET_ALIGNMENT):
            raise ValueError(f"frame_size must be a multiple of {TPACKET_ALIGNMENT} and at least "
                             f"{smallest} (the {TX_HEADER}-byte frame header + an Ethernet header), "
                             f"not {frame_size}; e.g. {max(smallest, _align(frame_size))}")

    @classmethod
    def for_mtu(cls, mtu: int, *, frame_size: Optional[int] = None,
                frame_count: Optional[int] = None) -> TxGeometry:
        """The layout for an interface's MTU; frame_count is rounded up to whole blocks."""
        cls.check_args(frame_size, frame_count)
        if frame_size is None:
            need = _align(TX_HEADER + mtu + ETH_HLEN + VLAN_HLEN)
            frame_size = 1 << (need - 1).bit_length() if need <= PAGE_SIZE else need
        if frame_size <= PAGE_SIZE:
            block_size = PAGE_SIZE
        else:
            block_size = 1 << (4 * frame_size - 1).bit_length()
        per_block = block_size // frame_size
        if frame_count is None:
            frame_count = max(MIN_BLOCKS, DEFAULT_RING_BYTES // block_size) * per_block
        else:
            frame_count = -(-frame_count // per_block) * per_block
        return cls(frame_size, frame_count, block_size)


@dataclass(frozen=True)
class TxStats:
    """Totals since the injector was opened."""

    queued: int            #: frames written into the ring and handed to the kernel
    sent: int              #: frames the kernel gave back as sent (TP_STATUS_AVAILABLE again)
    errors: int            #: frames the kernel refused (TP_STATUS_WRONG_FORMAT) and zcap dropped
    in_flight: int         #: queued frames not yet given back
    unsent: int            #: frames still queued when the injector closed (never sent)
    bytes_queued: int      #: bytes of the queued frames
    ring_full_waits: int   #: times a frame was wanted while every ring frame was in flight
    send_calls: int        #: send() system calls (one per batch)
    retries: int           #: send() calls the device pushed back on (ENOBUFS/EAGAIN); retried

    def as_dict(self) -> dict:
        return asdict(self)


class SendResult(NamedTuple):
    """What one send_sequence()/send_packets() call handed to the kernel."""

    frames: int
    bytes: int
    seconds: float          #: from the call's start until the kernel took the last frame

    @property
    def pps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def mbps(self) -> float:
        return self.bytes * 8 / self.seconds / 1e6 if self.seconds > 0 else 0.0


def open_inject(interface: str, *, netns: _netns.NetnsSpec = None, frame_size: Optional[int] = None,
                frame_count: Optional[int] = None, qdisc_bypass: bool = True) -> Injector:
    """Open a transmit ring on `interface`.

    netns         network namespace (name in /run/netns, path or fd) of the interface
    frame_size    bytes per ring frame including its 32-byte header (default: from
                  the MTU, see TxGeometry); smaller frames pack a ring of small
                  packets tighter, and limit the largest frame to frame_size - 32
    frame_count   frames in the ring, rounded up to whole blocks (default: ~4 MiB)
    qdisc_bypass  PACKET_QDISC_BYPASS (default on): frames go straight to the
                  driver, skipping the interface's queueing discipline - a
                  shorter path per frame, and frames leave in ring order; the
                  cost: no tc shaping or policing applies to them, and packet
                  taps on the sending interface (a capture on it) do not see
                  them.  The driver's own back-pressure still holds: a frame
                  it cannot take stays queued and is retried.
    """
    if not isinstance(interface, str):
        raise TypeError(f"interface must be a str, not {type(interface).__name__}")
    if interface == "any":
        raise ValueError("cannot send on 'any': name the interface to send on")
    TxGeometry.check_args(frame_size, frame_count)
    sock = _netns.packet_socket(netns, purpose="sending raw frames")
    try:
        try:
            iface = lookup_interface(sock.fileno(), interface, netns)
        except errors.InterfaceNotFoundError as exc:
            # capture's message also suggests 'any', which cannot send
            raise errors.InterfaceNotFoundError(
                str(exc).replace(", or use 'any' for all interfaces", "")) from None
        if not iface.flags & IFF_UP:
            raise errors.InterfaceDownError(
                errno.ENETDOWN,
                f"interface {interface!r} is down; bring it up with `ip link set {interface} up`")
        if iface.hatype not in (ARPHRD_ETHER, ARPHRD_LOOPBACK):
            raise ValueError(f"{interface!r} is not an Ethernet interface (ARPHRD type {iface.hatype}); "
                             f"zcap.inject sends Ethernet frames only")
        geometry = TxGeometry.for_mtu(iface.mtu, frame_size=frame_size, frame_count=frame_count)
        available = mem_available()
        if available is not None and geometry.ring_bytes > available:
            raise errors.RingAllocationError(
                f"a {geometry.ring_bytes}-byte transmit ring is more than the {available} bytes of "
                f"memory available; use a smaller frame_count")
        fd = sock.detach()
    except BaseException:
        sock.close()
        raise
    # From here on the ring owns the fd and closes it on any failure.
    ring = _tx.TxRing(fd, ifname=interface, ifindex=iface.index, mtu=iface.mtu,
                      frame_size=geometry.frame_size, frame_count=geometry.frame_count,
                      block_size=geometry.block_size, qdisc_bypass=qdisc_bypass, batch=DEFAULT_BATCH)
    return Injector(ring, interface=interface, ifindex=iface.index, netns=netns, geometry=geometry)


class Injector(RingHandle):
    """A transmit ring on one interface.  See the module docstring."""

    def __init__(self, ring: _tx.TxRing, *, interface: str, ifindex: int, netns: _netns.NetnsSpec,
                 geometry: TxGeometry) -> None:
        self._ring = ring
        self.interface = interface
        self.ifindex = ifindex
        self.netns = netns
        self.geometry = geometry

    # -- sending ------------------------------------------------------------

    def send(self, frame: Any, *, flush: bool = True, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Send one frame from any buffer (bytes, memoryview, a zcap Packet, ...).

        Its bytes are copied once, from the buffer into a ring frame.  With
        flush=False it only queues the frame: it leaves with the next send(),
        flush(), or when a batch is full.  Waits at most `timeout` seconds for
        a free ring frame (TransmitTimeoutError).
        """
        self._ring.put(frame, flush, timeout)

    def send_many(self, frames: Iterable[Any], *, timeout: float = DEFAULT_TIMEOUT) -> int:
        """Send frames from an iterable of buffers; returns how many.

        Frames are written into every free ring frame and handed over with
        one send() per batch (at most `batch` frames); when the ring is full
        it waits for the device to give frames back.
        """
        return self._ring.put_many(frames, timeout)

    def flush(self, *, wait: bool = False, timeout: float = DEFAULT_TIMEOUT) -> int:
        """Hand every queued frame to the kernel; wait=True: until all were sent.

        Returns the frames still in flight (0 after a complete wait).
        """
        return self._ring.flush(wait, timeout)

    def send_sequence(self, template: Any, count: int, *, seq_offset: int, first_seq: int = 0,
                      pps: float = 0.0, mbps: float = 0.0, max_seconds: float = 60.0) -> SendResult:
        """Send `count` copies of `template` numbered first_seq, first_seq + 1, ...

        Each carries its number as a big-endian u64 at `seq_offset`.  Runs in C
        with the GIL released.  pps or mbps (frame bytes, without preamble
        or FCS) paces the frames on the monotonic clock: frame k leaves at
        start + k / pps (or when the bytes before it take at mbps), however
        late the previous one was; 0 sends as fast as possible.  Stops after
        max_seconds: the result then has fewer frames.
        """
        return SendResult(*self._ring.send_sequence(template, seq_offset, first_seq, count,
                                                    pps, mbps, max_seconds))

    def send_packets(self, packets: Iterable[Any], *, pps: float = 0.0, mbps: float = 0.0,
                     respect_timestamps: bool = False, multiplier: float = 1.0,
                     max_seconds: float = 60.0) -> SendResult:
        """Replay packets: zcap Packets from a capture or open_offline(), or any buffers.

        Each is copied once, from its own memory into a ring frame: no Python
        object is made for its bytes.  Paced by pps, by mbps, or with
        respect_timestamps=True by the gaps between their .ts_ns divided by
        `multiplier` (2.0: twice as fast); otherwise as fast as possible.
        Stops after max_seconds (the result then has fewer frames).
        """
        return SendResult(*self._ring.send_packets(packets, pps, mbps, respect_timestamps,
                                                   multiplier, max_seconds))

    # -- state --------------------------------------------------------------

    @property
    def batch(self) -> int:
        """Frames written before a send() when not paced (default 64)."""
        return self._ring.batch

    @batch.setter
    def batch(self, value: int) -> None:
        if not isinstance(value, int) or not 1 <= value <= self.geometry.frame_count:
            raise ValueError(f"batch must be between 1 and {self.geometry.frame_count}, not {value!r}")
        self._ring.batch = value

    @property
    def max_frame(self) -> int:
        """The largest untagged frame (4 more with an 802.1Q tag)."""
        return self._ring.max_len

    @property
    def mtu(self) -> int:
        return self._ring.mtu

    @property
    def qdisc_bypass(self) -> bool:
        return self._ring.qdisc_bypass

    def stats(self) -> TxStats:
        return TxStats(**self._ring.stats())

    def close(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait (at most `timeout` s) for queued frames to leave, then release
        the ring and the socket.  Idempotent.  Frames that did not leave in
        time are counted in stats().unsent."""
        self._ring.close(timeout)

    def __repr__(self) -> str:
        g = self.geometry
        return self._describe(f"{g.frame_count}x{g.frame_size} max_frame={self.max_frame}")
