# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
#
# boundscheck/wraparound are off module-wide because this module indexes only
# raw C pointers: every offset read from the ring is checked explicitly against
# the unit's size before it is dereferenced (see _walk.pxi).  No typed
# memoryviews are indexed here.
"""The TPACKET ring: setup, ownership and generation checks, walk, release.

One Ring serves three modes with one consumer API:

* MODE_V3 ("ring"): a TPACKET_V3 block ring.  A unit is one block, walked
  lazily by a cursor: each packet is read from the block as it is asked for.
* MODE_V2 ("immediate"): a TPACKET_V2 frame ring, one packet per unit, so a
  packet is readable as soon as the kernel wrote it.
* MODE_COPY ("copy"): recvmmsg() into a reusable buffer; a unit is one batch.

The mode is chosen once: Ring.__init__ points Ring.ops at the mode's table
of unit operations (_units.pxi: acquire, hand back, slot status, ...), so
nothing else here tests it.  A unit is acquired (ops.acquire), consumed and
released.  Its packets are taken by one step, Ring._unit_packet(): the V3
cursor walks a block, a packet table holds a V2 frame's or a copy batch's.
Release (Ring._release_unit) first settles the packets the application still
references (_retain.pxi: recycled, detached into one arena, or, when a raw
buffer export pins their address, the unit is deferred and at worst
snapshotted), then hands the unit back to the kernel (ops.hand_back).  See
docs/architecture.md.
"""

cimport cython
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_DECREF
from cpython.buffer cimport PyBUF_WRITABLE, PyBUF_FORMAT, PyBUF_ND, PyBUF_STRIDES
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from cpython.exc cimport PyErr_CheckSignals
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
from libc.stdlib cimport malloc, calloc, realloc, free
from libc.string cimport memcpy, memmove, memset

from zcap.includes.linux cimport *
from zcap.includes.helpers cimport now_ns as _now_ns, raise_errno as _raise_errno
from zcap.includes.python cimport Py_REFCNT
from zcap._bpf cimport BPFAux, BPFProgram, bpf_aux_clear, bpf_run

import os
import warnings
from weakref import ref as _weakref

from zcap import errors as _errors
from zcap._enums import Direction as _Direction, PacketType as _PacketType
from zcap.sizes import human_size

MODE_V3 = 0
MODE_V2 = 1
MODE_COPY = 2
cdef int _MODE_V3 = 0
cdef int _MODE_V2 = 1
cdef int _MODE_COPY = 2

DIRECTION_INOUT = 0
DIRECTION_IN = 1
DIRECTION_OUT = 2

COOKED_NONE = 0
COOKED_SLL = 1
COOKED_SLL2 = 2
SLL_HDR_LEN = 16
SLL2_HDR_LEN = 20

cdef enum:
    VLAN_TAG_LEN = 4
    COPY_HEADROOM = 32      # room to synthesize SLL2 (20) + a VLAN tag (4) in front
    MIN_V3_PACKET = 72      # the smallest footprint of a packet in a V3 block
    KEPT_TABLES = 3         # packet tables kept for reuse while column exports use them

cdef enum:
    STOP_NOT_YET = 0
    STOP_UNHOOKED = 1       # rebound to a protocol no link delivers: an RCU barrier
    STOP_FILTERED = 2       # only a `ret #0` filter (bind refused, e.g. in a fanout group)
    STOP_NOTHING = 3        # neither possible (fanout + locked filter): reads what is ready
    # bind() with protocol 0 keeps the current protocol, so "unbinding" rebinds
    # to an ethertype below 0x0600 that no Linux link layer produces (Ethernet
    # gives >= 0x0600, 0x0001 or 0x0004; other devices use listed small values)
    STOP_PROTOCOL = 0x05FF
    # after a stop, how much longer than two block timeouts to wait for the
    # kernel to hand over its partly filled block (_drain_done)
    DRAIN_GRACE_MS = 1000

# `ret #0` as a packed struct sock_filter: accept nothing
cdef bytes _REJECT_ALL = b"\x06\x00\x00\x00\x00\x00\x00\x00"

cdef int64_t _deadline_from_timeout(object timeout) except -2:
    """None -> wait forever (-1); 0 -> do not wait (0); else an absolute deadline."""
    if timeout is None:
        return -1
    cdef double t = timeout
    if t != t or t < 0:
        raise ValueError(f"timeout must be None or a number >= 0, not {timeout!r}")
    if t == 0:
        return 0
    return _now_ns() + <int64_t>(t * 1e9) + 1

include "_walk.pxi"
include "_plainwalk.pxi"
include "_objects.pxi"
include "_gather.pxi"
include "_retain.pxi"
include "_units.pxi"

from zcap import aio as _aio
from zcap import linkstate as _linkstate

# ---------------------------------------------------------------------------
# Ring

