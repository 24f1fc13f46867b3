"""What `async for` asks of the event loop per wait and per fairness yield.

Counted, not timed, on asyncio's loop and on uvloop (subclassed to count):
the socket is registered once per iteration, not once per wait (each
registration is two epoll_ctl calls); a loop body that awaits something
else while packets are ready does not make the loop spin on the readable
socket; the iteration's end unregisters it before the fds close; a task
woken by a timer that expired during a slice runs before the next slice.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest
import uvloop

from tests.live.conftest import open_on, seq_of


def _counting(base: type) -> type:
    class CountingLoop(base):
        """Counts socket registrations and reader callbacks."""

        def __init__(self) -> None:
            super().__init__()
            self.added = 0
            self.removed = 0
            self.reader_calls = 0

        def add_reader(self, fd, callback, *args):
            self.added += 1

            def counted(*a):
                self.reader_calls += 1
                return callback(*a)

            return super().add_reader(fd, counted, *args)

        def remove_reader(self, fd):
            self.removed += 1
            return super().remove_reader(fd)

    return CountingLoop


LOOPS = {"asyncio": _counting(asyncio.SelectorEventLoop), "uvloop": _counting(uvloop.Loop)}


def _run(kind: str, coro_fn):
    loop = LOOPS[kind]()
    try:
        return loop, loop.run_until_complete(coro_fn())
    finally:
        loop.close()


@pytest.mark.parametrize("kind", sorted(LOOPS))
def test_the_socket_is_registered_once_per_iteration_not_once_per_wait(testbed, kind):
    template = testbed.frame(64)
    bursts, per_burst = 10, 50
    fd = []

    async def main():
        got = []
        async with open_on(testbed, timeout_ms=20) as cap:
            fd.append(cap.fileno())
            with testbed.sender() as s:
                async def feed():
                    for b in range(bursts):
                        await asyncio.sleep(0.06)          # the consumer waits each time
                        s.send_sequence(template, per_burst, first_seq=b * per_burst)

                feeder = asyncio.create_task(feed())
                async for pkt in cap:
                    got.append(seq_of(pkt))
                    if len(got) == bursts * per_burst:
                        break                              # abandoned, not closed
                await feeder
            waits = cap.stats().blocks
            loop = asyncio.get_running_loop()
            registered = (loop.added, loop.removed)
        return got, waits, registered

    loop, (got, waits, registered) = _run(kind, main)
    assert got == list(range(bursts * per_burst))
    assert waits >= bursts                                 # a block per burst: it slept between
    # one registration for the whole iteration (before: one per wait)
    assert registered == (1, 0)
    # closing the capture unregistered the socket, then closed its fd
    assert (loop.added, loop.removed) == (1, 1)
    with pytest.raises(OSError):
        os.fstat(fd[0])


@pytest.mark.parametrize("kind", sorted(LOOPS))
def test_a_body_awaiting_elsewhere_with_packets_ready_does_not_spin_the_loop(testbed, kind):
    template = testbed.frame(64)

    async def main():
        loop = asyncio.get_running_loop()
        async with open_on(testbed, timeout_ms=10) as cap:
            with testbed.sender() as s:
                s.send_sequence(template, 1)
                n = 0
                async for _pkt in cap:                     # waits once: registers
                    n += 1
                    if n == 1:
                        before = loop.reader_calls
                        s.send_sequence(template, 100, first_seq=1)
                        await asyncio.sleep(0.3)           # awaiting elsewhere, socket readable
                        during = loop.reader_calls - before
                    if n == 101:
                        break
        return n, during

    _, (n, during) = _run(kind, main)
    assert n == 101
    # a readable socket nobody waits on is dropped after three reports (the
    # old code unregistered it at every wake-up; a spinning loop would call
    # the reader thousands of times in 0.3 s)
    assert during <= 3, during


@pytest.mark.parametrize("kind", sorted(LOOPS))
def test_a_timer_due_during_a_slice_runs_before_the_next_slice(testbed, kind):
    """The fairness yield lets a task woken by an expired timer run before the
    consumer resumes: one timer tick per slice, where a bare yield gave one
    per two slices (the timer's callback ran after the consumer's next slice,
    the task it woke only after the one after)."""
    template = testbed.frame(64)

    async def main():
        async with open_on(testbed, block_size=1 << 20, block_count=8, timeout_ms=10) as cap:
            cap.budget_us = 1000
            with testbed.sender() as s:
                s.send_sequence(template, 3000)
            await asyncio.sleep(0.1)                       # ready: the consumer never waits
            done, slices, ticks = [0], [0], [0]

            async def slice_counter():                     # runs at least once per yield
                seen = done[0]
                while True:
                    if done[0] != seen:                    # the consumer ran a slice since
                        slices[0] += 1
                        seen = done[0]
                    await asyncio.sleep(0)

            async def timer():                             # due within every 1 ms slice
                while True:
                    await asyncio.sleep(0.0002)
                    ticks[0] += 1

            others = [asyncio.create_task(slice_counter()), asyncio.create_task(timer())]
            await asyncio.sleep(0)
            s0, t0 = slices[0], ticks[0]
            async for _pkt in cap:
                done[0] += 1
                end = time.perf_counter() + 0.0002         # ~5 packets per 1 ms budget
                while time.perf_counter() < end:
                    pass
                if done[0] == 500:
                    break
            result = slices[0] - s0, ticks[0] - t0
            for t in others:
                t.cancel()
        return result

    _, (slices, timer_runs) = _run(kind, main)
    assert slices >= 40, slices                            # it did yield, ~100 times
    assert timer_runs >= 0.8 * slices, (timer_runs, slices)


@pytest.mark.parametrize("kind", sorted(LOOPS))
def test_a_new_iteration_after_break_takes_over_the_registration(testbed, kind):
    """`break` leaves the iterator unclosed, still registered: the next
    `async for` on the same capture takes the registration over."""
    template = testbed.frame(64)

    async def main():
        got = []
        async with open_on(testbed, timeout_ms=10) as cap:
            with testbed.sender() as s:
                for round_ in range(3):
                    async def feed(first):
                        await asyncio.sleep(0.05)          # the consumer waits first
                        s.send_sequence(template, 10, first_seq=first)

                    feeder = asyncio.create_task(feed(round_ * 10))
                    async for pkt in cap:
                        got.append(seq_of(pkt))
                        if len(got) == (round_ + 1) * 10:
                            break
                    await feeder
            loop = asyncio.get_running_loop()
            registered = (loop.added, loop.removed)
        return got, registered

    loop, (got, registered) = _run(kind, main)
    assert got == list(range(30))
    added, removed = registered
    assert added == 3 and removed == 2                     # each new iteration took over
    assert (loop.added, loop.removed) == (3, 3)            # close let the last one go


@pytest.mark.parametrize("kind", sorted(LOOPS))
@pytest.mark.parametrize("mode", ["ring", "immediate", "copy"])
def test_bursts_with_waits_in_every_mode(testbed, kind, mode):
    """Ring modes keep the socket registered (the V3 block or V2 frame status
    tells a drained report apart); copy mode registers per wait."""
    template = testbed.frame(64)
    bursts, per_burst = 5, 20
    opts = {"immediate": True} if mode == "immediate" else {"mode": mode} if mode == "copy" else {}

    async def main():
        got = []
        async with open_on(testbed, timeout_ms=10, **opts) as cap:
            with testbed.sender() as s:
                async def feed():
                    for b in range(bursts):
                        await asyncio.sleep(0.03)
                        s.send_sequence(template, per_burst, first_seq=b * per_burst)

                feeder = asyncio.create_task(feed())
                async for pkt in cap:
                    got.append(seq_of(pkt))
                    if len(got) == bursts * per_burst:
                        break
                await feeder
            loop = asyncio.get_running_loop()
            added = loop.added
        return got, added

    _, (got, added) = _run(kind, main)
    assert got == list(range(bursts * per_burst))
    if mode == "copy":
        assert added > 1                 # once per wait (bursts may share a wait)
    else:
        assert added == 1


class _PollCountingLoop(asyncio.SelectorEventLoop):
    """asyncio's loop, counting its selector polls by timeout: 0 or blocking."""

    def __init__(self) -> None:
        super().__init__()
        self.zero_polls = 0
        self.blocking_polls = 0
        select = self._selector.select

        def counted(timeout=None):
            if timeout is not None and timeout <= 0:
                self.zero_polls += 1
            else:
                self.blocking_polls += 1
            return select(timeout)

        self._selector.select = counted


