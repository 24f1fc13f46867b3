# The C boundary: every declaration zcap takes from Linux and libc, nothing else.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t

cdef extern from "<errno.h>":
    int errno
    enum:
        EINTR, EAGAIN, EWOULDBLOCK, ENOMEM, ENETDOWN, ENODEV, ENXIO, EPERM, EINVAL

cdef extern from "<unistd.h>" nogil:
    int close(int fd)
    ssize_t read(int fd, void *buf, size_t count)
    ssize_t write(int fd, const void *buf, size_t count)
    long sysconf(int name)
    enum: _SC_PAGESIZE

cdef extern from "<time.h>" nogil:
    struct timespec:
        long tv_sec
        long tv_nsec
    enum: CLOCK_MONOTONIC
    int clock_gettime(int clk, timespec *ts)
    int nanosleep(const timespec *req, timespec *rem)

cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    enum:
        POLLIN, POLLERR, POLLHUP, POLLNVAL, POLLOUT
    int poll(pollfd *fds, unsigned long nfds, int timeout)

cdef extern from "<sys/eventfd.h>" nogil:
    enum: EFD_CLOEXEC, EFD_NONBLOCK
    int eventfd(unsigned int initval, int flags)

cdef extern from "<sys/mman.h>" nogil:
    enum:
        PROT_READ, PROT_WRITE, MAP_SHARED, MAP_PRIVATE, MAP_ANONYMOUS, MAP_POPULATE
        MREMAP_MAYMOVE
    void *MAP_FAILED
    void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset)
    int munmap(void *addr, size_t length)
    void *mremap(void *old_address, size_t old_size, size_t new_size, int flags, ...)

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    struct sockaddr:
        unsigned short sa_family
    struct iovec:
        void *iov_base
        size_t iov_len
    struct msghdr:
        void *msg_name
        socklen_t msg_namelen
        iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags
    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    struct cmsghdr:
        size_t cmsg_len
        int cmsg_level
        int cmsg_type
    enum:
        SOL_SOCKET, SO_ERROR, SO_RCVBUF, SO_RCVBUFFORCE, SO_TIMESTAMPNS, SCM_TIMESTAMPNS
        MSG_DONTWAIT, MSG_TRUNC, MSG_CTRUNC
    int bind(int fd, const sockaddr *addr, socklen_t addrlen)
    int setsockopt(int fd, int level, int optname, const void *optval, socklen_t optlen)
    int getsockopt(int fd, int level, int optname, void *optval, socklen_t *optlen)
    int recvmmsg(int fd, mmsghdr *msgvec, unsigned int vlen, int flags, timespec *timeout)
    int sendmmsg(int fd, mmsghdr *msgvec, unsigned int vlen, int flags)
    ssize_t send(int fd, const void *buf, size_t len, int flags)

cdef extern from "<arpa/inet.h>" nogil:
    uint16_t htons(uint16_t)
    uint16_t ntohs(uint16_t)
    uint32_t htonl(uint32_t)

cdef extern from "<linux/filter.h>" nogil:
    struct sock_filter:
        uint16_t code
        uint8_t jt
        uint8_t jf
        uint32_t k
    struct sock_fprog:
        unsigned short len
        sock_filter *filter

cdef extern from "<sys/socket.h>" nogil:
    enum:
        SO_ATTACH_FILTER, SO_DETACH_FILTER, SO_LOCK_FILTER

