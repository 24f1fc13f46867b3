"""tcpdump's relative TCP sequence numbers (what it prints unless given -S).

tcpdump remembers, per connection (both directions share one entry), the
sequence and acknowledgement numbers of the first packet with ACK set (or
of a SYN with ACK, which starts the entry again), prints that packet's
numbers as they are, and every later packet's relative to them.  Packets
without ACK are printed as they are.  `RelativeSequence` does the same;
zcap.decode consults the one `active()` returns while a printer uses it.
"""

from __future__ import annotations

import contextvars
import socket
from typing import Any, Callable, Optional, TypeVar

__all__ = ["RelativeSequence", "active"]

_ACK, _SYN = 0x10, 0x02
_MASK = 0xFFFFFFFF
_T = TypeVar("_T")
_current: contextvars.ContextVar[Optional[RelativeSequence]] = contextvars.ContextVar(
    "zcap_relative_tcp_seq", default=None)


def _raw(addr: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr)


class RelativeSequence:
    """Per-connection base numbers, as tcpdump's tcp_seq_hash."""

    def __init__(self) -> None:
        self._bases: dict[tuple[bytes, bytes, int, int], tuple[int, int]] = {}
        self.last_seq: Optional[int] = None     # the sequence number of the last packet, as printed

    def call(self, fn: Callable[..., _T], *args: Any) -> _T:
        """fn(*args) with this table active: zcap.decode.summarize() then prints
        relative numbers (it consults `active()`; this module imports no decoder)."""
        token = _current.set(self)
        try:
            return fn(*args)
        finally:
            _current.reset(token)

    def map(self, src: str, sport: int, dst: str, dport: int, flags: int, seq: int,
            ack: int) -> tuple[int, int]:
        """(seq, ack) as tcpdump prints them."""
        self.last_seq = seq
        if not flags & _ACK:
            return seq, ack
        a, b = _raw(src), _raw(dst)
        rev = sport > dport or (sport == dport and a > b)
        key = (b, a, dport, sport) if rev else (a, b, sport, dport)
        base = self._bases.get(key)
        if base is None or flags & _SYN:
            self._bases[key] = ((ack - 1) & _MASK, seq) if rev else (seq, (ack - 1) & _MASK)
            return seq, ack
        base_seq, base_ack = base
        if rev:
            seq, ack = (seq - base_ack) & _MASK, (ack - base_seq) & _MASK
        else:
            seq, ack = (seq - base_seq) & _MASK, (ack - base_ack) & _MASK
        self.last_seq = seq
        return seq, ack


def active() -> Optional[RelativeSequence]:
    return _current.get()
