# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Packet header columns, address sets, flow tables and flow selection, in C.

`Headers` parses the packets of one batch (a buffer, each packet's offset and
captured length, its link type and, where the kernel stripped a VLAN tag
without putting it back, that tag) into per-packet columns that numpy, Arrow
and friends read without a copy.  Every read is checked against the packet's
captured length: a field that lies past it gets its fill value and the packet
gets HDR_TRUNCATED in `parse_flags`; a field that is present but invalid (an
IPv4 header length below 20 bytes, a TCP data offset below 5, a version
nibble that contradicts the ethertype) gets HDR_MALFORMED.

What is parsed: Ethernet with any number of 802.1Q / 802.1ad / 0x9100 tags
(the first two become vlan_outer / vlan_inner), MPLS label stacks (the IP
version is taken from the first nibble after the bottom label, as dpkt and
Wireshark guess), Linux cooked SLL and SLL2, raw IP (101, 12, 14, 228, 229),
BSD NULL (0) and OpenBSD LOOP (108) loopback; IPv4 with options and IPv6 with
extension headers (hop-by-hop, routing, fragment, destination options, AH;
ESP ends the walk); fragments (frag_flags, frag_offset; no L4 fields on
fragments after the first); TCP, UDP, UDP-Lite, SCTP and DCCP ports, TCP flags,
ICMP / ICMPv6 type and code.

