"""Arrow export of batches, and the Parquet / Arrow IPC writers behind `zcap -w out.parquet`.

    rb = batch.to_arrow()                   # pyarrow.RecordBatch, packet bytes not copied
    polars.from_arrow(rb); duckdb.sql("select ... from rb")

Columns: ts_ns (timestamp[ns], UTC epoch), caplen, wirelen (uint32),
ifindex (int32), direction ("in"/"out"), pkttype (uint8), data (binary_view:
the packet bytes), then every header column of zcap._headers (same names,
types and fill values as batch.headers(); ip6_src / ip6_dst as
fixed_size_binary(16)).

Zero copy and lifetime.  `data` is a binary_view column whose views point
into the batch's buffer: the RecordBatch holds a buffer export of it, the same
way a memoryview of `batch.buffer` does, so zcap's packet lifetime rule
applies (docs/architecture.md): when the capture moves past the block, the
block's pages are swapped for a private copy and the RecordBatch never shows
recycled bytes.  The small per-packet columns (timestamps, lengths) are
copied, because a ring reuses its packet table for the next block; the
header columns are the Headers' own memory, shared without a copy.

pyarrow is optional (`pip install 'zcap[arrow]'`): zcap imports it only here,
and asking for Arrow without it raises ImportError saying what to install.
"""

from __future__ import annotations

import sys
import time
from array import array
from typing import Any, Optional

from zcap import _headers

__all__ = ["batch_to_arrow", "record_batch", "schema", "require_pyarrow", "TableDumper",
           "ARROW_FORMATS"]

ARROW_FORMATS = ("parquet", "arrow")
INSTALL_HINT = "pip install 'zcap[arrow]' (or: pip install pyarrow)"

# Arrow types of the header columns, by the buffer format of zcap._headers
_FORMAT_TYPES = {"B": "uint8", "H": "uint16", "h": "int16", "I": "uint32", "i": "int32"}


def require_pyarrow() -> Any:
    """The pyarrow module, or ImportError saying how to install it."""
    try:
        import pyarrow  # type: ignore[import-untyped]
    except ImportError:
        raise ImportError(f"Arrow and Parquet output need pyarrow, which is not installed: "
                          f"{INSTALL_HINT}") from None
    return pyarrow


def _header_type(pa: Any, name: str, fmt: str, ndim: int) -> Any:
    if ndim == 2:
        return pa.binary(16)
    return getattr(pa, _FORMAT_TYPES[fmt])()


def schema() -> Any:
    """The pyarrow schema of to_arrow() and of the Parquet files."""
    pa = require_pyarrow()
    probe = _headers.parse(b"", array("I"), array("I"))
    fields = [pa.field("ts_ns", pa.timestamp("ns")), pa.field("caplen", pa.uint32()),
              pa.field("wirelen", pa.uint32()), pa.field("ifindex", pa.int32()),
              pa.field("direction", pa.dictionary(pa.int8(), pa.string())),
              pa.field("pkttype", pa.uint8()), pa.field("data", pa.binary_view())]
    for name in _headers.COLUMNS:
        col = probe.column(name)
        fields.append(pa.field(name, _header_type(pa, name, col.format, col.ndim)))
    return pa.schema(fields)


# pkttype -> direction index: PACKET_OUTGOING (4) is "out" (1), every other type "in" (0)
_OUTGOING = bytes(1 if t == 4 else 0 for t in range(256))
_DIRECTIONS: list = []


def _directions(pa: Any) -> Any:
    """The direction dictionary, made once (pa.array() of Python strings costs
    a failed `import dateutil` on every call)."""
    if not _DIRECTIONS:
        _DIRECTIONS.append(pa.array(["in", "out"], type=pa.string()))
    return _DIRECTIONS[0]


def _copied(pa: Any, typ: Any, n: int, column: Any) -> Any:
    return pa.Array.from_buffers(typ, n, [None, pa.py_buffer(bytes(column))])


def record_batch(buffer: Any, offsets: Any, caplen: Any, wirelen: Any, ts_ns: Any, headers: Any,
                 ifindex: Any, pkttype: Any) -> Any:
    """A RecordBatch of packets laid out in `buffer` (see the module docstring).

    `buffer` is referenced, not copied: keep it unchanged while the result lives.
    """
    pa = require_pyarrow()
    n = len(offsets)
    views = _headers.binary_views(buffer, offsets, caplen)
    data = pa.Array.from_buffers(pa.binary_view(), n,
                                 [None, pa.py_buffer(views), pa.py_buffer(buffer)])
    pkttypes = bytes(pkttype)
    direction = pa.DictionaryArray.from_arrays(
        pa.Array.from_buffers(pa.int8(), n, [None, pa.py_buffer(
            pkttypes.translate(_OUTGOING) if 4 in pkttypes else bytes(n))]),
        _directions(pa))
    arrays = [_copied(pa, pa.timestamp("ns"), n, ts_ns), _copied(pa, pa.uint32(), n, caplen),
              _copied(pa, pa.uint32(), n, wirelen), _copied(pa, pa.int32(), n, ifindex),
              direction, pa.Array.from_buffers(pa.uint8(), n, [None, pa.py_buffer(pkttypes)]), data]
    names = ["ts_ns", "caplen", "wirelen", "ifindex", "direction", "pkttype", "data"]
    headers.compute()                       # every column group in one pass
    for name in _headers.COLUMNS:
        col = headers.column(name)
        arrays.append(pa.Array.from_buffers(_header_type(pa, name, col.format, col.ndim), n,
                                            [None, pa.py_buffer(col)]))
        names.append(name)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def batch_to_arrow(batch: Any) -> Any:
    """batch.to_arrow() for zcap.Batch and OfflineBatch."""
    require_pyarrow()
    headers = batch.headers()
    _vlan, ifindex, pkttype = batch._meta_columns()
    return record_batch(batch.buffer, batch.offsets, batch.caplen, batch.wirelen, batch.ts_ns,
                        headers, ifindex, pkttype)


