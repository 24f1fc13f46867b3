"""Every packet the kernel accepted is delivered or counted, on every way of reading.

The invariant (zcap.Stats): delivered + dropped + skipped + filtered + (still
queued) == received.  Each consumption path reads every packet sent, so
nothing is queued at the end, nothing is dropped (the ring is far from full)
and `delivered` must equal `received` exactly: a batch that was iterated or
indexed counts its packets once.
"""

from __future__ import annotations

import asyncio

import pytest

import zcap
from tests.live.conftest import MODES, open_on, seq_of

COUNT = 300


def read_for(cap, n):
    seqs = []
    for pkt in cap:
        seqs.append(seq_of(pkt))
        if len(seqs) == n:
            break
    return seqs


def read_next(cap, n):
    seqs = []
    while len(seqs) < n and (pkt := cap.next(timeout=3)) is not None:
        seqs.append(seq_of(pkt))
    return seqs


def _batches(cap, n, take):
    seqs = []
    while len(seqs) < n and (batch := cap.next_batch(timeout=3)) is not None:
        seqs += take(batch)
    return seqs


def read_batches_iterated(cap, n):
    return _batches(cap, n, lambda b: [seq_of(p) for p in b])


def read_batches_iterated_twice(cap, n):
    def take(b):
        first = [seq_of(p) for p in b]
        assert [seq_of(p) for p in b] == first
        return first
    return _batches(cap, n, take)


def read_batches_indexed(cap, n):
    return _batches(cap, n, lambda b: [seq_of(b[i]) for i in range(len(b))])


def read_batch_columns(cap, n):
    import numpy as np

    def take(b):
        buf = np.frombuffer(b.buffer, np.uint8)
        offsets = np.frombuffer(b.offsets, np.uint32)
        return [int.from_bytes(buf[o + 42:o + 50].tobytes(), "big") for o in offsets]
    return _batches(cap, n, take)


def read_batch_field(cap, n):
    return _batches(cap, n, lambda b: list(b.field(42, ">u8")))


def read_async_for(cap, n):
    async def run():
        seqs = []
        async for pkt in cap:
            seqs.append(seq_of(pkt))
            if len(seqs) == n:
                break
        return seqs
    return asyncio.run(asyncio.wait_for(run(), 10))


def read_async_batches(cap, n):
    async def run():
        seqs = []
        async for batch in cap.batches():
            seqs += [seq_of(p) for p in batch]
            if len(seqs) >= n:
                break
        return seqs
    return asyncio.run(asyncio.wait_for(run(), 10))


PATHS = {
    "for": read_for,
    "next": read_next,
    "batches-iterated": read_batches_iterated,
    "batches-iterated-twice": read_batches_iterated_twice,
    "batches-indexed": read_batches_indexed,
    "batch-columns": read_batch_columns,
    "batch-field": read_batch_field,
    "async-for": read_async_for,
    "async-batches": read_async_batches,
}


def check_invariant(stats, sent):
    assert stats.received == sent
    assert stats.dropped == 0 and stats.ready == 0
    assert stats.delivered + stats.dropped + stats.skipped + stats.filtered == stats.received


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("opts", MODES)
def test_delivered_adds_up_on_every_path(testbed, opts, path):
    template = testbed.frame(64)
    with open_on(testbed, **opts) as cap:
        with testbed.sender() as s:
            assert s.send_sequence(template, COUNT) == COUNT
        seqs = PATHS[path](cap, COUNT)
        stats = cap.stats()
    assert seqs == list(range(COUNT))
    check_invariant(stats, COUNT)


@pytest.mark.parametrize("opts", MODES)
def test_delivered_adds_up_for_cython_consume(testbed, opts, cy_consumer):
    template = testbed.frame(64)
    with open_on(testbed, **opts) as cap:
        with testbed.sender() as s:
            assert s.send_sequence(template, COUNT) == COUNT
        assert cy_consumer.drain(cap.ring, COUNT, 3000) == COUNT
        stats = cap.stats()
    check_invariant(stats, COUNT)


@pytest.mark.parametrize("path", ["for", "batches-iterated", "batches-indexed", "batch-field",
                                  "async-batches"])
def test_offline_delivered_adds_up(tmp_path, path):
    """Offline: received counts the records read; every one is delivered once."""
    from zcap.testbed import udp_frame
    out = tmp_path / "seq.pcap"
    with zcap.open_writer(str(out), linktype=1) as w:
        for i in range(COUNT):
            w.write_raw(udp_frame(64, seq=i), i * 1000, 64)
    with zcap.open_offline(str(out), chunk_size=4096) as src:
        seqs = PATHS[path](src, COUNT)
        stats = src.stats()
    assert seqs == list(range(COUNT))
    assert stats.received == stats.delivered == COUNT
