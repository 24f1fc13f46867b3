"""The Python-side consumers of the drain benchmark.

Each drain function reads exactly `count` packets, checks that their sequence
numbers (big-endian u64 at offset 42) are 0, 1, 2, ... and returns how many
it read.  They are shared by the in-process timing runs (drain.py) and the
subprocess that perf watches for system calls (drain_worker.py).
"""

from __future__ import annotations

import importlib
import struct
import time
from typing import Callable, Iterable, NamedTuple, Optional

from zcap.capture import DEFAULT_BLOCK_SIZE
from zcap.testbed import SEQ_OFFSET

SEQ = struct.Struct("!Q")


class SequenceError(AssertionError):
    pass


def drain_packets(packets: Iterable, count: int) -> int:
    """Per-packet Python loop: the body every Python consumer is measured with."""
    unpack_seq = SEQ.unpack_from
    expected = 0
    for pkt in packets:
        seq = unpack_seq(pkt, SEQ_OFFSET)[0]
        if seq != expected:
            raise SequenceError(f"expected sequence {expected}, got {seq}")
        expected += 1
        if expected == count:
            break
    return expected


def drain_batches(cap, count: int) -> int:
    """The same loop body, over the packets of each batch (ring block)."""
    unpack_seq = SEQ.unpack_from
    expected = 0
    for batch in cap.batches():
        for pkt in batch:
            seq = unpack_seq(pkt, SEQ_OFFSET)[0]
            if seq != expected:
                raise SequenceError(f"expected sequence {expected}, got {seq}")
            expected += 1
            if expected == count:
                return expected
    return expected


def drain_numpy(cap, count: int) -> int:
    """Vectorized: gather each batch's sequence numbers from its columns."""
    import numpy as np  # loaded by preload(): drain.py limits BLAS threads first

    seq_bytes = np.arange(8, dtype=np.uint32)
    expected = 0
    for batch in cap.batches():
        expected = _check_batch_sequence(batch, seq_bytes, expected, count)
        if expected == count:
            break
    return expected


def _check_sequence(seqs, expected: int) -> int:
    """The sequence numbers must run on from `expected`; returns the next one."""
    import numpy as np

    wanted = np.arange(expected, expected + len(seqs), dtype=np.uint64)
    if not np.array_equal(seqs, wanted):
        first_bad = int(np.flatnonzero(seqs != wanted)[0])
        raise SequenceError(f"expected sequence {expected + first_bad}, got {int(seqs[first_bad])}")
    return expected + len(seqs)


def _check_batch_sequence(batch, seq_bytes, expected: int, count: int) -> int:
    # The arrays are views of the ring block: they must be gone before the
    # next batch is requested, or zcap has to snapshot the block to keep them
    # valid.  Keeping them local to this function does that.
    import numpy as np

    buf = np.frombuffer(batch.buffer, np.uint8)
    offsets = np.frombuffer(batch.offsets, np.uint32)[: count - expected]
    byte_index = (offsets + SEQ_OFFSET)[:, None] + seq_bytes
    seqs = buf.take(byte_index).view(">u8").ravel()
    return _check_sequence(seqs, expected)


HEADER_QUERY = ("ip_src", "ip_dst", "proto", "sport", "dport")


def drain_headers(cap, count: int) -> int:
    """drain_numpy plus every header column of every batch (zcap._headers, parsed in C)."""
    return _drain_with_headers(cap, count, None)


def drain_headers_query(cap, count: int) -> int:
    """drain_numpy plus the typical query's columns: ip_src, ip_dst, proto, sport, dport."""
    return _drain_with_headers(cap, count, HEADER_QUERY)


def _drain_with_headers(cap, count: int, names) -> int:
    import numpy as np

    seq_bytes = np.arange(8, dtype=np.uint32)
    expected = 0
    for batch in cap.batches():
        n = min(len(batch), count - expected)
        if not _ports_parsed(_header_columns(batch.headers(), names), n):
            raise SequenceError("the header pass found no UDP ports")
        expected = _check_batch_sequence(batch, seq_bytes, expected, count)
        if expected == count:
            break
    return expected


