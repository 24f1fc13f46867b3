"""Data the application keeps: the ring never stalls, kept bytes never change,
held packets cost about their own size, and the README's batch idiom copies nothing."""

from __future__ import annotations

import asyncio
import gc

import pytest

import zcap
from tests.live.conftest import MODES, SMALL_RING, capacity, expected_frame, open_on, seq_of

# More units than any per-slot limit the ring ever had (15 snapshots per slot).
KEPT_UNITS = {"ring": 200, "immediate": 2500, "copy": 200}


def mode_id(opts) -> str:
    return "immediate" if opts.get("immediate") else opts["mode"]


def read_chunk(cap, n, on_batch):
    """Read batches until n packets arrived; return their sequence numbers."""
    seqs = []
    while len(seqs) < n:
        batch = cap.next_batch(timeout=3)
        assert batch is not None, f"the ring stalled after {len(seqs)} of {n} packets: {cap.stats()}"
        seqs += on_batch(batch)
    return seqs


@pytest.mark.parametrize("opts", MODES)
def test_keeping_a_view_of_every_unit_never_stalls_the_ring(testbed, opts):
    """One memoryview of a packet and batch.buffer of every unit, kept to the end."""
    template = testbed.frame(64)
    units = KEPT_UNITS[mode_id(opts)]
    views, buffers, expected = [], [], []

    def keep(batch):
        pkt = batch[0]
        views.append(memoryview(pkt))
        expected.append(bytes(pkt))
        buffers.append((batch.buffer, batch.offsets.tolist()))
        return [seq_of(p) for p in batch]

    with open_on(testbed, **SMALL_RING, **opts) as cap:
        per_chunk = 40 if mode_id(opts) != "immediate" else 1
        seqs = []
        with testbed.sender() as s:
            while cap.stats().blocks < units:
                first = len(seqs)
                assert s.send_sequence(template, per_chunk, first_seq=first) == per_chunk
                seqs += read_chunk(cap, per_chunk, keep)
        stats = cap.stats()
    assert seqs == list(range(len(seqs)))
    assert stats.received == len(seqs) == stats.delivered and stats.dropped == 0
    assert stats.held == 0
    for view, want in zip(views, expected):
        assert bytes(view) == want
    for (buf, offsets), want in zip(buffers, expected):
        assert bytes(buf[offsets[0]:offsets[0] + len(want)]) == want
    if mode_id(opts) == "copy":
        assert stats.snapshots >= units - 1      # each receive buffer went to its batch.buffer
    else:
        assert stats.snapshots >= units - 8      # all but the last few units were swapped out
    assert len(views) >= units


def test_past_the_snapshot_limit_exports_are_copies(testbed):
    """With the process's snapshot budget spent, new exports copy: the ring still flows."""
    template = testbed.frame(64)
    old = zcap.set_snapshot_limit(4)
    try:
        kept, expected = [], []
        with open_on(testbed, **SMALL_RING) as cap:
            with testbed.sender() as s:
                for i in range(60):
                    assert s.send_sequence(template, 20, first_seq=i * 20) == 20
                    batch = cap.next_batch(timeout=3)
                    assert batch is not None
                    kept.append((memoryview(batch[0]), batch.buffer, batch.offsets[0]))
                    expected.append(bytes(batch[0]))
                    while (more := cap.next(timeout=0.05)) is not None:
                        pass
            stats = cap.stats()
            live = zcap.retained_memory()
        assert stats.dropped == 0 and stats.held == 0
        assert stats.received == stats.delivered == 60 * 20
        # at most the budget plus the units still in the ring were ever snapshotted
        assert live["snapshots"] <= 4 + SMALL_RING["block_count"]
        assert stats.export_copies >= 50 and live["export_copies"] >= 50
        for (view, buf, off), want in zip(kept, expected):
            assert bytes(view) == want == bytes(buf[off:off + len(want)])
        del kept, view, buf, batch, more
        gc.collect()
        assert zcap.retained_memory()["export_copies"] == 0
    finally:
        zcap.set_snapshot_limit(old)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_copy_mode_held_views_cost_about_their_size(testbed):
    """Holding a memoryview per 64-byte packet must not keep its receive buffer's pages."""
    template = testbed.frame(64)
    n = 20000
    with open_on(testbed, mode="copy") as cap:
        views = []
        gc.collect()
        before_rss = _rss()
        before = zcap.retained_memory()["export_copy_bytes"]
        with testbed.sender() as s:
            for first in range(0, n, 500):
                assert s.send_sequence(template, 500, first_seq=first) == 500
                while len(views) < first + 500:
                    pkt = cap.next(timeout=3)
                    assert pkt is not None
                    views.append(memoryview(pkt))
        grown = _rss() - before_rss
        copied = zcap.retained_memory()["export_copy_bytes"] - before
        stats = cap.stats()
    assert stats.dropped == 0 and stats.delivered == n
    assert [seq_of(v) for v in views[:3]] == [0, 1, 2]
    assert bytes(views[-1]) == expected_frame(template, n - 1)
    assert copied == n * 64                       # exactly the bytes held
    # ~0.6 KB per held view with the Packet and memoryview objects; a receive
    # buffer's page per packet would be over 4 KB (80 MB here)
    assert grown < 30 << 20, f"RSS grew {grown >> 20} MB for {n} held 64-byte packets"
    assert stats.retained_bytes == 0


