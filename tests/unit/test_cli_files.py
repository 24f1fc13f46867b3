"""The `zcap` command on files and arguments (no packet socket needed).

Each test here is a case where the command once crashed with a traceback,
accepted nonsense or gave an unclear message (issue 11, items 5, 7, 8, 10).
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.savefiles import epb, frame, idb, pcap, shb, unexpected_stderr

ZCAP = [sys.executable, "-m", "zcap"]


def run(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*ZCAP, *args], capture_output=True, text=True, timeout=60, **kw)


def no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stderr, result.stderr


def tshark_frames(path: Path) -> list[tuple[int, int]]:
    """(frame.len, link type as tshark saw it) of every packet; tshark must not complain."""
    out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.len",
                          "-e", "frame.interface_id"], capture_output=True, text=True)
    assert out.returncode == 0 and unexpected_stderr(out.stderr) == [], out.stderr
    return [tuple(int(x or 0) for x in line.split("\t")) for line in out.stdout.splitlines()]


# -- item 5: -r FILE -w OUT -----------------------------------------------------

def test_null_link_type_file_is_copied_with_link_type_0(tmp_path):
    # BSD loopback (LINKTYPE_NULL = 0): a 4-byte family, then IPv4
    packets = [(10**18 + i, 40, struct.pack("<I", 2) + frame(i, 36)) for i in range(5)]
    src = tmp_path / "null.pcap"
    src.write_bytes(pcap(packets, linktype=0))
    out = tmp_path / "out.pcap"
    result = run("-r", str(src), "-w", str(out))
    no_traceback(result)
    assert result.returncode == 0, result.stderr
    assert "link-type 0" in result.stderr or "NULL" in result.stderr
    assert struct.unpack_from("<I", out.read_bytes(), 20)[0] == 0     # never turned into 1
    assert len(tshark_frames(out)) == 5


def _two_linktype_pcapng() -> bytes:
    body = shb() + idb(linktype=1, name="eth0") + idb(linktype=0, name="lo0")
    for i in range(6):
        data = frame(i, 60) if i % 2 == 0 else struct.pack("<I", 2) + frame(i, 40)
        body += epb("<", i % 2, 10**15 + i, data)
    return body


def test_pcapng_with_several_link_types_to_pcapng_keeps_one_interface_each(tmp_path):
    src = tmp_path / "multi.pcapng"
    src.write_bytes(_two_linktype_pcapng())
    out = tmp_path / "out.pcapng"
    result = run("-r", str(src), "-w", str(out), "--format", "pcapng")
    no_traceback(result)
    assert result.returncode == 0, result.stderr
    frames = tshark_frames(out)
    assert [f[0] for f in frames] == [60, 44, 60, 44, 60, 44]
    assert [f[1] for f in frames] == [0, 1, 0, 1, 0, 1]
    linktypes = subprocess.run(["tshark", "-r", str(out), "-T", "fields", "-e", "frame.encap_type"],
                               capture_output=True, text=True).stdout.split()
    assert len(set(linktypes)) == 2


def test_pcapng_with_several_link_types_to_pcap_is_refused_clearly(tmp_path):
    src = tmp_path / "multi.pcapng"
    src.write_bytes(_two_linktype_pcapng())
    result = run("-r", str(src), "-w", str(tmp_path / "out.pcap"))
    no_traceback(result)
    assert result.returncode == 2
    assert "--format pcapng" in result.stderr and "several link types" in result.stderr


def test_snaplen_above_262144_is_rewritten_as_tcpdump_does(tmp_path):
    src = tmp_path / "big.pcap"
    src.write_bytes(pcap([(10**18, 60, frame(1))], snaplen=524288))
    out = tmp_path / "out.pcap"
    result = run("-r", str(src), "-w", str(out))
    no_traceback(result)
    assert result.returncode == 0, result.stderr
    assert struct.unpack_from("<I", out.read_bytes(), 16)[0] == 262144
    assert tshark_frames(out) == [(60, 0)]


def test_negative_if_tsoffset_is_an_error_naming_the_packet_not_a_traceback(tmp_path):
    # if_tsoffset -10**10 s puts the packets before 1970: neither format holds that
    src = tmp_path / "neg.pcapng"
    src.write_bytes(shb() + idb(linktype=1, tsoffset=-10**10) + epb("<", 0, 10**6, frame(1)))
    result = run("-r", str(src), "-w", str(tmp_path / "out.pcap"))
    no_traceback(result)
    assert result.returncode == 3, result.stderr
    assert "packet 1" in result.stderr and "1970" in result.stderr


def test_negative_if_tsoffset_that_stays_after_1970_converts(tmp_path):
    src = tmp_path / "neg.pcapng"
    src.write_bytes(shb() + idb(linktype=1, tsoffset=-3600) + epb("<", 0, 10**15, frame(1)))
    out = tmp_path / "out.pcap"
    result = run("-r", str(src), "-w", str(out))
    assert result.returncode == 0, result.stderr
    assert struct.unpack_from("<I", out.read_bytes(), 24)[0] == 10**15 // 10**6 - 3600


# -- item 7: a reader that closes the pipe early ------------------------------

def test_reading_a_file_into_head_exits_quietly(tmp_path):
    src = tmp_path / "many.pcap"
    src.write_bytes(pcap([(10**18 + i, 60, frame(i)) for i in range(20000)]))
    proc = subprocess.Popen([*ZCAP, "-r", str(src)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for _ in range(2):
        proc.stdout.readline()
    proc.stdout.close()                        # what `| head -2` does
    err = proc.stderr.read().decode()
    assert proc.wait(30) == 0, err
    assert "Broken pipe" not in err and "Traceback" not in err and "Exception" not in err


# -- item 8: usage errors ----------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["-C", "-5"], ["-C", "0"], ["-G", "-1"], ["-G", "0"], ["-B", "0"], ["-B", "-5"], ["-c", "-1"],
])
def test_nonsense_numbers_are_usage_errors(tmp_path, args):
    src = tmp_path / "one.pcap"
    src.write_bytes(pcap([(10**18, 60, frame(1))]))
    result = run("-r", str(src), "-w", str(tmp_path / "o.pcap"), *args)
    no_traceback(result)
    assert result.returncode == 2, result.stderr
    assert args[0] in result.stderr and "positive" in result.stderr
    assert not (tmp_path / "o.pcap").exists()


@pytest.mark.parametrize("args", [["-c", "-1"], ["-c", "0"], ["--show", "-2"]])
def test_demo_rejects_nonsense_counts(args):
    result = run("demo", *args)
    no_traceback(result)
    assert result.returncode == 2 and "MISMATCH" not in result.stdout, result.stderr


# -- item 10: unclear checks ----------------------------------------------------

def test_filtering_a_file_whose_link_type_libpcap_cannot_compile_names_the_file(tmp_path):
    src = tmp_path / "odd.pcap"
    src.write_bytes(pcap([(10**18, 60, frame(1))], linktype=70000))
    result = run("-r", str(src), "udp")
    no_traceback(result)
    assert result.returncode == 6, result.stderr
    assert str(src) in result.stderr and "udp" in result.stderr


def test_writer_write_of_plain_bytes_says_to_use_write_raw(tmp_path):
    import zcap
    with zcap.open_writer(tmp_path / "w.pcap", linktype=1) as w:
        with pytest.raises(TypeError, match="write_raw"):
            w.write(b"abc")
        w.write_raw(b"abc", 0)
    assert w.packets_written == 1
