"""Instructions per packet of a drain consumer, counted by callgrind (stable on a noisy machine).

    sudo python3 bench/drain/callgrind_drain.py zcap-iter zcap-batch zcap-cython --count 20000
    sudo python3 bench/drain/callgrind_drain.py zcap-cython c-tpacket-v3 --frame-size 1500 --cache-sim
    sudo python3 bench/drain/callgrind_drain.py c-libpcap zcap-numpy zcap-headers zcap-headers-query
    sudo python3 bench/drain/callgrind_drain.py zcap-iter zcap-batch --vlan   # 802.1Q frames
    sudo python3 bench/drain/callgrind_drain.py zcap-iter zcap-async-uvloop --count 25000 --slope-from 5000

For each consumer (bench/drain/drain_consumers.py names): a child process under
`valgrind --tool=callgrind --collect-atstart=no` pre-fills a ring on a private
veth pair (zcap.testbed) with N sequence-numbered frames, then turns
collection on (callgrind's client requests, through a tiny C helper
compiled at start-up) only while the consumer drains them (one-time costs,
like the first packet objects, are spread over N).  Reported: the
instructions per packet (Ir / N), and with --functions the top functions;
with --slope-from M, a second run of M packets gives the slope
(Ir(N) - Ir(M)) / (N - M) instead: one-time costs, such as an event
loop's start for the async consumers, drop out.

The C readers (c-tpacket-v3, c-libpcap: bench/drain/c/) run under callgrind in the
capture's namespace, compiled with -O2 as drain.py builds them (plus -g),
and collect only inside their drain() (--toggle-collect; it is never inlined).

With --cache-sim, callgrind also simulates the caches (the machine's sizes,
no hardware prefetcher): per packet, data reads (Dr), data writes (Dw), and
first-level data misses on reads and writes (D1mr, D1mw) and last-level
misses (DLmr, DLmw).  Ring memory is cold in a drain (the ring is far larger
than the last-level cache), so DLmr per packet is roughly the cache lines of
ring memory a consumer touches per packet.

The async consumers (zcap-async-asyncio, zcap-async-uvloop) run with a
fairness budget longer than the run: the budget is wall-clock time, and
under valgrind it would pass after a few dozen packets instead of the
~5,000 it takes at native speed, so the count would be mostly yields.
What is counted is `async for`'s price per item.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
HELPER_C = r"""
#include <valgrind/callgrind.h>
void cg_start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_TOGGLE_COLLECT; }
void cg_stop(void) { CALLGRIND_TOGGLE_COLLECT; CALLGRIND_DUMP_STATS; }
"""


ASYNC_BUDGET_US = 10 ** 9


def build_helper(out: Path) -> Path:
    src = out / "cg.c"
    src.write_text(HELPER_C)
    lib = out / "libcg.so"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return lib


def child(name: str, count: int, frame: int, helper: str, cython_dir: str) -> None:
    """Runs under valgrind: pre-fill, then drain with instrumentation on."""
    sys.path.insert(0, str(BENCH_DIR))
    if cython_dir:
        sys.path.insert(0, cython_dir)
    import zcap
    from zcap.testbed import SEQ_OFFSET, Testbed

    from drain_consumers import ZCAP_CONSUMERS

    cg = ctypes.CDLL(helper)
    consumer = ZCAP_CONSUMERS[name]
    consumer.preload()
    with Testbed() as tb:
        tagged = bool(os.environ.get("ZCAP_CALLGRIND_VLAN"))
        # --vlan: 802.1Q frames (the veth strips the tag, zcap puts it back by
        # default); the sequence goes where the consumers read it in the
        # delivered bytes, over the UDP length and checksum nobody checks here
        template = tb.frame(frame, vlan_tags=[(0x8100, (5 << 13) | 100)] if tagged else ())
        # Sending under valgrind is slow: blocks retire on their timer before
        # they fill, so the ring has room for one block per second of sending.
        with zcap.open_live(tb.b, netns=tb.netns, mode=consumer.mode, block_size=1 << 20,
                            block_count=max(64, count * (frame + 100) // (1 << 20) * 2 + 8),
                            timeout_ms=1000) as cap:
            with tb.sender() as s:
                assert s.send_sequence(template, count, seq_offset=SEQ_OFFSET) == count
            time.sleep(1.5)
            stats = cap.stats()
            if stats.received != count or stats.dropped:
                raise RuntimeError(f"pre-fill failed: {stats}")
            if consumer.module in ("asyncio", "uvloop"):
                # The fairness budget is wall-clock time, which passes ~50x
                # faster per packet under valgrind: the default budget would
                # count a yield every few dozen packets instead of every
                # ~5,000.  No yield is counted (see the docstring).
                cap.budget_us = ASYNC_BUDGET_US
            cg.cg_start()
            drained = consumer.drain(cap, count)
            cg.cg_stop()
            assert drained == count, drained


C_READERS = {"c-tpacket-v3": ("tpacket_v3_drain.c", []), "c-libpcap": ("libpcap_drain.c", ["-lpcap"])}
CACHE_EVENTS = ("Dr", "D1mr", "DLmr", "Dw", "D1mw", "DLmw")


def build_c_reader(name: str, out: Path) -> Path:
    source, libs = C_READERS[name]
    binary = out / Path(source).stem
    subprocess.run(["gcc", "-O2", "-g", "-Wall", "-o", str(binary),
                    str(BENCH_DIR / "c" / source), *libs], check=True)
    return binary


def run_c_reader(name: str, count: int, frame: int, valgrind: list[str], binary: Path) -> None:
    """Pre-fill a ring for the C reader (under valgrind) and let it drain."""
    sys.path.insert(0, str(BENCH_DIR))
    from zcap.testbed import Testbed

    from drain_child import ChildReader
    from drain_ring import RingPlan, check_prefilled

    # Blocks retire on their timer while the reader is slowed by valgrind: plan as the zcap child does.
    block_size = 1 << 20
    plan = RingPlan(block_size, max(64, count * (frame + 100) // block_size * 2 + 8), 1000)
    with Testbed() as tb:
        template = tb.frame(frame)
        if name == "c-tpacket-v3":
            args = [tb.b, str(count), str(plan.block_size), str(plan.block_count), str(plan.timeout_ms)]
        else:
            args = [tb.b, str(count), str(plan.total_bytes), str(plan.timeout_ms)]
        cmd = ["ip", "netns", "exec", tb.netns, *valgrind, str(binary), *args]
        with ChildReader(cmd, startup_timeout=120) as reader:
            with tb.sender() as s:
                assert s.send_sequence(template, count) == count
            time.sleep(2.5)
            armed = reader.arm(timeout=120)
            check_prefilled(armed["received"], armed["dropped"], count, name)
            done = reader.drain(timeout=600)
        if done["packets"] != count:
            raise RuntimeError(f"{name} drained {done['packets']} of {count}")


def read_totals(path: Path) -> dict[str, int]:
    """The event totals of one callgrind output file."""
    events, totals = [], []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("events:"):
            events = line.split()[1:]
        elif line.startswith(("summary:", "totals:")):
            totals = [int(v) for v in line.split()[1:]]
    return dict(zip(events, totals))


def measure(name: str, count: int, frame: int, helper: Path, cython_dir: str, functions: int,
            cache_sim: bool = False) -> dict[str, float]:
    """Events per packet ({"Ir": ..., and with cache_sim the CACHE_EVENTS})."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p"]
        if cache_sim:
            valgrind.append("--cache-sim=yes")
        if name in C_READERS:
            binary = build_c_reader(name, Path(tmp))
            run_c_reader(name, count, frame, valgrind + ["--toggle-collect=drain*"], binary)
        else:
            cmd = [*valgrind, "--collect-atstart=no",
                   sys.executable, __file__, "--child", name, "--count", str(count),
                   "--frame-size", str(frame), "--helper", str(helper), "--cython-dir", cython_dir]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr[-2000:])
        best: dict[str, int] = {"Ir": 0}
        best_file = None
        for f in Path(tmp).glob("callgrind.out.*"):       # the client request's dump
            totals = read_totals(f)
            if totals.get("Ir", 0) > best["Ir"]:
                best, best_file = totals, f
        if functions and best_file is not None:
            ann = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", str(best_file)],
                                 capture_output=True, text=True).stdout
            lines = [ln for ln in ann.splitlines() if re.match(r"\s*[\d,]+ \(", ln)
                     and "PROGRAM TOTALS" not in ln and "libc-start" not in ln][:functions]
            print("\n".join(lines))
        return {k: v / count for k, v in best.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("consumers", nargs="*", default=["zcap-iter", "zcap-batch", "zcap-cython"])
    p.add_argument("--count", type=int, default=20000)
    p.add_argument("--frame-size", type=int, default=64)
    p.add_argument("--functions", type=int, default=0, help="also print the top N functions")
    p.add_argument("--vlan", action="store_true", help="802.1Q-tagged frames (tag reinserted)")
    p.add_argument("--cache-sim", action="store_true",
                   help="also simulate the caches: data reads, writes and misses per packet")
    p.add_argument("--slope-from", type=int, metavar="N",
                   help="also drain N packets and report the slope (count - N runs): the "
                        "instructions per packet without one-time costs (an event loop's start)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--helper", help=argparse.SUPPRESS)
    p.add_argument("--cython-dir", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    from drain_consumers import ZCAP_CONSUMERS
    timed_parts = [n for n in args.consumers if n in ZCAP_CONSUMERS and ZCAP_CONSUMERS[n].part]
    if timed_parts:
        p.error(f"{', '.join(timed_parts)}: times a part of its drain; callgrind counts whole "
                "drains (for the header pass: zcap-headers minus zcap-numpy, or "
                "bench/callgrind_headers.py)")
    if args.child:
        child(args.child, args.count, args.frame_size, args.helper, args.cython_dir)
        return
    if args.vlan:
        os.environ["ZCAP_CALLGRIND_VLAN"] = "1"        # read by the children
    with tempfile.TemporaryDirectory() as tmp:
        helper = build_helper(Path(tmp))
        cython_dir = ""
        if "zcap-cython" in args.consumers:
            import build_cy_consumer
            cython_dir = str(build_cy_consumer.build_in_subprocess(Path(tmp) / "cy"))
        kind = " 802.1Q" if args.vlan else ""
        extra = CACHE_EVENTS if args.cache_sim else ()
        slope = f", slope from {args.slope_from:,}" if args.slope_from else ""
        print(f"| consumer | instructions/packet ({args.count:,} x {args.frame_size} B{kind}{slope}) |"
              + "".join(f" {e}/packet |" for e in extra) + "\n|---|---|" + "---|" * len(extra))
        for name in args.consumers:
            per = measure(name, args.count, args.frame_size, helper, cython_dir, args.functions,
                          args.cache_sim)
            if args.slope_from:
                if name in C_READERS:
                    raise SystemExit("--slope-from: zcap consumers only")
                base = measure(name, args.slope_from, args.frame_size, helper, cython_dir, 0,
                               args.cache_sim)
                n, m = args.count, args.slope_from
                per = {k: (v * n - base.get(k, 0) * m) / (n - m) for k, v in per.items()}
            print(f"| {name} | {per['Ir']:.1f} |" + "".join(f" {per.get(e, 0):.2f} |" for e in extra),
                  flush=True)


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces, AF_PACKET)")
    main()
