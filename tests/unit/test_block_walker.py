"""The ring's block walker on crafted and fuzzed blocks.

The kernel writes every offset in a block; a bug there (or in us) must become
a RingCorruptionError, never an out-of-bounds read.  zcap._ring.parse_v3_block
runs exactly the code the live ring runs.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zcap
from tests.unit.blocks import FIRST, HDR_END, PKT_HDR, Pkt, make_block
from zcap._ring import parse_v3_block

ETH = bytes(range(60))


def test_walks_every_packet():
    pkts = [Pkt(ETH[: 20 + i], nsec=i, wirelen=100 + i) for i in range(10)]
    out = parse_v3_block(make_block(pkts))
    assert [o[4] for o in out] == [p.data for p in pkts]
    assert [(o[1], o[2]) for o in out] == [(20 + i, 100 + i) for i in range(10)]
    assert [o[3] for o in out] == [1_700_000_000 * 10**9 + i for i in range(10)]


def test_snaplen_is_applied():
    out = parse_v3_block(make_block([Pkt(ETH)]), snaplen=10)
    assert out[0][1:3] == (10, 60) and out[0][4] == ETH[:10]


def test_direction_and_loopback_rules():
    pkts = [Pkt(b"in" * 10, pkttype=0), Pkt(b"out" * 7, pkttype=4, ifindex=5),
            Pkt(b"lo" * 10, pkttype=4, ifindex=1)]
    blk = make_block(pkts)
    assert len(parse_v3_block(blk, lo_ifindex=1)) == 2
    assert [o[4] for o in parse_v3_block(blk, direction=1)] == [b"in" * 10]
    assert [o[4] for o in parse_v3_block(blk, direction=2, lo_ifindex=1)] == [b"out" * 7]


def test_cooked_sll2_header_is_synthesized_in_front():
    ip = bytes(40)
    blk = make_block([Pkt(ip, ifindex=7, pkttype=4, addr=b"\xaa" * 6)], dgram=True, reserve=4)
    (entry,) = parse_v3_block(blk, cooked=2)
    data = entry[4]
    assert data[20:] == ip and entry[1] == entry[2] == 60
    assert struct.unpack("!HHIHBB", data[:12]) == (0x0800, 0, 7, 1, 4, 6)
    assert data[12:20] == b"\xaa" * 6 + b"\0\0"


def test_vlan_tag_is_reinserted_after_the_mac_addresses():
    frame = bytes(range(12)) + b"\x08\x00" + bytes(30)
    blk = make_block([Pkt(frame, status=1 << 4, vlan_tci=0xA064, vlan_tpid=0x88A8)], reserve=4)
    (entry,) = parse_v3_block(blk, reinsert_vlan=True, vlan_offset=12)
    assert entry[4] == frame[:12] + b"\x88\xa8\xa0\x64" + frame[12:]
    assert entry[1] == entry[2] == len(frame) + 4


def test_vlan_zero_with_valid_flag_is_kept():
    frame = bytes(range(12)) + b"\x08\x00" + bytes(30)
    blk = make_block([Pkt(frame, status=1 << 4, vlan_tci=0x6000)], reserve=4)
    (entry,) = parse_v3_block(blk, reinsert_vlan=True, vlan_offset=12)
    assert entry[4][12:16] == b"\x81\x00\x60\x00"      # default TPID, priority kept


def _corrupt(field: str, value: int, blk: bytearray, pkt_index: int = 0) -> bytearray:
    names = ["next", "sec", "nsec", "snaplen", "len", "status", "mac", "net"]
    off = FIRST
    for _ in range(pkt_index):
        off += struct.unpack_from("<I", blk, off)[0]
    fmt = {"mac": "<H", "net": "<H"}.get(field, "<I")
    pos = off + PKT_HDR.size - 48 + [0, 4, 8, 12, 16, 20, 24, 26][names.index(field)]
    struct.pack_into(fmt, blk, pos, value)
    return blk


@pytest.mark.parametrize("mutate,message", [
    (lambda b: struct.pack_into("<I", b, 12, 10**6) or b, "packet count"),
    (lambda b: struct.pack_into("<I", b, 16, 4090) or b, "header offset outside"),
    (lambda b: struct.pack_into("<I", b, 16, 8) or b, "header offset outside"),
    (lambda b: _corrupt("mac", 10, b), "tp_mac"),
    (lambda b: _corrupt("mac", 4000, b), "past the end"),
    (lambda b: _corrupt("snaplen", 10**6, b), "past the end"),
    (lambda b: _corrupt("next", 0, b), "tp_next_offset"),
    (lambda b: _corrupt("next", 10**6, b), "tp_next_offset"),
    (lambda b: _corrupt("next", 2**32 - 8, b), "tp_next_offset"),
])
def test_corrupt_blocks_raise(mutate, message):
    blk = mutate(make_block([Pkt(ETH), Pkt(ETH), Pkt(ETH)]))
    with pytest.raises(zcap.RingCorruptionError, match=message):
        parse_v3_block(blk)


def test_no_room_for_cooked_header_is_an_error():
    blk = make_block([Pkt(bytes(40), mac=HDR_END + 4)], dgram=True)
    with pytest.raises(zcap.RingCorruptionError, match="no room"):
        parse_v3_block(blk, cooked=2)


def test_tiny_image_is_refused():
    with pytest.raises(zcap.RingCorruptionError):
        parse_v3_block(b"\0" * 10)


def _check_result(blk: bytes, out) -> None:
    for off, caplen, _wirelen, _ts, data in out:
        assert 0 <= off and off + caplen <= len(blk)
        assert len(data) == caplen


fuzz = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fuzz
@given(st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), max_size=40),
       st.sampled_from([0, 1, 2]), st.booleans())
def test_mutated_blocks_never_read_out_of_bounds(flips, cooked, vlan):
    pkts = [Pkt(bytes(range(i, i + 30 + 7 * i)), status=(1 << 4) if i % 2 else 0, vlan_tci=i)
            for i in range(8)]
    blk = make_block(pkts, dgram=bool(cooked), reserve=8)
    for pos, val in flips:
        blk[pos] = val
    try:
        out = parse_v3_block(bytes(blk), cooked=cooked, reinsert_vlan=vlan, vlan_offset=12)
    except zcap.RingCorruptionError:
        return
    _check_result(blk, out)


@fuzz
@given(st.binary(min_size=48, max_size=2048))
def test_random_bytes_never_crash(raw):
    try:
        out = parse_v3_block(raw, cooked=2, reinsert_vlan=True, vlan_offset=12)
    except zcap.RingCorruptionError:
        return
    _check_result(raw, out)


TAGGED = [(0x8100, 0xA064), (0x88A8, 0x60C8), (0x8100, 0xD000), None, (0x8100, 0x0FFE)]


@pytest.mark.parametrize("cooked, dgram, vlan_offset", [(0, False, 12), (1, True, 14)],
                         ids=["ethernet", "cooked-sll"])
@pytest.mark.parametrize("snaplen", [262144, 30])
def test_walking_a_block_again_reinserts_each_tag_once(cooked, dgram, vlan_offset, snaplen):
    """A lazy batch walks its block once per read: every walk gives the first one's packets."""
    payload = bytes(range(12)) + b"\x08\x00" + bytes(range(100, 140))
    pkts = [Pkt(payload[i:], status=(1 << 4 | 1 << 6) if tag else 0,
                vlan_tpid=tag[0] if tag else 0, vlan_tci=tag[1] if tag else 0)
            for i, tag in enumerate(TAGGED)]
    blk = make_block(pkts, dgram=dgram, reserve=8)
    opts = dict(cooked=cooked, reinsert_vlan=True, vlan_offset=vlan_offset, snaplen=snaplen)
    once = parse_v3_block(bytes(blk), **opts)
    assert parse_v3_block(bytes(blk), walks=2, **opts) == once
    assert parse_v3_block(bytes(blk), walks=3, **opts) == once
    head = 16 if cooked else 0
    for (_, caplen, wirelen, _, data), p, tag in zip(once, pkts, TAGGED, strict=True):
        extra = head + (4 if tag else 0)
        assert wirelen == len(p.data) + extra and caplen == min(wirelen, snaplen)
        if tag:
            assert data[vlan_offset:vlan_offset + 4] == struct.pack("!HH", *tag)[:caplen - vlan_offset]


