# Walking ring units: every offset the kernel wrote is checked before use.
#
# Included by _ring.pyx.  Three shapes of unit:
#   TPACKET_V3 block  - walked lazily by _v3_step(), one packet per call
#   TPACKET_V2 frame  - one packet, parsed by _parse_v2_frame() into a table
#   recvmmsg() batch  - parsed by _acquire_copy() (_units.pxi) into a table
# Headers synthesized in front of a packet (cooked SLL/SLL2, a re-inserted
# VLAN tag) are written by _rewrite_front(), in place: the cooked header
# first, then a user-space filter runs (on the kernel's view, as libpcap's
# does), then the tag is reinserted.  A V3 packet whose tag was reinserted
# records it in its own header (_record_front), so walking its block again
# (a lazy batch iterated twice, then its columns) gives the same packet.

# Frame layout constants (linux/if_packet.h), as compile-time constants so
# the walker's bounds checks fold into immediates; checked at import below.
cdef enum:
    V3_SLL_OFF = 48         # TPACKET_ALIGN(sizeof(struct tpacket3_hdr))
    V2_SLL_OFF = 32         # TPACKET_ALIGN(sizeof(struct tpacket2_hdr))
    SLL_SIZE = 20           # sizeof(struct sockaddr_ll)
    V3_HDR_END = V3_SLL_OFF + SLL_SIZE
    V2_HDR_END = V2_SLL_OFF + SLL_SIZE

if (zcap_tpacket_align(sizeof(tpacket3_hdr)) != V3_SLL_OFF or
        zcap_tpacket_align(sizeof(tpacket2_hdr)) != V2_SLL_OFF or
        sizeof(sockaddr_ll) != SLL_SIZE):
    raise ImportError("zcap was built against an unexpected linux/if_packet.h layout")

cdef enum:
    PARSE_OK = 0
    PARSE_BAD_COUNT = -1
    PARSE_BAD_OFFSET = -2
    PARSE_BAD_MAC = -3
    PARSE_BAD_LENGTH = -4
    PARSE_BAD_NEXT = -5
    PARSE_NO_ROOM = -6
    ENTRY_FILTERED = 2      # _table_entry: a filter rejected the packet

cdef const char *_parse_error_text(int code) noexcept:
    if code == PARSE_BAD_COUNT:
        return b"packet count larger than the block can hold"
    if code == PARSE_BAD_OFFSET:
        return b"packet header offset outside the block"
    if code == PARSE_BAD_MAC:
        return b"tp_mac points inside the packet header"
    if code == PARSE_BAD_LENGTH:
        return b"captured bytes run past the end of the block"
    if code == PARSE_BAD_NEXT:
        return b"tp_next_offset outside the block"
    if code == PARSE_NO_ROOM:
        return b"no room in front of the packet for the synthesized header"
    return b"unknown"

# ParseOpts and RawPacket are declared in _ring.pxd.

cdef enum:
    REWRITE_COOKED = 1      # _rewrite_front parts: the synthesized cooked header
    REWRITE_TAG = 2         # the reinserted VLAN tag

cdef inline bint _filter_rejects(const sock_filter *prog, Py_ssize_t n, const unsigned char *data,
                                 uint32_t *caplen, uint32_t wirelen, uint32_t status,
                                 uint16_t vlan_tci, uint16_t vlan_tpid, uint32_t rxhash,
                                 int32_t net_offset, const sockaddr_ll *sll) noexcept:
    """Run a socket filter in user space as the kernel would, with the metadata
    its ancillary loads read; trim caplen to what it keeps."""
    cdef BPFAux aux
    cdef uint32_t keep
    bpf_aux_clear(&aux)
    aux.ifindex = <uint32_t>sll.sll_ifindex
    aux.protocol = ntohs(sll.sll_protocol)
    aux.pkttype = sll.sll_pkttype
    aux.hatype = sll.sll_hatype
    aux.rxhash = rxhash
    aux.net_offset = net_offset
    if _vlan_present(status, vlan_tci):
        aux.vlan_present = 1
        aux.vlan_tci = vlan_tci
        aux.vlan_tpid = _vlan_tpid(status, vlan_tpid)
    keep = bpf_run(prog, n, data, caplen[0], wirelen, &aux)
    if keep == 0:
        return True
    if keep < caplen[0]:
        caplen[0] = keep
    return False

