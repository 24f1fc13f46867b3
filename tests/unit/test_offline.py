"""open_offline(): every pcap and pcapng variant, the live capture's API, and chunking."""

from __future__ import annotations

import asyncio
import shutil
import struct
import time

import numpy as np
import pytest

import zcap
from tests.unit import savefiles as sf
from tests.unit.savefiles import Trickle, frame
from zcap.offline import OfflineCapture, open_offline

NS = 10**9
T0 = 1_600_000_000 * NS + 987_654_321


def read_all(source, **kw) -> list[tuple]:
    with open_offline(source, **kw) as src:
        return [(p.ts_ns, p.wirelen, bytes(p), int(p.linktype), p.ifindex) for p in src]


def as_file(tmp_path, data: bytes, name: str = "f"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nano", [True, False])
def test_classic_pcap_in_both_byte_orders_and_resolutions(tmp_path, order, nano):
    pkts = [(T0 + i * 1001, 60 + i, frame(i, 60)) for i in range(5)]
    path = as_file(tmp_path, sf.pcap(pkts, order=order, nano=nano, linktype=113, snaplen=60))
    with open_offline(path) as src:
        assert src.format == "pcap" and src.linktype == 113 and src.snaplen == 60
        assert src.interfaces == [(None, 113, 60, 10**9 if nano else 10**6)]
        got = [(p.ts_ns, p.wirelen, bytes(p), p.linktype, p.ifindex) for p in src]
    div = 1 if nano else 1000
    assert got == [(ts // div * div, wl, d, 113, 0) for ts, wl, d in pkts]


def test_modified_pcap_records_have_eight_more_bytes(tmp_path):
    pkts = [(T0 + i, 70, frame(i, 70)) for i in range(3)]
    assert read_all(as_file(tmp_path, sf.pcap(pkts, nano=False, modified=True))) == \
        [(ts // 1000 * 1000, wl, d, 1, 0) for ts, wl, d in pkts]


def test_pcapng_interfaces_resolutions_offsets_and_blocks(tmp_path):
    le = "<"
    data = b"".join([
        sf.shb(le, opts=sf.options(le, (4, b"test"))),
        sf.idb(le, 1, 0, name="eth0"),                               # default: microseconds
        sf.idb(le, 101, 128, name="raw", tsresol=9),
        sf.block(le, 4, b"\0" * 8),                                  # name resolution: skipped
        sf.idb(le, 276, 0, tsresol=3, tsoffset=100),                 # milliseconds, +100 s
        sf.idb(le, 113, 0, tsresol=0x80 | 10),                       # 2^-10 s
        sf.epb(le, 0, 1_600_000_000_123_456, frame(0, 60)),
        sf.epb(le, 1, T0, frame(1, 100), 1500),
        sf.block(le, 0x00000BAD, b"custom block body"),
        sf.epb(le, 2, 1_600_000_000_123, frame(2, 40)),
        sf.block(le, 5, b"\0" * 20),                                 # interface statistics
        sf.epb(le, 3, (1_600_000_000 << 10) + 1, frame(3, 44)),
        sf.block(le, 0x12345678, b""),                               # unknown type
    ])
    with open_offline(as_file(tmp_path, data)) as src:
        assert src.format == "pcapng" and src.linktype == 1 and src.snaplen == 262144
        got = list(src)
        assert src.interfaces == [("eth0", 1, 0, 10**6), ("raw", 101, 128, 10**9),
                                  (None, 276, 0, 10**3), (None, 113, 0, 2**10)]
    assert [(p.ts_ns, p.wirelen, bytes(p), p.linktype, p.ifindex) for p in got] == [
        (1_600_000_000_123_456_000, 60, frame(0, 60), 1, 0),
        (T0, 1500, frame(1, 100), 101, 1),
        ((1_600_000_000 + 100) * NS + 123_000_000, 40, frame(2, 40), 276, 2),
        (1_600_000_000 * NS + NS // 1024, 44, frame(3, 44), 113, 3),       # floor(1e9 / 2^10)
    ]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_timestamp_resolutions_and_offsets_convert_as_tshark_converts_them(tmp_path):
    le = "<"
    data = b"".join([
        sf.shb(le), sf.idb(le, tsresol=3, tsoffset=100), sf.idb(le, tsresol=0x80 | 10),
        sf.idb(le, tsresol=0x80 | 30, tsoffset=-7), sf.idb(le, tsresol=12), sf.idb(le, tsresol=0),
        sf.epb(le, 0, 1_600_000_000_123, frame(0)), sf.epb(le, 1, (1_600_000_000 << 10) + 1, frame(1)),
        sf.epb(le, 2, (1_600_000_000 << 30) + 12345, frame(2)),
        sf.epb(le, 3, 1_600_000_000_123_456_789, frame(3)), sf.epb(le, 4, 1_600_000_000, frame(4)),
    ])
    path = as_file(tmp_path, data, "resolutions.pcapng")
    with open_offline(path) as src:
        ours = [(p.ts_ns, p.wirelen, p.caplen, p.ifindex, bytes(p)) for p in src]
    assert ours == sf.tshark_packets(path)
    assert [ts for ts, *_ in ours] == [1_600_000_100_123_000_000, 1_600_000_000_000_976_562,
                                       1_599_999_993_000_011_497, 1_600_000_000_123_456,
                                       1_600_000_000 * NS]


def test_pcapng_sections_byte_orders_and_packet_block_kinds(tmp_path):
    data = b"".join([
        sf.shb("<"), sf.idb("<", 1, 0, tsresol=9),
        sf.epb("<", 0, T0, frame(0, 61)),
        sf.pb("<", 0, T0 - 1, frame(1, 33), 90),                     # obsolete Packet Block
        sf.shb(">"), sf.idb(">", 101, 50, name="second"), sf.idb(">", 1, 0),
        sf.spb(">", frame(2, 50), 400),                              # cut to if 0's snaplen
        sf.epb(">", 1, T0 // 1000 + 7, frame(3, 64)),
        sf.shb("<", version=(1, 2)), sf.idb("<", 228, 0),
        sf.spb("<", frame(4, 20)),
    ])
    with open_offline(as_file(tmp_path, data)) as src:
        got = [(p.ts_ns, p.wirelen, bytes(p), p.linktype, p.ifindex) for p in src]
        assert [i.name for i in src.interfaces] == [None, "second", None, None]
    assert got == [(T0, 61, frame(0, 61), 1, 0),
                   (T0 - 1, 90, frame(1, 33), 1, 0),
                   (0, 400, frame(2, 50), 101, 0),                   # an SPB has no timestamp
                   ((T0 // 1000 + 7) * 1000, 64, frame(3, 64), 1, 1),
                   (0, 20, frame(4, 20), 228, 0)]


def test_an_empty_pcapng_has_its_interface_and_no_packets(tmp_path):
    with open_offline(as_file(tmp_path, sf.shb() + sf.idb(snaplen=262144))) as src:
        assert src.linktype == 1 and src.next() is None and list(src) == []


def test_a_record_claiming_fewer_wire_bytes_than_it_holds_keeps_them_all(tmp_path):
    path = as_file(tmp_path, sf.pcap([(T0, 5, frame(0, 20))]))
    assert read_all(path) == [(T0, 20, frame(0, 20), 1, 0)]          # as tshark: caplen wins


def test_timestamps_beyond_int64_nanoseconds_are_clamped_and_counted(tmp_path):
    data = sf.shb() + sf.idb() + sf.epb("<", 0, (1 << 64) - 1, b"x" * 8) + sf.epb("<", 0, 5, b"y" * 8)
    with open_offline(as_file(tmp_path, data)) as src:
        assert [p.ts_ns for p in src] == [(1 << 63) - 1, 5000]
        assert src.clamped_timestamps == 1


# -- the capture API ----------------------------------------------------------

@pytest.fixture
def many(tmp_path):
    pkts = [(T0 + i * 1000, 64 + i % 50, frame(i, 64 + i % 50)) for i in range(3000)]
    return as_file(tmp_path, sf.pcap(pkts), "many.pcap"), pkts


def test_next_returns_none_at_the_end_and_stays_there(many):
    path, pkts = many
    with open_offline(path) as src:
        for ts, wl, data in pkts:
            p = src.next()
            assert (p.ts_ns, p.wirelen, bytes(p)) == (ts, wl, data)
        assert src.next() is None and src.next(timeout=1) is None
        assert list(src) == []


@pytest.mark.parametrize("chunk_size", [1, 7, 100, 4096, 1 << 20])
def test_any_chunk_size_reads_the_same(many, chunk_size):
    path, pkts = many
    assert read_all(path, chunk_size=chunk_size) == [(ts, wl, d, 1, 0) for ts, wl, d in pkts]


@pytest.mark.parametrize("step", [1, 3, 1000])
def test_short_reads_from_a_pipe(many, step):
    path, pkts = many
    data = path.read_bytes()
    with open_offline(Trickle(data, step), chunk_size=512) as src:
        got = [(p.ts_ns, p.wirelen, bytes(p)) for p in src]
    assert got == pkts


def test_packets_stay_valid_after_later_chunks_and_close(many):
    path, pkts = many
    src = open_offline(path, chunk_size=4096)
    first = [src.next() for _ in range(10)]
    views = [memoryview(p) for p in first]
    rest = list(src)
    src.close()
    assert src.closed and src.next() is None
    assert [bytes(v) for v in views] == [d for _, _, d in pkts[:10]]
    assert [bytes(p) for p in first + rest] == [d for _, _, d in pkts]


def test_batches_have_numpy_columns_that_match_the_packets(many):
    path, pkts = many
    with open_offline(path, chunk_size=1 << 16) as src:
        head = src.next()                                  # the rest of this chunk comes first
        batches = list(src.batches())
        st = src.stats()
    assert len(batches) > 1
    seen = [(head.ts_ns, head.wirelen, bytes(head))]
    for b in batches:
        buf = np.frombuffer(b.buffer, np.uint8)
        offsets = np.frombuffer(b.offsets, np.uint32)
        caplen = np.frombuffer(b.caplen, np.uint32)
        wirelen = np.frombuffer(b.wirelen, np.uint32)
        ts = np.frombuffer(b.ts_ns, np.int64)
        assert len(b) == len(offsets) == len(caplen) == len(wirelen) == len(ts) > 0
        assert b.valid and b.buffer.readonly and b.offsets.readonly
        rows = [(int(t), int(w), buf[o:o + c].tobytes()) for o, c, w, t in zip(offsets, caplen, wirelen, ts)]
        assert rows == [(p.ts_ns, p.wirelen, bytes(p)) for p in b]
        assert (b[0].ts_ns, b[-1].ts_ns) == (rows[0][0], rows[-1][0])
        seen += rows
    assert seen == pkts
    assert (st.mode, st.received, st.delivered, st.dropped, st.ready) == ("offline", 3000, 3000, 0, 0)
    assert st.blocks == len(batches)


def test_stats_count_what_was_read_and_handed_out(many):
    path, _ = many
    with open_offline(path, chunk_size=1 << 14) as src:
        src.next()
        st = src.stats()
        assert isinstance(st, zcap.Stats)
        assert (st.mode, st.delivered, st.ready, st.blocks, st.dropped) == ("offline", 1, 1, 1, 0)
        assert 1 < st.received < 3000                  # the packets of the chunk read so far
        assert sum(1 for _ in src) == 2999
        st = src.stats()
        assert (st.received, st.delivered, st.ready) == (3000, 3000, 0) and st.blocks > 1


def test_breakloop_ends_the_current_iteration(many):
    path, _ = many
    with open_offline(path) as src:
        n = 0
        for _ in src:
            n += 1
            if n == 10:
                src.breakloop()
        assert n == 10
        assert src.next() is not None                  # later reads go on


def test_async_iteration_keeps_other_tasks_running(many):
    path, pkts = many

    async def main():
        ticks = 0
        done = False

        async def ticker():
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        async with open_offline(path) as src:
            src.budget_us = 0                          # yield at every clock check
            got = [bytes(p) async for p in src]
            assert await src.anext() is None
        done = True
        await task
        return got, ticks

    got, ticks = asyncio.run(main())
    assert got == [d for _, _, d in pkts]
    assert ticks >= len(pkts) // 64



def test_async_reading_yields_when_an_asyncio_timer_falls_due(many):
    """A slice ends when the loop's earliest timer is due, not only after
    budget_us (asyncio's loops, whose timers zcap can see)."""
    path, _ = many

    async def main():
        loop = asyncio.get_running_loop()
        fired = []
        async with open_offline(path) as src:
            src.budget_us = 200_000                    # 200 ms slices
            due = loop.time() + 0.02
            loop.call_at(due, lambda: fired.append(loop.time()))
            n = 0
            async for _p in src:
                n += 1
                time.sleep(0.0002)                     # 0.2 ms per packet
                if fired or n == 2000:
                    break
        assert fired, f"the timer did not run during {n} packets"
        return fired[0] - due

    late = asyncio.new_event_loop().run_until_complete(main())
    # a slice that ran its whole budget kept the timer waiting ~180 ms
    assert late < 0.05, f"the timer ran {late * 1000:.1f} ms late"

def test_async_batches(many):
    path, pkts = many

    async def main():
        with open_offline(path, chunk_size=1 << 15) as src:
            return [bytes(p) async for b in src.batches() for p in b]

    assert asyncio.run(main()) == [d for _, _, d in pkts]


def test_filters_run_in_user_space_like_libpcap(many):
    from zcap import FilterError, bpf
    path, pkts = many
    for expr in ("len > 100", "greater 300", "ether[0] & 1 = 0", "not len > 100"):
        prog = bpf.compile_filter(expr)
        expected = [d for _, wl, d in pkts if bpf.libpcap_filter(prog, d, wl)]
        with open_offline(path, filter=expr) as src:
            assert [bytes(p) for p in src] == expected
            st = src.stats()
        assert (st.received, st.delivered, st.filtered) == (len(pkts), len(expected),
                                                            len(pkts) - len(expected))
    with open_offline(path, filter=prog.instructions) as src:       # a raw program
        assert len(list(src)) == len([d for _, wl, d in pkts if bpf.libpcap_filter(prog, d, wl)])
    with pytest.raises(FilterError, match="99999"):
        open_offline(path, filter="udp port 99999")


def test_the_filter_hook_drops_records_before_they_count(many):
    # the one place a predicate applies; open_offline will pass zcap.bpf's
    path, pkts = many
    with open(path, "rb") as f:
        src = OfflineCapture(f, source="many", close_file=False, chunk_size=5000, on_truncated="raise",
                             filter=lambda data, wirelen, linktype: wirelen % 2 == 0 and len(data) == wirelen)
        got = [bytes(p) for p in src]
        st = src.stats()
    assert got == [d for _, wl, d in pkts if wl % 2 == 0]
    assert (st.received, st.delivered) == (len(pkts), len(got))
    if hasattr(st, "filtered"):
        assert st.filtered == len(pkts) - len(got)


def test_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="path or a binary file object"):
        open_offline(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_truncated"):
        open_offline(tmp_path / "x", on_truncated="ignore")
    for size in (0, (256 << 20) + 1):
        with pytest.raises(ValueError, match="chunk_size must be between 1 and 268435456"):
            open_offline(tmp_path / "x", chunk_size=size)
    with pytest.raises(FileNotFoundError):
        open_offline(tmp_path / "missing.pcap")


def test_a_file_object_is_left_open(many):
    with open(many[0], "rb") as f:
        with open_offline(f) as src:
            assert src.next() is not None
        assert not f.closed


def test_struct_layouts_match_the_builder():
    # a guard for the tests themselves: the builder writes what the formats say
    assert sf.pcap([])[:4] == struct.pack("<I", 0xA1B23C4D)
    assert len(sf.epb("<", 0, 0, b"abc")) == 32 + 4
