"""Hostile sizes in savefiles cost about what the input holds (issue 11, item 11).

Measured with tracemalloc (allocations, not time): deterministic on any machine.
"""

from __future__ import annotations

import struct
import tracemalloc

import pytest

import zcap
from tests.unit.savefiles import Trickle, epb, frame, idb, pcap, shb


def peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_pipe_claiming_a_200_mb_record_does_not_allocate_it():
    head = pcap([], snaplen=0x10000000)
    record = struct.pack("<IIII", 1, 0, 200_000_000, 200_000_000) + b"x" * 100
    stream = Trickle(head + record, 65536)          # not seekable: the size is unknown

    def read():
        with pytest.raises(zcap.TruncatedSavefileError, match="cut short"):
            with zcap.open_offline(stream) as src:
                list(src)

    assert peak_bytes(read) < 16 << 20


def test_millions_of_identical_interface_blocks_cost_little_each():
    n = 100_000
    data = shb() + idb(linktype=1, name="eth0") * n + epb("<", n - 1, 10**15, frame(7))
    got = []

    def read():
        with zcap.open_offline(Trickle(data, 1 << 20)) as src:
            got.extend((p.ifindex, bytes(p)) for p in src)
            assert len(src.interfaces) == n and src.interfaces[-1].name == "eth0"

    peak = peak_bytes(read)
    assert got == [(n - 1, frame(7))]
    assert peak < n * 200, f"{peak / n:.0f} bytes per interface block"


def test_a_filter_for_a_link_type_libpcap_does_not_know_is_a_filter_error(tmp_path):
    src = tmp_path / "odd.pcap"
    src.write_bytes(pcap([(10**18, 60, frame(1))], linktype=70000))
    with pytest.raises(zcap.FilterError, match=f"{src}.*'udp'.*70000"):
        zcap.open_offline(src, filter="udp")
