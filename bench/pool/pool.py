"""zcap.Pool: how a CPU-bound handler scales with workers, and what the pool costs.

    sudo python3 bench/pool/pool.py            # 400,000 frames per drain, 9 runs, 3 live (~7 min)
    sudo python3 bench/pool/pool.py --quick    # 100,000 frames, 1 run, 4 s live
    sudo python3 bench/pool/pool.py --turns 110 --live-turns 9000   # fixed handlers across days
    sudo python3 bench/pool/pool.py --live-max  # also the live regime with the sender unpaced

The handler does a fixed amount of Python work per packet, `spin(turns)`:
a loop of `turns` additions, ~2 us of CPU (--handler-us) in the drain
regime and ~200 us (--live-us) in the live one.  `turns` is calibrated once
on CPU time, not wall-clock time (a wall-clock calibration on a loaded
machine gives a lighter handler).  Each measurement has its own veth pair
(zcap.testbed); frames are UDP frames from zcap's C sender (64 bytes in the
drain, 1500 in the live regime).  Every
fanout group here is `lb` (round robin): the handler keeps no per-flow
state, and one sender's flow would all hash to one worker.

Each run measures every consumer with 1 and then 2 workers back to back
(2 then 1 in every other run), so that each 2 / 1 ratio is taken between
measurements seconds apart: this VM's CPUs change speed by up to ~30 % from
one second to the next, in CPU time as much as in wall time (the host's
doing), and a ratio across a minute of other measurements carried that
noise.  The summary gives the median of the runs' ratios and each run's.
The drain is done in every run (--runs, default 9); the live regime and the
pool's cost in the first --live-runs (default 3):

* floor: the same handler, `pool_handlers.timed`, over a plain range() in
  1 and 2 pinned processes, no capture at all: what Python itself scales
  to on this machine at this moment.  The ratio of zcap's 2/1 to the
  floor's 2/1 is what the pool itself loses.
* drain: the workers are frozen (SIGSTOP) while N frames fill their rings
  (an exact half each; 128 MiB per ring in 256 KiB blocks, as pcapy-ng's
  libpcap 1.9 lays out its buffer, well below full), then thawed and
  stopped at once (Pool.stop() is lossless: each worker ends when its ring
  is empty, and the parent does not poll anything meanwhile).  Rate: N / (last packet
  handled - first packet handled) over all workers (CLOCK_MONOTONIC stamps
  taken in the workers).  Also packets per CPU-second of the workers
  (process CPU time, all threads, user + system), summed over the workers:
  that ratio is ~2.0 when nothing is shared between workers, whatever else
  runs on the machine.
* the peer: N processes each running pcapy-ng (libpcap) with set_fanout by
  hand, the same handler over each packet of next_batch(4096) (a memoryview
  of it, as a zcap worker gets a Packet), in the same regimes.
* live: the workers run while a paced sender sends --live-pps (default
  12,000) --live-frame-byte frames (default 1500) for --live-seconds
  (default 10), with a handler of --live-us (default 200 us) per packet.
  Reported: frames sent, captured, dropped by the kernel; 2/1 is captured
  by 2 workers over captured by 1.  Built so that it measures how fast the
  workers consume and nothing else:
  - Overload for both: one worker takes ~5,000 frames/s, two ~10,000, so
    both drop and each worker is busy all the time, as at the generator's
    full rate; but the sender is paced so it needs little CPU.  On a veth
    the kernel's receive work up to the copy into the rings runs on the
    sending CPU (~5 us per frame with the sender's own), so on this 2-CPU
    machine the sender takes CPU from the workers: one worker has a CPU to
    itself, two share 2 - (sender CPU), and 2/1 cannot pass that (the run
    prints it: ~1.95x at 12,000 frames/s).  At the sender's maximum rate
    (--live-max) it needs most of a CPU and the 2 workers share what is left.
  - Equal buffering: 512 KiB of packets per worker for both, counting
    what each holds outside the kernel's reach.  pcapy-ng (libpcap 1.9,
    TPACKET_V3) copies packets out: next_batch(4096) copies from the
    current block, hands it back and goes on to the next until the count or
    a block the kernel still owns.  Its buffer is one 256 KiB block (libpcap
    makes 256 KiB blocks of any buffer), so one call copies at most that
    block, and the handler works through the copy while the kernel refills
    the block: 256 KiB in the kernel + up to 256 KiB copied.  A zcap worker
    reads its ring in place: a 512 KiB ring, 8 blocks of 64 KiB, one being
    read and 7 the kernel fills.  (Earlier runs gave both a 2 x 256 KiB
    buffer: pcapy-ng then held up to twice zcap's packets, and captured
    more because it buffered more.)  zcap's blocks are smaller than
    libpcap's because with 2 x 256 KiB a zcap worker that falls behind
    keeps finding its next block still open in the kernel and sleeps in
    poll() (the busier worker ~50 times in 4 s, ~4 % of its time, against
    2 times with 8 x 64 KiB; the summary prints the count); libpcap cannot
    make smaller blocks (its workers slept up to ~3 % of their time).
  - A small buffer next to the capture: what the rings hold when the
    sending ends is still handled (the stop is lossless), ~330 frames of
    1500 bytes per worker, ~1 % of what one worker captures in 10 s (the
    run prints the share); 512 KiB would hold ~3,300 64-byte frames, hence
    the 1500-byte frames.
  - The floor, live: the same handler over range() for the sending time in
    1 and 2 pinned processes while the same traffic goes to a veth pair
    nobody captures: what Python scales to beside the sender.
  Per worker the summary shows its time on a CPU, runnable but waiting
  for one, and asleep (schedstat), as shares of its span; and the workers'
  CPU time per packet captured (processes, all threads): the handler plus
  what the capture costs, which the machine's load hardly changes.
* pool cost: drain rate of a handler that only counts, and of one that also
  streams one item per packet with out.put(); the difference is the cost
  per streamed item.  And the time of one pool.stats() round trip.

The load average is printed with every run: the machine may be shared.
Figures are printed (a summary table, medians) and saved to
bench/results/pool.json, and drawn (matplotlib) to docs/pool.png;
`--chart-only` redraws from the json.
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

# The rings have pcapy-ng's layout: its libpcap 1.9 makes 256 KiB blocks of any
# buffer size (MAXIMUM_SNAPLEN; seen with packet_diag).
# drain: 128 MiB holds every frame; many blocks, since a frozen worker's partly
# filled block is retired every timeout_ms
RING = dict(block_size=1 << 18, block_count=512, timeout_ms=10)
PCAPY_BATCH = 4096                 # packets per pcapy-ng next_batch() call
# live: equal buffering, 512 KiB of packets per worker for both (see the
# docstring): pcapy-ng has a 1-block kernel buffer plus the copy next_batch()
# made of the block before; zcap reads its 512 KiB ring in place, in 64 KiB
# blocks (with 2 x 256 KiB a worker that falls behind keeps finding its next
# block still open in the kernel: ~50 waits in 4 s against 2)
LIVE_RING = dict(block_size=1 << 16, block_count=8, timeout_ms=10)
PCAPY_LIVE_BUFFER = 1 << 18
SETTLE = 0.3        # s after the last frame is sent: the veth backlog and block timeouts


def load() -> float:
    return round(os.getloadavg()[0], 2)


def send(tb, count: int, pps: float = 0.0, max_seconds: float = 60.0,
         size: int = 64) -> tuple[int, float, float]:
    """(frames sent, seconds it took, CPUs the sending thread used meanwhile).

    On a veth the receive side's kernel work (up to the copy into the rings)
    runs in the sending thread's softirq and is counted in its CPU time."""
    t, c = time.perf_counter(), time.thread_time()
    with tb.sender() as s:
        sent = s.send_sequence(tb.frame(size), count, pps=pps, max_seconds=max_seconds)
    took = time.perf_counter() - t
    return sent, took, (time.thread_time() - c) / took


