"""Write pcap and pcapng savefiles, with timestamps in integer nanoseconds.

zcap writes both formats itself (they are small): dpkt's pcap writer records
the wire length as the captured length, and its pcapng writer only knows
microseconds.  Files are written in the machine's byte order, as libpcap
writes them.  zcap.offline reads them back.

Flush policy - what a crash leaves behind
-----------------------------------------
Records are assembled in one buffer and reach the operating system only as
whole records, so whatever happens to the process (Ctrl-C, an exception,
SIGKILL) the file is readable - by zcap, tcpdump and tshark - up to the last
flush.  The buffer is flushed:

* before a record that would not fit in it.  It holds `buffer_size` bytes
  (1 MiB by default), and never less than the largest record the snaplen
  allows, so a record is never split;
* at the first write after `flush_interval` seconds (default 1.0) have
  passed since the last flush, so a steady trickle reaches the file within
  about that time.  `flush_interval=0` flushes after every packet, like
  `tcpdump -U`.  Nothing runs in the background: a program that waits for
  packets (next(timeout=...)) should call flush() when its wait times out;
* on flush() and close(), and when a `with` block exits, also by an
  exception or KeyboardInterrupt.

If the operating system refuses the bytes (a full disk, a quota, an I/O
error) part way through a record, the file is cut back (ftruncate) to its
last whole record, the writer closes, and SavefileWriteError says how many
packets the file holds and how many accepted packets it does not.

The file header (pcapng: the section header and the first interface) is
written at open, so even a capture that saw no packet leaves a valid file.
A writer is for one thread.

pcapng metadata
---------------
The section header names the hardware, the operating system and the
application (shb_hardware, shb_os, shb_userappl) and holds `comment`; each
interface block has if_name, if_description, if_tsresol and if_filter (the
filter expression) besides its link type and snaplen.  Packets from a live
capture (pkt.ts_source is set) get EPB flags: direction and reception type
(unicast, multicast, broadcast, promiscuous) from the kernel's packet type.
`write_statistics()` adds an Interface Statistics Block (start and end time,
packets received and dropped by the kernel, delivered); tshark and capinfos
show all of it.

Appending
---------
`open_writer(..., append=True)` continues an existing file (created if
missing): a pcap file whose link type and snaplen agree, or a pcapng file
(written in this machine's byte order) whose first interface has the same
link type and snaplen; its timestamp resolution is kept.  Anything else
raises ValueError saying what differs.  The file must end with a whole
record (a file cut short is refused, not extended).
"""

from __future__ import annotations

import operator
import os
import platform
import stat
import struct
import time
from typing import Any, BinaryIO, NamedTuple, Optional, Union

from zcap.errors import SavefileWriteError
from zcap.linux import MAX_SNAPLEN

__all__ = [
    "open_writer",
    "Writer",
    "PcapWriter",
    "PcapngWriter",
    "WriterInterface",
    "FORMATS",
    "TS_RESOLUTIONS",
]

FORMATS = ("pcap", "pcapng")
TS_RESOLUTIONS = {"ns": 9, "us": 6}         # name -> decimal digits after the second
DEFAULT_BUFFER_SIZE = 1 << 20
DEFAULT_FLUSH_INTERVAL = 1.0

# -- the formats' constants (zcap.offline reads with these too) --------------

PCAP_MAGIC_US = 0xA1B2C3D4          # microsecond timestamps
PCAP_MAGIC_NS = 0xA1B23C4D          # nanosecond timestamps
PCAP_MAGIC_MODIFIED = 0xA1B2CD34    # Alexey Kuznetzov's "modified pcap": 8 more bytes per record
PCAP_VERSION = (2, 4)
PCAP_HEADER = struct.Struct("=IHHiIII")     # magic, major, minor, thiszone, sigfigs, snaplen, linktype
PCAP_RECORD = struct.Struct("=IIII")        # seconds, fraction, caplen, wirelen

