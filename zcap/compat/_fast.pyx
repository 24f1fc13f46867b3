# cython: language_level=3, cdivision=True
"""The per-packet parts of the compat shims, compiled.

A peer hands out one Python object per packet (pcapy's Pkthdr, pypcap's
float timestamp); built in Python, that object alone would cost more than
the peer's whole C call.  These functions build them in C from what zcap's
public API gives: a Packet's properties and buffer, a Batch's columns, and
for live captures the Cython consumer API (`cimport zcap._ring`,
Ring.consume() with a C callback), which hands each packet over as a
pointer and lengths without making a zcap Packet object for it.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.object cimport PyObject
from libc.stdint cimport int64_t, uint32_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy

from zcap._ring cimport Ring


# Raw references, so that a bytes object can be filled and then shrunk to fit
# with _PyBytes_Resize (CPython's own way) while we hold the only one.
from zcap.includes.python cimport _PyBytes_Resize, _bytes_data, _new_bytes, _xdecref

DEF NS = 1000000000


cdef inline int64_t _floordiv(int64_t a, int64_t b) noexcept nogil:
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


cdef inline bytes _bytes(pkt):
    """bytes(pkt) through the buffer protocol: one copy, no method lookup."""
    cdef Py_buffer view
    PyObject_GetBuffer(pkt, &view, PyBUF_SIMPLE)
    try:
        return PyBytes_FromStringAndSize(<const char *>view.buf, view.len)
    finally:
        PyBuffer_Release(&view)


def packet_bytes(pkt):
    """The packet's bytes (a copy)."""
    return _bytes(pkt)


cdef inline Pkthdr _hdr(pkt):
    cdef Pkthdr h = Pkthdr.__new__(Pkthdr)
    h.ts_ns = pkt.ts_ns
    h.caplen = pkt.caplen
    h.wirelen = pkt.wirelen
    return h


def pcapy_pair(pkt):
    """(Pkthdr, bytes) for one zcap Packet."""
    return (_hdr(pkt), _bytes(pkt))


_EOF = (None, b"")


cdef class PcapyNext:
    """A pcapy Reader's next() while it needs no bookkeeping: one C call per packet.

    next_fn(wait) is the capture's own next (zcap's ring or savefile reader).
    """

    cdef object next_fn
    cdef object wait

    def __init__(self, next_fn, wait):
        self.next_fn = next_fn
        self.wait = wait

    def __call__(self):
        pkt = self.next_fn(self.wait)
        if pkt is None:
            return _EOF
        return (_hdr(pkt), _bytes(pkt))


def pcapy_loop(packets, long long cnt, callback, accept):
    """callback(Pkthdr, bytes) for each packet of the iterable until `cnt`
    (cnt <= 0: until it ends); `accept(pkt)` (or None) selects them.
    Returns the number of callbacks made.  A callback's exception propagates."""
    cdef long long n = 0
    if cnt > 0:
        for pkt in packets:
            if accept is not None and not accept(pkt):
                continue
            callback(_hdr(pkt), _bytes(pkt))
            n += 1
            if n >= cnt:
                break
    else:
        for pkt in packets:
            if accept is not None and not accept(pkt):
                continue
            callback(_hdr(pkt), _bytes(pkt))
            n += 1
    return n


