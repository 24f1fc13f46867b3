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


class _PassCounter:
    """Another task on the loop that counts how often it gets to run."""

    def __init__(self) -> None:
        self.passes = 0
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            self.passes += 1
            await asyncio.sleep(0)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0)
        self._start = self.passes

    def stop(self) -> int:
        """Cancel the task; how many times it ran since start()."""
        assert self._task is not None
        self._task.cancel()
        return self.passes - self._start


async def test_async_batches_yield_after_each_batch_longer_than_the_budget(testbed):
    async with open_on(testbed, block_size=1 << 16, block_count=64, timeout_ms=10) as cap:
        cap.budget_us = 1000
        with testbed.sender() as s:
            s.send_sequence(testbed.frame(64), 20_000)
        await asyncio.sleep(0.1)                 # every block is ready: no waiting
        other = _PassCounter()
        await other.start()
        batches = 0
        async for _batch in cap.batches():
            batches += 1
            time.sleep(0.002)                    # 2 ms of work per batch > the 1 ms budget
            if batches == 40:
                break
        ran = other.stop()
    # one yield per batch (the first batch starts the slice): the other task ran
    # ~40 times; checking the clock only every 32 items gave it 1 or 2 passes
    assert ran >= batches - 5, f"the other task ran {ran} times during {batches} batches"


async def test_async_packets_with_a_slow_body_yield_every_budget(testbed):
    async with open_on(testbed, block_size=1 << 20, block_count=8, timeout_ms=10) as cap:
        cap.budget_us = 1000
        with testbed.sender() as s:
            s.send_sequence(testbed.frame(64), 2_000)
        await asyncio.sleep(0.1)
        other = _PassCounter()
        await other.start()
        n = 0
        async for _pkt in cap:
            n += 1
            time.sleep(0.0005)                   # 0.5 ms per packet: 2 packets per budget
            if n == 200:
                break
        ran = other.stop()
    # a yield every ~2-3 packets once the slow body is seen; checking the clock
    # only every 32 packets (16 ms) gave ~6
    assert ran >= 50, f"the other task ran {ran} times during {n} packets"
