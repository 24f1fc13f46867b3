"""The `zcap` command's tcpdump options, compared with tcpdump on the same files.

Where tcpdump defines the format (-x, -xx, -X, -XX, -A, -AA, the -t family,
-#, relative and absolute TCP sequence numbers, -d/-dd/-ddd) zcap's output
must be tcpdump's, byte for byte.  Packet summaries of protocols zcap does
not decode (HTTP, ...) differ, so the comparisons take the parts each option
defines.  tcpdump runs with TZ=UTC, and so does zcap.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys

import dpkt
import pytest

import zcap
from tests.unit.savefiles import SHARED_CAPTURES

needs_tcpdump = pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
ENV = dict(os.environ, TZ="UTC")
T0 = 1_733_493_787_123_456_789


def zcap_cmd(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "zcap", *args], capture_output=True, text=True,
                       env=ENV, timeout=60)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def tcpdump(*args: str) -> str:
    r = subprocess.run(["tcpdump", "-n", *args], capture_output=True, text=True, env=ENV, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _eth(payload: bytes, ethertype: int = 0x0800, tags=()) -> bytes:
    head = b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01"
    for tpid, vid in tags:
        head += struct.pack("!HH", tpid, vid)
    return head + struct.pack("!H", ethertype) + payload


def _ip(segment, proto: int, reverse: bool = False) -> bytes:
    a, b = b"\x0a\0\0\x01", b"\x0a\0\0\x02"
    ip = dpkt.ip.IP(src=b if reverse else a, dst=a if reverse else b, p=proto, data=segment)
    ip.len = 20 + len(bytes(segment))
    return bytes(ip)


def _tcp(sport, dport, seq, ack, flags, data=b""):
    return dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, data=data)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """Frames that exercise the formats: text with CRs, odd lengths, padding, tags, a runt,
    a TCP conversation, and timestamps that go backwards once."""
    A, S, P = dpkt.tcp.TH_ACK, dpkt.tcp.TH_SYN, dpkt.tcp.TH_PUSH
    udp = dpkt.udp.UDP(sport=1, dport=2, data=b"abc\x00\x7f\x80 \t\n\r\rx\r\n")
    udp.ulen = 8 + len(udp.data)
    frames = [
        _eth(_ip(_tcp(40000, 80, 1000, 5000, A | P, b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody\rmid\r"), 6)),
        _eth(_ip(udp, 17)) + b"\0" * 7,
        _eth(_ip(udp, 17), tags=((0x8100, 5),)),
        _eth(_ip(udp, 17), tags=((0x88A8, 5), (0x8100, 6))),
        _eth(b"\x01" * 33, ethertype=0x88B5),
        b"\x01\x02\x03",
        _eth(_ip(_tcp(40000, 80, 1000, 0, S), 6)),
        _eth(_ip(_tcp(80, 40000, 9000, 1001, S | A), 6, reverse=True)),
        _eth(_ip(_tcp(40000, 80, 1001, 9001, A), 6)),
        _eth(_ip(_tcp(40000, 80, 1001, 9001, A | P, b"hello"), 6)),
        _eth(_ip(_tcp(80, 40000, 9001, 1006, A), 6, reverse=True)),
        _eth(_ip(_tcp(80, 40000, 4294967290, 1006, A | P, b"wrap-around"), 6, reverse=True)),
    ]
    path = tmp_path_factory.mktemp("fmt") / "sample.pcap"
    with zcap.open_writer(path, linktype=1, ts_resolution="ns") as w:
        for i, f in enumerate(frames):
            w.write_raw(f, T0 + i * 1_700_000_000 + (i % 3) * 999_999_000 - (2_000_000_000 if i == 3 else 0))
    return str(path)


def _dumps(text: str) -> list[str]:
    """The byte lines each packet's dump adds (hex: tab-indented; -A: everything after the line)."""
    return [line for line in text.splitlines() if line.startswith("\t0x")]


@needs_tcpdump
@pytest.mark.parametrize("option", ["-x", "-xx", "-X", "-XX"])
def test_hex_dumps_are_tcpdumps(sample, option):
    ours = zcap_cmd("-r", sample, option).stdout
    theirs = tcpdump("-r", sample, option)
    assert _dumps(ours) and _dumps(ours) == _dumps(theirs)
    # and per packet: each packet's block of lines is the same
    def blocks(text):
        return re.split(r"\n(?=\S)", text)

    assert [_dumps(b) for b in blocks(ours)] == [_dumps(b) for b in blocks(theirs)]


def _ascii_bodies(text: str, first_lines: list[str]) -> list[str]:
    """-A output split at each packet's first line (known from -t output)."""
    bodies, current = [], None
    lines = text.split("\n")
    starts = set(first_lines)
    for line in lines:
        if line in starts:
            if current is not None:
                bodies.append(current)
            current = []
        elif current is not None:
            current.append(line)
    bodies.append(current)
    return ["\n".join(b) for b in bodies]