def test_asyncio_runs_the_woken_task_without_polling_again(testbed):
    """A wake-up costs asyncio's loop one poll (the one that sleeps), like a
    sync reader's poll(): the reader callback runs the task's wake-up itself
    when nothing else is queued.  Before, the task woke through call_soon and
    the loop polled once more (timeout 0) before it ran: two epoll_wait
    system calls per wake-up."""
    import threading

    template = testbed.frame(64)
    bursts, per_burst = 8, 50
    loop = _PollCountingLoop()

    async def main():
        got = []
        async with open_on(testbed, timeout_ms=10) as cap:
            with testbed.sender() as s:
                def feed():                                 # a thread: the loop has only the consumer
                    for b in range(bursts):
                        time.sleep(0.06)                    # the consumer waits each time
                        s.send_sequence(template, per_burst, first_seq=b * per_burst)

                feeder = threading.Thread(target=feed)
                it = cap.ring.aiter(budget_us=10 ** 9)      # no fairness yield in this count
                feeder.start()
                await asyncio.sleep(0)
                zero0, blocking0 = loop.zero_polls, loop.blocking_polls
                async for pkt in it:
                    got.append(seq_of(pkt))
                    if len(got) == bursts * per_burst:
                        break
                polls = loop.zero_polls - zero0, loop.blocking_polls - blocking0
                feeder.join()
        return got, polls

    try:
        got, (zero, blocking) = loop.run_until_complete(main())
    finally:
        loop.close()
    assert got == list(range(bursts * per_burst))
    assert blocking >= bursts                               # it slept between bursts
    # before: one zero-timeout poll per wake-up (zero >= bursts)
    assert zero <= 1, (zero, blocking)


@pytest.mark.parametrize("how", ["cancel", "close"])
def test_asyncio_a_sleeping_consumer_still_ends_on_cancel_and_close(testbed, how):
    """The task sleeps on zcap.aio's own future on asyncio: cancelling the
    task, or closing the capture from another thread, still ends it."""
    import threading

    loop = asyncio.SelectorEventLoop()
    fds = []

    async def main():
        async with open_on(testbed, timeout_ms=10) as cap:
            fds.append(cap.fileno())

            async def consume():
                async for _pkt in cap:
                    pass
                return "ended"

            task = asyncio.create_task(consume())
            await asyncio.sleep(0.1)                        # it sleeps on the empty ring
            if how == "cancel":
                task.cancel("stop reading")
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert task.cancelled()
            else:
                threading.Thread(target=cap.close).start()
                assert await asyncio.wait_for(task, 5) == "ended"

    try:
        loop.run_until_complete(main())
        # the socket was unregistered: nothing is left watching it
        assert fds[0] not in loop._selector.get_map()
    finally:
        loop.close()
