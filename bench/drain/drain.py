"""Drain a pre-filled ring: ns per packet and system calls per packet.

    sudo python3 bench/drain/drain.py            # N = 1,000,000 frames, 5 runs per consumer
    sudo python3 bench/drain/drain.py --quick    # N = 200,000, 3 runs
    sudo python3 bench/drain/drain.py --only zcap-iter,c-tpacket-v3 --count 500000
    sudo python3 bench/drain/drain.py --frame-size 1500 --count 200000

(bench/run_all.py runs it for 64- and 1500-byte frames and installs the peers.)

For each consumer: open a fresh capture on a veth pair in a private network
namespace (zcap.testbed), send N sequence-numbered frames (64 bytes unless
--frame-size) while nobody reads, wait for the kernel to retire the last block, check that it
received all N and dropped none, then time reading all N (each checks that
the sequence numbers count up from 0).  Reported: min/median/max ns per
packet over the runs, the ratio to the C readers, and (in a separate run,
under `perf stat -e raw_syscalls:sys_enter` enabled only while draining) the
system calls per packet.

Consumers: python-floor (the Python loop over a list of bytes), zcap-iter,
zcap-batch, zcap-numpy, zcap-numpy-readme and zcap-numpy-readme-take (the
README's two numpy idioms, as written there), zcap-field (batch.field()
gather), zcap-cython, zcap-copy, zcap-async-asyncio/uvloop,
c-tpacket-v3 and c-libpcap (the C readers are compiled into a temporary
directory at start-up), and the peers a user would pick instead: tcpdump
(tcpdump_run.py), pcapy-ng, python-socket and scapy (peer_consumers.py).
Socket-based consumers (zcap-copy, python-socket) queue skbs, ~1 KiB each, so
they use at most --socket-count frames; scapy (~100 us per packet) uses
--scapy-count.  A peer that is not installed is skipped with the reason.
Results go to stdout as Markdown and to bench/results/drain-SIZE.json.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.util
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # bench/
import benchpath  # noqa: E402,F401  (every family folder on sys.path)
from peer_consumers import PEERS
from tcpdump_run import LIBPCAP_TIMEOUT_MS, Tcpdump, cpu_ns

import zcap
from zcap.testbed import SEQ_OFFSET, Testbed

import build_cy_consumer
from drain_child import PAGE_FAULTS, SYSCALLS, ChildReader, PerfCounter
from drain_consumers import PART_NS, SEQ, ZCAP_CONSUMERS, drain_packets
from drain_ring import (
    DEFAULT_BLOCK_SIZE,
    FRAME_BYTES,
    FRAME_SIZES,
    PrefillError,
    RingPlan,
    busy_cpus_while_sleeping,
    check_prefilled,
    prefilled_capture,
    send_frames,
)

BENCH_DIR = Path(__file__).resolve().parent
C_DIR = BENCH_DIR / "c"
WORKER = BENCH_DIR / "drain_worker.py"
PEER_WORKER = benchpath.BENCH / "peers" / "peer_worker.py"
RESULTS_DIR = benchpath.RESULTS

FULL_COUNT, FULL_REPEAT = 1_000_000, 5
QUICK_COUNT, QUICK_REPEAT = 200_000, 3
SOCKET_COUNT, SCAPY_COUNT = 200_000, 10_000
MIN_COPY_COUNT = 10_000
SOCKET_CONSUMERS = ("zcap-copy", "python-socket", "scapy")   # buffer skbs, not a ring
QUIET_CPUS = 0.15            # other processes' load below which the machine counts as quiet
BUSY_NOTE_CPUS = 0.25        # runs that started with more background load than this get a note
REFERENCES = ("c-tpacket-v3", "c-libpcap")


# ---------------------------------------------------------------------------
# results

@dataclass
class Run:
    ns_per_packet: float
    packets: int
    polls: int                     # waits for data during the drain (should be 0)
    background_cpus: float = 0.0   # other processes' load just before the drain
    counters: dict = field(default_factory=dict)


@dataclass
class ConsumerResult:
    name: str
    summary: str
    runs: list[Run] = field(default_factory=list)
    warmup_runs: list[Run] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    syscalls: Optional[dict] = None
    skipped: Optional[str] = None

    def ns(self) -> list[float]:
        return [r.ns_per_packet for r in self.runs]

    def median(self) -> Optional[float]:
        return statistics.median(self.ns()) if self.runs else None

    def as_json(self) -> dict:
        ns = self.ns()
        return {
            "summary": self.summary,
            "skipped": self.skipped,
            "ns_per_packet": ns,
            "min": min(ns) if ns else None,
            "median": self.median(),
            "max": max(ns) if ns else None,
            "runs": [asdict(r) for r in self.runs],
            "warmup_runs": [asdict(r) for r in self.warmup_runs],
            "failures": self.failures,
            "notes": self.notes,
            "syscalls": self.syscalls,
        }


# ---------------------------------------------------------------------------
# the benchmark context

@dataclass
class Tools:
    """What was built for this run, in a temporary directory."""

    cython_dir: Optional[Path] = None
    binaries: dict[str, Path] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)


class Bench:
    def __init__(self, testbed: Testbed, args: argparse.Namespace, tools: Tools) -> None:
        self.tb = testbed
        self.count = args.count
        self.frame_bytes = args.frame_size
        self.block_size = args.block_size
        self.timeout_ms = args.timeout_ms
        self.tools = tools
        self.template = testbed.frame(self.frame_bytes)
        self.copy_count = min(args.count, args.socket_count)
        self.scapy_count = min(args.count, args.scapy_count)
        self.tcpdump_exit_ns: Optional[float] = None     # see measure_tcpdump
        self._frames: Optional[list[bytes]] = None

    def count_for(self, name: str) -> int:
        if name == "scapy":
            return self.scapy_count
        return self.copy_count if name in SOCKET_CONSUMERS else self.count

    def plan_for(self, name: str) -> RingPlan:
        count = self.count_for(name)
        timeout_ms = LIBPCAP_TIMEOUT_MS if name == "tcpdump" else self.timeout_ms
        block_size = self.block_size_for(name)
        if name in SOCKET_CONSUMERS:
            return RingPlan.for_copy_mode(count, block_size, timeout_ms, self.frame_bytes)
        return RingPlan.for_ring(count, block_size, timeout_ms, self.frame_bytes)

    def block_size_for(self, name: str) -> int:
        """--block-size for every consumer; without it the bench's 4 MiB, except
        for a consumer measured at its own (zcap-headers-pass: zcap's default)."""
        own = ZCAP_CONSUMERS[name].block_size if name in ZCAP_CONSUMERS else None
        return self.block_size or own or DEFAULT_BLOCK_SIZE

    def frames(self) -> list[bytes]:
        """The N frames as bytes objects, exactly as they are sent."""
        if self._frames is None:
            head, tail = self.template[:SEQ_OFFSET], self.template[SEQ_OFFSET + 8:]
            self._frames = [head + SEQ.pack(seq) + tail for seq in range(self.count)]
        return self._frames

    def reduce_copy_count(self) -> None:
        """The socket consumers share one count, so they stay comparable."""
        self.copy_count //= 2


# ---------------------------------------------------------------------------
# measuring one run

def timed(drain: Callable[[object, int], int], source: object, count: int) -> tuple[int, int, int]:
    """(packets drained, elapsed ns, minor page faults) for one drain."""
    gc.collect()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter_ns()
    drained = drain(source, count)
    elapsed = time.perf_counter_ns() - start
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    if drained != count:
        raise RuntimeError(f"drained {drained} of {count} packets")
    return drained, elapsed, faults


def measure_python_floor(bench: Bench, name: str) -> Run:
    frames = bench.frames()
    background = busy_cpus_while_sleeping(0.5)
    drained, elapsed, faults = timed(drain_packets, frames, bench.count)
    return Run(elapsed / drained, drained, polls=0, background_cpus=background,
               counters={"page_faults": faults})


def measure_zcap(bench: Bench, name: str) -> Run:
    consumer = ZCAP_CONSUMERS[name]
    consumer.preload()
    count = bench.count_for(name)
    with prefilled_capture(bench.tb, bench.template, count, bench.plan_for(name),
                           consumer.mode) as (cap, background):
        drained, elapsed, faults = timed(consumer.drain, cap, count)
        stats = cap.stats()
    if consumer.part:                       # a self-timed part (CPU time), not the whole drain
        elapsed = PART_NS[0]
    counters = {k: getattr(stats, k) for k in ("blocks", "polls", "snapshots", "deferred", "detached",
                                               "held_total", "generation_gaps")}
    counters["page_faults"] = faults
    return Run(elapsed / drained, drained, polls=stats.polls, background_cpus=background,
               counters=counters)


def reader_command(bench: Bench, name: str) -> list[str]:
    """The process that drains for `name`: a C reader, or drain_worker.py for zcap."""
    count = bench.count_for(name)
    plan = bench.plan_for(name)
    in_netns = ["ip", "netns", "exec", bench.tb.netns]
    if name == "c-tpacket-v3":
        return in_netns + [str(bench.tools.binaries[name]), bench.tb.b, str(count),
                           str(plan.block_size), str(plan.block_count), str(plan.timeout_ms)]
    if name == "c-libpcap":
        return in_netns + [str(bench.tools.binaries[name]), bench.tb.b, str(count),
                           str(plan.total_bytes), str(plan.timeout_ms)]
    if name in PEERS:
        return in_netns + [sys.executable, str(PEER_WORKER), name, bench.tb.b, str(count),
                           str(plan.total_bytes), str(plan.timeout_ms)]
    return [sys.executable, str(WORKER), name, bench.tb.netns, bench.tb.b, str(count),
            str(plan.block_size), str(plan.block_count), str(plan.timeout_ms),
            str(bench.tools.cython_dir or "")]


def drain_in_child(bench: Bench, name: str, under_perf: bool) -> tuple[Run, dict]:
    """Prefill for a reader process and let it drain; optionally count its
    system calls and page faults during the drain.  Returns (run, perf counts)."""
    count = bench.count_for(name)
    plan = bench.plan_for(name)
    counts = {}
    with ChildReader(reader_command(bench, name)) as reader:
        background = send_frames(bench.tb, bench.template, count, plan)
        armed = reader.arm()
        check_prefilled(armed["received"], armed["dropped"], count, name)
        if under_perf:
            with PerfCounter(reader.pid) as perf:
                perf.enable()
                done = reader.drain()
                perf.disable()
                counts = perf.finish()
        else:
            done = reader.drain()
    if done["packets"] != count:
        raise RuntimeError(f"{name} drained {done['packets']} of {count} packets")
    return Run(done["ns"] / count, count, polls=done["polls"], background_cpus=background), counts


def measure_c_reader(bench: Bench, name: str) -> Run:
    """A reader process speaking the drain handshake: C, or a peer's worker."""
    return drain_in_child(bench, name, under_perf=False)[0]


def tcpdump_drain(bench: Bench, count: int, perf: bool = False) -> tuple[float, dict, dict]:
    """(CPU ns, perf counts, counters) of one SIGSTOP/SIGCONT drain; see tcpdump_run.py."""
    plan = bench.plan_for("tcpdump")
    with Tcpdump(bench.tb.netns, bench.tb.b, plan.total_bytes, count) as tcpdump:
        tcpdump.stop()
        background = send_frames(bench.tb, bench.template, count, plan)
        before = cpu_ns(tcpdump.pid)
        start = time.perf_counter_ns()
        counts = {}
        if perf:
            with PerfCounter(tcpdump.pid) as counter:
                counter.enable()
                tcpdump.resume()
                stats = tcpdump.wait_exit()
                counts = counter.finish()
        else:
            tcpdump.resume()
            stats = tcpdump.wait_exit()
        wall = time.perf_counter_ns() - start
    check_prefilled(stats.received, stats.dropped, count, "tcpdump")
    if stats.captured != count:
        raise RuntimeError(f"tcpdump captured {stats.captured} of {count} packets")
    return (tcpdump.rusage_ns - before, counts,
            {"wall_ns": wall, "background_cpus": background})


def measure_tcpdump(bench: Bench, name: str) -> Run:
    """CPU time from SIGCONT to exit, minus the same for a 1-packet run (the
    exit's cost: freeing the ring), median of 3 measured once per run of drain.py."""
    if bench.tcpdump_exit_ns is None:
        bench.tcpdump_exit_ns = statistics.median(tcpdump_drain(bench, 1)[0] for _ in range(3))
    count = bench.count_for(name)
    cpu, _, counters = tcpdump_drain(bench, count)
    counters["exit_ns_subtracted"] = bench.tcpdump_exit_ns
    return Run((cpu - bench.tcpdump_exit_ns) / count, count, polls=0,
               background_cpus=counters.pop("background_cpus"), counters=counters)


def tcpdump_syscalls(bench: Bench, name: str) -> tuple[Run, dict]:
    count = bench.count_for(name)
    cpu, counts, counters = tcpdump_drain(bench, count, perf=True)
    return Run(cpu / count, count, polls=0, counters=counters), counts


def child_syscalls(bench: Bench, name: str) -> tuple[Run, dict]:
    return drain_in_child(bench, name, under_perf=True)


@dataclass(frozen=True)
class Consumer:
    name: str
    summary: str
    measure: Callable[[Bench, str], Run]
    # a run under perf: (run, perf counts); None for python-floor, which has
    # no capture to make system calls
    syscall_run: Optional[Callable[[Bench, str], tuple[Run, dict]]] = child_syscalls


CONSUMERS = [
    Consumer("python-floor", "the same loop over a list of N bytes objects", measure_python_floor,
             syscall_run=None),
    *(Consumer(name, c.summary, measure_zcap) for name, c in ZCAP_CONSUMERS.items()),
    Consumer("c-tpacket-v3", "C, own TPACKET_V3 ring, same geometry and reserve", measure_c_reader),
    Consumer("c-libpcap", "C, libpcap pcap_dispatch (its own V3 ring)", measure_c_reader),
    Consumer("tcpdump", "tcpdump -w /dev/null -B (SIGSTOP'd while filled; CPU time)",
             measure_tcpdump, tcpdump_syscalls),
    *(Consumer(name, summary, measure_c_reader) for name, (_, _, summary) in PEERS.items()),
]
CONSUMER_NAMES = [c.name for c in CONSUMERS]


# ---------------------------------------------------------------------------
# building the readers

def build_tools(consumers: list[Consumer], workdir: Path) -> Tools:
    tools = Tools()
    names = {c.name for c in consumers}
    for name, (_, module, _) in PEERS.items():
        if name in names and importlib.util.find_spec(module.split(".")[0]) is None:
            tools.unavailable[name] = (f"Python module {module!r} is not installed "
                                       f"(bench/run_all.py installs it)")
    if "tcpdump" in names and shutil.which("tcpdump") is None:
        tools.unavailable["tcpdump"] = "tcpdump is not installed (apt-get install tcpdump)"
    if "zcap-cython" in names:
        try:
            tools.cython_dir = build_cy_consumer.build_in_subprocess(workdir / "cython")
            sys.path.insert(0, str(tools.cython_dir))
        except RuntimeError as exc:
            tools.unavailable["zcap-cython"] = str(exc)
    sources = {"c-tpacket-v3": ("tpacket_v3_drain.c", []), "c-libpcap": ("libpcap_drain.c", ["-lpcap"])}
    for name, (source, libs) in sources.items():
        if name in names:
            try:
                tools.binaries[name] = compile_c(C_DIR / source, workdir / Path(source).stem, libs)
            except RuntimeError as exc:
                tools.unavailable[name] = str(exc)
    return tools


def compile_c(source: Path, binary: Path, libs: list[str]) -> Path:
    if "-lpcap" in libs and not Path("/usr/include/pcap/pcap.h").exists():
        raise RuntimeError("libpcap is not installed (no /usr/include/pcap/pcap.h; "
                           "apt-get install libpcap-dev)")
    proc = subprocess.run(["gcc", "-O2", "-Wall", "-o", str(binary), str(source), *libs],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"gcc {source.name} failed:\n{proc.stderr}")
    return binary


# ---------------------------------------------------------------------------
# running

def measure_round_robin(bench: Bench, consumers: list[Consumer], repeat: int, warmup: int,
                        results: dict[str, ConsumerResult], quiet_wait: float) -> None:
    """Run 1 of every consumer, then run 2, ...: slow drifts hit all of them alike.

    The first `warmup` rounds are kept apart (first-use costs: imports,
    allocator growth, page faults on fresh memory).
    """
    for round_index in range(warmup + repeat):
        label = (f"warm-up {round_index + 1}/{warmup}" if round_index < warmup
                 else f"run {round_index - warmup + 1}/{repeat}")
        for consumer in consumers:
            result = results[consumer.name]
            if result.skipped:
                continue
            progress(f"{label} {consumer.name} ...")
            wait_for_quiet_machine(quiet_wait)
            run = measure_once(bench, consumer, result)
            if run is None:
                continue
            (result.warmup_runs if round_index < warmup else result.runs).append(run)
            busy = run.background_cpus > BUSY_NOTE_CPUS
            progress(f"  {run.ns_per_packet:8.1f} ns/packet"
                     + (f"  ({run.polls} waits for data)" if run.polls else "")
                     + (f"  (background load {run.background_cpus:.2f} CPUs)" if busy else ""))
            if busy:
                result.notes.append(f"{label} started while other processes kept "
                                    f"{run.background_cpus:.2f} CPUs busy "
                                    f"({run.ns_per_packet:.1f} ns/packet)")


def wait_for_quiet_machine(max_seconds: float) -> None:
    """Wait (bounded) until other processes leave the CPUs nearly idle."""
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline:
        if busy_cpus_while_sleeping(0.5) < QUIET_CPUS:
            return


def measure_once(bench: Bench, consumer: Consumer, result: ConsumerResult) -> Optional[Run]:
    while True:
        try:
            run = consumer.measure(bench, consumer.name)
        except PrefillError as exc:
            result.failures.append(str(exc))
            progress(f"  DROPS: {exc}")
            if consumer.name in SOCKET_CONSUMERS[:2] and bench.copy_count // 2 >= MIN_COPY_COUNT:
                bench.reduce_copy_count()
                result.notes.append(f"the kernel dropped frames at N={bench.copy_count * 2}; "
                                    f"zcap-copy and python-socket continue with "
                                    f"N={bench.copy_count}")
                continue
            return None
        except Exception as exc:            # record, report, go on with the others
            result.failures.append(f"{type(exc).__name__}: {exc}")
            progress(f"  FAILED: {type(exc).__name__}: {exc}")
            return None
        if run.polls:
            result.notes.append(f"a run waited for data {run.polls} times during the drain "
                                f"(the last block was not retired yet?)")
        if run.counters.get("snapshots"):
            result.notes.append(f"zcap snapshotted {run.counters['snapshots']} blocks in a run")
        return run


def count_syscalls(bench: Bench, consumers: list[Consumer],
                   results: dict[str, ConsumerResult]) -> None:
    for consumer in consumers:
        result = results[consumer.name]
        if result.skipped or consumer.syscall_run is None:
            continue
        progress(f"syscalls {consumer.name} ...")
        try:
            run, counts = consumer.syscall_run(bench, consumer.name)
        except Exception as exc:
            result.failures.append(f"syscall run: {type(exc).__name__}: {exc}")
            progress(f"  FAILED: {type(exc).__name__}: {exc}")
            continue
        syscalls = counts[SYSCALLS]
        result.syscalls = {"count": syscalls, "packets": run.packets,
                           "per_packet": syscalls / run.packets,
                           "page_faults": counts[PAGE_FAULTS],
                           "ns_per_packet_under_perf": run.ns_per_packet, "polls": run.polls}
        progress(f"  {syscalls} syscalls, {counts[PAGE_FAULTS]} page faults "
                 f"for {run.packets} packets")


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# reporting

def ratio(value: Optional[float], reference: Optional[float]) -> str:
    if value is None or not reference:
        return "n/a"
    return f"{value / reference:.2f}x"


def syscall_cell(result: ConsumerResult, consumer: Consumer) -> str:
    if consumer.syscall_run is None:
        return "-"
    if result.syscalls is None:
        return "n/a"
    s = result.syscalls
    return f"{s['per_packet']:.6f} ({s['count']} / {s['packets']})"


def markdown_table(consumers: list[Consumer], results: dict[str, ConsumerResult]) -> str:
    refs = {name: results[name].median() if name in results else None for name in REFERENCES}
    lines = ["| consumer | ns/packet min / median / max | vs c-tpacket-v3 | vs c-libpcap "
             "| syscalls/packet (total / packets) |",
             "|---|---|---|---|---|"]
    for consumer in consumers:
        r = results[consumer.name]
        if r.skipped:
            lines.append(f"| {r.name} | skipped: {r.skipped.splitlines()[0]} | | | |")
            continue
        if not r.runs:
            lines.append(f"| {r.name} | failed (see notes) | | | {syscall_cell(r, consumer)} |")
            continue
        ns = r.ns()
        lines.append(f"| {r.name} | {min(ns):.1f} / {r.median():.1f} / {max(ns):.1f} "
                     f"| {ratio(r.median(), refs['c-tpacket-v3'])} "
                     f"| {ratio(r.median(), refs['c-libpcap'])} | {syscall_cell(r, consumer)} |")
    return "\n".join(lines)


def notes_section(results: dict[str, ConsumerResult]) -> str:
    lines = []
    for r in results.values():
        for text in dict.fromkeys(r.notes + r.failures):     # unique, in order
            lines.append(f"- {r.name}: {text}")
    return "\n".join(lines)


def machine_info() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "unknown")
    return {"kernel": platform.release(), "cpu": cpu, "cpus": os.cpu_count(),
            "python": platform.python_version(), "zcap": zcap.__version__,
            "loadavg_start": os.getloadavg()}


