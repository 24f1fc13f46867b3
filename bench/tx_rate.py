"""Transmit rate: frames/s of 64-byte frames through each sender zcap has.

    sudo python3 bench/tx_rate.py             # 1,000,000 frames per run, 5 runs per sender
    sudo python3 bench/tx_rate.py --quick     # 200,000 frames, 3 runs
    sudo python3 bench/tx_rate.py --only tx-ring,sendmmsg

Every sender sends N sequence-numbered 64-byte frames as fast as it can on
veth-a of a private veth pair (zcap.testbed); what arrived is counted by the
peer's own counter (/sys/class/net/veth-b/statistics/rx_packets, read in the
namespace), so no capture socket adds work on the receiving side.  The rate
is frames received / the sender's wall time; CPU is the sending process's
user + system time per frame, which on a veth includes the receive path the
kernel runs inline in the sender's send() call.

Senders:
  tx-ring           zcap.inject send_sequence(): PACKET_TX_RING, one send() per
                    64 frames, qdisc bypass (the defaults)
  tx-ring-b16/b256  the same with 16 / 256 frames per send()
  tx-ring-qdisc     the same through the interface's qdisc (qdisc_bypass=False)
  sendmmsg          zcap._testbed.send_sequence(): sendmmsg() batches of 32 (the test sender)
  python-send       a plain Python loop of socket.send() (the same frame every
                    time: the cheapest loop Python can write)
Every run is bounded in count and in time (--max-seconds).  Results go to
stdout as Markdown and to bench/results/tx_rate.json.
"""

from __future__ import annotations

import argparse
import datetime
import errno
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import zcap
from zcap import _testbed
from zcap.inject import open_inject
from zcap.testbed import SEQ_OFFSET, Testbed

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_JSON = BENCH_DIR / "results" / "tx_rate.json"
FULL_COUNT, FULL_REPEAT = 1_000_000, 5
QUICK_COUNT, QUICK_REPEAT = 200_000, 3
PYTHON_SHARE = 0.25            # the Python loop sends this share of N (it is much slower)
FRAME_BYTES = 64


@dataclass
class Run:
    sent: int
    received: int
    seconds: float
    cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.received / self.seconds

    @property
    def cpu_ns_per_frame(self) -> float:
        return self.cpu_seconds / max(1, self.sent) * 1e9


@dataclass
class Result:
    sender: str
    runs: list[Run] = field(default_factory=list)

    def rates(self) -> list[float]:
        return [r.rate for r in self.runs]

    def as_json(self) -> dict:
        return {"sender": self.sender, "runs": [asdict(r) | {"rate": r.rate} for r in self.runs],
                "median_rate": statistics.median(self.rates()),
                "median_cpu_ns_per_frame": statistics.median(r.cpu_ns_per_frame for r in self.runs)}


# A sender: (testbed, template, count, max_seconds) -> frames sent
Sender = Callable[[Testbed, bytes, int, float], int]


def _tx_ring(batch: int = 64, qdisc_bypass: bool = True) -> Sender:
    def send(tb: Testbed, template: bytes, count: int, max_seconds: float) -> int:
        with open_inject(tb.a, netns=tb.netns, qdisc_bypass=qdisc_bypass) as inj:
            inj.batch = batch
            result = inj.send_sequence(template, count, seq_offset=SEQ_OFFSET, max_seconds=max_seconds)
            inj.flush(wait=True)
            return result.frames
    return send


def _sendmmsg(tb: Testbed, template: bytes, count: int, max_seconds: float) -> int:
    with tb.sender() as s:
        sent, _, _ = _testbed.send_sequence(s.sock.fileno(), template, SEQ_OFFSET, 0, count, 0.0, 32,
                                            max_seconds)
        return sent


def _python_send(tb: Testbed, template: bytes, count: int, max_seconds: float) -> int:
    count = int(count * PYTHON_SHARE)
    deadline = time.monotonic() + max_seconds
    with tb.sender() as s:
        send = s.sock.send
        sent = 0
        while sent < count:
            if not sent & 1023 and time.monotonic() > deadline:
                break
            try:
                send(template)
            except OSError as exc:             # the device pushed back: retry, as the others do
                if exc.errno not in (errno.ENOBUFS, errno.EAGAIN):
                    raise
                continue
            sent += 1
        return sent


