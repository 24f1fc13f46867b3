"""Read pcap and pcapng savefiles through the live capture's API.

    with zcap.offline.open_offline("trace.pcapng") as src:
        for pkt in src:                  # zero-copy zcap Packets
            ...
        src.next()                       # None at the end of the file
        for batch in src.batches():      # numpy-ready columns, as zcap.Batch
            ...
        async for pkt in src: ...        # yields to the loop every budget_us

How bytes are held.  The file is read in large chunks: readinto() a fresh
bytearray (1 MiB by default, more for a bigger record).  Each Packet is a
zero-copy view of its chunk and keeps the chunk alive; a chunk is never
reused nor written where a packet lies, so packets stay valid as long as they
are referenced, and unlike a ring Batch an offline batch never goes stale.
Keeping one small packet keeps its whole chunk: Packet.copy() for long-term
storage.  The file is not mmapped, because a file truncated while mapped
kills the process with SIGBUS.

Malformed input.  Every length read from the file is checked before it is
used or allocated: a block is at most MAX_BLOCK bytes, a packet at most the
larger of 262144 and the snaplen, and for a regular file no record may claim
more bytes than the file still holds.  From a pipe, a record's buffer grows
(doubling) with the bytes that actually arrive, so a header claiming 200 MB
followed by 100 bytes allocates about a chunk before the truncation error.
Identical interface blocks are parsed once (a file of millions of IDBs costs
a few list slots per IDB).  What is wrong raises SavefileError
naming the byte offset of the bad header, block, record or option - at open if it is
before the first packet, otherwise after every packet before it has been
delivered.  The error is sticky: later reads raise it again.

A file that ends inside a record (cut by a crash, or still being written)
raises TruncatedSavefileError with the record's offset, as tcpdump reports
"truncated dump file".  With on_truncated="stop" it ends like a complete file
instead, and `truncated_at` holds that offset.

Conventions, following tshark where formats leave a choice: a packet record
whose wire length is smaller than its captured length gets wirelen = caplen
(a Packet needs wirelen >= caplen; tcpdump prints "[Invalid header]" and
goes on); a Simple Packet Block has no timestamp, its packet gets ts_ns = 0;
a pcapng timestamp beyond int64 nanoseconds (after 2262) is clamped to the
int64 limit and counted in `clamped_timestamps`;
pkt.ifindex is the pcapng interface id within its section (tshark's
frame.interface_id), 0 for pcap.
"""

from __future__ import annotations

import asyncio
import io
import os
import stat
import struct
import time
import weakref
from array import array
from dataclasses import fields
from typing import Any, BinaryIO, Callable, Iterator, NamedTuple, Optional, Union

from zcap import _records, _ring
from zcap import aio as _aio
from zcap._enums import LinkType
from zcap.errors import FilterError, SavefileError, TruncatedSavefileError
from zcap.linux import MAX_SNAPLEN
from zcap.savefile import (
    OPT_COMMENT,
    OPT_ENDOFOPT,
    OPT_IF_DESCRIPTION,
    OPT_IF_FILTER,
    OPT_IF_NAME,
    OPT_IF_TSOFFSET,
    OPT_IF_TSRESOL,
    PCAP_MAGIC_MODIFIED,
    PCAP_MAGIC_NS,
    PCAP_MAGIC_US,
    PCAPNG_BOM,
    PCAPNG_EPB,
    PCAPNG_IDB,
    PCAPNG_ISB,
    PCAPNG_PB,
    PCAPNG_SHB,
    PCAPNG_SPB,
)
from zcap.stats import Stats

__all__ = ["open_offline", "OfflineCapture", "OfflineBatch", "Interface", "InterfaceMetadata", "Section",
           "InterfaceStatistics", "MAX_BLOCK", "CHUNK_SIZE"]

CHUNK_SIZE = 1 << 20            # bytes read at a time (and the smallest chunk)
MAX_BLOCK = 256 << 20           # the largest pcapng block or pcap record zcap accepts
DEFAULT_BUDGET_US = 1000        # async iteration yields to the loop after this much work
_CHECK_CLOCK_EVERY = 32         # packets between two looks at the clock (async)
_NS_PER_S = 1_000_000_000
_INT64 = 1 << 63

_PCAP_MAGICS = {  # first four bytes -> (byte order, timestamp units per second, record header size)
    struct.pack("<I", PCAP_MAGIC_US): ("<", 10**6, 16),
    struct.pack(">I", PCAP_MAGIC_US): (">", 10**6, 16),
    struct.pack("<I", PCAP_MAGIC_NS): ("<", 10**9, 16),
    struct.pack(">I", PCAP_MAGIC_NS): (">", 10**9, 16),
    struct.pack("<I", PCAP_MAGIC_MODIFIED): ("<", 10**6, 24),
    struct.pack(">I", PCAP_MAGIC_MODIFIED): (">", 10**6, 24),
}
_PCAPNG_MAGIC = struct.pack("<I", PCAPNG_SHB)
_PCAPNG_MIN_LENGTH = {PCAPNG_SHB: 28, PCAPNG_IDB: 20, PCAPNG_EPB: 32, PCAPNG_PB: 32, PCAPNG_SPB: 16}
_PCAPNG_BLOCK_NAMES = {PCAPNG_SHB: "section header block", PCAPNG_IDB: "interface description block",
                       PCAPNG_EPB: "enhanced packet block", PCAPNG_PB: "packet block",
                       PCAPNG_SPB: "simple packet block"}


class Interface(NamedTuple):
    """An interface of a savefile: pcapng's IDB, or the pcap file header."""

    name: Optional[str]
    linktype: int
    snaplen: int                #: as in the file; 0 means no limit
    ts_resolution: int          #: timestamp units per second: 10**6, 10**9, 2**k, ...


