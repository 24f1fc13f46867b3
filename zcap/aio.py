"""asyncio readiness for captures: sleep on the socket only when the ring is empty.

`async for pkt in cap` is implemented in the ring itself (zcap/_aio.pxi):
while blocks are ready it never awaits.  When the ring runs dry it arms a
Waiter, which registers the capture's socket with the running loop
(`loop.add_reader`, on asyncio's loop and on uvloop alike) and yields a
future.  The reader callback only wakes the waiting task; only the consumer
advances the ring.  In ring modes the socket stays registered from the first
wait to the end of the iteration, so a wait costs no epoll_ctl: a report the
woken task has already drained is recognised by a look at the next block
(Ring._async_peek, no system call), and a report while no wait is armed
(the loop body awaits something else while packets are ready) unregisters
the socket at the third one, so the loop never spins.  Copy mode
unregisters at every wake-up.

Readiness rules (TPACKET_V3): the kernel hands over no empty block and never
wakes an idle socket, so there is no busy wake-up when idle; a socket that
reports readable but gives the consumer nothing (a socket error, a block the
application still holds, a link going down) is not watched again at once -
the Waiter sleeps one block timeout on a timer instead, so it never spins.

Fairness yields (Waiter.pause) wait on a future a zero-delay loop timer
completes, so whatever was due when the consumer yielded runs first.

On asyncio's own (selector) loops the task sleeps on a _Wakeup, a minimal
future that the Waiter completes itself: when the reader callback (or a
timer) finds nothing else queued on the loop, it runs the task's wake-up at
once instead of through `call_soon`, which would cost the loop one more
pass - one more `epoll_wait` system call and its Python-level bookkeeping -
before the task runs.  With other callbacks queued it wakes the task with
`call_soon`, behind them, as a future would.  uvloop runs its ready
callbacks before it polls, so there the task sleeps on the loop's own
future.

Closing the capture or breakloop(), also from another thread, wakes the
waiting task through `loop.call_soon_threadsafe` (the ring calls the
Waiter's notify): its `async for` ends (StopAsyncIteration), and `anext()`
returns None.  Closing also makes the loop let go of the socket before the
fds close (Ring._async_watch).  stop() wakes the task the same way; while
the ring drains what the kernel accepted before the stop, the waiter sleeps
on a block-timeout timer, and once the ring is drained `async for` ends and
`anext()` returns None.  The wake-up eventfd serves threads sleeping in
poll(); not watching it here saves registering a second fd.
"""

from __future__ import annotations

import asyncio
from threading import get_ident
from typing import Any, Optional

__all__ = ["Waiter", "anext"]

_PENDING, _DONE, _CANCELLED = 0, 1, 2


