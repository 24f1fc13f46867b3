"""`zcap --stats`: a once-a-second line of rates, drops and ring occupancy on stderr."""

from __future__ import annotations

import sys
import time
from typing import Any, Optional, TextIO

__all__ = ["LiveStats"]


class LiveStats:
    """A once-a-second line on stderr: rates, drops and ring occupancy.

    On a terminal it rewrites itself in place; elsewhere it appends lines.
    """

    def __init__(self, out: TextIO = sys.stderr, interval: float = 1.0) -> None:
        self.out = out
        self.interval = interval
        self.tty = out.isatty()
        self._last_time = time.monotonic()
        self._last_packets = 0
        self._last_bytes = 0
        self.packets = 0
        self.bytes = 0

    def count(self, pkt: Any) -> None:
        self.packets += 1
        self.bytes += pkt.wirelen

    def maybe_show(self, stats: Optional[Any]) -> None:
        now = time.monotonic()
        elapsed = now - self._last_time
        if elapsed < self.interval:
            return
        pps = (self.packets - self._last_packets) / elapsed
        mbps = (self.bytes - self._last_bytes) * 8 / elapsed / 1e6
        text = f"{self.packets} packets  {pps:,.0f} pkt/s  {mbps:,.1f} Mbit/s"
        if stats is not None:
            text += (f"  dropped {stats.dropped}  ring {stats.occupancy:.0%} full"
                     if stats.ring_blocks else f"  dropped {stats.dropped}")
        self.out.write(("\r" + text + "\x1b[K") if self.tty else text + "\n")
        self.out.flush()
        self._last_time, self._last_packets, self._last_bytes = now, self.packets, self.bytes

    def finish(self) -> None:
        if self.tty:
            self.out.write("\n")
