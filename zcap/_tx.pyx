# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Sending frames at C speed through the PACKET_TX_RING.

TxRing is the zero-copy transmit path behind zcap.inject: frames are written
straight into a ring shared with the kernel and one send() hands over a whole
batch (see the TxRing docstring for the ownership protocol).  The test rig's
sendmmsg() traffic generator is zcap/_testbed.pyx.
"""

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.exc cimport PyErr_CheckSignals
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy, memset

from zcap.includes.linux cimport *
from zcap.includes.helpers cimport (now_ns as _now_ns, put_be64 as _put_be64,
                                    raise_errno as _raise_errno)

import os

from zcap import errors as _errors
from zcap.linux import SIOCGIFMTU as _SIOCGIFMTU
from zcap.linux import ioctl_int as _ioctl_int

# ---------------------------------------------------------------------------
# PACKET_TX_RING

# A TPACKET_V2 transmit frame's data starts where the kernel reads it:
# TPACKET2_HDRLEN - sizeof(struct sockaddr_ll), the aligned frame header.
cdef uint32_t _DATA = zcap_tpacket_align(sizeof(tpacket2_hdr))
TX_DATA_OFFSET = _DATA

cdef enum:
    _ETH_HLEN = 14      # the Ethernet header the kernel requires at least
    _VLAN_HLEN = 4      # an 802.1Q tag may come on top of MTU + header

ETH_HLEN = _ETH_HLEN
VLAN_HLEN = _VLAN_HLEN

cdef enum:
    _REJECTED = -1      # the kernel marked a frame TP_STATUS_WRONG_FORMAT
    _SLICE = -2         # a time slice ended: back to the GIL for signals
    _STOPPED = -3       # close() was called from another thread

cdef int64_t _SLICE_NS = 50000000       # how long C loops run before checking signals
cdef int64_t _EARLY_NS = 50000          # a paced frame due this soon goes now (less than timer slack)
cdef int64_t _BACKOFF_MIN_NS = 20000
cdef int64_t _BACKOFF_MAX_NS = 1000000
cdef uint32_t _BUSY = TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING


cdef inline void _sleep_ns(int64_t ns) noexcept nogil:
    cdef timespec ts
    if ns <= 0:
        return
    ts.tv_sec = ns // 1000000000
    ts.tv_nsec = ns % 1000000000
    nanosleep(&ts, NULL)


cdef inline int64_t _min64(int64_t a, int64_t b) noexcept nogil:
    return a if a < b else b


cdef struct _Job:
    int64_t t0
    int64_t deadline
    int64_t end
    double ns_per_frame       # pps pacing (0: none)
    double ns_per_byte        # Mbps pacing (0: none)
    uint64_t frames
    uint64_t bytes


cdef class TxRing:
    """A packet socket's transmit ring of TPACKET_V2 frames; the producer side.

    Ownership is the frame's status word, as in the receive ring but the
    other way round.  A frame reading TP_STATUS_AVAILABLE (acquire load) is
    ours: its bytes are written and then published with a release store of
    TP_STATUS_SEND_REQUEST, so the kernel never sees the status before the
    bytes.  One send(fd, NULL, 0, MSG_DONTWAIT) makes the kernel take every
    published frame in ring order; it marks each SENDING while the device
    holds it and AVAILABLE again when the device is done, or WRONG_FORMAT
    when it refuses it (it then stops there: see _recover).

    `queued` frames were published, `confirmed` came back AVAILABLE,
    `rejected` were refused; the rest are in flight.  Frames are reclaimed
    in ring order.  One thread at a time (a second gets RuntimeError);
    close() from another thread stops a running send within ~50 ms and that
    thread finishes the close.  The ring owns the socket from construction.
    """

    cdef int fd
    cdef bint owns_fd
    cdef unsigned char *map
    cdef size_t map_size
    cdef unsigned char **frames
    cdef tpacket_req req
    cdef readonly uint32_t frame_size
    cdef readonly uint32_t frame_count
    cdef readonly uint32_t block_size
    cdef readonly uint32_t max_len           # largest untagged frame
    cdef readonly uint32_t max_len_vlan      # largest frame with an 802.1Q tag
    cdef readonly int mtu
    cdef readonly str ifname
    cdef readonly bint qdisc_bypass
    cdef uint32_t tail                       # next frame to fill
    cdef uint32_t reclaim                    # oldest frame in flight
    cdef uint32_t unflushed                  # frames published since the last send()
    cdef uint64_t queued, confirmed, rejected, waits, send_calls, retries, bytes_queued, unsent
    cdef public int batch
    cdef bint busy
    cdef bint _closed
    cdef bint close_pending
    cdef double close_timeout
    cdef uint32_t stop

    def __cinit__(self, int fd, *, str ifname, int ifindex, int mtu, uint32_t frame_size,
                  uint32_t frame_count, uint32_t block_size, bint qdisc_bypass=True, int batch=64):
        self.fd = fd
        self.owns_fd = True
        self.ifname = ifname
        self.qdisc_bypass = qdisc_bypass
        self.batch = batch if batch > 0 else 1
        cdef long page = sysconf(_SC_PAGESIZE)
        if frame_size < _DATA + _ETH_HLEN or frame_size % TPACKET_ALIGNMENT:
            smallest = zcap_tpacket_align(_DATA + _ETH_HLEN)
            raise ValueError(f"frame_size must be a multiple of {TPACKET_ALIGNMENT} and at least "
                             f"{smallest}, not {frame_size}")
        if block_size < frame_size or block_size % page:
            raise ValueError(f"block_size {block_size} must be a multiple of the page size ({page}) "
                             f"holding at least one {frame_size}-byte frame")
        cdef uint32_t per_block = block_size // frame_size
        if frame_count == 0 or frame_count % per_block:
            raise ValueError(f"frame_count {frame_count} must be a positive multiple of the "
                             f"{per_block} frames a {block_size}-byte block holds")
        self.frame_size = frame_size
        self.frame_count = frame_count
        self.block_size = block_size
        self._set_mtu(mtu)
        cdef int one = 1
        cdef int version = TPACKET_V2
        cdef long want = <long>frame_count * (self.max_len_vlan + 1024) // 2   # the kernel doubles it
        cdef int sndbuf = <int>(want if want < 0x3fffffff else 0x3fffffff)
        if setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof(version)) < 0:
            _raise_errno("PACKET_VERSION")
        if qdisc_bypass and setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one)) < 0:
            _raise_errno("PACKET_QDISC_BYPASS")
        # Room for every frame of the ring in flight: otherwise the socket's
        # send buffer, not the ring, limits a batch.  FORCE needs CAP_NET_ADMIN.
        if setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf)) < 0:
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf))
        memset(&self.req, 0, sizeof(self.req))
        self.req.tp_block_size = block_size
        self.req.tp_block_nr = frame_count // per_block
        self.req.tp_frame_size = frame_size
        self.req.tp_frame_nr = frame_count
        self.frames = <unsigned char **>calloc(frame_count, sizeof(unsigned char *))
        if self.frames == NULL:
            raise MemoryError()
        self._map_ring()
        cdef sockaddr_ll sll
        memset(&sll, 0, sizeof(sll))
        sll.sll_family = 17     # AF_PACKET; protocol 0: the socket receives nothing
        sll.sll_ifindex = ifindex
        if bind(fd, <sockaddr *>&sll, sizeof(sll)) < 0:
            _raise_errno(f"bind to {ifname!r} (ifindex {ifindex})")

    cdef int _map_ring(self) except -1:
        cdef int e
        cdef uint32_t i, per_block = self.req.tp_block_size // self.req.tp_frame_size
        if setsockopt(self.fd, SOL_PACKET, PACKET_TX_RING, &self.req, sizeof(self.req)) < 0:
            e = errno
            if e == ENOMEM:
                raise _errors.RingAllocationError(
                    f"the kernel could not allocate a {self.frame_count} x {self.frame_size}-byte "
                    f"transmit ring: use a smaller frame_count")
            raise OSError(e, f"PACKET_TX_RING ({self.frame_count} x {self.frame_size} bytes): "
                             f"{os.strerror(e)}")
        self.map_size = <size_t>self.req.tp_block_size * self.req.tp_block_nr
        cdef void *m = mmap(NULL, self.map_size, PROT_READ | PROT_WRITE, MAP_SHARED, self.fd, 0)
        if m == MAP_FAILED:
            e = errno
            size, self.map_size = self.map_size, 0
            if e == ENOMEM:
                raise _errors.RingAllocationError(
                    f"cannot map the {size}-byte transmit ring: use a smaller frame_count")
            raise OSError(e, f"mmap of the transmit ring: {os.strerror(e)}")
        self.map = <unsigned char *>m
        for i in range(self.frame_count):
            self.frames[i] = self.map + (i // per_block) * self.req.tp_block_size \
                + (i % per_block) * self.req.tp_frame_size
        self.tail = 0
        self.reclaim = 0
        self.unflushed = 0
        return 0

    cdef void _set_mtu(self, int mtu):
        cdef uint32_t room = self.frame_size - _DATA
        self.mtu = mtu
        # The kernel's limits (tpacket_snd): MTU + link header, 4 more for a
        # frame whose ethertype is 802.1Q; and what a frame holds.
        self.max_len = min(room, <uint32_t>mtu + _ETH_HLEN)
        self.max_len_vlan = min(room, <uint32_t>mtu + _ETH_HLEN + _VLAN_HLEN)

    def __dealloc__(self):
        self._release()
        free(self.frames)

    cdef void _release(self) noexcept:
        if self.map != NULL:
            munmap(self.map, self.map_size)
            self.map = NULL
        if self.owns_fd and self.fd >= 0:
            close(self.fd)
            self.fd = -1
        self.owns_fd = False

    # -- the frame protocol (no GIL) -------------------------------------------

    cdef inline tpacket2_hdr *_hdr(self, uint32_t i) noexcept nogil:
        return <tpacket2_hdr *>self.frames[i]

    cdef inline uint32_t _status(self, uint32_t i) noexcept nogil:
        return zcap_load_acquire_u32(&self._hdr(i).tp_status)

    cdef inline uint64_t _in_flight(self) noexcept nogil:
        return self.queued - self.confirmed - self.rejected

    cdef inline bint _fits(self, const unsigned char *data, Py_ssize_t n) noexcept nogil:
        if n < _ETH_HLEN:
            return False
        if n <= self.max_len:
            return True
        return n <= self.max_len_vlan and data[12] == 0x81 and data[13] == 0x00

    cdef inline unsigned char *_slot(self) noexcept nogil:
        """The frame to fill next; the caller made sure one is free."""
        return self.frames[self.tail] + _DATA

    cdef inline void _publish(self, uint32_t n) noexcept nogil:
        cdef tpacket2_hdr *h = self._hdr(self.tail)
        h.tp_len = n
        zcap_store_release_u32(&h.tp_status, TP_STATUS_SEND_REQUEST)
        self.tail += 1
        if self.tail == self.frame_count:
            self.tail = 0
        self.queued += 1
        self.bytes_queued += n
        self.unflushed += 1

    cdef int _reclaim(self) noexcept nogil:
        """Count the frames the kernel is done with, oldest first."""
        cdef uint32_t st
        while self._in_flight() > 0:
            st = self._status(self.reclaim)
            if st & TP_STATUS_WRONG_FORMAT:
                return _REJECTED
            if st & _BUSY:
                return 0
            self.confirmed += 1
            self.reclaim += 1
            if self.reclaim == self.frame_count:
                self.reclaim = 0
        return 0

    cdef inline bint _needs_send(self) noexcept nogil:
        """Has the kernel still to take a published frame?  It takes them in
        order, so it has taken all of them once it has taken the newest."""
        if self._in_flight() == 0:
            return False
        cdef uint32_t last = (self.tail if self.tail else self.frame_count) - 1
        return (self._status(last) & TP_STATUS_SEND_REQUEST) != 0

    cdef int _flush_once(self) noexcept nogil:
        """One send().  0, also when the device pushed back (the frames stay
        published and the next send() retries them), else an errno."""
        cdef ssize_t r
        cdef int e
        while True:
            self.send_calls += 1
            r = send(self.fd, NULL, 0, MSG_DONTWAIT)
            if r >= 0:
                self.unflushed = 0
                return 0
            e = errno
            if e == EINTR:
                continue
            if e == ENOBUFS or e == EAGAIN:
                self.retries += 1
                self.unflushed = 0
                return 0
            return e

    cdef int _push(self, int64_t deadline) noexcept nogil:
        """send() until the kernel has taken every published frame.  0,
        ETIMEDOUT or an errno.  Between tries it backs off (20 µs to 1 ms)."""
        cdef int e
        cdef int64_t backoff = _BACKOFF_MIN_NS
        while self._needs_send():
            e = self._flush_once()
            if e:
                return e
            if not self._needs_send():
                return 0
            if _now_ns() >= deadline:
                return ETIMEDOUT
            _sleep_ns(backoff)
            backoff = _min64(backoff * 2, _BACKOFF_MAX_NS)
        return 0

    cdef int _wait_free(self, int64_t deadline) noexcept nogil:
        """Until the frame at the tail is ours again.  0, _REJECTED,
        ETIMEDOUT or an errno.  Waits in poll(POLLOUT); when poll reports
        the socket writable but no frame came back (the device still holds
        them), sleeps with a growing backoff instead: it never spins."""
        cdef int r, e
        cdef int64_t now, backoff = _BACKOFF_MIN_NS, left
        cdef bint counted = False
        cdef pollfd p
        while True:
            r = self._reclaim()
            if r:
                return r
            if self._in_flight() < self.frame_count:
                return 0
            if not counted:
                self.waits += 1
                counted = True
            if self._needs_send():
                e = self._flush_once()
                if e:
                    return e
                r = self._reclaim()
                if r:
                    return r
                if self._in_flight() < self.frame_count:
                    return 0
            now = _now_ns()
            if now >= deadline:
                return ETIMEDOUT
            left = (deadline - now) // 1000000 + 1
            p.fd = self.fd
            p.events = POLLOUT
            p.revents = 0
            r = poll(&p, 1, <int>(left if left < 10 else 10))
            if r < 0 and errno != EINTR:
                return errno
            r = self._reclaim()
            if r:
                return r
            if self._in_flight() < self.frame_count:
                return 0
            _sleep_ns(_min64(backoff, deadline - _now_ns()))
            backoff = _min64(backoff * 2, _BACKOFF_MAX_NS)

    cdef int _drain(self, int64_t deadline) noexcept nogil:
        """Until every published frame came back (or was refused)."""
        cdef int r
        cdef int64_t backoff = _BACKOFF_MIN_NS
        while True:
            r = self._push(deadline)
            if r:
                return r
            r = self._reclaim()
            if r:
                return r
            if self._in_flight() == 0:
                return 0
            if _now_ns() >= deadline:
                return ETIMEDOUT
            _sleep_ns(backoff)
            backoff = _min64(backoff * 2, _BACKOFF_MAX_NS)

    cdef inline bint _stopped(self) noexcept nogil:
        return zcap_load_acquire_u32(&self.stop) != 0

    # -- the C-speed loop --------------------------------------------------------

    cdef int _run_sequence(self, _Job *j, const unsigned char *tpl, uint32_t flen,
                           Py_ssize_t seq_offset, uint64_t first_seq, uint64_t count) noexcept nogil:
        """Fill, pace and flush until `count` frames are queued, the deadline
        passes or the time slice ends (_SLICE: call again to go on)."""
        cdef int64_t now, due, slice_end = _now_ns() + _SLICE_NS
        cdef bint paced = j.ns_per_frame > 0 or j.ns_per_byte > 0
        cdef unsigned char *d
        cdef int r
        while j.frames < count:
            if self._stopped():
                return _STOPPED
            now = _now_ns()
            if now >= j.deadline:
                return ETIMEDOUT
            if now >= slice_end:
                return _SLICE
            if paced:
                due = j.t0 + <int64_t>(j.frames * j.ns_per_frame + j.bytes * j.ns_per_byte)
                if due > now + _EARLY_NS:
                    # everything due has been written: hand it over, then sleep
                    if self.unflushed:
                        r = self._flush_once()
                        if r:
                            return r
                    _sleep_ns(_min64(_min64(due, j.deadline), slice_end) - _now_ns())
                    continue
            if self._in_flight() >= self.frame_count:
                r = self._wait_free(_min64(j.deadline, slice_end))
                if r == ETIMEDOUT:
                    continue
                if r:
                    return r
            d = self._slot()
            memcpy(d, tpl, flen)
            _put_be64(d + seq_offset, first_seq + j.frames)
            self._publish(flen)
            j.frames += 1
            j.bytes += flen
            if self.unflushed >= <uint32_t>self.batch:
                r = self._flush_once()
                if r:
                    return r
        r = self._push(_min64(j.deadline, slice_end))
        if r == ETIMEDOUT and _now_ns() < j.deadline:
            return _SLICE
        j.end = _now_ns()
        return r

    # -- with the GIL ------------------------------------------------------------

    cdef int _enter(self) except -1:
        if self._closed:
            raise _errors.CaptureClosedError(f"the injector on {self.ifname!r} is closed")
        if self.busy:
            raise RuntimeError("another thread is sending through this injector; "
                               "an injector is for one thread at a time (open one per thread)")
        self.busy = True
        return 0

    cdef void _leave(self):
        self.busy = False
        if self.close_pending:
            self.close_pending = False
            self._close_now(self.close_timeout)

    cdef object _length_error(self, Py_ssize_t n, str what):
        if n < _ETH_HLEN:
            return ValueError(f"{what} is {n} bytes, shorter than the {_ETH_HLEN}-byte Ethernet header; "
                              f"the kernel would refuse it")
        room = self.frame_size - _DATA
        if n > room and room < <uint32_t>self.mtu + _ETH_HLEN:
            return ValueError(f"{what} is {n} bytes, more than the {room} bytes a "
                              f"{self.frame_size}-byte ring frame holds; open the injector with "
                              f"frame_size >= {n + _DATA} (or the default, sized from the MTU)")
        return ValueError(f"{what} is {n} bytes, more than {self.ifname!r} sends: MTU {self.mtu} + "
                          f"{_ETH_HLEN}-byte Ethernet header = {self.mtu + _ETH_HLEN} bytes "
                          f"({self.mtu + _ETH_HLEN + _VLAN_HLEN} with an 802.1Q tag); raise the MTU "
                          f"(ip link set {self.ifname} mtu ...) or send smaller frames")

    cdef int _raise_for(self, int code) except -1:
        """Turn a C loop's result into the exception it stands for."""
        if code == 0 or code == _SLICE or code == _STOPPED or code == ETIMEDOUT:
            return 0
        if code == _REJECTED:
            return self._recover(0)
        if code == ENETDOWN:
            raise _errors.InterfaceDownError(
                code, f"interface {self.ifname!r} is down: the {self._in_flight()} frames queued stay "
                      f"in the ring and go out with the next flush once it is up "
                      f"(ip link set {self.ifname} up)")
        if code == ENXIO or code == ENODEV:
            raise _errors.InterfaceGoneError(
                code, f"interface {self.ifname!r} was deleted; the {self._in_flight()} frames still "
                      f"queued cannot be sent. Open a new injector once it exists again")
        if self._find_rejected() >= 0:
            return self._recover(code)
        raise OSError(code, f"send on {self.ifname!r}: {os.strerror(code)}")

    cdef Py_ssize_t _find_rejected(self):
        cdef uint64_t k
        cdef uint32_t i = self.reclaim
        for k in range(self._in_flight()):
            if self._status(i) & TP_STATUS_WRONG_FORMAT:
                return <Py_ssize_t>k
            i += 1
            if i == self.frame_count:
                i = 0
        return -1

    cdef int _recover(self, int err) except -1:
        """The kernel refused the frame at its head and stopped there: it
        would refuse it on every send().  Drop it (counted in `rejected`) and
        go on with a fresh ring holding the frames queued behind it.

        This cannot happen to a frame zcap checked unless the interface
        changed (its MTU was lowered), so the MTU is read again first."""
        cdef int r = 0
        cdef int64_t deadline = _now_ns() + 2000000000
        cdef Py_ssize_t k = self._find_rejected()
        cdef uint32_t i, n
        cdef tpacket2_hdr *h
        if k < 0:
            raise OSError(err, f"send on {self.ifname!r}: {os.strerror(err)}")
        # The frames before it were sent: wait until the device let them go,
        # the kernel will not replace a ring with frames in flight.
        with nogil:
            while True:
                r = self._reclaim()
                if r == _REJECTED or _now_ns() >= deadline:
                    break
                _sleep_ns(_BACKOFF_MAX_NS)
        if r != _REJECTED:
            self._close_now(0)
            raise _errors.FrameRejectedError(
                err, f"the kernel refused a frame queued on {self.ifname!r} and the frames before it "
                     f"did not leave within 2 s; the injector was closed. Open a new one")
        h = self._hdr(self.reclaim)
        bad_len = h.tp_len
        saved = []
        i = self.reclaim
        for _ in range(self._in_flight() - 1):
            i += 1
            if i == self.frame_count:
                i = 0
            n = self._hdr(i).tp_len
            saved.append((self.frames[i] + _DATA)[:n])
        self.rejected += 1
        self.queued -= len(saved)
        self.bytes_queued -= sum(len(b) for b in saved)
        try:
            mtu = _ioctl_int(self.fd, _SIOCGIFMTU, self.ifname)
            self._set_mtu(mtu)
        except OSError:
            pass
        # A fresh ring: the kernel starts again at frame 0.
        munmap(self.map, self.map_size)
        self.map = NULL
        cdef tpacket_req none
        memset(&none, 0, sizeof(none))
        try:
            if setsockopt(self.fd, SOL_PACKET, PACKET_TX_RING, &none, sizeof(none)) < 0:
                _raise_errno("PACKET_TX_RING (releasing the ring)")
            self._map_ring()
        except BaseException:
            self._close_now(0)
            raise
        dropped = 0
        for b in saved:
            if self._fits(b, len(b)):
                memcpy(self._slot(), <const unsigned char *>b, len(b))
                self._publish(len(b))
            else:
                dropped += 1
                self.queued += 1
                self.rejected += 1
                self.bytes_queued += len(b)
        with nogil:
            self._flush_once()
        why = f" ({os.strerror(err)})" if err else ""
        also = (f"; {dropped} frames queued after it no longer fit either and were dropped too"
                if dropped else "")
        raise _errors.FrameRejectedError(
            err or EMSGSIZE,
            f"the kernel refused a {bad_len}-byte frame on {self.ifname!r}{why}: it now sends at most "
            f"{self.max_len} bytes (MTU {self.mtu}); the frame was dropped and counted in "
            f"stats().errors{also}. The {len(saved) - dropped} frames queued after it were kept "
            f"and sent")

    cdef int _reserve(self, int64_t deadline, bint raise_timeout) except -1:
        """Make the tail frame ours, waiting (GIL released) until `deadline`.
        Returns 1 when a frame is free, 0 when the deadline or close() came first."""
        cdef int r
        if self._in_flight() < self.frame_count:
            return 1
        while True:
            if self._stopped():
                return 0
            with nogil:
                r = self._wait_free(_min64(deadline, _now_ns() + _SLICE_NS))
            if r == ETIMEDOUT:
                if _now_ns() < deadline:
                    PyErr_CheckSignals()
                    continue
                if raise_timeout:
                    raise _errors.TransmitTimeoutError(
                        f"no frame of the transmit ring on {self.ifname!r} came back within the "
                        f"timeout: the interface is not sending (no carrier? its peer down?); "
                        f"{self._in_flight()} frames are queued")
                return 0
            self._raise_for(r)
            return 1

    cdef int _push_checked(self, int64_t deadline, bint raise_timeout) except -1:
        cdef int r
        while True:
            with nogil:
                r = self._push(_min64(deadline, _now_ns() + _SLICE_NS))
            if r == ETIMEDOUT and _now_ns() < deadline and not self._stopped():
                PyErr_CheckSignals()
                continue
            break
        if r == ETIMEDOUT:
            if raise_timeout:
                raise _errors.TransmitTimeoutError(
                    f"the kernel did not take the {self._in_flight()} queued frames on {self.ifname!r} "
                    f"within the timeout: the interface is not sending (no carrier? its peer down?)")
            return 0
        self._raise_for(r)
        with nogil:
            r = self._reclaim()
        return self._raise_for(r)

    cdef int _pause(self, int64_t due, int64_t deadline) except -1:
        """Hand over what is due, then sleep until `due` (GIL released,
        signals checked).  0 if the deadline or close() comes first."""
        cdef int r
        cdef int64_t now
        if self.unflushed:
            with nogil:
                r = self._flush_once()
            self._raise_for(r)
        while True:
            now = _now_ns()
            if now >= deadline or self._stopped():
                return 0
            if due <= now + _EARLY_NS:
                return 1
            with nogil:
                _sleep_ns(_min64(_min64(due, deadline), now + _SLICE_NS) - now)
            PyErr_CheckSignals()

    cdef void _abandon(self):
        """After an exception: hand over what was queued, never raise."""
        with nogil:
            self._flush_once()

    # -- the API zcap.inject wraps -------------------------------------------

    @property
    def closed(self):
        return self._closed

    def fileno(self):
        if self._closed:
            raise _errors.CaptureClosedError(f"the injector on {self.ifname!r} is closed")
        return self.fd

    def put(self, frame, bint flush=True, double timeout=5.0):
        """Queue one frame copied from any buffer; send() it unless flush=False."""
        cdef Py_buffer view
        cdef int r
        cdef int64_t deadline = _now_ns() + <int64_t>(timeout * 1e9)
        self._enter()
        try:
            PyObject_GetBuffer(frame, &view, PyBUF_SIMPLE)
            try:
                if not self._fits(<const unsigned char *>view.buf, view.len):
                    raise self._length_error(view.len, "the frame")
                if not self._reserve(deadline, True):
                    raise _errors.CaptureClosedError(f"the injector on {self.ifname!r} was closed")
                memcpy(self._slot(), view.buf, view.len)
                self._publish(<uint32_t>view.len)
            finally:
                PyBuffer_Release(&view)
            if flush:
                self._push_checked(deadline, True)
            elif self.unflushed >= <uint32_t>self.batch:
                with nogil:
                    r = self._flush_once()
                self._raise_for(r)
        finally:
            self._leave()

    def put_many(self, frames, double timeout=5.0):
        """Queue frames from an iterable of buffers, one send() per batch
        (every free frame, at most `batch`).  Returns how many were queued."""
        cdef Py_buffer view
        cdef Py_ssize_t n = 0
        cdef int r
        cdef int64_t deadline
        cdef bint ok = False
        self._enter()
        try:
            for frame in frames:
                if self._stopped():
                    break
                PyObject_GetBuffer(frame, &view, PyBUF_SIMPLE)
                try:
                    if not self._fits(<const unsigned char *>view.buf, view.len):
                        raise self._length_error(view.len, f"frame {n}")
                    if self._in_flight() >= self.frame_count:
                        deadline = _now_ns() + <int64_t>(timeout * 1e9)
                        if not self._reserve(deadline, True):
                            break
                    memcpy(self._slot(), view.buf, view.len)
                    self._publish(<uint32_t>view.len)
                finally:
                    PyBuffer_Release(&view)
                n += 1
                if self.unflushed >= <uint32_t>self.batch:
                    with nogil:
                        r = self._flush_once()
                    self._raise_for(r)
            self._push_checked(_now_ns() + <int64_t>(timeout * 1e9), True)
            ok = True
        finally:
            if not ok:
                self._abandon()
            self._leave()
        return n

    def flush(self, bint wait=False, double timeout=5.0):
        """send() until the kernel took every queued frame; with wait=True
        also until the device gave each back.  Returns the frames in flight."""
        cdef int r
        cdef int64_t deadline = _now_ns() + <int64_t>(timeout * 1e9)
        self._enter()
        try:
            self._push_checked(deadline, True)
            while wait and self._in_flight() and not self._stopped():
                with nogil:
                    r = self._drain(_min64(deadline, _now_ns() + _SLICE_NS))
                if r == ETIMEDOUT:
                    if _now_ns() >= deadline:
                        break
                    PyErr_CheckSignals()
                    continue
                self._raise_for(r)
            return self._in_flight()
        finally:
            self._leave()

    def send_sequence(self, template, Py_ssize_t seq_offset, uint64_t first_seq, Py_ssize_t count,
                      double pps=0.0, double mbps=0.0, double max_seconds=60.0):
        """`count` copies of `template`, each carrying its number (big-endian
        u64 at seq_offset: first_seq, +1, ...), written and flushed with the
        GIL released.  pps or mbps > 0 paces them on the monotonic clock.
        Returns (frames, bytes, seconds): fewer frames if max_seconds passed."""
        cdef const unsigned char[:] tpl = memoryview(template).cast("B")
        cdef Py_ssize_t flen = tpl.shape[0]
        cdef _Job job
        cdef int r
        cdef unsigned char *buf
        cdef bint ok = False
        if not self._fits(&tpl[0] if flen else NULL, flen):
            raise self._length_error(flen, "the template")
        if seq_offset < 0 or seq_offset + 8 > flen:
            raise ValueError(f"sequence offset {seq_offset} does not fit a {flen}-byte frame")
        if count < 0:
            raise ValueError(f"count must be >= 0, not {count}")
        _check_pacing(pps, mbps, max_seconds)
        buf = <unsigned char *>malloc(flen)
        if buf == NULL:
            raise MemoryError()
        memcpy(buf, &tpl[0], flen)
        memset(&job, 0, sizeof(job))
        job.ns_per_frame = 1e9 / pps if pps > 0 else 0.0
        job.ns_per_byte = 8000.0 / mbps if mbps > 0 else 0.0
        try:
            self._enter()
            try:
                job.t0 = _now_ns()
                job.deadline = job.t0 + <int64_t>(max_seconds * 1e9)
                while True:
                    with nogil:
                        r = self._run_sequence(&job, buf, <uint32_t>flen, seq_offset, first_seq,
                                               <uint64_t>count)
                    if r != _SLICE:
                        break
                    PyErr_CheckSignals()
                if job.end == 0:
                    job.end = _now_ns()
                self._raise_for(r)
                ok = True
            finally:
                if not ok:
                    self._abandon()
                self._leave()
        finally:
            free(buf)
        return job.frames, job.bytes, (job.end - job.t0) / 1e9

    def send_packets(self, packets, double pps=0.0, double mbps=0.0, bint respect_timestamps=False,
                     double multiplier=1.0, double max_seconds=60.0):
        """Frames from an iterable of buffers (zcap Packets, bytes, ...),
        each copied once from its own memory into the ring.  Paced by pps,
        mbps, or (respect_timestamps) by the gaps between their .ts_ns
        divided by `multiplier`.  Returns (frames, bytes, seconds)."""
        cdef Py_buffer view
        cdef Py_ssize_t n
        cdef uint64_t frames = 0, nbytes = 0
        cdef int64_t t0, deadline, due, now, ts, ts0 = 0
        cdef double npf = 1e9 / pps if pps > 0 else 0.0
        cdef double npb = 8000.0 / mbps if mbps > 0 else 0.0
        cdef bint paced = npf > 0 or npb > 0
        cdef bint ok = False
        cdef int r
        _check_pacing(pps, mbps, max_seconds)
        if respect_timestamps and (paced or not multiplier > 0):
            raise ValueError("respect_timestamps paces by the packets' own timestamps: give no pps "
                             "or mbps, and a multiplier > 0")
        self._enter()
        try:
            t0 = _now_ns()
            deadline = t0 + <int64_t>(max_seconds * 1e9)
            for pkt in packets:
                now = _now_ns()
                if now >= deadline or self._stopped():
                    break
                PyObject_GetBuffer(pkt, &view, PyBUF_SIMPLE)
                try:
                    if not self._fits(<const unsigned char *>view.buf, view.len):
                        raise self._length_error(view.len, f"packet {frames}")
                    due = 0
                    if respect_timestamps:
                        ts = pkt.ts_ns
                        if frames == 0:
                            ts0 = ts
                        due = t0 + <int64_t>((ts - ts0) / multiplier)
                    elif paced:
                        due = t0 + <int64_t>(frames * npf + nbytes * npb)
                    if due > now + _EARLY_NS and not self._pause(due, deadline):
                        break
                    if self._in_flight() >= self.frame_count and not self._reserve(deadline, False):
                        break
                    n = view.len
                    memcpy(self._slot(), view.buf, n)
                    self._publish(<uint32_t>n)
                finally:
                    PyBuffer_Release(&view)
                frames += 1
                nbytes += n
                if self.unflushed >= <uint32_t>self.batch:
                    with nogil:
                        r = self._flush_once()
                    self._raise_for(r)
            self._push_checked(deadline, False)
            ok = True
        finally:
            if not ok:
                self._abandon()
            self._leave()
        return frames, nbytes, (_now_ns() - t0) / 1e9

    def stats(self):
        """Counters since open (see zcap.inject.TxStats)."""
        if not self.busy and not self._closed:
            self._reclaim()
        return dict(queued=self.queued, sent=self.confirmed, errors=self.rejected,
                    in_flight=self._in_flight() if not self._closed else 0,
                    unsent=self.unsent, bytes_queued=self.bytes_queued, ring_full_waits=self.waits,
                    send_calls=self.send_calls, retries=self.retries)

    def close(self, double timeout=5.0):
        """Wait up to `timeout` s for queued frames to leave, then release the
        ring and the socket.  Idempotent.  From another thread while a send
        runs: that send stops (within ~50 ms) and its thread closes."""
        if self._closed:
            return
        if self.busy:
            self.close_timeout = timeout
            self.close_pending = True
            zcap_store_release_u32(&self.stop, 1)
            return
        self._close_now(timeout)

    cdef void _close_now(self, double timeout):
        cdef int64_t deadline = _now_ns() + <int64_t>(timeout * 1e9)
        if self._closed:
            return
        self.busy = True
        if self.map != NULL and timeout > 0:
            with nogil:
                self._drain(deadline)
        if self.map != NULL:
            self._reclaim()
        self.unsent = self._in_flight()
        self._release()
        self._closed = True
        self.busy = False


cdef int _check_pacing(double pps, double mbps, double max_seconds) except -1:
    if not (pps >= 0 and mbps >= 0):
        raise ValueError(f"pps and mbps must be >= 0 (0: as fast as possible), not {pps} and {mbps}")
    if pps > 0 and mbps > 0:
        raise ValueError("pace by pps or by mbps, not both")
    if not max_seconds > 0:
        raise ValueError(f"max_seconds must be > 0, not {max_seconds}")
    return 0