cdef extern from "<linux/if_packet.h>" nogil:
    enum:
        SOL_PACKET "263"
    enum:
        PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST, PACKET_OTHERHOST, PACKET_OUTGOING
        PACKET_RX_RING, PACKET_STATISTICS, PACKET_VERSION, PACKET_RESERVE, PACKET_AUXDATA
        PACKET_QDISC_BYPASS
        TPACKET_V2, TPACKET_V3
        TP_STATUS_KERNEL, TP_STATUS_USER, TP_STATUS_COPY, TP_STATUS_LOSING
        TP_STATUS_VLAN_VALID, TP_STATUS_CSUMNOTREADY
        TP_STATUS_BLK_TMO
        TP_STATUS_TS_SOFTWARE, TP_STATUS_TS_SYS_HARDWARE, TP_STATUS_TS_RAW_HARDWARE
        TP_FT_REQ_FILL_RXHASH
        TPACKET_ALIGNMENT
    struct sockaddr_ll:
        unsigned short sll_family
        unsigned short sll_protocol
        int sll_ifindex
        unsigned short sll_hatype
        unsigned char sll_pkttype
        unsigned char sll_halen
        unsigned char sll_addr[8]
    struct tpacket_stats:
        unsigned int tp_packets
        unsigned int tp_drops
    struct tpacket_stats_v3:
        unsigned int tp_packets
        unsigned int tp_drops
        unsigned int tp_freeze_q_cnt
    struct tpacket_auxdata:
        uint32_t tp_status
        uint32_t tp_len
        uint32_t tp_snaplen
        uint16_t tp_mac
        uint16_t tp_net
        uint16_t tp_vlan_tci
        uint16_t tp_vlan_tpid
    struct tpacket2_hdr:
        uint32_t tp_status
        uint32_t tp_len
        uint32_t tp_snaplen
        uint16_t tp_mac
        uint16_t tp_net
        uint32_t tp_sec
        uint32_t tp_nsec
        uint16_t tp_vlan_tci
        uint16_t tp_vlan_tpid
    struct tpacket_hdr_variant1:
        uint32_t tp_rxhash
        uint32_t tp_vlan_tci
        uint16_t tp_vlan_tpid
        uint16_t tp_padding
    struct tpacket3_hdr:
        uint32_t tp_next_offset
        uint32_t tp_sec
        uint32_t tp_nsec
        uint32_t tp_snaplen
        uint32_t tp_len
        uint32_t tp_status
        uint16_t tp_mac
        uint16_t tp_net
        tpacket_hdr_variant1 hv1      # an anonymous union member in the header
    struct tpacket_bd_ts:
        unsigned int ts_sec
        unsigned int ts_nsec
    struct tpacket_hdr_v1:
        uint32_t block_status
        uint32_t num_pkts
        uint32_t offset_to_first_pkt
        uint32_t blk_len
        uint64_t seq_num
        tpacket_bd_ts ts_first_pkt
        tpacket_bd_ts ts_last_pkt
    union tpacket_bd_header_u:
        tpacket_hdr_v1 bh1
    struct tpacket_block_desc:
        uint32_t version
        uint32_t offset_to_priv
        tpacket_bd_header_u hdr
    struct tpacket_req:
        unsigned int tp_block_size
        unsigned int tp_block_nr
        unsigned int tp_frame_size
        unsigned int tp_frame_nr
    struct tpacket_req3:
        unsigned int tp_block_size
        unsigned int tp_block_nr
        unsigned int tp_frame_size
        unsigned int tp_frame_nr
        unsigned int tp_retire_blk_tov
        unsigned int tp_sizeof_priv
        unsigned int tp_feature_req_word

cdef extern from "zcap_compat.h" nogil:
    enum:
        PACKET_IGNORE_OUTGOING, TP_STATUS_VLAN_TPID_VALID, MREMAP_FIXED
    uint32_t zcap_load_acquire_u32(const uint32_t *p)
    void zcap_store_release_u32(uint32_t *p, uint32_t v)
    unsigned int zcap_tpacket_align(unsigned int x)
    cmsghdr *zcap_cmsg_firsthdr(msghdr *m)
    cmsghdr *zcap_cmsg_nxthdr(msghdr *m, cmsghdr *c)
    unsigned char *zcap_cmsg_data(cmsghdr *c)
    size_t zcap_cmsg_space(size_t n)
    size_t zcap_cmsg_len(size_t n)
    void zcap_gather_item(unsigned char *dst, const unsigned char *src, size_t size, int swap)
    void zcap_prefetch(const void *p)

# Transmitting through a PACKET_TX_RING (zcap/_tx.pyx)
cdef extern from "<errno.h>":
    enum:
        ENOBUFS, EMSGSIZE, ETIMEDOUT

cdef extern from "<sys/socket.h>" nogil:
    enum:
        SO_SNDBUF, SO_SNDBUFFORCE

cdef extern from "<linux/if_packet.h>" nogil:
    enum:
        PACKET_TX_RING
        TP_STATUS_AVAILABLE, TP_STATUS_SEND_REQUEST, TP_STATUS_SENDING, TP_STATUS_WRONG_FORMAT
