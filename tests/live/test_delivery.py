"""Frames sent on one end of a veth pair arrive on the other exactly, in order."""

from __future__ import annotations

import pytest

import zcap
from tests.live.conftest import (
    MODES,
    BackgroundSender,
    collect,
    collect_until_idle,
    expected_frame,
    open_on,
    seq_of,
)


@pytest.mark.parametrize("opts", MODES)
@pytest.mark.parametrize("size", [60, 64, 1514])
def test_exact_in_order_delivery(testbed, opts, size):
    template = testbed.frame(size)
    count = 3000
    with open_on(testbed, **opts) as cap:
        sender = BackgroundSender(testbed, template, count, pps=100_000)
        sender.start()
        got = collect(cap, count, keep=lambda p: (bytes(p), p.caplen, p.wirelen, p.ts_ns,
                                                  p.ifindex, p.direction, p.vlan, p.truncated))
        sent = sender.join_checked()
        extra = collect_until_idle(cap, idle=0.2)
        stats = cap.stats()
    assert sent == count
    assert extra == []
    assert len(got) == count
    ifindex = testbed.ifindex(testbed.b)
    last_ts = 0
    for seq, (data, caplen, wirelen, ts, idx, direction, vlan, truncated) in enumerate(got):
        assert data == expected_frame(template, seq)
        assert caplen == wirelen == size
        assert idx == ifindex and direction == zcap.Direction.IN
        assert vlan is None and not truncated
        assert ts >= last_ts
        last_ts = ts
    assert stats.received == count and stats.dropped == 0
    assert stats.delivered == count
    assert stats.generation_gaps == 0 and stats.corrupt_blocks == 0


@pytest.mark.parametrize("opts", MODES)
def test_jumbo_frames(jumbo_testbed, opts):
    tb = jumbo_testbed
    template = tb.frame(9014)
    with open_on(tb, **opts) as cap:
        with tb.sender() as s:
            sent = s.send_sequence(template, 50)
        got = collect(cap, 50)
    assert sent == 50
    assert got == [expected_frame(template, i) for i in range(50)]


@pytest.mark.parametrize("opts", MODES)
def test_snaplen_truncates_in_the_kernel(testbed, opts):
    template = testbed.frame(1500)
    with open_on(testbed, snaplen=100, **opts) as cap:
        with testbed.sender() as s:
            s.send_sequence(template, 20)
        got = collect(cap, 20, keep=lambda p: (bytes(p), p.caplen, p.wirelen, p.truncated))
    assert len(got) == 20
    for seq, (data, caplen, wirelen, truncated) in enumerate(got):
        assert data == expected_frame(template, seq)[:100]
        assert (caplen, wirelen, truncated) == (100, 1500, True)


def test_timestamps_are_wall_clock_nanoseconds(testbed):
    import time
    template = testbed.frame(64)
    with open_on(testbed) as cap:
        before = time.time_ns()
        with testbed.sender() as s:
            s.send_sequence(template, 5)
        after = time.time_ns()
        got = collect(cap, 5, keep=lambda p: p.ts_ns)
    assert len(got) == 5
    assert all(before <= t <= after for t in got)
    assert got == sorted(got)


def test_batches_cover_every_packet_once(testbed):
    import numpy as np
    template = testbed.frame(64)
    count = 20000
    with open_on(testbed, block_size=1 << 16, block_count=64) as cap:
        with testbed.sender() as s:
            assert s.send_sequence(template, count) == count
        seqs = []
        while len(seqs) < count:
            batch = cap.next_batch(timeout=2)
            assert batch is not None, f"only {len(seqs)} of {count} packets arrived"
            buf = np.frombuffer(batch.buffer, np.uint8)
            offsets = np.frombuffer(batch.offsets, np.uint32)
            caplen = np.frombuffer(batch.caplen, np.uint32)
            wirelen = np.frombuffer(batch.wirelen, np.uint32)
            ts = np.frombuffer(batch.ts_ns, np.int64)
            assert len(batch) == len(offsets) == len(caplen) == len(wirelen) == len(ts)
            assert (caplen == 64).all() and (wirelen == 64).all()
            assert (np.diff(ts) >= 0).all()
            idx = offsets[:, None].astype(np.int64) + 42 + np.arange(8)
            seqs.extend(buf[idx].copy().view(">u8").ravel().tolist())
            # the columns and the packets agree
            first = batch[0]
            assert bytes(first) == bytes(buf[offsets[0]:offsets[0] + caplen[0]])
            assert first.ts_ns == ts[0]
        stats = cap.stats()
    assert seqs == list(range(count))
    assert stats.dropped == 0 and stats.generation_gaps == 0
    assert stats.blocks > 10        # the traffic really spanned many blocks


def test_sync_iteration_stops_after_breakloop(testbed):
    import threading
    with open_on(testbed) as cap:
        timer = threading.Timer(0.2, cap.breakloop)
        timer.start()
        got = list(cap)                 # blocks until breakloop()
        timer.join()
    assert got == []


def test_next_timeout_returns_none_on_an_idle_link(testbed):
    import time
    with open_on(testbed) as cap:
        t0 = time.monotonic()
        assert cap.next(timeout=0.2) is None
        waited = time.monotonic() - t0
        assert cap.next(timeout=0) is None
        stats = cap.stats()
    assert waited >= 0.19
    assert stats.polls >= 1 and stats.received == 0


def test_breakloop_takes_effect_at_the_next_packet_and_loses_nothing(testbed):
    template = testbed.frame(64)
    with open_on(testbed) as cap:
        with testbed.sender() as s:
            s.send_sequence(template, 100)
        got = []
        for pkt in cap:
            got.append(seq_of(pkt))
            if len(got) == 10:
                cap.breakloop()
        assert got == list(range(10))
        rest = collect(cap, 90, keep=seq_of)
    assert rest == list(range(10, 100))