@needs_tcpdump
@pytest.mark.parametrize("option", ["-A", "-AA"])
def test_ascii_dumps_are_tcpdumps(sample, option):
    # tcpdump adds its own hex dump of payloads it cannot decode (the unknown
    # ethertype); compare the packets both print the same way: IP ones
    ours = zcap_cmd("-r", sample, "-tt", option, "ip").stdout
    theirs = tcpdump("-r", sample, "-tt", option, "ip")
    stamp = re.compile(r"^\d+\.\d{6} ")
    ours_bodies = re.split(r"^\d+\.\d{6} [^\n]*$", ours, flags=re.M)
    theirs_bodies = re.split(r"^\d+\.\d{6} [^\n]*$", theirs, flags=re.M)
    assert len(ours_bodies) == len(theirs_bodies) > 5
    assert ours_bodies == theirs_bodies
    assert stamp.match(ours)


@needs_tcpdump
@pytest.mark.parametrize("option", ["", "-t", "-tt", "-ttt", "-tttt", "-ttttt", "-#", "-# -tt",
                                    "--nano", "-tt --nano", "-ttt --nano", "-ttttt --nano"])
def test_timestamps_are_tcpdumps(sample, option):
    opts = option.split()
    ours = [line for line in zcap_cmd("-r", sample, *opts).stdout.splitlines()]
    theirs = [line for line in tcpdump("-r", sample, *opts).splitlines() if not line.startswith("\t")]
    assert len(ours) == len(theirs) == 12
    # the timestamp (and -# number): the first words of the line, leading spaces included
    level = max((o.count("t") for o in opts if re.fullmatch(r"-t+", o)), default=0)
    words = {0: 1, 1: 0, 2: 1, 3: 1, 4: 2, 5: 1}[level] + ("-#" in opts)
    prefix = re.compile(rf"^(\s*\S+){{{words}}} ") if words else re.compile("^")
    for a, b in zip(ours, theirs):
        pa, pb = prefix.match(a), prefix.match(b)
        assert pa and pb and pa.group(0) == pb.group(0), (a, b)
    if level not in (1, 3, 5):
        assert len({prefix.match(a).group(0) for a in ours}) == len(ours)    # all different


@needs_tcpdump
@pytest.mark.parametrize("option", ["", "-S"])
def test_tcp_sequence_numbers_are_tcpdumps(sample, option):
    opts = [option] if option else []
    def pick(text):
        return [re.sub(r", length \d+.*", "", line) for line in text.splitlines() if "Flags" in line]

    ours, theirs = pick(zcap_cmd("-r", sample, *opts).stdout), pick(tcpdump("-r", sample, *opts))
    assert len(ours) == 7 and ours == theirs
    if not option:
        assert any("seq 1:6, ack 1," in line for line in ours)      # relative by default


@needs_tcpdump
@pytest.mark.shared_captures
@pytest.mark.parametrize("name", ["tcpdump__tcp-handshake-nano.pcap", "pcpp__linktype_ipv6.pcap",
                                  "pcpp__sll.pcap", "pcpp__sll2.pcap", "pcpp__raw_ip.pcap",
                                  "pcpp__null_loopback.pcap", "scapy__pfcp.pcap"])
@pytest.mark.parametrize("option", ["-x", "-XX", "-ttt"])
def test_shared_captures_print_as_tcpdump(name, option):
    path = SHARED_CAPTURES / name
    if not path.exists():
        pytest.skip(f"{path} is absent")
    ours = zcap_cmd("-r", str(path), option).stdout
    theirs = tcpdump("-r", str(path), option)
    if option == "-ttt":
        def stamps(text):
            return [line[:16] for line in text.splitlines() if not line.startswith("\t")]

        assert stamps(ours) == stamps(theirs)
    else:
        assert _dumps(ours) == _dumps(theirs) and _dumps(ours)


@needs_tcpdump
@pytest.mark.parametrize("expression", ["tcp port 80", "udp and not host 10.0.0.1",
                                        "ip6 and icmp6", "vlan 10 and ip", "ether[0] & 1 = 1"])
@pytest.mark.parametrize("level", ["-d", "-dd", "-ddd"])
def test_compiled_filters_print_as_tcpdump(sample, expression, level):
    ours = zcap_cmd(level, "-r", sample, expression).stdout
    assert ours == tcpdump(level, "-r", sample, expression)
    assert "262144" in ours.replace("0x00040000", "262144")


@needs_tcpdump
def test_filter_file_is_read_with_comments(sample, tmp_path):
    f = tmp_path / "filter"
    f.write_text("udp   # only UDP\n and not vlan\n")
    ours = zcap_cmd("-r", sample, "-F", str(f), "-t").stdout
    assert ours.count("UDP") == 1 and ours == tcpdump("-r", sample, "-F", str(f), "-t")
    assert zcap_cmd("-ddd", "-r", sample, "-F", str(f)).stdout == tcpdump("-ddd", "-r", sample, "-F", str(f))
    missing = zcap_cmd("-r", sample, "-F", str(tmp_path / "nope"), check=False)
    assert missing.returncode == 3 and "cannot read filter file" in missing.stderr


