"""batch.field(offset, dtype, *, default=0): one field of every packet in one C loop,
and lazy batches (walked without a table) that agree with their table."""

from __future__ import annotations

import struct

import numpy as np
import pytest

import zcap
from tests.live.conftest import MODES, open_on, seq_of
from zcap.testbed import SEQ_OFFSET, udp_frame


def send_mixed(testbed, count=200):
    """Numbered frames of varying length, some too short for a field at offset 100."""
    with testbed.sender() as s:
        for i in range(count):
            frame = testbed.frame(64 if i % 3 else 150, seq=i)
            assert s.send_sequence(frame, 1, first_seq=i) == 1


def expected_columns(pkts):
    return {
        ">u8": [struct.unpack_from("!Q", p, SEQ_OFFSET)[0] for p in pkts],
        "<u8": [struct.unpack_from("<Q", p, SEQ_OFFSET)[0] for p in pkts],
        ">u2": [struct.unpack_from("!H", p, 12)[0] for p in pkts],
        "u1": [p[23] for p in pkts],
        "<i4": [struct.unpack_from("<i", p, 26)[0] for p in pkts],
        "4B": [list(p[26:30]) for p in pkts],
        "far": [struct.unpack_from("!I", p, 100)[0] if len(p) >= 104 else 7 for p in pkts],
    }


def check_field(batch, pkts):
    want = expected_columns(pkts)
    for dtype in (">u8", "<u8", ">u2", "u1", "<i4"):
        got = batch.field(SEQ_OFFSET if dtype[1:] == "u8" else
                          {">u2": 12, "u1": 23, "<i4": 26}[dtype], dtype)
        arr = np.asarray(got)
        assert arr.shape == (len(pkts),) and arr.tolist() == want[dtype], dtype
        assert arr.dtype == np.dtype(dtype).newbyteorder("=")
    raw = np.asarray(batch.field(26, "4B"))
    assert raw.shape == (len(pkts), 4) and raw.dtype == np.uint8 and raw.tolist() == want["4B"]
    assert np.asarray(batch.field(26, np.dtype("4B"))).tolist() == want["4B"]
    assert np.asarray(batch.field(100, ">u4", default=7)).tolist() == want["far"]
    view = batch.field(SEQ_OFFSET, ">u8")
    assert np.shares_memory(np.asarray(view), np.asarray(view))   # np.asarray makes no copy
    assert np.asarray(view).base is not None


@pytest.mark.parametrize("opts", MODES)
def test_field_gathers_every_packet(testbed, opts):
    with open_on(testbed, **opts) as cap:
        send_mixed(testbed)
        seen = 0
        while seen < 200:
            batch = cap.next_batch(timeout=3)
            assert batch is not None
            pkts = [bytes(p) for p in batch]
            check_field(batch, pkts)
            seen += len(pkts)
        stats = cap.stats()
    assert stats.delivered == stats.received == 200


def test_field_on_a_filtered_ring_batch_with_a_table(testbed):
    """A ring batch whose walk can skip packets builds its table first; field() agrees."""
    with open_on(testbed, filter="udp", direction="in") as cap:
        send_mixed(testbed, 60)
        batch = cap.next_batch(timeout=3)
        pkts = [bytes(p) for p in batch]
        check_field(batch, pkts)


def test_field_rejects_what_it_cannot_gather(testbed):
    with open_on(testbed) as cap:
        send_mixed(testbed, 5)
        batch = cap.next_batch(timeout=3)
        for bad in ("u3", "<c16", "U4", "O"):
            with pytest.raises(ValueError, match="unsupported field dtype"):
                batch.field(0, bad)
        with pytest.raises(ValueError):
            batch.field(-1, "u1")
        with pytest.raises(ValueError, match="does not fit"):
            batch.field(0, "u1", default=300)
        assert bytes(batch.field(0, "u1", default=255)) is not None
        cap.next_batch(timeout=0.2)
        with pytest.raises(zcap.StaleBatchError):
            batch.field(0, "u1")


def test_field_on_offline_batches(tmp_path):
    out = tmp_path / "mixed.pcap"
    frames = [udp_frame(64 if i % 3 else 150, seq=i) for i in range(300)]
    with zcap.open_writer(str(out), linktype=1) as w:
        for i, f in enumerate(frames):
            w.write_raw(f, i, len(f))
    with zcap.open_offline(str(out), chunk_size=4096) as src:
        seen = []
        for batch in src.batches():
            pkts = [bytes(p) for p in batch]
            check_field(batch, pkts)
            seen += pkts
    assert seen == frames


def test_lazy_batch_agrees_with_its_table(testbed):
    """Iterating (no table), then indexing and columns (table built), then iterating again."""
    with open_on(testbed) as cap:
        send_mixed(testbed, 120)
        got = []
        while len(got) < 120:
            batch = cap.next_batch(timeout=3)
            first = [seq_of(p) for p in batch]
            assert len(first) == len(batch)
            offsets = np.frombuffer(batch.offsets, np.uint32)
            caplen = np.frombuffer(batch.caplen, np.uint32)
            buf = np.frombuffer(batch.buffer, np.uint8)
            for i, p in enumerate(batch):
                assert seq_of(batch[i]) == seq_of(p) == first[i]
                assert bytes(buf[offsets[i]:offsets[i] + caplen[i]]) == bytes(p)
            got += first
            del offsets, caplen, buf
    assert got == list(range(120))
