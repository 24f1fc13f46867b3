"""A batch's column table is reused only once nothing uses it: column arrays
kept across later batches (the README's loop variables, or longer) keep their
values while the ring moves on and tables are recycled."""

from __future__ import annotations

import pytest

from tests.live.conftest import open_on
from tests.live.test_retention import capacity


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_kept_column_arrays_keep_their_values(testbed, keep):
    import numpy as np
    with open_on(testbed, block_size=1 << 16, block_count=16, timeout_ms=10) as cap:
        n = min(2000, capacity(cap) // 4)
        # sizes that vary, so that no two blocks have the same table
        frames = [testbed.frame(64 + 8 * (i % 11), seq=i) for i in range(n)]
        with testbed.sender() as s:
            s.send_all(frames)
        kept = []           # (offsets array, its values when taken, caplen array, values)
        got = 0
        for batch in cap.batches():
            offsets = np.frombuffer(batch.offsets, np.uint32)
            caplen = np.frombuffer(batch.caplen, np.uint32)
            kept.append((offsets, offsets.copy(), caplen, caplen.copy()))
            del kept[:-keep]
            for arr, when_taken, cl, cl_taken in kept:
                assert np.array_equal(arr, when_taken) and np.array_equal(cl, cl_taken)
            assert list(caplen) == [len(f) for f in frames[got:got + len(caplen)]]
            got += len(offsets)
            if got >= n:
                break
        stats = cap.stats()
    assert got == n and stats.blocks >= 3 and stats.snapshots == 0
