# Small C helpers shared by the compiled modules (_ring.pyx, _tx.pyx,
# _testbed.pyx): one definition each, compiled inline into every module that
# cimports them.
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.string cimport strerror

from zcap.includes.linux cimport CLOCK_MONOTONIC, clock_gettime, errno, timespec


cdef inline int64_t now_ns() noexcept nogil:
    """CLOCK_MONOTONIC in nanoseconds: deadlines, pacing, block timeouts."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline int raise_os_error(int err, str what) except -1:
    """Raise OSError(err, "what: <strerror(err)>")."""
    raise OSError(err, f"{what}: {strerror(err).decode('utf-8', 'replace')}")


cdef inline int raise_errno(str what) except -1:
    """Raise OSError(errno, "what: <strerror>") for the system call that just failed."""
    return raise_os_error(errno, what)


cdef inline void put_be64(unsigned char *p, uint64_t v) noexcept nogil:
    """Store `v` big-endian at `p` (a frame's sequence number)."""
    cdef int i
    for i in range(8):
        p[7 - i] = <uint8_t>(v >> (8 * i))
