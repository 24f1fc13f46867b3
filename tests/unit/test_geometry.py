"""Ring geometry is checked in Python before any system call."""

from __future__ import annotations

import pytest

from zcap import RingGeometry
from zcap.capture import DEFAULT_BLOCK_COUNT, DEFAULT_BLOCK_SIZE, MAX_SNAPLEN, PAGE_SIZE


def check(**kw):
    opts = dict(block_size=1 << 20, block_count=8, snaplen=65535, timeout_ms=10)
    opts.update(kw)
    return RingGeometry.check(**opts)


def test_defaults_are_valid():
    g = check(block_size=DEFAULT_BLOCK_SIZE, block_count=DEFAULT_BLOCK_COUNT, snaplen=MAX_SNAPLEN,
              reserve=8)
    assert g.total_size == DEFAULT_BLOCK_SIZE * DEFAULT_BLOCK_COUNT


def test_default_snaplen_shrinks_to_fit_small_blocks():
    assert RingGeometry.largest_snaplen(1 << 20) == MAX_SNAPLEN
    small = RingGeometry.largest_snaplen(1 << 16)
    assert small < 1 << 16
    check(block_size=1 << 16, snaplen=small, reserve=8)          # and it really fits
    with pytest.raises(ValueError):
        check(block_size=1 << 16, snaplen=small + 1, reserve=8)


def test_immediate_frames_are_page_multiples_sized_from_the_mtu():
    g = check(immediate=True, mtu=1500)
    assert g.frame_size % PAGE_SIZE == 0 and g.frame_size >= 1514
    jumbo = check(immediate=True, mtu=9000)
    assert jumbo.frame_size >= 9014 and jumbo.frame_size > g.frame_size
    assert check(immediate=True, mtu=9000, snaplen=128).frame_size == PAGE_SIZE


@pytest.mark.parametrize("kw", [dict(block_size=PAGE_SIZE + 1), dict(block_size=6 * PAGE_SIZE),
                                dict(block_count=1), dict(snaplen=0), dict(timeout_ms=0),
                                dict(timeout_ms=4_000_000)])
def test_rejects(kw):
    with pytest.raises(ValueError):
        check(**kw)


def test_rejects_bools_and_strings():
    with pytest.raises(TypeError):
        check(block_count=True)
    with pytest.raises(TypeError):
        check(snaplen="64")