class InterfaceMetadata(NamedTuple):
    """What a pcapng interface block says besides Interface's fields (None: not given)."""

    description: Optional[str]  #: if_description
    filter: Optional[str]       #: if_filter, when it is a filter expression


class Section(NamedTuple):
    """A pcapng section header's description of the capture (None: not given)."""

    comment: Optional[str]
    hardware: Optional[str]
    os: Optional[str]
    application: Optional[str]


class InterfaceStatistics(NamedTuple):
    """A pcapng Interface Statistics Block (counts None where the writer gave none)."""

    interface: int              #: global interface number (an index into .interfaces)
    ts_ns: int                  #: when the statistics were taken
    start_ns: Optional[int]
    end_ns: Optional[int]
    received: Optional[int]     #: isb_ifrecv: packets the capture received
    dropped: Optional[int]      #: isb_ifdrop: packets it dropped
    delivered: Optional[int]    #: isb_usrdeliv: packets delivered to the application


def _linktype(value: int) -> int:
    """A LinkType member when zcap names the value, else the plain int."""
    try:
        return LinkType(value)
    except ValueError:
        return value


def _caplen_limit(snaplen: int) -> int:
    # tshark and libpcap refuse packets over 262144 bytes unless the link
    # type's snaplen allows more (USB, D-Bus, ...)
    return min(MAX_BLOCK, max(MAX_SNAPLEN, snaplen))


class _Table:
    """The packet records parsed out of one stretch of a chunk: a column per field."""

    __slots__ = ("view", "offsets", "caplen", "wirelen", "ts_ns", "iface", "pkttype", "end", "error",
                 "seq")

    def __init__(self, view: memoryview, seq: int, with_iface: bool) -> None:
        self.view = view                        # the whole chunk
        self.offsets = array("I")
        self.caplen = array("I")
        self.wirelen = array("I")
        self.ts_ns = array("q")
        self.iface: Optional[array] = array("I") if with_iface else None   # global interface number
        self.pkttype: dict[int, int] = {}       # record index -> packet type, from pcapng epb_flags
        self.end = 0                            # bytes of the chunk the records span
        self.error: Optional[SavefileError] = None
        self.seq = seq

    def __len__(self) -> int:
        return len(self.offsets)

    def packet(self, i: int, meta: list[tuple[int, int]]) -> _ring.Packet:
        off = self.offsets[i]
        ifindex, linktype = meta[self.iface[i] if self.iface is not None else 0]
        if self.pkttype:
            return _ring.make_packet(self.view[off:off + self.caplen[i]], ts_ns=self.ts_ns[i],
                                     wirelen=self.wirelen[i], linktype=linktype, ifindex=ifindex,
                                     pkttype=self.pkttype.get(i, 0))
        return _ring.make_packet(self.view[off:off + self.caplen[i]], ts_ns=self.ts_ns[i],
                                 wirelen=self.wirelen[i], linktype=linktype, ifindex=ifindex)

    def keep(self, accepted: list[int]) -> None:
        """Keep only the records at these indices (filtering)."""
        for name in ("offsets", "caplen", "wirelen", "ts_ns", "iface"):
            column = getattr(self, name)
            if column is not None:
                setattr(self, name, array(column.typecode, (column[i] for i in accepted)))
        if self.pkttype:
            old = self.pkttype
            self.pkttype = {new: old[i] for new, i in enumerate(accepted) if i in old}


# Parsers: parse(buf, pos, end, base, table) reads whole records from
# buf[pos:end] into the table and returns (pos, need, what, error): where it
# stopped, how many bytes from there the next record needs and what it is
# (for a truncation message), or the error that stopped it.  `base` is the
# file offset of buf[0].

_Stop = tuple[int, int, str, Optional[SavefileError]]


class _Format:
    name = ""

    def __init__(self, source: str) -> None:
        self.source = source
        self.interfaces: list[Interface] = []
        self.meta: list[tuple[int, int]] = []       # global interface number -> (id in section, linktype)
        self.section_headers: list[Section] = []
        self.interface_metadata: list[InterfaceMetadata] = []
        self.statistics: list[InterfaceStatistics] = []

    def error(self, offset: int, text: str) -> SavefileError:
        return SavefileError(f"{self.source}: at byte offset {offset}: {text}", offset)

    def parse(self, buf: bytearray, pos: int, end: int, base: int, table: _Table) -> _Stop:
        raise NotImplementedError


class _PcapFormat(_Format):
    """Classic pcap: a 24-byte file header, then (16-byte header, data) records."""

    name = "pcap"

    def __init__(self, source: str, header: bytes) -> None:
        super().__init__(source)
        order, self.units, self.record_size = _PCAP_MAGICS[header[:4]]
        major, minor, _zone, _sigfigs, snaplen, field = struct.unpack_from(order + "HHiIII", header, 4)
        if major != 2 or minor < 3:
            archaic = " (an archaic format)" if (major, minor) < (2, 3) else ""
            raise self.error(0, f"unsupported pcap version {major}.{minor}{archaic}; zcap reads "
                                f"version 2.3 and 2.4 files, as written by libpcap since 1998")
        self.linktype = field & 0x03FFFFFF          # the bits above hold the FCS length
        self.snaplen = snaplen
        self.limit = _caplen_limit(snaplen)
        self.scale = _NS_PER_S // self.units
        self.big_endian = order == ">"
        self.interfaces.append(Interface(None, _linktype(self.linktype), snaplen, self.units))
        self.interface_metadata.append(InterfaceMetadata(None, None))
        self.meta.append((0, self.linktype))

    def parse(self, buf: bytearray, pos: int, end: int, base: int, table: _Table) -> _Stop:
        # the record walk runs in C (zcap/_records.pyx); the errors are composed here
        pos, why, caplen = _records.pcap_records(
            buf, pos, end, self.record_size, self.big_endian, self.scale, self.limit,
            table.offsets, table.caplen, table.wirelen, table.ts_ns)
        if why == _records.NEED_HEADER:
            return pos, self.record_size, "packet record header", None
        if why == _records.TOO_LONG:
            return pos, 0, "", self.error(
                base + pos, f"packet record with a captured length of {caplen} bytes, more than "
                            f"the {self.limit}-byte maximum for a file with snaplen {self.snaplen}; "
                            f"the file is corrupt")
        return pos, self.record_size + caplen, "packet record", None


