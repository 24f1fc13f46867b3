"""Issue 11 item 2 at full size: keep `batch.buffer` of every batch while traffic flows.

    sudo python3 bench/stress/stress_retention.py                  # 2,000 batches, 32 x 1 MiB ring
    sudo python3 bench/stress/stress_retention.py --batches 5000 --pps 200000 --mode immediate

Before zcap deferred and snapshotted without a per-slot limit, this stopped
after 512 batches (~15 snapshots per block) and `for b in cap.batches()`
hung.  Reported: packets accepted by the kernel vs delivered, drops, RSS,
snapshots, deferred blocks, ring mappings, export copies and open fds; the
kept buffers are checked to still hold their first packet.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

import zcap
from zcap.testbed import Testbed


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=2000)
    p.add_argument("--pps", type=float, default=100_000)
    p.add_argument("--mode", choices=("ring", "immediate", "copy"), default="ring")
    p.add_argument("--seconds", type=float, default=120, help="give up after this long")
    args = p.parse_args()
    opts = dict(block_size=1 << 20, block_count=32, timeout_ms=10)
    opts.update(dict(mode="ring", immediate=True) if args.mode == "immediate" else dict(mode=args.mode))
    kept = []
    with Testbed() as tb:
        template = tb.frame(64)
        with zcap.open_live(tb.b, netns=tb.netns, **opts) as cap:
            sender = tb.sender()
            stop = threading.Event()

            def send() -> None:
                seq = 0
                while not stop.is_set():
                    seq += sender.send_sequence(template, 1000, first_seq=seq, pps=args.pps, max_seconds=5)

            thread = threading.Thread(target=send, daemon=True)
            thread.start()
            start = time.monotonic()
            rss0 = rss_mb()
            while len(kept) < args.batches and time.monotonic() - start < args.seconds:
                batch = cap.next_batch(timeout=3)
                if batch is None:
                    print(f"stalled after {len(kept)} batches: {cap.stats()}", file=sys.stderr)
                    break
                off = batch.offsets[0]
                kept.append((batch.buffer, off, bytes(batch[0])))
            stop.set()
            thread.join(10)
            sender.close()
            elapsed = time.monotonic() - start
            while cap.next_batch(timeout=0.3) is not None:
                pass
            s = cap.stats()
            fds = len(os.listdir("/proc/self/fd"))
            intact = all(bytes(buf[off:off + len(first)]) == first for buf, off, first in kept)
            print("| mode | batches kept | seconds | received | delivered | dropped "
                  "| RSS MB (start -> end) | snapshots | deferred | mappings | export copies "
                  "| retained MB | fds | kept bytes intact |")
            print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
            print(f"| {args.mode} | {len(kept):,} | {elapsed:.1f} | {s.received:,} | {s.delivered:,} "
                  f"| {s.dropped:,} | {rss0:.0f} -> {rss_mb():.0f} | {s.snapshots:,} | {s.deferred:,} "
                  f"| {s.mappings} | {s.export_copies:,} | {s.retained_bytes / 2**20:.0f} "
                  f"| {fds} | {intact} |")
            if len(kept) < args.batches or not intact or s.held:
                sys.exit(1)


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces, AF_PACKET)")
    main()