class _Wakeup:
    """The future a task sleeps on while its capture's ring is empty (asyncio's loops).

    It has what asyncio's Task asks of a future it awaits
    (`_asyncio_future_blocking`, get_loop, add_done_callback, cancel, result),
    and one thing more: wake(now=True) runs the task's wake-up callback at
    once - for a caller that is itself a loop callback with nothing else
    queued, where `call_soon` would only add a pass of the loop.
    """

    __slots__ = ("_asyncio_future_blocking", "_loop", "_callbacks", "_state", "_cancel_msg")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._asyncio_future_blocking = False
        self._loop = loop
        self._callbacks: list = []
        self._state = _PENDING
        self._cancel_msg: Any = None

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def done(self) -> bool:
        return self._state != _PENDING

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def result(self) -> None:
        if self._state == _CANCELLED:
            raise asyncio.CancelledError(*(() if self._cancel_msg is None else (self._cancel_msg,)))
        if self._state == _PENDING:
            raise asyncio.InvalidStateError("the capture's wake-up is not done yet")
        return None

    def exception(self) -> Optional[BaseException]:
        self.result()
        return None

    def add_done_callback(self, fn: Any, *, context: Any = None) -> None:
        if self._state == _PENDING:
            self._callbacks.append((fn, context))
        else:
            self._loop.call_soon(fn, self, context=context)

    def remove_done_callback(self, fn: Any) -> int:
        kept = [(f, c) for f, c in self._callbacks if f != fn]
        removed = len(self._callbacks) - len(kept)
        self._callbacks = kept
        return removed

    def cancel(self, msg: Any = None) -> bool:
        if self._state != _PENDING:
            return False
        self._state = _CANCELLED
        self._cancel_msg = msg
        self._schedule_callbacks()
        return True

    def wake(self, now: bool) -> None:
        """Complete it; now: run the callbacks here (the caller is a loop callback)."""
        if self._state == _PENDING:
            self._state = _DONE
            callbacks = self._callbacks
            if now and len(callbacks) == 1:     # the task's wake-up
                self._callbacks = []
                fn, context = callbacks[0]
                if context is None:
                    fn(self)
                else:
                    context.run(fn, self)
            else:
                self._schedule_callbacks()

    def _schedule_callbacks(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for fn, context in callbacks:
            self._loop.call_soon(fn, self, context=context)

    def __await__(self) -> Any:
        if self._state == _PENDING:
            self._asyncio_future_blocking = True
            yield self
        return self.result()


class Waiter:
    """Puts one task to sleep until a ring may have data, and paces its fairness yields."""

    __slots__ = ("_ring", "_loop", "_fut", "_fd", "_timer", "_watching", "_persistent",
                 "_woken_by_socket", "_stale", "_idle_fires", "_thread", "_polls_first", "timers",
                 "_notify_callback")

    def __init__(self, ring: Any) -> None:
        self._ring = ring
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._fut: Optional[asyncio.Future] = None
        self._fd = -1
        self._timer: Optional[asyncio.TimerHandle] = None
        self._watching = False
        # ring modes can tell a drained readiness from a new one without a
        # system call (Ring._async_peek), so the socket stays registered
        # between waits; copy mode unregisters at every wake-up
        self._persistent = ring._async_peek() >= 0
        self._woken_by_socket = False
        self._stale = 0                 # readiness reports that found nothing (this wait)
        self._idle_fires = 0            # reports while no wait (since the last yield)
        self._thread = 0
        self._polls_first = False       # the loop polls before running a woken task
        self.timers: Optional[list] = None   # the loop's visible_timers(), for the slices
        self._notify_callback = self._notify    # one bound method for every arm()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        """The loop the task runs on.  The cached loop, while it runs, is the
        running loop of this thread (one loop runs per thread): this saves
        asyncio.get_running_loop()'s getpid() system call on every wait."""
        loop = self._loop
        if loop is not None and loop.is_running() and self._thread == get_ident():
            return loop
        self.close()                    # a new loop: let the old one go
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._thread = get_ident()
        # asyncio's selector loops poll the selector before they run the ready
        # callbacks, so right after a wake-up they can report the readiness
        # the woken task is about to drain (level triggered: a real one is
        # reported again).  uvloop runs ready callbacks before it polls, and
        # reports a socket error only once.
        self._polls_first = isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop)
        self.timers = visible_timers(loop)
        return loop

    def arm(self, resumed: bool = False) -> asyncio.Future:
        """Register with the running loop and return the future to sleep on.

        resumed: the caller just woke from this waiter and found nothing.
        """
        ring = self._ring
        spurious = resumed and self._woken_by_socket
        if spurious:
            ring._poll_now()            # pick up a socket error or the link going down
        loop = self._loop               # _running_loop()'s fast path, inline: arm() runs at every wait
        if loop is None or not loop.is_running() or self._thread != get_ident():
            loop = self._running_loop()
        fut = _Wakeup(loop) if self._polls_first else loop.create_future()
        self._fut = fut
        self._woken_by_socket = False
        self._stale = 0
        self._idle_fires = 0
        ring._async_arm(self._notify_callback)
        if spurious or ring.waiting_for_link or ring.draining:
            self._unwatch()
            self._timer = loop.call_later(ring.timeout_ms / 1000, self._on_timer)
        elif not self._watching:
            self._fd = ring.fileno()
            ring._async_watch(self._unwatch_from_any_thread)
            try:
                loop.add_reader(self._fd, self._on_socket)
            except BaseException:
                ring._async_unwatched(self._unwatch_from_any_thread)
                raise
            self._watching = True
        return fut

    def disarm(self) -> None:
        """Undo arm(): called when the task resumes, is cancelled, or gives up.

        The socket stays registered (ring modes): the next wait needs no
        epoll_ctl, and a report while the task runs costs one callback.
        """
        if not self._persistent or self._ring.closed:
            self._unwatch()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._fut = None
        self._ring._async_disarm()

    def pause(self) -> asyncio.Future:
        """A fairness yield: a future that completes after what is due now has run.

        It completes from a zero-delay loop timer, which the loop runs after
        the callbacks and expired timers already due, so a task those wake
        (a timer's sleep ending, a socket's reader) runs before the consumer
        resumes; a bare yield would resume it first, and such a task would
        wait for a second budget.
        """
        loop = self._running_loop()
        if self._polls_first:
            fut = _Wakeup(loop)
            loop.call_later(0, self._release_pause, fut)
        else:
            fut = pause_future(loop)
        self._idle_fires = 0
        return fut

    def bind_timers(self) -> Optional[list]:
        """The running loop's visible_timers() (None outside a loop); kept in
        `timers`, which follows the loop when arm() or pause() finds another."""
        try:
            self._running_loop()
        except RuntimeError:
            return None
        return self.timers

    def close(self) -> None:
        """The iteration is over (or moves to another loop): stop watching."""
        self._unwatch()

    def expire(self) -> None:
        """Wake the task now (a caller's timeout)."""
        self._wake()

    # -- loop callbacks ----------------------------------------------------

    def _on_socket(self) -> None:
        fut = self._fut
        if fut is None:
            # The task is in a fairness yield (which spans two loop passes on
            # asyncio) or awaits something else in its loop body.  A third
            # report with no yield in between means the latter: stop
            # watching, or the loop would spin.
            self._idle_fires += 1
            if self._idle_fires > 2 or not self._persistent:
                self._unwatch()
            return
        if self._polls_first:
            if self._persistent and not self._stale and self._ring._async_peek() == 0:
                # The loop polled before the task drained the ring: stale.  A
                # socket that stays readable (an error, the link going down)
                # reports again on the next loop pass and wakes the task then.
                self._stale += 1
                return
            self._woken_by_socket = True
            if not self._persistent:
                self._unwatch()
            if fut._state == _PENDING:   # _wake(), inline: the wake-up of every wait
                fut.wake(not self._loop._ready)
            return
        self._woken_by_socket = True
        self._wake()

    def _notify(self) -> None:
        """close()/breakloop(), from any thread: wake the task on its loop."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._wake)

    def _on_timer(self) -> None:
        self._timer = None
        self._wake()

    def _wake(self) -> None:
        """Wake the sleeping task (called by the loop: a reader, a timer, a notify)."""
        if not self._persistent:
            # an undrained fd would fire on every loop pass until the task runs
            self._unwatch()
        fut = self._fut
        if fut is None:
            return
        if type(fut) is _Wakeup:
            if fut._state == _PENDING:
                fut.wake(self._nothing_queued())
        elif not fut.done():
            fut.set_result(None)

    def _release_pause(self, fut: _Wakeup) -> None:
        """A fairness yield's zero-delay timer: what was due has run (or is queued)."""
        fut.wake(self._nothing_queued())

    def _nothing_queued(self) -> bool:
        """Is the running callback the last one the loop has queued (asyncio's loops)?

        Then waking the task here, not with call_soon, changes no order:
        the loop would poll (timeout 0) and run the task first thing in its
        next pass.
        """
        return not self._loop._ready

    def _unwatch_from_any_thread(self) -> None:
        """Ring.close(): stop watching now on the loop's thread, else soon on it."""
        if self._thread == get_ident() or self._loop is None:
            self._unwatch()
        else:
            self._loop.call_soon_threadsafe(self._unwatch)

    def _unwatch(self) -> None:
        if not self._watching:
            return
        self._watching = False
        try:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._fd)
        finally:
            self._ring._async_unwatched(self._unwatch_from_any_thread)