SENDERS: dict[str, Sender] = {
    "tx-ring": _tx_ring(),
    "tx-ring-b16": _tx_ring(batch=16),
    "tx-ring-b256": _tx_ring(batch=256),
    "tx-ring-qdisc": _tx_ring(qdisc_bypass=False),
    "sendmmsg": _sendmmsg,
    "python-send": _python_send,
}


def _rx_packets(tb: Testbed) -> int:
    out = subprocess.run(["ip", "netns", "exec", tb.netns, "cat",
                          f"/sys/class/net/{tb.b}/statistics/rx_packets"],
                         check=True, capture_output=True, text=True).stdout
    return int(out)


def measure(tb: Testbed, sender: Sender, count: int, max_seconds: float) -> Run:
    template = tb.frame(FRAME_BYTES)
    before = _rx_packets(tb)
    t0, c0 = time.perf_counter(), time.process_time()
    sent = sender(tb, template, count, max_seconds)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    time.sleep(0.05)                            # the peer's counter is updated in softirq
    received = _rx_packets(tb) - before
    return Run(sent=sent, received=received, seconds=seconds, cpu_seconds=cpu)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help=f"{QUICK_COUNT} frames, {QUICK_REPEAT} runs")
    p.add_argument("--count", type=int, help="frames per run")
    p.add_argument("--repeat", type=int, help="runs per sender")
    p.add_argument("--only", help="comma-separated senders: " + ", ".join(SENDERS))
    p.add_argument("--max-seconds", type=float, default=30.0, help="bound on one run (default 30)")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = p.parse_args(argv)
    count = args.count or (QUICK_COUNT if args.quick else FULL_COUNT)
    repeat = args.repeat or (QUICK_REPEAT if args.quick else FULL_REPEAT)
    names = args.only.split(",") if args.only else list(SENDERS)
    unknown = set(names) - set(SENDERS)
    if unknown:
        p.error(f"unknown senders: {', '.join(sorted(unknown))}")
    if os.geteuid() != 0:
        p.error("needs root (AF_PACKET sockets and network namespaces)")
    results = {name: Result(name) for name in names}
    meta = {"kernel": platform.release(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "zcap": zcap.__version__, "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "count": count, "repeat": repeat, "frame_bytes": FRAME_BYTES,
            "python_send_count": int(count * PYTHON_SHARE), "loadavg_start": os.getloadavg()}
    with Testbed() as tb:
        for name in names:                      # one warm-up run each, not counted
            measure(tb, SENDERS[name], min(count, 50_000), args.max_seconds)
        for i in range(repeat):                 # interleaved: drift hits every sender alike
            for name in names:
                run = measure(tb, SENDERS[name], count, args.max_seconds)
                results[name].runs.append(run)
                lost = f"  LOST {run.sent - run.received}" if run.received != run.sent else ""
                print(f"run {i + 1}/{repeat} {name:14} {run.rate / 1e3:8.1f} kframes/s  "
                      f"{run.cpu_ns_per_frame:7.0f} ns CPU/frame{lost}", file=sys.stderr)
    meta["loadavg_end"] = os.getloadavg()
    base = statistics.median(results["sendmmsg"].rates()) if "sendmmsg" in results else None
    print(f"\n64-byte frames on a veth pair, {count} frames per run "
          f"({int(count * PYTHON_SHARE)} for python-send), median of {repeat} runs "
          f"(min-max); counted by the peer's rx_packets\n")
    print("| sender | kframes/s | min-max | CPU ns/frame | vs sendmmsg |")
    print("|---|---:|---:|---:|---:|")
    for name, res in results.items():
        rates = res.rates()
        med = statistics.median(rates)
        cpu = statistics.median(r.cpu_ns_per_frame for r in res.runs)
        ratio = f"{med / base:.2f}x" if base else "-"
        print(f"| {name} | {med / 1e3:.1f} | {min(rates) / 1e3:.0f}-{max(rates) / 1e3:.0f} | "
              f"{cpu:.0f} | {ratio} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "results": [r.as_json() for r in results.values()]},
                                    indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