def pcapy_batch(batch, Py_ssize_t start, Py_ssize_t stop):
    """pcapy-ng's next_batch() result for packets [start, stop) of a zcap Batch:
    (bytes holding them back to back, 16-byte records of native u32 sec,
    usec, offset, caplen).  One copy of each packet, straight from the batch.
    """
    cdef const uint32_t[:] off = batch.offsets
    cdef const uint32_t[:] cap = batch.caplen
    cdef const int64_t[:] ts = batch.ts_ns
    cdef const unsigned char[:] buf = batch.buffer
    cdef Py_ssize_t i, n
    cdef size_t total = 0, pos = 0, limit
    cdef int64_t t, sec
    cdef uint32_t *rec
    cdef char *out
    if start < 0 or stop > off.shape[0] or start > stop:
        raise IndexError(f"packets [{start}, {stop}) are outside the batch of {off.shape[0]}")
    n = stop - start
    if n == 0:
        return b"", b""
    limit = <size_t>buf.shape[0]
    for i in range(start, stop):
        if <size_t>off[i] + cap[i] > limit:
            raise ValueError("a packet of the batch lies outside its buffer")
        total += cap[i]
    data = PyBytes_FromStringAndSize(NULL, total)
    meta = PyBytes_FromStringAndSize(NULL, n * 16)
    out = PyBytes_AS_STRING(data)
    rec = <uint32_t *>PyBytes_AS_STRING(meta)
    for i in range(start, stop):
        memcpy(out + pos, &buf[0] + off[i], cap[i])
        t = ts[i]
        sec = _floordiv(t, NS)
        rec[0] = <uint32_t>sec
        rec[1] = <uint32_t>((t - sec * NS) // 1000)
        rec[2] = <uint32_t>pos
        rec[3] = cap[i]
        rec += 4
        pos += cap[i]
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
    return (_pypcap_ts(pkt.ts_ns, in_ns), _bytes(pkt))


def pypcap_loop(packets, long long cnt, callback, tuple args, bint in_ns, accept):
    """callback(timestamp, bytes, *args) per packet, as pcapy_loop."""
    cdef long long n = 0
    for pkt in packets:
        if accept is not None and not accept(pkt):
            continue
        callback(_pypcap_ts(pkt.ts_ns, in_ns), _bytes(pkt), *args)
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
                return (_pypcap_ts(pkt.ts_ns, self.in_ns), _bytes(pkt))


# -- live captures through Ring.consume() ----------------------------------------

cdef struct Staging:
    unsigned char *buf      # packet bytes, back to back
    size_t size             # allocated
    size_t used
    uint32_t *meta          # next_batch(): (sec, usec, offset, caplen) per packet
    Py_ssize_t meta_size    # records allocated
    Py_ssize_t n            # packets staged
    int64_t ts_ns           # the last packet's metadata (next(), loop())
    uint32_t caplen
    uint32_t wirelen
    int oom


cdef inline int _reserve(Staging *s, size_t more) noexcept nogil:
    cdef size_t want = s.used + more
    cdef unsigned char *p
    if want <= s.size:
        return 0
    if want < 2 * s.size:
        want = 2 * s.size
    if want < 65536:
        want = 65536
    p = <unsigned char *>realloc(s.buf, want)
    if p == NULL:
        s.oom = 1
        return -1
    s.buf = p
    s.size = want
    return 0


cdef int _stage_one(void *ctx, const unsigned char *data, uint32_t caplen,
                    uint32_t wirelen, int64_t ts_ns) noexcept nogil:
    cdef Staging *s = <Staging *>ctx
    s.used = 0
    if _reserve(s, caplen) < 0:
        return 1
    memcpy(s.buf, data, caplen)
    s.used = caplen
    s.caplen = caplen
    s.wirelen = wirelen
    s.ts_ns = ts_ns
    s.n = 1
    return 1


cdef int _stage_batch(void *ctx, const unsigned char *data, uint32_t caplen,
                      uint32_t wirelen, int64_t ts_ns) noexcept nogil:
    cdef Staging *s = <Staging *>ctx
    cdef uint32_t *rec
    cdef int64_t sec
    if _reserve(s, caplen) < 0:
        return 1
    if s.n >= s.meta_size:
        rec = <uint32_t *>realloc(s.meta, (s.meta_size * 2 + 256) * 16)
        if rec == NULL:
            s.oom = 1
            return 1
        s.meta = rec
        s.meta_size = s.meta_size * 2 + 256
    memcpy(s.buf + s.used, data, caplen)
    rec = s.meta + 4 * s.n
    sec = _floordiv(ts_ns, NS)
    rec[0] = <uint32_t>sec
    rec[1] = <uint32_t>((ts_ns - sec * NS) // 1000)
    rec[2] = <uint32_t>s.used
    rec[3] = caplen
    s.used += caplen
    s.n += 1
    return 0


cdef struct BatchFill:
    char *out               # the bytes object being filled
    size_t size
    size_t used
    uint32_t *meta          # the meta bytes object: room for max_n records
    Py_ssize_t n
    unsigned char *spill    # a packet that did not fit in `out` (appended after)
    size_t spill_size
    size_t spill_len
    int spilled
    int oom


cdef int _fill_batch(void *ctx, const unsigned char *data, uint32_t caplen,
                     uint32_t wirelen, int64_t ts_ns) noexcept nogil:
    cdef BatchFill *b = <BatchFill *>ctx
    cdef uint32_t *rec = b.meta + 4 * b.n
    cdef int64_t sec = _floordiv(ts_ns, NS)
    cdef unsigned char *p
    rec[0] = <uint32_t>sec
    rec[1] = <uint32_t>((ts_ns - sec * NS) // 1000)
    rec[2] = <uint32_t>b.used
    rec[3] = caplen
    b.n += 1
    if b.used + caplen <= b.size:
        memcpy(b.out + b.used, data, caplen)
        b.used += caplen
        return 0
    # The packet is consumed already: keep it aside, stop, append it after.
    if caplen > b.spill_size:
        p = <unsigned char *>realloc(b.spill, caplen)
        if p == NULL:
            b.oom = 1
            return 1
        b.spill = p
        b.spill_size = caplen
    memcpy(b.spill, data, caplen)
    b.spill_len = caplen
    b.spilled = 1
    return 1


cdef class RingReader:
    """Reads a live zcap capture (its `ring`) for the shims, one copy per packet.

    timeout_ms: how long next() / next_batch() / dispatch wait for the first
    packet (-1: forever, 0: not at all).  Packets after the first are taken
    only if already there, as pcap_dispatch() takes one buffer.
    """

    cdef Ring ring
    cdef public int timeout_ms
    cdef Staging st
    cdef BatchFill bf
    cdef size_t avg_caplen      # of the last batch: sizes the next one's bytes

    def __cinit__(self):
        self.bf.spill = NULL
        self.bf.spill_size = 0
        self.avg_caplen = 256
        self.st.buf = NULL
        self.st.meta = NULL
        self.st.size = 0
        self.st.meta_size = 0
        self.st.used = 0
        self.st.n = 0
        self.st.oom = 0

    def __dealloc__(self):
        free(self.st.buf)
        free(self.st.meta)
        free(self.bf.spill)

    def __init__(self, ring, int timeout_ms):
        self.ring = <Ring?>ring
        self.timeout_ms = timeout_ms

    cdef inline Py_ssize_t _one(self, int timeout_ms) except -1:
        self.st.n = 0
        cdef Py_ssize_t got = self.ring.consume(_stage_one, &self.st, 1, timeout_ms)
        if self.st.oom:
            self.st.oom = 0
            raise MemoryError("no memory to copy a packet out of the ring")
        return got

    cdef inline Pkthdr _last_hdr(self):
        cdef Pkthdr h = Pkthdr.__new__(Pkthdr)
        h.ts_ns = self.st.ts_ns
        h.caplen = self.st.caplen
        h.wirelen = self.st.wirelen
        return h

    cdef inline object _last_ts(self, bint in_ns):
        return _pypcap_ts(self.st.ts_ns, in_ns)

    cdef inline bytes _last_bytes(self):
        return PyBytes_FromStringAndSize(<const char *>self.st.buf, self.st.used)

    # pcapy
    def __call__(self):
        """pcapy next(): (Pkthdr, bytes), or (None, b'') when none came in time."""
        if self._one(self.timeout_ms) == 0:
            return _EOF
        return (self._last_hdr(), self._last_bytes())

    def pcapy_loop(self, long long cnt, callback):
        """callback(Pkthdr, bytes) for cnt packets (<= 0: until close/breakloop)."""
        cdef long long n = 0
        while cnt <= 0 or n < cnt:
            if self._one(-1) == 0:
                break
            callback(self._last_hdr(), self._last_bytes())
            n += 1
        return n

    def pcapy_batch(self, Py_ssize_t max_n):
        """pcapy-ng next_batch(): (bytes, 16-byte records) of up to max_n packets.

        The packets are copied once, from the ring straight into the bytes
        object returned (sized from the last batch, resized to fit).
        """
        cdef Py_ssize_t got
        cdef size_t guess, used
        cdef PyObject *d = NULL
        cdef PyObject *m = NULL
        if max_n <= 0:
            max_n = 256
        # Exactly what max_n packets of the last batch's mean size take: with
        # steady traffic the bytes object is then never resized, and malloc
        # keeps reusing the same block for it (a size that keeps changing
        # would have glibc mmap and fault in a fresh one on every call).
        guess = <size_t>max_n * self.avg_caplen
        if guess > (<size_t>1 << 26):
            guess = <size_t>1 << 26
        try:
            d = _new_bytes(NULL, guess)
            m = _new_bytes(NULL, max_n * 16)
            if d == NULL or m == NULL:
                raise MemoryError("no memory for a batch")
            self.bf.out = _bytes_data(d)
            self.bf.size = guess
            self.bf.used = 0
            self.bf.meta = <uint32_t *>_bytes_data(m)
            self.bf.n = 0
            self.bf.spilled = 0
            self.bf.oom = 0
            got = self.ring.consume(_fill_batch, &self.bf, 1, self.timeout_ms)
            if got and max_n > 1 and not self.bf.spilled:
                self.ring.consume(_fill_batch, &self.bf, max_n - 1, 0)
            if self.bf.oom:
                raise MemoryError("no memory to copy a packet out of the ring")
            if self.bf.n == 0:
                return b"", b""
            used = self.bf.used
            if self.bf.spilled:
                _PyBytes_Resize(&d, used + self.bf.spill_len)
                memcpy(_bytes_data(d) + used, self.bf.spill, self.bf.spill_len)
                used += self.bf.spill_len
            elif used != guess:
                _PyBytes_Resize(&d, used)
            if self.bf.n != max_n:
                _PyBytes_Resize(&m, self.bf.n * 16)
            self.avg_caplen = (used + <size_t>self.bf.n - 1) // <size_t>self.bf.n
            return <object>d, <object>m
        finally:
            _xdecref(d)
            _xdecref(m)

    # pypcap
    def pypcap_loop(self, long long cnt, callback, tuple args, bint in_ns):
        cdef long long n = 0
        while cnt <= 0 or n < cnt:
            if self._one(-1) == 0:
                break
            callback(self._last_ts(in_ns), self._last_bytes(), *args)
            n += 1
        return n


cdef class PypcapRingIterator:
    """`for ts, buf in pc` on a live capture; ends when it is closed."""

    cdef RingReader reader
    cdef bint in_ns

    def __init__(self, RingReader reader, bint in_ns):
        self.reader = reader
        self.in_ns = in_ns

    def __iter__(self):
        return self

    def __next__(self):
        if self.reader._one(-1) == 0:
            raise StopIteration
        return (self.reader._last_ts(self.in_ns), self.reader._last_bytes())
