# Retention: what happens to a ring unit the application still points into.
#
# Included by _ring.pyx (after _objects.pxi).  Everything the Ring does to
# keep the application's packets valid lives here, as module-level cdef
# functions that take the Ring (not methods, and not a class of its own):
# they read and write the Ring's own fields (slot table, issued packets,
# counters) and are called at the few points of its unit lifecycle -
# _retain_packets() when Ring._release_unit() leaves a unit, _settle_deferred()
# and _settle_slot() when units change, _settle_closing() at close, _unhold()
# when a held unit's storage dies - so a class would only add an indirection.
# The rule, in order of cost:
#
# * a unit nobody points into goes back to the kernel at once;
# * packets still referenced (no buffer export) are copied out (detached);
# * a unit with live buffer exports (a memoryview, np.frombuffer, batch.buffer)
#   is *deferred*: it waits in Ring.deferred and goes back to the kernel as
#   soon as its exports die, checked on every later unit change and wait;
# * only when the ring runs short of free units (more than `defer_limit`
#   deferred, or the kernel has filled everything up to the oldest deferred
#   unit) is a deferred unit *snapshotted*: its pages are swapped for a
#   private copy at the same address and the ring continues in that slot
#   through a fresh mapping of the ring (`spare`), so it never stalls;
# * snapshots are separate mappings and the kernel caps a process's mappings
#   (vm.max_map_count): past `snapshot_limit` live snapshots, new buffer
#   exports of ring packets and batches are served from a copy instead, so
#   they can never pin the ring;
# * only if a snapshot fails (no memory) is a unit held back from the kernel
#   until its exports die: counted in stats().held, warned once.
#
# Copy mode (recvmmsg into a malloc'd buffer) exports a packet from a copy of
# its own bytes: a held memoryview costs about the packet's size, not the
# buffer's pages.  See docs/architecture.md, "The packet lifetime rule".

from cpython.list cimport PyList_GET_ITEM

cdef enum:
    SLOT_HELD = 1           # kept from the kernel until the application lets go
    SLOT_DEFERRED = 2       # waiting in Ring.deferred for its exports to die
    BACKING_OTHER = 0       # bytes zcap does not recycle (a copy, a file)
    BACKING_RING = 1        # bytes in a ring unit: an export pins their address
    BACKING_CHUNK = 2       # bytes in a copy-mode buffer: an export gets a copy
    EXPORT_FROM_COPY = 1    # Py_buffer.internal of an export served from a copy
    DEFER_UNITS = 1         # units the consumer takes before a deferred unit is snapshotted


