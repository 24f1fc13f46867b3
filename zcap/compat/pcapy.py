"""pcapy / pcapy-ng's classic API on zcap's ring: change one import.

    import zcap.compat.pcapy as pcapy          # instead of: import pcapy

    cap = pcapy.open_live("eth0", 65535, True, 100)
    cap.setfilter("tcp port 80")
    hdr, data = cap.next()                     # (Pkthdr, bytes); (None, b'') on timeout / EOF
    cap.loop(-1, lambda hdr, data: ...)        # an exception in the callback propagates

Same names, argument orders, return types and exceptions as pcapy-ng
(module functions, Reader, Dumper, Pkthdr, BPFProgram, DLT_* / PCAP_D_* /
PACKET_FANOUT_* constants, PcapError / BPFError, next_batch, set_fanout).
Fixed on the way: next() honours to_ms and Ctrl-C on an idle link,
timestamps keep their nanoseconds (Pkthdr.getts_ns()), callbacks may raise.
docs/compat.md lists every difference.  zcap-specific: open_live() and
create() take `netns=` and any zcap.open_live() option as keywords;
$ZCAP_NETNS names a namespace for code that cannot pass one.

This module is a client of zcap's public API (zcap.open_live, open_offline,
open_writer, open_inject, compile_filter, zcap.interfaces).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from typing import Any, Callable, Optional

import zcap
from zcap.compat import _fast, capture_devices, ipv4_network, netns_from_env
from zcap.compat._fast import Pkthdr
from zcap.linux import MAX_SNAPLEN, PACKET_FANOUT, SOL_PACKET

__all__ = [
    "open_live", "open_offline", "create", "findalldevs", "lookupdev", "compile",
    "Reader", "Dumper", "Pkthdr", "BPFProgram", "PcapError", "BPFError",
]


class PcapError(Exception):
    """pcapy.PcapError: what libpcap reported (here: what zcap reported)."""


class BPFError(Exception):
    """pcapy.BPFError: a BPFProgram could not be built."""


# Direct from pcap's net/bpf.h, as pcapy-ng exports them.
DLT_NULL = 0
DLT_EN10MB = 1
DLT_IEEE802 = 6
DLT_ARCNET = 7
DLT_SLIP = 8
DLT_PPP = 9
DLT_FDDI = 10
DLT_ATM_RFC1483 = 11
DLT_RAW = 12
DLT_PPP_SERIAL = 50
DLT_PPP_ETHER = 51
DLT_C_HDLC = 104
DLT_IEEE802_11 = 105
DLT_LOOP = 108
DLT_LINUX_SLL = 113
DLT_LTALK = 114
DLT_LINUX_SLL2 = 276        # not in pcapy-ng; what zcap gives for cooked="sll2"

PCAP_D_INOUT = 0
PCAP_D_IN = 1
PCAP_D_OUT = 2

# linux/if_packet.h
PACKET_FANOUT_HASH = 0
PACKET_FANOUT_LB = 1
PACKET_FANOUT_CPU = 2
PACKET_FANOUT_ROLLOVER = 3
PACKET_FANOUT_RND = 4

# libpcap's pcap_activate()/pcap_set_*() codes
PCAP_ERROR_ACTIVATED = -4
_DEFAULT_BATCH = 256
_EOF = (None, b"")
# pcap_datalink() gives DLT_ values; zcap's linktypes are LINKTYPE_ values,
# which differ only for raw IP.
_LINKTYPE_TO_DLT = {101: DLT_RAW}
_DLT_TO_LINKTYPE = {DLT_RAW: 101}


def _dlt(linktype: Optional[int]) -> int:
    if linktype is None:
        return DLT_EN10MB
    return _LINKTYPE_TO_DLT.get(int(linktype), int(linktype))


def _error(exc: BaseException) -> PcapError:
    err = PcapError(str(exc))
    err.__cause__ = exc
    return err


def _snaplen(snaplen: int) -> int:
    # libpcap: a snaplen out of range means "the maximum"
    return MAX_SNAPLEN if snaplen <= 0 or snaplen > MAX_SNAPLEN else snaplen


def _dotted(value: int) -> str:
    return socket.inet_ntoa(value.to_bytes(4, "big"))


def join_fanout(fd: int, group_id: int, fanout_type: int) -> None:
    """PACKET_FANOUT on a capture's socket, as pcapy-ng does it.

    TODO: switch to zcap's public fanout API (open_live(..., fanout=zcap.Fanout(...)))
    once it is merged; this setsockopt is the only place that knows the option.
    """
    arg = (group_id & 0xFFFF) | ((fanout_type & 0xFFFF) << 16)
    sock = socket.socket(fileno=fd)
    try:
        sock.setsockopt(SOL_PACKET, PACKET_FANOUT, struct.pack("I", arg))
    except OSError as exc:
        reason = os.strerror(exc.errno or errno.EINVAL)
        raise PcapError(f"set_fanout({group_id}, {fanout_type}): {reason}") from exc
    finally:
        sock.detach()


class Reader:
    """pcapy's Reader: a live capture, a savefile, or a handle from create() not yet activated."""

    def __init__(self) -> None:
        self._src: Any = None             # zcap Capture / OfflineCapture while open
        self._live = False
        self._activated = False
        self._closed = False
        self._device = ""                     # the interface (live captures)
        self._netns: Any = None
        self._options: dict[str, Any] = {}
        self._snaplen: Optional[int] = None   # None: zcap's default (262144, or what a block holds)
        self._promisc = False
        self._to_ms = 0
        self._wait: Optional[float] = None   # next()'s timeout in seconds (None: block)
        self._nonblock = False
        self._direction = PCAP_D_INOUT
        self._offline_filter: Any = None     # BPFProgram run here on savefile packets
        self._accept: Optional[Callable[[Any], bool]] = None
        self._pending: Any = None            # (batch, index): a batch dispatch()/next_batch() began
        self._net = 0
        self._mask = 0
        self._injector: Any = None
        self._rfmon = False
        self._reader: Any = None             # _fast.RingReader of a live capture

    # -- opening ------------------------------------------------------------

    @classmethod
    def _created(cls, device: str, netns: Any, options: dict[str, Any]) -> Reader:
        self = cls()
        self._device = device
        self._netns = netns_from_env(netns)
        self._options = options
        return self

    def _activate(self) -> None:
        options = dict(self._options)
        if self._device == "any":
            options.setdefault("cooked", "sll")     # libpcap's default for "any": DLT_LINUX_SLL
        if self._to_ms > 0:
            options.setdefault("timeout_ms", min(self._to_ms, 3_600_000))
        if self._rfmon:
            raise PcapError(f"{self._device}: monitor mode (rfmon) is not supported by zcap")
        try:
            self._src = zcap.open_live(self._device, snaplen=self._snaplen, promisc=self._promisc,
                                       netns=self._netns, **options)
        except (zcap.ZcapError, OSError, ValueError) as exc:
            raise _error(exc) from exc
        self._live = True
        self._activated = True
        self._wait = (0.0 if self._nonblock else
                      self._to_ms / 1000 if self._to_ms > 0 else None)
        self._reader = _fast.RingReader(self._src.ring, self._wait_ms())
        if self._device != "any":
            try:
                network = ipv4_network(self._device, self._netns)
            except (zcap.ZcapError, OSError):
                network = None
            if network is not None:
                self._net = int(network.network_address)
                self._mask = int(network.netmask)
        self._update_accept()           # a direction set before activate(); refreshes next()

    @classmethod
    def _offline(cls, path: str) -> Reader:
        self = cls()
        try:
            self._src = zcap.open_offline(path)
        except (zcap.ZcapError, OSError) as exc:
            raise _error(exc) from exc
        self._activated = True
        return self

    def _refresh_fast(self) -> None:
        """Serve next() from C (an instance attribute shadowing the method) while it
        needs no bookkeeping: open, no partly read batch, no per-packet check."""
        if self._src is not None and self._pending is None and self._accept is None:
            if self._live:
                self._reader.timeout_ms = self._wait_ms()
                self.__dict__["next"] = self._reader
            else:
                self.__dict__["next"] = _fast.PcapyNext(self._src.next, None)
        else:
            self.__dict__.pop("next", None)

    def _wait_ms(self) -> int:
        """next()'s wait for Ring.consume(): -1 forever, 0 non-blocking, else to_ms."""
        if self._nonblock:
            return 0
        return min(self._to_ms, 3_600_000) if self._to_ms > 0 else -1

    def _require(self) -> Any:
        if self._closed:
            raise ValueError("pcap is closed")
        if not self._activated:
            raise PcapError("the capture handle has not been activated: call activate() first")
        return self._src

    # -- create() handles: configure, then activate --------------------------

    def _set(self, attr: str, value: Any) -> int:
        if self._closed:
            raise ValueError("pcap is closed")
        if self._activated:
            return PCAP_ERROR_ACTIVATED
        setattr(self, attr, value)
        return 0

    def set_snaplen(self, snaplen: int) -> int:
        return self._set("_snaplen", _snaplen(int(snaplen)))

    def set_promisc(self, promisc: int) -> int:
        return self._set("_promisc", bool(promisc))

    def set_timeout(self, to_ms: int) -> int:
        return self._set("_to_ms", int(to_ms))

    def set_buffer_size(self, buffer_size: int) -> int:
        """The ring's size: block_count blocks of 1 MiB (at least 2) hold `buffer_size` bytes."""
        if self._closed:
            raise ValueError("pcap is closed")
        if self._activated:
            return PCAP_ERROR_ACTIVATED
        self._options["block_count"] = max(2, -(-int(buffer_size) // (1 << 20)))
        return 0

    def set_rfmon(self, rfmon: int) -> int:
        return self._set("_rfmon", bool(rfmon))

    def activate(self) -> int:
        """Open the capture; 0 on success.  Failures raise PcapError (pcapy returns a code)."""
        if self._closed:
            raise ValueError("pcap is closed")
        if self._activated:
            return PCAP_ERROR_ACTIVATED
        self._activate()
        return 0

    # -- reading ------------------------------------------------------------

    def next(self) -> tuple[Optional[Pkthdr], bytes]:
        """(Pkthdr, bytes) for the next packet; (None, b'') after to_ms on a live
        capture (or at once in non-blocking mode) and at the end of a savefile."""
        src = self._src
        if src is None or self._pending is not None or self._accept is not None:
            return self._next_slow()
        pkt = src.next(self._wait)
        if pkt is None:
            return _EOF
        return _fast.pcapy_pair(pkt)

    def _next_slow(self) -> tuple[Optional[Pkthdr], bytes]:
        src = self._require()
        accept = self._accept
        while True:
            pkt = self._take_pending()
            if pkt is None:
                pkt = src.next(self._wait)
                if pkt is None:
                    return _EOF
            if accept is None or accept(pkt):
                return _fast.pcapy_pair(pkt)

    def _take_pending(self) -> Any:
        pending = self._pending
        if pending is None:
            return None
        batch, i = pending
        pkt = batch[i]
        if i + 1 < len(batch):
            self._pending = (batch, i + 1)
        else:
            self._pending = None
            self._refresh_fast()
        return pkt

    def _drain_pending(self, cnt: int, callback: Callable) -> int:
        n = 0
        accept = self._accept
        while self._pending is not None and (cnt <= 0 or n < cnt):
            pkt = self._take_pending()
            if accept is None or accept(pkt):
                callback(*_fast.pcapy_pair(pkt))
                n += 1
        return n

    def loop(self, cnt: int, callback: Callable) -> None:
        """callback(Pkthdr, bytes) for `cnt` packets (cnt <= 0: until the end of
        a savefile, close() or Ctrl-C).  An exception in the callback propagates."""
        src = self._require()
        cnt = int(cnt)
        n = self._drain_pending(cnt, callback)
        if cnt <= 0 or n < cnt:
            rest = cnt - n if cnt > 0 else 0
            if self._live and self._accept is None:
                self._reader.pcapy_loop(rest, callback)
            else:
                _fast.pcapy_loop(src, rest, callback, self._accept)
        return None

    def dispatch(self, cnt: int, callback: Callable) -> int:
        """callback(Pkthdr, bytes) for up to `cnt` packets of one ring block (cnt <= 0: all
        of it); waits at most to_ms for one.  On a savefile cnt <= 0 reads to the end.
        Returns the number of packets processed."""
        src = self._require()
        cnt = int(cnt)
        if not self._live and cnt <= 0:
            n = self._drain_pending(0, callback)
            return n + _fast.pcapy_loop(src, 0, callback, self._accept)
        if self._pending is not None:
            return self._drain_pending(cnt, callback)
        batch = src.next_batch(self._wait)
        if batch is None or not len(batch):
            return 0
        self._pending = (batch, 0)
        self._refresh_fast()
        return self._drain_pending(cnt, callback)

    def next_batch(self, max_n: int) -> tuple[bytes, bytes]:
        """Up to max_n packets of one ring block (max_n <= 0: 256) as pcapy-ng gives them:
        (bytes, meta), meta being 16-byte records of native u32 (sec, usec, offset, caplen)
        slicing the packets out of the bytes.  Empty meta: timeout or end of file."""
        src = self._require()
        max_n = int(max_n)
        if max_n <= 0:
            max_n = _DEFAULT_BATCH
        if self._pending is not None:
            batch, start = self._pending
        elif self._live and self._accept is None:
            return self._reader.pcapy_batch(max_n)
        else:
            batch = src.next_batch(self._wait)
            if batch is None or not len(batch):
                return b"", b""
            start = 0
        stop = min(len(batch), start + max_n)
        self._pending = (batch, stop) if stop < len(batch) else None
        self._refresh_fast()
        if self._accept is None:
            return _fast.pcapy_batch(batch, start, stop)
        accept = self._accept
        return _fast.pcapy_pack([p for p in (batch[i] for i in range(start, stop)) if accept(p)])

    # -- settings -----------------------------------------------------------

    def _update_accept(self) -> None:
        checks: list[Callable[[Any], bool]] = []
        if self._offline_filter is not None:
            match = self._offline_filter.match
            checks.append(lambda p: match(p, p.wirelen) != 0)
        if self._live and self._direction != PCAP_D_INOUT:
            want = zcap.Direction.IN if self._direction == PCAP_D_IN else zcap.Direction.OUT
            checks.append(lambda p: p.direction == want)
        if not checks:
            self._accept = None
        elif len(checks) == 1:
            self._accept = checks[0]
        else:
            self._accept = lambda p: all(c(p) for c in checks)
        self._refresh_fast()

    def setfilter(self, filter: str) -> None:
        """Compile and apply a tcpdump expression (in the kernel for a live capture)."""
        src = self._require()
        try:
            if self._live:
                src.set_filter(filter)
            else:
                self._offline_filter = zcap.compile_filter(
                    filter, linktype=src.linktype or 1, snaplen=src.snaplen or MAX_SNAPLEN,
                    netmask=self._mask or 0xFFFFFFFF)
                self._update_accept()
        except (zcap.ZcapError, OSError) as exc:
            raise _error(exc) from exc

    def setdirection(self, direction: int) -> None:
        """PCAP_D_IN, PCAP_D_OUT or PCAP_D_INOUT (checked per packet, as libpcap does on Linux)."""
        if self._closed:
            raise ValueError("pcap is closed")
        if direction not in (PCAP_D_INOUT, PCAP_D_IN, PCAP_D_OUT):
            raise PcapError("Failed setting direction")
        if self._activated and not self._live:
            raise PcapError("Setting direction is not supported on savefiles")
        self._direction = direction
        self._update_accept()

    def setnonblock(self, state: int) -> None:
        if self._closed:
            raise ValueError("pcap is closed")
        self._nonblock = bool(state)
        if self._live:
            self._wait = (0.0 if self._nonblock else
                          self._to_ms / 1000 if self._to_ms > 0 else None)
        self._refresh_fast()

    def getnonblock(self) -> int:
        if self._closed:
            raise ValueError("pcap is closed")
        return int(self._nonblock and self._live)

    def datalink(self) -> int:
        return _dlt(self._require().linktype)

    def getnet(self) -> str:
        self._require()
        return _dotted(self._net)

    def getmask(self) -> str:
        self._require()
        return _dotted(self._mask)

    def stats(self) -> tuple[int, int, int]:
        """(received, dropped, dropped by the interface) as pcap_stats() counts them."""
        src = self._require()
        if not self._live:
            raise PcapError("Statistics aren't available from savefiles")
        s = src.stats()
        return (s.received & 0xFFFFFFFF, s.dropped & 0xFFFFFFFF, 0)

    def getfd(self) -> int:
        """The capture's socket (select/poll it); -1 for a savefile."""
        src = self._require()
        return src.fileno() if self._live else -1

    def set_fanout(self, group_id: int, fanout_type: int = PACKET_FANOUT_HASH) -> None:
        """Join PACKET_FANOUT group `group_id`: the kernel spreads the interface's packets
        over every capture in the group."""
        src = self._require()
        if not self._live:
            raise PcapError("no socket fd for this capture (PACKET_FANOUT needs a live "
                            "AF_PACKET capture, not an offline pcap)")
        join_fanout(src.fileno(), int(group_id), int(fanout_type))

    # -- writing ------------------------------------------------------------

    def dump_open(self, filename: str) -> Dumper:
        """A Dumper writing a pcap savefile of this capture's link type (nanosecond timestamps)."""
        src = self._require()
        try:
            writer = zcap.open_writer(filename, linktype=int(src.linktype or 1),
                                      snaplen=src.snaplen or MAX_SNAPLEN)
        except (zcap.ZcapError, OSError, ValueError) as exc:
            raise _error(exc) from exc
        return Dumper(writer)

    def sendpacket(self, data: bytes) -> None:
        """Send one frame on the capture's interface."""
        self._require()
        if not self._live:
            raise PcapError("Sending packets isn't supported on savefiles")
        try:
            if self._injector is None:
                self._injector = zcap.open_inject(self._device, netns=self._netns)
            self._injector.send(data)
        except (zcap.ZcapError, OSError, ValueError) as exc:
            raise _error(exc) from exc

    # -- lifetime -----------------------------------------------------------

    def close(self) -> None:
        """Close the capture; later calls raise ValueError.  Idempotent."""
        self._closed = True
        self._pending = None
        src, self._src = self._src, None
        self.__dict__.pop("next", None)
        injector, self._injector = self._injector, None
        if injector is not None:
            injector.close()
        if src is not None:
            src.close()

    def __enter__(self) -> Reader:
        if self._closed:
            raise ValueError("pcap is closed")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_src", None) is not None:
            self.close()

    @property
    def capture(self) -> Any:
        """zcap-specific: the zcap Capture (or OfflineCapture) underneath."""
        return self._require()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "live" if self._live else \
            "offline" if self._activated else "created"
        return f"<zcap.compat.pcapy.Reader {self._device or ''} {state}>"


class Dumper:
    """pcapy's Dumper: dump(hdr, data) appends a packet; close() flushes and closes."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer

    def dump(self, header: Pkthdr, data: bytes) -> None:
        if self._writer is None:
            raise PcapError("Dumper is already closed.")
        if not isinstance(header, Pkthdr):
            raise TypeError(f"dump() needs a Pkthdr, not {type(header).__name__}")
        view = memoryview(data)
        if header.caplen < len(view):
            view = view[:header.caplen]
        self._writer.write_raw(view, header.ts_ns, max(header.wirelen, len(view)))

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def __enter__(self) -> Dumper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_writer", None) is not None:
            self.close()


class BPFProgram:
    """pcapy's BPFProgram(expression, linktype=DLT_EN10MB): filter(data), get_bpf()."""

    def __init__(self, filter: str, linktype: int = DLT_EN10MB, *, _program: Any = None) -> None:
        if _program is not None:
            self.program = _program
            return
        try:
            # as pcap_compile_nopcap(65536, linktype, ..., optimize=0, netmask=0)
            self.program = zcap.compile_filter(filter, linktype=_DLT_TO_LINKTYPE.get(linktype, linktype),
                                               snaplen=1 << 16, optimize=False, netmask=0)
        except (zcap.ZcapError, ValueError, TypeError) as exc:
            raise BPFError(f"Couldn't compile BPF program: {exc}") from exc

    def filter(self, packet: bytes) -> int:
        """The program's result on the packet (0: no match)."""
        return self.program.match(packet)

    def get_bpf(self) -> list[tuple[int, int, int, int]]:
        """The instructions as (code, jt, jf, k) tuples, as `tcpdump -ddd` prints them."""
        return [tuple(insn) for insn in self.program.instructions]

    def __repr__(self) -> str:
        return f"<zcap.compat.pcapy.BPFProgram {len(self.program)} instructions>"


# -- module functions --------------------------------------------------------

def open_live(device: str, snaplen: int, promisc: int, to_ms: int, *, netns: Any = None,
              **options: Any) -> Reader:
    """A live capture on `device` ("any": all interfaces).

    to_ms bounds next()'s wait (0: wait forever) and is the ring's block
    timeout.  zcap-specific keywords: netns (else $ZCAP_NETNS), and any
    zcap.open_live() option (block_size, block_count, immediate, ...).
    """
    reader = Reader._created(device, netns, options)
    reader._snaplen = _snaplen(int(snaplen))
    reader._promisc = bool(promisc)
    reader._to_ms = int(to_ms)
    reader._activate()
    return reader


def create(device: str, *, netns: Any = None, **options: Any) -> Reader:
    """A handle to configure with set_snaplen()/set_promisc()/set_timeout()/
    set_buffer_size() and open with activate()."""
    if not isinstance(device, str):
        raise TypeError(f"device must be a str, not {type(device).__name__}")
    return Reader._created(device, netns, options)


def open_offline(filename: str) -> Reader:
    """Read a pcap or pcapng savefile."""
    return Reader._offline(filename)


def findalldevs(*, netns: Any = None) -> list[str]:
    """The interfaces one can capture on, and "any"."""
    try:
        names = [i.name for i in capture_devices(netns)]
    except OSError as exc:
        raise _error(exc) from exc
    return names


def lookupdev(*, netns: Any = None) -> str:
    """The first interface that is up and not a loopback (never "any")."""
    try:
        found = [i.name for i in capture_devices(netns)
                 if i.up and not i.loopback and i.name != "any"]
    except OSError as exc:
        raise _error(exc) from exc
    if not found:
        raise PcapError("no suitable device found")
    return found[0]


def compile(linktype: int, snaplen: int, filter: str, optimize: int, netmask: int) -> BPFProgram:
    """Compile `filter` for link type `linktype` (a DLT_ value) as pcap_compile() does."""
    try:
        program = zcap.compile_filter(filter, linktype=_DLT_TO_LINKTYPE.get(linktype, linktype),
                                      snaplen=snaplen, optimize=bool(optimize),
                                      netmask=netmask & 0xFFFFFFFF)
    except (zcap.ZcapError, ValueError, TypeError) as exc:
        raise _error(exc) from exc
    return BPFProgram("", _program=program)