The common packets (Ethernet / SLL / SLL2 with at most one 802.1Q tag, plain
IPv4 or IPv6, TCP or UDP) take a fast path, `_headers_fast.pxi`, that must
give exactly what the general parser gives (tests/unit/test_headers_fast.py).
"""

from cpython.buffer cimport PyBUF_FORMAT, PyBUF_ND, PyBUF_STRIDES, PyBUF_WRITABLE
cimport cython
from libc.stdint cimport int16_t, int32_t, uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcmp, memcpy, memset

from zcap.includes.linux cimport (MAP_ANONYMOUS, MAP_FAILED, MAP_POPULATE, MAP_PRIVATE, PROT_READ,
                                  PROT_WRITE, mmap, munmap)

import ipaddress as _ipaddress
import socket as _socket

# parse_flags bits
HDR_TRUNCATED = 1       # a header field lies beyond the captured length
HDR_MALFORMED = 2       # a header field is present but invalid
HDR_UNSUPPORTED_LINK = 4  # the link type is not one zcap parses
HDR_FRAGMENT = 8        # an IP fragment (first or later)

cdef enum:
    F_TRUNC = 1
    F_BAD = 2
    F_LINK = 4
    F_FRAG = 8

# frag_flags bits
cdef enum:
    FR_MORE = 1
    FR_DONT = 2

FRAG_MORE = FR_MORE     # more fragments follow (IPv4 MF, IPv6 M)
FRAG_DONT = FR_DONT     # IPv4 don't-fragment

cdef enum:
    MAX_TAGS = 8
    MAX_MPLS = 16
    MAX_EXT = 16

cdef char *_FMT_U8 = b"B"
cdef char *_FMT_I8 = b"b"
cdef char *_FMT_U16 = b"H"
cdef char *_FMT_I16 = b"h"
cdef char *_FMT_U32 = b"I"
cdef char *_FMT_I32 = b"i"


cdef inline uint16_t _be16(const uint8_t *p) noexcept nogil:
    return (<uint16_t>p[0] << 8) | p[1]

cdef inline uint32_t _be32(const uint8_t *p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef struct Cols:              # one pointer per column, in COLUMNS order (Headers._ptr)
    uint16_t *link_type
    uint16_t *ethertype
    int32_t *vlan_outer
    int32_t *vlan_inner
    int32_t *mpls_label
    uint8_t *ip_version
    uint32_t *ip_src
    uint32_t *ip_dst
    uint8_t *ip6_src
    uint8_t *ip6_dst
    int16_t *ttl
    int32_t *ip_len
    int16_t *proto
    uint8_t *frag_flags
    int32_t *frag_offset
    int32_t *sport
    int32_t *dport
    int16_t *tcp_flags
    int16_t *icmp_type
    int16_t *icmp_code
    int32_t *l3_offset
    int32_t *l4_offset
    int32_t *payload_offset
    int32_t *payload_len
    uint8_t *parse_flags
    uint32_t *flow_hash


# Column groups: a first access computes the group of the column asked for
# (every row of every column in it), and nothing else.  The packet walk is the
# same for every group; only the stores differ.
cdef enum:
    G_L2 = 1            # link_type, ethertype, vlan_outer, vlan_inner, mpls_label
    G_FLOW = 2          # ip_version, ip_src, ip_dst, proto, sport, dport
    G_IP = 4            # ttl, ip_len, frag_flags, frag_offset
    G_IP6 = 8           # ip6_src, ip6_dst
    G_L4 = 16           # tcp_flags, icmp_type, icmp_code
    G_OFFSETS = 32      # l3_offset, l4_offset, payload_offset, payload_len
    G_FLAGS = 64        # parse_flags
    G_HASH = 128        # flow_hash
    G_ALL = 255


cdef struct Row:               # one packet's fields while it is walked (a local)
    uint16_t ethertype
    int32_t vlan_outer
    int32_t vlan_inner
    int32_t mpls_label
    uint8_t ip_version
    uint32_t ip_src
    uint32_t ip_dst
    const uint8_t *ip6          # the IPv6 source address in the packet (destination: +16), or NULL
    int16_t ttl
    int32_t ip_len
    int16_t proto
    uint8_t frag_flags
    int32_t frag_offset
    int32_t sport
    int32_t dport
    int16_t tcp_flags
    int16_t icmp_type
    int16_t icmp_code
    int32_t l3_offset
    int32_t l4_offset
    int32_t payload_offset
    int32_t payload_len
    uint8_t flags


cdef inline void _row_init(Row *r, int32_t vlan_meta) noexcept nogil:
    """The fill values: -1 for the signed fields, 0 for the others."""
    r.ethertype = 0
    r.vlan_outer = vlan_meta
    r.vlan_inner = -1
    r.mpls_label = -1
    r.ip_version = 0
    r.ip_src = 0
    r.ip_dst = 0
    r.ip6 = NULL
    r.ttl = -1
    r.ip_len = -1
    r.proto = -1
    r.frag_flags = 0
    r.frag_offset = 0
    r.sport = -1
    r.dport = -1
    r.tcp_flags = -1
    r.icmp_type = -1
    r.icmp_code = -1
    r.l3_offset = -1
    r.l4_offset = -1
    r.payload_offset = -1
    r.payload_len = -1
    r.flags = 0


cdef inline void _parse_l4(const uint8_t *p, uint32_t caplen, uint32_t off, int proto,
                           int32_t l3_off, int32_t ip_len, Row *r) noexcept nogil:
    """Ports, flags and payload of the transport header at `off`."""
    cdef uint32_t hl
    cdef int32_t end = l3_off + ip_len if ip_len >= 0 else -1
    r.l4_offset = off
    if proto == 6 or proto == 17 or proto == 136 or proto == 132 or proto == 33:
        if off + 4 > caplen:
            r.flags |= F_TRUNC
            return
        r.sport = _be16(p + off)
        r.dport = _be16(p + off + 2)
        if proto == 6:
            if off + 14 > caplen:
                r.flags |= F_TRUNC
                return
            r.tcp_flags = p[off + 13]
            hl = (p[off + 12] >> 4) * 4
            if hl < 20:
                r.flags |= F_BAD
                return
        elif proto == 132:
            hl = 12
        elif proto == 33:
            if off + 5 > caplen:
                r.flags |= F_TRUNC
                return
            hl = p[off + 4] * 4
            if hl < 12:
                r.flags |= F_BAD
                return
        else:
            hl = 8
    elif proto == 1 or proto == 58:
        if off + 2 > caplen:
            r.flags |= F_TRUNC
            return
        r.icmp_type = p[off]
        r.icmp_code = p[off + 1]
        return
    else:
        return
    if off + hl > caplen:
        r.flags |= F_TRUNC
        return
    r.payload_offset = off + hl
    if end >= 0:
        r.payload_len = end - <int32_t>(off + hl) if end > <int32_t>(off + hl) else 0


cdef inline void _parse_ipv4(const uint8_t *p, uint32_t caplen, uint32_t off, Row *r) noexcept nogil:
    cdef uint32_t ihl
    cdef uint16_t frag
    r.l3_offset = off
    if off + 1 > caplen:
        r.flags |= F_TRUNC
        return
    if (p[off] >> 4) != 4:
        r.flags |= F_BAD
        return
    r.ip_version = 4
    if off + 20 > caplen:
        r.flags |= F_TRUNC
        return
    ihl = (p[off] & 15) * 4
    r.ip_len = _be16(p + off + 2)
    r.ttl = p[off + 8]
    r.proto = p[off + 9]
    r.ip_src = _be32(p + off + 12)
    r.ip_dst = _be32(p + off + 16)
    frag = _be16(p + off + 6)
    if frag & 0x3fff:
        if frag & 0x2000:
            r.frag_flags |= FR_MORE
        r.frag_offset = (frag & 0x1fff) * 8
        r.flags |= F_FRAG
    if frag & 0x4000:
        r.frag_flags |= FR_DONT
    if ihl < 20:
        r.flags |= F_BAD
        return
    if off + ihl > caplen:
        r.flags |= F_TRUNC
        return
    if frag & 0x1fff:
        r.payload_offset = off + ihl            # a later fragment: its data, no L4 header
        if r.ip_len > <int32_t>ihl:
            r.payload_len = r.ip_len - ihl
        else:
            r.payload_len = 0
        return
    _parse_l4(p, caplen, off + ihl, p[off + 9], off, r.ip_len, r)


cdef inline void _parse_ipv6(const uint8_t *p, uint32_t caplen, uint32_t off, Row *r) noexcept nogil:
    cdef uint32_t x, hl
    cdef int nh, n = 0
    cdef uint16_t fo
    cdef int32_t ip_len
    r.l3_offset = off
    if off + 1 > caplen:
        r.flags |= F_TRUNC
        return
    if (p[off] >> 4) != 6:
        r.flags |= F_BAD
        return
    r.ip_version = 6
    if off + 40 > caplen:
        r.flags |= F_TRUNC
        return
    ip_len = 40 + _be16(p + off + 4)
    r.ip_len = ip_len
    r.ttl = p[off + 7]
    r.ip6 = p + off + 8
    nh = p[off + 6]
    x = off + 40
    while n < MAX_EXT:
        n += 1
        if nh == 0 or nh == 43 or nh == 60 or nh == 51:
            if x + 2 > caplen:              # proto stays -1: the chain is cut
                r.flags |= F_TRUNC
                return
            hl = (p[x + 1] + 2) * 4 if nh == 51 else (p[x + 1] + 1) * 8
            nh = p[x]
            x += hl
        elif nh == 44:
            if x + 8 > caplen:
                r.flags |= F_TRUNC
                return
            fo = _be16(p + x + 2)
            r.frag_offset = fo & 0xfff8
            if fo & 1:
                r.frag_flags |= FR_MORE
            r.flags |= F_FRAG
            nh = p[x]
            x += 8
        else:
            break
    if n >= MAX_EXT:
        r.flags |= F_BAD
        return
    if x > caplen:
        r.flags |= F_TRUNC
        return
    r.proto = nh
    if r.frag_offset > 0:
        r.payload_offset = x
        r.payload_len = <int32_t>(off + ip_len) - <int32_t>x if <int32_t>(off + ip_len) > <int32_t>x else 0
        return
    if nh == 50 or nh == 59:                   # ESP (encrypted) or no next header
        return
    _parse_l4(p, caplen, x, nh, off, ip_len, r)


cdef inline void _parse_l3(const uint8_t *p, uint32_t caplen, uint32_t off, uint16_t et,
                           Row *r) noexcept nogil:
    cdef int n = 0
    cdef uint32_t lbl
    if et == 0x0800:
        _parse_ipv4(p, caplen, off, r)
        return
    if et == 0x86dd:
        _parse_ipv6(p, caplen, off, r)
        return
    if et == 0x8847 or et == 0x8848:
        while True:
            if off + 4 > caplen:
                r.flags |= F_TRUNC
                return
            lbl = _be32(p + off)
            if n == 0:
                r.mpls_label = lbl >> 12
            off += 4
            n += 1
            if lbl & 0x100:
                break
            if n >= MAX_MPLS:
                r.flags |= F_BAD
                return
        if off + 1 > caplen:
            r.flags |= F_TRUNC
            return
        if p[off] == 0x45:
            _parse_ipv4(p, caplen, off, r)
        elif (p[off] >> 4) == 6:
            _parse_ipv6(p, caplen, off, r)


cdef inline void _parse_tags(const uint8_t *p, uint32_t caplen, uint32_t off, uint16_t et,
                             Row *r) noexcept nogil:
    """802.1Q / 802.1ad tags in the bytes from `off`, then the network layer."""
    cdef int n = 0
    cdef int32_t vid
    while et == 0x8100 or et == 0x88a8 or et == 0x9100:
        if off + 4 > caplen:                # ethertype stays 0: the stack is cut
            r.flags |= F_TRUNC
            return
        if n >= MAX_TAGS:
            r.flags |= F_BAD
            return
        vid = _be16(p + off) & 0xfff
        if r.vlan_outer < 0:
            r.vlan_outer = vid
        elif r.vlan_inner < 0:
            r.vlan_inner = vid
        et = _be16(p + off + 2)
        off += 4
        n += 1
    r.ethertype = et
    _parse_l3(p, caplen, off, et, r)


cdef inline void _parse_ip_by_version(const uint8_t *p, uint32_t caplen, uint32_t off,
                                      Row *r) noexcept nogil:
    if off + 1 > caplen:
        r.flags |= F_TRUNC
        return
    if (p[off] >> 4) == 4:
        r.ethertype = 0x0800
        _parse_ipv4(p, caplen, off, r)
    elif (p[off] >> 4) == 6:
        r.ethertype = 0x86dd
        _parse_ipv6(p, caplen, off, r)
    else:
        r.flags |= F_BAD


cdef inline void _parse_packet(const uint8_t *p, uint32_t caplen, int linktype, Row *r) noexcept nogil:
    cdef uint32_t fam
    if linktype == 1:                       # Ethernet
        if caplen < 14:
            r.flags = F_TRUNC
            return
        _parse_tags(p, caplen, 14, _be16(p + 12), r)
    elif linktype == 113:                   # Linux cooked v1
        if caplen < 16:
            r.flags = F_TRUNC
            return
        _parse_tags(p, caplen, 16, _be16(p + 14), r)
    elif linktype == 276:                   # Linux cooked v2
        if caplen < 20:
            r.flags = F_TRUNC
            return
        _parse_tags(p, caplen, 20, _be16(p), r)
    elif linktype == 101 or linktype == 12 or linktype == 14:
        _parse_ip_by_version(p, caplen, 0, r)
    elif linktype == 228:
        r.ethertype = 0x0800
        _parse_ipv4(p, caplen, 0, r)
    elif linktype == 229:
        r.ethertype = 0x86dd
        _parse_ipv6(p, caplen, 0, r)
    elif linktype == 0 or linktype == 108:  # BSD NULL (writer's byte order) / OpenBSD LOOP
        if caplen < 4:
            r.flags = F_TRUNC
            return
        if linktype == 108:
            fam = _be32(p)
        else:
            fam = p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)
            if fam & <uint32_t>0xffff0000:
                fam = _be32(p)
        if fam == 2:
            r.ethertype = 0x0800
            _parse_ipv4(p, caplen, 4, r)
        elif fam == 10 or fam == 24 or fam == 28 or fam == 30:
            r.ethertype = 0x86dd
            _parse_ipv6(p, caplen, 4, r)
    else:
        r.flags = F_LINK


# -- the symmetric flow hash ------------------------------------------------

cdef inline uint64_t _mix(uint64_t h) noexcept nogil:
    h ^= h >> 33
    h *= 0xff51afd7ed558ccdULL
    h ^= h >> 33
    h *= 0xc4ceb9fe1a85ec53ULL
    h ^= h >> 33
    return h

cdef inline uint64_t _fold16(const uint8_t *a) noexcept nogil:
    cdef uint64_t x, y
    memcpy(&x, a, 8)
    memcpy(&y, a + 8, 8)
    return _mix(x ^ _mix(y + 0x9e3779b97f4a7c15ULL))

cdef inline uint64_t _fold16_fast(const uint8_t *a) noexcept nogil:
    """64 bits of a 16-byte address for the flow hash (mixed again afterwards)."""
    cdef uint64_t x, y
    memcpy(&x, a, 8)
    memcpy(&y, a + 8, 8)
    return (x * 0x9e3779b97f4a7c15ULL) ^ ((y << 29) | (y >> 35)) * 0xc2b2ae3d27d4eb4fULL

cdef inline uint32_t _flow_hash_of(uint64_t a, uint64_t b, int32_t sport, int32_t dport, int proto,
                                   int version) noexcept nogil:
    """Symmetric: each endpoint (address, port) becomes one number, the smaller goes first.
    `a`, `b`: the IPv4 addresses, or 64 bits of each IPv6 address (_fold16_fast)."""
    cdef uint64_t e1 = (a << 17) | <uint32_t>(sport + 1)
    cdef uint64_t e2 = (b << 17) | <uint32_t>(dport + 1)
    cdef uint64_t lo = e1 if e1 < e2 else e2
    cdef uint64_t hi = e2 if e1 < e2 else e1
    cdef uint64_t x = (lo * 0x9e3779b97f4a7c15ULL + hi) ^ ((<uint64_t>(<uint16_t>proto) << 4 | version) << 52)
    # fold the high half into the low one, then multiply-shift: each bit of the
    # 32-bit result depends on every bit of x
    x ^= x >> 32
    return <uint32_t>((x * 0xc4ceb9fe1a85ec53ULL) >> 32)

cdef inline uint32_t _flow_hash_row(const Row *r) noexcept nogil:
    if r.ip_len < 0:                       # the addresses were not captured
        return 0
    if r.ip_version == 4:
        return _flow_hash_of(r.ip_src, r.ip_dst, r.sport, r.dport, r.proto, 4)
    if r.ip_version == 6:
        return _flow_hash_of(_fold16_fast(r.ip6), _fold16_fast(r.ip6 + 16), r.sport, r.dport, r.proto, 6)
    return 0


cdef inline void _store(const Row *r, Py_ssize_t i, int linktype, unsigned want, Cols *c) noexcept nogil:
    """Write the groups in `want` of packet i's row (every column of a group, fill values too)."""
    if want & G_L2:
        c.link_type[i] = linktype
        c.ethertype[i] = r.ethertype
        c.vlan_outer[i] = r.vlan_outer
        c.vlan_inner[i] = r.vlan_inner
        c.mpls_label[i] = r.mpls_label
    if want & G_FLOW:
        c.ip_version[i] = r.ip_version
        c.ip_src[i] = r.ip_src
        c.ip_dst[i] = r.ip_dst
        c.proto[i] = r.proto
        c.sport[i] = r.sport
        c.dport[i] = r.dport
    if want & G_IP:
        c.ttl[i] = r.ttl
        c.ip_len[i] = r.ip_len
        c.frag_flags[i] = r.frag_flags
        c.frag_offset[i] = r.frag_offset
    if want & G_IP6:
        if r.ip6 != NULL:
            memcpy(c.ip6_src + 16 * i, r.ip6, 16)
            memcpy(c.ip6_dst + 16 * i, r.ip6 + 16, 16)
        else:
            memset(c.ip6_src + 16 * i, 0, 16)
            memset(c.ip6_dst + 16 * i, 0, 16)
    if want & G_L4:
        c.tcp_flags[i] = r.tcp_flags
        c.icmp_type[i] = r.icmp_type
        c.icmp_code[i] = r.icmp_code
    if want & G_OFFSETS:
        c.l3_offset[i] = r.l3_offset
        c.l4_offset[i] = r.l4_offset
        c.payload_offset[i] = r.payload_offset
        c.payload_len[i] = r.payload_len
    if want & G_FLAGS:
        c.parse_flags[i] = r.flags
    if want & G_HASH:
        c.flow_hash[i] = _flow_hash_row(r)


