"""A capture pool: per-flow packet counts on every core, merged in the parent.

    sudo python3 docs/examples/pool_flows.py [--interface eth0] [--seconds 3] [--workers 2]

Each worker process runs `count_flows` on its own zero-copy ring; hash
fanout keeps every flow in one worker, so the per-worker counters never
overlap and the parent simply adds them.  Workers stream a line for each flow
that reaches 1,000 packets; Ctrl-C (or the timer) stops the pool without
losing a packet the kernel had accepted.
"""

from __future__ import annotations

import argparse
import collections
import socket
import struct
import threading

from _traffic import capture_target

import zcap


def flow_of(pkt: zcap.Packet) -> tuple:
    data = bytes(pkt[:38])
    if len(data) >= 38 and data[12:14] == b"\x08\x00" and data[23] in (6, 17):
        sport, dport = struct.unpack_from("!HH", data, 34)
        return (data[23], socket.inet_ntoa(data[26:30]), sport, socket.inet_ntoa(data[30:34]), dport)
    return ("other", pkt.protocol)


def count_flows(cap: zcap.Capture, out) -> collections.Counter:
    flows: collections.Counter = collections.Counter()
    for pkt in cap:                      # ends once the pool is stopped and drained
        key = flow_of(pkt)
        flows[key] += 1
        if flows[key] == 1000:
            out.put(f"worker {out.worker}: flow {key} reached 1000 packets")
    return flows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--interface")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    with capture_target(args.interface, frames=100_000, pps=50_000) as target:
        interface = target.pop("interface")
        with zcap.Pool(interface, count_flows, workers=args.workers, fanout="hash",
                       **target) as pool:
            threading.Timer(args.seconds, pool.stop).start()
            for line in pool.results():  # until the timer (or Ctrl-C) stops the pool
                print(line)
        totals = sum(pool.join(), collections.Counter())
        stats = pool.stats()
    print(f"flows: {len(totals)}, packets: {sum(totals.values())}")
    print(f"received {stats.received}, delivered {stats.delivered}, dropped {stats.dropped}, "
          f"shares {[round(s, 2) for s in stats.shares]}")


if __name__ == "__main__":
    main()
