"""Async iteration on asyncio's loop and on uvloop: exact delivery, readiness,
cancellation, close from elsewhere, fairness, several captures at once."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import zcap
from tests.live.conftest import BackgroundSender, expected_frame, open_on, seq_of

pytestmark = pytest.mark.asyncio


def _selector_fds(loop) -> set[int] | None:
    """fds the default loop watches (None on uvloop, which hides them)."""
    selector = getattr(loop, "_selector", None)
    return set(selector.get_map()) if selector is not None else None


async def test_async_for_delivers_every_frame_in_order(testbed):
    template = testbed.frame(64)
    count = 20_000
    async with open_on(testbed, block_size=1 << 16, block_count=64) as cap:
        sender = BackgroundSender(testbed, template, count, pps=200_000)
        sender.start()
        got = []
        async for pkt in cap:
            got.append(bytes(pkt))
            if len(got) == count:
                break
        sender.join_checked()
        stats = cap.stats()
    assert got == [expected_frame(template, i) for i in range(count)]
    assert stats.dropped == 0 and stats.delivered == count


async def test_async_batches_cover_every_packet(testbed):
    template = testbed.frame(64)
    count = 10_000
    async with open_on(testbed, block_size=1 << 16, block_count=64) as cap:
        with testbed.sender() as s:
            s.send_sequence(template, count)
        seqs = []
        async for batch in cap.batches():
            seqs.extend(seq_of(p) for p in batch)
            if len(seqs) >= count:
                break
    assert seqs == list(range(count))


async def test_under_load_async_for_never_waits(testbed):
    template = testbed.frame(64)
    count = 50_000
    async with open_on(testbed, block_size=1 << 20, block_count=16, timeout_ms=200) as cap:
        with testbed.sender() as s:
            s.send_sequence(template, count)
        await asyncio.sleep(0.5)                     # every block retired and ready
        before = cap.stats().polls
        n = 0
        async for _ in cap:
            n += 1
            if n == count:
                break
        assert cap.stats().polls == before           # no poll(), no wait at all


async def test_idle_capture_costs_no_cpu(testbed):
    async with open_on(testbed) as cap:
        task = asyncio.create_task(cap.anext())
        cpu0, t0 = time.process_time(), time.monotonic()
        await asyncio.sleep(1.0)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
        assert not task.done()
        task.cancel()
    assert cpu < 0.1 * wall


async def test_no_lost_wakeup_for_a_packet_right_after_the_ring_was_empty(testbed):
    template = testbed.frame(64)
    async with open_on(testbed, timeout_ms=50) as cap:
        loop = asyncio.get_running_loop()
        with testbed.sender() as s:
            for i in range(20):
                reader = asyncio.create_task(cap.anext(timeout=5))
                await asyncio.sleep(0)                 # the reader found the ring empty
                await asyncio.sleep(i % 4 * 0.001)     # ... and is (about to be) asleep
                t0 = loop.time()
                s.send_sequence(template, 1, first_seq=i)
                pkt = await reader
                assert pkt is not None and seq_of(pkt) == i
                assert loop.time() - t0 < 2.0          # block timeout (50 ms) + slack


async def test_cancellation_mid_stream_removes_the_reader_and_loses_nothing(testbed):
    template = testbed.frame(64)
    count = 3000
    async with open_on(testbed, block_size=1 << 16, block_count=64) as cap:
        got = []

        async def consume():
            async for pkt in cap:
                got.append(seq_of(pkt))

        with testbed.sender() as s:
            s.send_sequence(template, count // 2)
            task = asyncio.create_task(consume())
            while len(got) < count // 2:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)                  # now it sleeps on the empty ring
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            fds = _selector_fds(asyncio.get_running_loop())
            if fds is not None:
                assert cap.fileno() not in fds and cap.ring.wake_fileno() not in fds
            s.send_sequence(template, count - count // 2, first_seq=count // 2)
        async for pkt in cap:                          # a new iteration picks up the rest
            got.append(seq_of(pkt))
            if len(got) == count:
                break
        stats = cap.stats()
    assert got == list(range(count))
    assert stats.held == 0 and stats.dropped == 0


async def test_cancelled_inside_the_loop_body_hands_back_a_finished_block(testbed):
    template = testbed.frame(64)
    async with open_on(testbed, block_size=1 << 16, block_count=8) as cap:
        with testbed.sender() as s:
            s.send_sequence(template, 1)
        started = asyncio.Event()

        async def consume():
            async for _pkt in cap:
                started.set()
                await asyncio.sleep(10)                # cancelled here, block fully read

        task = asyncio.create_task(consume())
        await started.wait()
        assert cap.stats().ready == 0
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the block went back to the kernel: the ring has every block free
        with testbed.sender() as s:
            s.send_sequence(template, 10, first_seq=1)
        got = [seq_of(await cap.anext(timeout=2)) for _ in range(10)]
    assert got == list(range(1, 11))


async def test_close_from_another_task_ends_iteration(testbed):
    cap = open_on(testbed)
    result = []

    async def consume():
        async for pkt in cap:
            result.append(pkt)
        result.append("ended")

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.1)
    cap.close()
    await asyncio.wait_for(task, 2)
    assert result == ["ended"]
    assert await cap.anext(timeout=1) is None


async def test_close_from_another_thread_wakes_the_task(testbed):
    cap = open_on(testbed)
    waiter = asyncio.create_task(cap.anext())
    await asyncio.sleep(0.05)
    threading.Timer(0.1, cap.close).start()
    assert await asyncio.wait_for(waiter, 3) is None


async def test_breakloop_ends_async_iteration(testbed):
    async with open_on(testbed) as cap:
        threading.Timer(0.1, cap.breakloop).start()
        got = [pkt async for pkt in cap]
    assert got == []


async def test_one_async_reader_per_capture(testbed):
    async with open_on(testbed) as cap:
        first = asyncio.create_task(cap.anext(timeout=1))
        await asyncio.sleep(0.05)
        with pytest.raises(RuntimeError, match="another task; use one reader per capture"):
            await cap.anext(timeout=1)
        assert await first is None


async def test_anext_timeout(testbed):
    template = testbed.frame(64)
    async with open_on(testbed) as cap:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        assert await cap.anext(timeout=0.2) is None
        assert loop.time() - t0 >= 0.19
        assert await cap.anext(timeout=0) is None
        with testbed.sender() as s:
            s.send_sequence(template, 1, first_seq=9)
        pkt = await cap.anext(timeout=2)
        assert pkt is not None and seq_of(pkt) == 9


async def _max_timer_gap_while_draining(tb, budget_us: int) -> tuple[float, float, int]:
    """Drain a full ring while a 0.5 ms timer task runs; return (max gap, drain
    time, ticks), measured in this thread's CPU time: on a busy machine the
    process can get no CPU for tens of ms, which stops the timer and the drain
    alike and says nothing about how often the iterator yields."""
    template = tb.frame(64)
    count = 150_000
    async with open_on(tb, block_size=1 << 20, block_count=32, timeout_ms=100) as cap:
        cap.budget_us = budget_us
        with tb.sender() as s:
            s.send_sequence(template, count)
        await asyncio.sleep(0.3)                       # every block is ready: no waiting
        # Drain what the ring took: on a busy machine blocks are retired part
        # full (the sender stalled past timeout_ms, or another AF_PACKET socket
        # was created), so the ring can fill and the kernel drop (and count) the
        # rest; waiting for all `count` would then never end.
        before = cap.stats()
        held = before.received - before.dropped
        assert held > 0, before
        ticks = []

        async def timer():
            while True:
                ticks.append(time.thread_time())
                await asyncio.sleep(0.0005)

        ticker = asyncio.create_task(timer())
        await asyncio.sleep(0.01)
        t0 = time.thread_time()
        n = 0
        async for pkt in cap:
            seq_of(pkt)                                # some work per packet, as an application does
            n += 1
            if n == held:
                break
        t1 = time.thread_time()
        ticker.cancel()
        assert cap.stats().delivered == held
    during = [t for t in ticks if t0 <= t <= t1]
    edges = [t0, *during, t1]
    gap = max(b - a for a, b in zip(edges, edges[1:]))
    return gap, t1 - t0, len(during)


async def test_fairness_budget_keeps_a_concurrent_timer_running(testbed):
    _, drain, ticks = await _max_timer_gap_while_draining(testbed, budget_us=1000)
    # every ~1 ms of work the iterator yields once, and the timer, due by
    # then, runs before the next slice: it keeps ticking (counted per CPU
    # second of the drain: a descheduled thread stops timer and drain alike)
    assert ticks >= drain / 0.01
    # control: with a budget longer than the drain, the timer never runs
    _, _, ticks_off = await _max_timer_gap_while_draining(testbed, budget_us=10_000_000)
    assert ticks_off == 0


async def test_two_captures_under_a_task_group():
    from zcap.testbed import Testbed

    count = 5000
    with Testbed() as tb1, Testbed() as tb2:
        results: dict[str, list[int]] = {}

        async def consume(tb, name):
            template = tb.frame(64)
            got: list[int] = []
            async with open_on(tb) as cap:
                sender = BackgroundSender(tb, template, count, pps=100_000)
                sender.start()
                async for pkt in cap:
                    got.append(seq_of(pkt))
                    if len(got) == count:
                        break
                sender.join_checked()
            results[name] = got

        async with asyncio.TaskGroup() as group:
            group.create_task(consume(tb1, "one"))
            group.create_task(consume(tb2, "two"))
    assert results == {"one": list(range(count)), "two": list(range(count))}


async def test_interface_going_down_ends_async_iteration_with_an_error(testbed):
    template = testbed.frame(64)
    async with open_on(testbed, timeout_ms=50) as cap:
        with testbed.sender() as s:
            s.send_sequence(template, 100)
        seqs = []

        async def consume():
            async for pkt in cap:
                seqs.append(seq_of(pkt))

        task = asyncio.create_task(consume())
        while len(seqs) < 100:
            await asyncio.sleep(0.01)
        cpu0, t0 = time.process_time(), time.monotonic()
        testbed.ip("link", "set", testbed.b, "down")
        with pytest.raises(zcap.InterfaceDownError):
            await asyncio.wait_for(task, 5)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    assert seqs == list(range(100))
    assert cpu < 0.5 * wall + 0.05                       # waited on timers, did not spin


async def test_breakloop_in_the_body_ends_at_once_and_loses_nothing(testbed):
    """breakloop() from the loop body while packets are ready (the am_send
    fast path): the iteration ends before the next packet, and the next one
    starts where it stopped."""
    async with open_on(testbed, timeout_ms=10) as cap:
        with testbed.sender() as s:
            s.send_sequence(testbed.frame(64), 300)
        await asyncio.sleep(0.1)                       # all ready: no wait
        first = []
        async for pkt in cap:
            first.append(seq_of(pkt))
            if len(first) == 100:
                cap.breakloop()
        rest = []
        async for pkt in cap:
            rest.append(seq_of(pkt))
            if len(first) + len(rest) == 300:
                break
    assert first == list(range(100))
    assert rest == list(range(100, 300))
