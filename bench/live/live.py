"""Live capture: each consumer reads while zcap's C sender sends.

    sudo python3 bench/live/live.py             # 300,000 frames at max, 200k and 100k pps, 3 runs
    sudo python3 bench/live/live.py --quick     # 100,000 frames at max and 100k pps, 1 run
    sudo python3 bench/live/live.py --only zcap-iter,c-libpcap --rates 0,50000

For each consumer, rate and run: start the consumer in its own process in a
private network namespace (zcap.testbed) with the same buffer (8 MiB ring or
socket buffer, 10 ms block timeout), pinned to CPU 1; send N sequence-numbered
frames from this process, pinned to CPU 0, with zcap's C sender
(send_sequence: sendmmsg batches, paced to the rate; 0 = as fast as it can);
wait until the consumer has gone idle; then end it with an end marker (a
frame numbered N, sent until it exits) or, for tcpdump, SIGINT.

Reported per consumer and rate: captured / sent, the kernel's drop counter,
the consumer's CPU time per captured packet (/proc/PID/task/*/schedstat,
from before the first frame until it went idle; the JSON and the progress
lines split it into user and system time from /proc/PID/stat) and its system calls per
captured packet (perf stat -e raw_syscalls:sys_enter -p PID over the same
window).  On a veth the kernel's receive work (including the copy into the
ring) runs in the sender's send() on CPU 0, so the consumer's CPU is what
reading costs.  Every run is bounded in count and in time.

The loop floors (`loop-floor-poll`, `-asyncio`, `-uvloop`) capture
nothing: bench/live/loop_floor.py sleeps on a timer that fires every block
timeout - as often as a reader wakes while blocks retire on their timer
rather than full, which at this buffer's 1 MiB blocks is every rate the
sender reaches with 64-byte frames - on the consumers' CPU while the same
frames are sent.  Their CPU per frame sent is what the wake-ups alone cost
at that rate; asyncio's or uvloop's minus poll's is the least an
`async for` reader can add to `for pkt in cap` there, shown beside what
zcap's readers add.  Results go to
stdout as Markdown and to bench/results/live-SIZE.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import select
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # bench/
import benchpath  # noqa: E402,F401  (every family folder on sys.path)
import drain
from tcpdump_run import LIBPCAP_TIMEOUT_MS, Tcpdump, cpu_ns

from zcap.testbed import Testbed

from drain_child import SYSCALLS, ChildReader, PerfCounter
from drain_ring import FRAME_BYTES, FRAME_SIZES, RingPlan

BENCH_DIR = Path(__file__).resolve().parent
WORKER = BENCH_DIR / "live_worker.py"

# 8 MiB: a quarter of zcap's default ring, so that at the sender's ~300 kpps
# only ~0.2 s of backlog fits and a consumer that cannot keep up drops.
PLAN = RingPlan(block_size=1 << 20, block_count=8, timeout_ms=10)
FULL_COUNT, FULL_RATES, FULL_REPEAT = 300_000, (0, 200_000, 100_000), 3
QUICK_COUNT, QUICK_RATES, QUICK_REPEAT = 100_000, (0, 100_000), 1
SCAPY_COUNT = 10_000            # scapy reads ~5,000 packets/s: its backlog must stay short
SENDER_CPU, CONSUMER_CPU = 0, 1
IDLE_SAMPLE_S = 0.2             # the consumer is idle when it used < 2% CPU in this time
IDLE_CPU_NS = 4_000_000
IDLE_LIMIT_S = 120.0
END_TIMEOUT_S = 30.0
FLOOR_WORKER = BENCH_DIR / "loop_floor.py"
# the event loops' own wake-ups, no capture (loop_floor.py)
FLOOR_LOOPS = {"loop-floor-poll": "poll", "loop-floor-asyncio": "asyncio",
               "loop-floor-uvloop": "uvloop"}
CONSUMER_NAMES = ["zcap-iter", "zcap-batch", "zcap-numpy", "zcap-cython", "zcap-async-asyncio",
                  "zcap-async-uvloop", "zcap-copy", "c-tpacket-v3", "c-libpcap", "tcpdump",
                  "pcapy-ng", "python-socket", "scapy", *FLOOR_LOOPS]


@dataclass
class LiveRun:
    sent: int
    packets: int            # captured (numbered below N)
    received: int           # the kernel's counters, as the consumer reports them
    dropped: int
    cpu_ns: int
    syscalls: Optional[int]
    send_seconds: float
    user_ns: int = 0        # of cpu_ns, from /proc/PID/stat (clock-tick resolution)
    sys_ns: int = 0
    wakes: int = 0          # loop floors: wake-ups in the window (packets = frames sent meanwhile)

    @property
    def captured_ratio(self) -> float:
        return self.packets / self.sent if self.sent else 0.0

    @property
    def cpu_ns_per_packet(self) -> Optional[float]:
        return self.cpu_ns / self.packets if self.packets else None


@dataclass
class LiveResult:
    name: str
    rate: int
    runs: list[LiveRun] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    skipped: Optional[str] = None

    def as_json(self) -> dict:
        cpu = [r.cpu_ns_per_packet for r in self.runs if r.cpu_ns_per_packet is not None]
        syscalls = [r.syscalls / r.packets for r in self.runs if r.syscalls is not None and r.packets]
        wakes = [r.cpu_ns / r.wakes for r in self.runs if r.wakes]
        return {"name": self.name, "rate": self.rate, "skipped": self.skipped,
                "cpu_ns_per_wake": summary(wakes),
                "captured_ratio": summary([r.captured_ratio for r in self.runs]),
                "dropped": summary([r.dropped for r in self.runs]),
                "cpu_ns_per_packet": summary(cpu),
                "syscalls_per_packet": summary(syscalls),
                "sent_pps": summary([r.sent / r.send_seconds for r in self.runs if r.send_seconds]),
                "runs": [asdict(r) for r in self.runs], "failures": self.failures}


def summary(values: list[float]) -> Optional[dict]:
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


# ---------------------------------------------------------------------------
# one run

class LiveReader(ChildReader):
    """A reader in live mode: READY, then DONE once it saw the end marker."""

    def done(self, timeout: float) -> Optional[dict]:
        """Its DONE payload, or None if it has said nothing within `timeout`."""
        if b"\n" not in self._pending and not select.select([self.proc.stdout], [], [], timeout)[0]:
            return None
        return self._expect("DONE", 5.0)


def reader_command(name: str, tb: Testbed, count: int, tools: drain.Tools) -> list[str]:
    in_netns = ["ip", "netns", "exec", tb.netns]
    geometry = [str(PLAN.block_size), str(PLAN.block_count), str(PLAN.timeout_ms)]
    if name == "c-tpacket-v3":
        return in_netns + [str(tools.binaries[name]), tb.b, str(count), *geometry, "live"]
    if name == "c-libpcap":
        return in_netns + [str(tools.binaries[name]), tb.b, str(count), str(PLAN.total_bytes),
                           str(PLAN.timeout_ms), "live"]
    return in_netns + [sys.executable, str(WORKER), name, tb.b, str(count), *geometry,
                       str(tools.cython_dir or "")]


def wait_until_idle(pid: int) -> None:
    """Until the consumer's CPU use stops: it has read all it will read."""
    deadline = time.monotonic() + IDLE_LIMIT_S
    last = cpu_ns(pid)
    while time.monotonic() < deadline:
        time.sleep(IDLE_SAMPLE_S)
        now = cpu_ns(pid)
        if now - last < IDLE_CPU_NS:
            return
        last = now
    raise TimeoutError(f"the consumer was still busy {IDLE_LIMIT_S:.0f} s after the sender")