# CPU ns a self-timed consumer spent in its timed part during its last drain
# (ZcapConsumer.part; the drain's own timer covers everything else too)
PART_NS = [0]


def drain_headers_pass(cap, count: int) -> int:
    """The header pass alone: every column of every batch (`h.compute()`), timed
    by the thread's CPU clock around that call only; the walk that lays out
    the batch and the sequence check (batch.field) are outside the timed part."""
    import numpy as np

    clock = time.thread_time_ns
    PART_NS[0] = 0
    expected = 0
    for batch in cap.batches():
        n = min(len(batch), count - expected)
        batch.offsets  # noqa: B018  (the walk that lays the batch out: not the pass)
        headers = batch.headers()
        start = clock()
        headers.compute()
        PART_NS[0] += clock() - start
        if not _ports_parsed({"dport": np.asarray(headers.dport)}, n):
            raise SequenceError("the header pass found no UDP ports")
        expected = _check_sequence(np.asarray(batch.field(SEQ_OFFSET, ">u8"))[:n], expected)
        if expected == count:
            break
    return expected


def _header_columns(headers, names) -> dict:
    """The columns `names` (None: all) as numpy arrays, computed in one pass."""
    import numpy as np
    if names is None:
        return {k: np.asarray(v) for k, v in headers.columns().items()}
    return {name: np.asarray(getattr(headers, name)) for name in names}


def _ports_parsed(columns: dict, n: int) -> bool:
    return bool(n == 0 or columns["dport"][n - 1] >= 0)


def drain_numpy_readme(cap, count: int) -> int:
    """README.md's numpy idiom for a fixed-offset field, exactly as written
    there ("### Columns with numpy"): `batch.field()` per batch, the array
    kept in a loop variable while the next batch is requested."""
    import numpy as np

    expected = 0
    for batch in cap.batches():
        seqs = np.asarray(batch.field(42, ">u8"))          # README
        expected = _check_sequence(seqs[: count - expected], expected)
        if expected == count:
            break
    return expected


def drain_numpy_readme_take(cap, count: int) -> int:
    """README.md's numpy idiom for arbitrary bytes, exactly as written there:
    numpy's gather (take()) over batch.buffer and batch.offsets, the arrays in
    loop variables while the next batch is requested (zcap defers the block).
    Until issue 12 this was the README's only numpy example."""
    import numpy as np

    expected = 0
    for batch in cap.batches():
        buf = np.frombuffer(batch.buffer, np.uint8)                                   # README
        offsets = np.frombuffer(batch.offsets, np.uint32)                             # README
        caplen = np.frombuffer(batch.caplen, np.uint32)                               # README
        whole = caplen >= 42 + 8                                                      # README
        seqs = buf.take((offsets[whole] + 42)[:, None] + np.arange(8)).view(">u8").ravel()  # README
        if len(seqs) != len(offsets):
            raise SequenceError(f"{len(offsets) - len(seqs)} packets too short for a sequence number")
        expected = _check_sequence(seqs[: count - expected], expected)
        if expected == count:
            break
    return expected


def drain_field(cap, count: int) -> int:
    """batch.field(): the sequence number of every packet gathered in one C loop."""
    import numpy as np

    expected = 0
    for batch in cap.batches():
        seqs = np.asarray(batch.field(SEQ_OFFSET, ">u8"))[: count - expected]
        expected = _check_sequence(seqs, expected)
        if expected == count:
            break
    return expected


_LOOPS: dict = {}


def event_loop(kind: str):
    """One event loop per kind and process, made once (the warm-up run pays for it)."""
    if kind not in _LOOPS:
        import asyncio

        if kind == "uvloop":
            import uvloop
            _LOOPS[kind] = uvloop.new_event_loop()
        else:
            _LOOPS[kind] = asyncio.new_event_loop()
    return _LOOPS[kind]


