"""The zcap consumers of the live benchmark: read while the sender sends.

The loop bodies are those of drain_consumers.py, but packets may be missing
(the kernel drops what does not fit), so instead of checking the sequence
each loop counts packets numbered below `count` and stops at the first one
numbered `count` or above: the end marker live.py sends once its sender is
done and the consumer has gone idle.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

from zcap.testbed import SEQ_OFFSET

from drain_consumers import SEQ, event_loop


def live_packets(packets, count: int) -> int:
    """Per packet: `for pkt in cap` (ring or copy mode)."""
    unpack_seq = SEQ.unpack_from
    seen = 0
    for pkt in packets:
        if unpack_seq(pkt, SEQ_OFFSET)[0] >= count:
            break
        seen += 1
    return seen


def live_batches(cap, count: int) -> int:
    unpack_seq = SEQ.unpack_from
    seen = 0
    for batch in cap.batches():
        for pkt in batch:
            if unpack_seq(pkt, SEQ_OFFSET)[0] >= count:
                return seen
            seen += 1
    return seen


def live_numpy(cap, count: int) -> int:
    import numpy as np

    seq_bytes = np.arange(8, dtype=np.uint32)
    seen = 0
    for batch in cap.batches():
        below, marker = _count_batch(batch, seq_bytes, count)
        seen += below
        if marker:
            break
    return seen


def _count_batch(batch, seq_bytes, count: int) -> tuple[int, bool]:
    # views of the ring block: gone before the next batch (see drain_consumers)
    import numpy as np

    buf = np.frombuffer(batch.buffer, np.uint8)
    offsets = np.frombuffer(batch.offsets, np.uint32)
    seqs = buf.take((offsets + SEQ_OFFSET)[:, None] + seq_bytes).view(">u8").ravel()
    ends = np.flatnonzero(seqs >= count)
    if len(ends):
        return int(ends[0]), True
    return len(seqs), False


async def _live_async(cap, count: int) -> int:
    unpack_seq = SEQ.unpack_from
    seen = 0
    async for pkt in cap:
        if unpack_seq(pkt, SEQ_OFFSET)[0] >= count:
            break
        seen += 1
    return seen


def live_asyncio(cap, count: int) -> int:
    return event_loop("asyncio").run_until_complete(_live_async(cap, count))


def live_uvloop(cap, count: int) -> int:
    return event_loop("uvloop").run_until_complete(_live_async(cap, count))


def live_cython(cap, count: int) -> int:
    import cy_consumer

    return cy_consumer.count_until_marker(cap.ring, count)


class LiveZcap(NamedTuple):
    mode: str
    run: Callable[[object, int], int]
    module: Optional[str] = None            # imported before READY


LIVE_ZCAP = {
    "zcap-iter": LiveZcap("ring", live_packets),
    "zcap-batch": LiveZcap("ring", live_batches),
    "zcap-numpy": LiveZcap("ring", live_numpy, "numpy"),
    "zcap-cython": LiveZcap("ring", live_cython, "cy_consumer"),
    "zcap-async-asyncio": LiveZcap("ring", live_asyncio, "asyncio"),
    "zcap-async-uvloop": LiveZcap("ring", live_uvloop, "uvloop"),
    "zcap-copy": LiveZcap("copy", live_packets),
}
