"""On asyncio's loops a fairness slice ends when the loop's earliest timer is
due (issue 11, item 12): a timer is not kept waiting for the rest of a budget.

asyncio only: uvloop keeps its timers in C, where zcap cannot see them, so
there a slice runs its budget (tests/live/test_async_fairness.py).
"""

from __future__ import annotations

import asyncio
import time

from tests.live.conftest import open_on


def _timer_lateness(testbed, *, budget_us: int, delay: float, body_s: float) -> tuple[float, int]:
    """Consume a filled ring with a slow body while a timer is due `delay`
    seconds after the consumer starts; how late the timer ran, and after how
    many packets."""

    async def main() -> tuple[float, int]:
        async with open_on(testbed, block_size=1 << 20, block_count=8, timeout_ms=10) as cap:
            cap.budget_us = budget_us
            with testbed.sender() as s:
                s.send_sequence(testbed.frame(64), 1_000)
            await asyncio.sleep(0.1)             # every packet is ready: no waiting
            loop = asyncio.get_running_loop()
            fired: list[float] = []
            due = loop.time() + delay
            loop.call_at(due, lambda: fired.append(loop.time()))
            n = 0
            async for _pkt in cap:
                n += 1
                time.sleep(body_s)
                if fired or n == 1_000:
                    break
            assert fired, f"the timer did not run during {n} packets"
            return fired[0] - due, n

    loop = asyncio.SelectorEventLoop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def test_a_slice_ends_when_a_timer_falls_due(testbed):
    # 200 ms slices, 0.5 ms per packet, a timer due after 20 ms: a slice
    # that ran its whole budget kept the timer waiting ~180 ms
    late, n = _timer_lateness(testbed, budget_us=200_000, delay=0.02, body_s=0.0005)
    assert late < 0.05, f"the timer ran {late * 1000:.1f} ms late (after {n} packets)"


def test_a_slice_runs_an_eighth_of_the_budget_before_a_due_timer(testbed):
    # a timer due at once still lets the consumer work an eighth of the
    # budget (25 ms = ~50 packets), rather than yield after every packet
    late, n = _timer_lateness(testbed, budget_us=200_000, delay=0.0, body_s=0.0005)
    assert n >= 30, f"the consumer yielded after {n} packets, {late * 1000:.1f} ms"
    assert late < 0.1, f"the timer ran {late * 1000:.1f} ms late (after {n} packets)"