PCAPNG_SHB = 0x0A0D0D0A             # the same in both byte orders
PCAPNG_IDB = 0x00000001
PCAPNG_PB = 0x00000002              # obsolete Packet Block
PCAPNG_SPB = 0x00000003
PCAPNG_EPB = 0x00000006
PCAPNG_ISB = 0x00000005
PCAPNG_BOM = 0x1A2B3C4D
PCAPNG_VERSION = (1, 0)
OPT_ENDOFOPT = 0
OPT_SHB_USERAPPL = 4
OPT_IF_NAME = 2
OPT_IF_TSRESOL = 9
OPT_IF_TSOFFSET = 14
OPT_COMMENT = 1
OPT_SHB_HARDWARE, OPT_SHB_OS = 2, 3
OPT_IF_DESCRIPTION, OPT_IF_FILTER = 3, 11
OPT_EPB_FLAGS = 2
OPT_ISB_STARTTIME, OPT_ISB_ENDTIME, OPT_ISB_IFRECV, OPT_ISB_IFDROP = 2, 3, 4, 5
OPT_ISB_FILTERACCEPT, OPT_ISB_OSDROP, OPT_ISB_USRDELIV = 6, 7, 8
# epb_flags from the kernel's packet type (PACKET_HOST, BROADCAST, MULTICAST,
# OTHERHOST, OUTGOING): bits 0-1 direction (1 in, 2 out), 2-4 reception type
EPB_FLAGS_BY_PKTTYPE = (1 | 1 << 2, 1 | 3 << 2, 1 | 2 << 2, 1 | 4 << 2, 2) + (0,) * 251

_EPB_HEAD = struct.Struct("=IIIIIII")       # type, length, interface, ts high, ts low, caplen, wirelen
_EPB_FLAGS_OPT = struct.Struct("=HHIHH")    # epb_flags option, then opt_endofopt
_U32 = struct.Struct("=I")
_PAD = (b"", b"\0", b"\0\0", b"\0\0\0")
_NS_PER_S = 1_000_000_000


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("=HH", code, len(value)) + value + _PAD[-len(value) & 3]


def _block(block_type: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("=II", block_type, total) + body + _U32.pack(total)


class WriterInterface(NamedTuple):
    """An interface of a savefile being written (pcapng: one IDB)."""

    name: Optional[str]
    linktype: int
    snaplen: int
    description: Optional[str] = None
    filter: Optional[str] = None        #: the filter expression (pcapng if_filter)


def _pwrite_fd(file: Any) -> int:
    """The descriptor to pwrite() into, if `file` is a regular file (else -1: use write())."""
    try:
        fd = file.fileno()
        return fd if stat.S_ISREG(os.fstat(fd).st_mode) else -1
    except (OSError, ValueError, AttributeError):
        return -1


def _check_linktype(linktype: object) -> int:
    value = operator.index(linktype)  # type: ignore[arg-type]
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"linktype must be a LINKTYPE_* value (0..65535), not {value}")
    return value


def _check_snaplen(snaplen: object) -> int:
    value = operator.index(snaplen)  # type: ignore[arg-type]
    if not 1 <= value <= MAX_SNAPLEN:
        # libpcap and tshark refuse records longer than 262144 bytes
        raise ValueError(f"snaplen must be between 1 and {MAX_SNAPLEN}, not {value}")
    return value


