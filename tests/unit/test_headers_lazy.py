"""Lazy header columns: a group computed on its own equals the same group computed with all others.

Headers computes its columns by group (zcap._headers.COLUMN_GROUPS), each on
the first access to one of its columns.  Asking for the groups one after the
other, in any order, must give exactly the bytes that computing everything in
one pass gives: on every packet of every file in ../shared/captures, and on
generated packets with tag stacks, extension headers and truncations.
"""

from __future__ import annotations

import gc
import random
from array import array

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zcap
from tests.unit import packets as P
from tests.unit.savefiles import SHARED_CAPTURES, SHARED_MISSING
from tests.unit.test_headers import specs
from zcap import _headers
from zcap.offline import open_offline

GROUPS = list(_headers.COLUMN_GROUPS)


def inputs_of(buffer, offsets, caplen, linktype, vlan=None):
    return lambda: (buffer, offsets, caplen, linktype, vlan)


def all_at_once(inputs, n):
    h = _headers.headers_of(inputs, n).compute()
    return {name: np.asarray(col).tobytes() for name, col in h.columns().items()}


def poison_spare_memory(n, seed=0):
    """Leave other packets' columns in the memory the next Headers of n packets reuses,
    so a pass that skips a row (or a fill value) shows up as a wrong value."""
    rng = random.Random(seed)
    datas = [P.build(P.random_spec(rng, v6_share=0.5, vlan_share=0.5)) for _ in range(max(n, 1))]
    offs = array("I", np.cumsum([0] + [len(d) for d in datas[:-1]]).tolist())
    h = _headers.parse(b"".join(datas), offs[:n], array("I", [len(d) for d in datas])[:n])
    h.columns()
    del h


def group_by_group(inputs, n, order):
    """Columns of a fresh Headers, asking for one group at a time in `order`;
    checks after each step that only the groups asked so far were computed."""
    poison_spare_memory(n)
    h = _headers.headers_of(inputs, n)
    assert h.computed == ()
    got = {}
    asked = set()
    for group in order:
        cols = _headers.COLUMN_GROUPS[group]
        got[cols[-1]] = np.asarray(getattr(h, cols[-1])).tobytes()    # one column triggers its group
        asked.update(cols)
        assert set(h.computed) == asked
        for name in cols:
            got[name] = np.asarray(h.column(name)).tobytes()
    return got


def orders(seed):
    rng = random.Random(seed)
    shuffled = GROUPS[:]
    rng.shuffle(shuffled)
    return [GROUPS, GROUPS[::-1], shuffled]


def test_groups_cover_every_column_once():
    names = [name for cols in _headers.COLUMN_GROUPS.values() for name in cols]
    assert sorted(names) == sorted(_headers.COLUMNS)
    assert set(_headers.COLUMN_GROUPS["flow"]) == {"ip_version", "ip_src", "ip_dst", "proto", "sport",
                                                   "dport"}


@pytest.mark.shared_captures
@pytest.mark.skipif(not SHARED_CAPTURES.is_dir(), reason=SHARED_MISSING)
def test_every_group_alone_equals_all_at_once_on_the_shared_captures():
    files = sorted(p for p in SHARED_CAPTURES.iterdir() if p.suffix in (".pcap", ".pcapng"))
    packets = 0
    for k, path in enumerate(files):
        try:
            src = open_offline(path, on_truncated="stop")
        except zcap.SavefileError:
            continue
        with src:
            try:
                for batch in src.batches():
                    inputs = inputs_of(batch.buffer, batch.offsets, batch.caplen, batch.linktype)
                    want = all_at_once(inputs, len(batch))
                    for order in orders(k):
                        assert group_by_group(inputs, len(batch), order) == want, (path.name, order)
                    # and through the batch's own Headers, the 5-tuple first
                    h = batch.headers()
                    assert np.asarray(h.dport).tobytes() == want["dport"]
                    assert set(h.computed) == set(_headers.COLUMN_GROUPS["flow"])
                    assert {n: np.asarray(c).tobytes() for n, c in h.columns().items()} == want
                    packets += len(batch)
            except zcap.SavefileError:
                pass                        # a malformed file: the batches before the error were checked
    assert packets > 900


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(specs(), min_size=1, max_size=12), st.data())
def test_every_group_alone_equals_all_at_once_on_generated_packets(specs_, data):
    buf = bytearray()
    offsets, caplen, linktypes, vlans = array("I"), array("I"), array("H"), array("i")
    for s in specs_:
        d = P.build(s)
        cut = data.draw(st.integers(0, len(d)))          # any truncation, the whole packet included
        offsets.append(len(buf))
        caplen.append(cut)
        buf += d + b"\xee" * 7                           # bytes past caplen must never be read
        linktypes.append(s.link)
        vlans.append(s.meta_vlan if s.meta_vlan is not None else -1)
    inputs = inputs_of(bytes(buf), offsets, caplen, memoryview(linktypes), memoryview(vlans))
    want = all_at_once(inputs, len(specs_))
    order = data.draw(st.permutations(GROUPS))
    assert group_by_group(inputs, len(specs_), order) == want


