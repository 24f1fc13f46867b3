"""Instructions per wake-up and per packet of live readers, counted by callgrind.

    sudo python3 bench/callgrind_wake.py                      # sync, asyncio, uvloop
    sudo python3 bench/callgrind_wake.py --readers asyncio --rounds 20

Live CPU per packet is noisy on a shared machine; what `async for` adds per
wake-up is not.  For each reader, a child process under `valgrind
--tool=callgrind --collect-atstart=no` opens a ring (1 MiB blocks, 100 ms
block timeout) on a private veth pair (zcap.testbed); a feeder thread sends
R rounds of K frames, each followed by a pause longer than the block
timeout, so the reader sleeps and wakes once per round.  callgrind
collects per thread: the reader's thread is counted from the start of its
loop to its end (callgrind's client requests, through a tiny C helper
compiled at start-up), the feeder thread never.  Two runs per reader, with K and 10*K frames per round, give
instructions per packet (the slope) and per wake-up (the rest: the wait and
the wake, the loop's own work included).  The async readers get a budget
longer than the run, so no fairness yield is counted.  Readers: `sync`
(`for pkt in cap`), `asyncio` and `uvloop` (`async for pkt in cap`).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HELPER_C = r"""
#include <valgrind/callgrind.h>
void cg_zero(void) { CALLGRIND_ZERO_STATS; }
void cg_toggle(void) { CALLGRIND_TOGGLE_COLLECT; }
void cg_dump(void) { CALLGRIND_DUMP_STATS; }
"""
READERS = ("sync", "asyncio", "uvloop")
TIMEOUT_MS = 100


def child(reader: str, rounds: int, per_round: int, helper: str) -> None:
    """Runs under valgrind."""
    import zcap
    from zcap.testbed import Testbed

    cg = ctypes.CDLL(helper)
    total = rounds * per_round
    with Testbed() as tb:
        template = tb.frame(64)
        # callgrind collects per thread: the feeder thread, started while
        # collection is off (--collect-atstart=no), is never counted; only
        # this thread, the reader, is, from cg_toggle() on.  (The feeder used
        # to toggle around its sends, which switched its own collection on
        # while it sent: its sends were counted with every reader.)
        with zcap.open_live(tb.b, netns=tb.netns, block_size=1 << 20, block_count=8,
                            timeout_ms=TIMEOUT_MS) as cap, tb.sender() as sender:
            def feed() -> None:
                time.sleep(1.0)
                for r in range(rounds):
                    sender.send_sequence(template, per_round, first_seq=r * per_round)
                    time.sleep(3.5 * TIMEOUT_MS / 1000)   # the reader wakes when the block retires

            feeder = threading.Thread(target=feed)
            seen = 0
            if reader == "sync":
                feeder.start()
                cg.cg_zero()
                cg.cg_toggle()
                for _pkt in cap:
                    seen += 1
                    if seen == total:
                        break
                cg.cg_toggle()
                cg.cg_dump()
            else:
                async def consume() -> None:
                    nonlocal seen
                    feeder.start()
                    cg.cg_zero()
                    cg.cg_toggle()
                    async for _pkt in cap.ring.aiter(budget_us=10 ** 9):
                        seen += 1
                        if seen == total:
                            break
                    cg.cg_toggle()                  # before the loop's own shutdown
                    cg.cg_dump()

                if reader == "uvloop":
                    import uvloop
                    uvloop.run(consume())
                else:
                    asyncio.run(consume())
            feeder.join()
            if seen != total:
                raise SystemExit(f"read {seen} of {total}")


def instructions(reader: str, rounds: int, per_round: int, helper: Path, tmp: Path) -> int:
    out = tmp / f"cg.{reader}.{per_round}"
    proc = subprocess.run(["valgrind", "--tool=callgrind", "--collect-atstart=no",
                           f"--callgrind-out-file={out}.%p", sys.executable, __file__, "--child",
                           reader, "--rounds", str(rounds), "--per-round", str(per_round),
                           "--helper", str(helper)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    best = 0
    for f in tmp.glob(f"cg.{reader}.{per_round}.*"):      # the client request's dump
        ann = subprocess.run(["callgrind_annotate", "--threshold=100", str(f)],
                             capture_output=True, text=True).stdout
        m = re.search(r"([\d,]+)(?: \(100\.0%\))?\s+PROGRAM TOTALS", ann)
        if m:
            best = max(best, int(m.group(1).replace(",", "")))
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--readers", default=",".join(READERS))
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--per-round", type=int, default=100, help="K (the second run sends 10*K)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--helper", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.rounds, args.per_round, args.helper)
        return
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "cg.c").write_text(HELPER_C)
        helper = tmp / "libcg.so"
        subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(helper), str(tmp / "cg.c")],
                       check=True)
        k1, k2 = args.per_round, 10 * args.per_round
        rows = {}
        for reader in args.readers.split(","):
            small = instructions(reader, args.rounds, k1, helper, tmp) / args.rounds
            large = instructions(reader, args.rounds, k2, helper, tmp) / args.rounds
            per_packet = (large - small) / (k2 - k1)
            rows[reader] = (per_packet, small - k1 * per_packet)
        ref = rows.get("sync")
        print("| reader | instructions per packet | per wake-up | per wake-up beyond sync |"
              "\n|---|---|---|---|")
        for reader, (per_packet, per_wake) in rows.items():
            extra = f"{per_wake - ref[1]:,.0f}" if ref else "n/a"
            print(f"| {reader} | {per_packet:,.0f} | {per_wake:,.0f} | {extra} |")
        print(f"\n({args.rounds} wake-ups of {k1} and of {k2} frames per run)")


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces, AF_PACKET)")
    main()