def write_json(path: Path, meta: dict, results: dict[str, ConsumerResult], table: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"meta": meta, "table_markdown": table,
           "consumers": {name: r.as_json() for name, r in results.items()}}
    path.write_text(json.dumps(doc, indent=2) + "\n")


# ---------------------------------------------------------------------------
# command line

def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, help=f"frames per run (default {FULL_COUNT:,})")
    p.add_argument("--repeat", type=int, help=f"runs per consumer (default {FULL_REPEAT})")
    p.add_argument("--warmup", type=int, default=1,
                   help="rounds run first and reported apart (default 1)")
    p.add_argument("--quick", action="store_true",
                   help=f"N={QUICK_COUNT:,}, {QUICK_REPEAT} runs (explicit --count/--repeat win)")
    p.add_argument("--only", help="comma-separated consumers: " + ",".join(CONSUMER_NAMES))
    p.add_argument("--no-syscalls", action="store_true", help="skip the perf stat runs")
    p.add_argument("--block-size", type=int,
                   help=f"ring block size in bytes for every consumer (default "
                        f"{DEFAULT_BLOCK_SIZE >> 20} MiB; zcap-headers-pass: zcap's default, 1 MiB)")
    p.add_argument("--timeout-ms", type=int, default=250, help="block retire timeout")
    p.add_argument("--quiet-wait", type=float, default=10.0,
                   help="before each run, wait up to this many seconds for other load to stop")
    p.add_argument("--frame-size", type=int, choices=FRAME_SIZES, default=FRAME_BYTES,
                   help=f"frame size in bytes (default {FRAME_BYTES})")
    p.add_argument("--socket-count", type=int, default=SOCKET_COUNT,
                   help=f"at most this many frames for zcap-copy and python-socket "
                        f"(default {SOCKET_COUNT:,})")
    p.add_argument("--scapy-count", type=int, default=SCAPY_COUNT,
                   help=f"at most this many frames for scapy (default {SCAPY_COUNT:,})")
    p.add_argument("--json", type=Path,
                   help="where to write the results (default bench/results/drain-SIZE.json)")
    args = p.parse_args(argv)
    args.json = args.json or RESULTS_DIR / f"drain-{args.frame_size}.json"
    args.count = args.count or (QUICK_COUNT if args.quick else FULL_COUNT)
    args.repeat = args.repeat or (QUICK_REPEAT if args.quick else FULL_REPEAT)
    names = args.only.split(",") if args.only else CONSUMER_NAMES
    unknown = sorted(set(names) - set(CONSUMER_NAMES))
    if unknown:
        p.error(f"unknown consumer(s) {', '.join(unknown)}; choose from {', '.join(CONSUMER_NAMES)}")
    if args.count < 1 or args.repeat < 1 or args.warmup < 0:
        p.error("--count and --repeat must be positive, --warmup not negative")
    args.consumers = [c for c in CONSUMERS if c.name in names]
    return args


