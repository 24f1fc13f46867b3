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
    calls = max(200, round(8000 / target_us))    # ~8 ms of CPU per try once near the target
    turns = 40
    for _ in range(4):
        turns = max(1, round(turns * target_us / cost_us(turns, calls)))
    return turns


def sched() -> tuple[int, int]:
    """This thread's (ns on a CPU, ns runnable but waiting for a CPU): /proc schedstat."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            run, wait, _ = f.read().split()
        return int(run), int(wait)
    except (OSError, ValueError):
        return 0, 0


def timed(turns: int, cap, out, stream: bool = False) -> tuple:
    """spin(turns) per packet (and, with `stream`, one out.put() per packet).

    Returns (packets, first, last, cpu_first, cpu_end, sched_first,
    sched_end): CLOCK_MONOTONIC at the first and the last packet handled;
    this process's CPU time (all its threads, user + system) at the first
    packet and after the iteration ended; sched() then and there.  `cap`
    may be any iterable of packets: a zcap capture in a pool worker,
    pcapy_packets() in a pcapy-ng worker, a range() in the pure-Python floor.
    """
    put = out.put if stream else None
    n = 0
    first = last = cpu_first = 0.0
    sched_first = (0, 0)
    now = time.monotonic
    for _pkt in cap:
        if turns:
            spin(turns)
        if put is not None:
            put(n)
        n += 1
        last = now()
        if n == 1:
            first = last
            cpu_first = time.process_time()
            sched_first = sched()
    return n, first, last, cpu_first, time.process_time(), sched_first, sched()


def counted(cap, out) -> tuple:
    """Only counting (and the clock): the floor of a pool worker."""
    return timed(0, cap, out)


def streamed(cap, out) -> tuple:
    """counted() plus one out.put() per packet: the cost of streaming results."""
    return timed(0, cap, out, stream=True)


def until(seconds: float):
    """range() for a fixed time: yields until `seconds` have passed."""
    end = time.monotonic() + seconds
    now = time.monotonic
    while now() < end:
        yield None


def floor_worker(turns: int, count: int, cpu: int, go, conn, seconds: float = 0.0) -> None:
    """The pure-Python floor: timed() over range(count), or for `seconds`
    when given (the live regime's floor), no capture at all; pinned like a
    pool worker, started when the parent sets `go`."""
    os.sched_setaffinity(0, {cpu})
    conn.send("ready")
    go.wait()
    conn.send(timed(turns, until(seconds) if seconds else range(count), None))


def pcapy_packets(r, conn, target: int, batch: int):
    """Every packet pcapy-ng's next_batch() returns, as a memoryview of its
    bytes (as a zcap worker gets a Packet), until `target` packets or, on an
    empty buffer, until the parent sends "stop"."""
    n = 0
    while n < target:
        data, meta = r.next_batch(batch)
        if not len(meta):
            if conn.poll():      # the parent says the traffic is over
                return
            time.sleep(0.001)
            continue
        view = memoryview(data)
        records = memoryview(meta).cast("I")    # 16-byte records: sec, usec, offset, caplen
        for i in range(0, len(records), 4):
            offset = records[i + 2]
            yield view[offset:offset + records[i + 3]]
        n += len(records) // 4


def pcapy_worker(iface: str, netns: str, group: int, turns: int, target: int, buffer: int,
                 batch: int, conn) -> None:
    """pcapy-ng by hand: open (a `buffer`-byte buffer), set_fanout (lb), and
    timed() over pcapy_packets(): the same spin() per packet as a pool worker.

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
        r.set_buffer_size(buffer)
        r.set_timeout(10)
        r.activate()
    r.set_fanout(group, 1)       # PACKET_FANOUT_LB, as the zcap pool in this benchmark
    r.setnonblock(1)             # an idle V3 ring never wakes a blocking libpcap read
    conn.send(("ready", os.getpid()))
    n, first, last, cpu_first, cpu_end, sched_first, sched_end = \
        timed(turns, pcapy_packets(r, conn, target, batch), None)
    received, dropped, _ = r.stats()
    conn.send(("done", n, first, last, received, dropped, cpu_first, cpu_end, sched_first,
               sched_end))
