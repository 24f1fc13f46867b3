"""The pool worker's control thread: asleep while there is nothing to do,
awake at once for a message from the parent or an item to stream."""

from __future__ import annotations

import queue
import threading

import zcap
from tests.live import pool_handlers as H

RING = dict(block_size=1 << 20, block_count=4, timeout_ms=10)


def test_idle_control_thread_does_not_wake(testbed):
    # It used to poll every STREAM_DELAY (50 ms): ~20 wake-ups in an idle second.
    with zcap.Pool(testbed.b, H.control_wakeups_while_idle, workers=1, netns=testbed.netns,
                   **RING) as p:
        pass                   # leaving the block stops the pool once the handler slept
    [woke] = p.join()
    assert woke <= 2, f"the idle control thread woke {woke} times in one second"


def test_a_lone_item_is_streamed_while_the_handler_runs(testbed):
    with zcap.Pool(testbed.b, H.put_one_then_wait, workers=2, netns=testbed.netns,
                   **RING) as p:
        got: queue.Queue = queue.Queue()
        reader = threading.Thread(target=lambda: [got.put(i) for i in p.results()], daemon=True)
        reader.start()
        # Both items come while the handlers still run (they end only at the
        # stop, when the block is left): nothing else is put, no batch fills.  A
        # generous bound; a lost wake-up would hold the items until the stop.
        first = {got.get(timeout=10.0), got.get(timeout=10.0)}
    reader.join(10)
    assert first == {("hello", 0), ("hello", 1)}
    assert p.join() == [0, 0]
