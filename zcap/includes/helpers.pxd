# Small C helpers shared by the compiled modules (_ring.pyx, _tx.pyx): one
# definition each, compiled inline into every module that cimports them.
from libc.stdint cimport int64_t
from libc.string cimport strerror

from zcap.includes.linux cimport CLOCK_MONOTONIC, clock_gettime, errno, timespec


cdef inline int64_t now_ns() noexcept nogil:
    """CLOCK_MONOTONIC in nanoseconds: deadlines, pacing, block timeouts."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline int raise_errno(str what) except -1:
    """Raise OSError(errno, "what: <strerror>") for the system call that just failed."""
    cdef int e = errno
    raise OSError(e, f"{what}: {strerror(e).decode('utf-8', 'replace')}")
