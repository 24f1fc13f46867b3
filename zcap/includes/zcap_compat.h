/* Small C helpers that Cython cannot express directly.
 *
 * The ring's ownership word is shared with the kernel: user space must read it
 * with acquire semantics before touching a block's packets, and hand the block
 * back with a release store so the kernel never sees the status change before
 * our last read of the block.  Plain loads (as gopacket's afpacket once used)
 * let the compiler or CPU reorder packet reads ahead of the status check.
 */
#ifndef ZCAP_COMPAT_H
#define ZCAP_COMPAT_H

#include <stdint.h>
#include <sys/socket.h>
#include <linux/if_packet.h>

static inline uint32_t zcap_load_acquire_u32(const volatile uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void zcap_store_release_u32(volatile uint32_t *p, uint32_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

/* TPACKET_ALIGN as a function so Cython can call it. */
static inline unsigned int zcap_tpacket_align(unsigned int x)
{
    return TPACKET_ALIGN(x);
}

/* cmsg walking helpers (the libc versions are macros). */
static inline struct cmsghdr *zcap_cmsg_firsthdr(struct msghdr *m) { return CMSG_FIRSTHDR(m); }
static inline struct cmsghdr *zcap_cmsg_nxthdr(struct msghdr *m, struct cmsghdr *c) { return CMSG_NXTHDR(m, c); }
static inline unsigned char *zcap_cmsg_data(struct cmsghdr *c) { return CMSG_DATA(c); }
static inline size_t zcap_cmsg_space(size_t n) { return CMSG_SPACE(n); }
static inline size_t zcap_cmsg_len(size_t n) { return CMSG_LEN(n); }

/* Copy one fixed-size field (1, 2, 4 or 8 bytes, or `size` raw bytes),
 * byte-swapped when `swap`: the inner step of Batch.field().  The fixed
 * sizes compile to one load and one store. */
static inline void zcap_gather_item(unsigned char *dst, const unsigned char *src,
                                    size_t size, int swap)
{
    uint16_t v16; uint32_t v32; uint64_t v64;
    switch (size) {
    case 1: *dst = *src; return;
    case 2: __builtin_memcpy(&v16, src, 2); if (swap) v16 = __builtin_bswap16(v16);
            __builtin_memcpy(dst, &v16, 2); return;
    case 4: __builtin_memcpy(&v32, src, 4); if (swap) v32 = __builtin_bswap32(v32);
            __builtin_memcpy(dst, &v32, 4); return;
    case 8: __builtin_memcpy(&v64, src, 8); if (swap) v64 = __builtin_bswap64(v64);
            __builtin_memcpy(dst, &v64, 8); return;
    default: __builtin_memcpy(dst, src, size); return;
    }
}

/* Ask for a cache line before it is needed. */
static inline void zcap_prefetch(const void *p)
{
    __builtin_prefetch(p, 0, 3);
}

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif
#ifndef TP_STATUS_VLAN_TPID_VALID
#define TP_STATUS_VLAN_TPID_VALID (1 << 6)
#endif
#ifndef MREMAP_FIXED
#define MREMAP_FIXED 2
#endif

#endif