# The plain walk (zcap/_plainwalk.pxi: nothing to skip, filter or synthesize)
# must store exactly what the general walker stores.  A loopback index no
# packet has makes the walk general without changing what it delivers.
GENERAL = {"lo_ifindex": 0x7FFFFFFE}


def _both_walks(blk: bytes, **opts):
    """(plain result, general result); each a list or the error message."""
    results = []
    for extra in ({}, GENERAL):
        try:
            results.append(parse_v3_block(blk, with_header=True, **opts, **extra))
        except zcap.RingCorruptionError as exc:
            results.append(str(exc))
    return results


def test_plain_walk_hands_tagged_packets_to_the_general_walker():
    """Untagged packets take the plain walk, tagged ones (VLAN_VALID, as the
    kernel writes them) the general one, which reinserts their tag: in any order."""
    frame = bytes(range(12)) + b"\x08\x00" + bytes(50)
    tagged = [i % 3 == 1 for i in range(9)]
    pkts = [Pkt(frame, status=1 << 4, vlan_tci=100 + i) if t else Pkt(frame, nsec=i)
            for i, t in enumerate(tagged)]
    blk = bytes(make_block(pkts, reserve=4))
    plain, general = _both_walks(blk, reinsert_vlan=True, vlan_offset=12, snaplen=60)
    assert plain == general
    for entry, t, i in zip(plain, tagged, range(9), strict=True):
        if t:
            assert entry[4] == (frame[:12] + struct.pack("!HH", 0x8100, 100 + i) + frame[12:])[:60]
            assert entry[6] & 4                          # META_VLAN_INSERTED
        else:
            assert entry[4] == frame[:60] and entry[6] == 2     # META_TRUNCATED only


