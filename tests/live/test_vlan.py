"""VLAN tags: the kernel strips them into metadata; zcap puts them back by default
exactly where libpcap does, with the real TPID, keeping priority tags (VLAN 0);
reinsert_vlan=False is the opt-out that delivers the kernel's view."""

from __future__ import annotations

import pytest

from tests.live.conftest import MODES, collect, open_on
from tests.live.reference import Tcpdump

DOT1Q, DOT1AD = 0x8100, 0x88A8
CASES = {
    "dot1q": [(DOT1Q, (5 << 13) | 100)],
    "priority-tag": [(DOT1Q, (6 << 13) | 0)],           # VLAN 0: priority only
    "qinq": [(DOT1AD, (3 << 13) | 200), (DOT1Q, 300)],   # outer 802.1ad, inner 802.1Q
}


def _frames(tb, tags, n=5):
    return [tb.frame(128, seq=i, vlan_tags=tags) for i in range(n)]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("opts", MODES)
def test_vlan_metadata_and_stripped_bytes(testbed, case, opts):
    tags = CASES[case]
    frames = _frames(testbed, tags)
    with open_on(testbed, reinsert_vlan=False, **opts) as cap:
        with testbed.sender() as s:
            s.send_all(frames)
        got = collect(cap, len(frames), keep=lambda p: (bytes(p), p.vlan, p.vlan_tpid, p.wirelen,
                                                        p.vlan_inserted))
    outer_tpid, outer_tci = tags[0]
    assert len(got) == len(frames)
    for frame, (data, vlan, tpid, wirelen, inserted) in zip(frames, got, strict=True):
        assert (vlan, tpid, inserted) == (outer_tci, outer_tpid, False)
        assert data == frame[:12] + frame[16:]          # outer tag removed by the kernel
        assert wirelen == len(frame) - 4


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("opts", MODES)
def test_reinserted_vlan_restores_the_wire_bytes(testbed, case, opts):
    """By default (no reinsert_vlan argument) zcap delivers the wire bytes."""
    frames = _frames(testbed, CASES[case])
    with open_on(testbed, **opts) as cap:
        with testbed.sender() as s:
            s.send_all(frames)
        got = collect(cap, len(frames), keep=lambda p: (bytes(p), p.wirelen, p.caplen,
                                                        p.vlan_inserted))
    assert [g[0] for g in got] == frames
    assert all(w == c == len(f) and ins for (_, w, c, ins), f in zip(got, frames, strict=True))


@pytest.mark.parametrize("case", CASES)
def test_reinsertion_matches_libpcap(testbed, case):
    frames = _frames(testbed, CASES[case], n=8)
    ref = Tcpdump(testbed.netns, testbed.b, len(frames))
    with open_on(testbed, reinsert_vlan=True) as cap:
        with testbed.sender() as s:
            s.send_all(frames)
        ours = collect(cap, len(frames), keep=lambda p: (p.ts_ns, p.wirelen, bytes(p)))
    _, theirs = ref.result()
    assert ours == theirs


def test_reinsertion_respects_snaplen(testbed):
    frames = _frames(testbed, CASES["dot1q"])
    with open_on(testbed, reinsert_vlan=True, snaplen=40) as cap:
        with testbed.sender() as s:
            s.send_all(frames)
        got = collect(cap, len(frames), keep=lambda p: (bytes(p), p.caplen, p.wirelen, p.truncated))
    for frame, (data, caplen, wirelen, truncated) in zip(frames, got, strict=True):
        assert data == frame[:40] and caplen == 40 and wirelen == len(frame) and truncated