@pytest.mark.parametrize("args", [["-I"], ["--monitor-mode"], ["-K"], ["-E", "spi@1.2.3.4"],
                                  ["-T", "rtp"], ["-V", "list"], ["-N"], ["-O"], ["-b"]])
def test_unsupported_tcpdump_options_say_so(args):
    r = zcap_cmd(*args, "-i", "lo", check=False)
    assert r.returncode == 2
    assert f"tcpdump's {args[0]}" in r.stderr and "not supported by zcap" in r.stderr
    assert "unrecognized" not in r.stderr and "Traceback" not in r.stderr


def test_help_groups_options_like_tcpdumps_manual():
    text = zcap_cmd("-h").stdout
    heads = ["capture:", "input and output files:", "printing:", "information (print and exit):"]
    positions = [text.index("\n" + h) for h in heads]
    assert positions == sorted(positions)
    printing = text[positions[2]:positions[3]]
    for flag in ("-x", "-X", "-A", "-t", "-S", "-#", "-l"):
        assert f"\n  {flag}" in printing


def test_bad_values_are_usage_errors(sample):
    for args, text in ((["-y", "FDDI", "-i", "lo"], "unknown link type"),
                       (["-W", "3", "-w", "x.pcap", "-i", "lo"], "-W needs -C or -G"),
                       (["-z", "gzip", "-w", "x.pcap", "-i", "lo"], "-z needs -C or -G"),
                       (["-a", "-i", "lo"], "-a appends"),
                       (["--comment", "x", "-w", "x.pcap", "-i", "lo"], "--comment needs --format pcapng"),
                       (["-j", "adapter_unsynced", "-r", sample], "-j selects"),
                       (["-j", "nonsense", "-i", "lo"], "invalid choice"),
                       (["--print", "-w", "-", "-r", sample], "would mix text")):
        r = zcap_cmd(*args, check=False)
        assert r.returncode == 2 and text in r.stderr, (args, r.stderr)


def test_printing_while_writing(sample, tmp_path):
    out = tmp_path / "copy.pcap"
    r = zcap_cmd("-r", sample, "-w", str(out), "--print", "-t", "tcp")
    assert r.stdout.count("Flags [") == 7
    with zcap.open_offline(out) as src:
        assert sum(1 for _ in src) == 7


@needs_tcpdump
def test_verbose_ip_headers_and_checksums_are_tcpdumps(sample, tmp_path):
    v6 = tmp_path / "v6.pcap"
    src, dst = bytes.fromhex("fe80" + "00" * 13 + "01"), bytes.fromhex("fe80" + "00" * 13 + "02")
    frames = []
    for seg, nxt in ((dpkt.udp.UDP(sport=5, dport=7, ulen=13, data=b"hello"), 17),
                     (_tcp(1, 2, 10, 20, dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH, b"xyz"), 6)):
        ip6 = dpkt.ip6.IP6(src=src, dst=dst, nxt=nxt, hlim=7, flow=0x12345, data=seg)
        ip6.plen = len(bytes(seg))
        frames.append(_eth(bytes(ip6), 0x86DD))
    bad = bytearray(frames[0])
    bad[-1] ^= 0xFF                                   # a bad UDP checksum
    frames.append(bytes(bad))
    v4 = bytearray(_eth(_ip(dpkt.udp.UDP(sport=1, dport=2, data=b"q"), 17)))
    v4[14 + 8] = 3                                    # ttl 3: the IP header checksum goes bad
    frames.append(bytes(v4))
    with zcap.open_writer(v6, linktype=1) as w:
        for i, f in enumerate(frames):
            w.write_raw(f, T0 + i)
    for path, level, expr in ((sample, "-v", "ip"), (sample, "-vv", "ip"), (sample, "-vv -S", "ip"),
                              (str(v6), "-v", "ip or ip6"), (str(v6), "-vv", "ip or ip6")):
        ours = zcap_cmd("-r", path, *level.split(), expr).stdout.splitlines()
        theirs = tcpdump("-r", path, *level.split(), expr).splitlines()
        theirs = [t for t in theirs if not t.startswith("\t")]          # tcpdump's HTTP payload lines
        assert len(ours) == len(theirs) and len(ours) >= 2
        for a, b in zip(ours, theirs):
            assert b.startswith(a), (a, b)          # tcpdump may go on (": HTTP, length: 36")
    text = zcap_cmd("-r", str(v6), "-vv").stdout
    assert "flowlabel 0x12345, hlim 7, next-header UDP (17) payload length: 13" in text
    assert "[bad udp cksum" in text and "bad cksum" in text and "(correct)" in text
