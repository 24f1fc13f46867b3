"""Malformed and truncated savefiles: a specific error naming the byte offset, never a crash.

Every packet before the bad spot is delivered first (as tcpdump prints
them before "truncated dump file"), the error is sticky, and no length read
from the file is allocated before it is checked.
"""

from __future__ import annotations

import io
import pickle
import struct
import tracemalloc

import pytest

from tests.unit import savefiles as sf
from tests.unit.savefiles import frame
from zcap.errors import SavefileError, TruncatedSavefileError, ZcapError
from zcap.offline import open_offline

T0 = 1_600_000_000 * 10**9
GOOD = sf.pcap([(T0 + i, 60, frame(i)) for i in range(3)])        # 24 + 3 * 76 bytes
LE = "<"
NG_HEAD = sf.shb(LE) + sf.idb(LE, 1, 0)                             # 28 + 20 bytes


def failure(tmp_path, data: bytes, **kw) -> tuple[list[bytes], SavefileError]:
    """The packets read before the error, and the error."""
    path = tmp_path / "bad"
    path.write_bytes(data)
    got: list[bytes] = []
    with pytest.raises(SavefileError) as info:
        with open_offline(path, **kw) as src:
            for p in src:
                got.append(bytes(p))
    return got, info.value


@pytest.mark.parametrize("data, offset, cls, text", [
    (b"", 0, TruncatedSavefileError, "the file holds 0 bytes, fewer than the 4 of a pcap or pcapng magic"),
    (GOOD[:10], 0, TruncatedSavefileError, "the file ends inside the 24-byte pcap file header"),
    (b"GIF89a" + bytes(40), 0, SavefileError, "the file starts with bytes 47 49 46 38, neither a pcap "
                                              "magic number"),
    (GOOD[:4] + struct.pack("<HH", 1, 4) + GOOD[8:], 0, SavefileError,
     "unsupported pcap version 1.4 (an archaic format)"),
    (GOOD[:4] + struct.pack("<HH", 2, 2) + GOOD[8:], 0, SavefileError, "unsupported pcap version 2.2"),
    (GOOD[:4] + struct.pack("<HH", 3, 0) + GOOD[8:], 0, SavefileError, "unsupported pcap version 3.0"),
    (sf.shb(LE, version=(2, 0)), 0, SavefileError, "unsupported pcapng version 2.0"),
    (sf.shb(LE, version=(0, 1)), 0, SavefileError, "unsupported pcapng version 0.1"),
    (sf.shb(LE)[:8] + b"\xde\xad\xbe\xef" + sf.shb(LE)[12:], 0, SavefileError,
     "section header block with byte-order magic de ad be ef, neither 1a 2b 3c 4d nor 4d 3c 2b 1a"),
    (sf.shb(LE)[:24] + struct.pack("<I", 29), 0, SavefileError,
     "section header block whose total length is 28 bytes in its header but 29 in its trailer"),
    (sf.shb(LE, opts=struct.pack("<HH", 3, 100) + b"abcd"), 16 + 8, SavefileError,
     "option 3 of 100 bytes, more than the 4 bytes left"),
], ids=["empty", "cut-header", "not-pcap", "pcap-1.4", "pcap-2.2", "pcap-3.0", "pcapng-2.0",
        "pcapng-0.1", "bad-bom", "trailer", "option-overrun"])
def test_bad_before_the_first_packet_raises_at_open(tmp_path, data, offset, cls, text):
    got, err = failure(tmp_path, data)
    assert got == [] and type(err) is cls and err.offset == offset
    assert f"at byte offset {offset}: {text}" in str(err)


def block_header_error(btype: int, blen: int) -> bytes:
    """A block header claiming `blen` bytes, followed by a few (not blen) bytes."""
    return struct.pack("<II", btype, blen) + bytes(max(min(blen, 64), 24) - 8)


@pytest.mark.parametrize("tail, text", [
    (block_header_error(6, 28), "enhanced packet block with a total length of 28 bytes, smaller than "
                                "its 32-byte minimum"),
    (block_header_error(3, 12), "simple packet block with a total length of 12 bytes, smaller than its "
                                "16-byte minimum"),
    (block_header_error(7, 22), "block of type 0x00000007 with a total length of 22 bytes, not a "
                                "multiple of 4"),
    (block_header_error(6, 0xFFFFFFF0), "enhanced packet block with a total length of 4294967280 bytes, "
                                        "over zcap's 268435456-byte limit"),
    (sf.block(LE, 6, bytes(24), trailer=40), "enhanced packet block whose total length is 36 bytes in "
                                             "its header but 40 in its trailer"),
    (sf.epb(LE, 1, 0, b"abc"), "enhanced packet block for interface 1, but its section has 1 interface "
                               "before it"),
    (sf.epb(LE, 0, 0, b"abcd", caplen=5),
     "enhanced packet block with a captured length of 5 bytes, more than the 4 bytes its block holds"),
    (sf.epb(LE, 0, 0, bytes(262145)),
     "enhanced packet block with a captured length of 262145 bytes, more than the 262144-byte maximum "
     "for its interface (snaplen 0)"),
    (sf.idb(LE, tsresol=20), "if_tsresol 10^-20 is finer than zcap supports"),
    (sf.idb(LE, tsresol=0x80 | 64), "if_tsresol 2^-64 is finer than zcap supports"),
    (sf.shb(LE, version=(2, 0)), "unsupported pcapng version 2.0"),
    (sf.shb(LE) + sf.spb(LE, b"abc"), "simple packet block for interface 0, but its section has 0 "
                                      "interfaces before it"),
], ids=["epb-short", "spb-short", "not-multiple-of-4", "over-limit", "trailer", "no-such-interface",
        "caplen-over-block", "caplen-over-max", "tsresol-10", "tsresol-2", "version", "spb-no-interface"])
