"""Savefiles against the real tools: what zcap writes, tcpdump and tshark read; what they write, zcap reads.

Traffic runs on the test's private veth pair only.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.live.conftest import collect_until_idle, open_on
from tests.live.reference import Tcpdump, read_pcap
from tests.unit.savefiles import epoch_ns, like_tcpdump, tshark_packets, unexpected_stderr
from zcap.offline import open_offline
from zcap.savefile import open_writer

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None or shutil.which("tcpdump") is None,
                                reason="tcpdump and tshark are needed (scripts/setup.sh installs them)")

FORMATS = [pytest.param(("pcap", "ns"), id="pcap-ns"), pytest.param(("pcap", "us"), id="pcap-us"),
           pytest.param(("pcapng", "ns"), id="pcapng-ns"), pytest.param(("pcapng", "us"), id="pcapng-us")]
COUNT = 60


def frames(tb, count: int = COUNT) -> list[bytes]:
    """Numbered UDP frames of many sizes (64..~520 bytes)."""
    return [tb.frame(64 + (i * 37) % 460, seq=i) for i in range(count)]


def capture_to_file(tb, path: Path, fmt: str, res: str, **capture_options) -> list[tuple[int, int, bytes]]:
    """Capture the test frames with zcap, writing each packet straight from the ring to `path`."""
    seen = []
    with open_on(tb, **capture_options) as cap:
        with open_writer(path, format=fmt, linktype=cap.linktype, snaplen=cap.snaplen,
                         ts_resolution=res, if_name=tb.b) as w:
            with tb.sender() as s:
                s.send_all(frames(tb))
            while (pkt := cap.next(timeout=0.5)) is not None:
                w.write(pkt)
                seen.append((pkt.ts_ns, pkt.wirelen, bytes(pkt)))
    assert len(seen) == COUNT
    return seen


def floor_us(ts: int, res: str) -> int:
    return ts if res == "ns" else ts // 1000 * 1000


def tcpdump_read(path: Path) -> tuple[list[int], list[str]]:
    """Nanosecond timestamps and summaries of `tcpdump -r`, which must not complain."""
    out = subprocess.run(["tcpdump", "-r", str(path), "-n", "-S", "-tt", "--time-stamp-precision=nano"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and not unexpected_stderr(out.stderr), out.stderr
    lines = out.stdout.splitlines()
    return [epoch_ns(line.split(" ", 1)[0]) for line in lines], [line.split(" ", 1)[1] for line in lines]


@pytest.mark.parametrize("kind", FORMATS)
def test_files_zcap_writes_read_cleanly_in_tcpdump_and_tshark(testbed, tmp_path, kind):
    fmt, res = kind
    path = tmp_path / f"zcap.{fmt}"
    # a snaplen below most frames: captured length and wire length differ
    seen = capture_to_file(testbed, path, fmt, res, snaplen=200)
    assert any(wl > len(d) for _, wl, d in seen) and any(wl == len(d) for _, wl, d in seen)

    stamps, summaries = tcpdump_read(path)
    assert stamps == [floor_us(ts, res) for ts, _, _ in seen]
    with open_offline(path) as src:
        ours = [p.summary() for p in src]
    assert len(ours) == len(summaries) == COUNT
    assert all(like_tcpdump(mine, line) for mine, line in zip(ours, summaries))

    theirs = tshark_packets(path)
    assert theirs == [(floor_us(ts, res), wl, len(d), 0, d) for ts, wl, d in seen]


def test_a_pcapng_with_both_ends_of_the_pair(testbed, tmp_path):
    """Two captures, one file: an IDB per interface with its name; tshark sees which is which."""
    path = tmp_path / "both.pcapng"
    with open_on(testbed, testbed.a, direction="out") as out_cap, open_on(testbed, testbed.b) as in_cap:
        with open_writer(path, format="pcapng", linktype=in_cap.linktype, if_name=testbed.b) as w:
            w.add_interface(testbed.a, out_cap.linktype, out_cap.snaplen)
            with testbed.sender() as s:
                s.send_all(frames(testbed, 20))
            written = []
            for ifid, cap in ((0, in_cap), (1, out_cap)):
                for pkt in collect_until_idle(cap, idle=0.3, keep=lambda p: p):
                    w.write(pkt, interface=ifid)
                    written.append((pkt.ts_ns, ifid, bytes(pkt)))
    assert len(written) == 40
    theirs = tshark_packets(path)
    assert [(ts, ifid, data) for ts, _, _, ifid, data in theirs] == written
    names = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.interface_name"],
                           capture_output=True, text=True, timeout=60).stdout.split()
    assert names == [testbed.b] * 20 + [testbed.a] * 20
    with open_offline(path) as src:
        assert [(p.ts_ns, p.ifindex, bytes(p)) for p in src] == written
        assert [i.name for i in src.interfaces] == [testbed.b, testbed.a]


def _tcpdump_file(ref: Tcpdump, dest: Path) -> list[tuple[int, int, bytes]]:
    """Let the reference tcpdump finish, keep its file at `dest`, and return its packets."""
    try:
        ref.proc.wait(10)
    except subprocess.TimeoutExpired:
        ref.proc.send_signal(signal.SIGINT)
        ref.proc.wait(5)
    shutil.copyfile(ref.path, dest)
    return ref.result()[1]


@pytest.mark.parametrize("precision", ["nano", "micro"])
def test_files_tcpdump_and_tshark_write_read_as_tshark_reads_them(testbed, tmp_path, precision):
    ref = Tcpdump(testbed.netns, testbed.b, COUNT, f"--time-stamp-precision={precision}")
    with testbed.sender() as s:
        s.send_all(frames(testbed))
    pcap = tmp_path / f"tcpdump-{precision}.pcap"
    packets = _tcpdump_file(ref, pcap)
    assert len(packets) == COUNT
    magic = pcap.read_bytes()[:4]
    assert magic == (b"\x4d\x3c\xb2\xa1" if precision == "nano" else b"\xd4\xc3\xb2\xa1")

    converted = {"editcap": tmp_path / "editcap.pcapng", "tshark": tmp_path / "tshark.pcapng"}
    for argv in (["editcap", "-F", "pcapng", str(pcap), str(converted["editcap"])],
                 ["tshark", "-r", str(pcap), "-F", "pcapng", "-w", str(converted["tshark"])]):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and not unexpected_stderr(out.stderr), out.stderr

    for path in (pcap, *converted.values()):
        with open_offline(path) as src:
            ours = [(p.ts_ns, p.wirelen, p.caplen, p.ifindex, bytes(p)) for p in src]
            assert src.format == ("pcap" if path == pcap else "pcapng")
        assert ours == tshark_packets(path), path.name
        assert [(ts, wl, d) for ts, wl, _, _, d in ours] == packets     # and reference.read_pcap's view


def test_zcap_and_tcpdump_capture_the_same_file(testbed, tmp_path):
    """The same traffic captured by both at once: the two nanosecond pcap files are identical."""
    ref = Tcpdump(testbed.netns, testbed.b, COUNT)
    ours = tmp_path / "zcap.pcap"
    seen = capture_to_file(testbed, ours, "pcap", "ns")
    theirs = tmp_path / "tcpdump.pcap"
    packets = _tcpdump_file(ref, theirs)
    assert read_pcap(ours) == (1, seen) == (1, packets)                  # bytes and ns timestamps
    assert ours.read_bytes() == theirs.read_bytes()                      # header included