class Writer:
    """Writes whole records through one buffer; PcapWriter and PcapngWriter add the format."""

    format = ""
    _RECORD_OVERHEAD = 0                # record header + trailer + padding, at most

    def __init__(self, file: Any, *, close_file: bool, linktype: int, snaplen: int,
                 ts_resolution: str, if_name: Optional[str], buffer_size: int,
                 flush_interval: float, if_description: Optional[str] = None,
                 if_filter: Optional[str] = None, comment: Optional[str] = None,
                 resume: Optional[_Resume] = None) -> None:
        self._file = file
        self._close_file = close_file
        self._buf: Optional[bytearray] = None
        if ts_resolution not in TS_RESOLUTIONS:
            raise ValueError(f"ts_resolution must be 'ns' or 'us', not {ts_resolution!r}")
        if not flush_interval >= 0:
            raise ValueError(f"flush_interval must be a number of seconds >= 0, not {flush_interval!r}")
        self.ts_resolution = ts_resolution
        self._ts_div = 1 if ts_resolution == "ns" else 1000
        self.flush_interval = flush_interval
        self.comment = comment
        self._interfaces: list[WriterInterface] = []
        self._snaplens: list[int] = []
        self._linktypes: list[int] = []
        for iface in (resume.interfaces if resume else
                      [WriterInterface(if_name, _check_linktype(linktype), _check_snaplen(snaplen),
                                       if_description, if_filter)]):
            self._add(iface)
        self._buf = bytearray(max(operator.index(buffer_size), self.snaplen + self._RECORD_OVERHEAD))
        # Everything a signal could catch half-updated lives in one tuple that
        # a single store replaces: (end of the buffered records, bytes of them
        # the OS has, file offset of the buffer's first byte, packets, bytes).
        self._state = (0, 0, resume.size, 0, 0) if resume else (0, 0, 0, 0, 0)
        self._fd = _pwrite_fd(file) if close_file else -1
        self._last_flush = time.monotonic()
        if resume is None:
            self._append(self._file_header())
        self.flush()

    # -- the format ---------------------------------------------------------

    def _file_header(self) -> bytes:
        raise NotImplementedError

    def _record(self, data: memoryview, ts_ns: int, wirelen: int, interface: int,
                flags: int = 0) -> None:
        raise NotImplementedError

    # -- public API ---------------------------------------------------------

    @property
    def linktype(self) -> int:
        return self._interfaces[0].linktype

    @property
    def snaplen(self) -> int:
        return self._interfaces[0].snaplen

    @property
    def interfaces(self) -> list[WriterInterface]:
        return list(self._interfaces)

    @property
    def closed(self) -> bool:
        return self._buf is None

    def write(self, pkt: Any, interface: int = 0) -> None:
        """Write a zcap Packet (anything with the buffer protocol, .ts_ns and .wirelen).

        The bytes are copied once, from the packet's own memory into the
        write buffer.  A packet longer than the interface's snaplen is cut to
        it (its wire length is kept).
        """
        if not (hasattr(pkt, "ts_ns") and hasattr(pkt, "wirelen")):
            raise TypeError(
                f"write() takes a packet with .ts_ns and .wirelen (a zcap Packet), not "
                f"{type(pkt).__name__}; for raw bytes use write_raw(data, ts_ns, wirelen)")
        linktype = getattr(pkt, "linktype", None)
        linktypes = self._linktypes
        if linktype is not None and 0 <= interface < len(linktypes) and linktype != linktypes[interface]:
            raise ValueError(
                f"the packet's linktype is {int(linktype)}, but interface {interface} of this file has "
                f"linktype {linktypes[interface]}; "
                + ("write it to a file opened with that linktype" if self.format == "pcap" else
                   "add_interface() one with that linktype and write to it"))
        self.write_raw(pkt, pkt.ts_ns, pkt.wirelen, interface,
                       EPB_FLAGS_BY_PKTTYPE[pkt.pkttype]
                       if self._epb_flags and getattr(pkt, "ts_source", None) is not None else 0)

    # pcapng: live packets get epb_flags; a live packet is one a clock stamped
    # (ts_source), where a packet read from a file has no kernel packet type
    _epb_flags = False

    def write_raw(self, data: Any, ts_ns: int, wirelen: Optional[int] = None, interface: int = 0,
                  flags: int = 0) -> None:
        """Write one packet from any buffer; wirelen defaults to len(data).

        flags: pcapng epb_flags (0: none written; pcap has no such field)."""
        if self._buf is None:
            raise ValueError("the savefile writer is closed")
        snaplens = self._snaplens
        if not 0 <= interface < len(snaplens):
            raise ValueError(f"interface {interface} does not exist; this file has {len(snaplens)} "
                             f"(add_interface() makes more, pcapng only)")
        with memoryview(data) as view:
            if view.ndim != 1 or view.itemsize != 1:
                view = view.cast("B")
            length = view.nbytes
            wire = length if wirelen is None else operator.index(wirelen)
            if not length <= wire <= 0xFFFFFFFF:
                raise ValueError(f"wirelen {wire} is smaller than the {length} bytes of data"
                                 if wire < length else
                                 f"wirelen {wire} does not fit the format's 32-bit field")
            snaplen = snaplens[interface]
            self._record(view if length <= snaplen else view[:snaplen], operator.index(ts_ns), wire,
                         interface, flags)
        if time.monotonic() - self._last_flush >= self.flush_interval:
            self.flush()

    @property
    def packets_written(self) -> int:
        """Packets accepted by write()/write_raw(), including those still buffered."""
        return self._state[3]

    @property
    def bytes_written(self) -> int:
        """Bytes of the file produced so far (headers included), including those still buffered."""
        return self._state[4]

    def flush(self) -> None:
        """Hand every buffered record to the operating system (whole records only).

        A file the writer opened is written with pwrite() at explicit offsets:
        a flush interrupted (KeyboardInterrupt) after a write but before its
        progress was recorded just writes the same bytes to the same place
        again.  A file object is written with write(); there that case, a
        signal landing between a write() returning and the next bytecode,
        would repeat bytes.
        """
        buf = self._buf
        if buf is None:
            return
        pos, done, offset, packets, total = self._state
        if pos:
            with memoryview(buf) as view:
                while done < pos:
                    try:
                        if self._fd >= 0:
                            n = os.pwrite(self._fd, view[done:pos], offset + done)
                        else:
                            n = self._file.write(view[done:pos])
                            if n is None:
                                raise BlockingIOError("the savefile's file is non-blocking and not "
                                                      "ready; write to a blocking file")
                    except OSError as exc:
                        if isinstance(exc, (BrokenPipeError, BlockingIOError)):
                            raise
                        raise self._write_failed(exc) from None
                    done += n
                    self._state = (pos, done, offset, packets, total)
            self._state = (0, 0, offset + pos, packets, total)
        self._file.flush()
        self._last_flush = time.monotonic()

    def _records(self, view: memoryview, start_offset: int) -> Any:
        """(end, is_packet) of each whole record in a buffer that starts at a record."""
        raise NotImplementedError

    def _write_failed(self, exc: OSError) -> SavefileWriteError:
        """The OS refused bytes: cut the file back to its last whole record, close."""
        pos, done, offset, packets, _total = self._state
        keep = kept = in_buffer = 0
        with memoryview(self._buf) as view:  # type: ignore[arg-type]
            for end, is_packet in self._records(view[:pos], offset):
                in_buffer += is_packet
                if end <= done:
                    keep, kept = end, kept + is_packet
        name = getattr(self._file, "name", "")
        name = os.fsdecode(name) if isinstance(name, (str, bytes)) else ""
        cut = ""
        if self._fd >= 0:
            try:
                os.ftruncate(self._fd, offset + keep)
                cut = ", cut back to its last whole record"
            except OSError:
                cut = ", which may end inside a record"
        in_file = packets - in_buffer + kept
        self._buf = None
        if self._close_file:
            try:
                self._file.close()
            except OSError:
                pass
        return SavefileWriteError(
            exc.errno or 0, f"cannot write {name or 'the savefile'}: "
                            f"{exc.strerror or exc}; the file holds {in_file} packets{cut}",
            filename=name, packets_written=in_file, packets_lost=packets - in_file)

    def close(self) -> None:
        """Flush, then close the file if the writer opened it (a file object passed in stays open)."""
        if self._buf is None:
            return
        try:
            self.flush()
        finally:
            if self._buf is not None:
                self._buf = None
                if self._close_file:
                    self._file.close()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # like io.BufferedWriter: what was accepted reaches the file
        if getattr(self, "_buf", None) is not None:
            try:
                self.close()
            except Exception:
                pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return (f"<zcap.savefile.{type(self).__name__} {self.packets_written} packets "
                f"{self.bytes_written} bytes {state}>")

    # -- buffering ----------------------------------------------------------

    def _add(self, iface: WriterInterface) -> None:
        self._interfaces.append(iface)
        # read for every packet: kept apart from the WriterInterface tuples
        self._snaplens.append(iface.snaplen)
        self._linktypes.append(iface.linktype)

    def _reserve(self, size: int) -> tuple[int, int, int, int, int]:
        """The state, after a flush if a record of `size` bytes does not fit behind the buffered ones."""
        if self._state[0] + size > len(self._buf):  # type: ignore[arg-type]
            self.flush()
        return self._state

    def _append(self, record: bytes) -> None:
        pos, done, offset, n, total = self._reserve(len(record))
        end = pos + len(record)
        self._buf[pos:end] = record  # type: ignore[index]
        self._state = (end, done, offset, n, total + len(record))


