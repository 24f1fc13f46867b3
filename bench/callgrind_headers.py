"""Instructions per packet of the header pass on batches in memory, counted by callgrind.

    python3 bench/callgrind_headers.py                  # 64 B UDP frames and the mixed capture
    python3 bench/callgrind_headers.py --count 20000 --functions 8

No root needed.  A child process under `valgrind --tool=callgrind
--collect-atstart=no` reads an offline capture's batches into memory, then
turns collection on (callgrind client requests, through a tiny C helper
compiled at start-up, as bench/callgrind_drain.py does) only while it computes
the header columns of every batch, for each query:

* all:    every column (`batch.headers().columns()`), flow_hash included;
* query:  the typical query, `ip_src`, `ip_dst`, `proto`, `sport`, `dport`,
          read one after the other as attributes (numpy arrays of them).

Instructions / packets is stable on a shared machine, unlike time.  The
files are bench/analytics.py's: 64-byte UDP frames (as in the drain
benchmark) and its mixed capture (IPv4/IPv6, VLAN/QinQ, TCP/UDP/ICMP).
"""

from __future__ import annotations

import argparse
import ctypes
import re
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
QUERY = ("ip_src", "ip_dst", "proto", "sport", "dport")

import benchpath  # noqa: E402,F401  (bench/drain/ on sys.path)
from callgrind_drain import build_helper  # noqa: E402  (the callgrind client-request helper)


def run_query(batches, query: str) -> None:
    import numpy as np
    for b in batches:
        h = b.headers()
        if query == "all":
            h.columns()
        else:
            for name in QUERY:
                np.asarray(getattr(h, name))


def child(path: str, query: str, helper: str) -> None:
    sys.path.insert(0, str(REPO))
    import numpy as np  # noqa: F401  (imported before collection starts)

    from zcap.offline import open_offline
    cg = ctypes.CDLL(helper)
    with open_offline(path) as src:
        batches = list(src.batches())
    run_query(batches[:1], query)                      # warm: imports, first allocations
    fresh = [b.__class__(b._table, b._start, b._stop, b._meta) for b in batches]   # nothing cached
    cg.cg_start()
    run_query(fresh, query)
    cg.cg_stop()


def measure(path: Path, query: str, count: int, helper: Path, functions: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        cmd = ["valgrind", "--tool=callgrind", "--collect-atstart=no", f"--callgrind-out-file={out}.%p",
               sys.executable, __file__, "--child", str(path), "--query", query, "--helper", str(helper)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        best = (0, "")
        for f in Path(tmp).glob("callgrind.out.*"):
            ann = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", str(f)],
                                 capture_output=True, text=True).stdout
            total = re.search(r"([\d,]+)(?: \(100\.0%\))?\s+PROGRAM TOTALS", ann)
            if total and int(total.group(1).replace(",", "")) > best[0]:
                best = (int(total.group(1).replace(",", "")), ann)
        ir, ann = best
        if functions:
            lines = [ln for ln in ann.splitlines() if re.match(r"\s*[\d,]+ \(", ln)
                     and "PROGRAM TOTALS" not in ln][:functions]
            print("\n".join(lines), file=sys.stderr)
        return ir / count


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=50000)
    p.add_argument("--functions", type=int, default=0, help="also print the top N functions")
    p.add_argument("--files", default="64b,mixed", help="64b, mixed or both")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--query", default="all", help=argparse.SUPPRESS)
    p.add_argument("--helper", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.query, args.helper)
        return
    sys.path.insert(0, str(BENCH_DIR))
    import analytics
    analytics.RESULTS.mkdir(parents=True, exist_ok=True)
    files = {}
    for kind in args.files.split(","):
        path = analytics.RESULTS / f"analytics-{kind}-{args.count}.pcap"
        if not path.exists():
            (analytics.frames64 if kind == "64b" else analytics.generate)(path, args.count)
        files[kind] = path
    with tempfile.TemporaryDirectory() as tmp:
        helper = build_helper(Path(tmp))
        print("| capture | all columns (instructions/packet) | ip_src, ip_dst, proto, sport, dport |\n"
              "|---|---|---|")
        for kind, path in files.items():
            cells = [f"{measure(path, q, args.count, helper, args.functions):.1f}" for q in ("all", "query")]
            print(f"| {kind} ({args.count:,} packets) | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
