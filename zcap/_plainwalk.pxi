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
# exactly as it always does.  _v3_consume is Ring.consume()'s whole walk of a
# block (both walkers); consume_v3_block runs it on a block image for tests.

cdef enum:
    # consume() asks for the header this many packets on.  Each header holds
    # the offset of the next, so a walk is a chain of dependent loads: the
    # C reader's 12 instructions per packet hide that chain's misses, zcap's
    # ~60 and an indirect call do not.  Prefetching only the header line,
    # far enough ahead to cover a miss, took zcap-cython at 1500 B from
    # ~1.65x to ~1.25-1.4x the C TPACKET_V3 reader (CPU time, same runs);
    # 4, 6, 8 and 16 measured alike, and prefetching data lines as well
    # (this packet's next or the one ahead) made it slower: each is one more
    # line of memory traffic for a consumer that may not read it.
    PLAIN_PREFETCH_AHEAD = 8
    # The last header byte the plain walk reads (tp_mac's second byte).  A
    # header that starts fewer than 26 bytes before the end of a cache line
    # has tp_status and tp_mac in the next line (3 headers in 8 at 1500 B):
    # both lines are asked for, which measured ~1.2x instead of ~1.4-1.7x
    # the C reader at 1500 B.
    PLAIN_HDR_LAST_BYTE = 25


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


cdef inline int _v3_step_ahead(unsigned char *blk, size_t bsize, size_t *cur_off, uint32_t *left,
                               const ParseOpts *o, RawPacket *out, size_t *bad_off,
                               WalkCounts *counts) noexcept:
    """_v3_step for a consumer that takes one packet per call (`for pkt in
    cap`, `for pkt in batch`): on a packet, it also asks for the next one
    (_prefetch_packet), which arrives while the caller builds this one."""
    cdef int r = _v3_step(blk, bsize, cur_off, left, o, out, bad_off, counts)
    if r > 0 and left[0]:
        _prefetch_packet(blk, cur_off[0], <size_t>(out.data - out.hdr))
    return r


cdef inline uint32_t _plain_status_mask(bint reinsert_vlan) noexcept:
    """The tp_status bits that send a packet to _v3_step.  The kernel sets
    TP_STATUS_VLAN_VALID whenever it fills in a tag (in V3 a non-zero TCI
    implies it), so the status word alone says whether a tag is to be
    reinserted: hv1 is not read."""
    return TP_STATUS_VLAN_VALID if reinsert_vlan else 0


cdef inline bint _plain_start_ok(size_t off) noexcept:
    """The cursor lies past the block descriptor.  Checked once per walk:
    every later offset is larger (each step adds at least V3_HDR_END)."""
    return off >= sizeof(tpacket_block_desc)


cdef inline bint _v3_plain_next(const unsigned char *blk, size_t bsize, size_t *off,
                                uint32_t *left, uint32_t status_mask, size_t *hdr_off,
                                size_t *data_off) noexcept:
    """Take the packet at the cursor if the plain walk may: returns True with
    its header and data offsets, the cursor moved on; False, the cursor
    unchanged, at the end of the block or for a packet _v3_step must take.
    As in _v3_step, the next packet's offset is checked before a packet is
    taken.  The caller has checked _plain_start_ok(off[0]) on entry."""
    cdef size_t o = off[0]
    cdef uint32_t n = left[0]
    cdef const tpacket3_hdr *h
    cdef uint32_t nxt
    if not n or o + V3_HDR_END > bsize:
        return False
    h = <const tpacket3_hdr *>(blk + o)
    if h.tp_status & status_mask:           # _plain_status_mask
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
    cdef size_t off = cur_off[0], hoff, doff, ahead
    cdef uint32_t n = left[0], caplen
    cdef uint32_t status_mask = _plain_status_mask(reinsert_vlan)
    cdef Py_ssize_t todo = budget
    cdef const tpacket3_hdr *h
    cdef int s
    if not _plain_start_ok(off):
        return 0
    while todo and _v3_plain_next(blk, bsize, &off, &n, status_mask, &hoff, &doff):
        h = <const tpacket3_hdr *>(blk + hoff)
        # the header PLAIN_PREFETCH_AHEAD packets on, if they are all as long as this one
        ahead = off + (off - hoff) * (PLAIN_PREFETCH_AHEAD - 1)
        if ahead < bsize:
            zcap_prefetch(blk + ahead)
            zcap_prefetch(blk + ahead + PLAIN_HDR_LAST_BYTE)  # a header across two lines
        caplen = h.tp_snaplen
        if caplen > snaplen:
            caplen = snaplen
        s = cb(ctx, blk + doff, caplen, h.tp_len, <int64_t>h.tp_sec * 1000000000 + h.tp_nsec)
        todo -= 1
        if s:
            stop[0] = s
            break
    cur_off[0] = off
    left[0] = n
    return budget - todo


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
    cdef uint32_t status_mask = _plain_status_mask(reinsert_vlan)
    if not _plain_start_ok(off):
        return n
    while n < cap and _v3_plain_next(blk, bsize, &off, &k, status_mask, &hoff, &doff):
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


