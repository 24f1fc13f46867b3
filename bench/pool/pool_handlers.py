"""What the pool benchmark runs in its worker processes (importable by them)."""

from __future__ import annotations

import os
import time

# set by calibrate() in the parent and passed to each worker: loop turns for ~2 us
SPIN = {"turns": 40}


def spin(turns: int) -> int:
    x = 0
    for i in range(turns):
        x += i
    return x


def calibrate(target_us: float = 2.0) -> int:
    turns = 40
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(20000):
            spin(turns)
        per_call = (time.perf_counter() - t) / 20000
        turns = max(1, round(turns * target_us * 1e-6 / per_call))
    return turns


def timed(turns: int, cap, out) -> tuple[int, float, float]:
    """~2 us of Python per packet; (packets, first, last packet) on CLOCK_MONOTONIC."""
    n = 0
    first = last = 0.0
    now = time.monotonic
    for _pkt in cap:
        spin(turns)
        n += 1
        last = now()
        if n == 1:
            first = last
    return n, first, last


def counted(cap, out) -> tuple[int, float, float]:
    """Only counting (and the clock): the floor of a pool worker."""
    n = 0
    first = last = 0.0
    now = time.monotonic
    for _pkt in cap:
        n += 1
        last = now()
        if n == 1:
            first = last
    return n, first, last


def streamed(cap, out) -> tuple[int, float, float]:
    """counted() plus one out.put() per packet: the cost of streaming results."""
    n = 0
    first = last = 0.0
    now = time.monotonic
    put = out.put
    for _pkt in cap:
        n += 1
        put(n)
        last = now()
        if n == 1:
            first = last
    return n, first, last


def pcapy_worker(iface: str, netns: str, group: int, turns: int, target: int, live: bool,
                 conn) -> None:
    """pcapy-ng by hand: open, set_fanout, loop with the same ~2 us per packet."""
    import signal

    import pcapy

    from zcap import netns as _netns
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with _netns.entered(netns):
        r = pcapy.create(iface)
        r.set_snaplen(262144)
        r.set_buffer_size((4 if live else 128) << 20)     # as the zcap rings
        r.set_timeout(10)
        r.activate()
    r.set_fanout(group, 1 if not live else 0)        # lb for the drain regime, hash live
    r.setnonblock(1)             # an idle V3 ring never wakes a blocking libpcap read
    conn.send(("ready", os.getpid()))
    n = 0
    first = last = 0.0
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
    received, dropped, _ = r.stats()
    conn.send(("done", n, first, last, received, dropped))
