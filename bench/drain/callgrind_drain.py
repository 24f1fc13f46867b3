"""Instructions per packet of a drain consumer, counted by callgrind (stable on a noisy machine).

    sudo python3 bench/drain/callgrind_drain.py zcap-iter zcap-batch zcap-cython --count 20000
    sudo python3 bench/drain/callgrind_drain.py zcap-cython --frame-size 1500
    sudo python3 bench/drain/callgrind_drain.py c-libpcap zcap-numpy zcap-headers zcap-headers-query

For each consumer (bench/drain/drain_consumers.py names): a child process under
`valgrind --tool=callgrind --collect-atstart=no` pre-fills a ring on a private
veth pair (zcap.testbed) with N sequence-numbered frames, then turns
collection on (callgrind's client requests, through a tiny C helper
compiled at start-up) only while the consumer drains them (one-time costs,
like the first packet objects, are spread over N).  Reported: the
instructions per packet (Ir / N), and with --functions the top functions.

`c-libpcap` is the C reference of bench/drain.py (bench/c/libpcap_drain.c,
pcap_dispatch over libpcap's own V3 ring), counted the same way: callgrind
collects inside pcap_dispatch() (the per-packet callback included), which is
all of its drain loop but a few instructions per call.
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
            cg.cg_start()
            drained = consumer.drain(cap, count)
            cg.cg_stop()
            assert drained == count, drained


def c_libpcap_drain(count: int, frame: int, out: Path) -> None:
    """bench/c/libpcap_drain.c under callgrind, collecting inside pcap_dispatch() only."""
    from zcap.testbed import Testbed
    binary = out.parent / "libpcap_drain"
    subprocess.run(["gcc", "-O2", "-o", str(binary),
                    str(BENCH_DIR / "c" / "libpcap_drain.c"), "-lpcap"], check=True)
    with Testbed() as tb:
        cmd = ["ip", "netns", "exec", tb.netns, "valgrind", "--tool=callgrind",
               "--toggle-collect=pcap_dispatch",
               f"--callgrind-out-file={out}.%p", str(binary), tb.b, str(count), str(64 << 20), "1000"]
        with subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) as proc:
            try:
                assert proc.stdout.readline().strip() == "READY"
                with tb.sender() as s:
                    assert s.send_sequence(tb.frame(frame), count) == count
                time.sleep(1.5)
                proc.stdin.write("go\n")
                proc.stdin.flush()
                armed = proc.stdout.readline()
                if not armed.startswith("ARMED") or f'"received": {count},' not in armed:
                    raise RuntimeError(f"pre-fill failed: {armed}")
                proc.stdin.write("go\n")
                proc.stdin.flush()
                done = proc.stdout.readline()
                if not done.startswith("DONE"):
                    raise RuntimeError(f"c-libpcap: {done}")
                proc.stdin.write("go\n")
                proc.stdin.flush()
                proc.wait(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()


def measure(name: str, count: int, frame: int, helper: Path, cython_dir: str, functions: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        if name == "c-libpcap":
            out = Path(tmp) / "callgrind.out"
            c_libpcap_drain(count, frame, out)
            return _instructions(Path(tmp), count, functions)
        out = Path(tmp) / "callgrind.out"
        cmd = ["valgrind", "--tool=callgrind", "--collect-atstart=no", f"--callgrind-out-file={out}.%p",
               sys.executable, __file__, "--child", name, "--count", str(count),
               "--frame-size", str(frame), "--helper", str(helper), "--cython-dir", cython_dir]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        return _instructions(Path(tmp), count, functions)


def _instructions(tmp: Path, count: int, functions: int) -> float:
    """Instructions per packet of the biggest callgrind dump in `tmp`."""
    best = (0, "")
    for f in Path(tmp).glob("callgrind.out.*"):       # the client request's dump
        ann = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", str(f)],
                             capture_output=True, text=True).stdout
        total = re.search(r"([\d,]+)(?: \(100\.0%\))?\s+PROGRAM TOTALS", ann)
        if total and int(total.group(1).replace(",", "")) > best[0]:
            best = (int(total.group(1).replace(",", "")), ann)
    ir, ann = best
    if functions:
        lines = [ln for ln in ann.splitlines() if re.match(r"\s*[\d,]+ \(", ln)
                 and "PROGRAM TOTALS" not in ln and "libc-start" not in ln][:functions]
        print("\n".join(lines))
    return ir / count


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("consumers", nargs="*", default=["zcap-iter", "zcap-batch", "zcap-cython"])
    p.add_argument("--count", type=int, default=20000)
    p.add_argument("--frame-size", type=int, default=64)
    p.add_argument("--functions", type=int, default=0, help="also print the top N functions")
    p.add_argument("--vlan", action="store_true", help="802.1Q-tagged frames (tag reinserted)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--helper", help=argparse.SUPPRESS)
    p.add_argument("--cython-dir", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
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
        print(f"| consumer | instructions/packet ({args.count:,} x {args.frame_size} B{kind}) |\n|---|---|")
        for name in args.consumers:
            print(f"| {name} | {measure(name, args.count, args.frame_size, helper, cython_dir, args.functions):.1f} |",
                  flush=True)


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces, AF_PACKET)")
    main()
