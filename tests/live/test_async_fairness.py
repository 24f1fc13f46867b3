"""`async for` yields to the event loop every budget_us of work (issue 11, item 12).

Counted, not timed: the consumer's body takes longer than the budget per
item, so the iterator must yield after every such item; a task that only
counts loop passes shows whether it did.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.live.conftest import open_on

pytestmark = pytest.mark.asyncio


async def test_async_batches_yield_after_each_batch_longer_than_the_budget(testbed):
    async with open_on(testbed, block_size=1 << 16, block_count=64, timeout_ms=10) as cap:
        cap.budget_us = 1000
        with testbed.sender() as s:
            s.send_sequence(testbed.frame(64), 20_000)
        await asyncio.sleep(0.1)                 # every block is ready: no waiting
        passes = 0

        async def other_task():
            nonlocal passes
            while True:
                passes += 1
                await asyncio.sleep(0)

        other = asyncio.create_task(other_task())
        await asyncio.sleep(0)
        start = passes
        batches = 0
        async for batch in cap.batches():
            batches += 1
            time.sleep(0.002)                    # 2 ms of work per batch > the 1 ms budget
            if batches == 40:
                break
        ran = passes - start
        other.cancel()
    # one yield per batch (the first batch starts the slice): the other task ran
    # ~40 times; checking the clock only every 32 items gave it 1 or 2 passes
    assert ran >= batches - 5, f"the other task ran {ran} times during {batches} batches"


async def test_async_packets_with_a_slow_body_yield_every_budget(testbed):
    async with open_on(testbed, block_size=1 << 20, block_count=8, timeout_ms=10) as cap:
        cap.budget_us = 1000
        with testbed.sender() as s:
            s.send_sequence(testbed.frame(64), 2_000)
        await asyncio.sleep(0.1)
        passes = 0

        async def other_task():
            nonlocal passes
            while True:
                passes += 1
                await asyncio.sleep(0)

        other = asyncio.create_task(other_task())
        await asyncio.sleep(0)
        start = passes
        n = 0
        async for pkt in cap:
            n += 1
            time.sleep(0.0005)                   # 0.5 ms per packet: 2 packets per budget
            if n == 200:
                break
        ran = passes - start
        other.cancel()
    # a yield every ~2-3 packets once the slow body is seen; checking the clock
    # only every 32 packets (16 ms) gave ~6
    assert ran >= 50, f"the other task ran {ran} times during {n} packets"