include "_headers_fast.pxi"


# -- buffer exports of the columns -----------------------------------------

cdef class Headers

@cython.final
cdef class _Column:
    """A read-only buffer over one header column (1-D, or n x 16 for IPv6 addresses)."""
    cdef Headers owner
    cdef char *ptr
    cdef Py_ssize_t n
    cdef Py_ssize_t itemsize
    cdef Py_ssize_t width
    cdef char *fmt
    cdef Py_ssize_t shape[2]
    cdef Py_ssize_t strides[2]

    def __getbuffer__(self, Py_buffer *view, int flags):
        if flags & PyBUF_WRITABLE:
            raise BufferError("header columns are read-only")
        if self.width > 1:
            self.shape[0] = self.n
            self.shape[1] = self.width
            self.strides[0] = self.width
            self.strides[1] = 1
            view.ndim = 2
        else:
            self.shape[0] = self.n
            self.strides[0] = self.itemsize
            view.ndim = 1
        view.buf = self.ptr
        view.len = self.n * self.itemsize * self.width
        view.readonly = 1
        view.itemsize = self.itemsize
        view.format = self.fmt if (flags & PyBUF_FORMAT) else NULL
        view.shape = self.shape if (flags & PyBUF_ND) == PyBUF_ND else NULL
        view.strides = self.strides if (flags & PyBUF_STRIDES) == PyBUF_STRIDES else NULL
        view.suboffsets = NULL
        view.internal = NULL
        view.obj = self


