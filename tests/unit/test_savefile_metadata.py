"""pcapng metadata zcap writes (section, interfaces, statistics, packet flags) and appending.

Each is checked in the bytes, and by tshark / capinfos where they are
installed, since readers showing it is the point.
"""

from __future__ import annotations

import platform
import shutil
import struct
import subprocess

import pytest

import zcap
from zcap._ring import make_packet
from zcap.savefile import open_writer

T0 = 1_700_000_000_123_456_789
needs_capinfos = pytest.mark.skipif(shutil.which("capinfos") is None, reason="capinfos is not installed")
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")


def blocks(raw: bytes) -> list[tuple[int, bytes]]:
    out, pos = [], 0
    while pos < len(raw):
        btype, blen = struct.unpack_from("=II", raw, pos)
        out.append((btype, raw[pos + 8:pos + blen - 4]))
        pos += blen
    return out


def options(body: bytes) -> dict[int, bytes]:
    out, pos = {}, 0
    while pos + 4 <= len(body):
        code, length = struct.unpack_from("=HH", body, pos)
        if code == 0:
            break
        out[code] = body[pos + 4:pos + 4 + length]
        pos += 4 + ((length + 3) & ~3)
    return out


def frame(i: int, size: int = 60) -> bytes:
    return bytes([i & 0xFF]) * size


def test_section_and_interface_options(tmp_path):
    path = tmp_path / "meta.pcapng"
    with open_writer(path, format="pcapng", linktype=1, snaplen=1500, if_name="eth7",
                     if_description="uplink", if_filter="tcp port 443", comment="maintenance window"):
        pass
    (shb_t, shb), (idb_t, idb) = blocks(path.read_bytes())
    assert (shb_t, idb_t) == (0x0A0D0D0A, 1)
    shb_opts = options(shb[16:])
    assert shb_opts[1] == b"maintenance window"
    assert shb_opts[2] == platform.machine().encode()
    assert shb_opts[3].startswith(b"Linux ") and shb_opts[4].startswith(b"zcap ")
    assert struct.unpack_from("=HHI", idb) == (1, 0, 1500)
    idb_opts = options(idb[8:])
    assert idb_opts[2] == b"eth7" and idb_opts[3] == b"uplink" and idb_opts[9] == b"\x09"
    assert idb_opts[11] == b"\x00tcp port 443"          # if_filter: a libpcap expression


def test_statistics_block(tmp_path):
    path = tmp_path / "isb.pcapng"
    with open_writer(path, format="pcapng", linktype=1, ts_resolution="us") as w:
        w.write_raw(frame(0), T0)
        w.write_statistics(0, start_ns=T0 - 5_000_000_000, end_ns=T0 + 1_000_000, received=12,
                           dropped=3, delivered=9)
    parts = blocks(path.read_bytes())
    assert [t for t, _ in parts] == [0x0A0D0D0A, 1, 6, 5]
    body = parts[3][1]
    ifid, high, low = struct.unpack_from("=III", body)
    assert ifid == 0 and (high << 32 | low) == (T0 + 1_000_000) // 1000
    opts = options(body[12:])
    start = struct.unpack("=II", opts[2])
    assert (start[0] << 32 | start[1]) == (T0 - 5_000_000_000) // 1000
    assert [struct.unpack("=Q", opts[c])[0] for c in (4, 5, 8)] == [12, 3, 9]
    with pytest.raises(ValueError, match="interface 1 does not exist"):
        with open_writer(tmp_path / "x.pcapng", format="pcapng", linktype=1) as w:
            w.write_statistics(1)


