/* Drain a pre-filled capture with libpcap (its TPACKET_V3 ring, pcap_dispatch).
 *
 * usage: libpcap_drain IFNAME COUNT BUFFER_BYTES TIMEOUT_MS [live]
 *
 * Run inside the capture's network namespace (ip netns exec NS ...).  Follows
 * drain_protocol.h: drains COUNT packets through a pcap_dispatch() callback
 * that checks the big-endian u64 at offset 42 counts up from 0.  With "live"
 * it counts packets until the driver's end marker instead.
 */
#include <pcap/pcap.h>

#include "drain_protocol.h"

#define MAX_EMPTY_DISPATCHES 20   /* each waits up to one timeout: give up after that */

struct sequence_check {
    uint64_t expected;
    int failed;
};

static void check_packet(u_char *user, const struct pcap_pkthdr *h, const u_char *data)
{
    struct sequence_check *c = (struct sequence_check *)user;
    if (h->caplen < SEQ_OFFSET + 8 || read_be64(data + SEQ_OFFSET) != c->expected) {
        c->failed = 1;
        return;
    }
    c->expected++;
}

struct live_count {
    uint64_t count, packets;
    int done;
};

static void count_packet(u_char *user, const struct pcap_pkthdr *h, const u_char *data)
{
    struct live_count *c = (struct live_count *)user;
    if (h->caplen >= SEQ_OFFSET + 8 && read_be64(data + SEQ_OFFSET) >= c->count)
        c->done = 1;
    else
        c->packets++;
}

static void fail_pcap(pcap_t *p, const char *what)
{
    char msg[PCAP_ERRBUF_SIZE + 64];
    snprintf(msg, sizeof msg, "%s: %s", what, pcap_geterr(p));
    fail(msg);
}

static pcap_t *open_capture(const char *ifname, int buffer_bytes, int timeout_ms)
{
    char errbuf[PCAP_ERRBUF_SIZE];
    pcap_t *p = pcap_create(ifname, errbuf);
    if (!p)
        fail(errbuf);
    if (pcap_set_snaplen(p, 262144) || pcap_set_buffer_size(p, buffer_bytes) ||
        pcap_set_timeout(p, timeout_ms) || pcap_set_immediate_mode(p, 0))
        fail("pcap_set_* refused an option");
    if (pcap_activate(p) < 0)   /* > 0 is a warning */
        fail_pcap(p, "pcap_activate");
    return p;
}

static void report_kernel_counters(pcap_t *p)
{
    struct pcap_stat st;
    if (pcap_stats(p, &st) < 0)
        fail_pcap(p, "pcap_stats");
    report_armed(st.ps_recv, st.ps_drop);
}

__attribute__((noinline))   /* a function of its own: bench/callgrind_drain.py counts inside it */
static void drain(pcap_t *p, uint64_t count)
{
    struct sequence_check c = { 0, 0 };
    uint64_t empty = 0;
    int64_t start = now_ns();
    while (c.expected < count) {
        int n = pcap_dispatch(p, -1, check_packet, (u_char *)&c);
        if (n < 0)
            fail_pcap(p, "pcap_dispatch");
        if (c.failed)
            fail("sequence mismatch");
        if (n == 0 && ++empty > MAX_EMPTY_DISPATCHES)
            fail("no packets before COUNT arrived");
    }
    /* libpcap hides its poll() calls: report the empty dispatches instead */
    report_done(c.expected, now_ns() - start, empty);
}

/* Live mode: count packets numbered below COUNT until the end marker; the
 * driver bounds the time (it kills a reader that never sees the marker). */
static void live(pcap_t *p, uint64_t count)
{
    struct live_count c = { count, 0, 0 };
    struct pcap_stat st;
    while (!c.done)
        if (pcap_dispatch(p, -1, count_packet, (u_char *)&c) < 0)
            fail_pcap(p, "pcap_dispatch");
    if (pcap_stats(p, &st) < 0)
        fail_pcap(p, "pcap_stats");
    report_live_done(c.packets, st.ps_recv, st.ps_drop);
}

int main(int argc, char **argv)
{
    int live_mode = argc == 6 && strcmp(argv[5], "live") == 0;
    if (argc != 5 && !live_mode) {
        fprintf(stderr, "usage: %s IFNAME COUNT BUFFER_BYTES TIMEOUT_MS [live]\n", argv[0]);
        return 1;
    }
    uint64_t count = strtoull(argv[2], NULL, 10);
    int buffer_bytes = (int)strtol(argv[3], NULL, 10);
    int timeout_ms = (int)strtol(argv[4], NULL, 10);

    pcap_t *p = open_capture(argv[1], buffer_bytes, timeout_ms);
    say("READY");
    if (live_mode) {
        live(p, count);
        pcap_close(p);
        return 0;
    }
    wait_for_driver();
    report_kernel_counters(p);
    wait_for_driver();
    drain(p, count);
    wait_for_driver();
    pcap_close(p);
    return 0;
}