cdef dict _COLUMNS = {
    # name: (itemsize, format, width, group)
    "link_type": (2, "H", 1, G_L2), "ethertype": (2, "H", 1, G_L2), "vlan_outer": (4, "i", 1, G_L2),
    "vlan_inner": (4, "i", 1, G_L2), "mpls_label": (4, "i", 1, G_L2), "ip_version": (1, "B", 1, G_FLOW),
    "ip_src": (4, "I", 1, G_FLOW), "ip_dst": (4, "I", 1, G_FLOW), "ip6_src": (1, "B", 16, G_IP6),
    "ip6_dst": (1, "B", 16, G_IP6), "ttl": (2, "h", 1, G_IP), "ip_len": (4, "i", 1, G_IP),
    "proto": (2, "h", 1, G_FLOW), "frag_flags": (1, "B", 1, G_IP), "frag_offset": (4, "i", 1, G_IP),
    "sport": (4, "i", 1, G_FLOW), "dport": (4, "i", 1, G_FLOW), "tcp_flags": (2, "h", 1, G_L4),
    "icmp_type": (2, "h", 1, G_L4), "icmp_code": (2, "h", 1, G_L4), "l3_offset": (4, "i", 1, G_OFFSETS),
    "l4_offset": (4, "i", 1, G_OFFSETS), "payload_offset": (4, "i", 1, G_OFFSETS),
    "payload_len": (4, "i", 1, G_OFFSETS), "parse_flags": (1, "B", 1, G_FLAGS),
    "flow_hash": (4, "I", 1, G_HASH),
}

COLUMNS = tuple(_COLUMNS)
cdef dict _COLUMN_INDEX = {name: k for k, name in enumerate(COLUMNS)}
assert sizeof(Cols) == len(COLUMNS) * sizeof(void *)      # Headers._ptr indexes Cols

# _COLUMNS as C arrays, by column index (Headers._column)
cdef Py_ssize_t _SPEC_ITEMSIZE[26]
cdef Py_ssize_t _SPEC_WIDTH[26]
cdef unsigned _SPEC_GROUP[26]
cdef char *_SPEC_FMT[26]
assert len(COLUMNS) == 26
for _k, _spec in enumerate(_COLUMNS.values()):
    _SPEC_ITEMSIZE[_k] = _spec[0]
    _SPEC_FMT[_k] = _fmt(_spec[1])
    _SPEC_WIDTH[_k] = _spec[2]
    _SPEC_GROUP[_k] = _spec[3]

_GROUP_NAMES = {G_L2: "l2", G_FLOW: "flow", G_IP: "ip", G_IP6: "ip6", G_L4: "l4",
                G_OFFSETS: "offsets", G_FLAGS: "flags", G_HASH: "hash"}

COLUMN_GROUPS = {_GROUP_NAMES[g]: tuple(name for name, spec in _COLUMNS.items() if spec[3] == g)
                 for g in _GROUP_NAMES}
"""The groups a header pass computes together: name -> its columns."""

# bytes per packet of all columns (the 16-byte IPv6 rows twice)
cdef size_t _ROW_BYTES = sum(spec[0] * spec[2] for spec in _COLUMNS.values())


cdef unsigned _groups_of(names) except? 0:
    cdef unsigned want = 0
    for name in names:
        spec = _COLUMNS.get(name)
        if spec is None:
            raise AttributeError(f"no header column {name!r}; the columns are {', '.join(COLUMNS)}")
        want |= <unsigned>spec[3]
    return want


@cython.final
cdef class Headers:
    """Per-packet header columns of one batch, computed in C when first asked for.

    Every attribute named in COLUMNS is a read-only memoryview (numpy:
    ``np.asarray(h.sport)``, no copy).  Columns are computed lazily, by group
    (COLUMN_GROUPS): the first access to a column walks every packet once and
    writes the columns of that column's group only, so asking for `dport`
    writes the 5-tuple columns (ip_version, ip_src, ip_dst, proto, sport,
    dport) and never the IPv6 rows, the VLAN ids or the flow hash.
    `compute(*names)` computes the groups of several columns in one walk
    (no names: all of them); `columns()` and `to_arrow()` do that for all.

    The columns own their memory: once computed they stay valid after the
    batch is gone.  A ring batch must still be valid when a group is first
    computed (else StaleBatchError), so compute what you need, e.g.
    ``h.compute("ip_src", "dport", "vlan_outer")``, before moving to the next
    batch.

    Fill values where a field is absent: -1 for the signed columns
    (vlan_outer, vlan_inner, mpls_label, ttl, ip_len, proto, sport, dport,
    tcp_flags, icmp_type, icmp_code, l3_offset, l4_offset, payload_offset,
    payload_len), 0 for ethertype, ip_version, ip_src, ip_dst (IPv4 only,
    host byte order), ip6_src / ip6_dst (IPv6 only, n x 16 bytes),
    frag_flags, frag_offset (bytes) and flow_hash (0: not IP).
    """
    cdef readonly Py_ssize_t n
    cdef object __weakref__      # batches cache their Headers weakly (it holds them: no cycle)
    cdef object _inputs          # callable -> (buffer, offsets, caplen, linktype, vlan) until all computed
    cdef unsigned done           # the groups computed so far
    cdef Cols c
    cdef void *mem
    cdef size_t mem_size

    def __cinit__(self, inputs, Py_ssize_t n):
        self._inputs = inputs
        self.n = n

    cdef int _allocate(self, unsigned want) except -1:
        """One allocation for every column, each 64-byte aligned; not cleared (a
        group's pass writes every row of its columns, fill values included).
        want: the groups about to be computed; all of them: fault the pages in
        at once (_take_memory)."""
        cdef Py_ssize_t m = self.n if self.n > 0 else 1
        cdef size_t size = m * _ROW_BYTES + 64 * 32
        cdef uint8_t *b = <uint8_t *>_take_memory(&size, want == G_ALL)
        if b == NULL:
            raise MemoryError(f"header columns for {self.n} packets")
        self.mem = b
        self.mem_size = size            # what _take_memory gave, maybe more than asked for
        self.c.link_type = <uint16_t *>_carve(&b, m * 2)
        self.c.ethertype = <uint16_t *>_carve(&b, m * 2)
        self.c.vlan_outer = <int32_t *>_carve(&b, m * 4)
        self.c.vlan_inner = <int32_t *>_carve(&b, m * 4)
        self.c.mpls_label = <int32_t *>_carve(&b, m * 4)
        self.c.ip_version = <uint8_t *>_carve(&b, m)
        self.c.ip_src = <uint32_t *>_carve(&b, m * 4)
        self.c.ip_dst = <uint32_t *>_carve(&b, m * 4)
        self.c.ip6_src = <uint8_t *>_carve(&b, m * 16)
        self.c.ip6_dst = <uint8_t *>_carve(&b, m * 16)
        self.c.ttl = <int16_t *>_carve(&b, m * 2)
        self.c.ip_len = <int32_t *>_carve(&b, m * 4)
        self.c.proto = <int16_t *>_carve(&b, m * 2)
        self.c.frag_flags = <uint8_t *>_carve(&b, m)
        self.c.frag_offset = <int32_t *>_carve(&b, m * 4)
        self.c.sport = <int32_t *>_carve(&b, m * 4)
        self.c.dport = <int32_t *>_carve(&b, m * 4)
        self.c.tcp_flags = <int16_t *>_carve(&b, m * 2)
        self.c.icmp_type = <int16_t *>_carve(&b, m * 2)
        self.c.icmp_code = <int16_t *>_carve(&b, m * 2)
        self.c.l3_offset = <int32_t *>_carve(&b, m * 4)
        self.c.l4_offset = <int32_t *>_carve(&b, m * 4)
        self.c.payload_offset = <int32_t *>_carve(&b, m * 4)
        self.c.payload_len = <int32_t *>_carve(&b, m * 4)
        self.c.parse_flags = <uint8_t *>_carve(&b, m)
        self.c.flow_hash = <uint32_t *>_carve(&b, m * 4)
        return 0

    def __dealloc__(self):
        _give_memory(self.mem, self.mem_size)

    def __len__(self):
        return self.n

    cdef int _ensure(self, unsigned want) except -1:
        """Compute the groups of `want` not computed yet, in one walk."""
        cdef unsigned missing = want & ~self.done & G_ALL
        if not missing:
            return 0
        if self.mem == NULL:
            self._allocate(missing)
        buffer, offsets, caplen, linktype, vlan = self._inputs()
        if callable(vlan):
            vlan = vlan() if missing & G_L2 else None     # only the VLAN ids need it
        _parse_all(self, missing, buffer, offsets, caplen, linktype, vlan)
        self.done |= missing
        if self.done == G_ALL:
            self._inputs = None        # drop the batch: the columns are ours now
        return 0

    def compute(self, *names):
        """Compute the columns `names` (all columns if none) in one walk; returns self."""
        self._ensure(_groups_of(names) if names else G_ALL)
        return self

    @property
    def computed(self):
        """The names of the columns computed so far."""
        return tuple(name for name, spec in _COLUMNS.items() if self.done & <unsigned>spec[3])

    cdef inline char *_ptr(self, Py_ssize_t k) noexcept:
        """Column k of COLUMNS (Cols holds one pointer per column, in that order)."""
        return (<char **>&self.c)[k]

    def column(self, str name):
        """The column `name` (one of COLUMNS) as a read-only memoryview (its group computed first)."""
        k = _COLUMN_INDEX.get(name)
        if k is None:
            raise AttributeError(f"no header column {name!r}; the columns are {', '.join(COLUMNS)}")
        return self._column(k)

    cdef object _column(self, Py_ssize_t k):
        self._ensure(_SPEC_GROUP[k])
        cdef _Column col = _Column.__new__(_Column)
        col.ptr = self._ptr(k)
        col.owner = self
        col.n = self.n
        col.itemsize = _SPEC_ITEMSIZE[k]
        col.fmt = _SPEC_FMT[k]
        col.width = _SPEC_WIDTH[k]
        return memoryview(col)

    def __getattr__(self, str name):
        if name in _COLUMNS:
            return self.column(name)
        raise AttributeError(f"'Headers' object has no attribute {name!r}")

    def __dir__(self):
        return list(COLUMNS) + ["column", "columns", "compute", "computed", "n"]

    def columns(self):
        """Every column, as a dict name -> memoryview (all computed in one walk)."""
        self._ensure(G_ALL)
        cdef Py_ssize_t k
        return {name: self._column(k) for k, name in enumerate(COLUMNS)}

    def __repr__(self):
        state = ("all computed" if self.done == G_ALL else
                 f"computed: {', '.join(g for b, g in _GROUP_NAMES.items() if self.done & b)}"
                 if self.done else "nothing computed yet")
        return f"<zcap.Headers {self.n} packets, {state}>"


