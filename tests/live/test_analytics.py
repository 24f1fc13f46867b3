"""Header columns, selection and Arrow export on live batches: ring, immediate and copy
modes, VLAN tags stripped into metadata or put back into the bytes, and "any"."""

from __future__ import annotations

import random

import numpy as np
import pytest

import zcap
from tests.live.cli_helpers import ZcapProcess
from tests.live.conftest import MODES, SMALL_RING, open_on
from tests.unit import packets as P
from tests.unit.test_headers import COMPARED

pa = pytest.importorskip("pyarrow")

DOT1Q, DOT1AD = 0x8100, 0x88A8


def _specs(rng, n):
    out = []
    for i in range(n):
        s = P.random_spec(rng, v6_share=0.4, vlan_share=0)
        s.tags = [[], [(DOT1Q, (5 << 13) | 100)], [(DOT1AD, 200), (DOT1Q, 300)]][i % 3]
        s.payload = bytes(20)
        out.append(s)
    return out


def _frame(tb, s):
    head = tb.frame(64)[:12]                # the testbed's MACs, so the peer accepts it
    return head + P.build(s)[12:]


def _as_delivered(s, inserted, linktype):
    """What the capture sees: the outer tag in metadata unless it was put back."""
    e = P.Spec(**s.__dict__)
    e.link = linktype
    if s.tags and not inserted:
        e.meta_vlan = s.tags[0][1] & 0xFFF
        e.tags = s.tags[1:]
    return {k: v for k, v in P.expected(e).items() if k in COMPARED}


def _batches_until(cap, count, timeout=5.0):
    got = []
    n = 0
    while n < count:
        b = cap.next_batch(timeout=timeout)
        if b is None:
            break
        cols = {name: np.array(b.headers().column(name)) for name in COMPARED}
        got.append((cols, [(p.vlan, p.vlan_inserted) for p in b], len(b)))
        n += len(b)
    return got


@pytest.mark.parametrize("reinsert", [False, True], ids=["tag-in-metadata", "tag-in-bytes"])
@pytest.mark.parametrize("opts", MODES)
def test_live_header_columns(testbed, opts, reinsert):
    specs = _specs(random.Random(1), 60)
    with open_on(testbed, reinsert_vlan=reinsert, **opts) as cap:
        with testbed.sender() as s:
            s.send_all([_frame(testbed, x) for x in specs])
        got = _batches_until(cap, len(specs))
        linktype = int(cap.linktype)
    rows = []
    for cols, meta, n in got:
        for i in range(n):
            rows.append(({k: (bytes(v[i]) if v.ndim == 2 else int(v[i])) for k, v in cols.items()}, meta[i]))
    assert len(rows) == len(specs)
    for spec, (row, (_vlan, inserted)) in zip(specs, rows, strict=True):
        assert inserted == (reinsert and bool(spec.tags))
        assert row == _as_delivered(spec, inserted, linktype)


def test_any_device_cooked_headers(testbed):
    # untagged and single-tagged: for QinQ the kernel hands a cooked socket an inner tag
    # without its TPID (the protocol field names the inner payload); zcap flags that
    # packet HDR_MALFORMED instead of guessing
    specs = [s for s in _specs(random.Random(2), 45) if len(s.tags) < 2]
    with open_on(testbed, "any") as cap:
        with testbed.sender() as s:
            s.send_all([_frame(testbed, x) for x in specs])
        linktype = int(cap.linktype)
        got = []
        while len(got) < len(specs):
            b = cap.next_batch(timeout=5.0)
            if b is None:
                break
            h = b.headers()
            cols = {name: np.array(h.column(name)) for name in COMPARED}
            for i, p in enumerate(b):
                if p.direction == zcap.Direction.IN and p.ifindex == testbed.ifindex(testbed.b):
                    got.append(({k: (bytes(v[i]) if v.ndim == 2 else int(v[i])) for k, v in cols.items()},
                                p.vlan_inserted))
    assert linktype in (113, 276)
    assert len(got) == len(specs)
    for spec, (row, inserted) in zip(specs, got, strict=True):
        assert row == _as_delivered(spec, inserted, linktype)


@pytest.mark.parametrize("opts", MODES)
def test_select_on_live_batches(testbed, opts):
    specs = _specs(random.Random(3), 90)
    wanted = {specs[k].src for k in (0, 7, 33)}
    aset = zcap.AddressSet(wanted)
    with open_on(testbed, **opts) as cap:
        with testbed.sender() as s:
            s.send_all([_frame(testbed, x) for x in specs])
        seen = 0
        admitted = []
        while seen < len(specs):
            b = cap.next_batch(timeout=5.0)
            if b is None:
                break
            admitted += [seen + int(i) for i in np.asarray(b.select(addresses=aset))]
            seen += len(b)
    assert admitted == [i for i, s in enumerate(specs) if s.src in wanted or s.dst in wanted]


