# cython: language_level=3
"""The per-packet parts of the compat shims, compiled.

A peer hands out one Python object per packet (pcapy's Pkthdr, pypcap's
float timestamp); built in Python, that object alone would cost more than
the peer's whole C call.  These functions build them in C from what zcap's
public API gives: a Packet's properties and buffer, a Batch's columns.
Nothing here touches the ring itself.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint32_t
from libc.string cimport memcpy

DEF NS = 1000000000


cdef inline int64_t _floordiv(int64_t a, int64_t b):
    cdef int64_t q = a // b
    if (a % b != 0) and ((a < 0) != (b < 0)):
        q -= 1
    return q


cdef class Pkthdr:
    """pcapy's packet header: getts() -> (seconds, microseconds), getlen(), getcaplen().

    zcap keeps the nanoseconds: getts_ns() and the ts_ns attribute.
    """

    cdef readonly int64_t ts_ns
    cdef readonly uint32_t caplen
    cdef readonly uint32_t wirelen

    def __init__(self, int64_t ts_ns=0, uint32_t caplen=0, wirelen=None):
        self.ts_ns = ts_ns
        self.caplen = caplen
        self.wirelen = caplen if wirelen is None else wirelen

    def getts(self):
        """(seconds, microseconds) since the Epoch, as pcapy gives them."""
        cdef int64_t sec = _floordiv(self.ts_ns, NS)
        return (sec, (self.ts_ns - sec * NS) // 1000)

    def getts_ns(self):
        """The exact timestamp: integer nanoseconds since the Epoch."""
        return self.ts_ns

    def getlen(self):
        """The packet's length on the wire."""
        return self.wirelen

    def getcaplen(self):
        """The bytes captured (len(data))."""
        return self.caplen

    def __repr__(self):
        sec, usec = self.getts()
        return f"<Pkthdr ts={sec}.{usec:06d} caplen={self.caplen} len={self.wirelen}>"


cdef inline Pkthdr _hdr(pkt):
    cdef Pkthdr h = Pkthdr.__new__(Pkthdr)
    h.ts_ns = pkt.ts_ns
    h.caplen = pkt.caplen
    h.wirelen = pkt.wirelen
    return h


def pcapy_pair(pkt):
    """(Pkthdr, bytes) for one zcap Packet."""
    return (_hdr(pkt), bytes(pkt))


def pcapy_loop(packets, long long cnt, callback, accept):
    """callback(Pkthdr, bytes) for each packet of the iterable until `cnt`
    (cnt <= 0: until it ends); `accept(pkt)` (or None) selects them.
    Returns the number of callbacks made.  A callback's exception propagates."""
    cdef long long n = 0
    if cnt > 0:
        for pkt in packets:
            if accept is not None and not accept(pkt):
                continue
            callback(_hdr(pkt), bytes(pkt))
            n += 1
            if n >= cnt:
                break
    else:
        for pkt in packets:
            if accept is not None and not accept(pkt):
                continue
            callback(_hdr(pkt), bytes(pkt))
            n += 1
    return n


def pcapy_batch(batch, Py_ssize_t start, Py_ssize_t stop):
    """pcapy-ng's next_batch() result for packets [start, stop) of a zcap Batch:
    (bytes holding them, 16-byte records of native u32 sec, usec, offset, caplen).

    One copy of the span of the buffer the packets occupy; offsets are
    rebased to it.
    """
    cdef const uint32_t[:] off = batch.offsets
    cdef const uint32_t[:] cap = batch.caplen
    cdef const int64_t[:] ts = batch.ts_ns
    cdef const unsigned char[:] buf = batch.buffer
    cdef Py_ssize_t i, n
    cdef size_t lo, hi, end
    cdef int64_t t, sec
    cdef uint32_t *rec
    if start < 0 or stop > off.shape[0] or start > stop:
        raise IndexError(f"packets [{start}, {stop}) are outside the batch of {off.shape[0]}")
    n = stop - start
    if n == 0:
        return b"", b""
    lo = <size_t>-1
    hi = 0
    for i in range(start, stop):
        end = <size_t>off[i] + cap[i]
        if off[i] < lo:
            lo = off[i]
        if end > hi:
            hi = end
    if hi > <size_t>buf.shape[0]:
        raise ValueError("a packet of the batch lies outside its buffer")
    data = PyBytes_FromStringAndSize(<const char *>&buf[0] + lo, hi - lo)
    meta = PyBytes_FromStringAndSize(NULL, n * 16)
    rec = <uint32_t *>PyBytes_AS_STRING(meta)
    for i in range(start, stop):
        t = ts[i]
        sec = _floordiv(t, NS)
        rec[0] = <uint32_t>sec
        rec[1] = <uint32_t>((t - sec * NS) // 1000)
        rec[2] = <uint32_t>(off[i] - lo)
        rec[3] = cap[i]
        rec += 4
    return data, meta


def pcapy_pack(packets):
    """next_batch()'s (bytes, meta) for a list of Packets (the filtered path)."""
    cdef Py_ssize_t n = len(packets), total = 0, pos = 0
    cdef uint32_t *rec
    cdef int64_t t, sec
    cdef const unsigned char[:] view
    for pkt in packets:
        total += len(pkt)
    data = PyBytes_FromStringAndSize(NULL, total)
    meta = PyBytes_FromStringAndSize(NULL, n * 16)
    rec = <uint32_t *>PyBytes_AS_STRING(meta)
    for pkt in packets:
        view = memoryview(pkt)
        if view.shape[0]:
            memcpy(PyBytes_AS_STRING(data) + pos, &view[0], view.shape[0])
        t = pkt.ts_ns
        sec = _floordiv(t, NS)
        rec[0] = <uint32_t>sec
        rec[1] = <uint32_t>((t - sec * NS) // 1000)
        rec[2] = <uint32_t>pos
        rec[3] = <uint32_t>view.shape[0]
        rec += 4
        pos += view.shape[0]
        view = None
    return data, meta


cdef inline object _pypcap_ts(int64_t t, bint in_ns):
    cdef int64_t sec
    if in_ns:
        return t
    sec = _floordiv(t, NS)
    # as pypcap computes it with nanosecond precision: tv_sec + tv_nsec * 1e-9
    return <double>sec + <double>(t - sec * NS) * 1e-9


def pypcap_pair(pkt, bint in_ns):
    """pypcap's (timestamp, bytes) for one zcap Packet."""
    return (_pypcap_ts(pkt.ts_ns, in_ns), bytes(pkt))


def pypcap_loop(packets, long long cnt, callback, tuple args, bint in_ns, accept):
    """callback(timestamp, bytes, *args) per packet, as pcapy_loop."""
    cdef long long n = 0
    for pkt in packets:
        if accept is not None and not accept(pkt):
            continue
        callback(_pypcap_ts(pkt.ts_ns, in_ns), bytes(pkt), *args)
        n += 1
        if cnt > 0 and n >= cnt:
            break
    return n


cdef class PypcapIterator:
    """`for ts, buf in pc`: pypcap's pairs straight from zcap's iterator."""

    cdef object packets
    cdef bint in_ns
    cdef object accept

    def __init__(self, packets, bint in_ns, accept):
        self.packets = iter(packets)
        self.in_ns = in_ns
        self.accept = accept

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            pkt = next(self.packets)
            if self.accept is None or self.accept(pkt):
                return (_pypcap_ts(pkt.ts_ns, self.in_ns), bytes(pkt))