# Column memory of the last Headers freed, reused by the next one: a batch's
# columns are megabytes, and memory that fresh from the kernel costs a page
# fault per 4 KiB (~250 per 1 MiB ring block) every time.  Fresh memory of
# COLUMN_MAP_MIN bytes or more is mapped, and when every column is about to
# be written, with MAP_POPULATE, which faults all its pages in one system
# call: on this project's VMs a page fault costs ~3 µs, and the first batch's
# were ~3 ns per packet of a 300,000-packet drain (bench/drain/cpu_drain.py
# zcap-headers-pass; ~1.5 with MAP_POPULATE).  A pass over some groups only
# faults in the pages of their columns, as they are written.
cdef enum:
    SPARE_SLOTS = 2
    COLUMN_MAP_MIN = 256 * 1024

cdef void *_spare[2]
cdef size_t _spare_size[2]

cdef void *_new_memory(size_t size, bint populate) noexcept:
    cdef void *p
    cdef int flags = MAP_PRIVATE | MAP_ANONYMOUS
    if size < COLUMN_MAP_MIN:
        return malloc(size)
    if populate:
        flags |= MAP_POPULATE
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, flags, -1, 0)
    return NULL if p == MAP_FAILED else p

cdef void _free_memory(void *p, size_t size) noexcept:
    """Give back memory from _new_memory(size)."""
    if size < COLUMN_MAP_MIN:
        free(p)
    else:
        munmap(p, size)

cdef void *_take_memory(size_t *size, bint populate) noexcept:
    """At least *size bytes for columns (a spare if one fits; else fresh, its
    pages faulted in now if `populate`); *size becomes the size of what it
    returns, which _give_memory needs back."""
    cdef int j
    cdef void *p
    for j in range(SPARE_SLOTS):
        if _spare[j] != NULL and _spare_size[j] >= size[0] and _spare_size[j] <= 4 * size[0] + 65536:
            p = _spare[j]
            size[0] = _spare_size[j]
            _spare[j] = NULL
            return p
    return _new_memory(size[0], populate)

cdef void _give_memory(void *p, size_t size) noexcept:
    cdef int j
    if p == NULL:
        return
    for j in range(SPARE_SLOTS):
        if _spare[j] == NULL:
            _spare[j] = p
            _spare_size[j] = size
            return
    # replace the smaller spare if this one is bigger
    j = 0 if _spare_size[0] < _spare_size[1] else 1
    if _spare_size[j] < size:
        _free_memory(_spare[j], _spare_size[j])
        _spare[j] = p
        _spare_size[j] = size
    else:
        _free_memory(p, size)


cdef inline void *_carve(uint8_t **b, size_t size) noexcept:
    cdef uintptr_t a = (<uintptr_t>b[0] + 63) & ~(<uintptr_t>63)
    b[0] = <uint8_t *>(a + size)
    return <void *>a


cdef char *_fmt(str f) noexcept:
    if f == "B": return _FMT_U8
    if f == "H": return _FMT_U16
    if f == "h": return _FMT_I16
    if f == "I": return _FMT_U32
    if f == "i": return _FMT_I32
    return _FMT_I8


cdef inline Py_ssize_t _walk(const uint8_t *base, uint64_t size, const uint32_t *op, const uint32_t *cp,
                             Py_ssize_t n, const uint16_t *ltp, int lt, const int32_t *vlp, unsigned want,
                             Cols *c, bint fast) noexcept nogil:
    """The per-packet loop; returns -1, or the index of a packet that lies outside the buffer.
    fast: take the common packets through the fast path (_headers_fast.pxi)."""
    cdef Py_ssize_t i
    cdef int lt_i
    cdef int32_t vlan_meta
    cdef Row r
    if fast:
        _prefill(c, n, want, lt, ltp == NULL)
    for i in range(n):
        # the packet must lie inside the buffer: checked before any of its bytes is read
        if <uint64_t>op[i] + cp[i] > size:
            return i
        lt_i = ltp[i] if ltp != NULL else lt
        vlan_meta = vlp[i] if vlp != NULL else -1
        if fast and _fast_link(base + op[i], cp[i], lt_i, ltp == NULL, vlan_meta, i, want, c):
            continue                        # the common shapes
        _row_init(&r, vlan_meta)
        _parse_packet(base + op[i], cp[i], lt_i, &r)
        _store(&r, i, lt_i, want, c)
    return -1


