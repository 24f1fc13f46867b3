# Declarations shared with Cython code that consumes a capture at C speed.
#
# A Cython module can `cimport zcap._ring` and call Ring.consume() with a C
# callback: the callback sees every packet as a pointer and lengths, with no
# Python object per packet.  The Ring's fields, the per-mode table of unit
# operations it calls through (UnitOps, filled in _units.pxi) and the types
# its include files share are declared here too.
from cpython.object cimport PyObject
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t

from zcap.includes.linux cimport sock_filter

# Return 0 to go on, anything else to stop after this packet.
ctypedef int (*zcap_packet_cb)(void *ctx, const unsigned char *data,
                               uint32_t caplen, uint32_t wirelen,
                               int64_t ts_ns) noexcept nogil

cdef struct PacketMeta:
    int64_t ts_ns
    int32_t ifindex
    uint32_t rxhash
    uint16_t vlan_tci
    uint16_t vlan_tpid
    uint16_t protocol       # ethertype in host order (from sockaddr_ll)
    uint8_t pkttype         # PACKET_HOST .. PACKET_OUTGOING
    uint8_t flags           # META_* bits below

cdef enum:
    META_VLAN = 1           # vlan_tci/vlan_tpid are valid
    META_TRUNCATED = 2      # caplen < wirelen
    META_VLAN_INSERTED = 4  # the tag was put back into the bytes
    META_CSUM_NOTREADY = 8  # outgoing packet with checksum offloaded
    META_TS_SOFTWARE = 16   # stamped by the kernel (TP_STATUS_TS_SOFTWARE): "host"
    META_TS_RAW_HW = 32     # stamped by the NIC's clock (TP_STATUS_TS_RAW_HARDWARE)
    META_TS_SYS_HW = 64     # NIC stamp converted to system time (TP_STATUS_TS_SYS_HARDWARE)
    META_VLAN_STRIPPED = 128  # reinsertion is on, but this tag had no place: not in the bytes

cdef struct ParseOpts:
    uint32_t snaplen
    int cooked              # 0, COOKED_SLL (1) or COOKED_SLL2 (2)
    int reinsert_vlan
    int vlan_offset         # where a VLAN tag goes back (-1: nowhere)
    int lo_ifindex          # outgoing copies on this ifindex are duplicates
    int direction           # 0 in+out, 1 in, 2 out
    int rewalk              # the block may be walked again (a lazy batch's copy):
                            # record reinserted tags in the headers (_walk.pxi)
    # Filtering in user space (see Ring.set_filter): the capture's filter,
    # run on the kernel's view of a packet (cooked header synthesized, VLAN
    # tag not yet reinserted).  `ufilter` is set for units an earlier filter
    # may have filled, and always when the kernel cannot run the filter.
    const sock_filter *uprog
    Py_ssize_t uprog_n
    int ufilter

cdef struct WalkCounts:
    uint64_t skipped        # direction / loopback duplicates
    uint64_t filtered       # rejected by a filter in user space

cdef struct RawPacket:
    unsigned char *hdr      # its TPACKET_V3 header (metadata is read from it lazily)
    unsigned char *data
    uint32_t caplen
    uint32_t wirelen
    uint8_t flags           # META_VLAN_INSERTED / META_TRUNCATED

cdef class Ring

# A ring's per-mode unit operations, chosen once when it is set up (as
# libpcap's pcap-linux.c sets handle->read_op): one table per mode in
# _units.pxi, reached through Ring.ops.
cdef struct UnitOps:
    const char *unit_name           # "block" (V3), "frame" (V2), "batch" (copy)
    bint mapped                     # units are ring slots the kernel fills (V3, V2)
    bint unit_headers               # a packet's TPACKET header stays in its unit (V3)
    int (*acquire)(Ring r) except -1                    # take the next ready unit: 1, or 0
    void (*hand_back)(Ring r, Py_ssize_t slot) noexcept # give a slot back to the kernel
    uint32_t (*slot_status)(const unsigned char *base) noexcept nogil   # NULL in copy mode
    uint32_t (*unretired)(Ring r, const unsigned char *base) noexcept   # packets not handed over yet
    int (*mark_refilter)(Ring r) except -1              # after set_filter(): filter again
    int (*kernel_stats)(Ring r) except -1               # fold PACKET_STATISTICS in

cdef class _Storage:
    """Memory that outlives a ring unit because the application still uses it."""
    cdef unsigned char *addr
    cdef size_t size
    cdef int kind
    cdef Ring ring
    cdef Py_ssize_t slot
    cdef bint counted           # in the ring's retained_bytes / the live snapshot count