class _Fields:
    """The pcapng structures, compiled for one byte order."""

    def __init__(self, order: str) -> None:
        self.order = order
        self.head = struct.Struct(order + "II")         # block type, total length
        self.u32 = struct.Struct(order + "I")
        self.epb = struct.Struct(order + "IIIII")       # interface, ts high, ts low, caplen, wirelen
        self.pb = struct.Struct(order + "HHIIII")       # interface, drops, ts high, ts low, caplen, wirelen


_FIELDS = {"<": _Fields("<"), ">": _Fields(">")}


def _block_name(btype: int) -> str:
    return _PCAPNG_BLOCK_NAMES.get(btype) or f"block of type 0x{btype:08x}"


class _PcapngInterface:
    """An IDB as the parser needs it: its limits and how to convert its timestamps.

    Shared by every IDB with the same bytes (a file may hold millions of them).
    """

    __slots__ = ("limit", "snaplen", "mul", "div", "offset_ns")

    def __init__(self, snaplen: int, units: int, offset_s: int) -> None:
        self.snaplen = snaplen
        self.limit = _caplen_limit(snaplen)
        if _NS_PER_S % units == 0:
            self.mul, self.div = _NS_PER_S // units, 1
        else:
            # floor(ts * 1e9 / units): what Wireshark computes, exactly
            self.mul, self.div = _NS_PER_S, units
        self.offset_ns = offset_s * _NS_PER_S


# epb_flags -> the kernel's packet type: outbound is PACKET_OUTGOING; inbound by
# reception type (unicast HOST, multicast, broadcast, promiscuous OTHERHOST)
_PKTTYPE_BY_RECEPTION = {1: 0, 2: 2, 3: 1, 4: 3}
_OPT_U32 = {"<": struct.Struct("<HHI"), ">": struct.Struct(">HHI")}   # an option holding a u32


def _epb_pkttype(buf: bytearray, pos: int, end: int, order: str) -> int:
    """The packet type an EPB's epb_flags option gives (0, PACKET_HOST, without one)."""
    while pos + 4 <= end:
        code, length = struct.unpack_from(order + "HH", buf, pos)
        if code == OPT_ENDOFOPT or pos + 4 + length > end:
            break
        if code == 2 and length == 4:               # epb_flags
            flags = struct.unpack_from(order + "I", buf, pos + 4)[0]
            return 4 if flags & 3 == 2 else _PKTTYPE_BY_RECEPTION.get((flags >> 2) & 7, 0)
        pos += 4 + ((length + 3) & ~3)
    return 0


