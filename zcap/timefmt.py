"""Packet timestamps as tcpdump prints them: the default and -t, -tt, -ttt, -tttt, -ttttt.

    (none)   14:03:07.123456            local time of day
    -t       (nothing)
    -tt      1733493787.123456          seconds since the epoch
    -ttt      00:00:00.000120           time since the previous packet
    -tttt    2024-12-06 14:03:07.123456 local date and time
    -ttttt    00:00:01.000120           time since the first packet

Microseconds, or nanoseconds with --nano.  Timestamps arrive as integer
nanoseconds and are never converted to floats.
"""

from __future__ import annotations

import time
from typing import Optional

__all__ = ["TimestampFormatter"]

_NS = 1_000_000_000


class TimestampFormatter:
    """Formats one packet timestamp after another (-ttt/-ttttt keep state)."""

    def __init__(self, level: int = 0, *, nano: bool = False) -> None:
        if not 0 <= level <= 5:
            raise ValueError("-t can be given at most 5 times")
        self.level = level
        self.nano = nano
        self._base: Optional[int] = None

    def _fraction(self, ns: int) -> str:
        return f"{ns:09d}" if self.nano else f"{ns // 1000:06d}"

    def _clock(self, ts_ns: int, fmt: str, local: bool) -> str:
        sec, frac = divmod(ts_ns, _NS)
        if not self.nano:
            frac -= frac % 1000
        convert = time.localtime if local else time.gmtime
        return f"{time.strftime(fmt, convert(sec))}.{self._fraction(frac)}"

    def __call__(self, ts_ns: int) -> str:
        """The timestamp and its trailing space, as tcpdump prints it ('' with -t)."""
        level = self.level
        if level == 1:
            return ""
        if level == 0:
            return self._clock(ts_ns, "%H:%M:%S", True) + " "
        if level == 2:
            sec, frac = divmod(ts_ns, _NS)
            return f"{sec}.{self._fraction(frac)} "
        if level == 4:
            return self._clock(ts_ns, "%Y-%m-%d %H:%M:%S", True) + " "
        # 3 and 5: a difference, printed as a UTC time of day
        unit = 1 if self.nano else 1000
        now = ts_ns // unit * unit
        if self._base is None:
            self._base = now
        delta = now - self._base
        if level == 3:
            self._base = now
        sign = "-" if delta < 0 else " "
        return sign + self._clock(abs(delta), "%H:%M:%S", False) + " "