class PcapWriter(Writer):
    """Classic pcap: one link type, nanosecond (0xa1b23c4d) or microsecond (0xa1b2c3d4) magic."""

    format = "pcap"
    _RECORD_OVERHEAD = PCAP_RECORD.size

    def _file_header(self) -> bytes:
        magic = PCAP_MAGIC_NS if self.ts_resolution == "ns" else PCAP_MAGIC_US
        return PCAP_HEADER.pack(magic, *PCAP_VERSION, 0, 0, self.snaplen, self.linktype)

    def _records(self, view: memoryview, start_offset: int) -> Any:
        pos = 0
        if start_offset == 0 and len(view) >= PCAP_HEADER.size:
            pos = PCAP_HEADER.size
            yield pos, 0
        while pos + PCAP_RECORD.size <= len(view):
            pos += PCAP_RECORD.size + PCAP_RECORD.unpack_from(view, pos)[2]
            yield pos, 1

    def _record(self, data: memoryview, ts_ns: int, wirelen: int, interface: int,
                flags: int = 0) -> None:
        sec, nsec = divmod(ts_ns, _NS_PER_S)
        if not 0 <= sec <= 0xFFFFFFFF:
            raise ValueError(f"timestamp {ts_ns} ns is outside what pcap can hold "
                             f"(unsigned 32-bit seconds: 1970-2106)")
        caplen = data.nbytes
        size = PCAP_RECORD.size + caplen
        pos, done, offset, n, total = self._reserve(size)
        buf = self._buf
        PCAP_RECORD.pack_into(buf, pos, sec, nsec // self._ts_div, caplen, wirelen)  # type: ignore[arg-type]
        buf[pos + PCAP_RECORD.size:pos + size] = data  # type: ignore[index]
        # One store makes the record part of the buffer and counts it: an
        # interrupt before it leaves the record out, never half in.
        self._state = (pos + size, done, offset, n + 1, total + size)


class PcapngWriter(Writer):
    """pcapng: a section header, one IDB per interface (if_tsresol 9 or 6), then EPBs."""

    format = "pcapng"
    _RECORD_OVERHEAD = _EPB_HEAD.size + 3 + 4 + _EPB_FLAGS_OPT.size

    def _file_header(self) -> bytes:
        from zcap.version import __version__
        uname = platform.uname()
        options = b"".join(_option(code, text.encode()) for code, text in (
            (OPT_COMMENT, self.comment), (OPT_SHB_HARDWARE, uname.machine),
            (OPT_SHB_OS, f"{uname.system} {uname.release}"),
            (OPT_SHB_USERAPPL, f"zcap {__version__} (Python {platform.python_version()})"))
            if text)
        body = struct.pack("=IHHq", PCAPNG_BOM, *PCAPNG_VERSION, -1) + options + _option(OPT_ENDOFOPT, b"")
        return _block(PCAPNG_SHB, body) + self._idb(self._interfaces[0])

    def _idb(self, iface: WriterInterface) -> bytes:
        options = b""
        if iface.name:
            options += _option(OPT_IF_NAME, iface.name.encode())
        if iface.description:
            options += _option(OPT_IF_DESCRIPTION, iface.description.encode())
        options += _option(OPT_IF_TSRESOL, bytes([TS_RESOLUTIONS[self.ts_resolution]]))
        if iface.filter:
            options += _option(OPT_IF_FILTER, b"\0" + iface.filter.encode())   # 0: a libpcap expression
        options += _option(OPT_ENDOFOPT, b"")
        return _block(PCAPNG_IDB, struct.pack("=HHI", iface.linktype, 0, iface.snaplen) + options)

    _epb_flags = True

    def write_statistics(self, interface: int = 0, *, end_ns: Optional[int] = None,
                         start_ns: Optional[int] = None, received: Optional[int] = None,
                         dropped: Optional[int] = None, delivered: Optional[int] = None,
                         filter_accepted: Optional[int] = None,
                         os_dropped: Optional[int] = None) -> None:
        """Add an Interface Statistics Block for `interface` (end_ns: now by default).

        received/dropped: what the kernel counted (isb_ifrecv, isb_ifdrop);
        delivered: packets handed to the application (isb_usrdeliv)."""
        if self._buf is None:
            raise ValueError("the savefile writer is closed")
        if not 0 <= interface < len(self._interfaces):
            raise ValueError(f"interface {interface} does not exist; this file has "
                             f"{len(self._interfaces)}")
        end = time.time_ns() if end_ns is None else operator.index(end_ns)

        def stamp(ns: int) -> bytes:
            units = ns // self._ts_div
            return struct.pack("=II", units >> 32, units & 0xFFFFFFFF)

        options = b""
        if start_ns is not None:
            options += _option(OPT_ISB_STARTTIME, stamp(operator.index(start_ns)))
        options += _option(OPT_ISB_ENDTIME, stamp(end))
        for code, value in ((OPT_ISB_IFRECV, received), (OPT_ISB_IFDROP, dropped),
                            (OPT_ISB_FILTERACCEPT, filter_accepted), (OPT_ISB_OSDROP, os_dropped),
                            (OPT_ISB_USRDELIV, delivered)):
            if value is not None:
                options += _option(code, struct.pack("=Q", operator.index(value)))
        self._append(_block(PCAPNG_ISB, struct.pack("=I", interface) + stamp(end) + options
                            + _option(OPT_ENDOFOPT, b"")))

    def add_interface(self, name: Optional[str], linktype: int, snaplen: int = MAX_SNAPLEN,
                      description: Optional[str] = None, filter: Optional[str] = None) -> int:
        """Describe another interface (an IDB); returns its index for write(..., interface=)."""
        if self._buf is None:
            raise ValueError("the savefile writer is closed")
        iface = WriterInterface(name, _check_linktype(linktype), _check_snaplen(snaplen),
                                description, filter)
        if iface.snaplen + self._RECORD_OVERHEAD > len(self._buf):
            self.flush()
            self._buf = bytearray(iface.snaplen + self._RECORD_OVERHEAD)
        self._append(self._idb(iface))
        self._add(iface)
        return len(self._interfaces) - 1

    def _records(self, view: memoryview, start_offset: int) -> Any:
        pos = 0
        while pos + 8 <= len(view):
            btype, blen = struct.unpack_from("=II", view, pos)
            pos += blen
            yield pos, int(btype == PCAPNG_EPB)

    def _record(self, data: memoryview, ts_ns: int, wirelen: int, interface: int,
                flags: int = 0) -> None:
        if ts_ns < 0:
            raise ValueError(f"timestamp {ts_ns} ns is before 1970; pcapng timestamps are unsigned")
        units = ts_ns // self._ts_div
        caplen = data.nbytes
        pad = -caplen & 3
        opts = _EPB_FLAGS_OPT.size if flags else 0
        size = _EPB_HEAD.size + caplen + pad + opts + 4
        pos, done, offset, n, total = self._reserve(size)
        buf = self._buf
        _EPB_HEAD.pack_into(buf, pos, PCAPNG_EPB, size, interface,  # type: ignore[arg-type]
                            units >> 32, units & 0xFFFFFFFF, caplen, wirelen)
        start = pos + _EPB_HEAD.size
        buf[start:start + caplen] = data  # type: ignore[index]
        buf[start + caplen:start + caplen + pad] = _PAD[pad]  # type: ignore[index]
        if flags:
            _EPB_FLAGS_OPT.pack_into(buf, start + caplen + pad, OPT_EPB_FLAGS, 4, flags,  # type: ignore[arg-type]
                                     OPT_ENDOFOPT, 0)
        _U32.pack_into(buf, pos + size - 4, size)  # type: ignore[arg-type]
        self._state = (pos + size, done, offset, n + 1, total + size)      # one store, as in pcap


class _Resume(NamedTuple):
    """Where an appended file ends and what it already describes."""

    size: int
    interfaces: list[WriterInterface]
    ts_resolution: str


def _mismatch(path: Any, what: str, have: object, want: object) -> ValueError:
    return ValueError(f"cannot append to {os.fspath(path)!r}: its {what} is {have}, this capture's "
                      f"is {want}; write to a new file instead")


def _resume(file: Any, path: Any, format: str, linktype: int, snaplen: int) -> _Resume:
    """Check an existing file can be continued with packets of (linktype, snaplen)."""
    size = os.fstat(file.fileno()).st_size
    head = os.pread(file.fileno(), 24, 0)
    magic = struct.unpack_from("=I", head)[0] if len(head) >= 4 else 0
    found = "pcapng" if magic == PCAPNG_SHB else "pcap" if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS) else None
    if found is None:
        raise ValueError(f"cannot append to {os.fspath(path)!r}: it is not a pcap or pcapng file "
                         f"written in this machine's byte order")
    if found != format:
        raise _mismatch(path, "format", found, format)
    if format == "pcap":
        _, _, _, _, _, have_snap, have_link = PCAP_HEADER.unpack_from(head)
        end, offset = PCAP_HEADER.size, PCAP_HEADER.size
        while offset + PCAP_RECORD.size <= size:       # walk the records to check the end
            caplen = PCAP_RECORD.unpack(os.pread(file.fileno(), PCAP_RECORD.size, offset))[2]
            offset += PCAP_RECORD.size + caplen
        end = offset
        res = "ns" if magic == PCAP_MAGIC_NS else "us"
        ifaces = [WriterInterface(None, have_link, have_snap)]
    else:
        ifaces, res, end = _pcapng_interfaces(file, path, size)
        have_link, have_snap = ifaces[0].linktype, ifaces[0].snaplen
    if end != size:
        raise ValueError(f"cannot append to {os.fspath(path)!r}: it ends inside a record (byte "
                         f"{size} of a record ending at {end}); it was cut short")
    if have_link != linktype:
        raise _mismatch(path, "link type", have_link, linktype)
    if have_snap != snaplen:
        raise _mismatch(path, "snaplen", have_snap, snaplen)
    return _Resume(size, ifaces, res)


