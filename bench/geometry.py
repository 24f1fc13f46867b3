"""Measurements behind open_live()'s default ring geometry.

    sudo python3 bench/geometry.py [--quick]

1. Drain cost vs block size: bench/drain/drain.py (zcap-iter, zcap-cython and the
   C TPACKET_V3 reader) for several block sizes.
2. Stall tolerance vs retire timeout: with the consumer paused, the sender
   at full speed, how many 64-byte frames a 32 x 1 MiB ring absorbs before
   the kernel drops (a block is retired when full or `timeout_ms` after it
   was opened, so a short timeout leaves blocks partly empty).
3. Latency of a lone packet vs retire timeout (and immediate mode): the
   time from send to next() returning.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zcap
from zcap.testbed import Testbed

BENCH = Path(__file__).resolve().parent


def drain_by_block_size(sizes: list[int], quick: bool) -> dict[int, dict[str, float]]:
    out = {}
    for size in sizes:
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            cmd = [sys.executable, str(BENCH / "drain" / "drain.py"), "--only",
                   "zcap-iter,zcap-cython,c-tpacket-v3", "--no-syscalls",
                   "--block-size", str(size), "--json", f.name]
            if quick:
                cmd.append("--quick")
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            data = json.load(open(f.name))
        out[size] = {name: r["median"] or 0.0 for name, r in data["consumers"].items()}
    return out


def stall_tolerance(tb: Testbed, timeout_ms: int, frames: int) -> tuple[int, int, float]:
    template = tb.frame(64)
    with zcap.open_live(tb.b, netns=tb.netns, block_size=1 << 20, block_count=32,
                        timeout_ms=timeout_ms) as cap:
        with tb.sender() as s:
            t0 = time.monotonic()
            sent = s.send_sequence(template, frames)
            rate = sent / (time.monotonic() - t0)
        time.sleep(timeout_ms / 1000 * 2 + 0.2)
        stats = cap.stats()
    return stats.received - stats.dropped, stats.dropped, rate


def lone_packet_latency(tb: Testbed, repeat: int, **options) -> float:
    template = tb.frame(64)
    waits = []
    with zcap.open_live(tb.b, netns=tb.netns, **options) as cap, tb.sender() as s:
        for _ in range(repeat):
            t0 = time.monotonic()
            s.send(template)
            assert cap.next(timeout=5) is not None
            waits.append(time.monotonic() - t0)
    return statistics.median(waits) * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    sizes = [1 << 16, 1 << 18, 1 << 20, 1 << 22]
    print("## Drain cost vs block size (ns/packet, median)\n")
    print("| block size | zcap-iter | zcap-cython | c-tpacket-v3 |\n|---|---|---|---|")
    for size, r in drain_by_block_size(sizes, args.quick).items():
        print(f"| {size >> 10} KiB | {r.get('zcap-iter', 0):.0f} | {r.get('zcap-cython', 0):.1f} "
              f"| {r.get('c-tpacket-v3', 0):.1f} |")
    with Testbed() as tb:
        print("\n## Stall tolerance of a 32 x 1 MiB ring vs retire timeout (consumer paused)\n")
        print("| timeout_ms | frames absorbed | dropped | sender rate | absorbed time |")
        print("|---|---|---|---|---|")
        for t in (1, 10, 50, 250):
            kept, dropped, rate = stall_tolerance(tb, t, 400_000 if args.quick else 1_000_000)
            print(f"| {t} | {kept:,} | {dropped:,} | {rate / 1e3:,.0f} kpps | {kept / rate * 1e3:.0f} ms |")
        print("\n## Lone-packet latency (median of 20, ms)\n")
        print("| configuration | latency |\n|---|---|")
        for t in (1, 10, 50):
            lat = lone_packet_latency(tb, 20, timeout_ms=t)
            print(f"| ring, timeout_ms={t} | {lat:.2f} |")
        print(f"| immediate=True | {lone_packet_latency(tb, 20, immediate=True):.2f} |")
        print(f"| mode='copy' | {lone_packet_latency(tb, 20, mode='copy'):.2f} |")


if __name__ == "__main__":
    main()