cdef class _Columns:
    """A unit's packet table."""
    cdef Py_ssize_t capacity
    cdef uint32_t *offsets
    cdef uint32_t *caplen
    cdef uint32_t *wirelen
    cdef int64_t *ts_ns
    cdef uint32_t *hoff         # V3: offset of each packet's header
    cdef uint8_t *flags
    cdef PacketMeta *meta       # V2 and copy mode: metadata (no header to read)

cdef class Packet:
    cdef const unsigned char *data
    cdef uint32_t _caplen
    cdef uint32_t _wirelen
    cdef unsigned char *hdr     # V3 header while readable, else NULL and `meta` holds it
    cdef uint8_t flags
    cdef uint16_t linktype      # LINKTYPE_* of the bytes (for decode())
    cdef PacketMeta meta
    cdef object owner           # None while the bytes live in the ring unit
    cdef Py_ssize_t exports
    cdef uint8_t backing        # BACKING_* (_retain.pxi): what a buffer export may pin

cdef class Batch:
    cdef Ring ring
    cdef _Columns cols
    cdef Py_ssize_t start
    cdef Py_ssize_t stop
    cdef const unsigned char *base
    cdef size_t size
    cdef uint64_t _generation
    cdef readonly bint valid
    cdef object owner
    cdef Py_ssize_t exports
    cdef object _hdrs           # weakref to the zcap._headers.Headers of batch.headers()
    cdef _Storage export_copy   # the unit copied for buffer exports (snapshot budget spent)
    cdef bint lazy              # V3: walked on demand; the table is built only if asked for
    cdef size_t walk_off        # lazy: the cursor at the batch's first packet
    cdef uint32_t walk_left
    cdef ParseOpts opts         # lazy: the walk options when the batch was taken

    cdef int _check(self) except -1
    cdef _Columns _columns(self)
    cdef int _corrupt(self, int code, size_t bad_off, uint32_t left) except -1

