"""Async throughput: drain a pre-filled ring with `async for`, on asyncio and uvloop.

    sudo python3 docs/examples/async_bench.py [--count 500000]

Sends COUNT numbered frames on a private veth pair while nobody reads, then
drains them with a sync loop, with `async for` on asyncio's loop and with
`async for` on uvloop, and prints ns per packet.  Under load the async
iterator never awaits, so it should cost about what the sync loop costs.
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import time

import zcap
from zcap.testbed import SEQ_OFFSET, Testbed

SEQ = struct.Struct("!Q").unpack_from


def drain_sync(cap: zcap.Capture, count: int) -> None:
    expected = 0
    for pkt in cap:
        assert SEQ(pkt, SEQ_OFFSET)[0] == expected
        expected += 1
        if expected == count:
            return


async def drain_async(cap: zcap.Capture, count: int) -> None:
    expected = 0
    async for pkt in cap:
        assert SEQ(pkt, SEQ_OFFSET)[0] == expected
        expected += 1
        if expected == count:
            return


def run(tb: Testbed, count: int, how: str) -> float:
    # ~152 ring bytes per 64-byte frame; fill the ring to about half: near
    # full, this kernel has been seen to drop a packet with space left
    blocks = count * 152 * 2 // (1 << 20) + 8
    with zcap.open_live(tb.b, netns=tb.netns, block_size=1 << 20, block_count=blocks,
                        timeout_ms=250) as cap:
        with tb.sender() as s:
            s.send_sequence(tb.frame(64), count)
        time.sleep(0.6)
        if cap.stats().dropped:
            raise SystemExit(f"the kernel dropped {cap.stats().dropped} frames while filling; "
                             "use a larger ring")
        if how == "sync":
            t0 = time.perf_counter()
            drain_sync(cap, count)
        else:
            if how == "uvloop":
                import uvloop
                loop = uvloop.new_event_loop()
            else:
                loop = asyncio.new_event_loop()
            t0 = time.perf_counter()
            loop.run_until_complete(drain_async(cap, count))
        elapsed = time.perf_counter() - t0
        if how != "sync":
            loop.close()
    return elapsed / count * 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=500_000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    with Testbed() as tb:
        results = {how: min(run(tb, args.count, how) for _ in range(args.repeat))
                   for how in ("sync", "asyncio", "uvloop")}
    for how, ns in results.items():
        print(f"{how:8s} {ns:7.1f} ns/packet  ({ns / results['sync']:.2f}x sync)")


if __name__ == "__main__":
    main()