async def _drain_async(cap, count: int) -> int:
    unpack_seq = SEQ.unpack_from
    expected = 0
    async for pkt in cap:
        seq = unpack_seq(pkt, SEQ_OFFSET)[0]
        if seq != expected:
            raise SequenceError(f"expected sequence {expected}, got {seq}")
        expected += 1
        if expected == count:
            break
    return expected


def drain_asyncio(cap, count: int) -> int:
    """The per-packet body under `async for`, on asyncio's default loop."""
    return event_loop("asyncio").run_until_complete(_drain_async(cap, count))


def drain_uvloop(cap, count: int) -> int:
    """The per-packet body under `async for`, on uvloop."""
    return event_loop("uvloop").run_until_complete(_drain_async(cap, count))


def drain_cython(cap, count: int) -> int:
    """Ring.consume() with a C callback (bench/drain/cy_consumer.pyx, built at run time)."""
    import cy_consumer

    return cy_consumer.drain(cap.ring, count)


class ZcapConsumer(NamedTuple):
    mode: str                               # open_live(mode=...)
    drain: Callable[[object, int], int]
    summary: str
    module: Optional[str] = None            # imported by preload(), never while timing
    part: bool = False                      # times itself: its figure is PART_NS, not the drain
    block_size: Optional[int] = None        # its ring's block size, unless --block-size says

    def preload(self) -> None:
        if self.module:
            importlib.import_module(self.module)


ZCAP_CONSUMERS = {
    "zcap-iter": ZcapConsumer("ring", drain_packets, "for pkt in cap"),
    "zcap-batch": ZcapConsumer("ring", drain_batches, "for batch in cap.batches(): for pkt in batch"),
    "zcap-async-asyncio": ZcapConsumer("ring", drain_asyncio, "async for pkt in cap (asyncio loop)",
                                       "asyncio"),
    "zcap-async-uvloop": ZcapConsumer("ring", drain_uvloop, "async for pkt in cap (uvloop)", "uvloop"),
    "zcap-numpy": ZcapConsumer("ring", drain_numpy, "numpy gather over batch.buffer/offsets", "numpy"),
    "zcap-numpy-readme": ZcapConsumer("ring", drain_numpy_readme,
                                      "README numpy idiom: np.asarray(batch.field(42, '>u8')), "
                                      "kept in a loop variable", "numpy"),
    "zcap-numpy-readme-take": ZcapConsumer("ring", drain_numpy_readme_take,
                                           "README arbitrary-bytes idiom: numpy take() over "
                                           "batch.buffer/offsets, arrays in loop variables", "numpy"),
    "zcap-field": ZcapConsumer("ring", drain_field, "batch.field(42, '>u8'): C gather per batch",
                               "numpy"),
    "zcap-cython": ZcapConsumer("ring", drain_cython, "Ring.consume() with a nogil C callback",
                                "cy_consumer"),
    "zcap-copy": ZcapConsumer("copy", drain_packets, "for pkt in cap, mode='copy' (recvmmsg)"),
    "zcap-headers": ZcapConsumer("ring", drain_headers,
                                 "zcap-numpy + batch.headers(): every header column (C pass)", "numpy"),
    "zcap-headers-query": ZcapConsumer("ring", drain_headers_query,
                                       "zcap-numpy + header columns ip_src, ip_dst, proto, sport, dport",
                                       "numpy"),
    "zcap-headers-pass": ZcapConsumer("ring", drain_headers_pass,
                                      "the header pass alone: CPU time in batch.headers().compute() "
                                      "(every column), timed inside the drain; zcap's default "
                                      "1 MiB blocks", "numpy", part=True,
                                      block_size=DEFAULT_BLOCK_SIZE),
}
