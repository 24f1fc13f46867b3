"""The savefile writers: exact bytes on disk, the flush policy, and bad arguments."""

from __future__ import annotations

import io
import struct
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.savefiles import frame
from zcap import _ring
from zcap.offline import open_offline
from zcap.savefile import open_writer

NS = 10**9
T0 = 1_700_000_000 * NS + 123_456_789


def records(raw: bytes, offset: int = 24) -> list[tuple[int, int, int, int, bytes]]:
    out = []
    while offset < len(raw):
        sec, frac, caplen, wirelen = struct.unpack_from("=IIII", raw, offset)
        out.append((sec, frac, caplen, wirelen, raw[offset + 16:offset + 16 + caplen]))
        offset += 16 + caplen
    assert offset == len(raw)
    return out


def blocks(raw: bytes) -> list[tuple[int, bytes]]:
    """(type, body) of each pcapng block, checking both length fields."""
    out, pos = [], 0
    while pos < len(raw):
        btype, blen = struct.unpack_from("=II", raw, pos)
        assert blen % 4 == 0 and struct.unpack_from("=I", raw, pos + blen - 4)[0] == blen
        out.append((btype, raw[pos + 8:pos + blen - 4]))
        pos += blen
    assert pos == len(raw)
    return out


def parse_options(body: bytes) -> dict[int, bytes]:
    out, pos = {}, 0
    while pos + 4 <= len(body):
        code, length = struct.unpack_from("=HH", body, pos)
        if code == 0:
            break
        out[code] = body[pos + 4:pos + 4 + length]
        pos += 4 + (length + 3) // 4 * 4
    return out


def test_pcap_nanosecond_file_layout(tmp_path):
    path = tmp_path / "ns.pcap"
    with open_writer(path, linktype=1, snaplen=1500) as w:
        w.write_raw(frame(0, 60), T0, 60)
        w.write_raw(frame(1, 100), T0 + 1, 1000)
    raw = path.read_bytes()
    assert struct.unpack_from("=IHHiIII", raw) == (0xA1B23C4D, 2, 4, 0, 0, 1500, 1)
    assert records(raw) == [(1_700_000_000, 123_456_789, 60, 60, frame(0, 60)),
                            (1_700_000_000, 123_456_790, 100, 1000, frame(1, 100))]
    assert w.packets_written == 2 and w.bytes_written == len(raw)


def test_pcap_microsecond_file_truncates_the_nanoseconds(tmp_path):
    path = tmp_path / "us.pcap"
    with open_writer(path, linktype=113, ts_resolution="us") as w:
        w.write_raw(b"abc", T0)
    raw = path.read_bytes()
    assert struct.unpack_from("=IHHiIII", raw) == (0xA1B2C3D4, 2, 4, 0, 0, 262144, 113)
    assert records(raw) == [(1_700_000_000, 123_456, 3, 3, b"abc")]


def test_pcapng_layout_interfaces_and_nanosecond_resolution(tmp_path):
    path = tmp_path / "x.pcapng"
    with open_writer(path, format="pcapng", linktype=1, snaplen=2000, if_name="veth-b") as w:
        w.write_raw(frame(0, 61), T0, 61)
        second = w.add_interface("any", 276, 128)
        assert second == 1
        w.write_raw(frame(1, 300), T0 + 5, 400, interface=1)   # cut to the snaplen
    parts = blocks(path.read_bytes())
    assert [t for t, _ in parts] == [0x0A0D0D0A, 1, 6, 1, 6]
    magic, major, minor, seclen = struct.unpack_from("=IHHq", parts[0][1])
    assert (magic, major, minor, seclen) == (0x1A2B3C4D, 1, 0, -1)
    for (_, body), (linktype, snaplen, name) in zip((parts[1], parts[3]),
                                                     ((1, 2000, b"veth-b"), (276, 128, b"any"))):
        assert struct.unpack_from("=HHI", body) == (linktype, 0, snaplen)
        opts = parse_options(body[8:])
        assert opts[2] == name and opts[9] == b"\x09"      # if_name, if_tsresol = 10^-9
    for (_, body), (ifid, data, wirelen) in zip((parts[2], parts[4]),
                                                ((0, frame(0, 61), 61), (1, frame(1, 128), 400))):
        got_if, high, low, caplen, wire = struct.unpack_from("=IIIII", body)
        assert (got_if, (high << 32) | low, caplen, wire) == (ifid, T0 + 5 * ifid, len(data), wirelen)
        assert body[20:20 + caplen] == data and body[20 + caplen:] == b"\0" * (-caplen & 3)


def test_pcapng_microsecond_resolution(tmp_path):
    path = tmp_path / "us.pcapng"
    with open_writer(path, format="pcapng", linktype=1, ts_resolution="us") as w:
        w.write_raw(b"x" * 20, T0)
    parts = blocks(path.read_bytes())
    assert parse_options(parts[1][1][8:])[9] == b"\x06"
    assert 2 not in parse_options(parts[1][1][8:])             # no name given, none written
    _, high, low, *_ = struct.unpack_from("=IIIII", parts[2][1])
    assert (high << 32) | low == T0 // 1000


