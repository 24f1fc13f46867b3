"""Capture statistics: kernel counters accumulated since open, plus zcap's own."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional


@dataclass(frozen=True)
class Stats:
    """Totals since the capture was opened.

    `received` and `dropped` are the kernel's PACKET_STATISTICS, which the
    kernel resets on every read; zcap accumulates them.  As in libpcap,
    `received` counts every packet that passed the filter, including the ones
    then `dropped` for lack of ring space, so
    ``delivered + skipped + filtered + dropped + abandoned + (still queued) == received``;
    after close() or a finished stop() nothing is still queued.
    """

    mode: str                 #: "ring", "immediate" or "copy"
    received: int             #: packets the kernel accepted (pcap's ps_recv)
    dropped: int              #: packets the kernel dropped: ring or buffer full (ps_drop)
    freezes: int              #: times the kernel found the next block still owned by us
    delivered: int            #: packets handed to the application
    skipped: int              #: packets dropped in user space (loopback duplicates, direction)
    filtered: int             #: packets a filter rejected in user space (see Capture.set_filter)
    blocks: int               #: ring units (blocks, frames or recv batches) consumed
    lazy_batches: int         #: ring-mode batches handed out unparsed: walked as they are
                              #: read, their column table built only if a column or
                              #: batch[i] is used (0 when a skip or filter in user space
                              #: makes every block be parsed into a table first)
    polls: int                #: times the consumer had to wait (one poll() each)
    generation_gaps: int      #: block sequence numbers that did not advance by one
    snapshots: int            #: units whose pages were swapped for a private copy (or, in
                              #: copy mode, receive buffers handed to exports)
    deferred: int             #: units whose hand-back waited for buffer exports to be released
    deferred_now: int         #: units waiting now (at most a quarter of the ring)
    export_copies: int        #: batch buffer exports served from a copy (snapshot limit reached)
    retained_bytes: int       #: bytes of snapshots and buffers kept alive for exports now
    detached: int             #: packets copied out because the application kept them
    held: int                 #: units currently kept from the kernel by the application
    held_total: int           #: units ever kept from the kernel
    corrupt_blocks: int       #: units skipped because an offset was out of bounds
    ready: int                #: units handed over by the kernel and not yet consumed
    ring_blocks: int          #: units in the ring (0 in copy mode)
    mappings: int             #: whole-ring mappings made (1, plus one per spare for snapshots)
    abandoned: int            #: accepted by the kernel but never read: unread at close(),
    #:                           or a stop()/link-loss drain cut short (a block never retired)
    #: where the filter runs: "kernel", "user" (the kernel refused the program,
    #: zcap runs it in the ring walker and counts what it drops in `filtered`),
    #: or None (no filter)
    filter_location: Optional[str] = None

    @classmethod
    def zero(cls, mode: str = "ring") -> Stats:
        """Every counter 0: the stats of a capture that has not received anything yet."""
        return cls(mode=mode, **{f.name: 0 for f in fields(cls)
                                 if f.name not in ("mode", "filter_location")})

    @property
    def occupancy(self) -> float:
        """Fraction of the ring waiting for the consumer: near 1.0 means drops are next."""
        return self.ready / self.ring_blocks if self.ring_blocks else 0.0

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}
