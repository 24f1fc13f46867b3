# The per-mode unit operations of a Ring, chosen once when it is set up.
#
# Included by _ring.pyx (after _retain.pxi).  As libpcap's pcap-linux.c sets
# `handle->read_op = pcap_read_linux_mmap_v3` once, Ring.__init__ points
# `Ring.ops` at one of the three UnitOps tables below (struct in _ring.pxd),
# and the ring's unit changes call through it instead of testing the mode:
#
#   acquire        take the next ready unit (V3 block, V2 frame, recvmmsg batch)
#   hand_back      give a slot back to the kernel (one release store; copy: nothing)
#   slot_status    a slot's status word, read with acquire ordering (ring modes)
#   unretired      packets in a slot the kernel has opened and not yet handed over
#   mark_refilter  after a filter change: which units to filter again in user space
#   kernel_stats   fold PACKET_STATISTICS (V3: tpacket_stats_v3) into the totals
#
# Per packet nothing is dispatched: the current unit is either walked by the
# V3 cursor (Ring.walk_left packets left) or read from its table (Ring.pos <
# Ring.count), and Ring._unit_packet() takes the next packet from whichever
# has one (see _ring.pyx).

# -- shared steps ------------------------------------------------------------

cdef Py_ssize_t _ready_slot(Ring r) except -2:
    """The slot the consumer reads next if the kernel has handed it over, else -1."""
    cdef Py_ssize_t slot = r.cur_slot
    if r.slot_held[slot] == SLOT_DEFERRED:
        _settle_slot(r, slot)           # the consumer came all the way round to it
    if r.slot_held[slot]:
        return -1
    if not (r.ops.slot_status(r.slot_base[slot]) & TP_STATUS_USER):
        return -1
    return slot


cdef int _open_slot(Ring r, Py_ssize_t slot, Py_ssize_t n, size_t bad_off) except -1:
    """Make a handed-over slot the current unit.  n: 1 when it has packets,
    0 when none is left to deliver (handed back at once), < 0 a parse error.
    Returns 1 when the unit is current."""
    r.cur_slot = slot + 1 if slot + 1 < r.nslots else 0
    r.st_blocks += 1
    r.spurious_wake = False
    r.unit_slot = slot
    r.unit_base = r.slot_base[slot]
    r.unit_size = r.slot_size
    r.unit_open = True
    if n < 0:
        r._corrupt(<int>n, bad_off)
    if n == 0:
        r.unit_open = False
        r.ops.hand_back(r, slot)
        return 0
    return 1


# -- TPACKET_V3: a block ring ---------------------------------------------------

cdef uint32_t _status_v3(const unsigned char *base) noexcept nogil:
    return zcap_load_acquire_u32(&(<tpacket_block_desc *>base).hdr.bh1.block_status)


cdef void _hand_back_v3(Ring r, Py_ssize_t slot) noexcept:
    zcap_store_release_u32(&(<tpacket_block_desc *>r.slot_base[slot]).hdr.bh1.block_status,
                           TP_STATUS_KERNEL)


