"""Ring.consume()'s walk of a block (zcap/_plainwalk.pxi: _v3_consume) on
crafted and fuzzed block images.

zcap._ring.consume_v3_block runs exactly the code Ring.consume() runs on a
block, with a C callback that records what it is passed, under budgets and
callback stops that fall anywhere: the plain walk (prefetching headers ahead)
and the general walker must pass the same packets, stop at the same
malformed packet with the same error, and agree with the table walk
(parse_v3_block); nothing may be read outside the block.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import zcap
from tests.unit.blocks import Pkt, make_block
from tests.unit.test_block_walker import ETH, _check_result, _corrupt, fuzz
from zcap._ring import consume_v3_block, parse_v3_block

# A loopback index no packet has makes the walk general without changing
# what it delivers (as in test_block_walker.py).
GENERAL = {"lo_ifindex": 0x7FFFFFFE}


def _consume(blk: bytes, **opts):
    """What the callback saw, or (what it saw before, the error message)."""
    try:
        return consume_v3_block(blk, **opts)
    except zcap.RingCorruptionError as exc:
        return str(exc)


def _both(blk: bytes, **opts):
    return _consume(blk, **opts), _consume(blk, **opts, **GENERAL)


def _table(blk: bytes, **opts):
    return [entry[:5] for entry in parse_v3_block(blk, **opts)]


@pytest.mark.parametrize("budget", [1, 2, 3, 7, 1 << 30])
@pytest.mark.parametrize("stop_every", [0, 1, 4])
def test_budgets_and_stops_anywhere_deliver_every_packet_once(budget, stop_every):
    pkts = [Pkt(ETH[: 20 + 3 * (i % 7)], nsec=i, wirelen=200 + i) for i in range(40)]
    blk = bytes(make_block(pkts, size=8192))
    plain, general = _both(blk, budget=budget, stop_every=stop_every)
    assert plain == general == _table(blk)
    assert [p[4] for p in plain] == [p.data for p in pkts]
    assert [p[3] % 10**9 for p in plain] == list(range(40))


def test_tagged_packets_go_to_the_general_walker_in_any_order():
    frame = bytes(range(12)) + b"\x08\x00" + bytes(50)
    pkts = [Pkt(frame, status=1 << 4, vlan_tci=100 + i) if i % 3 == 1 else Pkt(frame, nsec=i)
            for i in range(12)]
    blk = bytes(make_block(pkts, reserve=4))
    opts = {"reinsert_vlan": True, "vlan_offset": 12, "snaplen": 60}
    for budget, stop_every in [(1 << 30, 0), (1, 0), (2, 3), (5, 2)]:
        plain, general = _both(blk, budget=budget, stop_every=stop_every, **opts)
        assert plain == general == _table(blk, **opts)
    tagged = consume_v3_block(blk, **opts)[1][4]
    assert tagged[12:16] == b"\x81\x00\x00\x65" and len(tagged) == 60


def test_packet_lengths_changing_mid_block_defeat_no_check():
    """The prefetch guesses where later headers are from this packet's
    length; packets of every length in turn (and a last one near the block's
    end) are still walked exactly."""
    pkts = [Pkt(bytes([i]) * (14 + (i * 37) % 400)) for i in range(30)]
    blk = bytes(make_block(pkts, size=16384))
    plain, general = _both(blk, budget=3)
    assert plain == general == _table(blk)


@pytest.mark.parametrize("mutate,message", [
    (lambda b: _corrupt("mac", 10, b, 1), "tp_mac"),
    (lambda b: _corrupt("snaplen", 10**6, b, 2), "past the end"),
    (lambda b: _corrupt("next", 0, b, 1), "tp_next_offset"),
    (lambda b: _corrupt("next", 1 << 20, b, 3), "tp_next_offset"),
])
@pytest.mark.parametrize("budget", [1, 2, 1 << 30])
def test_a_bad_packet_is_reported_after_the_good_ones_before_it(mutate, message, budget):
    blk = bytes(mutate(make_block([Pkt(ETH) for _ in range(5)])))
    plain, general = _both(blk, budget=budget)
    assert plain == general and message in plain


@fuzz
@given(st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), max_size=40),
       st.integers(1, 262144), st.integers(1, 9), st.integers(0, 5))
def test_consume_walks_agree_on_mutated_blocks(flips, snaplen, budget, stop_every):
    # untagged packets: a flipped TCI without TP_STATUS_VLAN_VALID is a block
    # the kernel never writes, on which the two walkers may differ by design
    pkts = [Pkt(bytes(range(i, i + 30 + 7 * i)), wirelen=60 + 5 * i) for i in range(8)]
    blk = make_block(pkts, reserve=4)
    for pos, val in flips:
        blk[pos] = val
    plain, general = _both(bytes(blk), budget=budget, stop_every=stop_every, snaplen=snaplen)
    assert plain == general
    if isinstance(plain, list):
        _check_result(bytes(blk), plain)
        try:
            table = _table(bytes(blk), snaplen=snaplen)
        except zcap.RingCorruptionError:
            return                  # the table walk checks the packet count first
        assert plain == table
