"""pypcap's API on zcap's ring: change one import.

    import zcap.compat.pcap as pcap            # instead of: import pcap

    pc = pcap.pcap(name="eth0", promisc=True, immediate=True, timestamp_in_ns=True)
    pc.setfilter("tcp port 80")
    for ts, buf in pc:                         # (timestamp, bytes), as pypcap
        ...

`pcap.pcap(name=None, snaplen=65535, promisc=True, timeout_ms=0,
immediate=False, rfmon=False, timestamp_in_ns=False, buffer_size=0)` opens
an interface, or a savefile when `name` is a file's path, as pypcap 1.3
does; its attributes (name, snaplen, dloff, filter, fd, precision,
timestamp_in_ns) and methods (iteration, dispatch, loop, readpkts,
setfilter, setdirection, setnonblock, getnonblock, stats, fileno,
datalink, sendpacket, geterr, close) keep pypcap's signatures and results,
as do findalldevs(), lookupdev(), lookupnet(), bpf and the DLT_* / PCAP_D_* /
PCAP_TSTAMP_PRECISION_* constants.  Errors are OSError, as in pypcap.
Timestamps have nanosecond precision (precision == PCAP_TSTAMP_PRECISION_NANO).
zcap-specific keywords: netns (else $ZCAP_NETNS) and any zcap.open_live()
option.  Differences: docs/compat.md.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Optional

import zcap
from zcap.compat import _fast, capture_devices, ipv4_network, netns_from_env
from zcap.linux import MAX_SNAPLEN

__version__ = "1.3.0"       # the pypcap API this module follows

__all__ = ["pcap", "bpf", "findalldevs", "lookupdev", "lookupnet", "ex_name"]

DLT_NULL = 0
DLT_EN10MB = 1
DLT_EN3MB = 2
DLT_AX25 = 3
DLT_PRONET = 4
DLT_CHAOS = 5
DLT_IEEE802 = 6
DLT_ARCNET = 7
DLT_SLIP = 8
DLT_PPP = 9
DLT_FDDI = 10
DLT_LINUX_SLL = 113
DLT_PFLOG = 117
DLT_PFSYNC = 18
if sys.platform.find("openbsd") != -1:
    DLT_LOOP = 12
    DLT_RAW = 14
else:
    DLT_LOOP = 108
    DLT_RAW = 12
DLT_LINUX_SLL2 = 276        # not in pypcap; zcap's cooked="sll2"

PCAP_D_INOUT = 0
PCAP_D_IN = 1
PCAP_D_OUT = 2

PCAP_TSTAMP_PRECISION_MICRO = 0
PCAP_TSTAMP_PRECISION_NANO = 1

dltoff = {DLT_NULL: 4, DLT_EN10MB: 14, DLT_IEEE802: 22, DLT_ARCNET: 6,
          DLT_SLIP: 16, DLT_PPP: 4, DLT_FDDI: 21, DLT_PFLOG: 48, DLT_PFSYNC: 4,
          DLT_LOOP: 4, DLT_RAW: 0, DLT_LINUX_SLL: 16, DLT_LINUX_SLL2: 20}

_LINKTYPE_TO_DLT = {101: DLT_RAW}
_DLT_TO_LINKTYPE = {DLT_RAW: 101}


def _oserror(exc: BaseException) -> OSError:
    err = OSError(str(exc))
    err.__cause__ = exc
    return err


def _dlt(linktype: Optional[int]) -> int:
    if linktype is None:
        return DLT_EN10MB
    return _LINKTYPE_TO_DLT.get(int(linktype), int(linktype))


class bpf:  # noqa: N801 - pypcap's name
    """bpf(filter, dlt=DLT_RAW): a compiled filter; filter(buf) -> bool."""

    def __init__(self, filter: Any, dlt: int = DLT_RAW) -> None:
        expr = filter.decode() if isinstance(filter, (bytes, bytearray)) else filter
        try:
            self.program = zcap.compile_filter(expr, linktype=_DLT_TO_LINKTYPE.get(dlt, dlt),
                                               snaplen=65535, optimize=True, netmask=0)
        except (zcap.ZcapError, ValueError, TypeError) as exc:
            raise OSError("bad filter") from exc

    def filter(self, buf: Any) -> bool:
        """Whether `buf` matches."""
        return self.program.match(buf) != 0


class pcap:  # noqa: N801 - pypcap's name
    """pcap(name=None, snaplen=65535, promisc=True, timeout_ms=0, immediate=False,
    rfmon=False, timestamp_in_ns=False, buffer_size=0) -> packet capture object

    name: an interface, a savefile's path, or None for the first interface
    that is up.  timeout_ms is the ring's block timeout (and how long
    dispatch() waits); immediate delivers each packet at once.
    """

    def __init__(self, name: Optional[str] = None, snaplen: int = 65535, promisc: bool = True,
                 timeout_ms: int = 0, immediate: bool = False, rfmon: bool = False,
                 timestamp_in_ns: bool = False, buffer_size: int = 0, *, netns: Any = None,
                 **options: Any) -> None:
        self._src: Any = None
        self._closed = False
        self._filter = ""
        self._error = ""
        self._nonblock = False
        self._direction = PCAP_D_INOUT
        self._accept: Optional[Callable[[Any], bool]] = None
        self._offline_filter: Any = None
        self._pending: Any = None
        self._injector: Any = None
        self._timestamp_in_ns = bool(timestamp_in_ns)
        self._netns = netns_from_env(netns)
        if not name:
            name = lookupdev(netns=self._netns)
        self._name = name
        self._timeout_ms = int(timeout_ms)
        self._live = not os.path.isfile(name)
        if rfmon:
            raise OSError(f"{name}: monitor mode (rfmon) is not supported by zcap")
        try:
            if not self._live:
                self._src = zcap.open_offline(name)
            else:
                if name == "any":
                    options.setdefault("cooked", "sll")      # libpcap's DLT_LINUX_SLL
                if self._timeout_ms > 0:
                    options.setdefault("timeout_ms", min(self._timeout_ms, 3_600_000))
                if buffer_size > 0:
                    options.setdefault("block_count", max(2, -(-int(buffer_size) // (1 << 20))))
                snap = MAX_SNAPLEN if snaplen <= 0 or snaplen > MAX_SNAPLEN else int(snaplen)
                self._src = zcap.open_live(name, snaplen=snap, promisc=bool(promisc),
                                           immediate=bool(immediate), netns=self._netns, **options)
        except (zcap.ZcapError, OSError, ValueError) as exc:
            raise _oserror(exc) from exc
        self._dloff = dltoff.get(_dlt(self._src.linktype), 0)
        self._reader: Any = _fast.RingReader(self._src.ring, -1) if self._live else None

    # -- attributes ---------------------------------------------------------

    @property
    def name(self) -> str:
        """Network interface or dumpfile name."""
        return self._name

    @property
    def snaplen(self) -> int:
        """Maximum number of bytes captured per packet."""
        return int(self._open().snaplen or MAX_SNAPLEN)

    @property
    def dloff(self) -> int:
        """Datalink offset (length of the layer-2 header)."""
        return self._dloff

    @property
    def filter(self) -> str:
        """The current filter expression."""
        return self._filter

    @property
    def fd(self) -> int:
        """The capture's socket (-1 for a savefile)."""
        return self.fileno()

    @property
    def precision(self) -> int:
        """PCAP_TSTAMP_PRECISION_NANO: zcap keeps nanoseconds."""
        return PCAP_TSTAMP_PRECISION_NANO

    @property
    def timestamp_in_ns(self) -> bool:
        """Whether timestamps are integer nanoseconds (else float seconds)."""
        return self._timestamp_in_ns

    @property
    def capture(self) -> Any:
        """zcap-specific: the zcap Capture (or OfflineCapture) underneath."""
        return self._open()

    def _open(self) -> Any:
        if self._src is None:
            raise OSError("the capture is closed")
        return self._src

    def _wait(self) -> Optional[float]:
        if self._nonblock:
            return 0.0
        return self._timeout_ms / 1000 if self._timeout_ms > 0 else None

    # -- settings -----------------------------------------------------------

    def fileno(self) -> int:
        src = self._open()
        return src.fileno() if self._live else -1

    def setfilter(self, value: str, optimize: int = 1) -> None:
        """Set a tcpdump expression as the filter (in the kernel for a live capture)."""
        src = self._open()
        try:
            if self._live:
                src.set_filter(value)
            else:
                self._offline_filter = zcap.compile_filter(
                    value, linktype=src.linktype or 1, snaplen=src.snaplen or MAX_SNAPLEN,
                    optimize=bool(optimize))
                self._update_accept()
        except (zcap.ZcapError, ValueError, TypeError) as exc:
            self._error = str(exc)
            raise _oserror(exc) from exc
        self._filter = value

    def _update_accept(self) -> None:
        checks: list[Callable[[Any], bool]] = []
        if self._offline_filter is not None:
            match = self._offline_filter.match
            checks.append(lambda p: match(p, p.wirelen) != 0)
        if self._direction != PCAP_D_INOUT:
            want = zcap.Direction.IN if self._direction == PCAP_D_IN else zcap.Direction.OUT
            checks.append(lambda p: p.direction == want)
        self._accept = (None if not checks else checks[0] if len(checks) == 1
                        else (lambda p: all(c(p) for c in checks)))

    def setdirection(self, direction: int) -> bool:
        """PCAP_D_IN, PCAP_D_OUT or PCAP_D_INOUT; False if it cannot be set."""
        self._open()
        if not self._live or direction not in (PCAP_D_INOUT, PCAP_D_IN, PCAP_D_OUT):
            return False
        self._direction = direction
        self._update_accept()
        return True

    def setnonblock(self, nonblock: bool = True) -> None:
        self._nonblock = bool(nonblock)

    def getnonblock(self) -> bool:
        self._open()
        return self._nonblock and self._live

    def datalink(self) -> int:
        """The DLT_ value of the packets."""
        return _dlt(self._open().linktype)

    def geterr(self) -> str:
        """The last error message."""
        return self._error

    def stats(self) -> tuple[int, int, int]:
        """(received, dropped, dropped by the interface)."""
        src = self._open()
        if not self._live:
            self._error = "Statistics aren't available from savefiles"
            raise OSError(self._error)
        s = src.stats()
        return (s.received & 0xFFFFFFFF, s.dropped & 0xFFFFFFFF, 0)

    # -- reading ------------------------------------------------------------

    def __iter__(self) -> Any:
        """(timestamp, bytes) pairs; ends at the end of a savefile or on close()."""
        self._open()
        if self._live and self._pending is None and self._accept is None:
            return _fast.PypcapRingIterator(self._reader, self._timestamp_in_ns)
        return _fast.PypcapIterator(self._packets(), self._timestamp_in_ns, self._accept)

    def __next__(self) -> tuple[Any, bytes]:
        src = self._open()
        while True:
            pkt = self._take_pending()
            if pkt is None:
                pkt = src.next(None)
                if pkt is None:
                    raise StopIteration
            if self._accept is None or self._accept(pkt):
                return _fast.pypcap_pair(pkt, self._timestamp_in_ns)

    def _packets(self) -> Any:
        src = self._open()
        if self._pending is None:
            return src
        return self._pending_then(src)

    def _pending_then(self, src: Any) -> Any:
        while self._pending is not None:
            yield self._take_pending()
        yield from src

    def _take_pending(self) -> Any:
        pending = self._pending
        if pending is None:
            return None
        batch, i = pending
        self._pending = (batch, i + 1) if i + 1 < len(batch) else None
        return batch[i]

    def dispatch(self, cnt: int, callback: Callable, *args: Any) -> int:
        """callback(timestamp, pkt, *args) for up to `cnt` packets of one ring block
        (cnt -1 or 0: all of it; on a savefile: up to its end).  Waits at most
        timeout_ms (forever if 0) for a block.  Returns the packets processed.
        An exception in the callback propagates at once."""
        src = self._open()
        cnt = int(cnt)
        if not self._live and cnt <= 0:
            return _fast.pypcap_loop(self._packets(), 0, callback, args, self._timestamp_in_ns,
                                     self._accept)
        if self._pending is None:
            batch = src.next_batch(self._wait())
            if batch is None or not len(batch):
                return 0
            self._pending = (batch, 0)
        n = 0
        accept, in_ns = self._accept, self._timestamp_in_ns
        while self._pending is not None and (cnt <= 0 or n < cnt):
            pkt = self._take_pending()
            if accept is None or accept(pkt):
                ts, data = _fast.pypcap_pair(pkt, in_ns)
                callback(ts, data, *args)
                n += 1
        return n

    def readpkts(self) -> list[tuple[Any, bytes]]:
        """The (timestamp, bytes) pairs of one ring block."""
        pkts: list[tuple[Any, bytes]] = []
        self.dispatch(-1, lambda ts, pkt: pkts.append((ts, pkt)))
        return pkts

    def loop(self, cnt: int, callback: Callable, *args: Any) -> None:
        """callback(timestamp, pkt, *args) for `cnt` packets (0 or -1: until the end of
        a savefile, close() or an exception such as KeyboardInterrupt)."""
        self._open()
        if self._live and self._pending is None and self._accept is None:
            self._reader.pypcap_loop(int(cnt), callback, args, self._timestamp_in_ns)
            return
        _fast.pypcap_loop(self._packets(), int(cnt), callback, args, self._timestamp_in_ns,
                          self._accept)

    # -- writing and closing --------------------------------------------------

    def sendpacket(self, buf: Any) -> int:
        """Send one frame on the interface; returns its length."""
        self._open()
        if not self._live:
            raise OSError("Sending packets isn't supported on savefiles")
        try:
            if self._injector is None:
                self._injector = zcap.open_inject(self._name, netns=self._netns)
            self._injector.send(buf)
        except (zcap.ZcapError, OSError, ValueError) as exc:
            self._error = str(exc)
            raise _oserror(exc) from exc
        return len(buf)

    def close(self) -> None:
        """Close the capture (ends a running iteration).  Idempotent."""
        self._pending = None
        src, self._src = self._src, None
        injector, self._injector = self._injector, None
        if injector is not None:
            injector.close()
        if src is not None:
            src.close()

    def __del__(self) -> None:
        if getattr(self, "_src", None) is not None:
            self.close()

    def __repr__(self) -> str:
        return f"<zcap.compat.pcap.pcap {self._name!r} {'closed' if self._src is None else 'open'}>"


def findalldevs(*, netns: Any = None) -> list[str]:
    """The interfaces one can capture on, and "any"."""
    return [i.name for i in capture_devices(netns)]


def lookupdev(*, netns: Any = None) -> str:
    """The first interface that is up and not a loopback (never "any")."""
    for i in capture_devices(netns):
        if i.up and not i.loopback and i.name != "any":
            return i.name
    raise OSError("no suitable device found")


def lookupnet(dev: Any, *, netns: Any = None) -> tuple[bytes, bytes]:
    """(network, netmask) of the interface's IPv4 address, network byte order."""
    name = dev.decode() if isinstance(dev, (bytes, bytearray)) else dev
    try:
        network = ipv4_network(name, netns)
    except (zcap.ZcapError, OSError) as exc:
        raise _oserror(exc) from exc
    if network is None:
        raise OSError(f"{name}: no IPv4 address assigned")
    return network.network_address.packed, network.netmask.packed


def ex_name(name: Any) -> Any:
    """The device name as given (pypcap translates names only on Windows)."""
    return name
