"""Shared by the examples: a capture target that works on a machine with no traffic.

With --interface the examples capture there (you bring the traffic).
Without it they create a private veth pair in a new network namespace
(zcap.testbed) and a background sender of numbered UDP frames.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator, Optional

from zcap.testbed import Testbed


@contextlib.contextmanager
def capture_target(interface: Optional[str], *, frames: int = 200_000,
                   pps: float = 100_000) -> Iterator[dict]:
    """Yield open_live() keyword arguments for the interface to watch."""
    if interface:
        yield {"interface": interface}
        return
    with Testbed() as tb:
        stop = threading.Event()

        def send() -> None:
            template = tb.frame(128)
            with tb.sender() as s:
                seq = 0
                while not stop.is_set() and seq < frames:
                    seq += s.send_sequence(template, min(10_000, frames - seq), first_seq=seq,
                                           pps=pps)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        try:
            yield {"interface": tb.b, "netns": tb.netns}
        finally:
            stop.set()
            sender.join(10)
