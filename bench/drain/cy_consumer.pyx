# cython: language_level=3, boundscheck=False, wraparound=False
"""A Cython-level zcap consumer: Ring.consume() with a C callback.

No Python object is made per packet: the callback sees each packet as a
pointer and checks the big-endian u64 sequence number at offset 42.
Built at benchmark time by bench/drain/build_cy_consumer.py.
"""

from libc.stdint cimport uint32_t, uint64_t, int64_t
from libc.string cimport memcpy

cimport zcap._ring
from zcap._ring cimport Ring

cdef extern from "<endian.h>" nogil:
    uint64_t be64toh(uint64_t)

cdef enum:
    SEQ_OFFSET = 42         # Ethernet 14 + IPv4 20 + UDP 8

cdef struct SequenceCheck:
    uint64_t expected
    uint64_t got            # the first wrong number, when failed
    int failed


cdef int check_sequence(void *ctx, const unsigned char *data, uint32_t caplen,
                        uint32_t wirelen, int64_t ts_ns) noexcept nogil:
    cdef SequenceCheck *check = <SequenceCheck *>ctx
    cdef uint64_t seq
    if caplen < SEQ_OFFSET + 8:
        check.failed = 1
        return 1
    memcpy(&seq, data + SEQ_OFFSET, 8)
    seq = be64toh(seq)
    if seq != check.expected:
        check.got = seq
        check.failed = 1
        return 1
    check.expected += 1
    return 0


def drain(ring, Py_ssize_t count, int timeout_ms=1000):
    """Consume exactly `count` packets from a zcap Ring (cap.ring), checking order.

    Raises ValueError on a sequence break and TimeoutError if the ring stays
    empty for timeout_ms before `count` packets arrived.
    """
    cdef Ring r = <Ring?>ring
    cdef SequenceCheck check
    cdef Py_ssize_t done = 0, got
    check.expected = 0
    check.got = 0
    check.failed = 0
    while done < count:
        got = r.consume(check_sequence, &check, count - done, timeout_ms)
        if check.failed:
            raise ValueError(f"sequence break after {check.expected} packets: got {check.got}")
        if got == 0:
            raise TimeoutError(f"ring empty for {timeout_ms} ms after {done} of {count} packets")
        done += got
    return done


cdef struct LiveCount:
    uint64_t count          # packets numbered at or above this end the run
    uint64_t packets
    int done


cdef int count_packet(void *ctx, const unsigned char *data, uint32_t caplen,
                      uint32_t wirelen, int64_t ts_ns) noexcept nogil:
    cdef LiveCount *c = <LiveCount *>ctx
    cdef uint64_t seq
    if caplen >= SEQ_OFFSET + 8:
        memcpy(&seq, data + SEQ_OFFSET, 8)
        if be64toh(seq) >= c.count:
            c.done = 1
            return 1
    c.packets += 1
    return 0


def count_until_marker(ring, uint64_t count, int timeout_ms=100):
    """Live mode: count packets numbered below `count` until one numbered
    `count` or above arrives (bench/live/live.py's end marker); returns the count.

    Blocks while the ring is empty; the driver bounds the time.
    """
    cdef Ring r = <Ring?>ring
    cdef LiveCount c
    c.count = count
    c.packets = 0
    c.done = 0
    while not c.done:
        r.consume(count_packet, &c, 1 << 30, timeout_ms)
    return c.packets
