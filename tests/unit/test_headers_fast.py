"""The header pass's fast path (zcap/_headers_fast.pxi) against the general parser.

The fast path takes the common packets (Ethernet / SLL / SLL2, at most one
802.1Q tag, IPv4 without options or fragmentation or IPv6 without extension
headers, TCP or UDP) and must give exactly the columns the general parser
gives, for every packet, every truncation, every column group and any mix of
link types and stripped VLAN ids; it fills some columns beforehand
(`_prefill`), so the tests also run on memory left dirty by other packets.
"""

from __future__ import annotations

import itertools
import random
from array import array

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit import packets as P
from tests.unit.test_headers import specs
from tests.unit.test_headers_lazy import poison_spare_memory
from zcap import _headers


@pytest.fixture(autouse=True)
def _fast_path_back_on():
    yield
    _headers._use_fast_path(True)


def layout(datas, pad=b"\xa5" * 16):
    buf = bytearray()
    offsets, caplen = array("I"), array("I")
    for d in datas:
        offsets.append(len(buf))
        caplen.append(len(d))
        buf += d + pad            # bytes past caplen that would show if read
    return bytes(buf), offsets, caplen


def columns(inputs, n, fast, groups=None):
    """Every column as bytes, computed with the fast path on or off, the groups
    asked one at a time (`groups`, names of COLUMN_GROUPS) or all at once."""
    _headers._use_fast_path(fast)
    try:
        poison_spare_memory(n, seed=n)
        h = _headers.headers_of(lambda: inputs, n)
        if groups is None:
            h.compute()
        else:
            for g in groups:
                h.compute(_headers.COLUMN_GROUPS[g][0])
        return {name: np.asarray(h.column(name)).tobytes() for name in _headers.COLUMNS}
    finally:
        _headers._use_fast_path(True)


def assert_same(inputs, n, groups=None):
    fast = columns(inputs, n, True, groups)
    general = columns(inputs, n, False, groups)
    for name in _headers.COLUMNS:
        if fast[name] != general[name]:
            col_f = np.frombuffer(fast[name], np.uint8)
            col_g = np.frombuffer(general[name], np.uint8)
            first = int(np.flatnonzero(col_f != col_g)[0])
            raise AssertionError(f"{name} differs at byte {first}")


def fast_shapes():
    """A packet of each shape the fast path takes, and of its near misses."""
    out = []
    for link, tags, l3, proto, flags in itertools.product(
            (P.LINK_ETHERNET, P.LINK_SLL, P.LINK_SLL2),
            ([], [(0x8100, 0x2005)], [(0x88A8, 7)], [(0x8100, 3), (0x8100, 4)]),
            ("ipv4", "ipv6"), (6, 17, 1, 132), ("", "df", "mf", "opts", "doff")):
        s = P.Spec(link=link, tags=list(tags), l3=l3, proto=proto, sport=5353, dport=53,
                   tcp_flags=0x12, payload=b"payload!")
        if l3 == "ipv6":
            s.src, s.dst = bytes(range(16)), bytes(range(16, 32))
            if flags == "opts":
                s.ext = [P.EXT_HOP]
            if flags == "mf":
                s.ext, s.more_fragments = [P.EXT_FRAGMENT], True
        else:
            s.dont_fragment = flags == "df"
            s.more_fragments = flags == "mf"
            s.ihl = 6 if flags == "opts" else 5
        if flags == "doff":
            s.tcp_doff = 3            # malformed TCP header length
        out.append(s)
    return out


def test_every_fast_shape_and_every_truncation_of_it():
    datas, links, vlans = [], array("H"), array("i")
    for k, s in enumerate(fast_shapes()):
        whole = P.build(s)
        for cut in range(len(whole) + 1):
            datas.append(whole[:cut])
            links.append(s.link)
            vlans.append(-1 if k % 3 else 100 + k % 4000)    # some with a stripped tag
    buf, offsets, caplen = layout(datas)
    n = len(datas)
    assert_same((buf, offsets, caplen, memoryview(links), memoryview(vlans)), n)
    assert_same((buf, offsets, caplen, memoryview(links), None), n)


@pytest.mark.parametrize("link", [P.LINK_ETHERNET, P.LINK_SLL, P.LINK_SLL2, P.LINK_RAW])
def test_one_link_type_per_batch_each_group_alone(link):
    rng = random.Random(link)
    datas = [P.build(P.random_spec(rng, link=link, v6_share=0.4, vlan_share=0.3)) for _ in range(300)]
    datas += [P.build(s) for s in fast_shapes() if s.link == link]
    buf, offsets, caplen = layout(datas)
    n = len(datas)
    assert_same((buf, offsets, caplen, link, None), n)
    # the specialised passes: all groups, the 5-tuple alone, all but the hash, and any mix
    for groups in (["flow"], ["flow", "hash", "l2"], ["l4", "ip6", "offsets", "flags", "ip", "l2", "flow"],
                   ["hash", "l2"]):
        assert_same((buf, offsets, caplen, link, None), n, groups)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(specs(), min_size=1, max_size=6), st.data())
def test_generated_batches(specs_, data):
    datas, links, vlans = [], array("H"), array("i")
    for s in specs_:
        whole = P.build(s)
        datas.append(whole[:data.draw(st.integers(0, len(whole)))] if data.draw(st.booleans()) else whole)
        links.append(s.link)
        vlans.append(-1 if s.meta_vlan is None else s.meta_vlan)
    buf, offsets, caplen = layout(datas, pad=data.draw(st.binary(min_size=16, max_size=16)))
    assert_same((buf, offsets, caplen, memoryview(links), memoryview(vlans)), len(datas))
    if len(set(links)) == 1:
        assert_same((buf, offsets, caplen, links[0], None), len(datas))


def test_flow_hash_is_the_same_both_ways_on_the_fast_path():
    fwd = P.Spec(l3="ipv4", proto=17, src=b"\x0a\0\0\1", dst=b"\x0a\0\0\2", sport=1000, dport=53)
    back = P.Spec(l3="ipv4", proto=17, src=b"\x0a\0\0\2", dst=b"\x0a\0\0\1", sport=53, dport=1000)
    fwd6 = P.Spec(l3="ipv6", proto=6, src=bytes(range(16)), dst=bytes(16), sport=1, dport=2)
    back6 = P.Spec(l3="ipv6", proto=6, src=bytes(16), dst=bytes(range(16)), sport=2, dport=1)
    buf, offsets, caplen = layout([P.build(s) for s in (fwd, back, fwd6, back6)])
    fh = np.asarray(_headers.parse(buf, offsets, caplen).flow_hash)
    assert fh[0] == fh[1] and fh[2] == fh[3] and fh[0] != fh[2] and fh[0] != 0
