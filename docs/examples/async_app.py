"""Async iteration in an application: top talkers, printed every second.

    sudo python3 docs/examples/async_app.py [--interface eth0] [--seconds 5]

`async for pkt in cap` awaits only when the ring is empty, so the capture
costs the application about what a sync loop would, and other tasks (here a
reporter) keep running: the iterator yields to the loop every millisecond.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import socket

from _traffic import capture_target

import zcap


def source_of(pkt: zcap.Packet) -> str:
    data = pkt[:34]
    if len(data) >= 34 and data[12:14] == b"\x08\x00":
        return socket.inet_ntoa(data[26:30])
    return f"ethertype 0x{pkt.protocol:04x}"


async def report(counts: collections.Counter, cap: zcap.Capture) -> None:
    while True:
        await asyncio.sleep(1)
        top = ", ".join(f"{src} {n}" for src, n in counts.most_common(3)) or "nothing yet"
        stats = cap.stats()
        print(f"top talkers: {top}  |  delivered {stats.delivered}, dropped {stats.dropped}, "
              f"ring {stats.occupancy:.0%} full")


async def main(interface: str | None, seconds: float) -> None:
    counts: collections.Counter = collections.Counter()
    with capture_target(interface) as target:
        async with zcap.open_live(target.pop("interface"), **target) as cap:
            reporter = asyncio.create_task(report(counts, cap))

            async def consume() -> None:
                async for pkt in cap:
                    counts[source_of(pkt)] += 1

            try:
                await asyncio.wait_for(consume(), seconds)
            except TimeoutError:
                pass
            reporter.cancel()
    print(f"done: {sum(counts.values())} packets")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--interface", "-i")
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--uvloop", action="store_true", help="run on uvloop")
    args = p.parse_args()
    if args.uvloop:
        import uvloop
        uvloop.run(main(args.interface, args.seconds))
    else:
        asyncio.run(main(args.interface, args.seconds))