def test_pcapng_errors_after_packets(tmp_path, tail, text):
    first = sf.epb(LE, 0, 5, frame(0, 60))
    got, err = failure(tmp_path, NG_HEAD + first + tail)
    offset = len(NG_HEAD + first)
    if "interfaces before it" in text and tail.startswith(sf.shb(LE)):
        offset += len(sf.shb(LE))
    if "if_tsresol" in text:
        offset += 16                                   # the option inside the IDB
    assert got == [frame(0, 60)] and type(err) is SavefileError
    assert err.offset == offset and f"at byte offset {offset}: {text}" in str(err), str(err)


def test_a_pcap_record_beyond_every_snaplen_is_corrupt(tmp_path):
    data = GOOD + struct.pack("<IIII", 0, 0, 300000, 300000) + bytes(300000)
    got, err = failure(tmp_path, data)
    assert len(got) == 3 and type(err) is SavefileError and err.offset == len(GOOD)
    assert "captured length of 300000 bytes, more than the 262144-byte maximum for a file with " \
           "snaplen 65535" in str(err)


@pytest.mark.parametrize("cut, what, have, need", [
    (len(GOOD) - 1, "packet record", 75, 76),
    (len(GOOD) - 60, "packet record", 16, 76),
    (len(GOOD) - 70, "packet record header", 6, 16),
])
def test_a_cut_pcap_delivers_what_is_whole_then_says_where_it_ends(tmp_path, cut, what, have, need):
    got, err = failure(tmp_path, GOOD[:cut])
    assert got == [frame(0), frame(1)] and type(err) is TruncatedSavefileError
    assert err.offset == 24 + 2 * 76
    assert f"the file ends inside this {what}: {have} of its {need} bytes are there" in str(err)


def test_dpkt_style_cut_record_header(tmp_path):
    got, err = failure(tmp_path, GOOD + b"\0" * 7)
    assert len(got) == 3 and err.offset == len(GOOD)
    assert "inside this packet record header: 7 of its 16 bytes" in str(err)


def test_a_cut_pcapng_block(tmp_path):
    whole = NG_HEAD + sf.epb(LE, 0, 1, frame(1)) + sf.epb(LE, 0, 2, frame(2))
    got, err = failure(tmp_path, whole[:-5])
    assert got == [frame(1)] and isinstance(err, TruncatedSavefileError)
    assert err.offset == len(NG_HEAD) + 92 and "enhanced packet block: 87 of its 92 bytes" in str(err)
    got, err = failure(tmp_path, whole + b"\x06\0\0\0")
    assert len(got) == 2 and "inside this block header: 4 of its 12 bytes" in str(err)
    got, err = failure(tmp_path, sf.shb(LE)[:10])
    assert got == [] and err.offset == 0 and "inside this block header: 10 of its 12 bytes" in str(err)


def test_stop_at_a_truncated_record_instead_of_raising(tmp_path):
    path = tmp_path / "cut.pcap"
    path.write_bytes(GOOD[:-1])
    with open_offline(path, on_truncated="stop") as src:
        assert [bytes(p) for p in src] == [frame(0), frame(1)]
        assert src.truncated_at == 24 + 2 * 76 and src.next() is None
    with open_offline(io.BytesIO(GOOD)) as src:
        assert len(list(src)) == 3 and src.truncated_at is None


def test_the_error_is_sticky(tmp_path):
    path = tmp_path / "cut.pcap"
    path.write_bytes(GOOD[:-1])
    with open_offline(path) as src:
        assert src.next() is not None and src.next() is not None
        for _ in range(2):
            with pytest.raises(TruncatedSavefileError):
                src.next()
        with pytest.raises(TruncatedSavefileError):
            src.next_batch()


@pytest.mark.parametrize("data", [
    GOOD + struct.pack("<IIII", 0, 0, 200 << 20, 200 << 20),                  # pcap, huge snaplen
    NG_HEAD + struct.pack("<II", 6, 200 << 20) + bytes(40),                    # pcapng block
])
def test_a_huge_length_in_a_small_file_is_not_allocated(tmp_path, data):
    if data.startswith(GOOD[:4]):
        data = data[:16] + struct.pack("<I", 0xFFFFFFFF) + data[20:]         # snaplen: no limit
    path = tmp_path / "huge"
    path.write_bytes(data)
    tracemalloc.start()
    try:
        with pytest.raises(TruncatedSavefileError, match="its 2097152.. bytes|of its 20971"):
            with open_offline(path) as src:
                list(src)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20                      # one 1 MiB chunk, not 200 MiB


def test_errors_are_zcap_errors_and_value_errors_and_pickle():
    err = TruncatedSavefileError("f: at byte offset 7: cut", 7)
    assert isinstance(err, ZcapError) and isinstance(err, ValueError)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is TruncatedSavefileError and back.offset == 7 and str(back) == str(err)