cdef inline bint _skip(const sockaddr_ll *sll, const ParseOpts *o) noexcept:
    """libpcap's linux_check_direction(): on loopback every packet shows up
    twice (outgoing and incoming), so the outgoing copy is dropped.  With
    neither a direction nor loopback the address is not read at all (for
    large frames it is a cache line of its own)."""
    if o.direction == 0 and o.lo_ifindex < 0:
        return False
    if sll.sll_pkttype == PACKET_OUTGOING:
        return sll.sll_ifindex == o.lo_ifindex or o.direction == 1
    return o.direction == 2

cdef inline bint _vlan_present(uint32_t status, uint32_t tci) noexcept:
    return (status & TP_STATUS_VLAN_VALID) or tci != 0

cdef inline uint16_t _vlan_tpid(uint32_t status, uint16_t tpid) noexcept:
    if tpid == 0 and not (status & TP_STATUS_VLAN_TPID_VALID):
        return 0x8100
    return tpid

cdef int _rewrite_front(unsigned char *base, size_t room_start, size_t *data_off,
                        uint32_t *caplen, uint32_t *wirelen, uint8_t *flags,
                        uint32_t status, uint16_t vlan_tci, uint16_t vlan_tpid,
                        const sockaddr_ll *sll, const ParseOpts *o, int parts) noexcept:
    """Write headers in front of a packet, in place, as libpcap does: a
    synthesized cooked header (SLL/SLL2, parts & REWRITE_COOKED) and/or a
    re-inserted VLAN tag (parts & REWRITE_TAG).  Only [room_start, data_off)
    is written: the gap the kernel leaves there (plus PACKET_RESERVE).
    Returns 0, or PARSE_NO_ROOM."""
    cdef unsigned char *p
    cdef uint32_t hlen
    cdef uint32_t ifindex
    cdef size_t off = data_off[0]
    if o.cooked and parts & REWRITE_COOKED:
        ifindex = <uint32_t>sll.sll_ifindex     # sockaddr_ll: read only when needed
        hlen = 20 if o.cooked == 2 else 16
        if off < room_start + hlen:
            return PARSE_NO_ROOM
        off -= hlen
        p = base + off
        if o.cooked == 2:
            memcpy(p, &sll.sll_protocol, 2)          # already network order
            p[2] = 0
            p[3] = 0
            p[4] = <uint8_t>(ifindex >> 24)
            p[5] = <uint8_t>(ifindex >> 16)
            p[6] = <uint8_t>(ifindex >> 8)
            p[7] = <uint8_t>ifindex
            p[8] = <uint8_t>(sll.sll_hatype >> 8)
            p[9] = <uint8_t>sll.sll_hatype
            p[10] = sll.sll_pkttype
            p[11] = sll.sll_halen
            memcpy(p + 12, sll.sll_addr, 8)
        else:
            p[0] = 0
            p[1] = sll.sll_pkttype
            p[2] = <uint8_t>(sll.sll_hatype >> 8)
            p[3] = <uint8_t>sll.sll_hatype
            p[4] = 0
            p[5] = sll.sll_halen
            memcpy(p + 6, sll.sll_addr, 8)
            memcpy(p + 14, &sll.sll_protocol, 2)
        caplen[0] += hlen
        wirelen[0] += hlen
    data_off[0] = off
    if parts & REWRITE_TAG and o.reinsert_vlan and _vlan_present(status, vlan_tci):
        return _insert_tag(base, room_start, data_off, caplen, wirelen, flags, status,
                           vlan_tci, vlan_tpid, o)
    return 0

cdef inline int _insert_tag(unsigned char *base, size_t room_start, size_t *data_off,
                            uint32_t *caplen, uint32_t *wirelen, uint8_t *flags,
                            uint32_t status, uint16_t vlan_tci, uint16_t vlan_tpid,
                            const ParseOpts *o) noexcept:
    """Put a stripped VLAN tag back at o.vlan_offset, in place (the caller has
    checked that the packet has one).  Returns 0, or PARSE_NO_ROOM."""
    cdef unsigned char *p
    cdef size_t off = data_off[0]
    if o.vlan_offset < 0 or caplen[0] < <uint32_t>o.vlan_offset:
        return 0
    if off < room_start + VLAN_TAG_LEN:
        return PARSE_NO_ROOM
    vlan_tpid = _vlan_tpid(status, vlan_tpid)
    p = base + off
    memmove(p - VLAN_TAG_LEN, p, o.vlan_offset)
    p = p - VLAN_TAG_LEN + o.vlan_offset
    p[0] = <uint8_t>(vlan_tpid >> 8)
    p[1] = <uint8_t>vlan_tpid
    p[2] = <uint8_t>(vlan_tci >> 8)
    p[3] = <uint8_t>vlan_tci
    data_off[0] = off - VLAN_TAG_LEN
    caplen[0] += VLAN_TAG_LEN
    wirelen[0] += VLAN_TAG_LEN
    flags[0] |= META_VLAN_INSERTED
    return 0