class TableDumper:
    """`zcap -w FILE` for format "parquet" or "arrow" (Arrow IPC file; a stream on stdout).

    Packets are gathered (copied: the capture moves on) into row groups of
    `rows` packets, parsed into header columns in C, and written; -C and -G
    rotate exactly as the pcap Dumper does (zcap.dumper): -C counts the bytes
    written plus the bytes still gathered.  Same interface as zcap.dumper.Dumper.
    """

    def __init__(self, path: str, *, format: str, linktype: int, snaplen: int, nano: bool,
                 if_name: Optional[str], file_size: Optional[int] = None,
                 rotate_seconds: Optional[float] = None, rows: int = 65536) -> None:
        self._pa = require_pyarrow()
        import pyarrow.ipc  # type: ignore[import-untyped]
        import pyarrow.parquet  # type: ignore[import-untyped]  # noqa: F401
        self.path = path
        self.format = format
        self.linktype = linktype
        self.file_size = file_size
        self.rotate_seconds = rotate_seconds
        self.file_count = None          # no -W ring of table files (the command refuses -W)
        self.finished = False           # never: there is no -W N -G T limit either
        self.rows = rows
        self.files: list[str] = []
        self.packets = 0
        self._sequence = 0
        self._schema = schema()
        self._writer: Any = None
        self._sink: Any = None
        self._opened_at = 0.0
        self._reset()
        self._open_next()

    def _next_name(self) -> str:
        from zcap.dumper import Dumper
        return Dumper._next_name(self)      # type: ignore[arg-type]  # the pcap files' naming

    def _reset(self) -> None:
        self._data = bytearray()
        self._offsets = array("I")
        self._caplen = array("I")
        self._wirelen = array("I")
        self._ts = array("q")
        self._ifindex = array("i")
        self._pkttype = bytearray()
        self._vlan = array("i")
        self._linktypes = array("H")

    def _open_next(self) -> None:
        self._close_file()
        name = self._next_name()
        pa = self._pa
        if name == "-":
            self._sink = pa.PythonFile(sys.stdout.buffer, mode="w")
        else:
            self._sink = pa.OSFile(name, "wb")
        if self.format == "parquet":
            import pyarrow.parquet as pq  # type: ignore[import-untyped]
            self._writer = pq.ParquetWriter(self._sink, self._schema, compression="zstd")
        elif name == "-":
            self._writer = pa.ipc.new_stream(self._sink, self._schema)
        else:
            self._writer = pa.ipc.new_file(self._sink, self._schema)
        self.files.append(name)
        self._opened_at = time.monotonic()

    def _close_file(self) -> None:
        if self._writer is not None:
            self._flush_rows()
            self._writer.close()
            self._writer = None
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    def _flush_rows(self) -> None:
        if not len(self._offsets):
            return
        linktypes = self._linktypes
        lt: Any = linktypes[0] if linktypes.count(linktypes[0]) == len(linktypes) else memoryview(linktypes)
        vlan = memoryview(self._vlan) if any(v >= 0 for v in self._vlan) else None
        data = bytes(self._data)
        hdrs = _headers.parse(data, self._offsets, self._caplen, lt, vlan)
        rb = record_batch(data, self._offsets, self._caplen, self._wirelen, self._ts, hdrs,
                          self._ifindex, self._pkttype)
        if self.format == "parquet":
            self._writer.write_table(self._pa.Table.from_batches([rb]))
        else:
            self._writer.write_batch(rb)
        self._reset()

    def _written(self) -> int:
        return int(self._sink.tell()) if self._sink is not None else 0

    def due(self) -> bool:
        return self.rotate_seconds is not None and time.monotonic() - self._opened_at >= self.rotate_seconds

    def write(self, pkt: Any) -> None:
        if self.due() or (self.file_size and self._written() + len(self._data) >= self.file_size
                          and (self._written() or len(self._offsets))):
            self._open_next()
        self._offsets.append(len(self._data))
        self._data += pkt
        self._caplen.append(pkt.caplen)
        self._wirelen.append(pkt.wirelen)
        self._ts.append(pkt.ts_ns)
        self._ifindex.append(pkt.ifindex)
        self._pkttype.append(int(pkt.pkttype) & 0xFF)
        vlan = pkt.vlan
        self._vlan.append(vlan & 0xFFF if vlan is not None and not pkt.vlan_inserted else -1)
        self._linktypes.append(getattr(pkt, "linktype", self.linktype))
        self.packets += 1
        if len(self._offsets) >= self.rows:
            self._flush_rows()

    def tick(self) -> None:
        if self.due():
            self._open_next()

    def close(self) -> None:
        self._close_file()