class _PcapngFormat(_Format):
    """pcapng: sections of blocks; interfaces, packets (EPB, SPB, PB), the rest skipped."""

    name = "pcapng"

    def __init__(self, source: str) -> None:
        super().__init__(source)
        self.fields = _FIELDS["<"]                  # the current section's byte order
        self.sections = 0
        self.section: list[_PcapngInterface] = []   # the current section's interfaces, by id
        self.section_base = 0                       # global number of the section's interface 0
        self.clamped = 0
        # IDB bytes -> what they parse to: identical IDBs cost one list slot each
        self._known: dict[bytes, tuple[_PcapngInterface, Interface, InterfaceMetadata]] = {}

    def parse(self, buf: bytearray, pos: int, end: int, base: int, table: _Table) -> _Stop:
        fields = self.fields
        while True:
            left = end - pos
            if left < 12:
                return pos, 12, "block header", None
            btype, blen = fields.head.unpack_from(buf, pos)
            if btype == PCAPNG_SHB:         # the same number in either byte order
                bom = fields.u32.unpack_from(buf, pos + 8)[0]
                if bom not in (PCAPNG_BOM, 0x4D3C2B1A):
                    return pos, 0, "", self.error(
                        base + pos, f"section header block with byte-order magic "
                                    f"{bytes(buf[pos + 8:pos + 12]).hex(' ')}, neither 1a 2b 3c 4d nor "
                                    f"4d 3c 2b 1a; the file is corrupt")
                if bom != PCAPNG_BOM:       # the new section is in the other byte order
                    fields = _FIELDS[">" if fields.order == "<" else "<"]
                    blen = fields.u32.unpack_from(buf, pos + 4)[0]
            elif not self.sections:
                return pos, 0, "", self.error(base + pos, "the file does not start with a pcapng "
                                                          "section header block")
            minimum = _PCAPNG_MIN_LENGTH.get(btype, 12)
            if blen < minimum or blen & 3 or blen > MAX_BLOCK:
                why = (f"smaller than its {minimum}-byte minimum" if blen < minimum else
                       "not a multiple of 4" if blen & 3 else f"over zcap's {MAX_BLOCK}-byte limit")
                return pos, 0, "", self.error(
                    base + pos, f"{_block_name(btype)} with a total length of {blen} bytes, {why}; "
                                f"the file is corrupt")
            if left < blen:
                return pos, blen, _block_name(btype), None
            trailer = fields.u32.unpack_from(buf, pos + blen - 4)[0]
            if trailer != blen:
                return pos, 0, "", self.error(
                    base + pos, f"{_block_name(btype)} whose total length is {blen} bytes in its "
                                f"header but {trailer} in its trailer; the file is corrupt")
            if btype == PCAPNG_EPB or btype == PCAPNG_PB or btype == PCAPNG_SPB:
                err = self._packet(buf, pos, blen, btype, fields, base, table)
            elif btype == PCAPNG_SHB:
                err = self._section(buf, pos, blen, fields, base)
                fields = self.fields
            elif btype == PCAPNG_IDB:
                err = self._interface(buf, pos, blen, fields.order, base)
            elif btype == PCAPNG_ISB and blen >= 24:
                err = self._statistics(buf, pos, blen, fields.order, base)
            else:
                err = None              # statistics, name resolution, custom blocks, ...: skipped
            if err is not None:
                return pos, 0, "", err
            pos += blen

    def _options(self, buf: bytearray, start: int, stop: int, order: str,
                 base: int) -> Union[SavefileError, list[tuple[int, int, bytes]]]:
        """The (code, offset, value) options in buf[start:stop], or the error in their lengths."""
        out = []
        pos = start
        while pos + 4 <= stop:
            code, length = struct.unpack_from(order + "HH", buf, pos)
            if code == OPT_ENDOFOPT:
                break
            if length > stop - pos - 4:
                return self.error(base + pos, f"option {code} of {length} bytes, more than the "
                                              f"{stop - pos - 4} bytes left in its block; the file "
                                              f"is corrupt")
            out.append((code, base + pos, bytes(buf[pos + 4:pos + 4 + length])))
            pos += 4 + ((length + 3) & ~3)
        return out

    def _section(self, buf: bytearray, pos: int, blen: int, fields: _Fields,
                 base: int) -> Optional[SavefileError]:
        major, minor = struct.unpack_from(fields.order + "HH", buf, pos + 12)
        if major != 1 or minor not in (0, 2):
            return self.error(base + pos, f"unsupported pcapng version {major}.{minor}; zcap reads "
                                          f"version 1.0 (and 1.2) sections")
        options = self._options(buf, pos + 24, pos + blen - 4, fields.order, base)
        if isinstance(options, SavefileError):
            return options
        self.fields = fields
        self.sections += 1
        self.section = []
        text = {code: value.rstrip(b"\0").decode("utf-8", "replace") for code, _, value in options}
        self.section_headers.append(Section(text.get(OPT_COMMENT), text.get(2), text.get(3), text.get(4)))
        self.section_base = len(self.interfaces)
        return None

    def _statistics(self, buf: bytearray, pos: int, blen: int, order: str,
                    base: int) -> Optional[SavefileError]:
        ifid, high, low = struct.unpack_from(order + "III", buf, pos + 8)
        if ifid >= len(self.section):
            return None             # statistics of an unknown interface: nothing to attach them to
        iface = self.section[ifid]
        options = self._options(buf, pos + 20, pos + blen - 4, order, base)
        if isinstance(options, SavefileError):
            return options

        def ns(units: int) -> int:
            return (units * iface.mul if iface.div == 1 else units * iface.mul // iface.div) + iface.offset_ns

        values: dict[int, int] = {}
        for code, _, value in options:
            if len(value) == 8:
                a, b = struct.unpack(order + "II", value)
                values[code] = (a << 32 | b) if code in (2, 3) else struct.unpack(order + "Q", value)[0]
        self.statistics.append(InterfaceStatistics(
            self.section_base + ifid, ns(high << 32 | low),
            ns(values[2]) if 2 in values else None, ns(values[3]) if 3 in values else None,
            values.get(4), values.get(5), values.get(8)))
        return None

    def _interface(self, buf: bytearray, pos: int, blen: int, order: str,
                   base: int) -> Optional[SavefileError]:
        key = order.encode() + bytes(buf[pos + 8:pos + blen - 4]) if blen <= 1024 else b""
        known = self._known.get(key) if key else None
        if known is None:
            err = self._new_interface(buf, pos, blen, order, base)
            if err is not None:
                return err
            known = self.section[-1], self.interfaces[-1], self.interface_metadata[-1]
            if key and len(self._known) < 4096:
                self._known[key] = known
        else:
            self.section.append(known[0])
            self.interfaces.append(known[1])
            self.interface_metadata.append(known[2])
        self.meta.append((len(self.section) - 1, int(known[1].linktype)))
        return None

    def _new_interface(self, buf: bytearray, pos: int, blen: int, order: str,
                       base: int) -> Optional[SavefileError]:
        linktype, _, snaplen = struct.unpack_from(order + "HHI", buf, pos + 8)
        options = self._options(buf, pos + 16, pos + blen - 4, order, base)
        if isinstance(options, SavefileError):
            return options
        name, units, offset_s, description, filter_text = None, 10**6, 0, None, None
        for code, where, value in options:
            if code == OPT_IF_NAME:
                name = value.rstrip(b"\0").decode("utf-8", "replace")
            elif code == OPT_IF_DESCRIPTION:
                description = value.rstrip(b"\0").decode("utf-8", "replace")
            elif code == OPT_IF_FILTER and value[:1] == b"\0":
                filter_text = value[1:].rstrip(b"\0").decode("utf-8", "replace")
            elif code == OPT_IF_TSRESOL and len(value) >= 1:
                exponent = value[0] & 0x7F
                if value[0] & 0x80:
                    if exponent > 63:
                        return self.error(where, f"if_tsresol 2^-{exponent} is finer than zcap supports "
                                                 f"(2^-63); the file is corrupt")
                    units = 2**exponent
                else:
                    if exponent > 19:
                        return self.error(where, f"if_tsresol 10^-{exponent} is finer than zcap supports "
                                                 f"(10^-19); the file is corrupt")
                    units = 10**exponent
            elif code == OPT_IF_TSOFFSET and len(value) >= 8:
                offset_s = struct.unpack_from(order + "q", value)[0]
        self.section.append(_PcapngInterface(snaplen, units, offset_s))
        self.interfaces.append(Interface(name, _linktype(linktype), snaplen, units))
        self.interface_metadata.append(InterfaceMetadata(description, filter_text))
        return None

    def _packet(self, buf: bytearray, pos: int, blen: int, btype: int, fields: _Fields, base: int,
                table: _Table) -> Optional[SavefileError]:
        if btype == PCAPNG_EPB:
            ifid, high, low, caplen, wirelen = fields.epb.unpack_from(buf, pos + 8)
            data = pos + 28
        elif btype == PCAPNG_PB:
            ifid, _drops, high, low, caplen, wirelen = fields.pb.unpack_from(buf, pos + 8)
            data = pos + 28
        else:
            ifid, high, low = 0, 0, 0
            wirelen = fields.u32.unpack_from(buf, pos + 8)[0]
            data = pos + 12
        section = self.section
        if ifid >= len(section):
            have = len(section)
            return self.error(base + pos, f"{_block_name(btype)} for interface {ifid}, but its section "
                                          f"has {have} interface{'s' if have != 1 else ''} before it; "
                                          f"the file is corrupt")
        iface = section[ifid]
        room = pos + blen - 4 - data
        if btype == PCAPNG_SPB:
            caplen = wirelen if not iface.snaplen or wirelen <= iface.snaplen else iface.snaplen
        if caplen > room:
            return self.error(base + pos, f"{_block_name(btype)} with a captured length of {caplen} "
                                          f"bytes, more than the {room} bytes its block holds; the "
                                          f"file is corrupt")
        if caplen > iface.limit:
            return self.error(base + pos, f"{_block_name(btype)} with a captured length of {caplen} "
                                          f"bytes, more than the {iface.limit}-byte maximum for its "
                                          f"interface (snaplen {iface.snaplen}); the file is corrupt")
        ts = (high << 32) | low
        ts_ns = (ts * iface.mul if iface.div == 1 else ts * iface.mul // iface.div) + iface.offset_ns
        if not -_INT64 <= ts_ns < _INT64:
            # A bogus timestamp is not a broken structure (tshark shows such
            # packets): keep the packet, clamp its time, count it.
            ts_ns = _INT64 - 1 if ts_ns > 0 else -_INT64
            self.clamped += 1
        table.ts_ns.append(ts_ns)
        table.offsets.append(data)
        table.caplen.append(caplen)
        table.wirelen.append(wirelen if wirelen >= caplen else caplen)
        table.iface.append(self.section_base + ifid)  # type: ignore[union-attr]
        if blen > 36 + caplen and btype == PCAPNG_EPB and \
                data + ((caplen + 3) & ~3) + 8 <= pos + blen - 4:   # it has an option
            at = data + ((caplen + 3) & ~3)
            code, length, flags = _OPT_U32[fields.order].unpack_from(buf, at)
            if code == 2 and length == 4:                   # epb_flags first, as zcap writes it
                kind = 4 if flags & 3 == 2 else _PKTTYPE_BY_RECEPTION.get((flags >> 2) & 7, 0)
            else:
                kind = _epb_pkttype(buf, at, pos + blen - 4, fields.order)
            if kind:
                table.pkttype[len(table.offsets) - 1] = kind
        return None


class OfflineBatch:
    """Packets parsed from one chunk of the file, with zero-copy columns; mirrors zcap.Batch.

    Unlike a ring batch it never goes stale: the chunk is never reused.
    """

    __slots__ = ("_table", "_start", "_stop", "_meta", "_hdrs")

    def __init__(self, table: _Table, start: int, stop: int, meta: list[tuple[int, int]]) -> None:
        self._table, self._start, self._stop, self._meta = table, start, stop, meta
        self._hdrs: Any = None

    valid = True

    @property
    def generation(self) -> int:
        """The chunk's sequence number in the file."""
        return self._table.seq

    def __len__(self) -> int:
        return self._stop - self._start

    def __iter__(self) -> Iterator[_ring.Packet]:
        table, meta = self._table, self._meta
        for i in range(self._start, self._stop):
            yield table.packet(i, meta)

    def __getitem__(self, i: int) -> _ring.Packet:
        n = self._stop - self._start
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("batch index out of range")
        return self._table.packet(self._start + i, self._meta)

    @property
    def buffer(self) -> memoryview:
        """Read-only memoryview of the chunk; packets start at `offsets`."""
        return self._table.view[:self._table.end].toreadonly()

    def _column(self, column: array) -> memoryview:
        return memoryview(column)[self._start:self._stop].toreadonly()

    @property
    def offsets(self) -> memoryview:
        """uint32 offset of each packet's first byte in `buffer`."""
        return self._column(self._table.offsets)

    @property
    def caplen(self) -> memoryview:
        return self._column(self._table.caplen)

    @property
    def wirelen(self) -> memoryview:
        return self._column(self._table.wirelen)

    @property
    def ts_ns(self) -> memoryview:
        return self._column(self._table.ts_ns)

    # Analytics: the same entry points as zcap.Batch (zcap._headers, zcap.arrow).

    def headers(self) -> Any:
        """Per-packet header columns (zcap._headers.Headers), computed in C by group when first asked for."""
        h = self._hdrs() if self._hdrs is not None else None
        if h is None:
            from zcap import _headers
            h = _headers.headers_of(self._header_inputs, len(self))
            self._hdrs = weakref.ref(h)     # weak: the Headers holds this batch (no cycle)
        return h

    def _header_inputs(self) -> tuple[Any, ...]:
        return (self.buffer, self.offsets, self.caplen, self.linktype, None)

    def select(self, addresses: Any = None, flow_heads: Optional[int] = None,
               flows: Any = None) -> memoryview:
        """uint32 indices of the packets admitted (see zcap._headers.select)."""
        from zcap import _headers
        return _headers.select(self.headers(), addresses, flow_heads, flows)  # type: ignore[no-any-return]

    def to_arrow(self) -> Any:
        """A pyarrow.RecordBatch of the packets, their metadata and header columns (zcap.arrow)."""
        from zcap import arrow
        return arrow.batch_to_arrow(self)

    @property
    def linktype(self) -> Union[int, memoryview]:
        """The link type of the packets: an int, or a uint16 column when interfaces differ."""
        iface = self._table.iface
        if iface is None:
            return self._meta[0][1]
        kinds = {self._meta[k][1] for k in set(iface[self._start:self._stop])}
        if len(kinds) <= 1:
            return kinds.pop() if kinds else 1
        return memoryview(array("H", (self._meta[k][1] for k in iface[self._start:self._stop])))

    def _meta_columns(self) -> tuple[memoryview, memoryview, memoryview]:
        """(vlan, ifindex, pkttype) per packet, as zcap.Batch gives them (files carry tags in the bytes)."""
        n = len(self)
        iface = self._table.iface
        if iface is None:
            ifindex = array("i", [self._meta[0][0]]) * n
        else:
            ifindex = array("i", (self._meta[k][0] for k in iface[self._start:self._stop]))
        return (memoryview(array("i", [-1]) * n), memoryview(ifindex), memoryview(bytes(n)))

    def field(self, offset: int, dtype: Any, *, default: Any = 0) -> memoryview:
        """One field of every packet, gathered in one C loop (see zcap.Batch.field)."""
        table = self._table
        return _ring.gather_field(table.view, self._column(table.offsets), self._column(table.caplen),
                                  offset, dtype, default)

    def __repr__(self) -> str:
        return f"<zcap.OfflineBatch {len(self)} packets generation={self.generation}>"


class _BatchStream:
    """src.batches(): for and async for."""

    def __init__(self, src: OfflineCapture) -> None:
        self._src = src

    def __iter__(self) -> _BatchStream:
        return self

    def __next__(self) -> OfflineBatch:
        batch = self._src.next_batch()
        if batch is None:
            raise StopIteration
        return batch

    def __aiter__(self) -> _BatchStream:
        return self

    async def __anext__(self) -> OfflineBatch:
        await asyncio.sleep(0)          # a batch is a lot of work: let the loop run between two
        batch = self._src.next_batch()
        if batch is None:
            raise StopAsyncIteration
        return batch


class OfflineCapture:
    """A savefile read with the live capture's API.  See the module docstring."""

    mode = "offline"

    def __init__(self, file: Any, *, source: str, close_file: bool, chunk_size: int,
                 on_truncated: str, filter: Optional[Callable[[memoryview, int, int], bool]]) -> None:
        self._file = file
        self._close_file = close_file
        self.path = source
        self._chunk_size = chunk_size
        self._on_truncated = on_truncated
        self._match = filter
        #: file offset of the record the file ended in, when on_truncated="stop" ended it there
        self.truncated_at: Optional[int] = None
        #: async iteration yields to the event loop after this much work
        self.budget_us = DEFAULT_BUDGET_US
        self._chunk = bytearray(0)
        self._view = memoryview(self._chunk)
        self._base = 0              # file offset of the chunk's first byte
        self._fill = 0              # bytes of the chunk read from the file
        self._parsed = 0            # bytes of the chunk parsed into tables
        self._need = 4              # bytes the next record needs from _parsed (or the magic)
        self._what = "file header"
        self._eof = False
        self._closed = False
        self._break = False
        self._error: Optional[SavefileError] = None
        self._cursor = 0
        self._seq = 0
        self._received = self._delivered = self._filtered = self._tables = 0
        self._since_check = 0
        self._slice_end = 0             # the next fairness yield (async), monotonic ns
        self._format = self._read_header()
        self._table: Optional[_Table] = None
        self._table = self._load()      # bad before the first packet: raise now

    # -- reading the file ---------------------------------------------------

    def _read_header(self) -> _Format:
        while self._fill < 24 and not self._eof:
            self._read(24)
        head = bytes(self._view[:min(self._fill, 24)])
        if len(head) < 4:
            raise TruncatedSavefileError(
                f"{self.path}: at byte offset 0: the file holds {len(head)} bytes, fewer than the 4 of a "
                f"pcap or pcapng magic number; it is empty or cut short", 0)
        if head[:4] == _PCAPNG_MAGIC:
            self._need, self._what = 12, "block header"
            return _PcapngFormat(self.path)
        if head[:4] not in _PCAP_MAGICS:
            raise SavefileError(
                f"{self.path}: at byte offset 0: the file starts with bytes {head[:4].hex(' ')}, "
                f"neither a pcap magic number (a1b2c3d4 or a1b23c4d, in either byte order) nor "
                f"pcapng's (0a 0d 0d 0a); this is not a capture file", 0)
        if len(head) < 24:
            raise TruncatedSavefileError(
                f"{self.path}: at byte offset 0: the file ends inside the 24-byte pcap file header "
                f"({len(head)} bytes); it was cut short", 0)
        fmt = _PcapFormat(self.path, head)
        self._parsed, self._need, self._what = 24, fmt.record_size, "packet record header"
        return fmt

    def _bytes_left(self) -> Optional[int]:
        """Bytes the file holds beyond what was read, when it can tell (regular files)."""
        f = self._file
        try:
            if not f.seekable():
                return None
            here = f.tell()
            try:
                st = os.fstat(f.fileno())
            except (OSError, ValueError, AttributeError):
                size = f.seek(0, io.SEEK_END)
                f.seek(here)
            else:
                if not stat.S_ISREG(st.st_mode):
                    return None
                size = st.st_size
        except (OSError, ValueError, AttributeError):
            return None
        return max(size - here, 0)

    def _read(self, need: int) -> None:
        """Read more of the file: into the chunk's free room, or into a new chunk
        that holds the record being completed (`need` bytes from _parsed)."""
        if need > len(self._chunk) - self._parsed or self._fill == len(self._chunk):
            carry = self._fill - self._parsed
            size = max(self._chunk_size, need)
            if need > self._chunk_size:
                left = self._bytes_left()
                if left is not None and need > carry + left:
                    self._eof = True            # the record cannot be complete: report it now
                    return
                if left is None:
                    # A pipe cannot say how much is coming: grow with what
                    # arrives (doubling), so a header claiming 200 MB costs
                    # about what the input really holds.
                    size = min(size, max(self._chunk_size, 2 * carry))
            chunk = bytearray(size)
            view = memoryview(chunk)
            view[:carry] = self._view[self._parsed:self._fill]
            self._base += self._parsed
            self._chunk, self._view = chunk, view
            self._fill, self._parsed = carry, 0
        n = self._file.readinto(self._view[self._fill:])
        if n is None:
            raise BlockingIOError(f"{self.path}: the file is non-blocking and has no data yet; "
                                  f"read savefiles from a blocking file")
        if n == 0:
            self._eof = True
        self._fill += n

    def _load(self) -> Optional[_Table]:
        """The next table with at least one packet (or an error); None at the end of the file."""
        fmt = self._format
        while True:
            if self._fill - self._parsed >= self._need:
                table = _Table(self._view, self._seq, fmt.name == "pcapng")
                pos, need, what, error = fmt.parse(self._chunk, self._parsed, self._fill, self._base, table)
                self._parsed, self._need, self._what = pos, need, what
                table.end, table.error = pos, error
                self._received += len(table)
                if self._match is not None:
                    self._filter(table)
                if len(table) or error is not None:
                    self._seq += 1
                    self._tables += 1
                    if error is not None and not len(table):
                        raise self._fail(error)
                    return table
                continue
            if self._eof:
                if self._fill > self._parsed:
                    self._truncated()           # raises, or ends here with on_truncated="stop"
                return None
            self._read(self._need)

    def _truncated(self) -> None:
        """The file ended inside a record."""
        offset = self._base + self._parsed
        have = self._fill - self._parsed
        if self._on_truncated == "stop":
            self.truncated_at = offset
            self._parsed = self._fill
            return
        raise self._fail(TruncatedSavefileError(
            f"{self.path}: at byte offset {offset}: the file ends inside this {self._what}: {have} of "
            f"its {self._need} bytes are there; it was cut short (by a crash?) or is still being written",
            offset))

    def _filter(self, table: _Table) -> None:
        """The one place a per-packet predicate applies: filter(data, wirelen,
        linktype) -> bool, e.g. a zcap.bpf program's match for that link type.

        Rejected records leave the table before anyone sees them; they count
        as received and filtered, as on a live capture.
        """
        match = self._match
        view = table.view
        meta = self._format.meta
        iface = table.iface
        accepted = [i for i in range(len(table))
                    if match(view[table.offsets[i]:table.offsets[i] + table.caplen[i]],  # type: ignore[misc]
                             table.wirelen[i], meta[iface[i] if iface is not None else 0][1])]
        if len(accepted) != len(table):
            self._filtered += len(table) - len(accepted)
            table.keep(accepted)

    def _fail(self, error: SavefileError) -> SavefileError:
        self._error = error
        return error

    def _advance(self) -> Optional[_Table]:
        """Move to the next table once the current one is used up; None at the end."""
        if self._error is not None:
            raise self._error
        table = self._table
        if table is not None and table.error is not None:
            raise self._fail(table.error)
        self._table = None
        table = self._load()
        self._table, self._cursor = table, 0
        return table

    # -- the capture API ----------------------------------------------------

    @property
    def format(self) -> str:
        """"pcap" or "pcapng"."""
        return self._format.name

    @property
    def interfaces(self) -> list[Interface]:
        """The file's interfaces seen so far, in file order (all pcapng sections)."""
        return list(self._format.interfaces)

    @property
    def sections(self) -> list[Section]:
        """pcapng: each section header's comment, hardware, OS and application (read so far)."""
        return list(self._format.section_headers)

    @property
    def interface_metadata(self) -> list[InterfaceMetadata]:
        """pcapng: each interface's description and filter, parallel to .interfaces."""
        return list(self._format.interface_metadata)

    @property
    def statistics(self) -> list[InterfaceStatistics]:
        """pcapng: the Interface Statistics Blocks read so far (a writer puts them at the end)."""
        return list(self._format.statistics)

    @property
    def linktype(self) -> Optional[int]:
        """The (first) interface's link type; pcapng packets carry their own in pkt.linktype."""
        ifaces = self._format.interfaces
        return ifaces[0].linktype if ifaces else None

    @property
    def snaplen(self) -> Optional[int]:
        """The (first) interface's snaplen; 0 (no limit) reads as 262144, as libpcap reports it."""
        ifaces = self._format.interfaces
        return (ifaces[0].snaplen or MAX_SNAPLEN) if ifaces else None

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def clamped_timestamps(self) -> int:
        """Packets whose timestamp lay beyond int64 nanoseconds and was clamped (read so far)."""
        return getattr(self._format, "clamped", 0)

    def __iter__(self) -> Iterator[_ring.Packet]:
        return self

    def __next__(self) -> _ring.Packet:
        pkt = self.next()
        if pkt is None:
            raise StopIteration
        return pkt

    def next(self, timeout: Optional[float] = None) -> Optional[_ring.Packet]:
        """The next packet, or None at the end of the file (a file never makes you wait)."""
        table = self._table
        if table is None or self._cursor >= len(table):
            if self._closed or self._break:
                self._break = False
                return None
            table = self._advance()
            if table is None:
                return None
        elif self._break:
            self._break = False
            return None
        i = self._cursor
        self._cursor = i + 1
        self._delivered += 1
        return table.packet(i, self._format.meta)

    def next_batch(self, timeout: Optional[float] = None) -> Optional[OfflineBatch]:
        """The rest of the current chunk's packets, or the next chunk's; None at the end."""
        if self._closed or self._break:
            self._break = False
            return None
        table = self._table
        if table is None or self._cursor >= len(table):
            table = self._advance()
            if table is None:
                return None
        start, self._cursor = self._cursor, len(table)
        self._delivered += len(table) - start
        return OfflineBatch(table, start, len(table), self._format.meta)

    def batches(self) -> _BatchStream:
        """One OfflineBatch per chunk (the rest of the current one first); for or async for."""
        return _BatchStream(self)

    def breakloop(self) -> None:
        """End the current iteration: the next read returns None (later ones go on)."""
        self._break = True

    def __aiter__(self) -> OfflineCapture:
        return self

    async def __anext__(self) -> _ring.Packet:
        pkt = await self.anext()
        if pkt is None:
            raise StopAsyncIteration
        return pkt

    async def anext(self, timeout: Optional[float] = None) -> Optional[_ring.Packet]:
        """The next packet, or None at the end of the file.

        Reading never waits, so after every budget_us of work, or on
        asyncio's loops when the loop's earliest timer falls due, it yields
        to the event loop once to keep other tasks responsive: what is due
        when it yields runs before it resumes (zcap.aio.pause_future).
        """
        self._since_check += 1
        if self._since_check >= _CHECK_CLOCK_EVERY:
            self._since_check = 0
            if time.monotonic_ns() >= self._slice_end:
                loop = asyncio.get_running_loop()
                await _aio.pause_future(loop)
                self._slice_end = _aio.slice_end_ns(_aio.visible_timers(loop),
                                                    self.budget_us * 1000, time.monotonic_ns())
        return self.next()

    def stats(self) -> Stats:
        """received: packet records read from the file; delivered: handed out;
        filtered: rejected by the filter; blocks: chunks parsed; ready: 1 while
        a parsed chunk still has packets.  Nothing is ever dropped."""
        counts = {f.name: 0 for f in fields(Stats) if f.name not in ("mode", "filter_location")}
        table = self._table
        counts.update(received=self._received, delivered=self._delivered, blocks=self._tables,
                      filtered=self._filtered, ready=int(table is not None and self._cursor < len(table)))
        return Stats(mode=self.mode, filter_location="user" if self._match is not None else None,
                     **counts)

    def close(self) -> None:
        """Close the file (if open_offline opened it).  Packets you hold stay valid."""
        if self._closed:
            return
        self._closed = True
        self._table = None
        if self._close_file:
            self._file.close()

    def __enter__(self) -> OfflineCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> OfflineCapture:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<zcap.OfflineCapture {self.path!r} {self.format} {state}>"


class _BPFMatcher:
    """filter(data, wirelen, linktype): `spec` compiled once per link type met.

    open_offline() compiles it for the file's first link type before it
    returns, so a bad filter raises FilterError before anything is read.
    """

    def __init__(self, spec: object, source: str = "") -> None:
        self.spec = spec
        self.source = source
        self.programs: dict[int, Any] = {}

    def program(self, linktype: int) -> Any:
        prog = self.programs.get(linktype)
        if prog is None:
            from zcap import bpf
            from zcap.filters import is_raw_program
            try:
                if is_raw_program(self.spec):
                    prog = bpf.BPFProgram.parse(self.spec, linktype=linktype)
                else:
                    prog = bpf.compile_filter(str(self.spec), linktype=linktype)
            except FilterError:
                raise
            except ValueError as exc:       # e.g. a link type libpcap does not know
                raise FilterError(f"{self.source}: cannot apply the filter {self.spec!r} to "
                                  f"link type {int(linktype)} of this file: {exc}; read it "
                                  f"without a filter") from None
            self.programs[linktype] = prog
        return prog

    def __call__(self, data: memoryview, wirelen: int, linktype: int) -> bool:
        return self.program(linktype).match(data, wirelen) > 0


def open_offline(source: Union[str, os.PathLike[str], BinaryIO], *, filter: object = None,
                 on_truncated: str = "raise", chunk_size: int = CHUNK_SIZE) -> OfflineCapture:
    """Open a pcap or pcapng file (a path, or a binary file object with readinto).

    on_truncated  "raise" (TruncatedSavefileError) or "stop" (end there, and
                  set `truncated_at`) when the file ends inside a record
    chunk_size    bytes read at a time; each chunk is a new buffer
    filter        a tcpdump expression or a raw BPF program, run by zcap's
                  user-space engine (compiled for each link type the file has)
    """
    if on_truncated not in ("raise", "stop"):
        raise ValueError(f"on_truncated must be 'raise' or 'stop', not {on_truncated!r}")
    if not isinstance(chunk_size, int) or not 1 <= chunk_size <= MAX_BLOCK:
        raise ValueError(f"chunk_size must be between 1 and {MAX_BLOCK} bytes, not {chunk_size!r}")
    if isinstance(source, (str, bytes, os.PathLike)):
        file: Any = open(source, "rb", buffering=0)
        name, close_file = os.fsdecode(source), True
    elif callable(getattr(source, "readinto", None)):
        file, close_file = source, False
        name = str(getattr(source, "name", "<file object>"))
    else:
        raise TypeError(f"expected a path or a binary file object with readinto(), "
                        f"not {type(source).__name__}")
    matcher = _BPFMatcher(filter, name) if filter is not None else None
    try:
        src = OfflineCapture(file, source=name, close_file=close_file, chunk_size=chunk_size,
                             on_truncated=on_truncated, filter=matcher)
        if matcher is not None:
            matcher.program(src.linktype if src.linktype is not None else 1)
        return src
    except BaseException:
        if close_file:
            file.close()
        raise