def test_packets_are_written_from_their_buffer_with_their_metadata(tmp_path):
    path = tmp_path / "p.pcap"
    pkt = _ring.make_packet(bytearray(frame(3, 90)), ts_ns=T0, wirelen=1514, linktype=1)
    with open_writer(path, linktype=1) as w:
        w.write(pkt)
        w.write_raw(memoryview(frame(4, 64))[10:20], T0 + 1)     # any buffer; wirelen = len
    assert records(path.read_bytes()) == [(1_700_000_000, 123_456_789, 90, 1514, frame(3, 90)),
                                          (1_700_000_000, 123_456_790, 10, 10, frame(4, 64)[10:20])]


def test_a_packet_of_another_link_type_is_refused(tmp_path):
    pkt = _ring.make_packet(b"\0" * 40, ts_ns=T0, linktype=276)
    with open_writer(tmp_path / "f.pcapng", format="pcapng", linktype=1) as w:
        with pytest.raises(ValueError, match="linktype is 276.*add_interface"):
            w.write(pkt)
        w.write(pkt, interface=w.add_interface("any", 276))
        assert w.packets_written == 1


@pytest.mark.parametrize("call, error, match", [
    (lambda w: w.write_raw(b"abcd", T0, 3), ValueError, "wirelen 3 is smaller than the 4 bytes"),
    (lambda w: w.write_raw(b"abcd", -1), ValueError, "outside what pcap can hold"),
    (lambda w: w.write_raw(b"abcd", (1 << 32) * NS), ValueError, "outside what pcap can hold"),
    (lambda w: w.write_raw(b"abcd", 1.5), TypeError, "integer"),
    (lambda w: w.write_raw(b"abcd", T0, 1 << 32), ValueError, "32-bit"),
    (lambda w: w.write_raw(b"abcd", T0, interface=1), ValueError, "interface 1 does not exist"),
    (lambda w: w.add_interface("x", 1), AttributeError, "add_interface"),
])
def test_bad_writes_say_what_is_wrong(tmp_path, call, error, match):
    with open_writer(tmp_path / "f.pcap", linktype=1) as w:
        with pytest.raises(error, match=match):
            call(w)
        assert w.packets_written == 0
    assert (tmp_path / "f.pcap").stat().st_size == 24            # nothing half-written