# hv1.tp_padding of a V3 packet whose front was rewritten in place: the
# kernel zeroes that field in every header it writes (prb_run_all_ft_ops), so
# only a walk of ours can have set it.  Only walks with ParseOpts.rewalk set
# (a lazy batch's, which may walk its block again) record and look for it;
# the ring's own cursor walks each packet once.
cdef enum:
    V3_FRONT_REWRITTEN = 0x7a63     # "zc"

cdef inline void _record_front(tpacket3_hdr *h, size_t off, size_t data_off,
                               uint32_t caplen, uint32_t wirelen) noexcept:
    """Make a rewritten packet's header describe its bytes as delivered (the
    synthesized headers included), and mark it, so a later walk of the block
    takes it as it is instead of reinserting its tag a second time.  The VLAN
    status bits, TCI and TPID stay: pkt.vlan and pkt.vlan_tpid still report
    the tag (as before, with META_VLAN_INSERTED saying it is in the bytes)."""
    h.tp_mac = <uint16_t>(data_off - off)
    h.tp_snaplen = caplen
    h.tp_len = wirelen
    h.hv1.tp_padding = V3_FRONT_REWRITTEN

cdef inline int _v3_step(unsigned char *blk, size_t bsize, size_t *cur_off, uint32_t *left,
                         const ParseOpts *o, RawPacket *out, size_t *bad_off,
                         WalkCounts *counts) noexcept:
    """Advance a TPACKET_V3 block cursor to its next packet.

    Returns 1 with *out filled, 0 when the block is exhausted, <0 (a
    PARSE_* code, *bad_off set) when an offset is out of bounds.  The next
    header offset is checked before the current packet is returned.
    """
    cdef size_t off, data_off
    cdef tpacket3_hdr *h
    cdef const sockaddr_ll *sll
    cdef uint32_t nxt, caplen, wirelen
    cdef uint8_t flags
    cdef int r
    cdef bint tagged
    while left[0]:
        off = cur_off[0]
        if off < sizeof(tpacket_block_desc) or off + V3_HDR_END > bsize:
            bad_off[0] = off
            return PARSE_BAD_OFFSET
        h = <tpacket3_hdr *>(blk + off)
        if h.tp_mac < V3_HDR_END:
            bad_off[0] = off
            return PARSE_BAD_MAC
        data_off = off + h.tp_mac
        caplen = h.tp_snaplen
        if data_off + caplen > bsize:
            bad_off[0] = off
            return PARSE_BAD_LENGTH
        left[0] -= 1
        if left[0]:
            nxt = h.tp_next_offset
            if nxt < V3_HDR_END or nxt > bsize - off:
                bad_off[0] = off
                return PARSE_BAD_NEXT
            cur_off[0] = off + nxt
        sll = <const sockaddr_ll *>(blk + off + V3_SLL_OFF)
        if _skip(sll, o):
            counts.skipped += 1
            continue
        wirelen = h.tp_len
        flags = 0
        tagged = o.reinsert_vlan and _vlan_present(h.tp_status, h.hv1.tp_vlan_tci)
        if tagged and o.rewalk and h.hv1.tp_padding == V3_FRONT_REWRITTEN:
            # an earlier walk of this block reinserted the tag (after any cooked
            # header and filter) and recorded the result in the header
            flags = META_VLAN_INSERTED
        else:
            if o.cooked:
                r = _rewrite_front(blk, off + V3_HDR_END, &data_off, &caplen, &wirelen, &flags,
                                   h.tp_status, <uint16_t>h.hv1.tp_vlan_tci, h.hv1.tp_vlan_tpid,
                                   sll, o, REWRITE_COOKED)
                if r < 0:
                    bad_off[0] = off
                    return r
            if o.ufilter and _filter_rejects(o.uprog, o.uprog_n, blk + data_off, &caplen, wirelen,
                                             h.tp_status, <uint16_t>h.hv1.tp_vlan_tci,
                                             h.hv1.tp_vlan_tpid, h.hv1.tp_rxhash,
                                             <int32_t>(off + h.tp_net) - <int32_t>data_off, sll):
                counts.filtered += 1
                continue
            if tagged:
                r = _insert_tag(blk, off + V3_HDR_END, &data_off, &caplen, &wirelen, &flags,
                                h.tp_status, <uint16_t>h.hv1.tp_vlan_tci, h.hv1.tp_vlan_tpid, o)
                if r < 0:
                    bad_off[0] = off
                    return r
                if o.rewalk and flags & META_VLAN_INSERTED:
                    _record_front(h, off, data_off, caplen, wirelen)
        if tagged and not (flags & META_VLAN_INSERTED):
            # the one way a tag stays stripped while reinsertion is on: the
            # header pass's VLAN columns look only for packets marked so
            flags |= META_VLAN_STRIPPED
        if caplen > o.snaplen:
            caplen = o.snaplen
        if caplen < wirelen:
            flags |= META_TRUNCATED
        out.hdr = <unsigned char *>h
        out.data = blk + data_off
        out.caplen = caplen
        out.wirelen = wirelen
        out.flags = flags
        return 1
    return 0