def test_the_vlan_ids_are_asked_for_only_with_the_vlan_columns():
    s = P.Spec(tags=[(0x8100, 7)], meta_vlan=42)
    data = P.build(s)
    calls = []

    def vlan():
        calls.append(1)
        return array("i", [42])

    h = _headers.headers_of(lambda: (data, array("I", [0]), array("I", [len(data)]), 1, vlan), 1)
    assert np.asarray(h.dport)[0] == s.dport and calls == []
    assert np.asarray(h.ip6_src).shape == (1, 16) and calls == []
    assert (np.asarray(h.vlan_outer)[0], np.asarray(h.vlan_inner)[0]) == (42, 7) and calls == [1]


def test_compute_names_several_groups_in_one_pass_and_refuses_unknown_names():
    data = P.build(P.Spec())
    passes = []

    def inputs():
        passes.append(1)
        return data, array("I", [0]), array("I", [len(data)]), 1, None

    h = _headers.headers_of(inputs, 1)
    assert h.compute("sport", "vlan_outer", "flow_hash") is h
    assert len(passes) == 1
    assert set(h.computed) == set(_headers.COLUMN_GROUPS["flow"] + _headers.COLUMN_GROUPS["l2"]
                                  + _headers.COLUMN_GROUPS["hash"])
    h.sport, h.vlan_inner, h.flow_hash                      # noqa: B018  (computed: no new pass)
    assert len(passes) == 1
    with pytest.raises(AttributeError, match="no header column 'nope'"):
        h.compute("nope")
    h.compute()
    assert len(passes) == 2 and set(h.computed) == set(_headers.COLUMNS)


def test_memory_of_a_column_still_held_is_never_reused():
    rng = random.Random(3)
    datas = [P.build(P.random_spec(rng)) for _ in range(300)]
    buf = b"".join(datas)
    offs = array("I", np.cumsum([0] + [len(d) for d in datas[:-1]]).tolist())
    caps = array("I", [len(d) for d in datas])
    h = _headers.parse(buf, offs, caps)
    kept = h.sport                                          # a buffer export of h's memory
    before = bytes(kept)
    del h
    gc.collect()
    others = [_headers.parse(buf[:0] + bytes(len(buf)), offs, caps) for _ in range(4)]   # all zeros
    for o in others:
        o.columns()
    assert bytes(kept) == before
    assert np.asarray(kept).tolist() == [int(x) for x in np.asarray(_headers.parse(buf, offs, caps).sport)]


def test_a_partly_computed_headers_and_its_batch_are_freed_without_the_garbage_collector(tmp_path):
    import weakref

    from tests.unit.savefiles import pcap
    rng = random.Random(8)
    datas = [P.build(P.random_spec(rng)) for _ in range(50)]
    path = tmp_path / "few.pcap"
    path.write_bytes(pcap([(i, len(d), d) for i, d in enumerate(datas)]))
    with open_offline(path) as src:
        batch = next(iter(src.batches()))
        h = batch.headers()
        assert batch.headers() is h                         # cached while it is held
        dport = np.asarray(h.dport).copy()                  # one group: the Headers still needs its batch
        assert set(h.computed) != set(_headers.COLUMNS)
        gone = weakref.ref(h)
        gc.disable()
        try:
            del h, batch
            assert gone() is None          # no reference cycle with its batch: freed at once
        finally:
            gc.enable()
    assert dport.tolist() == [int(x) for x in np.asarray(_headers.parse(
        b"".join(datas), array("I", np.cumsum([0] + [len(d) for d in datas[:-1]]).tolist()),
        array("I", [len(d) for d in datas])).dport)]


def _mapped_bytes() -> int:
    """The process's virtual size: memory given back with a wrong size stays mapped."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * 4096


def test_column_memory_on_both_sides_of_the_mapped_size_is_reused_and_given_back():
    """Columns of 256 KiB or more are mapped (with their pages faulted in at once
    when every column is computed), smaller ones malloc'ed; spares of either
    kind are reused by the next Headers and given back with the right size.
    Batches of changing sizes, all columns or one group, columns kept past
    their Headers: the values stay right and the process does not grow."""
    rng = random.Random(11)
    pool = [P.build(P.random_spec(rng, v6_share=0.3, vlan_share=0.3)) for _ in range(400)]
    cases = {}
    for n in (300, 3000, 12000, 20000):          # ~35 KB, ~350 KB, ~1.4 and ~2.3 MB of columns
        datas = [pool[i % len(pool)] for i in range(n)]
        offs = array("I", np.cumsum([0] + [len(d) for d in datas[:-1]]).tolist())
        caps = array("I", [len(d) for d in datas])
        buf = b"".join(datas)
        cases[n] = (buf, offs, caps, all_at_once(inputs_of(buf, offs, caps, 1), n))
    kept = []

    def one_round(k):
        n = (300, 20000, 12000, 3000, 20000, 12000)[k % 6]   # a bigger spare for a smaller batch
        buf, offs, caps, want = cases[n]
        h = _headers.headers_of(inputs_of(buf, offs, caps, 1), n)
        if k % 3:
            assert np.asarray(h.dport).tobytes() == want["dport"]
        else:
            assert {name: np.asarray(c).tobytes() for name, c in h.columns().items()} == want
        if k % 7 == 0:
            kept.append((n, h.sport))                # an export outlives its Headers

    for k in range(30):                              # spares settle
        one_round(k)
    kept.clear()
    gc.collect()
    before = _mapped_bytes()
    for k in range(30, 330):
        one_round(k)
    for n, col in kept:
        assert np.asarray(col).tobytes() == cases[n][3]["sport"]
    kept.clear()
    gc.collect()
    assert _mapped_bytes() - before < 64 << 20      # 300 rounds of up to 2.3 MB each: no leak