def _default_snapshot_limit():
    """A quarter of the process's mapping budget (vm.max_map_count)."""
    try:
        with open("/proc/sys/vm/max_map_count") as f:
            count = int(f.read())
    except (OSError, ValueError):
        count = 65530
    return max(64, count // 4)


# Process-wide, because the mapping budget is: live snapshots, their limit,
# and the packet exports served from a copy (live count and bytes).
cdef Py_ssize_t _live_snapshots = 0
cdef Py_ssize_t _snapshot_limit = _default_snapshot_limit()
cdef Py_ssize_t _live_export_copies = 0
cdef int64_t _export_copy_bytes = 0


def set_snapshot_limit(limit):
    """Set how many block snapshots may be alive at once in this process
    (default: a quarter of vm.max_map_count); returns the previous limit.
    Past it, new buffer exports are served from a copy of the bytes."""
    global _snapshot_limit
    cdef Py_ssize_t old = _snapshot_limit
    if limit < 0:
        raise ValueError(f"snapshot limit must be >= 0, not {limit!r}")
    _snapshot_limit = limit
    return old


def retained_memory():
    """What zcap keeps alive for the application in this process, beyond the rings."""
    return {
        "snapshots": _live_snapshots,
        "snapshot_limit": _snapshot_limit,
        "export_copies": _live_export_copies,
        "export_copy_bytes": _export_copy_bytes,
    }


cdef inline bint _snapshots_spent() noexcept:
    return _live_snapshots >= _snapshot_limit


cdef int _storage_accounted(_Storage st, int sign) except -1:
    """Count a storage in (sign 1) or out (sign -1) of the retention totals."""
    global _live_snapshots, _live_export_copies, _export_copy_bytes
    if st.kind == STORAGE_MMAP:
        _live_snapshots += sign
    if st.ring is not None:
        if st.kind != STORAGE_HELD:
            st.ring.retained_bytes += sign * <int64_t>st.size
    elif st.kind == STORAGE_MALLOC:
        _live_export_copies += sign
        _export_copy_bytes += sign * <int64_t>st.size
    st.counted = sign > 0
    return 0


cdef _Storage _copy_storage(Ring ring, const unsigned char *src, size_t size):
    """Fresh memory holding a copy of `size` bytes (at least one byte)."""
    cdef unsigned char *m = <unsigned char *>malloc(size if size else 1)
    if m == NULL:
        raise MemoryError(f"copy of {size} bytes")
    memcpy(m, src, size)
    cdef _Storage st = _new_storage(STORAGE_MALLOC, m, size)
    st.ring = ring
    _storage_accounted(st, 1)
    return st


cdef int _export_from_copy(Packet p) except -1:
    """Move a packet's bytes into memory of its own before its first export."""
    cdef _Storage st = _copy_storage(None, p.data, p._caplen)
    _detach_meta(p)
    p.data = st.addr
    p.owner = st
    return 0


@cython.final
cdef class _Deferred:
    """A ring unit kept from the kernel while buffer exports point into it."""
    cdef Py_ssize_t slot
    cdef uint64_t units         # Ring.st_blocks when it was deferred
    cdef Batch batch            # the unit's batch if its buffer is exported
    cdef list pkts              # its packets that had buffer exports


cdef bint _deferred_live(_Deferred d) noexcept:
    cdef Py_ssize_t k
    if d.batch is not None and d.batch.exports:
        return True
    for k in range(len(d.pkts)):
        if (<Packet>PyList_GET_ITEM(d.pkts, k)).exports:
            return True
    return False


cdef int _defer_unit(Ring r, Py_ssize_t slot, Batch batch, list pkts) except -1:
    cdef _Deferred d = _Deferred.__new__(_Deferred)
    d.slot = slot
    d.units = r.st_blocks
    d.batch = batch
    d.pkts = pkts
    r.deferred.append(d)
    r.slot_held[slot] = SLOT_DEFERRED
    r.st_deferred += 1
    return 0


cdef int _detach_one(Ring r, Packet p) except -1:
    cdef bytes b = PyBytes_FromStringAndSize(<const char *>p.data, p._caplen)
    _detach_meta(p)
    p.data = <const unsigned char *>PyBytes_AS_STRING(b)
    p.owner = b
    r.st_detached += 1
    return 0


# -- leaving a unit ------------------------------------------------------------

cdef bint _retain_packets(Ring r) except -1:
    """The current unit is being left (Ring._release_unit): sort the packet
    objects handed out from it.  Objects nobody else holds are recycled;
    packets whose bytes were already copied (an export copy) are let go; the
    rest share the copy-mode buffer, wait with the deferred unit (a buffer
    export pins them), or are copied out into one arena.  The unit's batch
    is invalidated.  Returns True when the unit is deferred: it must not go
    back to the kernel yet."""
    cdef Py_ssize_t k, nalive = 0, ncopy = 0
    cdef PyObject *o
    cdef Packet p
    cdef bint pinned = False
    cdef _Storage st = None
    cdef size_t total = 0, off = 0
    cdef bytes arena
    cdef char *buf
    cdef list kept = None
    cdef Batch batch = r.cur_batch
    # the referenced packets are kept at the front of `issued`
    for k in range(r.n_issued):
        o = r.issued[k]
        if Py_REFCNT(o) == 1:
            if (<Packet>o).owner is not None:
                (<Packet>o).owner = None
            if r.n_free < r.cap_free:
                r.free_pkts[r.n_free] = o
                r.n_free += 1
            else:
                Py_DECREF(<object>o)
        elif (<Packet>o).owner is not None:
            Py_DECREF(<object>o)
        else:
            if (<Packet>o).exports:
                pinned = True
            r.issued[nalive] = o
            nalive += 1
    r.n_issued = 0
    if batch is not None and batch.exports:
        pinned = True
    if pinned:
        if r.backing == BACKING_CHUNK:
            st = _retain_unit(r)
        else:
            kept = []
    for k in range(nalive):
        o = r.issued[k]
        if st is not None:
            (<Packet>o).owner = st
        elif kept is not None and (<Packet>o).exports:
            kept.append(<object>o)
        else:
            total += (<Packet>o)._caplen
            r.issued[ncopy] = o
            ncopy += 1
            continue
        Py_DECREF(<object>o)
    if ncopy:
        arena = PyBytes_FromStringAndSize(NULL, total)
        buf = PyBytes_AS_STRING(arena)
        for k in range(ncopy):
            p = <Packet>r.issued[k]
            _detach_meta(p)
            memcpy(buf + off, p.data, p._caplen)
            p.data = <const unsigned char *>(buf + off)
            p.owner = arena
            off += p._caplen
        r.st_detached += ncopy
        for k in range(ncopy):
            Py_DECREF(<object>r.issued[k])
    if batch is not None:
        batch.valid = False
        batch.cols = None           # so the table can be reused for the next unit
        if st is not None:
            batch.owner = st
        r.cur_batch = None
    if kept is not None:
        _defer_unit(r, r.unit_slot, batch if batch is not None and batch.exports else None, kept)
        return True
    return False


cdef _Storage _retain_unit(Ring r):
    """Copy mode: hand the receive buffer to the exports that pin it (the
    next recvmmsg() gets a fresh one)."""
    cdef _Storage st = _new_storage(STORAGE_MALLOC, r.chunk, r.chunk_slot * r.batch_len)
    st.ring = r
    _storage_accounted(st, 1)
    r.chunk = NULL
    r.st_snapshots += 1
    return st


cdef _Storage _snapshot_slot(Ring r, Py_ssize_t slot):
    """Swap a slot's pages for a private copy at the same address.

    Buffer exports (memoryviews) hold raw pointers that cannot be moved.
    The copy is mapped over the old address atomically (mremap with
    MREMAP_FIXED), so a reader in another thread sees the same bytes before
    and after; the ring continues in that slot at its range of the spare
    mapping (a new one is made when that range is taken).  Returns None if
    the address space or memory is not there.
    """
    cdef unsigned char *old = r.slot_base[slot]
    cdef void *w
    cdef void *m
    cdef _Storage st
    if r.spare == NULL or r.spare_used[slot]:
        if not _new_spare(r):
            return None
    w = mmap(NULL, r.slot_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    if w == MAP_FAILED:
        return None
    memcpy(w, old, r.slot_size)
    m = mremap(w, r.slot_size, r.slot_size, MREMAP_MAYMOVE | MREMAP_FIXED, old)
    if m == MAP_FAILED:
        munmap(w, r.slot_size)
        return None
    r.spare_used[slot] = 1
    r.slot_base[slot] = r.spare + slot * r.slot_size
    r.st_snapshots += 1
    st = _new_storage(STORAGE_MMAP, old, r.slot_size)
    st.ring = r
    _storage_accounted(st, 1)
    return st


cdef _Storage _hold_slot(Ring r, Py_ssize_t slot):
    """Last resort when a snapshot fails: keep the unit from the kernel."""
    cdef _Storage st = _new_storage(STORAGE_HELD, r.slot_base[slot], r.slot_size)
    st.ring = r
    st.slot = slot
    r.slot_held[slot] = SLOT_HELD
    r.held_now += 1
    r.st_held_total += 1
    if not r.warned_held:
        r.warned_held = True
        warnings.warn(
            "zcap: a memoryview outlived its ring block and the block could not be "
            "snapshotted (out of memory or mappings); the block stays with the application "
            "until the memoryview is released, and the kernel drops packets when it wraps "
            "around to it (counted in stats().held and dropped)",
            ResourceWarning, stacklevel=3)
    return st


cdef int _unhold(Ring r, Py_ssize_t slot, unsigned char *addr, size_t size) except -1:
    """A held unit's storage died: the unit goes back (unmapped if the ring closed)."""
    r.held_now -= 1
    if r.closed:
        munmap(addr, size)
        return 0
    r.slot_held[slot] = 0
    r.ops.hand_back(r, slot)
    return 0


cdef int _settle(Ring r, _Deferred d, bint force) except -1:
    """Hand a deferred unit back: at once if its exports died, else (force)
    behind a snapshot.  Returns 1 when settled, 0 when it must wait."""
    cdef _Storage st = None
    cdef Py_ssize_t k
    cdef PyObject *o
    if _deferred_live(d):
        if not force:
            return 0
        st = _snapshot_slot(r, d.slot)
        if st is None:
            st = _hold_slot(r, d.slot)
    if r.slot_held[d.slot] == SLOT_DEFERRED:
        r.slot_held[d.slot] = 0
    for k in range(len(d.pkts)):
        o = PyList_GET_ITEM(d.pkts, k)
        if (<Packet>o).owner is not None or Py_REFCNT(o) == 1:
            continue                    # independent already, or only our list holds it
        if st is not None:
            (<Packet>o).owner = st
        else:
            _detach_one(r, <Packet>o)
    if st is not None and d.batch is not None:
        d.batch.owner = st
    d.pkts = None
    d.batch = None
    if st is None or st.kind != STORAGE_HELD:
        r.ops.hand_back(r, d.slot)
    return 1


cdef bint _kernel_needs(Ring r, Py_ssize_t slot) noexcept:
    """The kernel has filled every unit up to `slot`: it needs it next."""
    cdef Py_ssize_t prev = slot - 1 if slot > 0 else r.nslots - 1
    if r.unit_open and prev == r.unit_slot:
        return True
    if r.slot_held[prev]:
        return False
    return (r.ops.slot_status(r.slot_base[prev]) & TP_STATUS_USER) != 0


cdef int _settle_deferred(Ring r) except -1:
    """Hand back deferred units whose exports died.  Snapshot those whose
    exports outlived DEFER_UNITS more units (held for long, not just a loop
    variable one step behind), and the oldest while the ring is short of
    free units (more than defer_limit deferred, or the kernel needs it next)."""
    cdef Py_ssize_t i = 0
    cdef list q = r.deferred
    cdef _Deferred d
    while i < len(q):
        d = <_Deferred>q[i]
        if _settle(r, d, r.st_blocks - d.units >= DEFER_UNITS):
            del q[i]
        else:
            i += 1
    while q and (len(q) > r.defer_limit or _kernel_needs(r, (<_Deferred>q[0]).slot)):
        _settle(r, <_Deferred>q.pop(0), True)
    return 0


cdef int _settle_slot(Ring r, Py_ssize_t slot) except -1:
    """The consumer came round to a deferred unit: settle it now."""
    cdef Py_ssize_t i
    cdef list q = r.deferred
    for i in range(len(q)):
        if (<_Deferred>q[i]).slot == slot:
            _settle(r, <_Deferred>q.pop(i), True)
            return 0
    r.slot_held[slot] = 0
    return 0


cdef int _settle_closing(Ring r) except -1:
    """close(): units with live exports stay mapped until the exports die
    (unmapped then); packets merely referenced are copied out."""
    cdef _Deferred d
    cdef _Storage st
    cdef Py_ssize_t k
    cdef PyObject *o
    if r.deferred is None:
        return 0
    while r.deferred:
        d = <_Deferred>r.deferred.pop()
        st = None
        if _deferred_live(d):
            st = _new_storage(STORAGE_HELD, r.slot_base[d.slot], r.slot_size)
            st.ring = r
            st.slot = d.slot
            r.slot_held[d.slot] = SLOT_HELD
            r.held_now += 1
            if d.batch is not None:
                d.batch.owner = st
        else:
            r.slot_held[d.slot] = 0
        for k in range(len(d.pkts)):
            o = PyList_GET_ITEM(d.pkts, k)
            if (<Packet>o).owner is not None or Py_REFCNT(o) == 1:
                continue
            if st is not None:
                (<Packet>o).owner = st
            else:
                _detach_one(r, <Packet>o)
    return 0


# -- mappings --------------------------------------------------------------

cdef void _unmap_unused_spare(Ring r) noexcept:
    """Unmap the ranges of the spare mapping no snapshot took."""
    cdef Py_ssize_t i, run_start = -1
    if r.spare == NULL:
        return
    for i in range(r.nslots + 1):
        if i < r.nslots and not r.spare_used[i]:
            if run_start < 0:
                run_start = i
        elif run_start >= 0:
            munmap(r.spare + run_start * r.slot_size, (i - run_start) * r.slot_size)
            run_start = -1
    r.spare = NULL


cdef int _new_spare(Ring r) except -1:
    """Map the ring once more; its ranges give snapshotted slots new addresses.
    Returns 0 if the address space or the mapping budget is exhausted."""
    cdef void *m = mmap(NULL, r.map_size, PROT_READ | PROT_WRITE, MAP_SHARED, r.fd, 0)
    if m == MAP_FAILED:
        return 0
    _unmap_unused_spare(r)
    r.spare = <unsigned char *>m
    memset(r.spare_used, 0, r.nslots)
    r.n_mappings += 1
    return 1


cdef void _unmap_ring(Ring r) noexcept:
    """Unmap every slot's ring range (contiguous runs at once), except the
    ranges a held unit's storage owns, and what is left of the spare."""
    cdef Py_ssize_t i, run_start = -1
    cdef unsigned char *run_end = NULL
    if r.slot_base == NULL or r.slot_held == NULL:
        return
    for i in range(r.nslots + 1):
        if i < r.nslots and run_start >= 0 and r.slot_base[i] == run_end \
                and r.slot_held[i] != SLOT_HELD:
            run_end += r.slot_size
            continue
        if run_start >= 0:
            munmap(r.slot_base[run_start], run_end - r.slot_base[run_start])
            run_start = -1
        if i < r.nslots and r.slot_held[i] != SLOT_HELD and r.slot_base[i] != NULL:
            run_start = i
            run_end = r.slot_base[i] + r.slot_size
    if r.spare_used != NULL:
        _unmap_unused_spare(r)
    for i in range(r.nslots):
        if r.slot_held[i] != SLOT_HELD:
            r.slot_base[i] = NULL