def summarize(out: list) -> dict:
    """Rates from the workers' (packets, first, last, cpu_first, cpu_end, sched_first,
    sched_end) (pool_handlers.timed)."""
    busy = [o for o in out if o[0]]
    n = sum(o[0] for o in out)
    if not busy:
        return dict(handled=0, pps=0.0, cpu_pps=0.0, per_worker=[0] * len(out))
    span = max(o[2] for o in busy) - min(o[1] for o in busy)
    first = min(o[1] for o in busy)
    return dict(
        handled=n,
        pps=n / span if span > 0 else float("nan"),
        # each worker's packets per CPU-second of its process, summed
        cpu_pps=sum(o[0] / (o[4] - o[3]) for o in busy if o[4] > o[3]),
        per_worker=[o[0] for o in out],
        start_skew_ms=[round((o[1] - first) * 1000, 2) for o in busy],
        span_ms=[round((o[2] - o[1]) * 1000, 1) for o in busy],
        cpu_ms=[round((o[4] - o[3]) * 1000, 1) for o in busy],
        # the handler's thread: time runnable but waiting for a CPU (other tasks on it)
        wait_ms=[round((o[6][1] - o[5][1]) / 1e6, 1) for o in busy],
        # neither running nor waiting for a CPU: asleep (e.g. in poll() on an empty ring)
        asleep_ms=[round(((o[2] - o[1]) * 1e9 - (o[6][0] - o[5][0]) - (o[6][1] - o[5][1])) / 1e6, 1)
                   for o in busy],
    )