def send(tb: Testbed, template: bytes, count: int, rate: int, first_seq: int = 0) -> tuple[int, float]:
    with tb.sender() as sender:
        start = time.perf_counter()
        sent = sender.send_sequence(template, count, first_seq=first_seq, pps=rate,
                                    max_seconds=max(60.0, 3 * count / rate if rate else 0))
        return sent, time.perf_counter() - start


def user_sys_ns(pid: int) -> tuple[int, int]:
    """The process's user and system CPU time so far (/proc/PID/stat, clock ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick_ns = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    return int(fields[11]) * tick_ns, int(fields[12]) * tick_ns


def measure(pid: int, tb: Testbed, template: bytes, count: int, rate: int,
            block_timeout_ms: int = PLAN.timeout_ms) -> tuple[int, int, float, Optional[int]]:
    """Send while counting the consumer's CPU and syscalls: (sent, cpu_ns, seconds, syscalls).

    The user/system split of the same window is left in LAST_USER_SYS.

    After sending, wait for the kernel to retire the last block (between one
    and two block timeouts) before waiting for the consumer to go idle.
    """
    os.sched_setaffinity(pid, {CONSUMER_CPU})
    with PerfCounter(pid, events=(SYSCALLS,)) as perf:
        perf.enable()
        before = cpu_ns(pid)
        user0, sys0 = user_sys_ns(pid)
        sent, seconds = send(tb, template, count, rate)
        time.sleep(2 * block_timeout_ms / 1000 + 0.05)
        wait_until_idle(pid)
        used = cpu_ns(pid) - before
        user1, sys1 = user_sys_ns(pid)
        LAST_USER_SYS[:] = [user1 - user0, sys1 - sys0]
        perf.disable()
        syscalls = perf.finish()[SYSCALLS]
    return sent, used, seconds, syscalls


LAST_USER_SYS = [0, 0]


def run_child(name: str, tb: Testbed, template: bytes, count: int, rate: int,
              tools: drain.Tools) -> LiveRun:
    with LiveReader(reader_command(name, tb, count, tools)) as reader:
        sent, used, seconds, syscalls = measure(reader.pid, tb, template, count, rate)
        deadline = time.monotonic() + END_TIMEOUT_S
        result = None
        while result is None:
            if time.monotonic() > deadline:
                raise TimeoutError("the consumer did not see the end marker")
            send(tb, template, 1, 0, first_seq=count)
            result = reader.done(0.05)
    return LiveRun(sent, result["packets"], result["received"], result["dropped"], used,
                   syscalls, seconds, *LAST_USER_SYS)


def run_tcpdump(tb: Testbed, template: bytes, count: int, rate: int) -> LiveRun:
    with Tcpdump(tb.netns, tb.b, PLAN.total_bytes, None) as tcpdump:
        sent, used, seconds, syscalls = measure(tcpdump.pid, tb, template, count, rate,
                                                LIBPCAP_TIMEOUT_MS)
        tcpdump.interrupt()
        stats = tcpdump.wait_exit(END_TIMEOUT_S)
    return LiveRun(sent, stats.captured, stats.received, stats.dropped, used, syscalls, seconds,
                   *LAST_USER_SYS)


def run_floor(name: str, tb: Testbed, template: bytes, count: int, rate: int) -> LiveRun:
    """An event loop's wake-ups alone, on the consumers' CPU while the sender sends.

    The floor process sleeps on a timer with the block timeout's period
    until the `count` frames are sent (SIGUSR1), so its CPU per frame sent is
    what the loop alone costs a reader at that rate (loop_floor.py).
    """
    bound = 3 * count / rate if rate else 60.0
    cmd = [sys.executable, str(FLOOR_WORKER), FLOOR_LOOPS[name], str(PLAN.timeout_ms), f"{bound:.3f}"]
    with LiveReader(cmd) as reader:
        os.sched_setaffinity(reader.pid, {CONSUMER_CPU})
        reader.arm()
        sent, send_seconds = send(tb, template, count, rate)
        os.kill(reader.pid, signal.SIGUSR1)
        result = reader.done(END_TIMEOUT_S + bound)
        if result is None:
            raise TimeoutError("the loop floor did not finish")
    return LiveRun(sent, sent, 0, 0, result["cpu_ns"], None, send_seconds, wakes=result["wakes"])


def run_once(name: str, tb: Testbed, template: bytes, count: int, rate: int,
             tools: drain.Tools) -> LiveRun:
    if name in FLOOR_LOOPS:
        return run_floor(name, tb, template, count, rate)
    if name == "tcpdump":
        return run_tcpdump(tb, template, count, rate)
    return run_child(name, tb, template, count, rate, tools)


# ---------------------------------------------------------------------------
# reporting

def fmt(s: Optional[dict], spec: str, scale: float = 1.0) -> str:
    if not s:
        return "n/a"
    return " / ".join(format(s[k] * scale, spec) for k in ("min", "median", "max"))


def markdown_table(results: list[LiveResult], sent_count: dict[str, int]) -> str:
    lines = ["| rate | consumer | frames | sent pps (median) | captured % min / med / max "
             "| kernel drops (median) | CPU ns/packet min / med / max | **vs c-libpcap** "
             "| syscalls/packet (median) |",
             "|---|---|---|---|---|---|---|---|---|"]
    refs = {r.rate: r.as_json()["cpu_ns_per_packet"] for r in results if r.name == "c-libpcap"}
    for r in results:
        if r.name in FLOOR_LOOPS:
            continue
        rate = "max" if r.rate == 0 else f"{r.rate // 1000}k pps"
        if r.skipped or not r.runs:
            why = f"skipped: {r.skipped}" if r.skipped else "failed: " + "; ".join(r.failures)[:200]
            lines.append(f"| {rate} | {r.name} | | | {why} | | | | |")
            continue
        j = r.as_json()
        ref = refs.get(r.rate)
        ratio = (f"{j['cpu_ns_per_packet']['median'] / ref['median']:.2f}x"
                 if ref and j["cpu_ns_per_packet"] else "n/a")
        syscalls = (f"{j['syscalls_per_packet']['median']:.4f}" if j["syscalls_per_packet"]
                    else "n/a")
        lines.append(f"| {rate} | {r.name} | {sent_count[r.name]:,} "
                     f"| {j['sent_pps']['median']:,.0f} | {fmt(j['captured_ratio'], '.2f', 100)} "
                     f"| {j['dropped']['median']:,.0f} "
                     f"| {fmt(j['cpu_ns_per_packet'], '.0f')} | **{ratio}** | {syscalls} |")
    return "\n".join(lines)


def floor_table(results: list[LiveResult]) -> str:
    """The loop floors beside the readers they bound: what `async for` adds per
    wake-up over `for`, and the least any reader on that loop can add."""
    by = {(r.name, r.rate): r.as_json() for r in results if r.runs}
    lines = ["| rate | loop | wake-ups (median) | CPU µs/wake-up min / med / max "
             "| CPU ns per frame sent (median) | over poll, ns per frame "
             "| zcap reader on this loop, ns/packet | zcap over zcap-iter, ns/packet |",
             "|---|---|---|---|---|---|---|---|"]
    readers = {"loop-floor-poll": "zcap-iter", "loop-floor-asyncio": "zcap-async-asyncio",
               "loop-floor-uvloop": "zcap-async-uvloop"}
    for r in results:
        if r.name not in FLOOR_LOOPS or not r.runs:
            continue
        j = by[(r.name, r.rate)]
        per_frame = j["cpu_ns_per_packet"]["median"]
        poll = by.get(("loop-floor-poll", r.rate))
        over = f"{per_frame - poll['cpu_ns_per_packet']['median']:+.0f}" if poll else "n/a"
        reader, sync = by.get((readers[r.name], r.rate)), by.get(("zcap-iter", r.rate))
        reader_ns = f"{reader['cpu_ns_per_packet']['median']:.0f}" if reader else "n/a"
        reader_over = (f"{reader['cpu_ns_per_packet']['median'] - sync['cpu_ns_per_packet']['median']:+.0f}"
                       if reader and sync else "n/a")
        wakes = statistics.median(run["wakes"] for run in j["runs"])
        rate = "max" if r.rate == 0 else f"{r.rate // 1000}k pps"
        lines.append(f"| {rate} | {FLOOR_LOOPS[r.name]} | {wakes:,.0f} "
                     f"| {fmt(j['cpu_ns_per_wake'], '.1f', 1e-3)} | {per_frame:.0f} | {over} "
                     f"| {reader_ns} | {reader_over} |")
    return "\n".join(lines) if len(lines) > 2 else ""


# ---------------------------------------------------------------------------
# command line

def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, help=f"frames per run (default {FULL_COUNT:,})")
    p.add_argument("--rates", help="comma-separated packets/s, 0 = as fast as possible "
                                   f"(default {','.join(map(str, FULL_RATES))})")
    p.add_argument("--repeat", type=int, help=f"runs per consumer and rate (default {FULL_REPEAT})")
    p.add_argument("--quick", action="store_true",
                   help=f"N={QUICK_COUNT:,}, rates {QUICK_RATES}, {QUICK_REPEAT} run")
    p.add_argument("--only", help="comma-separated consumers: " + ",".join(CONSUMER_NAMES))
    p.add_argument("--frame-size", type=int, choices=FRAME_SIZES, default=FRAME_BYTES)
    p.add_argument("--scapy-count", type=int, default=SCAPY_COUNT,
                   help=f"frames per run for scapy (default {SCAPY_COUNT:,})")
    p.add_argument("--json", type=Path, help="default bench/results/live-SIZE.json")
    args = p.parse_args(argv)
    args.count = args.count or (QUICK_COUNT if args.quick else FULL_COUNT)
    args.repeat = args.repeat or (QUICK_REPEAT if args.quick else FULL_REPEAT)
    args.rates = ([int(r) for r in args.rates.split(",")] if args.rates
                  else list(QUICK_RATES if args.quick else FULL_RATES))
    args.names = args.only.split(",") if args.only else CONSUMER_NAMES
    unknown = sorted(set(args.names) - set(CONSUMER_NAMES))
    if unknown:
        p.error(f"unknown consumer(s) {', '.join(unknown)}; choose from {', '.join(CONSUMER_NAMES)}")
    args.json = args.json or drain.RESULTS_DIR / f"live-{args.frame_size}.json"
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("needs root for AF_PACKET sockets and network namespaces: sudo python3 bench/live/live.py")
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs 2 CPUs: one for the sender, one for the consumer")
    drain.limit_blas_threads()
    counts = {name: min(args.count, args.scapy_count) if name == "scapy" else args.count
              for name in args.names}
    results = [LiveResult(name, rate) for rate in args.rates for name in args.names]
    meta = drain.machine_info() | {"date": datetime.datetime.now().isoformat(timespec="seconds"),
                                   "count": args.count, "counts": counts, "rates": args.rates,
                                   "repeat": args.repeat, "frame_bytes": args.frame_size,
                                   "buffer": asdict(PLAN)}
    os.sched_setaffinity(0, {SENDER_CPU})
    with tempfile.TemporaryDirectory(prefix="zcap-live-") as workdir:
        tools = drain.build_tools([c for c in drain.CONSUMERS if c.name in args.names], Path(workdir))
        for r in results:
            r.skipped = tools.unavailable.get(r.name)
        for name, reason in tools.unavailable.items():
            drain.progress(f"note: skipping {name}: {reason}")
        with Testbed() as tb:
            template = tb.frame(args.frame_size)
            for run_index in range(args.repeat):
                for r in results:
                    if r.skipped:
                        continue
                    rate = "max" if r.rate == 0 else f"{r.rate} pps"
                    drain.progress(f"run {run_index + 1}/{args.repeat} {r.name} at {rate} ...")
                    try:
                        run = run_once(r.name, tb, template, counts[r.name], r.rate, tools)
                    except Exception as exc:        # record, report, go on with the others
                        r.failures.append(f"{type(exc).__name__}: {exc}")
                        drain.progress(f"  FAILED: {type(exc).__name__}: {exc}")
                        continue
                    r.runs.append(run)
                    if run.wakes:
                        drain.progress(f"  {run.wakes} wake-ups, {run.cpu_ns / run.wakes / 1000:.1f} "
                                       f"CPU µs each, {run.cpu_ns_per_packet:.0f} ns per frame sent")
                        continue
                    drain.progress(f"  {run.packets}/{run.sent} captured, {run.dropped} dropped, "
                                   f"{run.cpu_ns_per_packet or 0:.0f} CPU ns/packet "
                                   f"({run.user_ns / 1e6:.0f} ms user, {run.sys_ns / 1e6:.0f} ms system), "
                                   f"{run.syscalls} syscalls, {run.sent / run.send_seconds:,.0f} pps")
    meta["loadavg_end"] = os.getloadavg()
    table = markdown_table(results, counts)
    floors = floor_table(results)
    print(f"## Live: {args.frame_size}-byte frames, {args.repeat} runs per consumer and rate\n")
    print(table)
    if floors:
        print("\n### The event loops' floor (no capture; wake-ups every block timeout)\n")
        print(floors)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "table_markdown": table,
                                     "floor_table_markdown": floors,
                                     "results": [r.as_json() for r in results]}, indent=2) + "\n")
    print(f"\n(raw numbers: {args.json})")
    return 0 if all(r.runs or r.skipped for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
