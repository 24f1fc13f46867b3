# The Python-visible objects over ring memory: Packet, Batch, their tables,
# and the storage that keeps bytes alive once the ring has moved on.
#
# Included by _ring.pyx.

cdef char *_FMT_B = b"B"
cdef char *_FMT_U32 = b"I"
cdef char *_FMT_I64 = b"q"
_DIRECTIONS = (_Direction.IN, _Direction.OUT)
cdef tuple _PKTTYPES = tuple(_PacketType(i) for i in range(8))

cdef enum:
    STORAGE_MMAP = 1        # a private snapshot of a ring unit: munmap on release
    STORAGE_MALLOC = 2      # a copy-mode buffer handed over: free on release
    STORAGE_HELD = 3        # a ring unit kept from the kernel: hand back on release


@cython.final
cdef class _Storage:
    """Memory that outlives its ring unit because the application still uses it."""

    def __dealloc__(self):
        if self.counted:
            _storage_accounted(self, -1)
        if self.kind == STORAGE_MMAP:
            munmap(self.addr, self.size)
        elif self.kind == STORAGE_MALLOC:
            free(self.addr)
        elif self.kind == STORAGE_HELD and self.ring is not None:
            _unhold(self.ring, self.slot, self.addr, self.size)
        self.addr = NULL

cdef _Storage _new_storage(int kind, unsigned char *addr, size_t size):
    cdef _Storage st = _Storage.__new__(_Storage)
    st.kind = kind
    st.addr = addr
    st.size = size
    st.slot = -1
    return st


@cython.final
cdef class _Columns:
    """A unit's packet table: column arrays a Batch exports without copying."""

    def __cinit__(self, Py_ssize_t capacity):
        if capacity < 1:
            capacity = 1
        self.capacity = capacity
        self.offsets = <uint32_t *>malloc(capacity * sizeof(uint32_t))
        self.caplen = <uint32_t *>malloc(capacity * sizeof(uint32_t))
        self.wirelen = <uint32_t *>malloc(capacity * sizeof(uint32_t))
        self.ts_ns = <int64_t *>malloc(capacity * sizeof(int64_t))
        self.hoff = <uint32_t *>malloc(capacity * sizeof(uint32_t))
        self.flags = <uint8_t *>malloc(capacity * sizeof(uint8_t))
        self.meta = <PacketMeta *>malloc(capacity * sizeof(PacketMeta))
        if not (self.offsets and self.caplen and self.wirelen and self.ts_ns and self.hoff
                and self.flags and self.meta):
            raise MemoryError(f"packet table for {capacity} packets")

    def __dealloc__(self):
        free(self.offsets)
        free(self.caplen)
        free(self.wirelen)
        free(self.ts_ns)
        free(self.hoff)
        free(self.flags)
        free(self.meta)


@cython.final
cdef class _ColumnView:
    """A read-only buffer over one column of a unit's packet table."""
    cdef _Columns cols          # keeps the memory alive
    cdef char *ptr
    cdef Py_ssize_t n
    cdef Py_ssize_t itemsize
    cdef char *fmt
    cdef Py_ssize_t shape[1]
    cdef Py_ssize_t strides[1]

    def __getbuffer__(self, Py_buffer *view, int flags):
        if flags & PyBUF_WRITABLE:
            raise BufferError("batch columns are read-only")
        self.shape[0] = self.n
        self.strides[0] = self.itemsize
        view.buf = self.ptr
        view.len = self.n * self.itemsize
        view.readonly = 1
        view.itemsize = self.itemsize
        view.format = self.fmt if (flags & PyBUF_FORMAT) else NULL
        view.ndim = 1
        view.shape = self.shape if (flags & PyBUF_ND) == PyBUF_ND else NULL
        view.strides = self.strides if (flags & PyBUF_STRIDES) == PyBUF_STRIDES else NULL
        view.suboffsets = NULL
        view.internal = NULL
        view.obj = self

