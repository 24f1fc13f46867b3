"""Ring.consume() walks untagged packets in a tight loop (zcap/_plainwalk.pxi)
and hands tagged ones to the general walker, which reinserts their tag: with
both kinds interleaved, budgets and callback stops falling anywhere in a
block, the C callback sees every wire frame once, in order."""

from __future__ import annotations

import pytest

from tests.live.conftest import open_on
from tests.live.test_vlan_fidelity import tagged_frames


def _mixed_frames(tb) -> list[bytes]:
    kinds = list(tagged_frames(tb.mac(tb.b)).values())
    untagged = [tb.frame(64 + 50 * (i % 5), seq=i) for i in range(30)]
    out = []
    for i, frame in enumerate(untagged):
        out.append(frame)
        if i % 3 == 0:
            out.append(kinds[(i // 3) % len(kinds)])
    return out


@pytest.mark.parametrize("budget,stop_every", [(1 << 20, 0), (1, 0), (7, 0), (1 << 20, 5), (4, 3)])
def test_consume_delivers_mixed_tagged_and_untagged_frames(testbed, budget, stop_every):
    from tests.live.cy_build import cy_collect
    consume_all = cy_collect().consume_all
    frames = _mixed_frames(testbed)
    with open_on(testbed, timeout_ms=50) as cap:
        with testbed.sender() as s:
            s.send_all(frames)
        got = consume_all(cap.ring, 500, budget, stop_every)
        assert cap.stats().delivered == len(frames)
    assert got == [(f, len(f)) for f in frames]


def test_consume_applies_the_snaplen_on_the_plain_walk(testbed):
    from tests.live.cy_build import cy_collect
    consume_all = cy_collect().consume_all
    frames = [testbed.frame(200, seq=i) for i in range(20)]
    with open_on(testbed, timeout_ms=50, snaplen=80) as cap:
        with testbed.sender() as s:
            s.send_all(frames)
        got = consume_all(cap.ring, 500)
    assert got == [(f[:80], len(f)) for f in frames]
