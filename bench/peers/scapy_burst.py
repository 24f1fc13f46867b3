"""How many packets of a burst scapy's sniff() keeps, on its own socket and on ZcapSocket.

    sudo python3 bench/peers/scapy_burst.py [--count 20000] [--repeat 3]

A veth pair in a private namespace (zcap.testbed); scapy runs in a child
under `ip netns exec` (it reads its interface list at import) with
AsyncSniffer(iface=..., prn=count, store=False): once with scapy's own
conf.L2listen, once after zcap.compat.scapy.install().  The parent sends
--count 64-byte frames at the generator's maximum rate (a C sendmmsg-like
loop, zcap's send_sequence), then waits until the child has counted nothing
new for 2 s (scapy dissects each packet: ~50-500 us), stops the sniffer and
reads how many distinct sequence numbers it saw.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time

from zcap.testbed import Testbed

CHILD = r"""
import json, sys, threading, time
from scapy.all import conf, AsyncSniffer
conf.verb = 0
iface, mode = sys.argv[1], sys.argv[2]
if mode == "zcap":
    from zcap.compat.scapy import install
    install()
seen = set()
def prn(p):
    seen.add(int.from_bytes(bytes(p)[42:50], "big"))
t = AsyncSniffer(iface=iface, prn=prn, store=False, filter="udp")
t.start()
time.sleep(1.0)
print("ready", flush=True)
sys.stdin.readline()                         # the burst has been sent
last, quiet = -1, 0.0
while quiet < 2.0:
    time.sleep(0.25)
    n = len(seen)
    quiet = quiet + 0.25 if n == last else 0.0
    last = n
t.stop()
print(json.dumps({"kept": len(seen), "socket": conf.L2listen.__name__}), flush=True)
"""


def one_run(tb: Testbed, mode: str, count: int) -> tuple[int, float, str]:
    proc = subprocess.Popen([shutil.which("ip"), "netns", "exec", tb.netns, sys.executable, "-c",
                             CHILD, tb.b, mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{mode} sniffer did not start")
        with tb.sender() as s:
            t0 = time.perf_counter()
            sent = s.send_sequence(tb.frame(64), count, max_seconds=60)
            rate = sent / (time.perf_counter() - t0)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out = json.loads(proc.stdout.readline())
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return out["kept"], rate, out["socket"]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=20_000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    results: dict[str, list[tuple[int, float]]] = {"scapy": [], "zcap": []}
    names = {}
    with Testbed() as tb:
        for i in range(args.repeat):
            for mode in (("scapy", "zcap") if i % 2 == 0 else ("zcap", "scapy")):
                kept, rate, sock = one_run(tb, mode, args.count)
                names[mode] = sock
                results[mode].append((kept, rate))
                print(f"run {i + 1} {sock}: kept {kept} of {args.count} (burst at {rate:,.0f} frames/s)",
                      file=sys.stderr, flush=True)
    print(f"{args.count:,} x 64-byte frames per burst at the generator's maximum rate, "
          f"{args.repeat} runs, scapy AsyncSniffer(iface=..., filter='udp', prn=...)\n")
    print("| conf.L2listen | kept (min / median / max) | % kept (median) | burst rate (median) |")
    print("|---|---|---|---|")
    for mode, runs in results.items():
        kept = [k for k, _ in runs]
        print(f"| {names[mode]} | {min(kept):,} / {statistics.median(kept):,.0f} / {max(kept):,} | "
              f"{100 * statistics.median(kept) / args.count:.1f} % | "
              f"{statistics.median(r for _, r in runs):,.0f} frames/s |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