@pytest.mark.parametrize("opts", MODES)
def test_record_batch_kept_past_its_block_never_shows_recycled_bytes(testbed, opts):
    first = [_frame(testbed, s) for s in _specs(random.Random(4), 60) if not s.tags]
    with open_on(testbed, **{**SMALL_RING, **opts}) as cap:
        with testbed.sender() as s:
            s.send_all(first)
        rb = None
        kept = []
        while sum(len(r) for r in kept) < len(first):
            b = cap.next_batch(timeout=5.0)
            assert b is not None
            rb = b.to_arrow()
            kept.append(rb)
        # cycle the small ring many times with other bytes
        with testbed.sender() as s:
            for round_ in range(6):
                s.send_all([testbed.frame(600, seq=1000 + round_ * 100 + i) for i in range(100)])
                while cap.next_batch(timeout=0.2) is not None:
                    pass
        data = [bytes(x.as_py()) for r in kept for x in r.column("data")]
        stats = cap.stats()
    assert data == first
    assert kept[0].schema.field("ts_ns").type == pa.timestamp("ns")
    assert kept[0].schema.field("data").type in (pa.binary_view(), pa.binary())
    if opts == {"mode": "ring"}:
        # the RecordBatch's buffer export made zcap swap the block's pages (or hold it)
        assert stats.snapshots >= 1 or stats.held >= 1


def test_zcap_live_writes_parquet(testbed, tmp_path):
    out = tmp_path / "live.parquet"
    specs = _specs(random.Random(5), 40)
    proc = ZcapProcess("-i", testbed.b, "--netns", testbed.netns, "-c", str(len(specs)), "-w", str(out))
    with testbed.sender() as s:
        s.send_all([_frame(testbed, x) for x in specs])
    code, _, err = proc.wait()
    assert code == 0, err
    import pyarrow.parquet as pq
    t = pq.read_table(out)
    assert t.num_rows == len(specs)
    assert t.column("sport").to_pylist() == [s.sport if s.proto in (6, 17) else -1 for s in specs]
    assert t.column("vlan_outer").to_pylist() == [
        (s.tags[0][1] & 0xFFF) if s.tags else -1 for s in specs]


def test_columns_outlive_their_batch_and_a_late_first_access_is_refused(testbed):
    with open_on(testbed) as cap:
        with testbed.sender() as s:
            s.send_all([testbed.frame(64, seq=i) for i in range(10)])
        first = cap.next_batch(timeout=5.0)
        parsed = first.headers()
        dport = parsed.dport                         # parsed now, while the batch is valid
        lazy = first.headers()
        assert lazy is parsed
        with testbed.sender() as s:
            s.send_all([testbed.frame(64, seq=100 + i) for i in range(10)])
        while cap.next_batch(timeout=0.5) is not None:
            pass
        assert not first.valid
        assert set(np.asarray(dport).tolist()) == {testbed.frame(64)[36] << 8 | testbed.frame(64)[37]}
        with testbed.sender() as s:
            s.send_all([testbed.frame(64, seq=200)])
        second = cap.next_batch(timeout=5.0)
        unparsed = second.headers()
        while cap.next_batch(timeout=0.5) is not None:
            pass
        with testbed.sender() as s:
            s.send_all([testbed.frame(64, seq=300)])
        assert cap.next_batch(timeout=5.0) is not None
        with pytest.raises(zcap.StaleBatchError):
            unparsed.sport                           # noqa: B018


def test_a_partly_computed_headers_does_not_keep_its_ring_batch_in_a_cycle(testbed):
    import gc
    import weakref
    with open_on(testbed) as cap:
        with testbed.sender() as s:
            s.send_all([testbed.frame(64, seq=i) for i in range(10)])
        batch = cap.next_batch(timeout=5.0)
        assert batch is not None
        h = batch.headers()
        assert batch.headers() is h
        assert np.asarray(h.dport)[0] == testbed.frame(64)[36] << 8 | testbed.frame(64)[37]
        gone = weakref.ref(h)
        gc.disable()
        try:
            del h, batch
            assert gone() is None          # freed at once: no cycle with its batch
        finally:
            gc.enable()


@pytest.mark.parametrize("snaplen", [8, 64])
def test_vlan_columns_of_a_tag_with_no_place_in_the_bytes(testbed, snaplen):
    """Reinsertion on (the default), but a snapshot too short to hold the tag's
    place (the 12 address bytes): the tag stays stripped, and the VLAN column
    still reports it (the walk marks such packets; the header pass reads the
    ring headers of those only).  Tagged and untagged frames interleave."""
    specs = _specs(random.Random(4), 30)
    with open_on(testbed, snaplen=snaplen) as cap:
        with testbed.sender() as s:
            s.send_all([_frame(testbed, x) for x in specs])
        rows = []
        while len(rows) < len(specs):
            b = cap.next_batch(timeout=5.0)
            if b is None:
                break
            outer = np.array(b.headers().vlan_outer)
            rows += [(int(outer[i]), p.vlan, p.vlan_inserted) for i, p in enumerate(b)]
    assert len(rows) == len(specs)
    for spec, (outer, vlan, inserted) in zip(specs, rows, strict=True):
        assert inserted == (snaplen >= 12 and bool(spec.tags))
        if not spec.tags:
            assert (outer, vlan) == (-1, None)
        elif inserted:
            assert outer == spec.tags[0][1] & 0xFFF          # parsed from the bytes
        else:
            assert vlan is not None and outer == vlan & 0xFFF == spec.tags[0][1] & 0xFFF
