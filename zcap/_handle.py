"""What Capture (capture.py) and Injector (inject.py) share: a handle on one
packet socket and the Cython ring that owns it.

Both keep the ring as `self._ring` and the interface they opened as
`interface`/`netns`; this base gives both the same `closed`, `fileno()`,
context-manager behaviour (`with` closes) and the shape of their repr.  Each
subclass has its own close() (an injector waits for queued frames).
"""

from __future__ import annotations

from typing import Any, Self


class RingHandle:
    """Base of Capture and Injector; not used on its own."""

    _ring: Any
    interface: str
    netns: Any

    @property
    def closed(self) -> bool:
        return self._ring.closed

    def fileno(self) -> int:
        return self._ring.fileno()

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _describe(self, details: str) -> str:
        """`<zcap.Class 'eth0' netns=... details open|closed>`."""
        state = "closed" if self.closed else "open"
        ns = f" netns={self.netns!r}" if self.netns is not None else ""
        return f"<zcap.{type(self).__name__} {self.interface!r}{ns} {details} {state}>"
