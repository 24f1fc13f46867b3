"""The whole comparison in one command: install the peers, measure, regenerate the docs.

    sudo python3 bench/run_all.py            # full run, ~17 minutes on 2 vCPUs
    sudo python3 bench/run_all.py --quick    # fewer frames and runs, ~3 minutes

1. peers.py installs pcapy-ng, scapy, matplotlib, uvloop (pip, into this
   interpreter) and tcpdump, libpcap-dev, gcc, perf (apt-get) if missing;
2. drain.py for 64- and 1500-byte frames (bench/results/drain-SIZE.json);
3. live.py for 64-byte frames at max and fixed rates, and (full run) for
   1500-byte frames at max rate (bench/results/live-SIZE.json);
4. report.py rewrites the generated part of docs/benchmarks.md and
   docs/benchmarks.png.

Each step runs in its own process with a time limit; all traffic stays on
veth pairs in private namespaces (zcap.testbed), removed on exit.  A step
that fails is reported and the others still run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import benchpath  # noqa: F401  (the family folders on sys.path: peers/ for `import peers`)
import peers
import report

from zcap.testbed import PREFIX

BENCH_DIR = Path(__file__).resolve().parent
NETNS_DIR = "/run/netns"
GRACE_S = 30.0

# (label, script, arguments, time limit in s) for the full and the quick run
FULL = [
    ("drain 64 B", "drain/drain.py", ["--frame-size", "64", "--count", "300000", "--repeat", "5",
                                "--quiet-wait", "1"], 1800),
    ("drain 1500 B", "drain/drain.py", ["--frame-size", "1500", "--count", "100000", "--repeat", "5",
                                  "--quiet-wait", "1"], 1800),
    ("live 64 B", "live/live.py", ["--frame-size", "64"], 1800),
    ("live 1500 B", "live/live.py", ["--frame-size", "1500", "--rates", "0", "--count", "100000"], 900),
]
QUICK = [
    ("drain 64 B", "drain/drain.py", ["--frame-size", "64", "--count", "100000", "--repeat", "2",
                                "--warmup", "0", "--scapy-count", "2000", "--quiet-wait", "0"], 600),
    ("drain 1500 B", "drain/drain.py", ["--frame-size", "1500", "--count", "50000", "--repeat", "2",
                                  "--warmup", "0", "--scapy-count", "2000", "--quiet-wait", "0"],
     600),
    ("live 64 B", "live/live.py", ["--quick", "--scapy-count", "3000"], 600),
]


def stop(proc: subprocess.Popen) -> None:
    """SIGINT first: the step's `with` blocks end its readers and remove its
    namespace; SIGKILL if it does not exit, then remove its namespaces."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=GRACE_S)
        return
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for name in os.listdir(NETNS_DIR) if os.path.isdir(NETNS_DIR) else []:
        if name.startswith(f"{PREFIX}{proc.pid}-"):
            subprocess.run(["ip", "netns", "del", name], check=False)


def run_step(label: str, script: str, args: list[str], limit: float) -> bool:
    cmd = [sys.executable, str(BENCH_DIR / script), *args]
    print(f"\n=== {label}: {shlex.join(cmd[1:])}", file=sys.stderr, flush=True)
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=BENCH_DIR)
    try:
        code = proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        stop(proc)
        print(f"=== {label}: stopped after {limit:.0f} s", file=sys.stderr)
        return False
    except BaseException:
        stop(proc)
        raise
    print(f"=== {label}: exit {code} after {time.monotonic() - start:.0f} s", file=sys.stderr)
    return code == 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer frames and runs (~3 minutes)")
    p.add_argument("--no-install", action="store_true", help="do not install missing peers")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("needs root (AF_PACKET sockets, network namespaces, perf): "
                 "sudo python3 bench/run_all.py")
    statuses = peers.ensure_all(install=not args.no_install)   # versions either way, for the docs
    command = "sudo python3 bench/run_all.py" + (" --quick" if args.quick else "")
    (BENCH_DIR / "results").mkdir(exist_ok=True)
    (BENCH_DIR / "results" / "peers.json").write_text(json.dumps(
        {"command": command, "statuses": [s.line() for s in statuses]}, indent=2) + "\n")
    if args.quick:
        # a quick run leaves no 1500-byte live results behind from an earlier full run
        (BENCH_DIR / "results" / "live-1500.json").unlink(missing_ok=True)
    failed = [label for label, script, step_args, limit in (QUICK if args.quick else FULL)
              if not run_step(label, script, step_args, limit)]
    report.main([])
    if failed:
        print(f"failed steps (see above): {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