def _pcapng_interfaces(file: Any, path: Any, size: int) -> tuple[list[WriterInterface], str, int]:
    """The last section's interfaces of a pcapng file in native byte order, its resolution, its end."""
    fd = file.fileno()
    offset, ifaces, res = 0, [], "us"
    while offset + 8 <= size:
        btype, blen = struct.unpack("=II", os.pread(fd, 8, offset))
        if btype == PCAPNG_SHB:
            if struct.unpack("=I", os.pread(fd, 4, offset + 8))[0] != PCAPNG_BOM:
                raise ValueError(f"cannot append to {os.fspath(path)!r}: a section is in the other "
                                 f"byte order")
            ifaces = []
        if blen < 12 or blen & 3:
            break
        if btype == PCAPNG_IDB and offset + blen <= size:
            body = os.pread(fd, blen - 12, offset + 8)
            linktype, _, snaplen = struct.unpack_from("=HHI", body)
            name, units, pos = None, 6, 8
            while pos + 4 <= len(body):
                code, length = struct.unpack_from("=HH", body, pos)
                if code == OPT_ENDOFOPT:
                    break
                value = body[pos + 4:pos + 4 + length]
                if code == OPT_IF_NAME:
                    name = value.rstrip(b"\0").decode("utf-8", "replace")
                elif code == OPT_IF_TSRESOL and value:
                    units = value[0]
                pos += 4 + ((length + 3) & ~3)
            if not ifaces:
                if units not in (6, 9):
                    raise ValueError(f"cannot append to {os.fspath(path)!r}: its timestamp "
                                     f"resolution (if_tsresol {units}) is not micro- or nanoseconds")
                res = "ns" if units == 9 else "us"
            ifaces.append(WriterInterface(name, linktype, snaplen))
        offset += blen
    if not ifaces:
        raise ValueError(f"cannot append to {os.fspath(path)!r}: it describes no interface")
    return ifaces, res, offset


