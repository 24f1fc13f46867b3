"""Stress runs at full size: nothing lost under attack (issue 11).

    sudo python3 bench/stress/stress.py [--seconds 2] [--only stop,flap,fairness]

All traffic stays on a private veth pair (zcap.testbed); every generator is
the project's C sender (send_sequence, GIL released), bounded in count and
time.  Printed as markdown tables for docs/benchmarks.md:

* stop: `zcap -i IF -w FILE` (ring, copy, immediate) while the sender runs at
  its maximum rate; SIGINT (or SIGTERM) after --seconds.  Packets accepted by
  the kernel ("received by filter") vs captured, dropped, abandoned and
  actually in the file; how long the drain took; the command's peak RSS and
  open fds, sampled from /proc while it ran.
* flap: the API under 200 kpps with the link down for 20 ms every 0.5 s;
  the capture must go on and received == delivered + dropped + abandoned.
* fairness: bench/async_fairness.py's 1 ms timer lateness (p50/p99/max) on
  asyncio and uvloop, with and without a second CPU-bound process.

The test suite runs the same scenarios at a CI size (tests/live/test_stop.py,
test_cli_stop.py, test_link_flap.py, test_async_fairness.py) asserting the
accounting only; here the sizes are the ones the issue reported.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import zcap  # noqa: E402
from zcap.testbed import Testbed, frame_seq  # noqa: E402

ZCAP = [sys.executable, "-m", "zcap"]


def proc_usage(pid: int) -> tuple[int, int]:
    """(peak RSS in KiB, open fds) of a running process; (0, 0) once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            hwm = next((int(line.split()[1]) for line in f if line.startswith("VmHWM:")), 0)
        return hwm, len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration):
        return 0, 0


def summary(stderr: str) -> dict[str, int]:
    out = {}
    for line in stderr.splitlines():
        for key, name in (("packets captured", "captured"), ("received by filter", "received"),
                          ("dropped by kernel", "dropped"), ("not read", "abandoned")):
            if key in line:
                out[name] = int(line.split()[0])
    return out


def pcap_count(path: Path) -> int:
    out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.number"],
                         capture_output=True, text=True)
    return len(out.stdout.split()) if out.returncode == 0 else -1