cdef int _acquire_v3(Ring r) except -1:
    """Take the next block; its packets are walked lazily by the cursor."""
    cdef Py_ssize_t slot = _ready_slot(r)
    cdef tpacket_block_desc *bd
    cdef uint32_t num
    cdef uint64_t seq
    if slot < 0:
        return 0
    bd = <tpacket_block_desc *>r.slot_base[slot]
    seq = bd.hdr.bh1.seq_num
    if seq != r.expect_gen:
        r.st_generation_gaps += 1
    r.expect_gen = seq + 1
    r.unit_gen = seq
    # a block the kernel may have filled under a previous filter
    r.opts.ufilter = r.ufilter_always or seq <= r.refilter_until
    num = bd.hdr.bh1.num_pkts
    _open_slot(r, slot, 1 if num <= r.slot_size // MIN_V3_PACKET + 1 else PARSE_BAD_COUNT, 0)
    r.walk_off = bd.hdr.bh1.offset_to_first_pkt
    r.walk_left = num
    r.pos = 0
    r.count = 0
    return 1


cdef uint32_t _unretired_v3(Ring r, const unsigned char *base) noexcept:
    """A block the kernel opened after the last one read, not yet retired."""
    cdef const tpacket_block_desc *bd = <const tpacket_block_desc *>base
    return bd.hdr.bh1.num_pkts if bd.hdr.bh1.seq_num >= r.expect_gen else 0


cdef int _mark_refilter_v3(Ring r) except -1:
    """The blocks handed over and not yet read, the block the kernel is
    filling, and the next (a packet still in flight on another CPU); and the
    rest of the block being read."""
    cdef Py_ssize_t i, slot
    cdef uint64_t last = r.expect_gen - 1
    cdef tpacket_block_desc *bd
    for i in range(r.nslots):
        slot = (r.cur_slot + i) % r.nslots
        bd = <tpacket_block_desc *>r.slot_base[slot]
        if r.slot_held[slot] or not (_status_v3(<unsigned char *>bd) & TP_STATUS_USER):
            break
        # a full ring comes round to the unit being read: the oldest
        if bd.hdr.bh1.seq_num > last:
            last = bd.hdr.bh1.seq_num
    r.refilter_until = last + 2
    if r.unit_open:
        r.opts.ufilter = 1
    return 0


cdef int _kernel_stats_v3(Ring r) except -1:
    cdef tpacket_stats_v3 s3
    cdef socklen_t n = sizeof(s3)
    memset(&s3, 0, sizeof(s3))
    if getsockopt(r.fd, SOL_PACKET, PACKET_STATISTICS, &s3, &n) == 0:
        r.st_received += s3.tp_packets
        r.st_dropped += s3.tp_drops
        r.st_freezes += s3.tp_freeze_q_cnt
    return 0


# -- TPACKET_V2: a frame ring, one packet per unit -----------------------------

cdef uint32_t _status_v2(const unsigned char *base) noexcept nogil:
    return zcap_load_acquire_u32(&(<tpacket2_hdr *>base).tp_status)


cdef void _hand_back_v2(Ring r, Py_ssize_t slot) noexcept:
    zcap_store_release_u32(&(<tpacket2_hdr *>r.slot_base[slot]).tp_status, TP_STATUS_KERNEL)


cdef int _acquire_v2(Ring r) except -1:
    """Take the next frame with a packet to deliver, parsed into the table."""
    cdef Py_ssize_t slot, n
    cdef size_t bad_off = 0
    while True:
        slot = _ready_slot(r)
        if slot < 0:
            return 0
        r.unit_gen += 1
        r.opts.ufilter = r.ufilter_always or r.refilter_units > 0
        if r.refilter_units > 0:
            r.refilter_units -= 1
        n = _parse_v2_frame(r.slot_base[slot], r.slot_size, r._table(), &r.opts, &bad_off)
        if n == 0:
            r.walked.skipped += 1
        elif n == ENTRY_FILTERED:
            r.walked.filtered += 1
            n = 0
        if _open_slot(r, slot, n, bad_off):
            r.pos = 0
            r.count = n
            return 1


cdef uint32_t _unretired_none(Ring r, const unsigned char *base) noexcept:
    return 0                            # a V2 frame is handed over whole


cdef int _mark_refilter_v2(Ring r) except -1:
    """The frames handed over and not yet read, and a margin for those in
    flight; and the rest of the table being read."""
    cdef Py_ssize_t i, slot, ready = 0
    for i in range(r.nslots):
        slot = (r.cur_slot + i) % r.nslots
        if r.slot_held[slot] or not (_status_v2(r.slot_base[slot]) & TP_STATUS_USER):
            break
        ready += 1
    r.refilter_units = ready + 64
    if r.unit_open:
        r._refilter_table()
    return 0


cdef int _kernel_stats_v2(Ring r) except -1:
    """tpacket_stats: what V2 rings and plain sockets (copy mode) report."""
    cdef tpacket_stats s1
    cdef socklen_t n = sizeof(s1)
    memset(&s1, 0, sizeof(s1))
    if getsockopt(r.fd, SOL_PACKET, PACKET_STATISTICS, &s1, &n) == 0:
        r.st_received += s1.tp_packets
        r.st_dropped += s1.tp_drops
    return 0


# -- copy: recvmmsg() into a reusable buffer, one batch per unit ---------------

cdef void _hand_back_none(Ring r, Py_ssize_t slot) noexcept:
    pass                                # the buffer is ours: nothing to give back


cdef int _acquire_copy(Ring r) except -1:
    """Read up to batch_len packets with one recvmmsg(), parsed into the table."""
    cdef mmsghdr *msgs = <mmsghdr *>r.msgs
    cdef iovec *iovs = <iovec *>r.iovs
    cdef sockaddr_ll *names = <sockaddr_ll *>r.names
    cdef Py_ssize_t i, n, got
    cdef int rc, e
    cdef _Columns cols
    cdef cmsghdr *c
    cdef tpacket_auxdata *aux
    cdef timespec *tsp
    cdef int64_t ts
    cdef uint32_t caplen, wirelen, status, tci, tpid
    cdef int32_t net_offset
    cdef Py_ssize_t filtered = 0
    cdef size_t data_off
    if r.chunk == NULL:
        r.chunk = <unsigned char *>malloc(r.chunk_slot * r.batch_len)
        if r.chunk == NULL:
            raise MemoryError()
    for i in range(r.batch_len):
        iovs[i].iov_base = r.chunk + i * r.chunk_slot + COPY_HEADROOM
        iovs[i].iov_len = r.chunk_slot - COPY_HEADROOM
        msgs[i].msg_hdr.msg_name = &names[i]
        msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_ll)
        msgs[i].msg_hdr.msg_iov = &iovs[i]
        msgs[i].msg_hdr.msg_iovlen = 1
        msgs[i].msg_hdr.msg_control = r.ctrl + i * r.ctrl_slot
        msgs[i].msg_hdr.msg_controllen = r.ctrl_slot
        msgs[i].msg_hdr.msg_flags = 0
    r.opts.ufilter = r.ufilter_always or r.refilter_units > 0
    rc = recvmmsg(r.fd, msgs, r.batch_len, MSG_DONTWAIT, NULL)
    if rc < 0:
        e = errno
        if e == EAGAIN:
            # the queue is empty: every packet an earlier filter let in is read
            r.refilter_units = 0
            r.queue_empty = True
            return 0
        if e == EINTR:
            return 0
        if e == ENETDOWN or e == ENODEV or e == ENXIO:
            r.link_error = e
            return 0
        raise OSError(e, f"recvmmsg: {os.strerror(e)}")
    r.queue_empty = False
    cols = r._table()
    n = 0
    for i in range(rc):
        caplen = msgs[i].msg_len
        wirelen = caplen
        status = 0
        tci = 0
        tpid = 0
        ts = 0
        net_offset = 0
        c = zcap_cmsg_firsthdr(&msgs[i].msg_hdr)
        while c != NULL:
            if c.cmsg_level == SOL_PACKET and c.cmsg_type == PACKET_AUXDATA \
                    and c.cmsg_len >= zcap_cmsg_len(sizeof(tpacket_auxdata)):
                aux = <tpacket_auxdata *>zcap_cmsg_data(c)
                wirelen = aux.tp_len
                if aux.tp_snaplen < caplen:
                    caplen = aux.tp_snaplen
                status = aux.tp_status
                tci = aux.tp_vlan_tci
                tpid = aux.tp_vlan_tpid
                net_offset = <int32_t>aux.tp_net - <int32_t>aux.tp_mac
            elif c.cmsg_level == SOL_SOCKET and c.cmsg_type == SCM_TIMESTAMPNS \
                    and c.cmsg_len >= zcap_cmsg_len(sizeof(timespec)):
                tsp = <timespec *>zcap_cmsg_data(c)
                ts = <int64_t>tsp.tv_sec * 1000000000 + tsp.tv_nsec
            c = zcap_cmsg_nxthdr(&msgs[i].msg_hdr, c)
        if caplen > r.chunk_slot - COPY_HEADROOM:
            caplen = r.chunk_slot - COPY_HEADROOM
        if wirelen < caplen:
            wirelen = caplen
        data_off = i * r.chunk_slot + COPY_HEADROOM
        got = _table_entry(cols, n, r.chunk, i * r.chunk_slot, data_off, caplen,
                           wirelen, ts, status, <uint16_t>tci, <uint16_t>tpid, 0,
                           data_off + net_offset, &names[i], &r.opts)
        if got == 1:
            n += 1
        elif got == ENTRY_FILTERED:
            filtered += 1
    r.st_blocks += 1
    r.walked.filtered += filtered
    r.walked.skipped += rc - n - filtered
    r.unit_gen += 1
    if n == 0:
        return 0
    r.unit_open = True
    r.unit_slot = 0
    r.unit_base = r.chunk
    r.unit_size = r.chunk_slot * r.batch_len
    r.pos = 0
    r.count = n
    return 1


