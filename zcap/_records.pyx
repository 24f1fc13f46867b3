# cython: boundscheck=False, wraparound=False, cdivision=True
"""Index classic pcap records in C (the hot loop of zcap.offline's pcap reader).

pcap_records() walks whole records of buf[pos:end] and appends each one's
data offset, captured length, wire length and timestamp to the reader's
table columns, exactly as the Python loop it replaces did; it stops at the
first record that is incomplete or whose captured length is over the limit
and says which, so the reader keeps its error messages and offsets.
"""

from libc.stdint cimport int64_t, uint8_t, uint32_t
from libc.string cimport memcpy

# why pcap_records() stopped
NEED_HEADER = 0         # fewer bytes left than a record header
NEED_DATA = 1           # the record's data is not all there
TOO_LONG = 2            # captured length over the limit (a corrupt file)


cdef inline uint32_t _u32(const uint8_t *p, bint big) noexcept nogil:
    if big:
        return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]
    return p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


def pcap_records(buf, Py_ssize_t pos, Py_ssize_t end, int hlen, bint big_endian,
                 int64_t scale, uint32_t limit, offsets, caplen, wirelen, ts_ns):
    """Append the whole records of buf[pos:end] to the four array columns.

    Returns (pos, why, caplen): where it stopped, NEED_HEADER / NEED_DATA /
    TOO_LONG, and the captured length of the record it stopped at (0 for
    NEED_HEADER).
    """
    cdef const uint8_t[::1] view = buf
    cdef const uint8_t *b = &view[0] if view.shape[0] else NULL
    cdef Py_ssize_t p = pos, n = 0, i
    cdef uint32_t cl = 0, wl
    cdef int why
    if end > view.shape[0] or pos < 0 or hlen < 16:
        raise ValueError("record walk outside the buffer")
    # first pass: how many whole records
    while True:
        if end - p < hlen:
            why = NEED_HEADER
            cl = 0
            break
        cl = _u32(b + p + 8, big_endian)
        if cl > limit:
            why = TOO_LONG
            break
        if end - p - hlen < cl:
            why = NEED_DATA
            break
        p += hlen + cl
        n += 1
    cdef bytearray ob = bytearray(4 * n), cb = bytearray(4 * n), wb = bytearray(4 * n)
    cdef bytearray tb = bytearray(8 * n)
    cdef uint32_t *o = <uint32_t *><char *>ob
    cdef uint32_t *c = <uint32_t *><char *>cb
    cdef uint32_t *w = <uint32_t *><char *>wb
    cdef int64_t *t = <int64_t *><char *>tb
    cdef Py_ssize_t q = pos
    with nogil:
        for i in range(n):
            t[i] = <int64_t>_u32(b + q, big_endian) * 1000000000 + <int64_t>_u32(b + q + 4, big_endian) * scale
            cl = _u32(b + q + 8, big_endian)
            wl = _u32(b + q + 12, big_endian)
            q += hlen
            o[i] = <uint32_t>q
            c[i] = cl
            w[i] = wl if wl >= cl else cl
            q += cl
    if n:
        offsets.frombytes(ob)
        caplen.frombytes(cb)
        wirelen.frombytes(wb)
        ts_ns.frombytes(tb)
    if why != NEED_HEADER:
        cl = _u32(b + p + 8, big_endian)
    return p, why, cl
