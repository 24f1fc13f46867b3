"""The compat shims against the libraries they replace, draining the same packets.

    sudo python3 bench/compat/compat_drain.py [--count 200000] [--repeat 5]

For each read call (pcapy next(), loop(), next_batch(4096); pypcap
iteration) a peer capture and a shim capture are opened on the same veth
interface with the same calls, N sequence-numbered 64-byte frames are sent
while nobody reads (both rings receive every frame), and then each drains
its N packets with the same loop body (unpack the sequence number, check it
counts up).  The pair alternates which drains first, over --repeat rounds.
Reported: CPU ns per packet of the drain (process time, so other processes
on a shared machine disturb it less than wall time), min/median, and the
shim's median over the peer's.  bench/drain/drain.py runs the same pairs as
separate processes, in wall time (bench/compat/compat_consumers.py).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # bench/
import benchpath  # noqa: E402,F401  (every family folder on sys.path)

from zcap.testbed import SEQ_OFFSET, Testbed

from drain_consumers import SEQ, SequenceError

BUFFER = 64 << 20
TIMEOUT_MS = 100


def pcapy_open(module: str, iface: str):
    pcapy = importlib.import_module(module)
    r = pcapy.create(iface)
    r.set_snaplen(262144)
    r.set_buffer_size(BUFFER)
    r.set_timeout(TIMEOUT_MS)
    r.activate()
    return r


def drain_next(r, count: int) -> int:
    next_packet, unpack_seq = r.next, SEQ.unpack_from
    for expected in range(count):
        _h, data = next_packet()
        if unpack_seq(data, SEQ_OFFSET)[0] != expected:
            raise SequenceError(expected)
    return count


def drain_loop(r, count: int) -> int:
    unpack_seq = SEQ.unpack_from
    state = [0]

    def cb(_h, data):
        if unpack_seq(data, SEQ_OFFSET)[0] != state[0]:
            raise SequenceError(state[0])
        state[0] += 1

    r.loop(count, cb)
    return state[0]


def drain_batch(r, count: int) -> int:
    next_batch, unpack_seq = r.next_batch, SEQ.unpack_from
    expected = 0
    while expected < count:
        data, meta = next_batch(min(4096, count - expected))
        if not meta:
            raise TimeoutError(expected)
        for offset in memoryview(meta).cast("I")[2::4]:
            if unpack_seq(data, offset + SEQ_OFFSET)[0] != expected:
                raise SequenceError(expected)
            expected += 1
    return expected


def pcap_open(module: str, iface: str):
    pcap = importlib.import_module(module)
    return pcap.pcap(iface, snaplen=262144, promisc=False, timeout_ms=TIMEOUT_MS,
                     buffer_size=BUFFER, timestamp_in_ns=True)


def drain_iter(pc, count: int) -> int:
    unpack_seq = SEQ.unpack_from
    expected = 0
    for _ts, buf in pc:
        if unpack_seq(buf, SEQ_OFFSET)[0] != expected:
            raise SequenceError(expected)
        expected += 1
        if expected == count:
            break
    return expected


PAIRS: dict[str, tuple[Callable, Callable, str, str]] = {
    # call: (open, drain, peer module, shim module)
    "pcapy next()": (pcapy_open, drain_next, "pcapy", "zcap.compat.pcapy"),
    "pcapy loop()": (pcapy_open, drain_loop, "pcapy", "zcap.compat.pcapy"),
    "pcapy next_batch(4096)": (pcapy_open, drain_batch, "pcapy", "zcap.compat.pcapy"),
    "pypcap iteration": (pcap_open, drain_iter, "pcap", "zcap.compat.pcap"),
}


def one_round(tb: Testbed, opener: Callable, drain: Callable, modules: list[str],
              count: int) -> dict[str, float]:
    from zcap import netns
    with netns.entered(tb.netns):
        readers = {m: opener(m, tb.b) for m in modules}
    with tb.sender() as s:
        sent = s.send_sequence(tb.frame(64), count, max_seconds=120)
    assert sent == count
    time.sleep(0.3)                       # the last block retires (TIMEOUT_MS)
    out = {}
    for m, r in readers.items():
        gc.collect()
        t0 = time.process_time_ns()
        done = drain(r, count)
        out[m] = (time.process_time_ns() - t0) / done
        stats = r.stats()
        if stats[1]:
            raise RuntimeError(f"{m} dropped {stats[1]} packets: results invalid")
        r.close()
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=200_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--only", help="comma-separated pairs (substring match)")
    args = p.parse_args(argv)
    rows = []
    with Testbed() as tb:
        for name, (opener, drain, peer, shim) in PAIRS.items():
            if args.only and not any(o in name for o in args.only.split(",")):
                continue
            try:
                importlib.import_module(peer)
            except ImportError as exc:
                rows.append((name, peer, None, None, f"skipped: {exc}"))
                continue
            samples: dict[str, list[float]] = {peer: [], shim: []}
            for i in range(args.repeat):
                order = [peer, shim] if i % 2 == 0 else [shim, peer]
                for m, ns in one_round(tb, opener, drain, order, args.count).items():
                    samples[m].append(ns)
                print(f"{name} round {i + 1}: " + ", ".join(f"{m} {samples[m][-1]:.0f}" for m in order),
                      file=sys.stderr, flush=True)
            rows.append((name, peer, samples[peer], samples[shim], ""))
    print(f"{args.count:,} x 64-byte frames, {args.repeat} rounds, CPU ns/packet (min / median)\n")
    print("| call | peer | peer | zcap shim | shim / peer (median) |")
    print("|---|---|---|---|---|")
    for name, peer, a, b, note in rows:
        if a is None:
            print(f"| {name} | {peer} | {note} | | |")
            continue
        print(f"| {name} | {peer} | {min(a):.0f} / {statistics.median(a):.0f} | "
              f"{min(b):.0f} / {statistics.median(b):.0f} | "
              f"{statistics.median(b) / statistics.median(a):.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