cdef int _parse_all(Headers h, unsigned want, buffer, offsets, caplen, linktype, vlan) except -1:
    """Walk every packet once and write the columns of the groups in `want`."""
    cdef const uint8_t[::1] buf = memoryview(buffer).cast("B") if len(buffer) else b"\0"
    cdef const uint32_t[::1] offs = offsets if len(offsets) else _EMPTY_U32
    cdef const uint32_t[::1] lens = caplen if len(caplen) else _EMPTY_U32
    cdef const uint16_t[::1] lts
    cdef const int32_t[::1] vl
    cdef Py_ssize_t n = h.n, bad = -1
    cdef uint64_t size = len(buffer)
    cdef int lt = 0
    cdef bint per_packet_lt = not isinstance(linktype, int)
    cdef bint has_vlan = vlan is not None
    cdef const uint8_t *base = &buf[0]
    cdef Cols c = h.c          # a local copy: stores through its pointers cannot change it
    if offs.shape[0] < n or lens.shape[0] < n:
        raise ValueError("offsets and caplen must have one entry per packet")
    if per_packet_lt:
        lts = linktype
        if lts.shape[0] < n:
            raise ValueError("linktype must have one entry per packet")
    else:
        lt = linktype
    if has_vlan:
        vl = vlan
        if vl.shape[0] < n:
            raise ValueError("vlan must have one entry per packet")
    cdef const uint16_t *ltp = &lts[0] if per_packet_lt and n else NULL
    cdef const int32_t *vlp = &vl[0] if has_vlan and n else NULL
    cdef const uint32_t *op = &offs[0]
    cdef const uint32_t *cp = &lens[0]
    with nogil:
        # constant arguments for the common cases: the compiler drops the code they make dead
        if not _fast_path:
            bad = _walk(base, size, op, cp, n, ltp, lt, vlp, want, &c, False)
        elif ltp == NULL and vlp == NULL:       # one link type, no VLAN ids from the ring
            if want == G_ALL and lt == 1:       # Ethernet
                bad = _walk(base, size, op, cp, n, NULL, 1, NULL, G_ALL, &c, True)
            elif want == G_ALL:
                bad = _walk(base, size, op, cp, n, NULL, lt, NULL, G_ALL, &c, True)
            elif want == G_FLOW and lt == 1:
                bad = _walk(base, size, op, cp, n, NULL, 1, NULL, G_FLOW, &c, True)
            elif want == G_FLOW:
                bad = _walk(base, size, op, cp, n, NULL, lt, NULL, G_FLOW, &c, True)
            elif want == G_ALL & ~G_HASH:
                bad = _walk(base, size, op, cp, n, NULL, lt, NULL, G_ALL & ~G_HASH, &c, True)
            else:
                bad = _walk(base, size, op, cp, n, NULL, lt, NULL, want, &c, True)
        else:
            bad = _walk(base, size, op, cp, n, ltp, lt, vlp, want, &c, True)
    if bad >= 0:
        raise ValueError(f"packet {bad} ends at byte {<uint64_t>op[bad] + cp[bad]}, "
                         f"past the {size}-byte buffer")
    return 0

cdef object _EMPTY_U32 = memoryview(b"\0\0\0\0").cast("I")

cdef bint _fast_path = True


def _use_fast_path(bint on):
    """For the tests: with False, every packet goes through the general parser, the
    reference the fast path (_headers_fast.pxi) must agree with."""
    global _fast_path
    _fast_path = on


def parse(buffer, offsets, caplen, linktype=1, vlan=None):
    """Header columns of packets laid out in `buffer` (eagerly parsed).

    `offsets`, `caplen`: uint32 buffers, one entry per packet; `linktype`: an
    int or a uint16 buffer with one link type per packet; `vlan`: None or an
    int32 buffer with, per packet, the VLAN id the kernel stripped and did not
    put back (-1: none).
    """
    n = len(memoryview(offsets))
    cdef Headers h = Headers(lambda: (buffer, offsets, caplen, linktype, vlan), n)
    h._ensure(G_ALL)
    return h


def headers_of(inputs, Py_ssize_t n):
    """Lazy Headers: `inputs()` is called each time a column group is first
    computed and must return (buffer, offsets, caplen, linktype, vlan) as for
    parse(); `vlan` may also be a callable returning that buffer or None,
    called only when the VLAN columns are computed."""
    return Headers(inputs, n)


# -- address sets -----------------------------------------------------------

cdef struct V6Slot:
    uint8_t used
    uint8_t addr[16]

cdef inline uint64_t _h32(uint32_t a) noexcept nogil:
    return _mix(<uint64_t>a + 0x9e3779b97f4a7c15ULL)