@pytest.mark.parametrize("mutate,message", [
    (lambda b: _corrupt("mac", 10, b, 1), "tp_mac"),
    (lambda b: _corrupt("snaplen", 10**6, b, 2), "past the end"),
    (lambda b: _corrupt("next", 0, b, 1), "tp_next_offset"),
])
def test_plain_walk_reports_a_bad_packet_like_the_general_walker(mutate, message):
    blk = bytes(mutate(make_block([Pkt(ETH), Pkt(ETH), Pkt(ETH)])))
    plain, general = _both_walks(blk)
    assert plain == general and message in plain


@fuzz
@given(st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), max_size=40),
       st.sampled_from([0, 1]))
def test_mutated_blocks_walked_twice_never_read_out_of_bounds(flips, cooked):
    pkts = [Pkt(bytes(range(i, i + 30 + 7 * i)), status=(1 << 4) if i % 2 else 0, vlan_tci=i)
            for i in range(8)]
    blk = make_block(pkts, dgram=bool(cooked), reserve=8)
    for pos, val in flips:
        blk[pos] = val
    try:
        out = parse_v3_block(bytes(blk), cooked=cooked, reinsert_vlan=True,
                             vlan_offset=14 if cooked else 12, walks=2)
    except zcap.RingCorruptionError:
        return
    _check_result(blk, out)


@fuzz
@given(st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), max_size=40),
       st.integers(1, 262144))
def test_plain_walk_matches_the_general_walker_on_mutated_blocks(flips, snaplen):
    pkts = [Pkt(bytes(range(i, i + 30 + 7 * i)), wirelen=60 + 5 * i) for i in range(8)]
    blk = make_block(pkts, reserve=4)
    for pos, val in flips:
        blk[pos] = val
    plain, general = _both_walks(bytes(blk), snaplen=snaplen)
    assert plain == general
