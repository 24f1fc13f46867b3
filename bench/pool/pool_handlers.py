"""What the pool benchmark runs in its worker processes (importable by them).

The handler's work is a fixed amount of CPU: `spin(turns)` runs a Python
loop of `turns` additions.  `turns` is chosen once, in the parent, from CPU
time (time.process_time), not from the wall clock: on a shared machine a
wall-clock calibration counts other people's time slices and gives a lighter
handler.  `--turns` on bench/pool.py fixes it, so runs on different days
compare.
"""

from __future__ import annotations

import os
import time


def spin(turns: int) -> int:
    x = 0
    for i in range(turns):
        x += i
    return x


def cost_us(turns: int, calls: int = 4000, repeat: int = 5) -> float:
    """CPU microseconds of one spin(turns) call (process CPU time, not wall
    clock), the least of `repeat` tries: other tasks on the CPU only add to
    it (cache refills after their time slices)."""
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        for _ in range(calls):
            spin(turns)
        best = min(best, time.process_time() - t)
    return best / calls * 1e6


def calibrate(target_us: float = 2.0) -> int:
    """The number of turns that makes spin() take ~target_us of CPU."""
    turns = 40
    for _ in range(4):
        turns = max(1, round(turns * target_us / cost_us(turns)))
    return turns


def sched() -> tuple[int, int]:
    """This thread's (ns on a CPU, ns runnable but waiting for a CPU): /proc schedstat."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            run, wait, _ = f.read().split()
        return int(run), int(wait)
    except (OSError, ValueError):
        return 0, 0


def timed(turns: int, cap, out) -> tuple:
    """spin(turns) per packet.

    Returns (packets, first, last, cpu_first, cpu_end, sched_first,
    sched_end): CLOCK_MONOTONIC at the first and the last packet handled;
    this process's CPU time (all its threads, user + system) at the first
    packet and after the iteration ended; sched() then and there.  `cap`
    may be any iterable: the pure-Python floor of the benchmark runs this
    same function over a range().
    """
    n = 0
    first = last = cpu_first = 0.0
    sched_first = (0, 0)
    now = time.monotonic
    for _pkt in cap:
        spin(turns)
        n += 1
        last = now()
        if n == 1:
            first = last
            cpu_first = time.process_time()
            sched_first = sched()
    return n, first, last, cpu_first, time.process_time(), sched_first, sched()


def counted(cap, out) -> tuple:
    """Only counting (and the clock): the floor of a pool worker."""
    n = 0
    first = last = cpu_first = 0.0
    sched_first = (0, 0)
    now = time.monotonic
    for _pkt in cap:
        n += 1
        last = now()
        if n == 1:
            first = last
            cpu_first = time.process_time()
            sched_first = sched()
    return n, first, last, cpu_first, time.process_time(), sched_first, sched()


def streamed(cap, out) -> tuple:
    """counted() plus one out.put() per packet: the cost of streaming results."""
    n = 0
    first = last = cpu_first = 0.0
    sched_first = (0, 0)
    now = time.monotonic
    put = out.put
    for _pkt in cap:
        n += 1
        put(n)
        last = now()
        if n == 1:
            first = last
            cpu_first = time.process_time()
            sched_first = sched()
    return n, first, last, cpu_first, time.process_time(), sched_first, sched()


def floor_worker(turns: int, count: int, cpu: int, go, conn) -> None:
    """The pure-Python floor: timed() over range(count), no capture at all;
    pinned like a pool worker, started when the parent sets `go`."""
    os.sched_setaffinity(0, {cpu})
    conn.send("ready")
    go.wait()
    conn.send(timed(turns, range(count), None))


def pcapy_worker(iface: str, netns: str, group: int, turns: int, target: int, live: bool,
                 conn) -> None:
    """pcapy-ng by hand: open, set_fanout (lb), loop with the same spin() per packet.

    Sends ("done", packets, first, last, received, dropped, cpu_first, cpu_end,
    sched_first, sched_end), as timed() measures them.
    """
    import signal

    import pcapy

    from zcap import netns as _netns
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with _netns.entered(netns):
        r = pcapy.create(iface)
        r.set_snaplen(262144)
        r.set_buffer_size((512 << 10) if live else (128 << 20))     # as the zcap rings
        r.set_timeout(10)
        r.activate()
    r.set_fanout(group, 1)       # PACKET_FANOUT_LB, as the zcap pool in this benchmark
    r.setnonblock(1)             # an idle V3 ring never wakes a blocking libpcap read
    conn.send(("ready", os.getpid()))
    n = 0
    first = last = cpu_first = 0.0
    sched_first = (0, 0)
    now = time.monotonic
    while n < target:
        data, meta = r.next_batch(4096)
        if not len(meta):
            if conn.poll():      # the parent says the traffic is over
                break
            time.sleep(0.001)
            continue
        for _ in range(len(meta) // 16):     # 16-byte records: sec, usec, offset, caplen
            spin(turns)
            n += 1
            last = now()
            if n == 1:
                first = last
                cpu_first = time.process_time()
                sched_first = sched()
    cpu_end, sched_end = time.process_time(), sched()
    received, dropped, _ = r.stats()
    conn.send(("done", n, first, last, received, dropped, cpu_first, cpu_end, sched_first,
               sched_end))
