"""Tagged traffic through batches with the default options (VLAN tags reinserted).

A ring-mode batch is lazy: its block is walked when it is read, once per way of
reading it (iterating, columns, field(), headers(), buffer exports).  The walk
puts the outer 802.1Q / 802.1ad tag back into the bytes, in place, and records
that in the packet's ring header, so every later walk sees the same packet: the
wire bytes, whatever the order and however often a batch is read.  The same
reads must give the same bytes in immediate and copy mode (no lazy batches
there) and from `for pkt in cap`.  And the README's batch idiom on tagged
traffic defers blocks instead of copying them, sync and async.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

import zcap
from tests.live.conftest import MODES, capacity, collect, open_on
from zcap import _headers
from zcap.testbed import SEQ_OFFSET

DOT1Q, DOT1AD = 0x8100, 0x88A8

# (tags outermost first, frame size): the outer tag is the one the veth strips
KINDS = [
    ([(DOT1Q, (5 << 13) | 100)], 64),                          # 802.1Q, PCP 5
    ([(DOT1AD, (3 << 13) | 200), (DOT1Q, 300)], 90),           # QinQ, 802.1ad outer
    ([(DOT1Q, (6 << 13) | (1 << 12) | 0)], 70),                # priority tag: VID 0, DEI
    ([(DOT1Q, 10), (DOT1Q, 20)], 120),                         # double 802.1Q
    ([], 64),                                                  # untagged
]


def tagged_round(tb, count: int, first_seq: int) -> list[bytes]:
    """`count` distinct frames (each numbered), cycling through KINDS."""
    return [tb.frame(KINDS[i % len(KINDS)][1], seq=first_seq + i, vlan_tags=KINDS[i % len(KINDS)][0])
            for i in range(count)]


def send(tb, frames) -> None:
    with tb.sender() as s:
        assert s.send_all(frames) == len(frames)


# -- the ways to read a batch: each returns what it saw, per packet ------------

def read_iter(batch, keep):
    pkts = list(batch)
    keep += pkts                                   # checked again after every other read
    return [bytes(p) for p in pkts]


def read_columns(batch, keep):
    buf = bytes(batch.buffer)
    return [buf[o:o + c] for o, c in zip(batch.offsets.tolist(), batch.caplen.tolist(), strict=True)]


def read_getitem(batch, keep):
    return [bytes(batch[i]) for i in range(len(batch))]


def read_field(batch, keep):
    # the first 64 bytes of every packet (the smallest frame), gathered in C,
    # plus the TPID / ethertype at offset 12 on its own
    head = np.asarray(batch.field(0, "64B"))
    tpid = np.asarray(batch.field(12, ">u2")).tolist()
    assert tpid == [int.from_bytes(row[12:14].tobytes(), "big") for row in head]
    return [row.tobytes() for row in head]


def read_buffer_first(batch, keep):
    """Export the buffer before anything walked the batch; read it after iterating."""
    view = np.frombuffer(batch.buffer, np.uint8)
    iterated = [bytes(p) for p in batch]
    offsets, caplen = batch.offsets.tolist(), batch.caplen.tolist()
    assert [view[o:o + c].tobytes() for o, c in zip(offsets, caplen, strict=True)] == iterated
    return iterated


READERS = {"iter": read_iter, "columns": read_columns, "getitem": read_getitem,
           "field": read_field, "buffer-first": read_buffer_first}

ORDERS = {
    "iterate-twice-then-columns-field": ("iter", "iter", "columns", "field", "getitem"),
    "columns-then-iterate": ("columns", "iter", "field", "iter"),
    "field-then-iterate": ("field", "iter", "columns", "iter"),
    "buffer-export-first": ("buffer-first", "iter", "columns"),
}


def read_batch(batch, order) -> list[bytes]:
    """Read one batch in `order`; every read must see the same packets."""
    keep: list = []
    seen = [READERS[name](batch, keep) for name in order]
    full = seen[order.index("iter")]
    for name, got in zip(order, seen, strict=True):
        want = [p[:64] for p in full] if name == "field" else full
        assert got == want, f"{name} disagrees with iteration"
    # packets taken by the first iteration still show the same bytes and tag metadata
    assert [bytes(p) for p in keep[:len(full)]] == full
    for p in keep:
        assert p.vlan_inserted == (p.vlan is not None)
    return full


def check_headers(batch, expected: list[bytes]) -> None:
    """batch.headers() parses the wire bytes: both tags where they were sent."""
    joined = b"".join(expected)
    offsets = np.cumsum([0] + [len(f) for f in expected[:-1]]).astype(np.uint32)
    caplen = np.array([len(f) for f in expected], np.uint32)
    want = _headers.parse(joined, offsets, caplen)
    got = batch.headers()
    for col in ("ethertype", "vlan_outer", "vlan_inner", "sport", "l3_offset", "payload_offset"):
        assert np.asarray(got.column(col)).tolist() == np.asarray(want.column(col)).tolist(), col


@pytest.mark.parametrize("opts", MODES)
def test_tagged_batches_read_any_way_give_the_wire_bytes(testbed, opts):
    rounds = len(ORDERS) + 1
    n = 40
    with open_on(testbed, **opts) as cap:
        # `for pkt in cap`: the reference
        frames = tagged_round(testbed, n, 0)
        send(testbed, frames)
        assert collect(cap, n) == frames
        batches = 0
        for r, order in enumerate(ORDERS.values(), start=1):
            frames = tagged_round(testbed, n, r * n)
            send(testbed, frames)
            got: list[bytes] = []
            while len(got) < n:
                batch = cap.next_batch(timeout=5)
                assert batch is not None, f"{len(got)} of {n} packets arrived"
                batches += 1
                part = read_batch(batch, order)
                check_headers(batch, frames[len(got):len(got) + len(part)])
                got += part
            assert got == frames, order
        stats = cap.stats()
    assert stats.delivered == rounds * n and stats.dropped == 0
    # ring mode reads every block lazily; the others parse every unit into a table
    assert stats.lazy_batches == (batches if cap.mode == "ring" else 0)


def test_default_capture_uses_lazy_batches(testbed):
    """open_live(iface) with nothing else: every batch is lazy, tags reinserted."""
    with zcap.open_live(testbed.b, netns=testbed.netns) as cap:
        frames = tagged_round(testbed, 50, 0)
        send(testbed, frames)
        got, batches = [], 0
        for batch in cap.batches():
            batches += 1
            got += [bytes(p) for p in batch]
            if len(got) >= len(frames):
                break
        stats = cap.stats()
    assert got == frames
    assert stats.lazy_batches == batches >= 1


def test_async_batches_of_tagged_traffic(testbed):
    """`async for batch in cap.batches()`: iterate twice, then columns."""
    n = 60
    with open_on(testbed) as cap:
        frames = tagged_round(testbed, n, 0)
        send(testbed, frames)

        async def read() -> list[bytes]:
            got: list[bytes] = []
            async for batch in cap.batches():
                got += read_batch(batch, ("iter", "iter", "columns", "field"))
                if len(got) >= n:
                    break
            return got

        assert asyncio.run(asyncio.wait_for(read(), 10)) == frames
        stats = cap.stats()
    assert stats.lazy_batches >= 1


# -- the README idiom on tagged traffic: deferred, never copied ------------------

TEMPLATE_TAGS = [(DOT1AD, (3 << 13) | 200), (DOT1Q, 300)]
SEQ_AT = SEQ_OFFSET + 4 * len(TEMPLATE_TAGS)    # both tags are in the delivered bytes


def readme_seqs(batch, buf, offsets) -> list[int]:
    return [int.from_bytes(buf[o + SEQ_AT:o + SEQ_AT + 8].tobytes(), "big") for o in offsets]


@pytest.mark.parametrize("opts", [MODES[0], MODES[1]])
def test_readme_idiom_on_tagged_traffic_copies_nothing(testbed, opts):
    template = testbed.frame(96, vlan_tags=TEMPLATE_TAGS)
    with open_on(testbed, block_size=1 << 16, block_count=16, **opts) as cap:   # several blocks
        n = min(3000, capacity(cap, len(template)) // 2)
        with testbed.sender() as s:
            assert s.send_sequence(template, n, seq_offset=SEQ_AT) == n
        seqs = []
        for batch in cap.batches():
            buf = np.frombuffer(batch.buffer, np.uint8)
            offsets = np.frombuffer(batch.offsets, np.uint32)
            seqs += readme_seqs(batch, buf, offsets)
            assert buf[offsets[0]:offsets[0] + 16].tobytes() == template[:16]   # the outer tag is back
            if len(seqs) >= n:
                break
        stats = cap.stats()
    assert seqs == list(range(n))
    assert stats.delivered == n and stats.dropped == 0
    assert stats.snapshots == 0 and stats.held == 0
    assert stats.deferred >= stats.blocks - 2      # every unit waited one step for its arrays


def test_readme_idiom_on_tagged_traffic_copies_nothing_async(testbed):
    template = testbed.frame(96, vlan_tags=TEMPLATE_TAGS)
    with open_on(testbed, block_size=1 << 16, block_count=16) as cap:
        n = min(3000, capacity(cap, len(template)) // 2)
        with testbed.sender() as s:
            assert s.send_sequence(template, n, seq_offset=SEQ_AT) == n
        seqs: list[int] = []

        async def run():
            async for batch in cap.batches():
                buf = np.frombuffer(batch.buffer, np.uint8)
                offsets = np.frombuffer(batch.offsets, np.uint32)
                seqs.extend(readme_seqs(batch, buf, offsets))
                assert buf[offsets[0]:offsets[0] + 16].tobytes() == template[:16]
                if len(seqs) >= n:
                    break

        asyncio.run(asyncio.wait_for(run(), 10))
        stats = cap.stats()
    assert seqs == list(range(n))
    assert stats.snapshots == 0 and stats.deferred >= 1 and stats.dropped == 0


def test_readme_idiom_on_tagged_traffic_under_continuous_load(testbed):
    """Traffic keeps arriving while the README loop runs: still no snapshot, nothing lost."""
    template = testbed.frame(96, vlan_tags=TEMPLATE_TAGS)
    ring = dict(block_size=1 << 16, block_count=16, timeout_ms=10)
    with open_on(testbed, **ring) as cap:
        chunk = capacity(cap, len(template)) // 4        # a quarter of the ring at a time
        rounds = 6
        seqs: list[int] = []
        batches = 0
        with testbed.sender() as s:
            assert s.send_sequence(template, chunk, seq_offset=SEQ_AT) == chunk
            sent = chunk
            for batch in cap.batches():
                batches += 1
                buf = np.frombuffer(batch.buffer, np.uint8)
                offsets = np.frombuffer(batch.offsets, np.uint32)
                seqs += readme_seqs(batch, buf, offsets)
                if len(seqs) >= sent:
                    if sent >= chunk * rounds:
                        break
                    assert s.send_sequence(template, chunk, first_seq=sent, seq_offset=SEQ_AT) == chunk
                    sent += chunk
        stats = cap.stats()
    assert seqs == list(range(chunk * rounds))
    assert stats.dropped == 0 and stats.snapshots == 0 and stats.held == 0
    assert stats.lazy_batches == batches


def test_buffer_exported_as_a_copy_holds_the_reinserted_tags(testbed):
    """With the snapshot budget spent, batch.buffer is a copy taken at export:
    a lazy batch is walked (tags put back) first, so the copy matches `offsets`."""
    old = zcap.set_snapshot_limit(0)
    try:
        with open_on(testbed) as cap:
            frames = tagged_round(testbed, 30, 0)
            send(testbed, frames)
            got: list[bytes] = []
            while len(got) < len(frames):
                batch = cap.next_batch(timeout=5)
                assert batch is not None
                buf = batch.buffer                        # before anything walked the batch
                offsets, caplen = batch.offsets.tolist(), batch.caplen.tolist()
                got += [bytes(buf[o:o + c]) for o, c in zip(offsets, caplen, strict=True)]
                assert got[-len(offsets):] == [bytes(p) for p in batch]
                del buf
            stats = cap.stats()
        assert got == frames
        assert stats.export_copies >= 1 and stats.lazy_batches >= 1
    finally:
        zcap.set_snapshot_limit(old)