cdef void _v3_meta(const unsigned char *hdr, uint8_t extra_flags, PacketMeta *m) noexcept:
    """A packet's metadata, read from its TPACKET_V3 header."""
    cdef const tpacket3_hdr *h = <const tpacket3_hdr *>hdr
    cdef const sockaddr_ll *sll = <const sockaddr_ll *>(hdr + V3_SLL_OFF)
    cdef uint32_t status = h.tp_status
    m.ts_ns = <int64_t>h.tp_sec * 1000000000 + h.tp_nsec
    m.ifindex = sll.sll_ifindex
    m.rxhash = h.hv1.tp_rxhash
    m.protocol = ntohs(sll.sll_protocol)
    m.pkttype = sll.sll_pkttype
    m.flags = extra_flags
    if _vlan_present(status, h.hv1.tp_vlan_tci):
        m.flags |= META_VLAN
        m.vlan_tci = <uint16_t>h.hv1.tp_vlan_tci
        m.vlan_tpid = _vlan_tpid(status, h.hv1.tp_vlan_tpid)
    else:
        m.vlan_tci = 0
        m.vlan_tpid = 0
    if status & TP_STATUS_CSUMNOTREADY:
        m.flags |= META_CSUM_NOTREADY
    m.flags |= _ts_source_flags(status)

cdef inline uint8_t _ts_source_flags(uint32_t status) noexcept:
    """Which clock stamped the packet, from the ring header's TP_STATUS_TS_* bits.

    Without a hardware bit it is the kernel's clock: the skb's software stamp
    (TP_STATUS_TS_SOFTWARE), or, when nothing stamped the skb, the time the
    kernel read as it filled the ring (no bit set); copy mode's SO_TIMESTAMPNS."""
    if status & TP_STATUS_TS_RAW_HARDWARE:
        return META_TS_RAW_HW
    if status & TP_STATUS_TS_SYS_HARDWARE:
        return META_TS_SYS_HW
    return META_TS_SOFTWARE