def test_direction_flags_are_written_and_file_packets_get_none(tmp_path):
    path = tmp_path / "flags.pcapng"
    flags = [1 | 1 << 2, 1 | 3 << 2, 1 | 2 << 2, 1 | 4 << 2, 2]
    with open_writer(path, format="pcapng", linktype=1) as w:
        for i, f in enumerate(flags):
            w.write_raw(frame(i, 61), T0, flags=f)
        # packets read from a file have no kernel packet type: no flags, whatever their
        # interface number (a live packet's flags come from its pkttype: tests/live)
        w.write(make_packet(frame(9, 61), ts_ns=T0, ifindex=3, pkttype=4))
    epbs = [body for t, body in blocks(path.read_bytes()) if t == 6]
    for body, f in zip(epbs, flags):
        caplen = struct.unpack_from("=I", body, 12)[0]
        assert options(body[20 + caplen + (-caplen & 3):]) == {2: struct.pack("=I", f)}
    assert len(epbs[-1]) == 20 + 64                              # no options at all
    with zcap.open_offline(path) as src:                         # zcap reads it back intact
        got = [(bytes(p), p.pkttype, p.direction) for p in src]
    assert [g[0] for g in got] == [frame(i, 61) for i in range(5)] + [frame(9, 61)]
    P, D = zcap.PacketType, zcap.Direction                       # and the flags as packet types
    assert [g[1:] for g in got] == [(P.HOST, D.IN), (P.BROADCAST, D.IN), (P.MULTICAST, D.IN),
                                    (P.OTHERHOST, D.IN), (P.OUTGOING, D.OUT), (P.HOST, D.IN)]


@needs_tshark
def test_tshark_shows_flags_and_interfaces(tmp_path):
    path = tmp_path / "multi.pcapng"
    with open_writer(path, format="pcapng", linktype=276, if_name="any", if_filter="udp") as w:
        a = w.add_interface("veth-a", 276, filter="udp")
        b = w.add_interface("veth-b", 276, filter="udp")
        sll2 = struct.pack("!HHIHBB8s", 0x0800, 0, 0, 1, 0, 6, b"")
        w.write_raw(sll2 + frame(1, 28), T0, interface=a, flags=2)
        w.write_raw(sll2 + frame(2, 28), T0 + 1, interface=b, flags=1 | 1 << 2)
    out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.interface_name",
                          "-e", "frame.packet_flags_direction"], capture_output=True, text=True,
                         timeout=60).stdout.split("\n")
    assert [line.split("\t") for line in out if line] == [["veth-a", "0x00000002"],
                                                          ["veth-b", "0x00000001"]]


@needs_capinfos
def test_capinfos_shows_the_metadata(tmp_path):
    path = tmp_path / "c.pcapng"
    with open_writer(path, format="pcapng", linktype=1, if_name="eth7", if_description="uplink",
                     if_filter="udp", comment="hello") as w:
        w.write_raw(frame(1), T0)
        w.write_statistics(0, received=1, dropped=0)
    text = subprocess.run(["capinfos", str(path)], capture_output=True, text=True, timeout=60).stdout
    for line in ("Capture comment:     hello", "Capture application: zcap", "Capture oper-sys:    Linux",
                 "Name = eth7", "Description = uplink", "Filter string = udp",
                 "Number of stat entries = 1"):
        assert line in text, line