@cython.final
cdef class AddressSet:
    """A set of IPv4 and IPv6 addresses, looked up in C (open addressing).

    Built from an iterable of addresses as strings ("10.0.0.1", "2001:db8::1"),
    ipaddress objects, packed bytes (4 or 16) or ints (IPv4, host order).
    Sizes from a few to tens of millions: ~8 bytes per IPv4 and ~34 per IPv6
    address.  Networks are not expanded: pass the addresses.
    """
    cdef uint32_t *v4
    cdef uint64_t v4_mask
    cdef Py_ssize_t v4_count
    cdef bint v4_zero           # 0.0.0.0 (the empty-slot marker) is a member
    cdef V6Slot *v6
    cdef uint64_t v6_mask
    cdef Py_ssize_t v6_count

    def __cinit__(self, iterable=()):
        self.v4_mask = 15
        self.v4 = <uint32_t *>calloc(16, 4)
        self.v6_mask = 15
        self.v6 = <V6Slot *>calloc(16, sizeof(V6Slot))
        if self.v4 == NULL or self.v6 == NULL:
            raise MemoryError("address set")
        try:
            hint = len(iterable)
        except TypeError:
            hint = 0
        if hint > 8:
            self._grow4(hint)
        for a in iterable:
            self.add(a)

    def __dealloc__(self):
        free(self.v4)
        free(self.v6)

    cdef int _grow4(self, Py_ssize_t want) except -1:
        cdef uint64_t cap = self.v4_mask + 1
        cdef uint64_t newcap = cap, j, k
        cdef uint32_t *old = self.v4
        cdef uint32_t *t
        while newcap < <uint64_t>want * 2:
            newcap *= 2
        if newcap == cap:
            return 0
        t = <uint32_t *>calloc(newcap, 4)
        if t == NULL:
            raise MemoryError(f"address set of {want} IPv4 addresses")
        for j in range(cap):
            if old[j]:
                k = _h32(old[j]) & (newcap - 1)
                while t[k]:
                    k = (k + 1) & (newcap - 1)
                t[k] = old[j]
        self.v4 = t
        self.v4_mask = newcap - 1
        free(old)
        return 0

    cdef int _grow6(self) except -1:
        cdef uint64_t cap = self.v6_mask + 1, newcap = cap * 2, j, k
        cdef V6Slot *old = self.v6
        cdef V6Slot *t = <V6Slot *>calloc(newcap, sizeof(V6Slot))
        if t == NULL:
            raise MemoryError("address set")
        for j in range(cap):
            if old[j].used:
                k = _fold16(old[j].addr) & (newcap - 1)
                while t[k].used:
                    k = (k + 1) & (newcap - 1)
                t[k] = old[j]
        self.v6 = t
        self.v6_mask = newcap - 1
        free(old)
        return 0

    cdef int _add4(self, uint32_t a) except -1:
        cdef uint64_t k
        if a == 0:
            if not self.v4_zero:
                self.v4_zero = True
                self.v4_count += 1
            return 0
        if (self.v4_count + 1) * 2 > <Py_ssize_t>(self.v4_mask + 1):
            self._grow4(self.v4_count + 1)
        k = _h32(a) & self.v4_mask
        while self.v4[k]:
            if self.v4[k] == a:
                return 0
            k = (k + 1) & self.v4_mask
        self.v4[k] = a
        self.v4_count += 1
        return 0

    cdef int _add6(self, const uint8_t *a) except -1:
        cdef uint64_t k
        if (self.v6_count + 1) * 2 > <Py_ssize_t>(self.v6_mask + 1):
            self._grow6()
        k = _fold16(a) & self.v6_mask
        while self.v6[k].used:
            if memcmp(self.v6[k].addr, a, 16) == 0:
                return 0
            k = (k + 1) & self.v6_mask
        self.v6[k].used = 1
        memcpy(self.v6[k].addr, a, 16)
        self.v6_count += 1
        return 0

    def add(self, address):
        """Add one address (str, ipaddress object, 4/16 packed bytes, or int IPv4)."""
        cdef bytes b
        if isinstance(address, str):
            try:
                b = _socket.inet_pton(_socket.AF_INET, address)
            except OSError:
                try:
                    b = _socket.inet_pton(_socket.AF_INET6, address)
                except OSError:
                    raise ValueError(f"not an IPv4 or IPv6 address: {address!r}") from None
        elif isinstance(address, (bytes, bytearray, memoryview)):
            b = bytes(address)
            if len(b) not in (4, 16):
                raise ValueError(f"a packed address has 4 or 16 bytes, not {len(b)}")
        elif isinstance(address, int):
            if not 0 <= address <= 0xffffffff:
                raise ValueError(f"an int address is an IPv4 address in host order, not {address}")
            self._add4(address)
            return
        elif isinstance(address, (_ipaddress.IPv4Address, _ipaddress.IPv6Address)):
            b = address.packed
        else:
            raise TypeError(f"cannot use {type(address).__name__} as an address")
        if len(b) == 4:
            self._add4(_be32(<const uint8_t *><char *>b))
        else:
            self._add6(<const uint8_t *><char *>b)

    def add_ipv4_array(self, values):
        """Add IPv4 addresses from a uint32 buffer (host order), e.g. a numpy array."""
        cdef const uint32_t[::1] v = memoryview(values).cast("B").cast("I")
        cdef Py_ssize_t i
        self._grow4(self.v4_count + v.shape[0])
        for i in range(v.shape[0]):
            self._add4(v[i])

    cdef inline bint has4(self, uint32_t a) noexcept nogil:
        cdef uint64_t k
        if a == 0:
            return self.v4_zero
        k = _h32(a) & self.v4_mask
        while self.v4[k]:
            if self.v4[k] == a:
                return True
            k = (k + 1) & self.v4_mask
        return False

    cdef inline bint has6(self, const uint8_t *a) noexcept nogil:
        cdef uint64_t k
        if self.v6_count == 0:
            return False
        k = _fold16(a) & self.v6_mask
        while self.v6[k].used:
            if memcmp(self.v6[k].addr, a, 16) == 0:
                return True
            k = (k + 1) & self.v6_mask
        return False

    def __contains__(self, address):
        probe = AddressSet((address,))
        if probe.v4_count:
            if probe.v4_zero:
                return self.v4_zero
            for j in range(probe.v4_mask + 1):
                if probe.v4[j]:
                    return self.has4(probe.v4[j])
        for j in range(probe.v6_mask + 1):
            if probe.v6[j].used:
                return self.has6(probe.v6[j].addr)
        return False

    def __len__(self):
        return self.v4_count + self.v6_count

    @property
    def memory_bytes(self):
        """Bytes the tables use."""
        return (self.v4_mask + 1) * 4 + (self.v6_mask + 1) * sizeof(V6Slot)

    def __repr__(self):
        return f"<zcap.AddressSet {self.v4_count} IPv4 + {self.v6_count} IPv6>"

    def __reduce__(self):
        raise TypeError("an AddressSet cannot be pickled; rebuild it from its addresses")


# -- flow tables ------------------------------------------------------------

cdef struct FlowKey:
    uint8_t version
    uint8_t proto
    uint16_t port_a
    uint16_t port_b
    uint16_t has_ports
    uint8_t addr_a[16]
    uint8_t addr_b[16]

cdef struct FlowEntry:         # 16 bytes: a set of 8 is two cache lines
    uint64_t hash               # 64-bit hash of the flow key; 0: an empty way
    uint32_t packets            # saturates at 2**32 - 1
    uint32_t last_use           # the table's clock when last seen (wraps; compared as an age)


cdef inline uint64_t _key_hash(const FlowKey *k) noexcept nogil:
    cdef uint64_t w[5]
    cdef uint64_t h = 0x243f6a8885a308d3ULL
    cdef int i
    memcpy(w, k, 40)
    for i in range(5):
        h = (h ^ w[i]) * 0x9e3779b97f4a7c15ULL
        h ^= h >> 29
    h = _mix(h)
    return h if h else 1

cdef enum:
    WAYS = 8


@cython.final
cdef class FlowTable:
    """Per-flow packet counts kept across batches, in bounded memory.

    A flow is the 5-tuple (IP version, protocol, addresses, ports) of an IPv4
    or IPv6 packet; with bidirectional=True (default) both directions are one
    flow.  Packets without ports (ICMP, non-first fragments, protocols zcap
    does not parse) are keyed by addresses and protocol only.  Non-IP packets
    belong to no flow.

    Flows are told apart by a 64-bit hash of that key (two live flows of one
    set would have to share all 64 bits to be confused).  Eviction: the table
    is 8-way set-associative with room for `max_flows` flows (rounded up to a
    multiple of 8).  A new flow whose set is full
    evicts the least recently seen flow of that set (`evictions` counts
    them); a later packet of an evicted flow starts it anew (it counts as a
    head again).  Memory: `memory_bytes`, 16 bytes per flow, allocated once.
    """
    cdef FlowEntry *e
    cdef uint64_t nsets
    cdef uint64_t clock
    cdef readonly Py_ssize_t max_flows
    cdef readonly bint bidirectional
    cdef readonly uint64_t evictions
    cdef readonly Py_ssize_t flows

    def __cinit__(self, Py_ssize_t max_flows, *, bint bidirectional=True):
        if max_flows < 1:
            raise ValueError(f"max_flows must be at least 1, not {max_flows}")
        self.nsets = (max_flows + WAYS - 1) // WAYS
        self.max_flows = self.nsets * WAYS
        self.bidirectional = bidirectional
        self.e = <FlowEntry *>calloc(self.nsets * WAYS, sizeof(FlowEntry))
        if self.e == NULL:
            raise MemoryError(f"flow table of {max_flows} flows")

    def __dealloc__(self):
        free(self.e)

    @property
    def memory_bytes(self):
        return self.nsets * WAYS * sizeof(FlowEntry)

    cdef uint64_t seen(self, const FlowKey *k) noexcept nogil:
        """Count one packet of flow `k`; returns how many came before it."""
        cdef uint64_t h = _key_hash(k)
        cdef FlowEntry *s = self.e + ((h >> 16) % self.nsets) * WAYS
        cdef int j, victim = 0
        cdef uint32_t n, age, oldest = 0
        cdef uint32_t now
        self.clock += 1
        now = <uint32_t>self.clock
        for j in range(WAYS):
            if s[j].hash == h:
                n = s[j].packets
                if n != 0xffffffffU:
                    s[j].packets = n + 1
                s[j].last_use = now
                return n
        for j in range(WAYS):
            if s[j].hash == 0:
                victim = j
                break
            age = now - s[j].last_use
            if age >= oldest:
                oldest = age
                victim = j
        if s[victim].hash:
            self.evictions += 1
        else:
            self.flows += 1
        s[victim].hash = h
        s[victim].packets = 1
        s[victim].last_use = now
        return 0

    def clear(self):
        memset(self.e, 0, self.nsets * WAYS * sizeof(FlowEntry))
        self.flows = 0

    def __len__(self):
        return self.flows

    def __repr__(self):
        return (f"<zcap.FlowTable {self.flows}/{self.max_flows} flows "
                f"{'bidirectional' if self.bidirectional else 'one direction each'} "
                f"evictions={self.evictions}>")


