"""Zero-copy packets never stall the ring and never show recycled bytes."""

from __future__ import annotations

import gc
import os
import threading
import time

import pytest

import zcap
from tests.live.conftest import (
    MODES,
    SMALL_RING,
    BackgroundSender,
    capacity,
    collect,
    expected_frame,
    open_on,
    seq_of,
    wait_for,
)


def push_through(cap, tb, template, total, *, first_seq=1):
    """Send `total` frames in chunks the consumer drains as they come; return the seqs seen.

    Each chunk is 40% of what the capture can queue, so nothing is dropped
    however slow the consumer is, while the ring still wraps many times.
    """
    chunk = max(1, capacity(cap, len(template)) * 4 // 10)
    seen = []
    with tb.sender() as s:
        seq = first_seq
        while seq < first_seq + total:
            n = min(chunk, first_seq + total - seq)
            assert s.send_sequence(template, n, first_seq=seq) == n
            seen += collect(cap, n, timeout=2, keep=seq_of)
            seq += n
    return seen


@pytest.mark.parametrize("opts", MODES)
def test_ring_wraps_many_times_without_loss(testbed, opts):
    template = testbed.frame(64)
    with open_on(testbed, **SMALL_RING, **opts) as cap:
        total = capacity(cap) * 10
        seen = push_through(cap, testbed, template, total)
        stats = cap.stats()
    assert seen == list(range(1, total + 1))
    assert stats.dropped == 0 and stats.generation_gaps == 0
    if opts.get("mode") == "ring" and not opts.get("immediate"):
        assert stats.blocks >= 10 * 4          # every block was reused ten times


@pytest.mark.parametrize("opts", MODES)
def test_kept_packet_keeps_its_bytes_across_wraps(testbed, opts):
    template = testbed.frame(200)
    with open_on(testbed, **SMALL_RING, **opts) as cap:
        with testbed.sender() as s:
            s.send_sequence(template, 1, first_seq=0)
        kept = cap.next(timeout=2)
        assert kept is not None and kept.zero_copy
        original = bytes(kept)
        total = capacity(cap, 200) * 10
        seen = push_through(cap, testbed, template, total)
        stats = cap.stats()
        assert not kept.zero_copy                     # it was detached, not pinned
    assert original == expected_frame(template, 0)
    assert bytes(kept) == original and seq_of(kept) == 0
    assert len(seen) == total and stats.dropped == 0
    assert stats.detached >= 1 and stats.held == 0


@pytest.mark.parametrize("opts", MODES)
def test_memoryview_outliving_its_block_never_sees_new_data(testbed, opts):
    """A raw buffer export cannot be moved: the block's pages are swapped instead."""
    template = testbed.frame(200)
    with open_on(testbed, **SMALL_RING, **opts) as cap:
        with testbed.sender() as s:
            s.send_sequence(template, 1, first_seq=0)
        pkt = cap.next(timeout=2)
        view = memoryview(pkt)
        del pkt
        total = capacity(cap, 200) * 10
        seen = push_through(cap, testbed, template, total)
        stats = cap.stats()
        assert bytes(view) == expected_frame(template, 0)
    assert seen == list(range(1, total + 1))
    # the ring never stalled behind the pinned block
    assert stats.dropped == 0 and stats.held == 0
    if opts.get("mode") == "copy":
        # copy mode exports a copy of the packet's own bytes: nothing is pinned
        assert stats.snapshots == 0 and zcap.retained_memory()["export_copies"] >= 1
    else:
        assert stats.snapshots >= 1
    view.release()


def test_batch_buffer_kept_as_numpy_array_stays_intact(testbed):
    import numpy as np
    template = testbed.frame(64)
    with open_on(testbed, **SMALL_RING) as cap:
        with testbed.sender() as s:
            s.send_sequence(template, 100, first_seq=0)
        batch = cap.next_batch(timeout=2)
        arr = np.frombuffer(batch.buffer, np.uint8)
        offsets = np.frombuffer(batch.offsets, np.uint32).copy()
        first = bytes(arr[offsets[0]:offsets[0] + 64])
        n = len(batch)
        total = capacity(cap) * 10
        seen = push_through(cap, testbed, template, total, first_seq=1000)
        stats = cap.stats()
        assert bytes(arr[offsets[0]:offsets[0] + 64]) == first == expected_frame(template, 0)
        last = bytes(arr[offsets[n - 1]:offsets[n - 1] + 64])
        assert last == expected_frame(template, n - 1)
    assert len(seen) == total and stats.dropped == 0 and stats.snapshots >= 1


def test_stale_batch_raises_instead_of_showing_new_bytes(testbed):
    template = testbed.frame(64)
    with open_on(testbed, **SMALL_RING) as cap:
        with testbed.sender() as s:
            s.send_sequence(template, 1000, first_seq=0)
        first = cap.next_batch(timeout=2)
        taken = first[0]
        n = len(first)
        second = cap.next_batch(timeout=2)
        assert second is not None and second.valid
        assert not first.valid
        with pytest.raises(zcap.StaleBatchError):
            first[0]
        with pytest.raises(zcap.StaleBatchError):
            list(first)
        with pytest.raises(zcap.StaleBatchError):
            _ = first.offsets
        with pytest.raises(zcap.StaleBatchError):
            memoryview(first)
        assert len(first) == n                     # the size is still known
        assert bytes(taken) == expected_frame(template, 0)
        assert second.generation == first.generation + 1


def test_close_with_packets_and_views_still_referenced(testbed):
    template = testbed.frame(128)
    cap = open_on(testbed, **SMALL_RING)
    with testbed.sender() as s:
        s.send_sequence(template, 10, first_seq=0)
    packets = collect(cap, 5, keep=lambda p: p)
    view = memoryview(packets[4])
    batch = cap.next_batch(timeout=2)
    batch_view = batch.buffer
    cap.close()
    cap.close()                                      # idempotent
    assert cap.closed
    for i, p in enumerate(packets):
        assert bytes(p) == expected_frame(template, i)
    assert bytes(view) == expected_frame(template, 4)
    assert len(batch_view) > 0
    with pytest.raises(zcap.StaleBatchError):
        batch[0]
    assert cap.next(timeout=0) is None
    assert list(cap) == []
    with pytest.raises(zcap.CaptureClosedError):
        cap.fileno()
    del view, batch_view, batch
    gc.collect()


@pytest.mark.parametrize("opts", MODES)
def test_close_from_another_thread_while_iterating(testbed, opts):
    template = testbed.frame(64)
    cap = open_on(testbed, **opts)
    kept, errors = [], []

    def reader():
        try:
            for pkt in cap:
                kept.append(pkt)
        except BaseException as exc:
            errors.append(exc)

    sender = BackgroundSender(testbed, template, 200_000, pps=200_000)
    thread = threading.Thread(target=reader)
    thread.start()
    sender.start()
    assert wait_for(lambda: len(kept) > 1000, timeout=10)
    cap.close()
    thread.join(5)
    assert not thread.is_alive(), "the reader did not end after close()"
    sender.join_checked()
    assert errors == []
    # every packet the reader kept shows its own bytes, in order
    seqs = [seq_of(p) for p in kept]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for p in kept[:: max(1, len(kept) // 200)]:
        assert bytes(p) == expected_frame(template, seq_of(p))


def test_close_wakes_a_reader_blocked_on_an_idle_link(testbed):
    cap = open_on(testbed)
    result = []
    thread = threading.Thread(target=lambda: result.append(list(cap)))
    thread.start()
    time.sleep(0.2)
    cap.close()
    thread.join(2)
    assert not thread.is_alive() and result == [[]]


def test_one_reader_per_capture(testbed):
    cap = open_on(testbed)
    thread = threading.Thread(target=lambda: cap.next(timeout=1.0))
    thread.start()
    time.sleep(0.1)
    with pytest.raises(RuntimeError, match="another thread; use one reader per capture"):
        cap.next(timeout=0)
    thread.join()
    cap.close()


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def _mapping_count() -> int:
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


def test_open_close_cycles_leak_no_fd_and_no_mapping(testbed):
    # The counts are compared exactly, so a leak of one fd or one mapping per open
    # shows after any number of cycles: 200 (10 of them through the detach and
    # snapshot paths; it was 1000, ~45 s on a loaded machine).  One cycle of each
    # kind runs before the counts are taken: the first ones map what the process
    # keeps (the sender's thread, allocator arenas), 5 mappings when this test ran
    # first in its process.
    template = testbed.frame(64)

    def cycle(detach: bool) -> None:
        with zcap.open_live(testbed.b, netns=testbed.netns, block_size=4096 * 4,
                            block_count=2) as cap:
            if detach:
                # exercise the detach and snapshot paths too
                with testbed.sender() as s:
                    s.send_sequence(template, 3)
                pkt = cap.next(timeout=1)
                view = memoryview(pkt)
                cap.next(timeout=1)
                cap.next_batch(timeout=0.1)
        if detach:
            assert bytes(view) == expected_frame(template, 0)
            view.release()

    cycle(True)
    cycle(False)
    gc.collect()
    fds, maps = _fd_count(), _mapping_count()
    for i in range(200):
        cycle(i % 20 == 0)
    gc.collect()
    assert _fd_count() == fds
    assert _mapping_count() == maps


def test_packet_objects_behave_like_read_only_bytes(testbed):
    import pickle
    template = testbed.frame(100)
    with open_on(testbed) as cap:
        with testbed.sender() as s:
            s.send_sequence(template, 1, first_seq=7)
        pkt = cap.next(timeout=2)
        frame = expected_frame(template, 7)
        assert len(pkt) == 100 and bytes(pkt) == frame
        assert pkt[0] == frame[0] and pkt[-1] == frame[-1] and pkt[10:20] == frame[10:20]
        with pytest.raises(IndexError):
            pkt[100]
        view = memoryview(pkt)
        assert view.readonly and view.format == "B" and view.nbytes == 100
        with pytest.raises(TypeError):
            view[0] = 1
        mutable = bytearray(pkt)                  # copying out is the way to edit
        mutable[0] ^= 0xFF
        assert bytes(pkt) == frame
        copy = pkt.copy()
        assert bytes(copy) == frame and not copy.zero_copy and copy.ts_ns == pkt.ts_ns
        assert "len=100/100" in repr(pkt) and " in" in repr(pkt)
        with pytest.raises(TypeError):
            pickle.dumps(pkt)
        view.release()
