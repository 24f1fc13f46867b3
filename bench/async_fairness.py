"""How responsive an asyncio application stays while it captures at full load.

    sudo python3 bench/async_fairness.py [--seconds 3] [--busy] [--rounds 3]

On one event loop (asyncio's, then uvloop): a capture task consumes a
veth pair flooded by the C sender at its maximum rate with `async for`,
while (1) a timer task asks to wake every 1 ms and records how late it
wakes, and (2) an asyncio TCP echo server on loopback answers a client that
runs in a separate process (so the GIL does not blur the numbers) and sends
a 64-byte message every 2 ms, recording round-trip times.  Peers in the
same run: "idle" is the same loop without a capture or flood; "floor" is
the same flood with, in place of the capture, a pure-Python loop that looks
at the clock every 32 passes and yields (`await asyncio.sleep(0)`) once per
budget, as `async for` used to - what the OS scheduler and the loop give
any busy task that yields at that cadence; "flood" is the same flood with a
capture opened on the veth and never read (the kernel fills its ring, then
counts drops) and no consumer task: the timer's lateness that the flood's
kernel work (the sender's softirq) and the scheduler cause by themselves,
without any consumer in the loop.  Reported: p50 / p99 / max in ms, the
medians over --rounds interleaved rounds, and the load average; for zcap,
packets captured per second and the share the kernel dropped (a consumer
that drops none is not saturated: it sleeps between blocks, so the timer
finds the loop free).

On this 2-CPU rig the sender and its softirq need a CPU of their own, so
with --busy three CPU hogs share two CPUs and the loop's thread waits for a
CPU for whole scheduler slices (--diagnose shows it).  --pin puts the loop's
process on the first CPU and the sender, the echo client and the busy
process on the last: the loop has a CPU, as with one other CPU-bound
process and traffic that arrives from a NIC; --body-us 5 then keeps the
consumer saturated with the sender at half a CPU.

The C sender runs in its own process.  With --sender thread it runs in a
thread of the loop's process, as this benchmark did until 2026-12-06: that
thread takes the GIL between its calls (every 100,000 frames), and when it
waits for a CPU while holding it, the loop's thread waits too - a stall an
application whose traffic comes from elsewhere does not have.  With
--busy a second, CPU-bound process runs throughout (issue 11's target:
timer lateness p99 <= 2 ms and max <= 5 ms under that load).

--diagnose says where the tail comes from: the timer task reads its
thread's /proc/thread-self/schedstat at every tick, so for each tick more
than 2 ms late it knows how much of that lateness the loop's thread spent
runnable but waiting for a CPU (the scheduler's share) - printed as the
late ticks' count, the median and minimum share, and the median and
maximum of the rest of their lateness (the part the loop, the consumer
or the kernel's interrupts on that CPU account for, and waits for the GIL); and
the zcap consumer time-stamps every packet to measure its slices (runs of
packets with no gap over 50 us: the time it holds the loop between two
yields or waits),
printed as p50 / p99 / max in ms, with how many of the late ticks had a
slice over 2 ms running.  The time stamps cost ~10% of the consumer's
speed, so the lateness columns of a --diagnose run are not the headline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import multiprocessing
import os
import socket
import statistics
import threading
import time

import zcap
from zcap.testbed import Sender, Testbed

MESSAGE = b"x" * 64


def echo_client(port: int, seconds: float, out: multiprocessing.Queue) -> None:
    rtts = []
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t0 = time.perf_counter()
            s.sendall(MESSAGE)
            got = 0
            while got < len(MESSAGE):
                got += len(s.recv(4096))
            rtts.append(time.perf_counter() - t0)
            time.sleep(0.002)
    out.put(rtts)


LATE_S = 0.002          # --diagnose looks at the ticks later than this
SLICE_GAP_NS = 50_000   # --diagnose: a longer gap between two packets ends a slice


def runqueue_wait_ns(fd: int) -> int:
    """The calling thread's time runnable but waiting for a CPU (schedstat's 2nd field)."""
    return int(os.pread(fd, 128, 0).split()[1])


async def timer_task(lateness: list, window: list, period: float = 0.001,
                     late_ticks: list | None = None) -> None:
    """Record how late a 1 ms sleep wakes, while window[0] (the measuring flag) is set.

    late_ticks (--diagnose): for each tick later than LATE_S, (lateness,
    run-queue wait during the tick, the tick's wall-clock interval).
    """
    loop = asyncio.get_running_loop()
    fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY) if late_ticks is not None else -1
    try:
        while True:
            due = loop.time() + period
            if fd >= 0:
                wait0, t0 = runqueue_wait_ns(fd), time.perf_counter_ns()
            await asyncio.sleep(period)
            if window[0]:
                late = loop.time() - due
                lateness.append(late)
                if fd >= 0 and late > LATE_S:
                    late_ticks.append((late, runqueue_wait_ns(fd) - wait0,
                                       (t0, time.perf_counter_ns())))
    finally:
        if fd >= 0:
            os.close(fd)


def flood_until(netns: str, iface: str, frame: bytes, stop) -> None:
    """The C sender at its maximum rate until `stop` is set (bounded: 5 s per call)."""
    with Sender(netns, iface) as s:
        while not stop.is_set():
            s.send_sequence(frame, 100_000, max_seconds=5)


async def echo_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(4096):
        writer.write(data)
        await writer.drain()
    writer.close()


async def floor_consumer(budget_us: int, counter: list) -> None:
    """The floor: busy Python work that yields once per budget, like a fair consumer."""
    budget = budget_us / 1e6
    clock = time.perf_counter
    while True:
        start = clock()
        while True:
            for _ in range(32):
                counter[0] += 1
            if clock() - start >= budget:
                break
        await asyncio.sleep(0)


def slices_of(stamps: list) -> list:
    """(start, end) ns of each run of packets with no gap over SLICE_GAP_NS."""
    out = []
    if not stamps:
        return out
    start = prev = stamps[0]
    for t in stamps[1:]:
        if t - prev > SLICE_GAP_NS:
            out.append((start, prev))
            start = t
        prev = t
    out.append((start, prev))
    return out


async def scenario(tb: Testbed | None, seconds: float,
                   budget_us: int = zcap.capture._ring.DEFAULT_BUDGET_US,
                   consumer_kind: str = "zcap", body_us: float = 0.0,
                   diagnose: bool = False, sender_kind: str = "process",
                   others_cpus: set | None = None) -> tuple[list, list, int, int, dict]:
    """consumer_kind: "zcap" (async for), "floor" (the Python loop) or "none"
    (the capture is opened and never read).  others_cpus (--pin): where the
    echo client and the sender process run."""
    floor = consumer_kind == "floor"
    body_s = body_us / 1e6
    late_ticks: list | None = [] if diagnose else None
    stamps: list = []
    server = await asyncio.start_server(echo_handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    results: multiprocessing.Queue = multiprocessing.Queue()
    client = multiprocessing.Process(target=pinned,
                                     args=(others_cpus, echo_client, port, seconds, results))
    lateness: list = []
    window = [False]                  # measure only while the load is steady
    timer = asyncio.create_task(timer_task(lateness, window, late_ticks=late_ticks))
    captured = dropped = 0
    if tb is None:
        client.start()
        window[0] = True
        await asyncio.sleep(seconds)
        window[0] = False
    else:
        in_thread = sender_kind == "thread"
        stop = threading.Event() if in_thread else multiprocessing.Event()
        flood = functools.partial(flood_until, tb.netns, tb.a, tb.frame(64), stop)
        if not in_thread:
            flood = functools.partial(pinned, others_cpus, flood)

        async with contextlib.AsyncExitStack() as stack:
            cap = None if floor else await stack.enter_async_context(
                zcap.open_live(tb.b, netns=tb.netns))
            sender = (threading.Thread(target=flood, daemon=True) if in_thread
                      else multiprocessing.Process(target=flood, daemon=True))
            sender.start()

            async def consume() -> None:
                nonlocal captured
                cap.budget_us = budget_us
                clock = time.perf_counter
                stamp = time.perf_counter_ns
                note = stamps.append
                async for _ in cap:
                    captured += 1
                    if diagnose and window[0]:
                        note(stamp())
                    if body_s:
                        end = clock() + body_s
                        while clock() < end:
                            pass

            async def unread() -> None:
                await asyncio.Event().wait()    # the capture stays open, nobody reads it

            passes = [0]
            consumer = asyncio.create_task(floor_consumer(budget_us, passes) if floor
                                           else unread() if consumer_kind == "none"
                                           else consume())
            await asyncio.sleep(0.3)          # the flood is on
            client.start()
            window[0] = True
            start = captured
            drops_before = cap.stats().dropped if cap is not None else 0
            await asyncio.sleep(seconds)
            window[0] = False
            captured -= start
            dropped = cap.stats().dropped - drops_before if cap is not None else 0
            consumer.cancel()
            if consumer_kind != "zcap":
                captured = dropped = 0
            stop.set()
            await asyncio.get_running_loop().run_in_executor(None, sender.join, 10)
    rtts = await asyncio.get_running_loop().run_in_executor(None, results.get)
    client.join(5)
    timer.cancel()
    server.close()
    return (lateness, rtts, captured, dropped,
            diagnosis(late_ticks, slices_of(stamps)) if diagnose else {})


def diagnosis(late_ticks: list, slices: list) -> dict:
    """Where the late ticks' lateness went (see --diagnose)."""
    shares = [min(1.0, wait / 1e9 / late) for late, wait, _ in late_ticks]
    rest = [max(0.0, late - wait / 1e9) for late, wait, _ in late_ticks]
    lengths = [(end - start) / 1e9 for start, end in slices]
    long_slices = [(s, e) for s, e in slices if e - s > LATE_S * 1e9]
    during_long = 0
    for _, _, (t0, t1) in late_ticks:
        if any(s < t1 and e > t0 for s, e in long_slices):
            during_long += 1
    return {"late": len(late_ticks), "shares": shares, "rest": rest, "slices": percentiles(lengths),
            "during_long_slice": during_long}


def pinned(cpus: set | None, target, *args) -> None:
    """Run target(*args) on `cpus` (--pin), or wherever the scheduler likes."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    target(*args)


def cpu_hog(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def percentiles(values: list) -> tuple[float, float, float] | None:
    """p50, p99, max in ms."""
    ms = sorted(v * 1000 for v in values)
    if not ms:
        return None
    return statistics.median(ms), ms[min(len(ms) - 1, int(len(ms) * 0.99))], ms[-1]


def describe(rounds: list) -> str:
    """Medians over rounds of each percentile."""
    got = [r for r in rounds if r is not None]
    if not got:
        return "n/a"
    return " / ".join(f"{statistics.median(r[i] for r in got):.2f}" for i in range(3))


def print_diagnosis(results: dict) -> None:
    print(f"\n| loop | consumer | ticks > {LATE_S * 1e3:g} ms late (all rounds) "
          "| their lateness spent waiting for a CPU: median / min "
          "| the rest of their lateness: median / max (ms) "
          "| consumer slices p50 / p99 / max (ms) | late ticks during a slice > 2 ms |"
          "\n|---|---|---|---|---|---|---|")
    for (loop_name, label), (_, _, _, diags) in results.items():
        shares = [s for d in diags for s in d["shares"]]
        share = (f"{statistics.median(shares):.0%} / {min(shares):.0%}" if shares else "-")
        rest = [r * 1e3 for d in diags for r in d["rest"]]
        rest_ms = f"{statistics.median(rest):.2f} / {max(rest):.2f}" if rest else "-"
        slices = [d["slices"] for d in diags if d.get("slices")]
        sl = describe(slices) if slices else "-"
        during = sum(d["during_long_slice"] for d in diags) if slices else "-"
        print(f"| {loop_name} | {label} | {sum(d['late'] for d in diags)} | {share} | {rest_ms} | {sl} "
              f"| {during} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--busy", action="store_true", help="run a CPU-bound process alongside")
    p.add_argument("--loops", default="asyncio,uvloop")
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds; medians reported")
    p.add_argument("--only", default="idle,flood,floor,capturing")
    p.add_argument("--budget-us", type=int, default=zcap.capture._ring.DEFAULT_BUDGET_US)
    p.add_argument("--body-us", type=float, default=0.0,
                   help="busy work per packet in the zcap consumer (e.g. 5: busy all the time, "
                        "like the floor)")
    p.add_argument("--sender", choices=("process", "thread"), default="process",
                   help="where the C sender runs: its own process (default), or a thread of "
                        "the loop's process, as before (its GIL hand-offs at each call then "
                        "stall the loop whenever the CPUs are contended)")
    p.add_argument("--pin", action="store_true",
                   help="the loop's process on the first CPU; the sender, the echo client and "
                        "the busy process share the last (on this rig the sender's softirq "
                        "copies are a third CPU hog, which real traffic from a NIC is not)")
    p.add_argument("--diagnose", action="store_true",
                   help="split the late ticks' lateness: run-queue wait vs the rest; "
                        "the consumer's slice lengths")
    args = p.parse_args()
    labels = args.only.split(",")
    loops = args.loops.split(",")
    results: dict = {(lp, lb): ([], [], [], []) for lp in loops for lb in labels}
    hog = None
    cpus = sorted(os.sched_getaffinity(0))
    others_cpus = {cpus[-1]} if args.pin and len(cpus) > 1 else None
    if args.busy:
        n = args.rounds * len(loops) * len(labels)
        hog = multiprocessing.Process(target=pinned, daemon=True,
                                      args=(others_cpus, cpu_hog, n * (args.seconds + 3) + 10))
        hog.start()
    if others_cpus:
        os.sched_setaffinity(0, {cpus[0]})
    load_start = os.getloadavg()
    with Testbed() as tb:
        for _ in range(args.rounds):
            for loop_name in loops:
                if loop_name == "uvloop":
                    import uvloop
                    run = uvloop.run
                else:
                    run = asyncio.run
                for label in labels:
                    bed = None if label == "idle" else tb
                    kind = {"floor": "floor", "flood": "none"}.get(label, "zcap")
                    lateness, rtts, captured, dropped, diag = run(scenario(
                        bed, args.seconds, args.budget_us, consumer_kind=kind,
                        body_us=args.body_us, diagnose=args.diagnose, sender_kind=args.sender,
                        others_cpus=others_cpus))
                    late, rtt, rate, diags = results[(loop_name, label)]
                    late.append(percentiles(lateness))
                    rtt.append(percentiles(rtts))
                    rate.append((captured / args.seconds, dropped / max(captured + dropped, 1)))
                    diags.append(diag)
    load_end = os.getloadavg()
    print("| loop | consumer | captured | 1 ms timer lateness p50 / p99 / max (ms) "
          "| echo RTT p50 / p99 / max (ms) |\n|---|---|---|---|---|")
    for (loop_name, label), (late, rtt, rate, _) in results.items():
        shown = (f"{statistics.median(r for r, _ in rate) / 1e3:,.0f} kpps, "
                 f"{statistics.median(d for _, d in rate):.0%} dropped"
                 if label == "capturing" else "-")
        name = {"idle": "idle (no flood)", "floor": "floor (Python loop, sleep(0))",
                "flood": "flood, no consumer (capture unread)",
                "capturing": "zcap async for" + (f" (+{args.body_us:g} us/packet)" if args.body_us
                                                   else "")}[label]
        print(f"| {loop_name} | {name} | {shown} | {describe(late)} | {describe(rtt)} |")
    pinning = f"pinned: loop on CPU {cpus[0]}, the others on CPU {cpus[-1]}; " if others_cpus else ""
    print(f"\n{args.rounds} round(s) of {args.seconds:g} s, medians; second CPU-bound process: "
          f"{'yes' if args.busy else 'no'}; sender in a {args.sender}; {pinning}"
          f"load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end")
    if args.diagnose:
        print_diagnosis(results)
    if hog is not None:
        hog.terminate()
        hog.join(5)


if __name__ == "__main__":
    main()
