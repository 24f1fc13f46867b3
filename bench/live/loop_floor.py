"""The event loops' own cost per wake-up: what any live reader pays, before capturing.

    python3 bench/live/loop_floor.py LOOP PERIOD_MS SECONDS

LOOP is `poll` (a thread in select.poll(), as `for pkt in cap` sleeps),
`asyncio` or `uvloop` (a task awaiting a future that an `add_reader`
callback completes, the idiom asyncio's own socket helpers use).  The
process sleeps on a timerfd that fires every PERIOD_MS - as a live reader
wakes once per block timeout while the kernel retires its blocks on their
timer - reads it (8 bytes), and sleeps again, for SECONDS or until SIGUSR1
(checked at each wake-up).  It says READY, starts at the next line on
stdin (ARMED), and ends with `DONE {"wakes": W, "cpu_ns": C}`: W wake-ups
and the CPU time the process used meanwhile (CLOCK_PROCESS_CPUTIME_ID, what
/proc/PID/schedstat sums; the loop's set-up and tear-down are not counted).
bench/live/live.py runs it beside the capture consumers, pinned to their
CPU, while its sender sends: the difference between the loops' figures is
the least an `async for` reader can add per wake-up to the sync reader's.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import select
import signal
import sys
import time

LOOPS = ("poll", "asyncio", "uvloop")
STOP = [False]                          # set by SIGUSR1: end at the next wake-up
CLOCK_MONOTONIC = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def periodic_timerfd(period_ns: int) -> int:
    """A non-blocking timerfd that becomes readable every period_ns (os.timerfd_* is 3.13+)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.timerfd_create(CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "timerfd_create")
    period = _Timespec(period_ns // 1_000_000_000, period_ns % 1_000_000_000)
    if libc.timerfd_settime(fd, 0, ctypes.byref(_Itimerspec(period, period)), None) != 0:
        raise OSError(ctypes.get_errno(), "timerfd_settime")
    return fd


def wake_by_poll(fd: int, seconds: float) -> tuple[int, int]:
    """(wake-ups, CPU ns) of a thread sleeping in poll() for `seconds`."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    wakes = 0
    start_cpu = time.process_time_ns()
    deadline = time.monotonic() + seconds
    while not STOP[0] and time.monotonic() < deadline:
        poller.poll()
        os.read(fd, 8)
        wakes += 1
    return wakes, time.process_time_ns() - start_cpu


async def wake_by_loop(fd: int, seconds: float) -> tuple[int, int]:
    """(wake-ups, CPU ns) of a task sleeping on its loop for `seconds`
    (the loop's set-up and tear-down are not counted)."""
    loop = asyncio.get_running_loop()
    waiting: list[asyncio.Future] = []

    def readable() -> None:
        os.read(fd, 8)
        if waiting and not waiting[0].done():
            waiting[0].set_result(None)

    loop.add_reader(fd, readable)
    wakes = 0
    start_cpu = time.process_time_ns()
    deadline = time.monotonic() + seconds
    try:
        while not STOP[0] and time.monotonic() < deadline:
            waiting[:] = [loop.create_future()]
            await waiting[0]
            wakes += 1
    finally:
        cpu = time.process_time_ns() - start_cpu
        loop.remove_reader(fd)
    return wakes, cpu


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in LOOPS:
        sys.exit(__doc__)
    loop_name, period_ms, seconds = argv[0], int(argv[1]), float(argv[2])
    if loop_name == "uvloop":
        # imported before the clock starts: an import is not a wake-up
        import uvloop
    signal.signal(signal.SIGUSR1, lambda *_: STOP.__setitem__(0, True))
    print("READY", flush=True)
    sys.stdin.readline()                # live.py has pinned this process: go
    fd = periodic_timerfd(period_ms * 1_000_000)
    print("ARMED", flush=True)
    if loop_name == "poll":
        wakes, cpu = wake_by_poll(fd, seconds)
    elif loop_name == "asyncio":
        wakes, cpu = asyncio.run(wake_by_loop(fd, seconds))
    else:
        wakes, cpu = uvloop.run(wake_by_loop(fd, seconds))
    print("DONE " + json.dumps({"wakes": wakes, "cpu_ns": cpu}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
