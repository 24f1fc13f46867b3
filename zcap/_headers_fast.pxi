# Included by _headers.pyx: the header pass's fast path.
#
# Most packets of most captures have one of a few shapes: Ethernet (or Linux
# cooked SLL / SLL2) with at most one 802.1Q tag, IPv4 without options or
# fragmentation or IPv6 without extension headers, and TCP or UDP with the
# whole transport header captured.  For those, `_fast_row` reads each field
# from the packet once and stores it straight into the columns, with the fill
# values of the absent fields as constants; every other packet (and every
# packet whose headers are cut short, malformed or fragmented) goes through
# the general parser (`_parse_packet` into a Row, then `_store`), which stays
# the reference: the tests check that both give the same columns for every
# packet, and the fast path only ever declines a packet, never half-writes it.
#
# Columns whose value is the same for every packet the fast path takes (the
# fill values of MPLS, ICMP, fragments, flags, VLAN ids, TCP flags and IPv6
# rows where absent; the link type of a batch with one) are filled first, one sweep of
# 64-byte chunks per column (`_prefill`); the fast path writes them only
# where a packet differs, and the general parser writes every column of the
# packets it takes.


cdef inline void _fill(void *col, size_t size, uint64_t pattern) noexcept nogil:
    """`pattern` over `size` bytes from `col`, in whole 64-byte chunks of plain stores.

    The columns are carved 64-byte aligned (`_carve`), so a last chunk ends in
    the padding before the next column.  Not memset: its `rep stosb` counts an
    instruction per byte under callgrind, the benchmarks' yardstick."""
    cdef uint8_t *d = <uint8_t *>col
    cdef uint8_t *end = d + size
    while d < end:
        memcpy(d, &pattern, 8)
        memcpy(d + 8, &pattern, 8)
        memcpy(d + 16, &pattern, 8)
        memcpy(d + 24, &pattern, 8)
        memcpy(d + 32, &pattern, 8)
        memcpy(d + 40, &pattern, 8)
        memcpy(d + 48, &pattern, 8)
        memcpy(d + 56, &pattern, 8)
        d += 64


cdef inline void _prefill(Cols *c, Py_ssize_t n, unsigned want, int linktype, bint one_linktype) noexcept nogil:
    """The columns of `want` the fast path leaves alone unless a packet differs."""
    cdef uint64_t ones = 0xffffffffffffffffULL         # -1 in every signed width
    if want & G_L2:
        if one_linktype:
            _fill(c.link_type, n * 2, (<uint16_t>linktype) * 0x0001000100010001ULL)
        _fill(c.vlan_outer, n * 4, ones)
        _fill(c.vlan_inner, n * 4, ones)
        _fill(c.mpls_label, n * 4, ones)
    if want & G_IP:
        _fill(c.frag_offset, n * 4, 0)
    if want & G_IP6:
        _fill(c.ip6_src, n * 16, 0)
        _fill(c.ip6_dst, n * 16, 0)
    if want & G_L4:
        _fill(c.tcp_flags, n * 2, ones)
        _fill(c.icmp_type, n * 2, ones)
        _fill(c.icmp_code, n * 2, ones)
    if want & G_FLAGS:
        _fill(c.parse_flags, n, 0)


cdef inline bint _fast_link(const uint8_t *p, uint32_t caplen, int linktype, bint one_linktype,
                            int32_t vlan_meta, Py_ssize_t i, unsigned want, Cols *c) noexcept nogil:
    """The link layer of the fast path; False (nothing written) for a packet it does not take."""
    cdef uint32_t off
    cdef uint16_t et
    cdef int32_t vid
    if linktype == 1:                       # Ethernet
        off = 14
        if caplen < 14:
            return False
        et = _be16(p + 12)
    elif linktype == 113:                   # Linux cooked v1
        off = 16
        if caplen < 16:
            return False
        et = _be16(p + 14)
    elif linktype == 276:                   # Linux cooked v2
        off = 20
        if caplen < 20:
            return False
        et = _be16(p)
    else:
        return False
    if et != 0x8100:
        return _fast_row(p, caplen, off, et, vlan_meta, -1, linktype, one_linktype, i, want, c)
    if off + 4 > caplen:                    # one 802.1Q tag (the tag loop of _parse_tags, once)
        return False
    vid = _be16(p + off) & 0xfff
    et = _be16(p + off + 2)
    if vlan_meta >= 0:                      # the tag the kernel stripped is the outer one
        return _fast_row(p, caplen, off + 4, et, vlan_meta, vid, linktype, one_linktype, i, want, c)
    return _fast_row(p, caplen, off + 4, et, vid, -1, linktype, one_linktype, i, want, c)