def visible_timers(loop: asyncio.AbstractEventLoop) -> Optional[list]:
    """`loop`'s timer heap, or None where it cannot be seen.

    asyncio's loops keep their timers in `loop._scheduled`, a heap of
    TimerHandles ordered by `_when`, in loop.time() seconds: time.monotonic()
    unless a subclass overrides time().  uvloop keeps its timers in C.
    """
    if isinstance(loop, asyncio.BaseEventLoop) and type(loop).time is asyncio.BaseEventLoop.time:
        return loop._scheduled
    return None


def slice_end_ns(timers: Optional[list], budget_ns: int, now_ns: int) -> int:
    """When a fairness slice that starts at `now_ns` (CLOCK_MONOTONIC) ends:
    after `budget_ns`, or when the earliest of `timers` (visible_timers())
    falls due, but not before an eighth of the budget.  A cancelled timer
    stays in the heap until it reaches the top, so this can be early, never
    late."""
    end = now_ns + budget_ns
    if timers:
        due = int(timers[0]._when * 1e9)
        return min(end, max(due, now_ns + budget_ns // 8))
    return end


def pause_future(loop: asyncio.AbstractEventLoop) -> asyncio.Future:
    """A fairness yield's future: a zero-delay loop timer completes it, so the
    callbacks and timers due when the task yields run before it resumes (a
    bare yield, `asyncio.sleep(0)`, would resume it first)."""
    fut = loop.create_future()
    loop.call_later(0, _release, fut)
    return fut


def _release(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


async def anext(ring: Any, timeout: Optional[float] = None) -> Any:
    """The next packet, or None when `timeout` seconds pass or the capture closes."""
    if timeout is not None and not timeout >= 0:
        raise ValueError(f"timeout must be None or a number >= 0, not {timeout!r}")
    pkt = ring.next(0)
    if pkt is not None or ring.closed or ring.drained or timeout == 0:
        return pkt
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    waiter = Waiter(ring)
    try:
        return await _wait_for_packet(ring, loop, waiter, deadline)
    finally:
        waiter.close()


async def _wait_for_packet(ring: Any, loop: asyncio.AbstractEventLoop, waiter: Waiter,
                           deadline: Optional[float]) -> Any:
    resumed = False
    while True:
        fut = waiter.arm(resumed)
        expiry = None if deadline is None else loop.call_at(deadline, waiter.expire)
        try:
            await fut
        finally:
            waiter.disarm()
            if expiry is not None:
                expiry.cancel()
        pkt = ring.next(0)
        if pkt is not None or ring.closed or ring.drained:
            return pkt
        if deadline is not None and loop.time() >= deadline:
            return None
        resumed = True