# -- appending ------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
@pytest.mark.parametrize("resolution", ["us", "ns"])
def test_append_continues_a_file(tmp_path, fmt, resolution):
    path = tmp_path / f"a.{fmt}"
    with open_writer(path, format=fmt, linktype=1, snaplen=1000, ts_resolution=resolution) as w:
        w.write_raw(frame(1), T0)
    # the file's own resolution wins over the one asked for
    with open_writer(path, format=fmt, linktype=1, snaplen=1000, append=True,
                     ts_resolution="ns" if resolution == "us" else "us") as w:
        w.write_raw(frame(2), T0 + 1_000)
        w.write_raw(frame(3), T0 + 2_000)
    with zcap.open_offline(path) as src:
        got = [(bytes(p), p.ts_ns) for p in src]
    unit = 1000 if resolution == "us" else 1
    assert got == [(frame(i + 1), (T0 + i * 1000) // unit * unit) for i in range(3)]
    if fmt == "pcapng":
        assert [t for t, _ in blocks(path.read_bytes())] == [0x0A0D0D0A, 1, 6, 6, 6]


def test_append_creates_a_missing_file(tmp_path):
    path = tmp_path / "new.pcap"
    with open_writer(path, linktype=1, append=True) as w:
        w.write_raw(frame(1), T0)
    with zcap.open_offline(path) as src:
        assert [bytes(p) for p in src] == [frame(1)]


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_append_refuses_what_does_not_agree(tmp_path, fmt):
    path = tmp_path / f"b.{fmt}"
    with open_writer(path, format=fmt, linktype=1, snaplen=1000) as w:
        w.write_raw(frame(1), T0)
    before = path.read_bytes()
    other = "pcapng" if fmt == "pcap" else "pcap"
    for kw, text in ((dict(format=fmt, linktype=276, snaplen=1000), "link type is 1, this capture's is 276"),
                     (dict(format=fmt, linktype=1, snaplen=2000), "snaplen is 1000, this capture's is 2000"),
                     (dict(format=other, linktype=1, snaplen=1000), f"format is {fmt}")):
        with pytest.raises(ValueError, match=text):
            open_writer(path, append=True, **kw)
    path.write_bytes(before[:-5])                                # cut inside the last record
    with pytest.raises(ValueError, match="cut short"):
        open_writer(path, format=fmt, linktype=1, snaplen=1000, append=True)
    assert path.read_bytes() == before[:-5]                      # untouched
    (tmp_path / "junk").write_bytes(b"not a capture file at all")
    with pytest.raises(ValueError, match="not a pcap or pcapng file"):
        open_writer(tmp_path / "junk", format=fmt, linktype=1, append=True)


def test_command_appends_and_refuses(tmp_path):
    import sys
    src = tmp_path / "src.pcap"
    with open_writer(src, linktype=1, snaplen=262144, ts_resolution="us") as w:
        for i in range(3):
            w.write_raw(frame(i), T0 + i * 1000)
    out = tmp_path / "out.pcap"
    for _ in range(2):
        r = subprocess.run([sys.executable, "-m", "zcap", "-r", str(src), "-w", str(out), "-a"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
    with zcap.open_offline(out) as f:
        assert [bytes(p) for p in f] == [frame(i) for i in range(3)] * 2
    r = subprocess.run([sys.executable, "-m", "zcap", "-r", str(src), "-w", str(out), "-a",
                        "--format", "pcapng"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 7 and "cannot append" in r.stderr and "Traceback" not in r.stderr


def test_zcap_reads_the_metadata_back(tmp_path):
    path = tmp_path / "back.pcapng"
    with open_writer(path, format="pcapng", linktype=1, snaplen=1500, if_name="eth7",
                     if_description="uplink", if_filter="udp", comment="hello") as w:
        w.write_raw(frame(1), T0)
        w.write_statistics(0, start_ns=T0 - 10**9, end_ns=T0 + 10**9, received=5, dropped=2, delivered=1)
    with zcap.open_offline(path) as src:
        assert [bytes(p) for p in src] == [frame(1)]
        (section,) = src.sections
        assert section.comment == "hello" and section.application.startswith("zcap ")
        assert section.os.startswith("Linux ") and section.hardware == platform.machine()
        (iface,) = src.interfaces
        assert (iface.name, iface.snaplen) == ("eth7", 1500)
        assert src.interface_metadata == [("uplink", "udp")]
        (st,) = src.statistics
        assert st == (0, T0 + 10**9, T0 - 10**9, T0 + 10**9, 5, 2, 1)
    # a statistics block for an interface the section does not have is skipped, not fatal
    raw = bytearray(path.read_bytes())
    isb_at = len(raw) - struct.unpack_from("=I", raw, len(raw) - 4)[0]
    struct.pack_into("=I", raw, isb_at + 8, 7)
    path.write_bytes(bytes(raw))
    with zcap.open_offline(path) as src:
        assert [bytes(p) for p in src] == [frame(1)] and src.statistics == []


@pytest.mark.parametrize("count, names", [(1, ["r.pcap"]), (3, ["r.pcap0", "r.pcap1", "r.pcap2"]),
                                          (11, [f"r.pcap{i:02d}" for i in range(11)])])
def test_ring_of_files_is_named_as_tcpdump_names_it(tmp_path, count, names):
    """-W N with -C: numbers padded to the width of N-1, the oldest file overwritten."""
    from zcap.dumper import Dumper
    d = Dumper(str(tmp_path / "r.pcap"), format="pcap", linktype=1, snaplen=262144, nano=False,
               if_name=None, file_size=100, file_count=count)
    total = 2 * count + 1
    for i in range(total):
        d.write(make_packet(frame(i, 120), ts_ns=T0 + i))       # each file holds one packet
    d.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    assert d.files == [str(tmp_path / names[i % count]) for i in range(total)]
    with zcap.open_offline(tmp_path / names[(total - 1) % count]) as src:
        assert [bytes(p) for p in src] == [frame(total - 1, 120)]   # the newest survived
