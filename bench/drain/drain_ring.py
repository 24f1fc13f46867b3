"""Ring sizing, pre-filling and the no-drop check shared by the drain benchmark.

A ring is "pre-filled" when all N frames have been sent while nobody reads,
the last partly filled block has been retired, and the kernel's counters show
exactly N packets received and none dropped.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass
from typing import Iterator, NamedTuple

import zcap

FRAME_BYTES = 64                # the default; --frame-size 1500 for full-size frames
FRAME_SIZES = (64, 1500)
# What a frame occupies in a TPACKET_V3 block: the 86-byte offset to the MAC
# header (tpacket3_hdr + sockaddr_ll, aligned, plus the 4 bytes zcap and
# libpcap reserve for a VLAN tag) plus the frame, rounded up to 16 (the
# kernel rounds to 8: a margin).
RING_MAC_OFFSET = 86
# What a queued frame is charged against a socket's receive buffer (the skb's
# truesize) on a veth: measured ~832 bytes for 64-byte frames; a 1500-byte
# frame's skb head is a 4 KiB page fragment.  Rounded up for margin.
COPY_BYTES_SMALL, COPY_BYTES_LARGE = 1100, 5000
# The kernel retires a block when it is full or when its timer expires; blocks
# retired early hold fewer frames, so plan for them to be only this full.
PLANNED_BLOCK_FILL = 0.6

MiB = 1 << 20
DEFAULT_BLOCK_SIZE = 4 * MiB
# zcap's default (10 ms) retires a block every 10 ms while a ~300 kpps sender
# fills it: blocks end up ~60% empty.  250 ms lets 4 MiB blocks fill.
DEFAULT_TIMEOUT_MS = 250


def ring_bytes_per_frame(frame_bytes: int) -> int:
    return (RING_MAC_OFFSET + frame_bytes + 15) & ~15


def copy_bytes_per_frame(frame_bytes: int) -> int:
    return COPY_BYTES_SMALL if frame_bytes <= 128 else COPY_BYTES_LARGE


class PrefillError(RuntimeError):
    """The ring does not hold exactly the N frames sent (drops or strays)."""


@dataclass(frozen=True)
class RingPlan:
    block_size: int
    block_count: int
    timeout_ms: int

    @property
    def total_bytes(self) -> int:
        return self.block_size * self.block_count

    @property
    def settle_seconds(self) -> float:
        """Long enough for the kernel to retire the last, partly filled block.

        Depending on the kernel, a block is retired between one and two
        timeouts after it was opened.
        """
        return 2 * self.timeout_ms / 1000 + 0.1

    @classmethod
    def for_ring(cls, count: int, block_size: int = DEFAULT_BLOCK_SIZE,
                 timeout_ms: int = DEFAULT_TIMEOUT_MS, frame_bytes: int = FRAME_BYTES) -> RingPlan:
        """A TPACKET_V3 ring that holds `count` frames with margin."""
        blocks = math.ceil(count * ring_bytes_per_frame(frame_bytes)
                           / (block_size * PLANNED_BLOCK_FILL))
        return cls(block_size, max(8, blocks), timeout_ms)

    @classmethod
    def for_copy_mode(cls, count: int, block_size: int = DEFAULT_BLOCK_SIZE,
                      timeout_ms: int = DEFAULT_TIMEOUT_MS, frame_bytes: int = FRAME_BYTES) -> RingPlan:
        """Copy mode (and any socket buffer) sizes its buffer from block_size * block_count."""
        blocks = math.ceil(count * copy_bytes_per_frame(frame_bytes) / block_size)
        return cls(block_size, max(8, blocks), timeout_ms)

    def describe(self) -> str:
        return (f"{self.block_count} x {self.block_size // MiB} MiB = "
                f"{self.total_bytes // MiB} MiB, block timeout {self.timeout_ms} ms")


def open_capture(interface: str, netns: str, plan: RingPlan, mode: str = "ring") -> zcap.Capture:
    return zcap.open_live(interface, netns=netns, mode=mode, block_size=plan.block_size,
                          block_count=plan.block_count, timeout_ms=plan.timeout_ms)


def send_frames(testbed, template: bytes, count: int, plan: RingPlan) -> float:
    """Send frames 0..count-1 at full speed, then wait for the last block's retirement.

    Returns how many CPUs other processes kept busy during that wait: the
    drain that follows competes with them.
    """
    with testbed.sender() as sender:
        sent = sender.send_sequence(template, count, first_seq=0, pps=0, max_seconds=120.0)
    if sent != count:
        raise PrefillError(f"the sender gave up after {sent} of {count} frames")
    return busy_cpus_while_sleeping(plan.settle_seconds)


def busy_cpus_while_sleeping(seconds: float) -> float:
    """System-wide non-idle time during a sleep, in CPUs (0 .. cpu_count)."""
    before = _cpu_ticks()
    time.sleep(seconds)
    after = _cpu_ticks()
    total = after[0] - before[0]
    idle = after[1] - before[1]
    return (total - idle) / total * (os.cpu_count() or 1) if total else 0.0


def _cpu_ticks() -> tuple[int, int]:
    """(all ticks, idle ticks) summed over CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:9]]
    return sum(fields), fields[3] + fields[4]           # idle + iowait


def check_prefilled(received: int, dropped: int, count: int, who: str) -> None:
    if dropped or received != count:
        raise PrefillError(
            f"{who}: the kernel received {received} and dropped {dropped} of {count} frames "
            f"before the drain; the ring or socket buffer is too small for this count")


class Prefilled(NamedTuple):
    cap: zcap.Capture
    background_cpus: float      # see send_frames


@contextlib.contextmanager
def prefilled_capture(testbed, template: bytes, count: int, plan: RingPlan,
                      mode: str = "ring") -> Iterator[Prefilled]:
    """A fresh capture on testbed.b with `count` frames queued and none dropped."""
    with open_capture(testbed.b, testbed.netns, plan, mode) as cap:
        background = send_frames(testbed, template, count, plan)
        stats = cap.stats()
        check_prefilled(stats.received, stats.dropped, count, f"zcap {mode} mode")
        yield Prefilled(cap, background)