def check_environment(args: argparse.Namespace) -> None:
    if os.geteuid() != 0:
        sys.exit("needs root for AF_PACKET sockets and network namespaces: sudo python3 bench/drain/drain.py")
    if not args.no_syscalls and shutil.which("perf") is None:
        sys.exit("perf is not installed; install it or pass --no-syscalls")
    ring = RingPlan.for_ring(args.count, args.block_size or DEFAULT_BLOCK_SIZE, args.timeout_ms,
                             args.frame_size).total_bytes
    copy_queue = RingPlan.for_copy_mode(min(args.count, args.socket_count),
                                        args.block_size or DEFAULT_BLOCK_SIZE,
                                        args.timeout_ms, args.frame_size).total_bytes
    frames = args.count * (args.frame_size + 50)    # the python-floor list
    need = max(ring, copy_queue) + frames + (512 << 20)
    available = next(int(line.split()[1]) * 1024 for line in open("/proc/meminfo")
                     if line.startswith("MemAvailable:"))
    if need > available:
        sys.exit(f"needs ~{need >> 20} MiB of memory, {available >> 20} MiB available; lower --count")


def limit_blas_threads() -> None:
    """numpy's OpenBLAS starts (and spins) a thread per CPU; on a small machine
    they compete with the sender and the drain.  Must run before numpy loads;
    reader processes inherit it."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    check_environment(args)
    limit_blas_threads()
    results = {c.name: ConsumerResult(c.name, c.summary) for c in args.consumers}
    meta = machine_info() | {"date": datetime.datetime.now().isoformat(timespec="seconds"),
                             "count": args.count, "repeat": args.repeat, "warmup": args.warmup,
                             "frame_bytes": args.frame_size}
    with tempfile.TemporaryDirectory(prefix="zcap-drain-") as workdir:
        tools = build_tools(args.consumers, Path(workdir))
        for name, reason in tools.unavailable.items():
            results[name].skipped = reason
            progress(f"note: skipping {name}: {reason}")
        with Testbed() as tb:
            bench = Bench(tb, args, tools)
            meta["ring"] = asdict(bench.plan_for("zcap-iter"))
            meta["copy_buffer"] = asdict(bench.plan_for("zcap-copy"))
            progress(f"ring: {bench.plan_for('zcap-iter').describe()}; "
                     f"copy mode socket buffer: {bench.plan_for('zcap-copy').total_bytes >> 20} MiB")
            measure_round_robin(bench, args.consumers, args.repeat, args.warmup, results,
                                args.quiet_wait)
            if not args.no_syscalls:
                count_syscalls(bench, args.consumers, results)
            meta["copy_count"] = bench.copy_count
            meta["scapy_count"] = bench.scapy_count
    meta["loadavg_end"] = os.getloadavg()

    table = markdown_table(args.consumers, results)
    notes = notes_section(results)
    print(f"## Drain a pre-filled ring: {args.count:,} x {args.frame_size}-byte frames, "
          f"{args.repeat} runs each\n")
    print(f"{meta['cpu']}, {meta['cpus']} CPUs, Linux {meta['kernel']}, Python {meta['python']}; "
          f"ring {RingPlan(**meta['ring']).describe()}\n")
    print(table)
    if notes:
        print("\nNotes:\n" + notes)
    write_json(args.json, meta, results, table)
    print(f"\n(raw numbers: {args.json})")
    return 0 if all(r.runs or r.skipped for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
