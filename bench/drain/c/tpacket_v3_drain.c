/* Drain a pre-filled TPACKET_V3 ring with nothing but C: the physical limit.
 *
 * usage: tpacket_v3_drain IFNAME COUNT BLOCK_SIZE BLOCK_COUNT TIMEOUT_MS [live]
 *
 * Run inside the capture's network namespace (ip netns exec NS ...).  Sets up
 * the same ring as zcap, then follows drain_protocol.h: it drains COUNT
 * packets, checking that the big-endian u64 at offset 42 counts up from 0.
 * With "live" it counts packets until the driver's end marker instead.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "drain_protocol.h"

#define NO_DATA_LIMIT_MS 5000   /* give up if the ring stays empty this long */
/* Room the kernel leaves in front of every packet (PACKET_RESERVE): zcap
 * (reinsert_vlan, its default) and libpcap both reserve a VLAN tag's 4 bytes
 * to put a stripped tag back, which moves every packet, and with it the cache
 * lines a reader touches.  The same here, so the rings have the same layout. */
#ifndef RING_RESERVE
#define RING_RESERVE 4
#endif

struct ring {
    int fd;
    unsigned char *map;
    size_t block_size;
    unsigned block_count;
};

static void fail_errno(const char *what)
{
    char msg[256];
    snprintf(msg, sizeof msg, "%s: %s", what, strerror(errno));
    fail(msg);
}

static struct ring open_ring(const char *ifname, size_t block_size, unsigned block_count,
                             unsigned timeout_ms)
{
    struct ring r = { .block_size = block_size, .block_count = block_count };
    int version = TPACKET_V3;
    unsigned reserve = RING_RESERVE;
    struct tpacket_req3 req = {
        .tp_block_size = block_size,
        .tp_block_nr = block_count,
        .tp_frame_size = block_size,
        .tp_frame_nr = block_count,
        .tp_retire_blk_tov = timeout_ms,
    };
    struct sockaddr_ll addr = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL) };

    /* protocol 0 until the ring exists: nothing is queued before it */
    r.fd = socket(AF_PACKET, SOCK_RAW, 0);
    if (r.fd < 0)
        fail_errno("socket");
    if (setsockopt(r.fd, SOL_PACKET, PACKET_VERSION, &version, sizeof version) < 0)
        fail_errno("PACKET_VERSION");
    if (RING_RESERVE && setsockopt(r.fd, SOL_PACKET, PACKET_RESERVE, &reserve, sizeof reserve) < 0)
        fail_errno("PACKET_RESERVE");
    if (setsockopt(r.fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0)
        fail_errno("PACKET_RX_RING");
    r.map = mmap(NULL, block_size * block_count, PROT_READ | PROT_WRITE, MAP_SHARED, r.fd, 0);
    if (r.map == MAP_FAILED)
        fail_errno("mmap");
    addr.sll_ifindex = if_nametoindex(ifname);
    if (addr.sll_ifindex == 0)
        fail_errno("if_nametoindex");
    if (bind(r.fd, (struct sockaddr *)&addr, sizeof addr) < 0)
        fail_errno("bind");
    return r;
}

static struct tpacket_stats_v3 kernel_counters(int fd)
{
    struct tpacket_stats_v3 st;
    socklen_t len = sizeof st;
    if (getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &st, &len) < 0)
        fail_errno("PACKET_STATISTICS");
    /* tp_packets already includes the drops, as pcap's ps_recv does */
    return st;
}

static void report_kernel_counters(int fd)
{
    struct tpacket_stats_v3 st = kernel_counters(fd);
    report_armed(st.tp_packets, st.tp_drops);
}

