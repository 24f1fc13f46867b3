"""asyncio readiness for captures: sleep on the socket only when the ring is empty.

`async for pkt in cap` is implemented in the ring itself (zcap/_aio.pxi):
while blocks are ready it never awaits.  When the ring runs dry it arms a
Waiter, which registers the capture's socket with the running loop
(`loop.add_reader`, on asyncio's loop and on uvloop alike), yields a future,
and on resume removes it again.  The reader callback only wakes the waiting
task; only the consumer advances the ring.

Readiness rules (TPACKET_V3): the kernel hands over no empty block and never
wakes an idle socket, so there is no busy wake-up when idle; a socket that
reports readable but gives the consumer nothing (a socket error, a block the
application still holds, a link going down) is not watched again at once -
the Waiter sleeps one block timeout on a timer instead, so it never spins.

Closing the capture or breakloop(), also from another thread, wakes the
waiting task through `loop.call_soon_threadsafe` (the ring calls the
Waiter's notify): its `async for` ends (StopAsyncIteration), and `anext()`
returns None.  stop() wakes it the same way; while the ring drains what the
kernel accepted before the stop, the waiter sleeps on a block-timeout timer,
and once the ring is drained `async for` ends and `anext()` returns None.
The wake-up eventfd serves threads sleeping in poll(); not watching it here
saves two epoll_ctl calls per wait.
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional

__all__ = ["Waiter", "anext"]


class Waiter:
    """Puts one task to sleep until a ring may have data."""

    __slots__ = ("_ring", "_loop", "_fut", "_fd", "_timer", "_watching", "_woken_by_socket")

    def __init__(self, ring: Any) -> None:
        self._ring = ring
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._fut: Optional[asyncio.Future] = None
        self._fd = -1
        self._timer: Optional[asyncio.TimerHandle] = None
        self._watching = False
        self._woken_by_socket = False

    def arm(self, resumed: bool = False) -> asyncio.Future:
        """Register with the running loop and return the future to sleep on.

        resumed: the caller just woke from this waiter and found nothing.
        """
        ring = self._ring
        spurious = resumed and self._woken_by_socket
        if spurious:
            ring._poll_now()            # pick up a socket error or the link going down
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._loop, self._fut = loop, fut
        self._woken_by_socket = False
        ring._async_arm(self._notify)
        if spurious or ring.waiting_for_link or ring.draining:
            self._timer = loop.call_later(ring.timeout_ms / 1000, self._on_timer)
        else:
            self._fd = ring.fileno()
            loop.add_reader(self._fd, self._on_socket)
            self._watching = True
        return fut

    def disarm(self) -> None:
        """Undo arm(): called when the task resumes, is cancelled, or gives up."""
        self._unwatch()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._fut = None
        self._ring._async_disarm()

    def expire(self) -> None:
        """Wake the task now (a caller's timeout)."""
        self._wake()

    # -- loop callbacks ----------------------------------------------------

    def _on_socket(self) -> None:
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
        # Stop watching at once: an undrained fd would fire on every loop pass
        # until the task gets to run.
        self._unwatch()
        fut = self._fut
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _unwatch(self) -> None:
        loop = self._loop
        if loop is None:
            return
        if self._watching:
            loop.remove_reader(self._fd)
            self._watching = False


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
