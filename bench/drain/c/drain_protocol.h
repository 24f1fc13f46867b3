/* The stdin/stdout handshake shared by the C drain readers and bench/drain/drain.py.
 *
 *   reader: READY                         capture open, nothing read yet
 *   driver: (a line)                      the N frames are queued in the ring
 *   reader: ARMED {"received":R,"dropped":D}   kernel counters before the drain
 *   driver: (a line)                      start the clock
 *   reader: DONE {"packets":P,"ns":T,"polls":W}
 *   driver: (a line)                      exit
 *
 * The driver may attach `perf stat` between ARMED and the "start" line.
 *
 * Live mode (bench/live/live.py; "live" as the last argument): the reader says
 * READY, then reads while the driver sends, counting packets numbered below
 * COUNT, until one numbered COUNT or above (the driver's end marker) arrives:
 *
 *   reader: READY
 *   reader: DONE {"packets":P,"received":R,"dropped":D}
 */
#ifndef DRAIN_PROTOCOL_H
#define DRAIN_PROTOCOL_H

#include <endian.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SEQ_OFFSET 42   /* Ethernet 14 + IPv4 20 + UDP 8: the payload's first u64 */

/* -DDRAIN_CPU_CLOCK: time the drain by the thread's CPU time instead of the
 * wall clock (bench/drain/cpu_drain.py: time other processes take is not counted). */
#ifdef DRAIN_CPU_CLOCK
#define DRAIN_CLOCK CLOCK_THREAD_CPUTIME_ID
#else
#define DRAIN_CLOCK CLOCK_MONOTONIC
#endif

static inline int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(DRAIN_CLOCK, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline uint64_t read_be64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return be64toh(v);
}

/* Block until the driver sends a line; exit quietly if it went away. */
static void wait_for_driver(void)
{
    char line[64];
    if (!fgets(line, sizeof line, stdin))
        exit(3);
}

static void say(const char *line)
{
    fputs(line, stdout);
    fputc('\n', stdout);
    fflush(stdout);
}

static void report_armed(uint64_t received, uint64_t dropped)
{
    printf("ARMED {\"received\": %llu, \"dropped\": %llu}\n",
           (unsigned long long)received, (unsigned long long)dropped);
    fflush(stdout);
}

static void report_done(uint64_t packets, int64_t ns, uint64_t polls)
{
    printf("DONE {\"packets\": %llu, \"ns\": %lld, \"polls\": %llu}\n",
           (unsigned long long)packets, (long long)ns, (unsigned long long)polls);
    fflush(stdout);
}

static void report_live_done(uint64_t packets, uint64_t received, uint64_t dropped)
{
    printf("DONE {\"packets\": %llu, \"received\": %llu, \"dropped\": %llu}\n",
           (unsigned long long)packets, (unsigned long long)received,
           (unsigned long long)dropped);
    fflush(stdout);
}

static void fail(const char *what)
{
    printf("ERROR %s\n", what);
    fflush(stdout);
    exit(2);
}

#endif