cdef inline bint _flow_key(const Cols *c, Py_ssize_t i, bint bidir, FlowKey *k) noexcept nogil:
    """The flow key of packet i; False for a packet that belongs to no flow."""
    cdef int v = c.ip_version[i]
    cdef uint16_t pa, pb
    cdef int cmp
    memset(k, 0, sizeof(FlowKey))
    if c.proto[i] < 0:                     # not IP, or cut before the protocol is known
        return False
    if v == 4:
        memcpy(k.addr_a, &c.ip_src[i], 4)
        memcpy(k.addr_b, &c.ip_dst[i], 4)
    elif v == 6:
        memcpy(k.addr_a, c.ip6_src + 16 * i, 16)
        memcpy(k.addr_b, c.ip6_dst + 16 * i, 16)
    else:
        return False
    k.version = v
    k.proto = <uint8_t>c.proto[i]
    if c.sport[i] >= 0 and c.dport[i] >= 0:
        k.has_ports = 1
        k.port_a = <uint16_t>c.sport[i]
        k.port_b = <uint16_t>c.dport[i]
    if bidir:
        cmp = memcmp(k.addr_a, k.addr_b, 16)
        if cmp > 0 or (cmp == 0 and k.port_a > k.port_b):
            _swap16(k.addr_a, k.addr_b)
            pa = k.port_a
            k.port_a = k.port_b
            k.port_b = pa
    return True

cdef inline void _swap16(uint8_t *a, uint8_t *b) noexcept nogil:
    cdef uint8_t t[16]
    memcpy(t, a, 16)
    memcpy(a, b, 16)
    memcpy(b, t, 16)


# -- selection --------------------------------------------------------------

@cython.final
cdef class _IndexArray:
    """uint32 indices of admitted packets (a read-only buffer)."""
    cdef uint32_t *idx
    cdef Py_ssize_t n
    cdef Py_ssize_t shape[1]
    cdef Py_ssize_t strides[1]

    def __dealloc__(self):
        free(self.idx)

    def __getbuffer__(self, Py_buffer *view, int flags):
        if flags & PyBUF_WRITABLE:
            raise BufferError("selection indices are read-only")
        self.shape[0] = self.n
        self.strides[0] = 4
        view.buf = <void *>self.idx
        view.len = self.n * 4
        view.readonly = 1
        view.itemsize = 4
        view.format = _FMT_U32 if (flags & PyBUF_FORMAT) else NULL
        view.ndim = 1
        view.shape = self.shape if (flags & PyBUF_ND) == PyBUF_ND else NULL
        view.strides = self.strides if (flags & PyBUF_STRIDES) == PyBUF_STRIDES else NULL
        view.suboffsets = NULL
        view.internal = NULL
        view.obj = self


def select(Headers h, addresses=None, flow_heads=None, flows=None):
    """Indices (uint32 memoryview) of the packets that pass every condition given.

    addresses: an AddressSet (or any iterable of addresses, turned into one):
    the packet's IPv4 or IPv6 source or destination is in it.
    flow_heads: N: the packet is among the first N packets of its flow
    (FlowTable semantics).  flows: a FlowTable keeping flow state across
    batches; without one, a table for this call only (its flows start here).
    With flows= and no flow_heads, every admitted packet is counted in it.
    Conditions combine with AND, in that order: only packets that pass the
    address test are counted in the flow table.
    """
    cdef AddressSet aset = None
    cdef FlowTable ft = None
    cdef Py_ssize_t i, n = h.n, k = 0
    cdef uint64_t cutoff = 0
    cdef bint use_heads = flow_heads is not None
    cdef FlowKey key
    cdef _IndexArray out
    cdef Cols *c
    cdef bint ok
    if addresses is not None:
        aset = addresses if isinstance(addresses, AddressSet) else AddressSet(addresses)
    if use_heads:
        if flow_heads < 0:
            raise ValueError(f"flow_heads must be >= 0, not {flow_heads}")
        cutoff = flow_heads
    if flows is not None:
        if not isinstance(flows, FlowTable):
            raise TypeError(f"flows must be a zcap.FlowTable, not {type(flows).__name__}")
        ft = flows
    elif use_heads:
        ft = FlowTable(max(64, n))
    h._ensure(G_FLOW | G_IP | G_IP6)        # ip_version, addresses, proto, ports; ip_len
    c = &h.c
    out = _IndexArray.__new__(_IndexArray)
    out.idx = <uint32_t *>malloc((n if n else 1) * 4)
    if out.idx == NULL:
        raise MemoryError("selection")
    with nogil:
        for i in range(n):
            if aset is not None:
                if c.ip_len[i] < 0:
                    ok = False          # not IP, or cut before the addresses
                elif c.ip_version[i] == 4:
                    ok = aset.has4(c.ip_src[i]) or aset.has4(c.ip_dst[i])
                elif c.ip_version[i] == 6:
                    ok = aset.has6(c.ip6_src + 16 * i) or aset.has6(c.ip6_dst + 16 * i)
                else:
                    ok = False
                if not ok:
                    continue
            if ft is not None:
                if not _flow_key(c, i, ft.bidirectional, &key):
                    if use_heads:
                        continue
                elif ft.seen(&key) >= cutoff and use_heads:
                    continue
            out.idx[k] = <uint32_t>i
            k += 1
    out.n = k
    return memoryview(out)


# -- Arrow binary_view columns ---------------------------------------------

def binary_views(buffer, offsets, caplen):
    """The 16-byte views of an Arrow binary_view column over `buffer` (buffer index 0).

    Strings of up to 12 bytes are inlined, as the format requires; longer
    ones point into the buffer (prefix, buffer 0, offset).
    """
    cdef const uint32_t[::1] offs = offsets if len(offsets) else _EMPTY_U32
    cdef const uint32_t[::1] lens = caplen if len(caplen) else _EMPTY_U32
    cdef const uint8_t[::1] buf = memoryview(buffer).cast("B") if len(buffer) else b"\0"
    cdef Py_ssize_t i, n = len(offsets), size = len(buffer)
    cdef bytearray out = bytearray(16 * n)
    cdef uint8_t *o = <uint8_t *>(<char *>out) if n else NULL
    cdef const uint8_t *base = &buf[0]
    cdef uint32_t off, ln, zero = 0
    if size > 0x7fffffff:
        raise ValueError("an Arrow binary view cannot point past 2 GiB into a buffer")
    for i in range(n):
        if <uint64_t>offs[i] + lens[i] > <uint64_t>size:
            raise ValueError(f"packet {i} lies past the end of the buffer")
    with nogil:
        for i in range(n):
            off = offs[i]
            ln = lens[i]
            memset(o + 16 * i, 0, 16)
            memcpy(o + 16 * i, &ln, 4)
            if ln <= 12:
                memcpy(o + 16 * i + 4, base + off, ln)
            else:
                memcpy(o + 16 * i + 4, base + off, 4)
                memcpy(o + 16 * i + 8, &zero, 4)
                memcpy(o + 16 * i + 12, &off, 4)
    return out