cdef inline int _v3_consume(unsigned char *blk, size_t bsize, size_t *cur_off, uint32_t *left,
                            const ParseOpts *o, WalkCounts *walked, zcap_packet_cb cb, void *ctx,
                            Py_ssize_t budget, Py_ssize_t *done, int *stop,
                            size_t *bad_off) noexcept:
    """Ring.consume()'s walk of a V3 block from the cursor: up to `budget`
    packets to cb, the plain walk where it may and _v3_step for the rest.
    *done: how many were passed to cb.  Returns 1 when the budget is spent or
    cb stopped (*stop set), 0 at the end of the block, <0 (a PARSE_* code,
    *bad_off set) at a malformed packet: the packets before it were delivered."""
    cdef bint plain = _walk_is_plain(o)
    cdef Py_ssize_t k = 0
    cdef RawPacket raw
    cdef const tpacket3_hdr *h
    cdef int r = 1
    while k < budget and not stop[0]:
        if plain:
            # packets that need nothing done: the tight loop above
            k += _v3_consume_plain(blk, bsize, cur_off, left, o.snaplen, o.reinsert_vlan,
                                   cb, ctx, budget - k, stop)
            if k >= budget or stop[0]:
                break
            if not left[0]:
                r = 0
                break
            # the next packet is _v3_step's: a tag to reinsert, or an error
        r = _v3_step(blk, bsize, cur_off, left, o, &raw, bad_off, walked)
        if r <= 0:
            break
        h = <const tpacket3_hdr *>raw.hdr
        stop[0] = cb(ctx, raw.data, raw.caplen, raw.wirelen,
                     <int64_t>h.tp_sec * 1000000000 + h.tp_nsec)
        k += 1
    done[0] = k
    return r


# -- the same walk on a block image, for tests and fuzzing ---------------------

cdef struct _ImageRow:
    size_t offset           # of the data in the image
    int64_t ts_ns
    uint32_t caplen
    uint32_t wirelen


cdef struct _ImageCollect:
    const unsigned char *base
    _ImageRow *rows
    Py_ssize_t n
    Py_ssize_t cap
    Py_ssize_t stop_every


cdef int _image_collect(void *ctx, const unsigned char *data, uint32_t caplen,
                        uint32_t wirelen, int64_t ts_ns) noexcept nogil:
    cdef _ImageCollect *c = <_ImageCollect *>ctx
    if c.n >= c.cap:
        return 1                # cannot happen: the caller sizes rows for the block
    c.rows[c.n].offset = <size_t>(data - c.base)
    c.rows[c.n].caplen = caplen
    c.rows[c.n].wirelen = wirelen
    c.rows[c.n].ts_ns = ts_ns
    c.n += 1
    return 1 if c.stop_every and c.n % c.stop_every == 0 else 0


def consume_v3_block(block, *, Py_ssize_t budget=1 << 30, Py_ssize_t stop_every=0,
                     uint32_t snaplen=262144, int cooked=0, bint reinsert_vlan=False,
                     int vlan_offset=-1, int lo_ifindex=-1, int direction=0):
    """Walk a TPACKET_V3 block image (bytes) as Ring.consume() walks a block.

    For tests and fuzzing: calls the consume walk with at most `budget`
    packets per call, a C callback that stops after every `stop_every`-th
    packet (0: never), until the block ends; returns what the callback saw,
    [(offset, caplen, wirelen, ts_ns, data), ...], or raises
    RingCorruptionError as Ring.consume() would (after the packets before it).
    """
    cdef bytearray buf = bytearray(block)
    cdef size_t size = len(buf)
    cdef unsigned char *p
    cdef tpacket_block_desc *bd
    cdef ParseOpts o
    cdef WalkCounts walked
    cdef _ImageCollect c
    cdef size_t off, bad_off = 0
    cdef uint32_t left
    cdef Py_ssize_t got, i
    cdef int stop, r = 1
    if size < sizeof(tpacket_block_desc):
        raise _errors.RingCorruptionError(f"block image of {size} bytes is smaller than its header")
    if budget < 1:
        raise ValueError("budget must be at least 1")
    p = <unsigned char *><char *>buf
    bd = <tpacket_block_desc *>p
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
    walked.skipped = 0
    walked.filtered = 0
    left = bd.hdr.bh1.num_pkts
    off = bd.hdr.bh1.offset_to_first_pkt
    c.base = p
    c.n = 0
    c.cap = size // V3_HDR_END + 2     # a packet and the next header are >= V3_HDR_END apart
    c.stop_every = stop_every
    c.rows = <_ImageRow *>malloc(sizeof(_ImageRow) * c.cap)
    if c.rows == NULL:
        raise MemoryError()
    try:
        while r > 0:
            stop = 0
            r = _v3_consume(p, size, &off, &left, &o, &walked, _image_collect, &c,
                            budget, &got, &stop, &bad_off)
            if r > 0 and not got:
                raise AssertionError("the consume walk made no progress")
        out = [(c.rows[i].offset, c.rows[i].caplen, c.rows[i].wirelen, c.rows[i].ts_ns,
                bytes(buf[c.rows[i].offset:c.rows[i].offset + c.rows[i].caplen]))
               for i in range(c.n)]
    finally:
        free(c.rows)
    if r < 0:
        raise _errors.RingCorruptionError(
            f"block is malformed at offset {bad_off} after {len(out)} packets: "
            f"{_parse_error_text(r).decode()}")
    return out
