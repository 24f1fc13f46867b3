# Walking a TPACKET_V3 block when there is nothing to do per packet but
# deliver it: Ring.consume() and the packet table of a batch.
#
# Included by _ring.pyx, after _walk.pxi.  The general walker (_v3_step)
# skips, filters and rewrites packets; this one only delivers.  It takes the
# same bounds checks, with the cursor in registers, and reads no more of a
# packet's header than a minimal C TPACKET_V3 reader does: for large frames
# the cache lines touched per packet are most of the cost.  Whenever a packet
# needs more (a VLAN tag to reinsert, or a check that fails) it stops at that
# packet and leaves it to _v3_step, which delivers it or reports the error
# exactly as it always does.

cdef inline bint _walk_is_plain(const ParseOpts *o) noexcept:
    """No packet is skipped, filtered or given a synthesized header: each is
    delivered as the kernel wrote it (a VLAN tag to reinsert aside)."""
    return o.direction == 0 and o.lo_ifindex < 0 and not o.cooked and not o.ufilter


cdef inline void _prefetch_packet(const unsigned char *blk, size_t hdr_off, size_t mac) noexcept:
    """Ask for the next packet's header and first 128 bytes while this one is
    used, assuming its data starts `mac` bytes after its header as this one's
    does (true of every packet of one link type).  A prefetch never faults:
    the offsets need no check."""
    zcap_prefetch(blk + hdr_off)
    zcap_prefetch(blk + hdr_off + mac)
    zcap_prefetch(blk + hdr_off + mac + 64)


cdef inline bint _v3_plain_next(const unsigned char *blk, size_t bsize, size_t *off,
                                uint32_t *left, bint reinsert_vlan, size_t *hdr_off,
                                size_t *data_off) noexcept:
    """Take the packet at the cursor if the plain walk may: returns True with
    its header and data offsets, the cursor moved on; False, the cursor
    unchanged, at the end of the block or for a packet _v3_step must take.
    As in _v3_step, the next packet's offset is checked before a packet is
    taken."""
    cdef size_t o = off[0]
    cdef uint32_t n = left[0]
    cdef const tpacket3_hdr *h
    cdef uint32_t nxt
    if not n or o < sizeof(tpacket_block_desc) or o + V3_HDR_END > bsize:
        return False
    h = <const tpacket3_hdr *>(blk + o)
    # The kernel sets TP_STATUS_VLAN_VALID whenever it fills in a tag (in V3
    # a non-zero TCI implies it), so the status word alone says whether a tag
    # is to be reinserted: hv1 is not read.
    if reinsert_vlan and h.tp_status & TP_STATUS_VLAN_VALID:
        return False
    if h.tp_mac < V3_HDR_END or o + h.tp_mac + h.tp_snaplen > bsize:
        return False
    if n > 1:
        nxt = h.tp_next_offset
        if nxt < V3_HDR_END or nxt > bsize - o:
            return False
        off[0] = o + nxt
    left[0] = n - 1
    hdr_off[0] = o
    data_off[0] = o + h.tp_mac
    return True


cdef inline Py_ssize_t _v3_consume_plain(unsigned char *blk, size_t bsize, size_t *cur_off,
                                         uint32_t *left, uint32_t snaplen, bint reinsert_vlan,
                                         zcap_packet_cb cb, void *ctx, Py_ssize_t budget,
                                         int *stop) noexcept:
    """Pass up to `budget` packets of a V3 block to cb, from the cursor on
    (Ring.consume).  Returns how many; stops early when cb returns non-zero
    (*stop set) and where _v3_plain_next does."""
    cdef size_t off = cur_off[0], hoff, doff
    cdef uint32_t n = left[0], caplen
    cdef Py_ssize_t k = 0
    cdef const tpacket3_hdr *h
    cdef int s
    while k < budget and _v3_plain_next(blk, bsize, &off, &n, reinsert_vlan, &hoff, &doff):
        h = <const tpacket3_hdr *>(blk + hoff)
        if n:
            _prefetch_packet(blk, off, h.tp_mac)
        caplen = h.tp_snaplen
        if caplen > snaplen:
            caplen = snaplen
        s = cb(ctx, blk + doff, caplen, h.tp_len, <int64_t>h.tp_sec * 1000000000 + h.tp_nsec)
        k += 1
        if s:
            stop[0] = s
            break
    cur_off[0] = off
    left[0] = n
    return k


cdef inline Py_ssize_t _v3_fill_plain(const unsigned char *blk, size_t bsize, size_t *cur_off,
                                      uint32_t *left, _Columns cols, Py_ssize_t n,
                                      uint32_t snaplen, bint reinsert_vlan) noexcept:
    """Append packets of a V3 block to a packet table from entry n on (what
    _v3_fill_table would store for them); returns the new count.  Stops
    where _v3_plain_next does and when the table is full."""
    cdef size_t off = cur_off[0], hoff, doff
    cdef uint32_t k = left[0], caplen, wirelen
    cdef const tpacket3_hdr *h
    cdef Py_ssize_t cap = cols.capacity
    cdef uint32_t *offsets = cols.offsets
    cdef uint32_t *caplens = cols.caplen
    cdef uint32_t *wirelens = cols.wirelen
    cdef int64_t *ts_ns = cols.ts_ns
    cdef uint32_t *hoffs = cols.hoff
    cdef uint8_t *flags = cols.flags
    while n < cap and _v3_plain_next(blk, bsize, &off, &k, reinsert_vlan, &hoff, &doff):
        h = <const tpacket3_hdr *>(blk + hoff)
        caplen = h.tp_snaplen
        wirelen = h.tp_len
        if caplen > snaplen:
            caplen = snaplen
        offsets[n] = <uint32_t>doff
        caplens[n] = caplen
        wirelens[n] = wirelen
        ts_ns[n] = <int64_t>h.tp_sec * 1000000000 + h.tp_nsec
        hoffs[n] = <uint32_t>hoff
        flags[n] = META_TRUNCATED if caplen < wirelen else 0
        n += 1
    cur_off[0] = off
    left[0] = k
    return n
