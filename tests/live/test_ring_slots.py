"""Ring.slot_size / slot_count say what the ring's units are: V3 blocks or V2 frames."""

import pytest

from tests.live.conftest import open_on

pytestmark = pytest.mark.live


@pytest.mark.parametrize("opts", [dict(mode="ring"), dict(mode="ring", immediate=True), dict(mode="copy")],
                         ids=["ring", "immediate", "copy"])
def test_slots_are_the_units_the_kernel_fills(testbed, opts):
    with open_on(testbed, block_size=1 << 16, block_count=4, **opts) as cap:
        g, ring = cap.geometry, cap._ring
        if cap.mode == "ring":                           # one slot per block
            assert (ring.slot_size, ring.slot_count) == (g.block_size, g.block_count)
        elif cap.mode == "immediate":                    # one slot per frame
            assert ring.slot_size == g.frame_size < g.block_size
            assert ring.slot_count == g.block_size * g.block_count // g.frame_size
            assert ring.slot_count == cap.stats().ring_blocks
        else:                                            # a plain socket queue: no ring
            assert (ring.slot_size, ring.slot_count) == (0, 0)