@pytest.mark.parametrize("kwargs, match", [
    (dict(format="erf", linktype=1), "format must be 'pcap' or 'pcapng'"),
    (dict(linktype=1, ts_resolution="ms"), "ts_resolution must be 'ns' or 'us'"),
    (dict(linktype=70000), "linktype must be"),
    (dict(linktype=1, snaplen=0), "snaplen must be between 1 and 262144"),
    (dict(linktype=1, snaplen=262145), "snaplen must be between 1 and 262144"),
    (dict(linktype=1, flush_interval=-1), "flush_interval"),
])
def test_bad_options_are_refused_before_anything_is_written(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        open_writer(tmp_path / "f", **kwargs)


def test_a_closed_writer_refuses_writes(tmp_path):
    w = open_writer(tmp_path / "f.pcap", linktype=1)
    w.close()
    w.close()                                    # idempotent
    assert w.closed
    with pytest.raises(ValueError, match="closed"):
        w.write_raw(b"x", T0)


def test_pcapng_timestamps_are_unsigned(tmp_path):
    with open_writer(tmp_path / "f.pcapng", format="pcapng", linktype=1) as w:
        with pytest.raises(ValueError, match="before 1970"):
            w.write_raw(b"x", -1)


def test_a_file_object_is_flushed_but_left_open():
    buf = io.BytesIO()
    with open_writer(buf, linktype=1) as w:
        w.write_raw(b"\1" * 30, T0)
    assert not buf.closed and len(buf.getvalue()) == 24 + 16 + 30


class RecordingFile(io.RawIOBase):
    """A file that remembers every write() the writer makes, and may write short."""

    def __init__(self, short: int = 0) -> None:
        self.data = bytearray()
        self.calls: list[int] = []
        self.short = short

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        n = len(b) if not self.short else min(len(b), self.short)
        self.data += bytes(b[:n])
        self.calls.append(len(self.data))
        return n


def test_only_whole_records_reach_the_file():
    f = RecordingFile()
    w = open_writer(f, linktype=1, snaplen=200, buffer_size=1000, flush_interval=3600)
    boundaries = {24}
    end = 24
    for i in range(200):
        w.write_raw(frame(i, 20 + i % 90), T0 + i)
        end += 16 + 20 + i % 90
        boundaries.add(end)
    w.close()
    assert len(f.calls) > 10                         # the 1000-byte buffer filled many times
    assert set(f.calls) <= boundaries                # every write ended on a record boundary
    assert f.calls[-1] == end == len(f.data)


def test_a_short_write_is_completed_not_lost():
    f = RecordingFile(short=7)
    with open_writer(f, linktype=1) as w:
        w.write_raw(b"\2" * 50, T0)
    assert len(f.data) == 24 + 16 + 50
    assert records(bytes(f.data))[0][4] == b"\2" * 50


def test_the_buffer_holds_at_least_one_record_of_the_snaplen():
    f = RecordingFile()
    with open_writer(f, format="pcapng", linktype=1, snaplen=5000, buffer_size=10,
                     flush_interval=3600) as w:
        w.write_raw(b"\3" * 4999, T0)
        w.write_raw(b"\4" * 5000, T0)
    calls = f.calls
    assert [b - a for a, b in zip([0] + calls, calls)][1:] == [4999 + 1 + 32, 5000 + 32]


def test_flush_policy(tmp_path):
    path = tmp_path / "f.pcap"
    w = open_writer(path, linktype=1, flush_interval=3600)
    assert path.stat().st_size == 24                 # the header is written at open
    w.write_raw(b"\5" * 40, T0)
    assert path.stat().st_size == 24                 # buffered
    w.flush()
    assert path.stat().st_size == 24 + 56
    w.flush_interval = 0                             # like tcpdump -U: every packet
    w.write_raw(b"\6" * 40, T0)
    assert path.stat().st_size == 24 + 2 * 56
    w.close()


def test_flush_after_the_interval(tmp_path):
    import time
    path = tmp_path / "f.pcap"
    with open_writer(path, linktype=1, flush_interval=0.05) as w:
        w.write_raw(b"\7" * 10, T0)
        assert path.stat().st_size == 24
        time.sleep(0.06)
        w.write_raw(b"\7" * 10, T0)                  # the interval has passed: both go out
        assert path.stat().st_size == 24 + 2 * 26


def _kill_script(path, how: str) -> str:
    return f"""
import os, signal, sys
from zcap.savefile import open_writer
w = open_writer({str(path)!r}, format="pcapng", linktype=1, flush_interval=3600)
for i in range(1000):
    w.write_raw(bytes([i % 256]) * (60 + i % 7), {T0} + i)
    if i == 499:
        w.flush()
        print("flushed", flush=True)
{"os.kill(os.getpid(), signal.SIGKILL)" if how == "kill" else "raise SystemExit(3)"}
"""


def test_a_killed_writer_leaves_a_file_readable_to_the_last_flush(tmp_path):
    import subprocess
    path = tmp_path / "killed.pcapng"
    proc = subprocess.run([sys.executable, "-c", _kill_script(path, "kill")], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == -9 and proc.stdout == "flushed\n"
    with open_offline(path) as src:
        got = [(p.ts_ns, bytes(p)) for p in src]
    assert got == [(T0 + i, bytes([i % 256]) * (60 + i % 7)) for i in range(500)]


def test_a_writer_dropped_at_exit_flushes(tmp_path):
    import subprocess
    path = tmp_path / "exit.pcapng"
    proc = subprocess.run([sys.executable, "-c", _kill_script(path, "exit")], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    with open_offline(path) as src:
        assert sum(1 for _ in src) == 1000


def test_ctrl_c_inside_a_with_block_keeps_every_accepted_packet(tmp_path):
    import signal
    import subprocess
    import time
    path = tmp_path / "int.pcap"
    script = f"""
import sys, time
from zcap.savefile import open_writer
n = 0
with open_writer({str(path)!r}, linktype=1, flush_interval=3600) as w:
    try:
        while True:
            w.write_raw(n.to_bytes(8, "big") * 8, {T0} + n)
            n += 1
            if n == 1000:
                print("writing", flush=True)
    finally:
        print(w.packets_written, flush=True)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "writing\n"
        time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        accepted = int(proc.stdout.readline())
        assert proc.wait(30) == -signal.SIGINT       # died of the KeyboardInterrupt
    finally:
        proc.kill()
        proc.wait()
    with open_offline(path) as src:
        got = [bytes(p) for p in src]
    assert len(got) == accepted >= 1000
    assert all(g == i.to_bytes(8, "big") * 8 for i, g in enumerate(got))


packets = st.lists(st.tuples(st.binary(max_size=300), st.integers(0, (1 << 32) * NS - 1),
                             st.integers(0, 5000)), max_size=30)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(packets=packets, fmt=st.sampled_from(["pcap", "pcapng"]), res=st.sampled_from(["ns", "us"]),
       buffer_size=st.integers(1, 4000))
def test_what_is_written_reads_back(packets, fmt, res, buffer_size):
    f = io.BytesIO()
    with open_writer(f, format=fmt, linktype=101, snaplen=200, ts_resolution=res,
                     buffer_size=buffer_size) as w:
        for data, ts, extra in packets:
            w.write_raw(data, ts, len(data) + extra)
    f.seek(0)
    with open_offline(f) as src:
        got = [(bytes(p), p.ts_ns, p.wirelen, p.linktype, p.ifindex) for p in src]
    div = 1 if res == "ns" else 1000
    assert got == [(d[:200], ts // div * div, len(d) + extra, 101, 0) for d, ts, extra in packets]