cdef inline bint _fast_row(const uint8_t *p, uint32_t caplen, uint32_t off, uint16_t et,
                           int32_t vlan_outer, int32_t vlan_inner, int linktype, bint one_linktype,
                           Py_ssize_t i, unsigned want, Cols *c) noexcept nogil:
    """Packet i's columns (the groups in `want`) if its network and transport headers are
    of the common shapes; False, and nothing written, if they are not."""
    cdef uint32_t l4, hl, pay, src = 0, dst = 0
    cdef uint16_t frag
    cdef int proto, version
    cdef int32_t ip_len, end, payload_len, sport, dport, tcp_flags = -1
    cdef int16_t ttl
    cdef uint8_t frag_flags = 0
    cdef const uint8_t *ip6 = NULL
    cdef uint64_t ha, hb
    if et == 0x0800:
        if off + 20 > caplen or p[off] != 0x45:      # IPv4 without options
            return False
        frag = _be16(p + off + 6)
        if frag & 0x3fff:                            # a fragment (MF or an offset)
            return False
        if frag & 0x4000:
            frag_flags = FR_DONT
        version = 4
        proto = p[off + 9]
        ip_len = _be16(p + off + 2)
        ttl = p[off + 8]
        src = _be32(p + off + 12)
        dst = _be32(p + off + 16)
        l4 = off + 20
    elif et == 0x86dd:
        if off + 40 > caplen or (p[off] >> 4) != 6:
            return False
        version = 6
        proto = p[off + 6]                           # TCP or UDP below: no extension headers
        ip_len = 40 + _be16(p + off + 4)
        ttl = p[off + 7]
        ip6 = p + off + 8
        l4 = off + 40
    else:
        return False
    if proto == 17:
        hl = 8
        if l4 + 8 > caplen:
            return False
    elif proto == 6:
        if l4 + 14 > caplen:
            return False
        hl = (p[l4 + 12] >> 4) * 4
        if hl < 20 or l4 + hl > caplen:
            return False
        tcp_flags = p[l4 + 13]
    else:
        return False
    pay = l4 + hl
    end = <int32_t>off + ip_len
    payload_len = end - <int32_t>pay if end > <int32_t>pay else 0
    sport = _be16(p + l4)
    dport = _be16(p + l4 + 2)
    if want & G_L2:
        if not one_linktype:
            c.link_type[i] = linktype
        c.ethertype[i] = et
        if vlan_outer >= 0:
            c.vlan_outer[i] = vlan_outer
            if vlan_inner >= 0:
                c.vlan_inner[i] = vlan_inner
    if want & G_FLOW:
        c.ip_version[i] = version
        c.ip_src[i] = src
        c.ip_dst[i] = dst
        c.proto[i] = proto
        c.sport[i] = sport
        c.dport[i] = dport
    if want & G_IP:
        c.ttl[i] = ttl
        c.ip_len[i] = ip_len
        c.frag_flags[i] = frag_flags
    if want & G_IP6:
        if ip6 != NULL:
            memcpy(c.ip6_src + 16 * i, ip6, 16)
            memcpy(c.ip6_dst + 16 * i, ip6 + 16, 16)
    if want & G_L4:
        if proto == 6:
            c.tcp_flags[i] = tcp_flags
    if want & G_OFFSETS:
        c.l3_offset[i] = off
        c.l4_offset[i] = l4
        c.payload_offset[i] = pay
        c.payload_len[i] = payload_len
    if want & G_HASH:
        if version == 4:
            ha = src
            hb = dst
        else:
            ha = _fold16_fast(ip6)
            hb = _fold16_fast(ip6 + 16)
        c.flow_hash[i] = _flow_hash_of(ha, hb, sport, dport, proto, version)
    return True