def stop_run(tb: Testbed, mode: str, seconds: float, sig: int, workdir: Path) -> dict:
    out = workdir / f"stop-{mode}.pcap"
    extra = {"ring": [], "copy": ["--mode", "copy"], "immediate": ["--immediate-mode"]}[mode]
    proc = subprocess.Popen([*ZCAP, "-i", tb.b, "--netns", tb.netns, "-w", str(out), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    line = b""
    while b"listening on" not in line:
        line = proc.stderr.readline()
        if not line:
            raise RuntimeError("zcap did not start")
    stop = threading.Event()
    sent = [0]

    def flood() -> None:
        with tb.sender() as s:
            while not stop.is_set():
                sent[0] += s.send_sequence(tb.frame(64), 200_000, first_seq=sent[0], max_seconds=5)

    sender = threading.Thread(target=flood, daemon=True)
    sender.start()
    peak_rss = fds = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rss, n = proc_usage(proc.pid)
        peak_rss, fds = max(peak_rss, rss), max(fds, n)
        time.sleep(0.05)
    t0 = time.monotonic()
    proc.send_signal(sig)
    while proc.poll() is None:
        rss, n = proc_usage(proc.pid)
        peak_rss, fds = max(peak_rss, rss), max(fds, n)
        time.sleep(0.01)
    drain = time.monotonic() - t0
    stop.set()
    sender.join(10)
    err = proc.stderr.read().decode()
    counts = summary(err)
    counts.update(mode=mode, signal=signal.Signals(sig).name, rc=proc.returncode,
                  in_file=pcap_count(out), drain_s=drain, rss_mib=peak_rss / 1024, fds=fds,
                  sent=sent[0])
    out.unlink(missing_ok=True)
    return counts


def flap_run(tb: Testbed, mode: str, seconds: float) -> dict:
    opts = {"ring": {}, "copy": {"mode": "copy"}, "immediate": {"immediate": True}}[mode]
    cap = zcap.open_live(tb.b, netns=tb.netns, **opts)
    seqs: list[int] = []
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for pkt in cap:
                seqs.append(frame_seq(pkt))
        except BaseException as exc:          # reported in the table
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    count = int(200_000 * seconds)
    sent = [0]

    def send() -> None:
        with tb.sender() as s:
            sent[0] = s.send_sequence(tb.frame(64), count, pps=200_000, max_seconds=seconds * 3)

    sender = threading.Thread(target=send)
    sender.start()
    flaps = 0
    while sender.is_alive():
        time.sleep(0.5)
        tb.ip("link", "set", tb.b, "down")
        time.sleep(0.02)
        tb.ip("link", "set", tb.b, "up")
        flaps += 1
    sender.join()
    time.sleep(0.2)
    cap.stop()
    reader.join(30)
    cap.close()
    s = cap.stats()
    return dict(mode=mode, sent=sent[0], flaps=flaps, received=s.received, delivered=len(seqs),
                dropped=s.dropped, abandoned=s.abandoned,
                adds_up=s.received == len(seqs) + s.dropped + s.filtered + s.skipped + s.abandoned,
                error=type(errors[0]).__name__ if errors else "-",
                last_seq_ok=bool(seqs) and seqs[-1] == sent[0] - 1)


def fairness_rows(seconds: float, busy: bool) -> str:
    args = [sys.executable, str(REPO / "bench" / "async_fairness.py"), "--seconds", str(seconds)]
    if busy:
        args.append("--busy")
    out = subprocess.run(args, capture_output=True, text=True, timeout=600)
    return "\n".join(line for line in out.stdout.splitlines()
                     if line.startswith("| ") and not line.startswith("| loop |"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--only", default="stop,flap,fairness")
    args = p.parse_args()
    only = set(args.only.split(","))
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"zcap-stress-{os.getpid()}"
    workdir.mkdir()
    try:
        with Testbed() as tb:
            if "stop" in only:
                print("| mode | signal | sent | received by filter | captured | dropped | abandoned "
                      "| in file | captured + dropped = received | drain (s) | peak RSS (MiB) | fds | rc |")
                print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
                for mode in ("ring", "copy", "immediate"):
                    for sig in (signal.SIGINT, signal.SIGTERM):
                        r = stop_run(tb, mode, args.seconds, sig, workdir)
                        ok = r.get("captured", -1) + r.get("dropped", -1) == r.get("received")
                        print(f"| {r['mode']} | {r['signal']} | {r['sent']:,} | {r.get('received', -1):,} "
                              f"| {r.get('captured', -1):,} | {r.get('dropped', -1):,} "
                              f"| {r.get('abandoned', 0):,} | {r['in_file']:,} | {'yes' if ok else 'NO'} "
                              f"| {r['drain_s']:.2f} | {r['rss_mib']:.0f} | {r['fds']} | {r['rc']} |",
                              flush=True)
                print()
            if "flap" in only:
                print("| mode | sent | 20 ms flaps | received | delivered | dropped | abandoned | adds up "
                      "| error | last packet delivered |")
                print("|---|---|---|---|---|---|---|---|---|---|")
                for mode in ("ring", "copy", "immediate"):
                    r = flap_run(tb, mode, max(args.seconds, 2.0))
                    print(f"| {r['mode']} | {r['sent']:,} | {r['flaps']} | {r['received']:,} "
                          f"| {r['delivered']:,} | {r['dropped']:,} | {r['abandoned']:,} "
                          f"| {'yes' if r['adds_up'] else 'NO'} | {r['error']} "
                          f"| {'yes' if r['last_seq_ok'] else 'no'} |", flush=True)
                print()
        if "fairness" in only:
            print("| loop | capture | captured | 1 ms timer lateness p50 / p99 / max (ms) "
                  "| echo RTT p50 / p99 / max (ms) | second CPU-bound process |")
            print("|---|---|---|---|---|---|")
            for busy in (False, True):
                for row in fairness_rows(3.0, busy).splitlines():
                    print(f"{row} {'yes' if busy else 'no'} |", flush=True)
    finally:
        for f in workdir.iterdir():
            f.unlink()
        workdir.rmdir()


if __name__ == "__main__":
    main()