def readme_batch_loop(cap, n):
    """The README's batch example, arrays kept in loop variables."""
    import numpy as np
    got = 0
    for batch in cap.batches():
        buf = np.frombuffer(batch.buffer, np.uint8)
        offsets = np.frombuffer(batch.offsets, np.uint32)
        got += len(offsets)
        assert buf[offsets[0] + 42:offsets[0] + 50].tobytes() is not None
        if got >= n:
            break
    return got


@pytest.mark.parametrize("opts", [MODES[0], MODES[1]])
def test_readme_batch_idiom_copies_nothing(testbed, opts):
    template = testbed.frame(64)
    with open_on(testbed, block_size=1 << 16, block_count=16, **opts) as cap:   # several blocks
        n = min(3000, capacity(cap) // 2)
        with testbed.sender() as s:
            assert s.send_sequence(template, n) == n
        assert readme_batch_loop(cap, n) == n
        stats = cap.stats()
    assert stats.delivered == n and stats.dropped == 0
    assert stats.snapshots == 0 and stats.held == 0
    assert stats.deferred >= stats.blocks - 2     # every unit waited one step for its arrays


@pytest.mark.asyncio
async def test_readme_batch_idiom_copies_nothing_async(testbed):
    import numpy as np
    template = testbed.frame(64)
    with open_on(testbed, block_size=1 << 16, block_count=16) as cap:      # several blocks
        with testbed.sender() as s:
            assert s.send_sequence(template, 3000) == 3000
        got = 0

        async def run():
            nonlocal got
            async for batch in cap.batches():
                buf = np.frombuffer(batch.buffer, np.uint8)
                offsets = np.frombuffer(batch.offsets, np.uint32)
                assert int.from_bytes(buf[offsets[0] + 42:offsets[0] + 50].tobytes(), "big") == got
                got += len(offsets)
                if got >= 3000:
                    break
        await asyncio.wait_for(run(), 10)
        stats = cap.stats()
    assert got == 3000 and stats.snapshots == 0 and stats.deferred >= 1


def test_deferred_unit_is_snapshotted_when_the_ring_runs_short(testbed):
    """A full ring cannot wait for a deferred block: it is snapshotted, nothing is lost."""
    import numpy as np
    template = testbed.frame(64)
    ring = dict(block_size=1 << 16, block_count=8, timeout_ms=10)
    with open_on(testbed, **ring) as cap:
        with testbed.sender() as s:
            # fill the ring about 80%: the kernel holds most blocks
            per_block = (ring["block_size"] - 48) // 152
            sent = per_block * 6
            assert s.send_sequence(template, sent) == sent
            kept = []
            seqs = []
            first = cap.next_batch(timeout=3)
            arr = np.frombuffer(first.buffer, np.uint8)      # pinned for the whole test
            first_offsets = first.offsets.tolist()
            seqs += [seq_of(p) for p in first]
            # the rest, README style, while more traffic keeps the ring busy
            more = 0
            for batch in cap.batches():
                buf = np.frombuffer(batch.buffer, np.uint8)
                offsets = np.frombuffer(batch.offsets, np.uint32)
                seqs += [int.from_bytes(buf[o + 42:o + 50].tobytes(), "big") for o in offsets]
                kept.append(buf)
                if len(seqs) >= sent + more:
                    if more >= per_block * 12:
                        break
                    assert s.send_sequence(template, per_block * 3, first_seq=sent + more) == per_block * 3
                    more += per_block * 3
        stats = cap.stats()
        with pytest.raises(zcap.StaleBatchError):
            first[0]
    assert seqs == list(range(sent + more))
    assert stats.dropped == 0 and stats.held == 0
    assert stats.delivered == stats.received
    assert stats.snapshots >= 1 and stats.deferred >= 1
    assert bytes(arr[first_offsets[0]:first_offsets[0] + 64]) == expected_frame(template, 0)
    for buf in kept[:3]:
        assert len(buf) == ring["block_size"]


def test_kept_packet_in_a_deferred_unit_is_detached_not_recycled(testbed):
    """A packet kept without a view, from a unit deferred for a view, keeps its bytes."""
    template = testbed.frame(200)
    with open_on(testbed, **SMALL_RING) as cap:
        with testbed.sender() as s:
            s.send_sequence(template, 2)
            a = cap.next(timeout=2)
            b = cap.next(timeout=2)
            view = memoryview(a)
            for i in range(40):
                s.send_sequence(template, 100, first_seq=100 * (i + 1))
                for _ in range(100):
                    assert cap.next(timeout=2) is not None
            del view
            for i in range(40, 60):
                s.send_sequence(template, 100, first_seq=100 * (i + 1))
                for _ in range(100):
                    assert cap.next(timeout=2) is not None
        stats = cap.stats()
    assert bytes(a) == expected_frame(template, 0) and bytes(b) == expected_frame(template, 1)
    assert not b.zero_copy and stats.dropped == 0