def open_writer(path_or_fileobj: Union[str, os.PathLike[str], BinaryIO], *, format: str = "pcap",
                linktype: int, snaplen: int = MAX_SNAPLEN, ts_resolution: str = "ns",
                if_name: Optional[str] = None, buffer_size: int = DEFAULT_BUFFER_SIZE,
                flush_interval: float = DEFAULT_FLUSH_INTERVAL, append: bool = False,
                if_description: Optional[str] = None, if_filter: Optional[str] = None,
                comment: Optional[str] = None) -> Writer:
    """Create a savefile and write its header.

    path_or_fileobj  a path (created or truncated; closed by close()), or a
                     binary file object (flushed, not closed, by close())
    format           "pcap" or "pcapng"
    linktype         LINKTYPE_* of the packets, e.g. capture.linktype
    snaplen          the most bytes kept per packet, e.g. capture.snaplen
    ts_resolution    "ns" (default) or "us": pcap magic, or pcapng if_tsresol
    if_name          pcapng: the first interface's if_name (pcap has no names)
    buffer_size      the write buffer; see the module's flush policy
    flush_interval   seconds between flushes while packets keep coming
    append           continue an existing file (a path) if its format, link type
                     and snaplen agree (ValueError if not); see the module docstring
    if_description   pcapng: the first interface's if_description
    if_filter        pcapng: the capture filter expression (if_filter)
    comment          pcapng: a comment in the section header
    """
    classes = {"pcap": PcapWriter, "pcapng": PcapngWriter}
    if format not in classes:
        raise ValueError(f"format must be 'pcap' or 'pcapng', not {format!r}")
    resume = None
    if append and not isinstance(path_or_fileobj, (str, bytes, os.PathLike)):
        raise TypeError("append=True needs a path, not a file object")
    if isinstance(path_or_fileobj, (str, bytes, os.PathLike)):
        file: Any
        if append:
            try:    # pwrite() at the end; O_APPEND would ignore the offsets
                file = open(path_or_fileobj, "r+b", buffering=0)
            except FileNotFoundError:
                file = open(path_or_fileobj, "wb", buffering=0)
            try:
                if os.fstat(file.fileno()).st_size:
                    resume = _resume(file, path_or_fileobj, format, _check_linktype(linktype),
                                     _check_snaplen(snaplen))
                    ts_resolution = resume.ts_resolution
            except BaseException:
                file.close()
                raise
        else:
            file = open(path_or_fileobj, "wb", buffering=0)
        close_file = True
    elif callable(getattr(path_or_fileobj, "write", None)):
        file, close_file = path_or_fileobj, False
    else:
        raise TypeError(f"expected a path or a binary file object, not {type(path_or_fileobj).__name__}")
    try:
        return classes[format](file, close_file=close_file, linktype=linktype, snaplen=snaplen,
                               ts_resolution=ts_resolution, if_name=if_name, buffer_size=buffer_size,
                               flush_interval=flush_interval, if_description=if_description,
                               if_filter=if_filter, comment=comment, resume=resume)
    except BaseException:
        if close_file:
            file.close()
        raise