cdef int _mark_refilter_copy(Ring r) except -1:
    """The socket queue, until recvmmsg() finds it empty; and the rest of the
    table being read."""
    r.refilter_units = 1 << 30
    if r.unit_open:
        r._refilter_table()
    return 0


# -- the tables ------------------------------------------------------------------

cdef UnitOps _V3_OPS
_V3_OPS.unit_name = b"block"
_V3_OPS.mapped = True
_V3_OPS.unit_headers = True
_V3_OPS.acquire = _acquire_v3
_V3_OPS.hand_back = _hand_back_v3
_V3_OPS.slot_status = _status_v3
_V3_OPS.unretired = _unretired_v3
_V3_OPS.mark_refilter = _mark_refilter_v3
_V3_OPS.kernel_stats = _kernel_stats_v3

cdef UnitOps _V2_OPS
_V2_OPS.unit_name = b"frame"
_V2_OPS.mapped = True
_V2_OPS.unit_headers = False
_V2_OPS.acquire = _acquire_v2
_V2_OPS.hand_back = _hand_back_v2
_V2_OPS.slot_status = _status_v2
_V2_OPS.unretired = _unretired_none
_V2_OPS.mark_refilter = _mark_refilter_v2
_V2_OPS.kernel_stats = _kernel_stats_v2

cdef UnitOps _COPY_OPS
_COPY_OPS.unit_name = b"batch"
_COPY_OPS.mapped = False
_COPY_OPS.unit_headers = False
_COPY_OPS.acquire = _acquire_copy
_COPY_OPS.hand_back = _hand_back_none
_COPY_OPS.slot_status = NULL        # no slots: copy mode never reads a status word
_COPY_OPS.unretired = _unretired_none
_COPY_OPS.mark_refilter = _mark_refilter_copy
_COPY_OPS.kernel_stats = _kernel_stats_v2