cdef inline int _table_entry(_Columns cols, Py_ssize_t idx, unsigned char *base,
                             size_t room_start, size_t data_off, uint32_t caplen,
                             uint32_t wirelen, int64_t ts, uint32_t status, uint16_t vlan_tci,
                             uint16_t vlan_tpid, uint32_t rxhash, size_t net_abs,
                             const sockaddr_ll *sll, const ParseOpts *o) noexcept:
    """Store one packet of a table-based unit (V2 frame, copy batch) with its
    metadata; return 1 stored, 0 skipped, ENTRY_FILTERED, or <0 error.  The
    caller has checked data_off + caplen <= unit size and room_start <= data_off."""
    cdef uint8_t flags = 0
    cdef int r
    cdef PacketMeta *m = &cols.meta[idx]
    if _skip(sll, o):
        return 0
    if o.cooked:
        r = _rewrite_front(base, room_start, &data_off, &caplen, &wirelen, &flags, status,
                           vlan_tci, vlan_tpid, sll, o, REWRITE_COOKED)
        if r < 0:
            return r
    if o.ufilter and _filter_rejects(o.uprog, o.uprog_n, base + data_off, &caplen, wirelen,
                                     status, vlan_tci, vlan_tpid, rxhash,
                                     <int32_t>net_abs - <int32_t>data_off, sll):
        return ENTRY_FILTERED
    if o.reinsert_vlan:
        r = _rewrite_front(base, room_start, &data_off, &caplen, &wirelen, &flags, status,
                           vlan_tci, vlan_tpid, sll, o, REWRITE_TAG)
        if r < 0:
            return r
    if caplen > o.snaplen:
        caplen = o.snaplen
    if caplen < wirelen:
        flags |= META_TRUNCATED
    if _vlan_present(status, vlan_tci):
        flags |= META_VLAN
        m.vlan_tci = vlan_tci
        m.vlan_tpid = _vlan_tpid(status, vlan_tpid)
    else:
        m.vlan_tci = 0
        m.vlan_tpid = 0
    if status & TP_STATUS_CSUMNOTREADY:
        flags |= META_CSUM_NOTREADY
    flags |= _ts_source_flags(status)
    cols.offsets[idx] = <uint32_t>data_off
    cols.caplen[idx] = caplen
    cols.wirelen[idx] = wirelen
    cols.ts_ns[idx] = ts
    cols.hoff[idx] = 0
    cols.flags[idx] = flags
    m.ts_ns = ts
    m.ifindex = sll.sll_ifindex
    m.rxhash = rxhash
    m.protocol = ntohs(sll.sll_protocol)
    m.pkttype = sll.sll_pkttype
    m.flags = flags
    return 1

cdef Py_ssize_t _parse_v2_frame(unsigned char *frame, size_t fsize, _Columns cols,
                                const ParseOpts *o, size_t *bad_off) noexcept:
    """Parse one TPACKET_V2 frame into cols[0]; return 1, 0 (skipped) or <0."""
    cdef tpacket2_hdr *h = <tpacket2_hdr *>frame
    cdef size_t data_off = h.tp_mac
    bad_off[0] = 0
    if data_off < V2_HDR_END or data_off > fsize:
        return PARSE_BAD_MAC
    if data_off + h.tp_snaplen > fsize:
        return PARSE_BAD_LENGTH
    return _table_entry(cols, 0, frame, V2_HDR_END, data_off, h.tp_snaplen, h.tp_len,
                        <int64_t>h.tp_sec * 1000000000 + h.tp_nsec, h.tp_status,
                        h.tp_vlan_tci, h.tp_vlan_tpid, 0, h.tp_net,
                        <sockaddr_ll *>(frame + V2_SLL_OFF), o)

cdef Py_ssize_t _v3_fill_table(unsigned char *blk, size_t bsize, size_t *cur_off,
                               uint32_t *left, _Columns cols, const ParseOpts *o,
                               size_t *bad_off, WalkCounts *counts) noexcept:
    """Walk the rest of a V3 block into a table (for batches); return the count or <0."""
    cdef RawPacket raw
    cdef Py_ssize_t n = 0
    cdef int r
    cdef const tpacket3_hdr *h
    cdef bint plain = _walk_is_plain(o)
    while True:
        if plain:
            # the packets that need nothing done, in a tight loop (_plainwalk.pxi)
            n = _v3_fill_plain(blk, bsize, cur_off, left, cols, n, o.snaplen, o.reinsert_vlan)
            if not left[0]:
                return n
        r = _v3_step(blk, bsize, cur_off, left, o, &raw, bad_off, counts)
        if r <= 0:
            return r if r < 0 else n
        if n >= cols.capacity:
            bad_off[0] = cur_off[0]
            return PARSE_BAD_COUNT
        h = <const tpacket3_hdr *>raw.hdr
        cols.offsets[n] = <uint32_t>(raw.data - blk)
        cols.caplen[n] = raw.caplen
        cols.wirelen[n] = raw.wirelen
        cols.ts_ns[n] = <int64_t>h.tp_sec * 1000000000 + h.tp_nsec
        cols.hoff[n] = <uint32_t>(raw.hdr - blk)
        cols.flags[n] = raw.flags
        n += 1

cdef inline bint _walk_is_pure(const ParseOpts *o) noexcept:
    """The walker will neither skip nor filter a packet with these options, and
    walking a block twice gives the same packets (lazy batches): a reinserted
    VLAN tag is recorded in the packet's header (_record_front) and never
    reinserted twice."""
    return o.direction == 0 and o.lo_ifindex < 0 and not o.cooked and not o.ufilter