/* Walk one block, checking the sequence; returns the next expected number. */
static uint64_t check_block(const struct tpacket_block_desc *bd, uint64_t expected)
{
    uint32_t n = bd->hdr.bh1.num_pkts;
    const unsigned char *p = (const unsigned char *)bd + bd->hdr.bh1.offset_to_first_pkt;
    for (uint32_t i = 0; i < n; i++) {
        const struct tpacket3_hdr *h = (const struct tpacket3_hdr *)p;
        if (h->tp_snaplen < SEQ_OFFSET + 8)
            fail("short packet");
        if (read_be64(p + h->tp_mac + SEQ_OFFSET) != expected)
            fail("sequence mismatch");
        expected++;
        p += h->tp_next_offset;
    }
    return expected;
}

__attribute__((noinline))   /* a function of its own: bench/callgrind_drain.py counts inside it */
static void drain(struct ring *r, uint64_t count, unsigned timeout_ms)
{
    uint64_t expected = 0, polls = 0;
    unsigned block = 0;
    int64_t idle_ms = 0;
    int64_t start = now_ns();
    while (expected < count) {
        struct tpacket_block_desc *bd =
            (struct tpacket_block_desc *)(r->map + (size_t)block * r->block_size);
        if (!(__atomic_load_n(&bd->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) {
            struct pollfd pfd = { .fd = r->fd, .events = POLLIN | POLLERR };
            polls++;
            if (poll(&pfd, 1, timeout_ms) == 0 && (idle_ms += timeout_ms) > NO_DATA_LIMIT_MS)
                fail("ring stayed empty before COUNT packets arrived");
            continue;
        }
        expected = check_block(bd, expected);
        __atomic_store_n(&bd->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        block = (block + 1) % r->block_count;
    }
    report_done(expected, now_ns() - start, polls);
}

/* Live mode: count packets numbered below COUNT until the end marker; the
 * driver bounds the time (it kills a reader that never sees the marker). */
static void live(struct ring *r, uint64_t count, unsigned timeout_ms)
{
    uint64_t packets = 0;
    unsigned block = 0;
    int done = 0;
    while (!done) {
        struct tpacket_block_desc *bd =
            (struct tpacket_block_desc *)(r->map + (size_t)block * r->block_size);
        if (!(__atomic_load_n(&bd->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) {
            struct pollfd pfd = { .fd = r->fd, .events = POLLIN | POLLERR };
            poll(&pfd, 1, timeout_ms);
            continue;
        }
        uint32_t n = bd->hdr.bh1.num_pkts;
        const unsigned char *p = (const unsigned char *)bd + bd->hdr.bh1.offset_to_first_pkt;
        for (uint32_t i = 0; i < n; i++) {
            const struct tpacket3_hdr *h = (const struct tpacket3_hdr *)p;
            if (h->tp_snaplen >= SEQ_OFFSET + 8 && read_be64(p + h->tp_mac + SEQ_OFFSET) >= count)
                done = 1;
            else
                packets++;
            p += h->tp_next_offset;
        }
        __atomic_store_n(&bd->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        block = (block + 1) % r->block_count;
    }
    struct tpacket_stats_v3 st = kernel_counters(r->fd);
    report_live_done(packets, st.tp_packets, st.tp_drops);
}

int main(int argc, char **argv)
{
    int live_mode = argc == 7 && strcmp(argv[6], "live") == 0;
    if (argc != 6 && !live_mode) {
        fprintf(stderr, "usage: %s IFNAME COUNT BLOCK_SIZE BLOCK_COUNT TIMEOUT_MS [live]\n",
                argv[0]);
        return 1;
    }
    uint64_t count = strtoull(argv[2], NULL, 10);
    size_t block_size = strtoull(argv[3], NULL, 10);
    unsigned block_count = strtoul(argv[4], NULL, 10);
    unsigned timeout_ms = strtoul(argv[5], NULL, 10);

    struct ring r = open_ring(argv[1], block_size, block_count, timeout_ms);
    say("READY");
    if (live_mode) {
        live(&r, count, timeout_ms);
        return 0;
    }
    wait_for_driver();
    report_kernel_counters(r.fd);
    wait_for_driver();
    drain(&r, count, timeout_ms);
    wait_for_driver();
    return 0;
}
