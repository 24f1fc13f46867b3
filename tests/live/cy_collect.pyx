# cython: language_level=3, boundscheck=False, wraparound=False
"""A test consumer for Ring.consume(): copies every packet the C callback sees.

Built by tests/live/cy_build.py when a test needs it.
"""

from libc.stdint cimport uint32_t, int64_t
from libc.string cimport memcpy

from zcap._ring cimport Ring

cdef enum:
    ROOM = 1 << 22


cdef struct Collected:
    unsigned char *buf
    size_t used
    size_t packets
    size_t stop_every       # ask consume() to stop after every this many packets (0: never)


cdef int collect_packet(void *ctx, const unsigned char *data, uint32_t caplen,
                        uint32_t wirelen, int64_t ts_ns) noexcept nogil:
    cdef Collected *c = <Collected *>ctx
    if c.used + 8 + caplen > ROOM:
        return 1
    memcpy(c.buf + c.used, &caplen, 4)
    memcpy(c.buf + c.used + 4, &wirelen, 4)
    memcpy(c.buf + c.used + 8, data, caplen)
    c.used += 8 + caplen
    c.packets += 1
    return 1 if c.stop_every and c.packets % c.stop_every == 0 else 0


def consume_all(ring, int timeout_ms=300, Py_ssize_t budget=1 << 20, size_t stop_every=0):
    """Every packet Ring.consume() passes to a C callback until the ring stays
    empty for timeout_ms: a list of (bytes, wirelen).  Each consume() call
    may pass at most `budget` packets; with stop_every the callback asks it
    to stop after every stop_every-th packet."""
    cdef Ring r = <Ring?>ring
    cdef bytearray store = bytearray(ROOM)
    cdef unsigned char[::1] view = store
    cdef Collected c
    cdef uint32_t caplen, wirelen
    c.buf = &view[0]
    c.used = 0
    c.packets = 0
    c.stop_every = stop_every
    while r.consume(collect_packet, &c, budget, timeout_ms) > 0:
        pass
    out = []
    cdef size_t off = 0
    while off < c.used:
        memcpy(&caplen, c.buf + off, 4)
        memcpy(&wirelen, c.buf + off + 4, 4)
        out.append((bytes(store[off + 8:off + 8 + caplen]), wirelen))
        off += 8 + caplen
    return out
