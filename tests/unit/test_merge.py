"""zcap.merge and `zcap merge`: savefiles merged by timestamp, losslessly."""

from __future__ import annotations

import subprocess
import sys

import pytest

import zcap
from zcap.merge import merge


def write(path, packets, *, linktype=1, format="pcap", ts_resolution="ns"):
    with zcap.open_writer(str(path), format=format, linktype=linktype,
                          ts_resolution=ts_resolution) as w:
        for ts, data in packets:
            w.write_raw(data, ts, len(data) + 4)


def read(path):
    with zcap.open_offline(str(path)) as src:
        return [(p.ts_ns, bytes(p), p.wirelen, int(p.linktype)) for p in src]


def test_interleaves_by_timestamp_and_keeps_everything(tmp_path):
    a = [(1_000_000_001 + 10 * i, b"a%03d" % i) for i in range(50)]
    b = [(1_000_000_005 + 7 * i, b"b%03d" % i) for i in range(80)]
    write(tmp_path / "a.pcap", a)
    write(tmp_path / "b.pcapng", b, format="pcapng")
    result = merge([str(tmp_path / "a.pcap"), str(tmp_path / "b.pcapng")], str(tmp_path / "m.pcap"))
    assert result.packets == 130 and result.out_of_order == 0
    out = read(tmp_path / "m.pcap")
    assert [(ts, data) for ts, data, _, _ in out] == sorted(a + b)       # ns kept, order by time
    assert all(wire == len(data) + 4 for _, data, wire, _ in out)


def test_microsecond_inputs_give_a_microsecond_file(tmp_path):
    write(tmp_path / "a.pcap", [(2_000_000_000, b"x" * 20)], ts_resolution="us")
    merge([str(tmp_path / "a.pcap")], str(tmp_path / "m.pcap"))
    with zcap.open_offline(str(tmp_path / "m.pcap")) as src:
        assert src.interfaces[0].ts_resolution == 10**6


def test_different_link_types_need_pcapng(tmp_path):
    write(tmp_path / "eth.pcap", [(1, b"e" * 20)], linktype=1)
    write(tmp_path / "raw.pcap", [(2, b"r" * 20)], linktype=101)
    inputs = [str(tmp_path / "eth.pcap"), str(tmp_path / "raw.pcap")]
    merge(inputs, str(tmp_path / "m.pcapng"))
    assert [(ts, lt) for ts, _, _, lt in read(tmp_path / "m.pcapng")] == [(1, 1), (2, 101)]
    with pytest.raises(ValueError, match="pcapng"):
        merge(inputs, str(tmp_path / "m.pcap"), format="pcap")


def test_out_of_order_input_is_counted_not_dropped(tmp_path):
    write(tmp_path / "a.pcap", [(5, b"late" * 5), (1, b"early" * 4)])
    result = merge([str(tmp_path / "a.pcap")], str(tmp_path / "m.pcap"))
    assert result.packets == 2 and result.out_of_order == 1


def zcap_cmd(*args):
    return subprocess.run([sys.executable, "-m", "zcap", *args], capture_output=True, text=True,
                          timeout=60)


def test_command_exit_codes(tmp_path):
    write(tmp_path / "a.pcap", [(1, b"a" * 20)])
    (tmp_path / "bad.pcap").write_bytes(b"\xd4\xc3\xb2\xa1" + b"\0" * 10)
    r = zcap_cmd("merge", "-w", str(tmp_path / "m.pcap"), str(tmp_path / "a.pcap"))
    assert r.returncode == 0 and "merged 1 packets from 1 files" in r.stderr
    r = zcap_cmd("merge", "-w", str(tmp_path / "m.pcap"), str(tmp_path / "bad.pcap"))
    assert r.returncode == 3 and r.stderr.startswith("zcap: ")
    r = zcap_cmd("merge", "-w", str(tmp_path / "m.pcap"), str(tmp_path / "missing.pcap"))
    assert r.returncode == 3
    r = zcap_cmd("merge", "-w", str(tmp_path / "no" / "dir" / "m.pcap"), str(tmp_path / "a.pcap"))
    assert r.returncode == 7
    r = zcap_cmd("merge", str(tmp_path / "a.pcap"))
    assert r.returncode == 2


def test_the_output_is_never_one_of_the_inputs(tmp_path):
    """Opening the output truncates it: an input named as the output, by its
    own name, another spelling or a link, would lose its packets."""
    write(tmp_path / "a.pcap", [(i, b"a" * 60) for i in range(3000)])
    write(tmp_path / "b.pcap", [(i, b"b" * 60) for i in range(10)])
    (tmp_path / "link.pcap").symlink_to(tmp_path / "a.pcap")
    before = (tmp_path / "a.pcap").read_bytes()
    for out in ("a.pcap", "./a.pcap", "link.pcap"):
        r = subprocess.run([sys.executable, "-m", "zcap", "merge", "-w", out, "b.pcap", "a.pcap"],
                           capture_output=True, text=True, cwd=tmp_path)
        assert r.returncode == 2 and "is the input a.pcap" in r.stderr, r.stderr
        assert (tmp_path / "a.pcap").read_bytes() == before
    with pytest.raises(ValueError, match="another file"):
        merge([str(tmp_path / "a.pcap")], str(tmp_path / "link.pcap"))


def test_dash_writes_standard_output_and_a_closed_pipe_ends_quietly(tmp_path):
    write(tmp_path / "a.pcap", [(i, b"a" * 60) for i in range(3000)])
    r = subprocess.run([sys.executable, "-m", "zcap", "merge", "-w", "-", "a.pcap", "a.pcap"],
                       capture_output=True, cwd=tmp_path)
    assert r.returncode == 0 and not (tmp_path / "-").exists()
    (tmp_path / "out.pcap").write_bytes(r.stdout)
    assert len(read(tmp_path / "out.pcap")) == 6000
    # `| head -c 100`: the reader leaves after 100 bytes of ~500 KB
    proc = subprocess.Popen([sys.executable, "-m", "zcap", "merge", "-w", "-", "a.pcap", "a.pcap"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    proc.stdout.read(100)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(30) == 0 and err == "", err


def test_a_full_disk_is_one_line_naming_the_file_once(tmp_path):
    write(tmp_path / "a.pcap", [(i, b"a" * 60) for i in range(10)])
    r = zcap_cmd("merge", "-w", "/dev/full", str(tmp_path / "a.pcap"))
    assert r.returncode == 7
    assert r.stderr.count("/dev/full") == 1 and "No space left on device" in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1