@cython.final
cdef class Ring:
    """A packet socket's receive ring and the consumer cursor over it.

    Not for concurrent consumers: one thread reads; close() and breakloop()
    may be called from any thread.
    """

    def __cinit__(self):
        self.fd = -1
        self.wake_fd = -1
        self.lo_ifindex = -1
        self.vlan_offset = -1
        self.cols = None
        self.cur_batch = None

    def __init__(self, int fd, *, int mode, size_t block_size, Py_ssize_t block_count,
                 size_t frame_size=0, int timeout_ms=10, uint32_t snaplen=262144,
                 int cooked=0, bint reinsert_vlan=False, int vlan_offset=-1,
                 int lo_ifindex=-1, int direction=0, bint rxhash=False, int reserve=0,
                 object ifname="", int copy_batch=64, int linktype=1,
                 object link_down_grace=1.0):
        """Take ownership of a packet socket `fd` and set up its ring.

        The socket is not bound here: the caller binds after any filter is
        attached, so no unfiltered packet can be queued first.
        link_down_grace: seconds the interface may stay down before iteration
        ends with InterfaceDownError (None: wait for it forever).
        """
        self.fd = fd
        self.link_grace_ns = -1 if link_down_grace is None else <int64_t>(
            <double>link_down_grace * 1e9)
        self.ifname = ifname
        self.mode = mode
        self.timeout_ms = timeout_ms
        self.snaplen = snaplen
        self.cooked = cooked
        self.reinsert_vlan = reinsert_vlan
        self.vlan_offset = vlan_offset
        self.lo_ifindex = lo_ifindex
        self.direction = direction
        self.linktype = linktype
        self.opts.snaplen = snaplen
        self.opts.cooked = cooked
        self.opts.reinsert_vlan = reinsert_vlan
        self.opts.vlan_offset = vlan_offset
        self.opts.lo_ifindex = lo_ifindex
        self.opts.direction = direction
        self.opts.rewalk = 0            # the ring's cursor walks each packet once
        self.page_size = sysconf(_SC_PAGESIZE)
        self.expect_gen = 1
        self.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)
        if self.wake_fd < 0:
            _raise_errno("eventfd")
        # the mode's operations are chosen here, once (_units.pxi)
        if mode == _MODE_V3:
            self.ops = &_V3_OPS
        elif mode == _MODE_V2:
            self.ops = &_V2_OPS
        elif mode == _MODE_COPY:
            self.ops = &_COPY_OPS
        else:
            raise ValueError(f"unknown ring mode {mode}")
        if self.ops.mapped:
            self._setup_ring(block_size, block_count, frame_size, rxhash, reserve)
        else:
            self._setup_copy(copy_batch, block_size * block_count)

    cdef int _setup_ring(self, size_t block_size, Py_ssize_t block_count,
                         size_t frame_size, bint rxhash, int reserve) except -1:
        cdef bint v3 = self.mode == _MODE_V3
        cdef int version = TPACKET_V3 if v3 else TPACKET_V2
        cdef tpacket_req3 req
        cdef unsigned int ures = reserve
        cdef size_t capacity
        cdef Py_ssize_t i
        if setsockopt(self.fd, SOL_PACKET, PACKET_VERSION, &version, sizeof(version)) < 0:
            _raise_errno("PACKET_VERSION")
        if ures and setsockopt(self.fd, SOL_PACKET, PACKET_RESERVE, &ures, sizeof(ures)) < 0:
            _raise_errno("PACKET_RESERVE")
        memset(&req, 0, sizeof(req))
        if v3:
            self.slot_size = block_size
            self.nslots = block_count
            self.frame_hdr_end = V3_HDR_END
            req.tp_block_size = block_size
            req.tp_block_nr = block_count
            req.tp_frame_size = block_size       # V3 ignores frames; keep the arithmetic trivial
            req.tp_frame_nr = block_count
            req.tp_retire_blk_tov = self.timeout_ms
            req.tp_feature_req_word = TP_FT_REQ_FILL_RXHASH if rxhash else 0
            # the smallest packet takes V3_HDR_END + a few bytes, 8-aligned
            capacity = block_size // MIN_V3_PACKET + 1
        else:
            # one page-aligned frame per kernel block: each frame can be
            # snapshotted on its own (see _snapshot_slot)
            self.slot_size = frame_size
            self.nslots = (block_size * block_count) // frame_size
            self.frame_hdr_end = V2_HDR_END
            req.tp_block_size = frame_size
            req.tp_block_nr = self.nslots
            req.tp_frame_size = frame_size
            req.tp_frame_nr = self.nslots
            capacity = 1
        if setsockopt(self.fd, SOL_PACKET, PACKET_RX_RING, &req,
                      sizeof(tpacket_req3) if v3 else sizeof(tpacket_req)) < 0:
            e = errno
            if e == ENOMEM:
                raise _errors.RingAllocationError(
                    f"the kernel could not allocate a {human_size(self.slot_size * self.nslots)} ring "
                    f"({self.nslots} x {human_size(self.slot_size)}): use a smaller block_count or block_size")
            raise OSError(e, f"PACKET_RX_RING ({self.nslots} x {self.slot_size} bytes): {os.strerror(e)}")
        self.map_size = self.slot_size * self.nslots
        self.slot_base = <unsigned char **>calloc(self.nslots, sizeof(unsigned char *))
        self.spare_used = <uint8_t *>calloc(self.nslots, 1)
        self.slot_held = <uint8_t *>calloc(self.nslots, 1)
        if not (self.slot_base and self.spare_used and self.slot_held):
            raise MemoryError()
        self.deferred = []
        self.defer_limit = self.nslots // 4 if self.nslots >= 4 else 1
        self.backing = BACKING_RING
        cdef void *m = mmap(NULL, self.map_size, PROT_READ | PROT_WRITE, MAP_SHARED, self.fd, 0)
        if m == MAP_FAILED:
            e = errno
            if e == ENOMEM:
                raise _errors.RingAllocationError(
                    f"cannot map the {human_size(self.map_size)} ring: use a smaller block_count or block_size")
            raise OSError(e, f"mmap of the ring: {os.strerror(e)}")
        self.n_mappings = 1
        for i in range(self.nslots):
            self.slot_base[i] = <unsigned char *>m + i * self.slot_size
        return self._setup_packets(capacity)

    cdef int _setup_copy(self, int batch_len, size_t rcvbuf) except -1:
        cdef int one = 1
        cdef int ibuf
        cdef Py_ssize_t i
        if setsockopt(self.fd, SOL_PACKET, PACKET_AUXDATA, &one, sizeof(one)) < 0:
            _raise_errno("PACKET_AUXDATA")
        if setsockopt(self.fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one)) < 0:
            _raise_errno("SO_TIMESTAMPNS")
        ibuf = <int>min(rcvbuf, 0x7fffffff) // 2   # the kernel doubles it
        if setsockopt(self.fd, SOL_SOCKET, SO_RCVBUFFORCE, &ibuf, sizeof(ibuf)) < 0:
            setsockopt(self.fd, SOL_SOCKET, SO_RCVBUF, &ibuf, sizeof(ibuf))
        self.batch_len = batch_len
        cdef size_t cap = self.snaplen if self.snaplen < 65536 + 4096 else 65536 + 4096
        self.chunk_slot = (COPY_HEADROOM + cap + 63) & ~(<size_t>63)
        self.ctrl_slot = zcap_cmsg_space(sizeof(tpacket_auxdata)) + zcap_cmsg_space(sizeof(timespec)) + 64
        self.msgs = calloc(batch_len, sizeof(mmsghdr))
        self.iovs = calloc(batch_len, sizeof(iovec))
        self.names = calloc(batch_len, sizeof(sockaddr_ll))
        self.ctrl = <unsigned char *>calloc(batch_len, self.ctrl_slot)
        self.frame_hdr_end = COPY_HEADROOM
        self.backing = BACKING_CHUNK
        if not (self.msgs and self.iovs and self.names and self.ctrl):
            raise MemoryError()
        return self._setup_packets(batch_len)

    cdef int _setup_packets(self, Py_ssize_t capacity) except -1:
        """The packet table and the packet-object lists for units of up to
        `capacity` packets (every mode)."""
        self.table_capacity = capacity
        self.cols = _Columns(capacity)
        self.cap_free = capacity if capacity > 64 else 64
        self.free_pkts = <PyObject **>malloc(self.cap_free * sizeof(PyObject *))
        self.cap_issued = 64
        self.issued = <PyObject **>malloc(self.cap_issued * sizeof(PyObject *))
        if not (self.free_pkts and self.issued):
            raise MemoryError()
        return 0

    def __dealloc__(self):
        self._shutdown()
        if not self.fds_closed:
            self._close_fds()
        free(self.slot_base)
        free(self.spare_used)
        free(self.slot_held)
        free(self.issued)
        free(self.free_pkts)
        free(self.msgs)
        free(self.iovs)
        free(self.names)
        free(self.ctrl)

    # -- properties ---------------------------------------------------------

    @property
    def slot_count(self):
        """How many slots the ring has: V3 blocks, V2 frames (0 in copy mode)."""
        return self.nslots

    def fileno(self):
        if self.closed:
            raise _errors.CaptureClosedError("capture is closed")
        return self.fd

    def bind(self, int ifindex, int protocol):
        """Start receiving: bind to `ifindex` (0 = every interface) and `protocol`."""
        cdef sockaddr_ll sll
        memset(&sll, 0, sizeof(sll))
        sll.sll_family = 17     # AF_PACKET
        sll.sll_protocol = htons(<uint16_t>protocol)
        sll.sll_ifindex = ifindex
        if bind(self.fd, <sockaddr *>&sll, sizeof(sll)) < 0:
            _raise_errno(f"bind to ifindex {ifindex}")
        if ifindex != 0 and ifindex != self.lo_ifindex:
            # one interface, not loopback: no packet can be a loopback duplicate,
            # so the walker need not read each packet's address to look for one
            self.opts.lo_ifindex = -1
        self.bound = True
        self.bound_ifindex = ifindex

    cdef int _attach(self, bytes program) except -1:
        """SO_ATTACH_FILTER a packed struct sock_filter array; the switch is atomic."""
        cdef sock_fprog prog
        cdef int e
        prog.len = len(program) // 8
        prog.filter = <sock_filter *><const char *>program
        if setsockopt(self.fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) < 0:
            e = errno
            if e == EPERM:
                raise _errors.FilterError("the capture's filter is locked (lock_filter=True); "
                                          "it cannot be changed")
            raise OSError(e, f"SO_ATTACH_FILTER: {os.strerror(e)}")
        return 0

    def set_filter(self, kernel, user, *, bint user_only=False):
        """Install a filter: `kernel` (a BPFProgram, or packed bytes) is attached to
        the socket; `user` is the same filter in the form that matches the
        kernel's view of a packet with any synthesized cooked header (the VLAN
        tag not reinserted yet: libpcap's live semantics).

        user_only: the kernel cannot run the filter; `kernel` only truncates to
        snaplen and `user` is run on every packet in user space, in the walker.

        Called again while capturing, the kernel switches programs atomically
        and every unit the previous program may have filled (blocks handed
        over, the block being filled, a packet in flight) is filtered again in
        user space with the new one, so no packet the new filter rejects is
        ever delivered.  A FilterError leaves the previous filter in place.
        """
        cdef bytes program = kernel if isinstance(kernel, bytes) else kernel.as_bytes()
        cdef BPFProgram uprog = user
        if self.closed:
            raise _errors.CaptureClosedError("the capture is closed")
        if self.filter_locked:
            raise _errors.FilterError("the capture's filter is locked (lock_filter=True); "
                                      "it cannot be changed")
        self._attach(program)
        self.kernel_filter = kernel
        self.user_filter = uprog
        self.opts.uprog = uprog.insns if uprog is not None else NULL
        self.opts.uprog_n = uprog.n if uprog is not None else 0
        self.ufilter_always = user_only and uprog is not None
        self.opts.ufilter = self.ufilter_always
        self.refilter_until = 0
        self.refilter_units = 0
        if uprog is not None and self.bound:
            # (also for a user-space filter: the open unit's table was parsed
            # under the previous one)
            self.ops.mark_refilter(self)

    cdef int _refilter_table(self) except -1:
        """Drop the not yet delivered table entries the user filter rejects.

        The filter runs on the kernel's view: an entry whose VLAN tag was
        reinserted is filtered on a copy without it."""
        cdef _Columns c = self.cols
        cdef Py_ssize_t i, keep = self.pos
        cdef BPFAux aux
        cdef uint32_t caplen, vo
        cdef PacketMeta *m
        cdef const unsigned char *data
        cdef unsigned char *view = NULL
        for i in range(self.pos, self.count):
            m = &c.meta[i]
            bpf_aux_clear(&aux)
            aux.ifindex = <uint32_t>m.ifindex
            aux.protocol = m.protocol
            aux.pkttype = m.pkttype
            aux.rxhash = m.rxhash
            if m.flags & META_VLAN:
                aux.vlan_present = 1
                aux.vlan_tci = m.vlan_tci
                aux.vlan_tpid = m.vlan_tpid
            data = self.unit_base + c.offsets[i]
            if c.flags[i] & META_VLAN_INSERTED:
                vo = <uint32_t>self.opts.vlan_offset
                free(view)
                view = <unsigned char *>malloc(c.caplen[i] + 1)
                if view == NULL:
                    raise MemoryError()
                memcpy(view, data, vo)
                memcpy(view + vo, data + vo + VLAN_TAG_LEN, c.caplen[i] - vo - VLAN_TAG_LEN)
                caplen = bpf_run(self.opts.uprog, self.opts.uprog_n, view,
                                 c.caplen[i] - VLAN_TAG_LEN, c.wirelen[i] - VLAN_TAG_LEN, &aux)
                if caplen != 0:
                    caplen += VLAN_TAG_LEN
            else:
                caplen = bpf_run(self.opts.uprog, self.opts.uprog_n, data,
                                 c.caplen[i], c.wirelen[i], &aux)
            if caplen == 0:
                self.walked.filtered += 1
                continue
            c.offsets[keep] = c.offsets[i]
            c.caplen[keep] = caplen if caplen < c.caplen[i] else c.caplen[i]
            c.wirelen[keep] = c.wirelen[i]
            c.ts_ns[keep] = c.ts_ns[i]
            c.hoff[keep] = c.hoff[i]
            c.flags[keep] = c.flags[i]
            c.meta[keep] = c.meta[i]
            keep += 1
        free(view)
        self.count = keep
        return 0

    def lock_filter(self):
        """SO_LOCK_FILTER: the filter can no longer be changed or removed."""
        cdef int one = 1
        if setsockopt(self.fd, SOL_SOCKET, SO_LOCK_FILTER, &one, sizeof(one)) < 0:
            _raise_errno("SO_LOCK_FILTER")
        self.filter_locked = True

    # -- acquiring units ----------------------------------------------------

    cdef _Columns _table(self):
        """The packet table for a unit; a fresh one if the last is still referenced.

        A table left behind because column exports still used it (the README's
        `offsets = np.frombuffer(batch.offsets, ...)` keeps one while the next
        batch is taken) is taken back once nothing else holds it: a few tables
        take turns instead of a new multi-megabyte one, with its page faults,
        per block."""
        cdef Py_ssize_t k
        if self.cols is None and self.cols_kept:
            for k in range(len(self.cols_kept)):
                if Py_REFCNT(PyList_GET_ITEM(self.cols_kept, k)) == 1:    # only this list
                    self.cols = self.cols_kept.pop(k)
                    break
        if self.cols is None:
            self.cols = _Columns(self.table_capacity)
        return self.cols

    cdef int _corrupt(self, int code, size_t bad_off) except -1:
        """Skip a malformed unit: hand it back and report it."""
        cdef Py_ssize_t slot = self.unit_slot
        self.st_corrupt_blocks += 1
        self.walk_left = 0
        self.pos = self.count
        self._release_unit()
        raise _errors.RingCorruptionError(
            f"ring {self.ops.unit_name.decode()} {slot} "
            f"(generation {self.unit_gen}) is malformed at offset {bad_off}: "
            f"{_parse_error_text(code).decode()}; the unit was skipped and handed back")

    # -- releasing units ----------------------------------------------------

    cdef int _release_unit(self) except -1:
        """Leave the current unit: the packets the application kept are
        retained (_retain.pxi), then the unit goes back to the kernel unless
        buffer exports still point into it (then it is deferred)."""
        cdef bint deferred
        if not self.unit_open:
            return 0
        self.unit_open = False
        deferred = _retain_packets(self)
        if self.cols is not None and Py_REFCNT(<PyObject *>self.cols) > 1:
            # reused by _table() once its exports die; a few at most
            if self.cols_kept is None:
                self.cols_kept = []
            self.cols_kept.append(self.cols)
            if len(self.cols_kept) > KEPT_TABLES:
                del self.cols_kept[0]
            self.cols = None
        if not deferred:
            self.ops.hand_back(self, self.unit_slot)
        return 0

    # -- waiting ------------------------------------------------------------

    cdef int _wait(self, int timeout_ms) except -1:
        """Sleep until the ring may have a unit, a wake-up, or the timeout.

        The kernel never hands over an empty block, so an idle link never
        wakes us: every timeout here is zcap's own.
        """
        cdef pollfd pfd[2]
        cdef int rc, e, err = 0
        cdef socklen_t elen = sizeof(err)
        cdef uint64_t junk
        cdef unsigned long nfds = 2
        pfd[0].fd = self.wake_fd
        pfd[0].events = POLLIN
        pfd[0].revents = 0
        pfd[1].fd = self.fd
        pfd[1].events = POLLIN
        pfd[1].revents = 0
        if self.spurious_wake or self.link_error:
            # The socket reports readable for a unit we cannot take (one the
            # application holds, or the link is down): sleep for one block
            # timeout instead of spinning on poll().
            nfds = 1
            if timeout_ms < 0 or timeout_ms > self.timeout_ms:
                timeout_ms = self.timeout_ms
        self.waiters += 1
        with nogil:
            rc = poll(pfd, nfds, timeout_ms)
            e = errno
        self.waiters -= 1
        self.st_polls += 1
        if self.closed:
            if self.waiters == 0 and self.async_unwatch is None and not self.fds_closed:
                self._close_fds()
            return 0
        if rc < 0:
            if e == EINTR:
                PyErr_CheckSignals()
                return 0
            raise OSError(e, f"poll: {os.strerror(e)}")
        if pfd[0].revents:
            read(self.wake_fd, &junk, sizeof(junk))
        if nfds == 2 and (pfd[1].revents & POLLERR):
            if getsockopt(self.fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 and err:
                if err == ENETDOWN or err == ENODEV or err == ENXIO:
                    self.link_error = err
                else:
                    raise OSError(err, f"capture socket error: {os.strerror(err)}")
        if nfds == 2 and (pfd[1].revents & POLLIN) and self.ops.mapped:
            self.spurious_wake = True      # cleared by the next successful acquire
        return 0

    cdef int _advance(self, int64_t deadline_ns) except -1:
        """Release the current unit and acquire the next, waiting if needed.

        deadline_ns: -1 waits forever, 0 never waits.  Returns 1 when a unit
        is current, 0 on timeout, close or breakloop().
        """
        cdef int64_t now, remaining
        cdef int timeout_ms
        if self.unit_open:
            self._release_unit()
        while True:
            if self.closed:
                return 0
            if self.deferred:
                _settle_deferred(self)
            if self.break_requested:
                self.break_requested = False
                return 0
            if self.drained:
                return 0
            if self.ops.acquire(self):
                return 1
            if self.link_error:
                # The interface went down or away.  A flap is ridden out; a
                # deleted interface, or one down for longer than the grace,
                # ends the iteration once what the kernel had is delivered.
                self._link_check()
            if self.stopped and self._drain_done():
                # stop(): everything accepted before it has been read
                self.drained = True
                return 0
            if deadline_ns == 0:
                return 0
            if deadline_ns > 0:
                remaining = deadline_ns - _now_ns()
                if remaining <= 0:
                    return 0
                timeout_ms = <int>((remaining + 999999) // 1000000)
            else:
                timeout_ms = -1
            if (self.link_error or self.stopped) and (
                    timeout_ms < 0 or timeout_ms > self.timeout_ms):
                timeout_ms = self.timeout_ms      # look again after a block timeout
            self._wait(timeout_ms)

    cdef int _drain_done(self) except -1:
        """After the kernel stopped feeding the ring: is nothing accepted left?

        1 when no unit is ready and the kernel holds no partly filled block;
        0 while one is still to be retired (within a block timeout, normally).
        If it is not retired within two block timeouts and DRAIN_GRACE_MS,
        its packets are counted as abandoned.
        """
        cdef Py_ssize_t slot = self.cur_slot
        cdef uint32_t pending
        cdef int64_t now
        if self.stop_method == STOP_NOTHING and not self.link_error:
            return 1                # the kernel still feeds it: stop at what was ready
        if not self.ops.mapped:
            return 1 if self.queue_empty else 0
        if self.slot_held[slot]:
            return 1                # held by the application; counted at close
        if self.ops.slot_status(self.slot_base[slot]) & TP_STATUS_USER:
            return 0
        pending = self.ops.unretired(self, self.slot_base[slot])
        if pending == 0:
            self.drain_deadline = 0
            return 1
        now = _now_ns()
        if self.drain_deadline == 0:
            # The kernel's block timer retires it within a block timeout; on
            # a loaded machine (load ~12) it has fired more than 100 ms
            # late, so the bound is a second more than that:
            # it only ends a wait for a block the kernel never hands over.
            self.drain_deadline = now + (<int64_t>self.timeout_ms * 2 + DRAIN_GRACE_MS) * 1000000
            return 0
        if now < self.drain_deadline:
            return 0
        self.st_abandoned += pending
        self.drain_deadline = 0
        return 1

    cdef int _link_check(self) except -1:
        """The socket reported ENETDOWN/ENODEV: ride out a flap, or end the capture."""
        cdef int64_t now = _now_ns()
        cdef object state
        cdef uint64_t before
        if self.link_down_since == 0:
            self.link_down_since = now
        state = _linkstate.state(self.fd if not self.fds_closed else -1, self.ifname)
        if state == _linkstate.UP:
            # back up: the kernel re-hooked the socket on NETDEV_UP (after a
            # stop() only to the protocol no link produces)
            self.link_error = 0
            self.link_down_since = 0
            self.spurious_wake = False
            return 0
        if state == _linkstate.DOWN and (self.link_grace_ns < 0 or
                                         now - self.link_down_since < self.link_grace_ns):
            return 0
        if not self._drain_done():
            return 0
        before = self.st_abandoned
        self._collect_kernel_stats()
        self._count_unread()
        raise _errors.link_down_error(self.ifname, self.fd, self.link_error,
                                      lost=self.st_abandoned - before,
                                      down_for=(now - self.link_down_since) / 1e9)

    cdef int _count_unread(self) noexcept:
        """Count packets the kernel accepted that will never be read as abandoned."""
        cdef uint64_t accounted = (self.st_delivered + self.st_dropped + self.walked.filtered
                                   + self.walked.skipped + self.st_abandoned)
        if self.st_received > accounted:
            self.st_abandoned += self.st_received - accounted
        return 0

    def stop(self):
        """Stop taking packets without losing any the kernel accepted.

        Idempotent; safe from another thread or a signal handler.  The socket
        is unbound (an RCU barrier: no packet is in flight afterwards), or,
        where the kernel refuses that (a fanout group), given a reject-all
        filter.  Iteration then delivers every packet already accepted and
        ends when the ring is empty of them.
        """
        cdef sockaddr_ll sll
        cdef int rc = -1
        cdef bint filtered = False
        cdef timespec settle
        settle.tv_sec = 0
        settle.tv_nsec = 2000000
        if self.stopped or self.closed:
            self.stopped = True
            return
        self.stopped = True
        if self.bound and not self.fds_closed:
            if not self.filter_locked:
                try:
                    self._attach(_REJECT_ALL)       # nothing new passes the filter
                    filtered = True
                except Exception:
                    pass
            # Rebinding unhooks the socket from the protocol it had and waits
            # for an RCU grace period (synchronize_net): afterwards no packet is
            # in flight towards the ring.
            memset(&sll, 0, sizeof(sll))
            sll.sll_family = 17     # AF_PACKET
            sll.sll_protocol = htons(STOP_PROTOCOL)
            sll.sll_ifindex = self.bound_ifindex
            self.waiters += 1
            with nogil:
                rc = bind(self.fd, <sockaddr *>&sll, sizeof(sll))
                if rc != 0 and filtered:
                    nanosleep(&settle, NULL)    # let a packet past the old filter land
            self.waiters -= 1
            if self.closed:
                if self.waiters == 0 and self.async_unwatch is None and not self.fds_closed:
                    self._close_fds()
                return
            if rc == 0:
                self.stop_method = STOP_UNHOOKED
            elif filtered:
                self.stop_method = STOP_FILTERED
            else:
                self.stop_method = STOP_NOTHING
            self.bound = False
        else:
            self.stop_method = STOP_UNHOOKED
        self._wake()

    # -- consumer API -------------------------------------------------------

    cdef int _enter(self) except -1:
        if self.busy or self.async_armed:
            raise RuntimeError("this capture is already being read by another "
                               f"{'task' if self.async_armed else 'thread'}; "
                               "use one reader per capture")
        self.busy = True
        return 0

    cdef int _leave(self) except -1:
        self.busy = False
        if self.close_requested and not self.closed:
            self.close()
        return 0

    cdef inline Packet _take_object(self):
        """A Packet object for the current unit, registered in `issued`.

        The packet handed out two steps ago is usually free again (the loop
        variable moved on): it is reused, so the working set stays a couple
        of objects and the steady state allocates nothing.
        """
        cdef PyObject *o
        cdef Packet p
        cdef Py_ssize_t n = self.n_issued
        if n >= 2 and Py_REFCNT(self.issued[n - 2]) == 1:
            o = self.issued[n - 2]
            self.issued[n - 2] = self.issued[n - 1]
            self.issued[n - 1] = o
            return <Packet>o
        if n >= 1 and Py_REFCNT(self.issued[n - 1]) == 1:
            return <Packet>self.issued[n - 1]
        if n == self.cap_issued:
            self._grow_issued()
        if self.n_free:
            self.n_free -= 1
            o = self.free_pkts[self.n_free]
            self.issued[n] = o              # the free list's reference moves here
            p = <Packet>o
        else:
            p = self._new_packet()
            Py_INCREF(p)
            self.issued[n] = <PyObject *>p
        self.n_issued = n + 1
        return p

    cdef Packet _new_packet(self):
        """Allocate a Packet; the only step of the fast path that can fail."""
        cdef Packet p = Packet.__new__(Packet)
        p.backing = self.backing
        if not self.unit_open:
            # a finalizer run by the allocation let another thread close the capture
            raise _errors.CaptureClosedError("the capture was closed while a packet was being read")
        return p

    cdef int _grow_issued(self) except -1:
        cdef Py_ssize_t cap = self.cap_issued * 2
        cdef PyObject **a = <PyObject **>realloc(self.issued, cap * sizeof(PyObject *))
        if a == NULL:
            raise MemoryError()
        self.issued = a
        self.cap_issued = cap
        return 0

    cdef inline Packet _packet_from_raw(self, RawPacket *raw):
        cdef Packet p = self._raw_packet(raw)
        self.st_delivered += 1
        return p

    cdef inline Packet _raw_packet(self, RawPacket *raw):
        """A packet at the walker's cursor (not counted: a batch counted it)."""
        cdef Packet p = self._take_object()
        if p.owner is not None:
            p.owner = None              # a reused object whose export had its own copy
        p.data = raw.data
        p._caplen = raw.caplen
        p._wirelen = raw.wirelen
        p.hdr = raw.hdr
        p.flags = raw.flags
        p.linktype = self.linktype
        return p

    cdef inline Packet _packet_from_table(self, Py_ssize_t i):
        cdef Packet p = self._table_packet(self.cols, i)
        self.st_delivered += 1
        return p

    cdef inline Packet _table_packet(self, _Columns cols, Py_ssize_t i):
        """Entry i of a unit's table (not counted: a batch counted it)."""
        cdef Packet p = self._take_object()
        if p.owner is not None:
            p.owner = None
        p.data = self.unit_base + cols.offsets[i]
        p._caplen = cols.caplen[i]
        p._wirelen = cols.wirelen[i]
        p.flags = cols.flags[i]
        p.linktype = self.linktype
        if self.ops.unit_headers:
            p.hdr = self.unit_base + cols.hoff[i]
        else:
            p.hdr = NULL
            p.meta = cols.meta[i]
        return p

    cdef inline Packet _unit_packet(self):
        """The next packet of the current unit, or None when it has no more.

        The one place a packet is taken from a unit: a V3 block is walked by
        the cursor (walk_left packets left, _walk.pxi); a V2 frame or a copy
        batch, and a V3 block whose rest a batch took, are read from the
        table (pos < count).  Only one of the two is ever non-empty, so
        nothing here tests the mode."""
        cdef RawPacket raw
        cdef size_t bad_off = 0
        cdef Py_ssize_t i
        cdef int r
        if self.walk_left:
            r = _v3_step_ahead(self.unit_base, self.unit_size, &self.walk_off, &self.walk_left,
                               &self.opts, &raw, &bad_off, &self.walked)
            if r > 0:
                return self._packet_from_raw(&raw)
            if r < 0:
                self._corrupt(r, bad_off)
        elif self.pos < self.count:
            i = self.pos
            self.pos = i + 1
            return self._packet_from_table(i)
        return None

    cdef inline Packet _next_packet(self, int64_t deadline_ns):
        """The common case inline: the current unit has packets.  No wait, no
        system call, no allocation when an idle object is reused.  Without an
        allocation nothing here can let another thread run, and _new_packet
        re-checks the unit after allocating, so no busy flag is needed."""
        cdef Packet p
        if self.unit_open and not self.break_requested:
            p = self._unit_packet()
            if p is not None:
                return p
        return self._next_packet_slow(deadline_ns)

    cdef Packet _next_packet_slow(self, int64_t deadline_ns):
        """Wait for and acquire the next unit, then take its first packet."""
        cdef Packet p
        if self.break_requested:
            # takes effect at once; the rest of the unit waits for the next read
            self.break_requested = False
            return None
        self._enter()
        try:
            while True:
                if self.unit_open:
                    p = self._unit_packet()
                    if p is not None:
                        return p
                if not self._advance(deadline_ns):
                    return None
        finally:
            self._leave()

    cdef Batch _next_batch(self, int64_t deadline_ns):
        cdef Batch b
        cdef Py_ssize_t n, start = 0
        cdef size_t bad_off = 0
        cdef bint lazy = False
        self._enter()
        try:
            while True:
                if self.unit_open:
                    if self.walk_left and _walk_is_pure(&self.opts):
                        # every packet left will be delivered as it is: walk it only
                        # when the batch is iterated; build the table only if asked
                        lazy = True
                        start = 0
                        n = self.walk_left
                        break
                    if self.walk_left:
                        # a V3 cursor: the rest of the block into the table
                        n = _v3_fill_table(self.unit_base, self.unit_size, &self.walk_off,
                                           &self.walk_left, self._table(), &self.opts, &bad_off,
                                           &self.walked)
                        if n < 0:
                            self._corrupt(<int>n, bad_off)
                        if n > 0:
                            start = 0
                            break
                    elif self.pos < self.count:
                        n = self.count
                        start = self.pos
                        self.pos = self.count
                        break
                if not self._advance(deadline_ns):
                    return None
            b = Batch.__new__(Batch)
            b.ring = self
            if lazy:
                b.lazy = True
                b.walk_off = self.walk_off
                b.walk_left = self.walk_left
                b.opts = self.opts
                b.opts.rewalk = 1           # iterated, columns, field(): one walk each
                self.walk_left = 0
                self.st_lazy_batches += 1
            else:
                b.cols = self.cols
            b.start = start
            b.stop = n
            b.base = self.unit_base
            b.size = self.unit_size
            b._generation = self.unit_gen
            b.valid = True
            self.cur_batch = b
            self.st_delivered += n - start
            return b
        finally:
            self._leave()

    def __iter__(self):
        return self

    def __next__(self):
        cdef Packet p = self._next_packet(-1)
        if p is None:
            raise StopIteration
        return p

    def next(self, timeout=None):
        """One packet, or None when `timeout` seconds pass (None: wait forever)."""
        return self._next_packet(_deadline_from_timeout(timeout))

    def next_batch(self, timeout=None):
        """The rest of the current unit or the next one, or None on timeout."""
        return self._next_batch(_deadline_from_timeout(timeout))

    def batches(self, *, budget_us=None):
        """Batches, one per ring block; `async for` works on it too."""
        cdef _BatchStream s = _BatchStream.__new__(_BatchStream)
        s.ring = self
        s.budget_us = budget_us
        return s

    cdef Py_ssize_t consume(self, zcap_packet_cb cb, void *ctx,
                            Py_ssize_t max_packets, int timeout_ms) except -1:
        """Call cb on up to max_packets packets with no Python object per packet.

        Waits at most timeout_ms (-1: forever) whenever the ring runs dry.
        Returns the number of packets passed to cb; stops early when cb
        returns non-zero.  In ring mode the callback runs as the cursor walks
        the block, while each packet is still in cache.
        """
        cdef Py_ssize_t done = 0, got = 0, i, end
        cdef size_t bad_off = 0
        cdef int64_t deadline
        cdef int stop = 0
        cdef int r
        self._enter()
        try:
            while done < max_packets and not stop:
                if self.unit_open:
                    if self.walk_left:
                        # plain walk and _v3_step (_plainwalk.pxi)
                        r = _v3_consume(self.unit_base, self.unit_size, &self.walk_off,
                                        &self.walk_left, &self.opts, &self.walked, cb, ctx,
                                        max_packets - done, &got, &stop, &bad_off)
                        done += got
                        if r < 0:
                            self.st_delivered += done
                            done = 0
                            self._corrupt(r, bad_off)
                        if r > 0:
                            break               # budget spent or cb said stop
                    elif self.pos < self.count:
                        i = self.pos
                        end = self.count
                        if end - i > max_packets - done:
                            end = i + (max_packets - done)
                        while i < end:
                            stop = cb(ctx, self.unit_base + self.cols.offsets[i],
                                      self.cols.caplen[i], self.cols.wirelen[i],
                                      self.cols.ts_ns[i])
                            i += 1
                            if stop:
                                break
                        done += i - self.pos
                        self.pos = i
                        continue
                if timeout_ms < 0:
                    deadline = -1
                elif timeout_ms == 0:
                    deadline = 0
                else:
                    deadline = _now_ns() + <int64_t>timeout_ms * 1000000
                if not self._advance(deadline):
                    break
            self.st_delivered += done
            return done
        finally:
            self._leave()

    # -- async support (zcap.aio) -------------------------------------------

    def __aiter__(self):
        return _async_iter(self, False, None)

    def aiter(self, *, budget_us=None):
        """An async iterator of packets that yields to the loop every budget_us."""
        return _async_iter(self, False, budget_us)

    cdef bint _unit_has_more(self) noexcept:
        return self.unit_open and (self.walk_left > 0 or self.pos < self.count)

    def _async_arm(self, notify=None):
        """A task is about to sleep on this ring's socket (zcap.aio.Waiter).

        close() and breakloop() call `notify` (thread-safe) instead of making
        the loop watch the wake-up eventfd as well: one fd less to register
        and unregister per wait.  A close or break that came first notifies
        at once; under the GIL nothing runs between that check and the arm.
        """
        if self.async_armed:
            raise RuntimeError("this capture is already being read by another task; "
                               "use one reader per capture")
        if self.busy:
            raise RuntimeError("this capture is being read by another thread; "
                               "use one reader per capture")
        self.async_armed = True
        self.waiters += 1
        self.async_notify = notify
        if notify is not None and (self.closed or self.break_requested):
            notify()

    def _async_disarm(self):
        """The task woke up; close the fds now if close() had to leave them."""
        if not self.async_armed:
            return
        self.async_armed = False
        self.async_notify = None
        self.waiters -= 1
        if self.closed and self.waiters == 0 and self.async_unwatch is None and not self.fds_closed:
            self._close_fds()

    def _async_watch(self, unwatch):
        """A loop watches the socket from now on, also between waits (zcap.aio.Waiter).

        The fds stay open while it does; close() calls `unwatch` (which must
        end in _async_unwatched(unwatch), at once or later on the loop's
        thread).  A watcher left behind (an iterator abandoned by `break`)
        is told to let go first: the new one takes over.
        """
        cdef object previous = self.async_unwatch
        if previous is not None:
            previous()
        self.async_unwatch = unwatch

    def _async_unwatched(self, unwatch):
        """The watcher `unwatch` let go; close the fds if close() left them."""
        if self.async_unwatch is None or self.async_unwatch != unwatch:
            return              # not (or no longer) the registered watcher
        self.async_unwatch = None
        if self.closed and self.waiters == 0 and self.async_unwatch is None and not self.fds_closed:
            self._close_fds()

    def _async_peek(self):
        """For a loop's reader callback, without a system call: is there work?

        1: a unit is ready, or the consumer must act (close, breakloop, stop,
        a link error, a block the application holds); 0: the next unit is
        still the kernel's (a readiness the consumer has already drained);
        -1: copy mode, where only reading the socket can tell.
        """
        cdef Py_ssize_t slot
        if not self.ops.mapped:
            return -1
        if self.closed or self.break_requested or self.stopped or self.link_error:
            return 1
        if self._unit_has_more():
            return 1
        slot = self.cur_slot
        if self.slot_held[slot]:
            return 1
        return 1 if self.ops.slot_status(self.slot_base[slot]) & TP_STATUS_USER else 0

    def _poll_now(self):
        """A zero-timeout poll: drains wake-ups, picks up a socket error."""
        if not self.closed and not self.fds_closed:
            self.waiters += 1
            try:
                self._wait(0)
            finally:
                self.waiters -= 1

    @property
    def waiting_for_link(self):
        """The link failed; the ring still drains what the kernel had filled."""
        return self.link_error != 0

    @property
    def draining(self):
        """stop() was called and packets it accepted before may still arrive."""
        return self.stopped and not self.drained and not self.closed

    def wake_fileno(self):
        return self.wake_fd

    def breakloop(self):
        """Make a blocked or upcoming wait return at once (like pcap_breakloop)."""
        self.break_requested = True
        self._wake()

    cdef int _wake(self) except -1:
        """Wake a thread sleeping in poll() (the eventfd) and a sleeping task."""
        cdef uint64_t one = 1
        cdef object notify = self.async_notify
        if self.wake_fd >= 0 and not self.fds_closed:
            write(self.wake_fd, &one, sizeof(one))
        if notify is not None:
            try:
                notify()
            except BaseException:       # the loop is gone: nobody left to wake
                pass
        return 0

    # -- statistics ---------------------------------------------------------

    cdef int _collect_kernel_stats(self) except -1:
        """Fold PACKET_STATISTICS into our totals: the kernel resets it on read."""
        if self.fds_closed or self.fd < 0:
            return 0
        return self.ops.kernel_stats(self)

    cdef Py_ssize_t _ready_units(self) noexcept:
        """Units the kernel has handed over that the consumer has not reached."""
        cdef Py_ssize_t i, n = 0
        if not self.ops.mapped or self.closed:
            return 0
        for i in range(self.nslots):
            if self.slot_held[i] or (self.unit_open and i == self.unit_slot):
                continue
            if self.ops.slot_status(self.slot_base[i]) & TP_STATUS_USER:
                n += 1
        return n

    def stats(self):
        """Totals since open, as a dict (the Capture turns it into zcap.Stats)."""
        if not self.closed:
            self._collect_kernel_stats()
        return {
            "received": self.st_received,
            "dropped": self.st_dropped,
            "freezes": self.st_freezes,
            "delivered": self.st_delivered,
            "skipped": self.walked.skipped,
            "filtered": self.walked.filtered,
            "blocks": self.st_blocks,
            "lazy_batches": self.st_lazy_batches,
            "polls": self.st_polls,
            "generation_gaps": self.st_generation_gaps,
            "snapshots": self.st_snapshots,
            "deferred": self.st_deferred,
            "deferred_now": len(self.deferred) if self.deferred is not None else 0,
            "export_copies": self.st_export_copies,
            "retained_bytes": self.retained_bytes,
            "detached": self.st_detached,
            "held": self.held_now,
            "held_total": self.st_held_total,
            "corrupt_blocks": self.st_corrupt_blocks,
            "ready": self._ready_units(),
            "ring_blocks": self.nslots,            # 0 in copy mode
            "mappings": self.n_mappings,
            "abandoned": self.st_abandoned,
        }

    # -- closing ------------------------------------------------------------

    def close(self):
        """Release the ring.  Safe to call twice and from another thread.

        Packets still referenced keep their bytes.  If another thread is in
        the middle of reading (not waiting), it finishes the close itself at
        its next safe point.
        """
        if self.closed:
            return
        if self.busy and self.waiters == 0:
            # Another thread is inside a ring operation (not sleeping in
            # poll): let it finish the close at its next safe point.
            self.close_requested = True
            return
        self._shutdown()
        if self.waiters == 0 and self.async_unwatch is None and not self.fds_closed:
            self._close_fds()

    cdef void _shutdown(self) noexcept:
        """Detach the application's packets, unmap the ring, wake waiters."""
        if self.closed:
            return
        try:
            self._collect_kernel_stats()
            if self.unit_open:
                self._release_unit()
            _settle_closing(self)
        except BaseException:
            pass
        self._count_unread()            # accepted but never read: not silent
        self.closed = True
        self._unmap_all()
        self._drop_free_list()
        if self.chunk != NULL:
            free(self.chunk)
            self.chunk = NULL
        if self.wake_fd >= 0 and not self.fds_closed:
            self._wake()
        if self.async_unwatch is not None:
            # a loop still watches the socket: it must let go before the fds close
            try:
                self.async_unwatch()
            except BaseException:       # the loop is gone: __dealloc__ closes the fds
                pass

    cdef void _unmap_all(self) noexcept:
        """Unmap every ring range except those owned by a _Storage."""
        _unmap_ring(self)

    cdef void _drop_free_list(self) noexcept:
        cdef Py_ssize_t k
        for k in range(self.n_free):
            Py_DECREF(<object>self.free_pkts[k])
        self.n_free = 0

    cdef void _close_fds(self) noexcept:
        self.fds_closed = True
        if self.fd >= 0:
            close(self.fd)
            self.fd = -1
        if self.wake_fd >= 0:
            close(self.wake_fd)
            self.wake_fd = -1

include "_aio.pxi"

# ---------------------------------------------------------------------------
# helpers

def parse_v3_block(block, *, uint32_t snaplen=262144, int cooked=0,
                   bint reinsert_vlan=False, int vlan_offset=-1, int lo_ifindex=-1,
                   int direction=0, int walks=1, bint with_header=False):
    """Walk a TPACKET_V3 block image (bytes) with the ring's own walker.

    For tests and fuzzing: returns [(offset, caplen, wirelen, ts_ns, data), ...]
    (with_header: each tuple followed by the packet's header offset and its
    META_* flags) or raises RingCorruptionError, exactly as the live ring would.
    walks: how many times the image is walked, in place (a lazy batch walks its
    block once per read); the last walk's packets are returned.
    """
    cdef bytearray buf = bytearray(block)
    cdef size_t size = len(buf)
    cdef unsigned char *p
    cdef tpacket_block_desc *bd
    cdef _Columns cols
    cdef ParseOpts o
    cdef size_t bad_off = 0, off
    cdef uint32_t left
    cdef WalkCounts counts
    cdef Py_ssize_t n, i
    if size < sizeof(tpacket_block_desc):
        raise _errors.RingCorruptionError(f"block image of {size} bytes is smaller than its header")
    p = <unsigned char *><char *>buf
    bd = <tpacket_block_desc *>p
    if bd.hdr.bh1.num_pkts > size // MIN_V3_PACKET + 1:
        n = PARSE_BAD_COUNT
    else:
        cols = _Columns(size // MIN_V3_PACKET + 1)
        o.snaplen = snaplen
        o.cooked = cooked
        o.reinsert_vlan = reinsert_vlan
        o.vlan_offset = vlan_offset
        o.lo_ifindex = lo_ifindex
        o.direction = direction
        o.rewalk = 1
        o.uprog = NULL
        o.uprog_n = 0
        o.ufilter = 0
        for _ in range(max(walks, 1)):
            left = bd.hdr.bh1.num_pkts
            off = bd.hdr.bh1.offset_to_first_pkt
            counts.skipped = 0
            counts.filtered = 0
            n = _v3_fill_table(p, size, &off, &left, cols, &o, &bad_off, &counts)
            if n < 0:
                break
    if n < 0:
        raise _errors.RingCorruptionError(
            f"block is malformed at offset {bad_off}: {_parse_error_text(<int>n).decode()}")
    return [(cols.offsets[i], cols.caplen[i], cols.wirelen[i], cols.ts_ns[i],
             bytes(buf[cols.offsets[i]:cols.offsets[i] + cols.caplen[i]]))
            + ((cols.hoff[i], cols.flags[i]) if with_header else ()) for i in range(n)]

# sizes the Python layer needs for geometry checks
TPACKET3_HDR_END = V3_HDR_END
TPACKET2_HDR_END = V2_HDR_END
BLOCK_DESC_SIZE = sizeof(tpacket_block_desc)
