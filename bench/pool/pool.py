"""zcap.Pool: how a CPU-bound handler scales with workers, and what the pool costs.

    sudo python3 bench/pool/pool.py            # 300,000 frames per run, 2 runs
    sudo python3 bench/pool/pool.py --quick    # 100,000 frames, 1 run

The handler does ~2 us of Python per packet (a calibrated loop), like a
decode plus a dict update.  Each run has its own veth pair (zcap.testbed);
frames are 64-byte UDP frames from zcap's C sender.

* drain: the workers are frozen (SIGSTOP) while N frames fill their rings
  (lb fanout: an exact half each; 128 MiB per ring in 128 KiB blocks, as
  libpcap lays out pcapy-ng's buffer, well below full), then
  thawed; the rate is N / (last packet handled - first packet handled),
  from CLOCK_MONOTONIC stamps the workers take.  1 vs 2 workers.
* live: N frames as fast as the C sender goes (no pacing) while the workers
  run, with 4 MiB rings (~30,000 frames each); reported: the share
  captured (the rest the kernel dropped).
  On a veth the kernel's receive work runs on the sending CPU, so on this
  2-CPU machine the sender competes with the workers for the CPUs.
* pool cost: drain rate of a handler that only counts, and of one that also
  streams one item per packet with out.put(); the difference is the cost
  per streamed item.  And the time of one pool.stats() round trip.
* the peer: N processes each running pcapy-ng (libpcap) with set_fanout by
  hand, the same ~2 us per packet, in the same regimes.

Figures are printed as Markdown and saved to bench/results/pool.json, and
drawn (matplotlib) to docs/pool.png; `--chart-only` redraws from the json.
The machine is shared: numbers vary from run to run; compare ratios in one run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import statistics
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[2]))   # the checkout

import pool_handlers as PH  # noqa: E402

import zcap  # noqa: E402
from zcap.testbed import Testbed  # noqa: E402

# drain: 128 MiB holds every frame; 128 KiB blocks as libpcap uses, since a
# frozen worker's partly filled block is retired every timeout_ms
RING = dict(block_size=1 << 17, block_count=1024, timeout_ms=10)
LIVE_RING = dict(block_size=1 << 17, block_count=32, timeout_ms=10)  # live: ~30,000 frames


def send(tb, count: int, pps: float = 0.0) -> int:
    with tb.sender() as s:
        return s.send_sequence(tb.frame(), count, pps=pps, max_seconds=60)


def wait_delivered(pool, target: int, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    last, still = -1, 0
    while time.monotonic() < end:
        s = pool.stats()
        if s.delivered + s.dropped >= target:
            return
        still = still + 1 if s.delivered == last else 0
        last = s.delivered
        if still > 20:
            return
        time.sleep(0.05)


def zcap_drain(handler, workers: int, count: int) -> dict:
    with Testbed() as tb:
        with zcap.Pool(tb.b, handler, workers=workers, fanout="lb", netns=tb.netns,
                       cpus=list(range(workers)), **RING) as pool:
            for pid in pool.pids:
                os.kill(pid, signal.SIGSTOP)
            sent = send(tb, count)
            for pid in pool.pids:
                os.kill(pid, signal.SIGCONT)
            wait_delivered(pool, sent)
            t = time.perf_counter()
            for _ in range(20):
                pool.stats()
            stats_ms = (time.perf_counter() - t) / 20 * 1000
            pool.stop()
            for _ in pool.results():
                pass
        out = pool.join()
        s = pool.stats()
    n = sum(o[0] for o in out)
    span = max(o[2] for o in out) - min(o[1] for o in out if o[0])
    # each worker's own rate, summed: what the workers could do with a core each
    capacity = sum(o[0] / (o[2] - o[1]) for o in out if o[0] and o[2] > o[1])
    return dict(sent=sent, handled=n, dropped=s.dropped, pps=n / span, capacity=capacity,
                stats_ms=stats_ms)


def zcap_live(handler, workers: int, count: int) -> dict:
    with Testbed() as tb:
        with zcap.Pool(tb.b, handler, workers=workers, fanout="hash", netns=tb.netns,
                       **LIVE_RING) as pool:
            sent = 0
            t = time.perf_counter()
            with tb.sender() as s:
                for flow in range(16):             # 16 flows: hash can spread them
                    sent += s.send_sequence(tb.frame(sport=3000 + flow), count // 16,
                                            max_seconds=60)
            sender_pps = sent / (time.perf_counter() - t)
            wait_delivered(pool, sent)
        out = pool.join()
        s = pool.stats()
    return dict(sent=sent, handled=sum(o[0] for o in out), dropped=s.dropped,
                share=sum(o[0] for o in out) / sent, per_worker=[o[0] for o in out],
                sender_pps=sender_pps)


def pcapy_run(workers: int, count: int, turns: int, live: bool) -> dict:
    ctx = multiprocessing.get_context("forkserver")
    with Testbed() as tb:
        group = 4000 + os.getpid() % 1000
        procs, conns = [], []
        for i in range(workers):
            parent, child = ctx.Pipe()
            target = count // workers if not live else 1 << 62
            p = ctx.Process(target=PH.pcapy_worker,
                            args=(tb.b, tb.netns, group, turns, target, live, child))
            p.start()
            os.sched_setaffinity(p.pid, {i % os.cpu_count()})
            procs.append(p)
            conns.append(parent)
        pids = [c.recv()[1] for c in conns]
        if live:
            sent = 0
            with tb.sender() as s:
                for flow in range(16):
                    sent += s.send_sequence(tb.frame(sport=3000 + flow), count // 16,
                                            max_seconds=60)
        else:
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            sent = send(tb, count)
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        results = []
        for c in conns:       # a worker short of its target (drops) ends on "stop"
            while not c.poll(0.5):
                c.send("stop")
            results.append(c.recv())
        for p in procs:
            p.join(30)
    n = sum(r[1] for r in results)
    span = max(r[3] for r in results) - min(r[2] for r in results if r[1])
    return dict(sent=sent, handled=n, dropped=sum(r[5] for r in results),
                pps=n / span if not live else None, share=n / sent)


def chart(results: dict) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no chart)", file=sys.stderr)
        return

    def med(key, field):
        return statistics.median(run[key][field] for run in results["runs"])

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    labels = ["zcap.Pool", "pcapy-ng by hand"]
    for offset, w in ((-0.2, 1), (0.2, 2)):
        left.bar([i + offset for i in range(2)],
                 [med(f"{who} drain {w}", "pps") / 1000 for who in ("zcap", "pcapy")],
                 width=0.4, label=f"{w} worker{'s' if w > 1 else ''}")
        right.bar([i + offset for i in range(2)],
                  [med(f"{who} live {w}", "share") * 100 for who in ("zcap", "pcapy")],
                  width=0.4, label=f"{w} worker{'s' if w > 1 else ''}")
    left.set_title(f"drain, ~{results['handler_us']:.1f} us handler (k packets/s)")
    right.set_title("live, sender at max (% captured)")
    for ax in (left, right):
        ax.set_xticks(range(2), labels)
        ax.legend()
    fig.suptitle(f"{results['count']:,} 64-byte frames, {results['cpus']} shared CPUs "
                 f"(noisy: other jobs ran)")
    fig.tight_layout()
    fig.savefig(Path(__file__).resolve().parents[2] / "docs" / "pool.png", dpi=80)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--count", type=int)
    ap.add_argument("--runs", type=int)
    ap.add_argument("--chart-only", action="store_true")
    args = ap.parse_args()
    if args.chart_only:
        chart(json.loads((Path(__file__).resolve().parents[1] / "results" / "pool.json").read_text()))
        return
    count = args.count or (100_000 if args.quick else 300_000)
    runs = args.runs or (1 if args.quick else 2)
    turns = PH.calibrate()
    t = time.perf_counter()
    for _ in range(100000):
        PH.spin(turns)
    handler_us = (time.perf_counter() - t) / 100000 * 1e6
    timed = partial(PH.timed, turns)
    results: dict = {"count": count, "handler_us": handler_us, "cpus": os.cpu_count(), "runs": []}
    for _ in range(runs):
        r = {}
        for w in (1, 2):
            r[f"zcap drain {w}"] = zcap_drain(timed, w, count)
            r[f"pcapy drain {w}"] = pcapy_run(w, count, turns, live=False)
            r[f"zcap live {w}"] = zcap_live(timed, w, count)
            r[f"pcapy live {w}"] = pcapy_run(w, count, turns, live=True)
        r["pool count only"] = zcap_drain(PH.counted, 1, count)
        r["pool streamed"] = zcap_drain(PH.streamed, 1, count)
        results["runs"].append(r)
        print(json.dumps(r, indent=1), file=sys.stderr)

    def med(key, field):
        vals = [run[key][field] for run in results["runs"] if run[key].get(field) is not None]
        return statistics.median(vals) if vals else float("nan")

    print(f"\n### zcap.Pool, {count:,} 64-byte frames, handler {handler_us:.2f} us/packet, "
          f"{os.cpu_count()} CPUs, median of {runs} run(s)\n")
    print(f"Kernel drops in the drain runs: zcap {med('zcap drain 1', 'dropped')} / "
          f"{med('zcap drain 2', 'dropped')}, pcapy-ng {med('pcapy drain 1', 'dropped')} / "
          f"{med('pcapy drain 2', 'dropped')} (1 / 2 workers; must be 0).\n")
    print("| regime | consumer | 1 worker | 2 workers | 2 / 1 |")
    print("|---|---|---|---|---|")
    for who in ("zcap", "pcapy"):
        name = "zcap.Pool" if who == "zcap" else "pcapy-ng + set_fanout by hand"
        a, b = med(f"{who} drain 1", "pps"), med(f"{who} drain 2", "pps")
        print(f"| drain (packets/s, wall clock) | {name} | {a:,.0f} | {b:,.0f} | {b / a:.2f}x |")
        if who == "zcap":
            a, b = med("zcap drain 1", "capacity"), med("zcap drain 2", "capacity")
            print(f"| drain (sum of each worker's own rate) | {name} | {a:,.0f} | {b:,.0f} | "
                  f"{b / a:.2f}x |")
    for who in ("zcap", "pcapy"):
        a, b = med(f"{who} live 1", "share"), med(f"{who} live 2", "share")
        name = "zcap.Pool" if who == "zcap" else "pcapy-ng + set_fanout by hand"
        print(f"| live, sender at max (captured share) | {name} | {a:.1%} | {b:.1%} | "
              f"{b / a:.2f}x |")
    print(f"\nThe C sender reached {med('zcap live 1', 'sender_pps'):,.0f} frames/s "
          f"(1 worker running) and {med('zcap live 2', 'sender_pps'):,.0f} (2 workers).")
    plain, streamed = med("pool count only", "pps"), med("pool streamed", "pps")
    print(f"\nPool cost: a worker that only counts drains {plain:,.0f} packets/s; with one "
          f"out.put() per packet {streamed:,.0f} packets/s: "
          f"{(1 / streamed - 1 / plain) * 1e9:,.0f} ns per streamed item.  "
          f"pool.stats() round trip: {med('pool count only', 'stats_ms'):.2f} ms.")
    out = Path(__file__).resolve().parents[1] / "results" / "pool.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    chart(results)


if __name__ == "__main__":
    main()