def floor(turns: int, workers: int, count: int, live: dict | None = None) -> dict:
    """The handler over range() in `workers` pinned processes: Python's own scaling.

    With `live` (the live regime's pps, seconds and frame size), each process
    runs the handler for that many seconds while the parent sends the live
    traffic into a veth pair that nobody captures: what Python scales to
    beside the sender."""
    ctx = multiprocessing.get_context("forkserver")
    go = ctx.Event()
    procs, conns = [], []
    seconds = live["seconds"] if live else 0.0
    for i in range(workers):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=PH.floor_worker,
                        args=(turns, count // workers, i % os.cpu_count(), go, child, seconds))
        p.start()
        procs.append(p)
        conns.append(parent)
    for c in conns:
        c.recv()
    la = load()
    extra: dict = {}
    if live:
        with Testbed() as tb:
            go.set()
            sent, took, sender_cpu = send(tb, count, live["pps"], seconds * 3, live["size"])
            extra = dict(sent=sent, sender_pps=sent / took, sender_cpu=sender_cpu)
    else:
        go.set()
    out = [c.recv() for c in conns]
    for p in procs:
        p.join(30)
    r = summarize(out)
    if live:
        extra["cpu_us"] = cpu_us(r)
    return dict(r, load=la, **extra)


def zcap_drain(handler, workers: int, count: int, stats_calls: int = 0) -> dict:
    with Testbed() as tb:
        with zcap.Pool(tb.b, handler, workers=workers, fanout="lb", netns=tb.netns,
                       cpus=list(range(workers)), **RING) as pool:
            stats_ms = None
            if stats_calls:            # round trips to idle, running workers
                t = time.perf_counter()
                for _ in range(stats_calls):
                    pool.stats()
                stats_ms = (time.perf_counter() - t) / stats_calls * 1000
            try:
                for pid in pool.pids:
                    os.kill(pid, signal.SIGSTOP)
                sent, _, _ = send(tb, count)
                time.sleep(SETTLE)
                la = load()
            finally:                   # also on Ctrl-C: a frozen worker cannot stop
                for pid in pool.pids:
                    os.kill(pid, signal.SIGCONT)
            pool.stop()                # lossless: each worker ends once its ring is empty
        out = pool.join()
        s = pool.stats()
    return dict(summarize(out), sent=sent, dropped=s.dropped, stats_ms=stats_ms, load=la)


def zcap_live(handler, workers: int, count: int, pps: float, seconds: float,
              size: int) -> dict:
    with Testbed() as tb:
        with zcap.Pool(tb.b, handler, workers=workers, fanout="lb", netns=tb.netns,
                       cpus=list(range(workers)), **LIVE_RING) as pool:
            la = load()
            sent, took, sender_cpu = send(tb, count, pps, seconds * 3, size)
            time.sleep(SETTLE)
            pool.stop()
        out = pool.join()
        s = pool.stats()
    r = live_result(summarize(out), sent, s.dropped, took, sender_cpu, la)
    r["polls"] = [w.polls for w in s.workers]    # times a worker found no block ready
    return r


def cpu_us(r: dict) -> float:
    """The workers' CPU (processes, all threads) per packet handled, in us:
    what the capture costs on top of the handler, whatever the machine's load."""
    return sum(r.get("cpu_ms", [])) * 1000 / r["handled"] if r["handled"] else float("nan")


def live_result(r: dict, sent: int, dropped: int, took: float, sender_cpu: float,
                la: float) -> dict:
    r.update(sent=sent, dropped=dropped, share=r["handled"] / sent, sender_pps=sent / took,
             sender_cpu=sender_cpu, load=la, cpu_us=cpu_us(r))
    # packets per second of the span, not comparable across regimes: keep the count
    r.update(pps=None, cpu_pps=None)
    return r


def pcapy_run(workers: int, count: int, turns: int, live: bool, pps: float = 0.0,
              seconds: float = 60.0, size: int = 64) -> dict:
    ctx = multiprocessing.get_context("forkserver")
    buffer = PCAPY_LIVE_BUFFER if live else RING["block_size"] * RING["block_count"]
    with Testbed() as tb:
        group = 4000 + os.getpid() % 1000
        procs, conns = [], []
        for i in range(workers):
            parent, child = ctx.Pipe()
            target = count // workers if not live else 1 << 62
            p = ctx.Process(target=PH.pcapy_worker,
                            args=(tb.b, tb.netns, group, turns, target, buffer, PCAPY_BATCH,
                                  child))
            p.start()
            os.sched_setaffinity(p.pid, {i % os.cpu_count()})
            procs.append(p)
            conns.append(parent)
        try:
            results = pcapy_measure(tb, procs, conns, count, live, pps, seconds, size)
        finally:                       # also on Ctrl-C: no worker left behind
            for p in procs:
                if p.is_alive():
                    os.kill(p.pid, signal.SIGCONT)
                    p.terminate()
                p.join(30)
    results, sent, took, sender_cpu, la = results
    out = [(r[1], r[2], r[3], r[6], r[7], r[8], r[9]) for r in results]
    r = summarize(out)
    dropped = sum(x[5] for x in results)
    if live:
        return live_result(r, sent, dropped, took, sender_cpu, la)
    r.update(sent=sent, dropped=dropped, share=r["handled"] / sent, load=la)
    return r


def pcapy_measure(tb, procs, conns, count, live, pps, seconds, size) -> tuple:
    """The measured part of pcapy_run: (results, sent, took, sender_cpu, load)."""
    pids = [c.recv()[1] for c in conns]
    if live:
        la = load()
        sent, took, sender_cpu = send(tb, count, pps, seconds * 3, size)
        time.sleep(SETTLE)
        for c in conns:
            c.send("stop")
    else:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        sent, took, sender_cpu = send(tb, count)
        time.sleep(SETTLE)
        la = load()
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    results = []
    for c in conns:       # a worker short of its target (drops) ends on "stop"
        while not c.poll(0.5):
            c.send("stop")
        results.append(c.recv())
    return results, sent, took, sender_cpu, la


# ---------------------------------------------------------------------------
# one run, the summary, the chart

def one_run(args, turns: int, live_turns: int, index: int) -> dict:
    """One run: every consumer's 1- and 2-worker drain back to back (1, 2 in
    even runs, 2, 1 in odd ones, so that a drift over a pair favours neither
    side; see the module docstring), and in the first `--live-runs` runs the
    live regime and the pool's cost."""
    timed = partial(PH.timed, turns)
    live_timed = partial(PH.timed, live_turns)
    live_count = int(args.live_pps * args.live_seconds)
    order = (1, 2) if index % 2 == 0 else (2, 1)
    r: dict = {"load_start": load(), "order": list(order)}
    for w in order:
        r[f"floor drain {w}"] = floor(turns, w, args.count)
    for w in order:
        r[f"zcap drain {w}"] = zcap_drain(timed, w, args.count)
    if not args.no_pcapy:
        for w in order:
            r[f"pcapy drain {w}"] = pcapy_run(w, args.count, turns, live=False)
    if index >= args.live_runs:
        r["load_end"] = load()
        return r
    live = dict(pps=args.live_pps, seconds=args.live_seconds, size=args.live_frame)
    for w in order:
        r[f"floor live {w}"] = floor(live_turns, w, live_count, live)
    for w in order:
        r[f"zcap live {w}"] = zcap_live(live_timed, w, live_count, args.live_pps,
                                        args.live_seconds, args.live_frame)
    if not args.no_pcapy:
        for w in order:
            r[f"pcapy live {w}"] = pcapy_run(w, live_count, live_turns, live=True,
                                             pps=args.live_pps, seconds=args.live_seconds,
                                             size=args.live_frame)
    if args.live_max:
        for w in order:
            r[f"zcap livemax {w}"] = zcap_live(live_timed, w, live_count, 0.0,
                                               args.live_seconds, args.live_frame)
        if not args.no_pcapy:
            for w in order:
                r[f"pcapy livemax {w}"] = pcapy_run(w, live_count, live_turns, live=True,
                                                    pps=0.0, seconds=args.live_seconds,
                                                    size=args.live_frame)
    r["pool count only"] = zcap_drain(PH.counted, 1, args.count, stats_calls=20)
    r["pool streamed"] = zcap_drain(PH.streamed, 1, args.count)
    r["load_end"] = load()
    return r


def run_line(i: int, r: dict) -> str:
    def ratio(who, field):
        a, b = r.get(f"{who} drain 1"), r.get(f"{who} drain 2")
        return f"{b[field] / a[field]:.2f}x" if a and b and a.get(field) else "-"

    def waited(who):
        b = r.get(f"{who} drain 2")
        return f"{sum(b['wait_ms']) / sum(b['span_ms']):.0%}" if b and b.get("span_ms") else "-"

    def live(who):
        a, b = r.get(f"{who} live 1"), r.get(f"{who} live 2")
        return f"{b['handled'] / a['handled']:.2f}x" if a and b and a["handled"] else "-"

    def ceiling():
        b = r.get("zcap live 2")
        return f"{os.cpu_count() - b['sender_cpu']:.2f}x" if b else "-"

    return (f"| {i} | {r['load_start']:.2f} / {r['load_end']:.2f} | {ratio('floor', 'pps')} | "
            f"{ratio('zcap', 'pps')} | {ratio('pcapy', 'pps')} | {ratio('floor', 'cpu_pps')} | "
            f"{ratio('zcap', 'cpu_pps')} | {ratio('pcapy', 'cpu_pps')} | {ceiling()} | "
            f"{live('floor')} | {live('zcap')} | {live('pcapy')} | {waited('zcap')} |")


def ring_text(ring) -> str:
    if not ring:
        return "rings of an older run"
    size = ring["block_size"] * ring["block_count"]
    text = f"{size >> 20} MiB" if size >= 1 << 20 else f"{size >> 10} KiB"
    return f"{text} rings of {ring['block_count']} x {ring['block_size'] >> 10} KiB"


def frames_per_block(block_size: int, size: int) -> int:
    """About how many `size`-byte frames a TPACKET_V3 block holds: a 48-byte
    block header, then per frame its tpacket3_hdr, sockaddr_ll and padding
    (~82 bytes before the MAC header), 16-byte aligned."""
    return (block_size - 48) // ((size + 82 + 15) & ~15)


def time_split(runs: list, key: str) -> str:
    """Each worker's time on a CPU / runnable but waiting for one / asleep, as
    shares of its span (first to last packet), medians over the runs."""
    runs = [run for run in runs if key in run]
    parts = []
    for i in range(len(runs[0][key].get("span_ms", []))):
        def share(field, i=i):
            vals = [run[key][field][i] / run[key]["span_ms"][i] for run in runs
                    if len(run[key].get("span_ms", [])) > i and run[key]["span_ms"][i] > 0]
            return f"{statistics.median(vals):.0%}" if vals else "-"
        parts.append(f"{share('cpu_ms')} / {share('wait_ms')} / {share('asleep_ms')}")
    return ", ".join(parts)


def summary(results: dict) -> None:
    runs = results["runs"]

    def med(key, field):
        vals = [run[key][field] for run in runs if key in run and run[key].get(field) is not None]
        return statistics.median(vals) if vals else float("nan")

    def ratio_med(who, regime, field):
        vals = [run[f"{who} {regime} 2"][field] / run[f"{who} {regime} 1"][field]
                for run in runs if f"{who} {regime} 1" in run and run[f"{who} {regime} 1"][field]]
        return statistics.median(vals) if vals else float("nan")

    names = {"floor": "pure Python (no capture)", "zcap": "zcap.Pool",
             "pcapy": "pcapy-ng + set_fanout by hand"}
    print(f"\n### zcap.Pool: {results['count']:,} 64-byte frames per drain run, handler "
          f"{results['handler_us']:.2f} us CPU/packet ({results['turns']} turns), "
          f"{ring_text(results.get('ring'))}, {results['cpus']} CPUs, medians of {len(runs)} "
          f"drain run(s) and {sum('zcap live 1' in run for run in runs)} live run(s)\n")
    print(f"In the runs, one packet of the floor (handler and loop, 1 process) took "
          f"{1e6 / med('floor drain 1', 'cpu_pps'):.2f} us of CPU (median); on a loaded "
          f"machine the same work takes more CPU time than when calibrated alone.\n")
    print("Per run (load average at its start / end; 2/1 = 2 workers over 1 worker):\n")
    print("| run | load | floor 2/1 wall | zcap 2/1 wall | pcapy-ng 2/1 wall | floor 2/1 CPU | "
          "zcap 2/1 CPU | pcapy-ng 2/1 CPU | live ceiling | floor live 2/1 | zcap live 2/1 | "
          "pcapy-ng live 2/1 | zcap 2 workers waiting for a CPU |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(runs, 1):
        print(run_line(i, r))
    print("\n*wall*: packets / (last - first packet handled); *CPU*: packets per CPU-second "
          "of each worker process, summed; *live ceiling*: 2 CPUs less the sender's CPU "
          "with 2 zcap workers; *waiting for a CPU*: share of the 2-worker drain "
          "the handler threads were runnable but another task had their CPU (schedstat).")
    asleep = [a for run in runs for k in run if k.startswith(("zcap drain", "pcapy drain"))
              for a in run[k].get("asleep_ms", [])]
    if asleep:
        print(f"The handler threads slept (neither running nor waiting for a CPU) at most "
              f"{max(asleep):.1f} ms in any drain run: the drain is never short of packets.")
    print("\nDrain (packets/s; 2/1 is the median of the runs' ratios):\n")
    print("| measure | consumer | 1 worker | 2 workers | 2 / 1 | 2 / 1 relative to the floor |")
    print("|---|---|---|---|---|---|")
    floor_wall = ratio_med("floor", "drain", "pps")
    floor_cpu = ratio_med("floor", "drain", "cpu_pps")
    for field, label, ref in (("pps", "wall clock", floor_wall),
                              ("cpu_pps", "per CPU-second, summed", floor_cpu)):
        for who in ("floor", "zcap", "pcapy"):
            if f"{who} drain 1" not in runs[0]:
                continue
            a, b = med(f"{who} drain 1", field), med(f"{who} drain 2", field)
            q = ratio_med(who, "drain", field)
            print(f"| {label} | {names[who]} | {a:,.0f} | {b:,.0f} | {q:.2f}x | {q / ref:.2f} |")
    for who in ("floor", "zcap", "pcapy"):
        each = [run[f"{who} drain 2"]["pps"] / run[f"{who} drain 1"]["pps"] for run in runs
                if f"{who} drain 1" in run and run[f"{who} drain 1"]["pps"]]
        if each:
            print(f"\n{names[who]}, drain 2 / 1 (wall clock) in each run: "
                  f"{', '.join(f'{x:.2f}x' for x in each)}; range {min(each):.2f}x-"
                  f"{max(each):.2f}x, {sum(x >= 1.8 for x in each)} of {len(each)} runs at "
                  f"1.8x or more.")
    drops = [run[k]["dropped"] for run in runs for k in run if "drain" in k and k in run
             and isinstance(run[k], dict) and "dropped" in run[k]]
    lost = [run[k]["sent"] - run[k]["handled"] for run in runs for k in run
            if k.startswith(("zcap drain", "pcapy drain"))]
    print(f"\nDrain runs: kernel drops {sum(drops)}, frames sent but not handled {sum(lost)} "
          f"(both must be 0).")
    for regime, title in (("live", f"paced at {results['live_pps']:,.0f} frames/s for "
                                   f"{results['live_seconds']:g} s"),
                          ("livemax", "the sender at its maximum rate")):
        if f"zcap {regime} 1" not in runs[0]:
            continue
        size = results.get("live_frame", 64)
        ring = results.get("live_ring") or LIVE_RING
        held = ring["block_count"] * frames_per_block(ring["block_size"], size)
        pcapy_buffer = results.get("pcapy_live_buffer", PCAPY_LIVE_BUFFER)
        pcapy_held = 2 * frames_per_block(pcapy_buffer, size)
        print(f"\nLive, {title}, {size}-byte frames, handler {results['live_us']:.1f} us "
              f"CPU/packet ({results['live_turns']} turns); per worker zcap "
              f"{ring_text(ring)} (~{held:,} frames), pcapy-ng a {pcapy_buffer >> 10} KiB "
              f"buffer + next_batch({results.get('pcapy_batch', PCAPY_BATCH)}), which copies "
              f"at most that buffer (~{pcapy_held:,} frames in all) (medians):\n")
        print("| consumer | workers | sent | sender frames/s | sender CPUs | captured | dropped | "
              "captured share | worker CPU per packet | per worker: CPU / waiting for a CPU / "
              "asleep, % of its span |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for who in ("floor", "zcap", "pcapy"):
            for w in (1, 2):
                k = f"{who} {regime} {w}"
                if k not in runs[0]:
                    continue
                dropped = "" if who == "floor" else f"{med(k, 'dropped'):,.0f}"
                share = "" if who == "floor" else f"{med(k, 'share'):.1%}"
                print(f"| {names[who]} | {w} | {med(k, 'sent'):,.0f} | "
                      f"{med(k, 'sender_pps'):,.0f} | {med(k, 'sender_cpu'):.2f} | "
                      f"{med(k, 'handled'):,.0f} | {dropped} | {share} | "
                      f"{statistics.median(cpu_us(run[k]) for run in runs if k in run):.1f} us | "
                      f"{time_split(runs, k)} |")
            if f"{who} {regime} 1" in runs[0]:
                print(f"| {names[who]} | 2 / 1 | | | | {ratio_med(who, regime, 'handled'):.2f}x "
                      f"| | | | |")
        used = med(f"zcap {regime} 2", "sender_cpu")
        polls = [run[f"zcap {regime} 2"].get("polls") for run in runs
                 if f"zcap {regime} 2" in run]
        if all(polls):
            print(f"\nzcap, 2 workers: each worker found no block ready (and slept in "
                  f"poll()) {', '.join('/'.join(map(str, p)) for p in polls)} times "
                  f"(per run).")
        if regime == "live":
            one = med(f"zcap {regime} 1", "handled")
            print(f"\n*floor*: the handler over range() for the sending time while the same "
                  f"traffic goes to a veth nobody captures.  The sender's thread (with the "
                  f"receive side's kernel work, up to the copy into the rings) used "
                  f"{used:.2f} CPU with 2 zcap workers: one worker has a CPU to itself, two "
                  f"share {os.cpu_count()} - {used:.2f}, so 2 / 1 cannot pass "
                  f"**{os.cpu_count() - used:.2f}x** on an otherwise idle machine.  What the "
                  f"rings hold when the sending ends (~{max(held, pcapy_held):,} frames per "
                  f"worker, handled after it: the stop is lossless) is "
                  f"{max(held, pcapy_held) / one:.1%} of the 1-worker capture, so the counts "
                  f"measure how fast the workers consume.")
        else:
            print("\nUnpaced, the sender's rate depends on the CPU the workers leave it, so "
                  "each row sends over a different time: compare the shares, not the counts.")
    plain, streamed = med("pool count only", "pps"), med("pool streamed", "pps")
    cplain, cstreamed = med("pool count only", "cpu_pps"), med("pool streamed", "cpu_pps")
    print(f"\nPool cost (1 worker): a handler that only counts drains {plain:,.0f} packets/s "
          f"({cplain:,.0f} per CPU-second); with one out.put() per packet {streamed:,.0f} "
          f"({cstreamed:,.0f}): {(1 / cstreamed - 1 / cplain) * 1e9:,.0f} ns of CPU per "
          f"streamed item.  pool.stats() round trip: "
          f"{med('pool count only', 'stats_ms'):.2f} ms.")


def chart(results: dict) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no chart)", file=sys.stderr)
        return
    runs = results["runs"]

    def med(key, field):
        vals = [run[key][field] for run in runs if key in run]
        return statistics.median(vals) if vals else 0.0

    def ratio_med(key, field):
        vals = [run[f"{key} 2"][field] / run[f"{key} 1"][field] for run in runs
                if f"{key} 1" in run and run[f"{key} 1"].get(field)]
        return statistics.median(vals) if vals else 0.0

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    who = [w for w in ("floor", "zcap", "pcapy") if f"{w} drain 1" in runs[0]]
    labels = {"floor": "pure Python\n(no capture)", "zcap": "zcap.Pool",
              "pcapy": "pcapy-ng\nby hand"}
    for offset, field, name in ((-0.2, "pps", "wall clock"),
                                (0.2, "cpu_pps", "per CPU-second")):
        left.bar([i + offset for i in range(len(who))],
                 [ratio_med(f"{x} drain", field) for x in who], width=0.4, label=name)
    left.axhline(1.8, color="grey", linestyle="--", label="goal 1.8x")
    left.set_xticks(range(len(who)), [labels[x] for x in who])
    left.set_title(f"drain, {results['handler_us']:.1f} us handler: 2 workers / 1 worker")
    live_who = [w for w in ("floor", "zcap", "pcapy") if f"{w} live 1" in runs[0]]
    right.bar(range(len(live_who)), [ratio_med(f"{x} live", "handled") for x in live_who],
              width=0.5, color="tab:green", label="captured (floor: handled)")
    right.axhline(1.8, color="grey", linestyle="--", label="goal 1.8x")
    if "zcap live 2" in runs[0]:
        ceiling = results["cpus"] - med("zcap live 2", "sender_cpu")
        right.axhline(ceiling, color="tab:red", linestyle=":",
                      label=f"ceiling {ceiling:.2f}x (CPUs left by the sender)")
    right.set_xticks(range(len(live_who)), [labels[x] for x in live_who])
    right.set_title(f"live, {results['live_pps'] / 1000:.0f} k frames/s of "
                    f"{results.get('live_frame', 64)} B, {results['live_us']:.0f} us handler: "
                    f"2 workers / 1", fontsize=10)
    left.legend(fontsize=8, loc="lower right")
    right.legend(fontsize=8, loc="lower right")
    loads = [r["load_start"] for r in runs]
    fig.suptitle(f"zcap.Pool, {results['cpus']} CPUs, medians of {len(runs)} drain runs "
                 f"(load average {min(loads):.1f}-{max(loads):.1f} at the runs' start)")
    fig.tight_layout()
    fig.savefig(Path(__file__).resolve().parents[2] / "docs" / "pool.png", dpi=80)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100,000 frames, 1 run, 4 s live")
    ap.add_argument("--count", type=int, help="frames per drain run (default 400,000)")
    ap.add_argument("--runs", type=int,
                    help="runs: each a 1- and 2-worker drain pair of every consumer (default 9)")
    ap.add_argument("--live-runs", type=int,
                    help="how many of the runs also do the live regime and the pool cost "
                         "(default 3)")
    ap.add_argument("--handler-us", type=float, default=2.0,
                    help="drain handler, CPU us per packet (default 2)")
    ap.add_argument("--turns", type=int, help="drain handler loop turns (overrides --handler-us)")
    ap.add_argument("--live-us", type=float, default=200.0,
                    help="live handler, CPU us per packet (default 200)")
    ap.add_argument("--live-turns", type=int, help="live handler loop turns (overrides --live-us)")
    ap.add_argument("--live-pps", type=float, default=12_000,
                    help="live sender pace, frames/s (default 12,000)")
    ap.add_argument("--live-seconds", type=float,
                    help="live sending time (default 10; 4 with --quick)")
    ap.add_argument("--live-frame", type=int, default=1500,
                    help="live frame size, bytes (default 1500)")
    ap.add_argument("--live-max", action="store_true",
                    help="also the live regime with the sender at its maximum rate")
    ap.add_argument("--no-pcapy", action="store_true", help="leave out the pcapy-ng peer")
    ap.add_argument("--chart-only", action="store_true", help="redraw docs/pool.png from the json")
    args = ap.parse_args()
    path = Path(__file__).resolve().parents[1] / "results" / "pool.json"
    if args.chart_only:
        results = json.loads(path.read_text())
        summary(results)
        chart(results)
        return
    args.count = args.count or (100_000 if args.quick else 400_000)
    args.live_seconds = args.live_seconds or (4.0 if args.quick else 10.0)
    nruns = args.runs or (1 if args.quick else 9)
    args.live_runs = min(nruns, args.live_runs if args.live_runs is not None
                         else (1 if args.quick else 3))
    if not args.no_pcapy:
        try:
            import pcapy  # noqa: F401
        except ImportError:
            sys.exit("pcapy-ng is not installed (pip install -e '.[bench]'), or use --no-pcapy")
    turns = args.turns or PH.calibrate(args.handler_us)
    live_turns = args.live_turns or PH.calibrate(args.live_us)
    results: dict = {"count": args.count, "turns": turns, "handler_us": PH.cost_us(turns),
                     "live_turns": live_turns, "live_us": PH.cost_us(live_turns, 400),
                     "live_pps": args.live_pps, "live_seconds": args.live_seconds,
                     "live_frame": args.live_frame, "pcapy_live_buffer": PCAPY_LIVE_BUFFER,
                     "pcapy_batch": PCAPY_BATCH,
                     "cpus": os.cpu_count(), "ring": RING, "live_ring": LIVE_RING, "runs": []}
    print(f"handler: {turns} turns = {results['handler_us']:.2f} us CPU; live handler: "
          f"{live_turns} turns = {results['live_us']:.2f} us CPU (reuse with --turns "
          f"{turns} --live-turns {live_turns})", file=sys.stderr)
    for i in range(nruns):
        r = one_run(args, turns, live_turns, i)
        results["runs"].append(r)
        print(json.dumps(r), file=sys.stderr)
        print(f"run {i + 1}: load {r['load_start']} -> {r['load_end']}", file=sys.stderr)
    summary(results)
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
    chart(results)


if __name__ == "__main__":
    main()