cdef class Ring:
    # socket and wake-up
    cdef int fd
    cdef int wake_fd
    cdef int mode                   # MODE_* (for reading only: behaviour goes through ops)
    cdef const UnitOps *ops         # the mode's unit operations (_units.pxi)
    cdef readonly bint closed
    cdef bint fds_closed
    cdef bint close_requested
    cdef int waiters
    cdef bint async_armed           # a task sleeps on this ring (zcap.aio.Waiter)
    cdef object async_notify        # wakes that task from any thread (close, breakloop)
    cdef object async_unwatch       # a loop watches the socket between waits: stop it (close)
    cdef readonly bint busy
    cdef readonly bint break_requested
    cdef object ifname

    # geometry and mappings
    cdef size_t page_size
    cdef readonly size_t slot_size  # a V3 block or a V2 frame, in bytes (0 in copy mode)
    cdef Py_ssize_t nslots
    cdef size_t map_size
    cdef unsigned char **slot_base  # where each slot's ring pages are mapped now
    cdef uint8_t *slot_held         # SLOT_HELD / SLOT_DEFERRED (_retain.pxi), else 0
    cdef unsigned char *spare       # a whole-ring mapping snapshots take new addresses from
    cdef uint8_t *spare_used        # per slot: its range of `spare` is taken (or unmapped)
    cdef int n_mappings             # whole-ring mappings made
    cdef list deferred              # _Deferred units waiting for their exports to die
    cdef Py_ssize_t defer_limit
    cdef uint8_t backing            # BACKING_* of the packets this ring hands out
    cdef readonly int timeout_ms
    cdef uint32_t frame_hdr_end

    # the current unit
    cdef Py_ssize_t cur_slot
    cdef bint unit_open
    cdef Py_ssize_t unit_slot
    cdef unsigned char *unit_base
    cdef size_t unit_size
    cdef uint64_t unit_gen
    cdef uint64_t expect_gen
    cdef size_t walk_off            # V3 cursor: next packet header ...
    cdef uint32_t walk_left         # ... and packets not yet walked
    cdef _Columns cols              # table modes (V2, copy) and batches
    cdef Py_ssize_t table_capacity  # packets a unit's table may need
    cdef list cols_kept             # earlier tables column exports used (reused once free)
    cdef Py_ssize_t pos
    cdef Py_ssize_t count
    cdef Batch cur_batch

    # packet objects handed out from the current unit, and recycled ones
    cdef PyObject **issued
    cdef Py_ssize_t n_issued
    cdef Py_ssize_t cap_issued
    cdef PyObject **free_pkts
    cdef Py_ssize_t n_free
    cdef Py_ssize_t cap_free

    # per-packet options
    cdef ParseOpts opts
    cdef uint32_t snaplen
    cdef int cooked
    cdef bint reinsert_vlan
    cdef int vlan_offset
    cdef int lo_ifindex
    cdef int direction
    cdef uint16_t linktype

    # copy mode
    cdef unsigned char *chunk
    cdef size_t chunk_slot
    cdef int batch_len
    cdef void *msgs
    cdef void *iovs
    cdef void *names
    cdef unsigned char *ctrl
    cdef size_t ctrl_slot

    # statistics
    cdef uint64_t st_received
    cdef uint64_t st_dropped
    cdef uint64_t st_freezes
    cdef uint64_t st_delivered
    cdef WalkCounts walked
    cdef object kernel_filter       # BPFProgram attached to the socket (None: snaplen only)
    cdef object user_filter         # its user-view form, behind opts.uprog
    cdef bint ufilter_always        # the kernel cannot run the filter
    cdef uint64_t refilter_until    # V3: refilter blocks up to this generation
    cdef Py_ssize_t refilter_units  # V2: refilter this many more frames
    cdef readonly bint filter_locked
    cdef bint bound
    cdef uint64_t st_blocks
    cdef uint64_t st_polls
    cdef uint64_t st_generation_gaps
    cdef uint64_t st_snapshots
    cdef uint64_t st_detached
    cdef uint64_t st_held_total
    cdef uint64_t st_deferred
    cdef uint64_t st_export_copies
    cdef uint64_t st_lazy_batches    # ring batches handed out without a packet table
    cdef int64_t retained_bytes
    cdef uint64_t st_corrupt_blocks
    cdef Py_ssize_t held_now
    cdef int link_error
    cdef bint warned_held
    cdef bint spurious_wake

    # a lossless stop (Ring.stop): the kernel takes no more, the ring drains
    cdef readonly bint stopped          # stop() was called
    cdef readonly bint drained          # ... and every packet accepted before it was read
    cdef int stop_method                # STOP_UNHOOKED, STOP_FILTERED or STOP_NOTHING
    cdef int bound_ifindex
    cdef int64_t drain_deadline         # bound on waiting for a partly filled block
    cdef bint queue_empty               # copy mode: the last recvmmsg() found nothing
    cdef uint64_t st_abandoned          # accepted, never read: counted at close or a cut-short drain
    cdef int64_t link_down_since        # when the link was first seen down (0: up)
    cdef int64_t link_grace_ns          # a link down longer than this ends the capture (-1: never)

    # the consumer API for Cython code
    cdef Py_ssize_t consume(self, zcap_packet_cb cb, void *ctx,
                            Py_ssize_t max_packets, int timeout_ms) except -1

    # internals
    cdef int _setup_ring(self, size_t block_size, Py_ssize_t block_count,
                         size_t frame_size, bint rxhash, int reserve) except -1
    cdef int _setup_copy(self, int batch_len, size_t rcvbuf) except -1
    cdef int _setup_packets(self, Py_ssize_t capacity) except -1
    cdef _Columns _table(self)
    cdef int _corrupt(self, int code, size_t bad_off) except -1
    cdef int _release_unit(self) except -1
    cdef int _wait(self, int timeout_ms) except -1
    cdef int _drain_done(self) except -1
    cdef int _link_check(self) except -1
    cdef int _count_unread(self) noexcept
    cdef int _advance(self, int64_t deadline_ns) except -1
    cdef int _enter(self) except -1
    cdef int _leave(self) except -1
    cdef inline Packet _take_object(self)
    cdef Packet _new_packet(self)
    cdef int _grow_issued(self) except -1
    cdef inline Packet _packet_from_raw(self, RawPacket *raw)
    cdef inline Packet _packet_from_table(self, Py_ssize_t i)
    cdef inline Packet _table_packet(self, _Columns cols, Py_ssize_t i)
    cdef inline Packet _raw_packet(self, RawPacket *raw)
    cdef inline Packet _unit_packet(self)
    cdef inline Packet _next_packet(self, int64_t deadline_ns)
    cdef Packet _next_packet_slow(self, int64_t deadline_ns)
    cdef Batch _next_batch(self, int64_t deadline_ns)
    cdef int _wake(self) except -1
    cdef int _attach(self, bytes program) except -1
    cdef int _refilter_table(self) except -1
    cdef bint _unit_has_more(self) noexcept
    cdef int _collect_kernel_stats(self) except -1
    cdef Py_ssize_t _ready_units(self) noexcept
    cdef void _shutdown(self) noexcept
    cdef void _unmap_all(self) noexcept
    cdef void _drop_free_list(self) noexcept
    cdef void _close_fds(self) noexcept
