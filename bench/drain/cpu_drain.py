"""CPU time per packet of drain consumers, interleaved, as ratios within each round.

    sudo python3 bench/drain/cpu_drain.py zcap-cython c-tpacket-v3 --frame-size 1500
    sudo python3 bench/drain/cpu_drain.py c-libpcap zcap-field zcap-numpy-readme --repeat 7
    sudo python3 bench/drain/cpu_drain.py zcap-cython zcap-cython@old c-tpacket-v3 \\
        --variant old=/tmp/zcap-old         # a second zcap build, same round

On a machine other jobs load, wall clock (bench/drain/drain.py) moves by tens
of percent between runs.  This times every drain by the reading thread's CPU
time instead (the C readers built with -DDRAIN_CPU_CLOCK, zcap's worker with
ZCAP_DRAIN_CLOCK=cpu), each consumer in its own process speaking
drain_protocol.h, one run of every consumer per round, and reports per round
the ratio of each consumer to the first one named (the reference), then the
median and range of those ratios.  CPU time still includes what sharing a
core costs (caches, memory bandwidth), so take the median of several rounds.

`NAME@LABEL` runs consumer NAME with `--variant LABEL=DIR`'s DIR first on the
worker's PYTHONPATH (another build of zcap, e.g. the tree before a change,
built in place there); the Ring's C layout must match the one cy_consumer was
built against.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import drain  # noqa: E402  (the drain bench's rig: testbed, prefill, readers)

from zcap.testbed import Testbed  # noqa: E402

from drain_child import ChildReader  # noqa: E402
from drain_ring import PrefillError, check_prefilled, send_frames  # noqa: E402


def run_once(bench: drain.Bench, name: str, pythonpath: str | None, tries: int = 3,
             show_faults: bool = False) -> float:
    """One drain of `name` in a child process; CPU ns per packet.  A prefill
    the kernel dropped frames of (other people's sockets can retire blocks
    early and leave the ring short) is tried again, up to `tries` times."""
    for attempt in range(tries):
        try:
            return _drain_once(bench, name, pythonpath, show_faults)
        except PrefillError as exc:
            if attempt == tries - 1:
                raise
            print(f"  {exc}; again", file=sys.stderr, flush=True)
    raise AssertionError("unreachable")


def _drain_once(bench: drain.Bench, name: str, pythonpath: str | None,
                show_faults: bool = False) -> float:
    count = bench.count_for(name)
    env = dict(os.environ, ZCAP_DRAIN_CLOCK="cpu")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    with ChildReader(drain.reader_command(bench, name), env=env) as reader:
        send_frames(bench.tb, bench.template, count, bench.plan_for(name))
        armed = reader.arm()
        check_prefilled(armed["received"], armed["dropped"], count, name)
        done = reader.drain()
    if done["packets"] != count:
        raise RuntimeError(f"{name} drained {done['packets']} of {count} packets")
    if show_faults and "faults" in done:       # the C readers do not report them
        print(f"  {name}: {done['faults'] / count:.4f} page faults per packet (the drain only)",
              file=sys.stderr)
    return done["ns"] / count


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("consumers", nargs="+", help="the first is the reference")
    p.add_argument("--frame-size", type=int, choices=drain.FRAME_SIZES, default=64)
    p.add_argument("--count", type=int, default=200_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--block-size", type=int,
                   help="ring block size for every consumer (default: drain.py's choice per consumer)")
    p.add_argument("--timeout-ms", type=int, default=250)
    p.add_argument("--variant", action="append", default=[], metavar="LABEL=DIR")
    p.add_argument("--faults", action="store_true",
                   help="also print each drain's minor page faults per packet (fresh memory)")
    args = p.parse_args(argv)
    variants = dict(v.split("=", 1) for v in args.variant)
    specs = []
    for spec in args.consumers:
        name, _, label = spec.partition("@")
        if label and label not in variants:
            p.error(f"{spec}: no --variant {label}=DIR")
        if name not in drain.CONSUMER_NAMES or name in ("python-floor", "tcpdump"):
            p.error(f"{name}: not a child-process drain consumer")
        specs.append((spec, name, variants.get(label)))
    bench_args = argparse.Namespace(count=args.count, frame_size=args.frame_size,
                                    block_size=args.block_size, timeout_ms=args.timeout_ms,
                                    socket_count=args.count, scapy_count=args.count)
    drain.limit_blas_threads()
    ns: dict[str, list[float]] = {spec: [] for spec, _, _ in specs}
    ratios: dict[str, list[float]] = {spec: [] for spec, _, _ in specs}
    with tempfile.TemporaryDirectory(prefix="zcap-cpu-drain-") as workdir:
        consumers = [c for c in drain.CONSUMERS if c.name in {n for _, n, _ in specs}]
        tools = drain.build_tools(consumers, Path(workdir))
        if tools.unavailable:
            sys.exit(f"unavailable: {tools.unavailable}")
        for name, binary in tools.binaries.items():      # again, on the CPU clock
            source = drain.C_DIR / (binary.name + ".c")
            libs = ["-lpcap"] if name == "c-libpcap" else []
            subprocess.run(["gcc", "-O2", "-Wall", "-DDRAIN_CPU_CLOCK", "-o", str(binary),
                            str(source), *libs], check=True)
        with Testbed() as tb:
            bench = drain.Bench(tb, bench_args, tools)
            for round_index in range(args.repeat + 1):     # round 0 warms up
                row = {spec: run_once(bench, name, path, show_faults=args.faults)
                       for spec, name, path in specs}
                ref = row[specs[0][0]]
                label = "warm-up" if round_index == 0 else f"round {round_index}"
                print(f"{label}: " + "  ".join(f"{s} {v:.1f} ns ({v / ref:.2f}x)"
                                              for s, v in row.items()), file=sys.stderr, flush=True)
                if round_index:
                    for spec, v in row.items():
                        ns[spec].append(v)
                        ratios[spec].append(v / ref)
    print(f"\n{args.count:,} x {args.frame_size} B frames, {args.repeat} rounds, CPU time; "
          f"ratios to {specs[0][0]} within each round\n")
    print("| consumer | CPU ns/pkt median (min-max) | ratio median (min-max) |")
    print("|---|---|---|")
    for spec, _, _ in specs:
        v, r = ns[spec], ratios[spec]
        print(f"| {spec} | {statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f}) "
              f"| {statistics.median(r):.2f}x ({min(r):.2f}-{max(r):.2f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
