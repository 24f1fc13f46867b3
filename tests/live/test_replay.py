"""`zcap replay` (python3 -m zcap.replay): a savefile's packets arrive on the
veth peer byte-identical and in order, looped and paced as asked; every
refusal has its exit code and a message."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import zcap
from tests.live.conftest import collect_until_idle
from tests.privileges import run_without_net_raw
from tests.unit.savefiles import SHARED_CAPTURES, SHARED_MISSING
from zcap.offline import open_offline
from zcap.savefile import open_writer
from zcap.testbed import udp_frame

REPO = Path(__file__).resolve().parents[2]
# Ethernet files of the shared corpus ("eth-multi" in its SOURCES.md): several
# interfaces with different snaplens in one pcapng
REAL_ETHERNET = ["pcpp__dns_over_tcp.pcapng", "gopacket__pcapng_le_test008.pcapng",
                 "gopacket__pcapng_be_test004.pcapng"]
QUIET = dict(block_size=1 << 20, block_count=32, timeout_ms=200)
IDLE = 0.6
SUMMARY = re.compile(r"sent (\d+) packets \((\d+) bytes\) in ([\d.]+) s: ([\d.]+) pps, ([\d.]+) Mbps")


def replay(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zcap.replay", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def replay_on(tb, path, *args: str) -> tuple[subprocess.CompletedProcess, list]:
    """Replay `path` on tb.a; what tb.b received, as (ts_ns, bytes)."""
    with zcap.open_live(tb.b, netns=tb.netns, **QUIET) as cap:
        out = replay(path, "-i", tb.a, "--netns", tb.netns, *args)
        got = collect_until_idle(cap, idle=IDLE, keep=lambda p: (p.ts_ns, bytes(p)))
        st = cap.stats()
    assert st.dropped == 0 and st.received == len(got)
    return out, got


def file_packets(path) -> list[bytes]:
    with open_offline(str(path)) as src:
        return [bytes(p) for p in src]


def write_file(path, frames, *, gap_ns=1_000_000, fmt="pcap", linktype=1) -> Path:
    with open_writer(str(path), format=fmt, linktype=linktype) as w:
        for i, f in enumerate(frames):
            w.write_raw(f, ts_ns=1_700_000_000 * 10**9 + i * gap_ns)
    return Path(path)


def frames_for(tb, sizes) -> list[bytes]:
    src, dst = tb.mac(tb.a), tb.mac(tb.b)
    return [udp_frame(n, src_mac=src, dst_mac=dst, seq=i) for i, n in enumerate(sizes)]


def summary(out) -> tuple[int, int, float, float, float]:
    m = SUMMARY.search(out.stdout)
    assert m, (out.stdout, out.stderr)
    n, b, s, pps, mbps = m.groups()
    return int(n), int(b), float(s), float(pps), float(mbps)


# -- identical delivery ------------------------------------------------------------


@pytest.mark.shared_captures
@pytest.mark.parametrize("name", REAL_ETHERNET)
def test_real_capture_arrives_identical(testbed, name):
    if not SHARED_CAPTURES.is_dir():
        pytest.skip(SHARED_MISSING)
    path = SHARED_CAPTURES / name
    expected = file_packets(path)
    out, got = replay_on(testbed, path, "--topspeed")
    assert out.returncode == 0, out.stderr
    assert [data for _, data in got] == expected
    assert summary(out)[:2] == (len(expected), sum(map(len, expected)))


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_own_file_arrives_identical(testbed, tmp_path, fmt):
    frames = frames_for(testbed, [*range(60, 1515, 13), 1514] * 4)
    path = write_file(tmp_path / f"mine.{fmt}", frames, fmt=fmt)
    out, got = replay_on(testbed, path, "--topspeed")
    assert out.returncode == 0, out.stderr
    assert [data for _, data in got] == frames
    n, b, seconds, pps, _ = summary(out)
    assert (n, b) == (len(frames), sum(map(len, frames))) and pps == pytest.approx(n / seconds, rel=0.01)


def test_loop_sends_it_three_times(testbed, tmp_path):
    frames = frames_for(testbed, [64, 1000, 1514, 77] * 25)
    path = write_file(tmp_path / "loop.pcap", frames)
    out, got = replay_on(testbed, path, "--topspeed", "--loop", "3")
    assert out.returncode == 0, out.stderr
    assert [data for _, data in got] == frames * 3
    assert summary(out)[0] == 300


# -- timing ------------------------------------------------------------------------


def _rate(got) -> float:
    return (len(got) - 1) / ((got[-1][0] - got[0][0]) / 1e9)


def test_pps_paces_it(testbed, tmp_path):
    frames = frames_for(testbed, [64, 700, 1514] * 200)
    path = write_file(tmp_path / "paced.pcap", frames, gap_ns=10)     # the file's own timing is ignored
    out, got = replay_on(testbed, path, "--pps", "2000")
    assert out.returncode == 0, out.stderr
    assert [data for _, data in got] == frames
    assert abs(_rate(got) - 2000) / 2000 < 0.05


def test_pps_pacing_runs_across_loops(testbed, tmp_path):
    frames = frames_for(testbed, [64] * 100)
    path = write_file(tmp_path / "paced.pcap", frames)
    out, got = replay_on(testbed, path, "--pps", "1000", "--loop", "3")
    assert out.returncode == 0, out.stderr
    assert len(got) == 300 and abs(_rate(got) - 1000) / 1000 < 0.05


def test_mbps_paces_it(testbed, tmp_path):
    frames = frames_for(testbed, [1000] * 1000)
    path = write_file(tmp_path / "paced.pcap", frames)
    out, got = replay_on(testbed, path, "--mbps", "50")
    assert out.returncode == 0, out.stderr
    mbps = 999 * 1000 * 8 / ((got[-1][0] - got[0][0]) / 1e9) / 1e6
    assert len(got) == 1000 and abs(mbps - 50) / 50 < 0.05


@pytest.mark.parametrize("args,factor", [((), 1.0), (("--multiplier", "4"), 4.0)])
def test_files_own_timing(testbed, tmp_path, args, factor):
    frames = frames_for(testbed, [100] * 60)
    path = write_file(tmp_path / "timed.pcapng", frames, gap_ns=5_000_000, fmt="pcapng")   # 295 ms
    out, got = replay_on(testbed, path, *args)
    assert out.returncode == 0, out.stderr
    span = (got[-1][0] - got[0][0]) / 1e9
    assert len(got) == 60 and abs(span - 0.295 / factor) / (0.295 / factor) < 0.05, span


def test_timing_longer_than_max_seconds_is_refused_up_front(testbed, tmp_path):
    frames = frames_for(testbed, [100, 100])
    path = write_file(tmp_path / "slow.pcap", frames, gap_ns=3600 * 10**9)
    out, got = replay_on(testbed, path, "--max-seconds", "10")
    assert out.returncode == 2 and "--topspeed" in out.stderr and got == []


def test_max_seconds_stops_a_replay(testbed, tmp_path):
    frames = frames_for(testbed, [64] * 1000)
    path = write_file(tmp_path / "long.pcap", frames)
    out, got = replay_on(testbed, path, "--pps", "1000", "--max-seconds", "0.3")
    assert out.returncode == 1 and "stopped after --max-seconds" in out.stderr
    assert 200 < len(got) < 400 and summary(out)[0] == len(got)


# -- refusals ----------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["--pps", "0"],
    ["--pps", "abc"],
    ["--pps", "10", "--topspeed"],
    ["--loop", "0"],
    ["--multiplier", "-1"],
    ["--no-such-option"],
])
def test_bad_arguments_exit_2(tmp_path, args):
    path = write_file(tmp_path / "f.pcap", [bytes(60)])
    out = replay(path, "-i", "veth-a", *args)
    assert out.returncode == 2 and "usage" in out.stderr


def test_missing_interface_argument_exits_2(tmp_path):
    out = replay(write_file(tmp_path / "f.pcap", [bytes(60)]))
    assert out.returncode == 2 and "-i" in out.stderr


def test_unreadable_or_bad_file_exits_3(testbed, tmp_path):
    out = replay(tmp_path / "missing.pcap", "-i", testbed.a, "--netns", testbed.netns)
    assert out.returncode == 3 and "missing.pcap" in out.stderr
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(b"this is not a capture file at all")
    out = replay(garbage, "-i", testbed.a, "--netns", testbed.netns)
    assert out.returncode == 3 and "garbage.pcap" in out.stderr
    good = write_file(tmp_path / "cut.pcap", frames_for(testbed, [100] * 10))
    data = good.read_bytes()
    good.write_bytes(data[:-30])                                  # ends inside a record
    with zcap.open_live(testbed.b, netns=testbed.netns, **QUIET) as cap:
        out = replay(good, "-i", testbed.a, "--netns", testbed.netns, "--topspeed")
        assert cap.next(timeout=IDLE) is None                     # nothing was sent
    assert out.returncode == 3 and "byte offset" in out.stderr


def test_non_ethernet_file_exits_3(testbed, tmp_path):
    raw_ip = write_file(tmp_path / "raw.pcap", [bytes.fromhex("45000014") + bytes(16)] * 3, linktype=101)
    out = replay(raw_ip, "-i", testbed.a, "--netns", testbed.netns)
    assert out.returncode == 3 and "link type RAW (101)" in out.stderr and "Ethernet" in out.stderr
    sll = SHARED_CAPTURES / "pcpp__sll.pcap"
    if sll.exists():
        out = replay(sll, "-i", testbed.a, "--netns", testbed.netns)
        assert out.returncode == 3 and "LINUX_SLL (113)" in out.stderr


def test_mixed_file_is_refused_before_anything_is_sent(testbed, tmp_path):
    path = tmp_path / "mixed.pcapng"
    with open_writer(str(path), format="pcapng", linktype=1) as w:
        raw = w.add_interface("tun0", 101)
        for f in frames_for(testbed, [100] * 5):
            w.write_raw(f, ts_ns=0)
        w.write_raw(bytes.fromhex("45000014") + bytes(16), ts_ns=0, interface=raw)
    with zcap.open_live(testbed.b, netns=testbed.netns, **QUIET) as cap:
        out = replay(path, "-i", testbed.a, "--netns", testbed.netns, "--topspeed")
        assert cap.next(timeout=IDLE) is None
    assert out.returncode == 3 and "packet 5 has link type RAW" in out.stderr


def test_interface_problems_exit_4(testbed, tmp_path):
    path = write_file(tmp_path / "f.pcap", frames_for(testbed, [1514, 64]))
    out = replay(path, "-i", "nosuch0", "--netns", testbed.netns)
    assert out.returncode == 4 and "nosuch0" in out.stderr
    out = replay(path, "-i", testbed.a, "--netns", "zcap-no-such-namespace")
    assert out.returncode == 4 and "ip netns" in out.stderr
    testbed.ip("link", "set", testbed.a, "mtu", "1000")
    out = replay(path, "-i", testbed.a, "--netns", testbed.netns)
    assert out.returncode == 4 and "1514-byte frame" in out.stderr and "mtu 1500" in out.stderr
    testbed.ip("link", "set", testbed.a, "down")
    out = replay(path, "-i", testbed.a, "--netns", testbed.netns)
    assert out.returncode == 4 and "down" in out.stderr


def test_missing_cap_net_raw_exits_5(testbed, tmp_path):
    path = write_file(tmp_path / "f.pcap", [bytes(60)])
    out = run_without_net_raw(sys.executable, "-m", "zcap.replay", str(path), "-i", testbed.a,
                              "--netns", testbed.netns)
    assert out.returncode == 5 and "CAP_NET_RAW" in out.stderr

