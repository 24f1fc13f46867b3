"""pcapy's next() on an idle link: does it honour to_ms, and Ctrl-C?  pcapy-ng vs the shim.

    sudo python3 bench/compat/compat_idle.py

For each module a child in the testbed namespace opens a silent veth with
open_live(iface, 65535, 0, 200) and calls next().  Reported: whether next()
returned within 3 s (it should after 200 ms), and if not, whether SIGINT
(Ctrl-C) ended it within 3 s more.  Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import signal
import subprocess
import sys
import time

from zcap.testbed import Testbed

CHILD = """
import sys, time, importlib
pcapy = importlib.import_module(sys.argv[2])
r = pcapy.open_live(sys.argv[1], 65535, 0, 200)
print("open", flush=True)
t0 = time.monotonic()
try:
    hdr, data = r.next()
    print(f"next() returned {(hdr, data)!r} after {time.monotonic() - t0:.2f} s", flush=True)
except KeyboardInterrupt:
    print(f"KeyboardInterrupt after {time.monotonic() - t0:.2f} s", flush=True)
"""


def probe(tb: Testbed, module: str) -> str:
    proc = subprocess.Popen([shutil.which("ip"), "netns", "exec", tb.netns, sys.executable, "-c",
                             CHILD, tb.b, module], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "open"
        try:
            return proc.communicate(timeout=3)[0].strip()
        except subprocess.TimeoutExpired:
            pass
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            out = proc.communicate(timeout=3)[0].strip()
            return f"no return after 3 s; SIGINT: {out or 'process ended'} ({time.monotonic() - t0:.2f} s)"
        except subprocess.TimeoutExpired:
            return "no return after 3 s; SIGINT ignored for 3 s (killed)"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    # parsed first, so `--help` prints this and starts no test bed
    argparse.ArgumentParser(prog="compat_idle.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    print("| module | open_live(veth, 65535, 0, 200).next() on an idle link |")
    print("|---|---|")
    with Testbed() as tb:
        for module in ("pcapy", "zcap.compat.pcapy"):
            if importlib.util.find_spec(module.split(".")[0]) is None:
                print(f"| {module} | not installed |")
                continue
            print(f"| {module} | {probe(tb, module)} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
