"""Ring-level guarantees: corrupt units are skipped, never read; rxhash; generations."""

from __future__ import annotations

import ctypes
import time

import pytest

import zcap
from tests.live.conftest import collect, open_on


def test_corrupt_block_in_the_live_ring_is_skipped_not_read(testbed):
    np = pytest.importorskip("numpy")
    template = testbed.frame(64)
    with open_on(testbed, block_size=1 << 16, block_count=8) as cap:
        with testbed.sender() as s:
            s.send_sequence(template, 1500)          # fills about 3.5 blocks
        time.sleep(0.1)                              # the last one retires too
        first = cap.next_batch(timeout=2)
        base = np.frombuffer(first.buffer, np.uint8).ctypes.data
        second = base + cap.geometry.block_size      # handed over, not yet read
        assert ctypes.c_uint32.from_address(second + 8).value & 1          # TP_STATUS_USER
        first_pkt = ctypes.c_uint32.from_address(second + 16).value
        ctypes.c_uint16.from_address(second + first_pkt + 24).value = 10   # tp_mac into the header
        with pytest.raises(zcap.RingCorruptionError, match="tp_mac"):
            bad = cap.next_batch(timeout=2)
            list(bad)           # a lazy batch is walked, and checked, as it is read
        third = cap.next_batch(timeout=2)
        assert third is not None and third.generation == first.generation + 2
        assert all(bytes(p)[:42] == template[:42] for p in third)
        stats = cap.stats()
    assert stats.corrupt_blocks == 1 and stats.generation_gaps == 0


def test_rxhash_is_filled_on_request(testbed):
    flows = [testbed.frame(64, sport=1000 + i) for i in range(4)]
    with open_on(testbed, rxhash=True) as cap:
        with testbed.sender() as s:
            s.send_all(flows * 3)
        hashes = collect(cap, 12, keep=lambda p: p.rxhash)
    assert len(hashes) == 12 and all(hashes)
    assert hashes[:4] == hashes[4:8] == hashes[8:]     # same flow, same hash
    assert len(set(hashes[:4])) > 1
    with open_on(testbed) as cap:
        with testbed.sender() as s:
            s.send_all(flows)
        assert collect(cap, 4, keep=lambda p: p.rxhash) == [0, 0, 0, 0]


def test_generations_advance_by_one_per_block(testbed):
    template = testbed.frame(1000)
    with open_on(testbed, block_size=1 << 16, block_count=4) as cap:
        gens = []
        with testbed.sender() as s:
            for _ in range(10):                      # 10 rounds of ~2.5 blocks: wraps often
                s.send_sequence(template, 150)
                time.sleep(0.03)
                while (batch := cap.next_batch(timeout=0.1)) is not None:
                    gens.append(batch.generation)
        stats = cap.stats()
    assert gens == list(range(gens[0], gens[0] + len(gens)))
    assert len(gens) > 8 and stats.generation_gaps == 0 and stats.dropped == 0