cdef object _column(_Columns cols, int which, Py_ssize_t start, Py_ssize_t stop):
    cdef _ColumnView v = _ColumnView.__new__(_ColumnView)
    v.cols = cols
    v.n = stop - start
    v.itemsize = 4
    v.fmt = _FMT_U32
    if which == 0:
        v.ptr = <char *>(cols.offsets + start)
    elif which == 1:
        v.ptr = <char *>(cols.caplen + start)
    elif which == 2:
        v.ptr = <char *>(cols.wirelen + start)
    else:
        v.ptr = <char *>(cols.ts_ns + start)
        v.itemsize = 8
        v.fmt = _FMT_I64
    return memoryview(v)


cdef inline PacketMeta _packet_meta(Packet p) noexcept:
    """Metadata of a packet: from its ring header while that is readable,
    else the copy taken when it was detached."""
    cdef PacketMeta m
    if p.hdr != NULL:
        _v3_meta(p.hdr, p.flags, &m)
        return m
    return p.meta


@cython.final
cdef class Packet:
    """One captured packet: a read-only view of its bytes plus metadata.

    While its ring unit is current the bytes are read in place (zero copy).
    When the consumer moves on, a packet still referenced keeps its bytes: they
    are copied out, or, if a memoryview pins their address, the unit's pages
    are swapped for a private copy.  Either way it never shows later data.
    """

    def __getbuffer__(self, Py_buffer *view, int flags):
        if flags & PyBUF_WRITABLE:
            raise BufferError("packet bytes are read-only; use bytearray(pkt) for a mutable copy")
        if self.owner is None and self.exports == 0 and self.backing != BACKING_OTHER \
                and (self.backing == BACKING_CHUNK or _snapshots_spent()):
            # a copy-mode buffer, or the snapshot budget is spent: an export
            # of ring memory could pin it, so the bytes get memory of their own
            _export_from_copy(self)
        view.buf = <void *>self.data
        view.len = self._caplen
        view.readonly = 1
        view.itemsize = 1
        view.format = _FMT_B if (flags & PyBUF_FORMAT) else NULL
        view.ndim = 1
        view.shape = &view.len if (flags & PyBUF_ND) == PyBUF_ND else NULL
        view.strides = &view.itemsize if (flags & PyBUF_STRIDES) == PyBUF_STRIDES else NULL
        view.suboffsets = NULL
        view.internal = NULL
        view.obj = self
        self.exports += 1

    def __releasebuffer__(self, Py_buffer *view):
        self.exports -= 1

    def __len__(self):
        return self._caplen

    def __bytes__(self):
        return PyBytes_FromStringAndSize(<const char *>self.data, self._caplen)

    def __getitem__(self, key):
        cdef Py_ssize_t i
        if isinstance(key, int):
            i = key
            if i < 0:
                i += self._caplen
            if i < 0 or i >= self._caplen:
                raise IndexError("packet index out of range")
            return self.data[i]
        return bytes(memoryview(self)[key])

    @property
    def ts_ns(self):
        """Capture time, integer nanoseconds since the Unix epoch."""
        return _packet_meta(self).ts_ns

    @property
    def caplen(self):
        return self._caplen

    @property
    def wirelen(self):
        return self._wirelen

    @property
    def ifindex(self):
        return _packet_meta(self).ifindex

    @property
    def pkttype(self):
        """The kernel's packet type (sockaddr_ll.sll_pkttype) as PacketType."""
        cdef uint8_t t = _packet_meta(self).pkttype
        return _PKTTYPES[t] if t < 8 else t

    @property
    def direction(self):
        """Direction.OUT for packets this host sent, Direction.IN otherwise."""
        return _DIRECTIONS[1 if _packet_meta(self).pkttype == PACKET_OUTGOING else 0]

    @property
    def protocol(self):
        """Ethertype the kernel saw (host order)."""
        return _packet_meta(self).protocol

    @property
    def vlan(self):
        """The stripped VLAN TCI (priority, DEI, VLAN id), or None."""
        cdef PacketMeta m = _packet_meta(self)
        return m.vlan_tci if m.flags & META_VLAN else None

    @property
    def vlan_tpid(self):
        cdef PacketMeta m = _packet_meta(self)
        return m.vlan_tpid if m.flags & META_VLAN else None

    @property
    def vlan_inserted(self):
        """True when the VLAN tag was put back into the packet bytes."""
        return bool(self.flags & META_VLAN_INSERTED)

    @property
    def rxhash(self):
        return _packet_meta(self).rxhash

    @property
    def ts_source(self):
        """Which clock stamped the packet (the ring's TP_STATUS_TS_* bits), in libpcap's
        names: "host" (the kernel), "adapter_unsynced" (the NIC's own clock), "adapter"
        (a NIC stamp in system time), or None (not known: a packet read from a file)."""
        cdef uint8_t f = _packet_meta(self).flags
        if f & META_TS_RAW_HW:
            return "adapter_unsynced"
        if f & META_TS_SYS_HW:
            return "adapter"
        if f & META_TS_SOFTWARE:
            return "host"
        return None

    @property
    def truncated(self):
        return self._caplen < self._wirelen

    @property
    def linktype(self):
        """pcap LINKTYPE_* of the bytes: 1 Ethernet, 113/276 Linux cooked, 101 raw IP."""
        return self.linktype

    def decode(self):
        """The packet decoded by dpkt for its link type (zcap.decode)."""
        from zcap.decode import decode_packet
        return decode_packet(self)

    def summary(self):
        """A one-line description like `tcpdump -n` prints (zcap.decode)."""
        from zcap.decode import summarize
        return summarize(self)

    @property
    def zero_copy(self):
        """True while the bytes are read in place from the ring."""
        return self.owner is None

    def copy(self):
        """A packet with its own copy of the bytes, independent of the ring."""
        cdef Packet p = Packet.__new__(Packet)
        cdef bytes b = PyBytes_FromStringAndSize(<const char *>self.data, self._caplen)
        p.owner = b
        p.data = <const unsigned char *>PyBytes_AS_STRING(b)
        p._caplen = self._caplen
        p._wirelen = self._wirelen
        p.meta = _packet_meta(self)
        p.flags = self.flags
        p.linktype = self.linktype
        p.hdr = NULL
        return p

    def __repr__(self):
        cdef PacketMeta m = _packet_meta(self)
        import time
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(m.ts_ns // 1000000000))
        vlan = f" vlan={m.vlan_tci & 0xfff}" if m.flags & META_VLAN else ""
        way = "out" if m.pkttype == PACKET_OUTGOING else "in"
        return (f"<zcap.Packet {stamp}.{m.ts_ns % 1000000000:09d}Z len={self._caplen}/{self._wirelen}"
                f" ifindex={m.ifindex} {way}{vlan}>")

    def __reduce__(self):
        raise TypeError("a Packet cannot be pickled; pickle bytes(pkt) instead")

def make_packet(data, *, int64_t ts_ns=0, wirelen=None, int linktype=1, int32_t ifindex=0,
                uint8_t pkttype=0, uint16_t protocol=0, vlan_tci=None, uint16_t vlan_tpid=0x8100,
                uint32_t rxhash=0):
    """A Packet over any buffer (bytes, memoryview of a mapped file, ...).

    For sources other than a live ring (savefiles): no copy is made; the
    packet keeps a memoryview of `data`, so the buffer stays alive and
    readable as long as the packet does.
    """
    cdef Packet p = Packet.__new__(Packet)
    cdef const unsigned char[::1] view = memoryview(data).cast("B")
    p.owner = view                        # holds the buffer export
    p._caplen = view.shape[0]
    p.data = &view[0] if p._caplen else <const unsigned char *>b""
    p._wirelen = p._caplen if wirelen is None else wirelen
    if p._wirelen < p._caplen:
        raise ValueError(f"wirelen {p._wirelen} is smaller than the {p._caplen} captured bytes")
    p.linktype = linktype
    p.hdr = NULL
    p.flags = META_TRUNCATED if p._caplen < p._wirelen else 0
    p.meta.ts_ns = ts_ns
    p.meta.ifindex = ifindex
    p.meta.pkttype = pkttype
    p.meta.protocol = protocol
    p.meta.rxhash = rxhash
    p.meta.flags = p.flags
    if vlan_tci is not None:
        p.meta.flags |= META_VLAN
        p.meta.vlan_tci = vlan_tci
        p.meta.vlan_tpid = vlan_tpid
    else:
        p.meta.vlan_tci = 0
        p.meta.vlan_tpid = 0
    return p


cdef inline void _detach_meta(Packet p) noexcept:
    """Keep a packet's metadata when its ring header goes away."""
    if p.hdr != NULL:
        _v3_meta(p.hdr, p.flags, &p.meta)
        p.hdr = NULL


@cython.final
cdef class _BatchIter:
    cdef Batch batch
    cdef Py_ssize_t i
    cdef _Columns cols
    cdef bint lazy
    cdef size_t walk_off
    cdef uint32_t walk_left

    def __iter__(self):
        return self

    def __next__(self):
        # No busy flag needed: only an allocation can let another thread in,
        # and _new_packet re-checks the unit after allocating.
        cdef Batch b = self.batch
        cdef Py_ssize_t i = self.i
        cdef RawPacket raw
        cdef size_t bad_off = 0
        cdef int r
        if not b.valid:
            b._check()
        if self.lazy:
            # walk the block as `for pkt in cap` does: no table, the next
            # packet asked for while this one is built
            r = _v3_step_ahead(<unsigned char *>b.base, b.size, &self.walk_off, &self.walk_left,
                               &b.opts, &raw, &bad_off, &b.ring.walked)
            if r > 0:
                return b.ring._raw_packet(&raw)
            if r == 0:
                raise StopIteration
            b._corrupt(r, bad_off, self.walk_left)
        if i >= b.stop:
            raise StopIteration
        self.i = i + 1
        return b.ring._table_packet(self.cols, i)


@cython.final
cdef class Batch:
    """The packets of one ring unit (a TPACKET_V3 block), with zero-copy columns.

    Valid until the consumer asks for the next batch or packet beyond it, or
    the capture closes; afterwards every access raises StaleBatchError.
    Packets taken from it and memoryviews of `buffer` or the columns stay valid.
    """

    cdef int _check(self) except -1:
        if not self.valid:
            raise _errors.StaleBatchError(
                f"batch of block generation {self._generation} was handed back to the kernel; "
                "use it before asking for the next batch, or keep packets/memoryviews taken from it")
        return 0

    cdef _Columns _columns(self):
        """The packet table, built on first use (a lazy batch walks its block once)."""
        cdef size_t off, bad_off = 0
        cdef uint32_t left
        cdef Py_ssize_t n
        cdef _Columns cols
        if self.lazy:
            off = self.walk_off
            left = self.walk_left
            cols = self.ring._table()
            n = _v3_fill_table(<unsigned char *>self.base, self.size, &off, &left, cols,
                               &self.opts, &bad_off, &self.ring.walked)
            if n < 0:
                self._corrupt(<int>n, bad_off, left)
            self.cols = cols
            self.lazy = False
        return self.cols

    cdef int _corrupt(self, int code, size_t bad_off, uint32_t left) except -1:
        """A bad offset met while walking a lazy batch: the rest is not delivered."""
        cdef Ring ring = self.ring
        ring.st_corrupt_blocks += 1
        ring.st_delivered -= left + 1 if left + 1 <= ring.st_delivered else ring.st_delivered
        self.stop = self.start
        self.lazy = False
        self.cols = ring._table()
        raise _errors.RingCorruptionError(
            f"ring block (generation {self._generation}) is malformed at offset {bad_off}: "
            f"{_parse_error_text(code).decode()}; the rest of the batch was skipped")

    def __len__(self):
        return self.stop - self.start

    def __iter__(self):
        self._check()
        cdef _BatchIter it = _BatchIter.__new__(_BatchIter)
        it.batch = self
        it.i = self.start
        it.lazy = self.lazy
        if self.lazy:
            it.walk_off = self.walk_off
            it.walk_left = self.walk_left
        else:
            it.cols = self.cols
        return it

    def __getitem__(self, Py_ssize_t i):
        self._check()
        cdef Py_ssize_t n = self.stop - self.start
        if i < 0:
            i += n
        if i < 0 or i >= n:
            raise IndexError("batch index out of range")
        return self.ring._table_packet(self._columns(), self.start + i)

    def field(self, Py_ssize_t offset, dtype, *, default=0):
        """One field of every packet, gathered in one C loop into a new array.

        `offset` counts from each packet's first byte; `dtype` is in numpy's
        notation ("u1", "<u8", ">u2", "<i4", "<f8", "4B" for 4 raw bytes...).
        Returns a memoryview (np.asarray() takes it without a copy) with one
        item per packet, in native byte order; `default` where the packet is
        too short to hold the field.
        """
        cdef _FieldSpec spec
        self._check()
        _parse_field_dtype(dtype, &spec)
        cdef _FieldArray out = _field_array(&spec, self.stop - self.start, default)
        cdef size_t off, bad_off = 0
        cdef uint32_t left
        cdef Py_ssize_t n
        cdef _Columns cols
        if offset < 0:
            raise ValueError(f"field offset must be >= 0, not {offset}")
        if self.lazy:
            off = self.walk_off
            left = self.walk_left
            n = _gather_v3(self.base, self.size, &off, &left, &self.opts, &self.ring.walked,
                           <size_t>offset, &spec, out.data, out.n, &bad_off)
            if n < 0:
                self._corrupt(<int>n, bad_off, left)
        else:
            cols = self.cols
            _gather_table(self.base, cols.offsets + self.start, cols.caplen + self.start,
                          self.stop - self.start, <size_t>offset, &spec, out.data)
        return memoryview(out)

    def __getbuffer__(self, Py_buffer *view, int flags):
        if flags & PyBUF_WRITABLE:
            raise BufferError("batch buffer is read-only")
        self._check()
        if self.lazy and self.opts.reinsert_vlan:
            # the walk puts VLAN tags back into the block: do it before the
            # bytes are exported (or copied), so they match `offsets`
            self._columns()
        if self.export_copy is None and self.exports == 0 and self.ring.backing == BACKING_RING \
                and _snapshots_spent():
            # the snapshot budget is spent: export a copy, never the ring
            self.export_copy = _copy_storage(self.ring, self.base, self.size)
            self.ring.st_export_copies += 1
        if self.export_copy is not None:
            view.buf = <void *>self.export_copy.addr
            view.internal = <void *>EXPORT_FROM_COPY
        else:
            view.buf = <void *>self.base
            view.internal = NULL
            self.exports += 1
        view.len = self.size
        view.readonly = 1
        view.itemsize = 1
        view.format = _FMT_B if (flags & PyBUF_FORMAT) else NULL
        view.ndim = 1
        view.shape = &view.len if (flags & PyBUF_ND) == PyBUF_ND else NULL
        view.strides = &view.itemsize if (flags & PyBUF_STRIDES) == PyBUF_STRIDES else NULL
        view.suboffsets = NULL
        view.obj = self

    def __releasebuffer__(self, Py_buffer *view):
        if view.internal == NULL:
            self.exports -= 1

    @property
    def generation(self):
        """The block's sequence number (the kernel's generation counter)."""
        return self._generation

    @property
    def buffer(self):
        """Read-only memoryview of the whole unit; packets start at `offsets`."""
        return memoryview(self)

    @property
    def offsets(self):
        """uint32 offset of each packet's first byte in `buffer`."""
        self._check()
        return _column(self._columns(), 0, self.start, self.stop)

    @property
    def caplen(self):
        self._check()
        return _column(self._columns(), 1, self.start, self.stop)

    @property
    def wirelen(self):
        self._check()
        return _column(self._columns(), 2, self.start, self.stop)

    @property
    def ts_ns(self):
        self._check()
        return _column(self._columns(), 3, self.start, self.stop)

    # Analytics (zcap._headers, zcap.arrow): thin entry points, the work is there.

    def headers(self):
        """Per-packet header columns (zcap._headers.Headers), computed in C by group when first asked for."""
        self._check()
        h = self._hdrs() if self._hdrs is not None else None
        if h is None:
            from zcap import _headers
            h = _headers.headers_of(self._header_inputs, self.stop - self.start)
            # weak: the Headers holds this batch (to compute more groups later), so a strong
            # cache would make a cycle that keeps both, and the columns' memory, until a GC
            self._hdrs = _weakref(h)
        return h

    def _header_inputs(self):
        # the VLAN ids as a callable: Headers calls it only for the VLAN columns
        return (self.buffer, self.offsets, self.caplen, self.ring.linktype, self._stripped_vlans)

    def _stripped_vlans(self):
        """int32 VLAN id per packet of a tag the kernel stripped and did not put back
        (-1: none), or None when no packet has one (the common case: no allocation)."""
        cdef Py_ssize_t i, j, n = self.stop - self.start
        cdef const tpacket3_hdr *h
        cdef uint8_t fl
        cdef bytearray vb = None
        cdef int32_t *v = NULL
        cdef int32_t vid
        cdef bint v3 = self.ring.ops.unit_headers  # the table points at V3 headers
        # With reinsertion on, the walk marks the only packets whose tag stays
        # stripped (META_VLAN_STRIPPED): no other packet's ring header is read.
        cdef bint marked = v3 and self.ring.opts.reinsert_vlan
        cdef bint look
        cdef uint8_t seen = 0
        cdef _Columns cols = self._columns()      # a lazy batch builds its table here
        if marked:
            for i in range(self.start, self.stop):
                seen |= cols.flags[i]
            if not (seen & META_VLAN_STRIPPED):
                return None                       # the common case: one sweep of a byte column
        for i in range(n):
            j = self.start + i
            fl = cols.flags[j]
            vid = -1
            look = (fl & META_VLAN_STRIPPED) if marked else not (fl & META_VLAN_INSERTED)
            if look:
                if v3:
                    h = <const tpacket3_hdr *>(self.base + cols.hoff[j])
                    if _vlan_present(h.tp_status, h.hv1.tp_vlan_tci):
                        vid = h.hv1.tp_vlan_tci & 0xfff
                elif (cols.meta[j].flags & (META_VLAN | META_VLAN_INSERTED)) == META_VLAN:
                    vid = cols.meta[j].vlan_tci & 0xfff
            if vid >= 0 and v == NULL:
                vb = bytearray(b"\xff" * (4 * n))          # -1 everywhere so far
                v = <int32_t *><char *>vb
            if v != NULL:
                v[i] = vid
        return None if vb is None else memoryview(vb).cast("i")

    def select(self, addresses=None, flow_heads=None, flows=None):
        """uint32 indices of the packets admitted (see zcap._headers.select)."""
        from zcap import _headers
        return _headers.select(self.headers(), addresses, flow_heads, flows)

    def to_arrow(self):
        """A pyarrow.RecordBatch of the packets, their metadata and header columns (zcap.arrow)."""
        from zcap import arrow
        return arrow.batch_to_arrow(self)

    @property
    def linktype(self):
        """pcap LINKTYPE_* of every packet's bytes."""
        return self.ring.linktype

    def _meta_columns(self):
        """(vlan, ifindex, pkttype) per packet: int32, int32, uint8 memoryviews.

        vlan is the VLAN id the kernel stripped and did not put back into the
        bytes, -1 where there is none.
        """
        self._check()
        cdef Py_ssize_t i, j, n = self.stop - self.start
        cdef bytearray vb = bytearray(4 * n)
        cdef bytearray ib = bytearray(4 * n)
        cdef bytearray pb = bytearray(n)
        cdef int32_t *v = <int32_t *><char *>vb
        cdef int32_t *ix = <int32_t *><char *>ib
        cdef uint8_t *pt = <uint8_t *><char *>pb
        cdef PacketMeta m
        cdef uint8_t fl
        cdef bint v3 = self.ring.ops.unit_headers  # the table points at V3 headers
        cdef _Columns cols = self._columns()      # a lazy batch builds its table here
        for i in range(n):
            j = self.start + i
            fl = cols.flags[j]
            if v3:
                _v3_meta(self.base + cols.hoff[j], fl, &m)
            else:
                m = cols.meta[j]
            if (m.flags & META_VLAN) and not ((fl | m.flags) & META_VLAN_INSERTED):
                v[i] = m.vlan_tci & 0xfff
            else:
                v[i] = -1
            ix[i] = m.ifindex
            pt[i] = m.pkttype
        return (memoryview(vb).cast("i"), memoryview(ib).cast("i"), memoryview(pb))

    def __repr__(self):
        state = "valid" if self.valid else "stale"
        return f"<zcap.Batch {len(self)} packets generation={self._generation} {state}>"


@cython.final
cdef class _BatchStream:
    cdef Ring ring
    cdef object budget_us

    def __iter__(self):
        return self

    def __next__(self):
        cdef Batch b = self.ring._next_batch(-1)
        if b is None:
            raise StopIteration
        return b

    def __aiter__(self):
        return _async_iter(self.ring, True, self.budget_us)
