# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The test rig's traffic generator: numbered frames at C speed on a packet socket.

send_sequence() is what zcap.testbed.Sender.send_sequence() runs for the tests,
`zcap demo` and the benchmarks: it is never the bottleneck (the GIL is released
for the whole run, frames go out in sendmmsg() batches) and every loop is
bounded in count and time.  The product's transmit path is zcap/_tx.pyx.
"""

from libc.stdint cimport uint64_t, int64_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy

from zcap.includes.linux cimport *
from zcap.includes.helpers cimport now_ns, put_be64, raise_os_error


cdef inline void _sleep_until(int64_t t) noexcept nogil:
    cdef timespec ts
    cdef int64_t left = t - now_ns()
    if left > 200000:
        left -= 100000
        ts.tv_sec = left // 1000000000
        ts.tv_nsec = left % 1000000000
        nanosleep(&ts, NULL)
    while now_ns() < t:
        pass


def send_sequence(int fd, template, Py_ssize_t seq_offset, uint64_t first_seq,
                  Py_ssize_t count, double pps=0.0, int batch=32,
                  double max_seconds=60.0):
    """Send `count` copies of `template` on a bound packet socket.

    Each copy carries its sequence number (big-endian u64, first_seq, +1, ...)
    at `seq_offset`.  pps > 0 paces the frames; 0 sends as fast as possible.
    A frame the device refuses (ENOBUFS) is retried, so every counted frame
    left the socket.  Returns (sent, seconds, retries).
    """
    cdef const unsigned char[:] tpl = memoryview(template).cast("B")
    cdef Py_ssize_t flen = tpl.shape[0]
    cdef Py_ssize_t i, k, n
    cdef int r, e = 0
    cdef uint64_t retries = 0
    cdef Py_ssize_t sent = 0
    cdef int64_t t0, deadline, target
    cdef double period_ns = 1e9 / pps if pps > 0 else 0.0
    if seq_offset < 0 or seq_offset + 8 > flen:
        raise ValueError(f"sequence offset {seq_offset} does not fit a {flen}-byte frame")
    if count < 0:
        raise ValueError("count must be >= 0")
    if batch < 1:
        batch = 1
    if pps > 0 and pps < 1000 * batch:
        batch = max(1, <int>(pps / 1000))
    cdef unsigned char *bufs = <unsigned char *>malloc(batch * flen if flen else 1)
    cdef mmsghdr *msgs = <mmsghdr *>calloc(batch, sizeof(mmsghdr))
    cdef iovec *iovs = <iovec *>calloc(batch, sizeof(iovec))
    if bufs == NULL or msgs == NULL or iovs == NULL:
        free(bufs)
        free(msgs)
        free(iovs)
        raise MemoryError()
    for i in range(batch):
        memcpy(bufs + i * flen, &tpl[0], flen)
        iovs[i].iov_base = bufs + i * flen
        iovs[i].iov_len = flen
        msgs[i].msg_hdr.msg_iov = &iovs[i]
        msgs[i].msg_hdr.msg_iovlen = 1
    try:
        with nogil:
            t0 = now_ns()
            deadline = t0 + <int64_t>(max_seconds * 1e9)
            while sent < count:
                n = count - sent
                if n > batch:
                    n = batch
                if period_ns > 0:
                    target = t0 + <int64_t>(sent * period_ns)
                    _sleep_until(target)
                for k in range(n):
                    put_be64(bufs + k * flen + seq_offset, first_seq + sent + k)
                r = sendmmsg(fd, msgs, n, 0)
                if r < 0:
                    e = errno
                    if e == EINTR:
                        continue
                    if e == ENOBUFS or e == EAGAIN:
                        retries += 1
                        _sleep_until(now_ns() + 50000)
                        if now_ns() > deadline:
                            break
                        continue
                    break
                if r < n:
                    # the rest of the batch is re-sent with the same numbers
                    retries += 1
                    if r > 0:
                        for k in range(n - r):
                            memcpy(bufs + k * flen + seq_offset, bufs + (k + r) * flen + seq_offset, 8)
                sent += r
                if now_ns() > deadline:
                    break
            t0 = now_ns() - t0
    finally:
        free(bufs)
        free(msgs)
        free(iovs)
    if sent < count and e and e != ENOBUFS and e != EAGAIN:
        raise_os_error(e, f"sendmmsg after {sent} frames")
    return sent, t0 / 1e9, retries
