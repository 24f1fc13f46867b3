"""compile_filter() produces exactly what tcpdump prints, and fails as it does.

tcpdump is the reference: `tcpdump -ddd -y LINKTYPE expr` compiles on a
pcap_open_dead() handle, as compile_filter() does.  No expression here names a
host, so nothing does a DNS lookup (service and protocol names come from
/etc/services and /etc/protocols).  The tests that compare the Linux VLAN
code against `tcpdump -i` need root and a network namespace: they are in
tests/live/test_filter_linux_vlan.py.
"""

from __future__ import annotations

import ctypes
import shutil
import struct
import subprocess
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import zcap.bpf as zbpf
from tests.unit.test_bpf_validate import LINUX_OPCODES
from zcap.bpf import BPFProgram, FilterError, compile_filter
from zcap.errors import CaptureError

TCPDUMP = shutil.which("tcpdump")
needs_tcpdump = pytest.mark.skipif(TCPDUMP is None, reason="tcpdump is not installed")

# LINKTYPE_* value -> the name tcpdump's -y takes.
LINKTYPES = {1: "EN10MB", 113: "LINUX_SLL", 276: "LINUX_SLL2", 101: "RAW"}

EXPRESSIONS = [
    "",
    "ip", "ip6", "arp", "rarp", "tcp", "udp", "icmp", "icmp6",
    "host 192.168.1.1", "src host 10.0.0.1", "dst host 10.0.0.2",
    "net 10.0.0.0/8", "src net 192.168.0.0/16", "net 172.16.0.0 mask 255.240.0.0",
    "host 2001:db8::1", "net 2001:db8::/32",
    "port 80", "tcp port 443", "udp dst port 53", "src port 1234", "tcp port http",
    "portrange 6000-6010", "tcp portrange 1-1023",
    "tcp[tcpflags] & tcp-syn != 0", "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
    "icmp[icmptype] == icmp-echo", "icmp[icmptype] != icmp-echo and icmp[icmptype] != icmp-echoreply",
    "icmp6 and ip6[40] == 128", "icmp6[icmp6type] == icmp6-echo",
    "len > 100", "less 64", "greater 1000", "len <= 1500", "len - 14 > 100",
    "ether host 00:11:22:33:44:55", "ether src 02:00:00:00:00:01", "ether broadcast",
    "ether multicast", "broadcast", "multicast", "ip multicast", "ip6 multicast",
    "ether proto 0x88cc", "ip proto 47", "ip6 proto 58", "arp and arp[6:2] == 1",
    "not tcp", "not (tcp or udp)", "tcp or udp and not icmp", "not host 10.0.0.1 and not port 22",
    "host 10.0.0.1 and (port 80 or port 443)", "udp and (port 53 or port 123)",
    "ip[2:2] > 576", "ip[0] & 0xf > 5", "ip[6:2] & 0x1fff != 0", "tcp[13] & 2 != 0",
    "udp[4:2] > 100", "ether[12:2] = 0x0800", "tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420",
    "ip[1] * 2 / 3 % 5 ^ 1 | 2 & 3 = 1", "-ip[2] = 1", "ip[0] << 1 >> 1 = 1",
    "vlan", "vlan 100", "vlan and tcp", "vlan 10 and vlan 20 and udp port 53",
    "mpls", "mpls 100 and ip", "pppoes and udp", "geneve",
    "inbound", "outbound", "ifindex 3",
    # backward jumps: Linux refuses them, libpcap (and zcap) run them in user space
    "ip protochain 17", "ip6 protochain 6", "protochain 58", "ip6 protochain 44 or tcp",
    "vlan and vlan and pppoes and tcp",
]

# Expressions libpcap refuses, with (part of) its reason; none needs the network.
BAD_EXPRESSIONS = [
    ("tcp port 99999", "illegal port number 99999 > 65535"),
    ("portrange 70000-80000", "illegal port number 70000 > 65535"),
    ("(tcp", "syntax error"),
    ("udp port 53 or", "syntax error"),
    ("tcp[tcpflags] & tcp-bogus != 0", "syntax error"),
    ("vlan 5000", "VLAN tag 5000 greater than maximum 4095"),
    ("net 10.0.0.0/33", "mask length must be <= 32"),
    ("ip6 net ::1/129", "mask length must be <= 128"),
    ("net 10.1.2.3/8", "non-network bits set"),
    ("ip6 and arp", "expression rejects all packets"),
    ("proto nosuchproto", "unknown ip proto 'nosuchproto'"),
    ("ether host 01:02:03:04:05", "bogus ethernet address"),
    ("ip[2:3] > 1", "data size must be 1, 2, or 4"),
    ("gateway 10.0.0.1", "'gateway' requires a name"),
    ("ip broadcast", "netmask not known"),
]


def tcpdump(*args: str) -> subprocess.CompletedProcess:
    assert TCPDUMP is not None
    return subprocess.run([TCPDUMP, *args], capture_output=True, text=True, timeout=30)


def tcpdump_error(proc: subprocess.CompletedProcess) -> str:
    """libpcap's message from a failed tcpdump run ("tcpdump: <message>")."""
    lines = [line for line in proc.stderr.splitlines() if line.startswith("tcpdump: ")]
    assert lines, proc.stderr
    return lines[-1][len("tcpdump: "):]


@needs_tcpdump
@pytest.mark.parametrize("linktype", LINKTYPES)
@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_same_code_as_tcpdump(expr, linktype):
    proc = tcpdump("-ddd", "-y", LINKTYPES[linktype], "--", expr)
    if proc.returncode != 0:
        # Not every expression exists for every link type: libpcap's reason, unchanged.
        with pytest.raises(FilterError) as info:
            compile_filter(expr, linktype=linktype)
        assert tcpdump_error(proc) in str(info.value)
        assert repr(expr) in str(info.value)
        return
    prog = compile_filter(expr, linktype=linktype)
    assert prog.dump_ddd() == proc.stdout
    assert prog.expression == expr and prog.linktype == linktype and prog.snaplen == 262144
    assert BPFProgram.from_text(proc.stdout) == prog


@needs_tcpdump
@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_dump_is_tcpdump_d(expr):
    proc = tcpdump("-d", "-y", "EN10MB", "--", expr)
    assert proc.returncode == 0, proc.stderr
    assert compile_filter(expr).dump() == proc.stdout


@needs_tcpdump
@pytest.mark.parametrize("snaplen", [1, 96, 65535, 262144])
def test_snaplen_is_the_accept_value(snaplen):
    proc = tcpdump("-ddd", "-y", "EN10MB", "-s", str(snaplen), "--", "tcp or udp")
    prog = compile_filter("tcp or udp", snaplen=snaplen)
    assert prog.dump_ddd() == proc.stdout
    assert {k for code, _, _, k in prog.instructions if code == 0x06} == {0, snaplen}


@needs_tcpdump
@pytest.mark.parametrize("expr", ["tcp port 80 or udp port 53", "host 10.0.0.1 and not port 22", "vlan 7"])
def test_unoptimized_like_tcpdump_O(expr):
    proc = tcpdump("-O", "-ddd", "-y", "EN10MB", "--", expr)
    unoptimized = compile_filter(expr, optimize=False)
    assert unoptimized.dump_ddd() == proc.stdout
    assert len(unoptimized) > len(compile_filter(expr))


@needs_tcpdump
def test_netmask_reaches_libpcap():
    # tcpdump passes netmask 0 when it has no interface.
    proc = tcpdump("-ddd", "-y", "EN10MB", "--", "ip broadcast")
    assert compile_filter("ip broadcast", netmask=0).dump_ddd() == proc.stdout
    assert compile_filter("ip broadcast", netmask=0xFFFFFF00) != compile_filter("ip broadcast", netmask=0)


@pytest.mark.parametrize(("expr", "reason"), BAD_EXPRESSIONS)
def test_bad_expression_raises_libpcap_reason(expr, reason):
    with pytest.raises(FilterError) as info:
        compile_filter(expr)
    message = str(info.value)
    assert reason in message and repr(expr) in message
    assert isinstance(info.value, CaptureError) and isinstance(info.value, ValueError)


@needs_tcpdump
@pytest.mark.parametrize(("expr", "reason"), BAD_EXPRESSIONS)
def test_bad_expression_fails_in_tcpdump_too(expr, reason):
    proc = tcpdump("-ddd", "-y", "EN10MB", "--", expr)
    if expr == "ip broadcast":          # tcpdump knows a netmask (0), compile_filter() by default not
        return
    assert proc.returncode != 0 and reason in tcpdump_error(proc)


@pytest.mark.parametrize(("expr", "linktype", "reason"), [
    ("vlan", 276, "no VLAN support for Linux cooked v2"),
    ("vlan", 113, "no VLAN support for Linux cooked v1"),
    ("ether broadcast", 101, "not a broadcast link"),
    ("ether host 00:11:22:33:44:55", 276, "ethernet addresses supported only on"),
    ("tcp", 9999, "unknown data link type 9999"),
])
def test_expression_not_for_this_link_type(expr, linktype, reason):
    with pytest.raises(FilterError, match=reason):
        compile_filter(expr, linktype=linktype)


@pytest.mark.parametrize("expr", ["ip protochain 17", "ip6 protochain 6", "protochain 6"])
def test_protochain_compiles_and_says_linux_refuses_it(expr):
    prog = compile_filter(expr)
    assert "jumps backwards" in prog.kernel_refusal and not prog.kernel_ok
    assert compile_filter("tcp").kernel_refusal is None


def test_nul_in_expression():
    with pytest.raises(FilterError, match="NUL"):
        compile_filter("tcp\0 or udp")


@pytest.mark.parametrize(("kw", "exc"), [
    (dict(expr=b"tcp"), TypeError), (dict(expr="tcp", snaplen=0), ValueError),
    (dict(expr="tcp", snaplen=True), TypeError), (dict(expr="tcp", netmask=-1), ValueError),
    (dict(expr="tcp", linktype="EN10MB"), TypeError), (dict(expr="tcp", linktype=1 << 16), ValueError),
])
def test_argument_checks(kw, exc):
    with pytest.raises(exc):
        compile_filter(**kw)


def test_linktype_enum_and_raw_ip():
    from zcap import LinkType
    prog = compile_filter("ip", linktype=LinkType.RAW)
    assert prog.linktype == 101 and prog.instructions[0] == (0x30, 0, 0, 0)     # ldb [0]: IP version


def test_linux_vlan_changes_nothing_without_vlan():
    # No activation (and no root) needed: only `vlan` code differs on a live handle.
    for expr in ("tcp port 80", "inbound", "ether broadcast"):
        assert compile_filter(expr, linux_vlan=True) == compile_filter(expr)
    with pytest.raises(FilterError, match="no VLAN support"):
        compile_filter("vlan", linktype=276, linux_vlan=True)


@settings(max_examples=60, deadline=None)
@given(port=st.integers(0, 65535), length=st.integers(0, 70000), net=st.integers(0, 32))
def test_numbers_compile_like_tcpdump(port, length, net):
    expr = f"port {port} or len > {length} or net 10.0.0.0/{net}"
    try:
        prog = compile_filter(expr)
    except FilterError as exc:
        assert "non-network bits" in str(exc)
        return
    if TCPDUMP is not None:
        assert prog.dump_ddd() == tcpdump("-ddd", "-y", "EN10MB", "--", expr).stdout


def test_compile_is_fast_and_repeatable():
    compile_filter("tcp port 80")
    start = time.perf_counter()
    progs = {compile_filter("tcp port 80 and host 10.0.0.1") for _ in range(200)}
    per_call = (time.perf_counter() - start) / 200
    assert len(progs) == 1
    assert per_call < 0.002            # ~40 µs; generous for a loaded CI machine


@settings(max_examples=400, deadline=None)
@given(code=st.sampled_from([c for c in LINUX_OPCODES if c != 0x81]), jt=st.integers(0, 255),
       jf=st.integers(0, 255), pc=st.integers(16, 3700),
       k=st.one_of(st.integers(0, 0xFFFFFFFF), st.integers(0xFFFFF000, 0xFFFFF040),
                   st.sampled_from([0, 15, 0x7FFFFFFF, 0x80000000, 0xFFE00000, 0xFFF00000])))
def test_dump_line_is_bpf_image(code, jt, jf, k, pc):
    """Each line is what libpcap's bpf_image() prints for the instruction."""
    bpf_image = ctypes.CDLL(zbpf._libpcap().name).bpf_image
    bpf_image.restype, bpf_image.argtypes = ctypes.c_char_p, [ctypes.c_char_p, ctypes.c_int]
    expected = bpf_image(struct.pack("=HBBI", code, jt, jf, k), pc).decode()
    # instruction `pc` exists, and every scratch word is written before it
    padding = [(0x02, 0, 0, slot) for slot in range(16)] + [(0x00, 0, 0, 0)] * (pc - 16)
    try:
        prog = BPFProgram(padding + [(code, jt, jf, k)] + [(0x06, 0, 0, 0)] * 300)
    except FilterError:
        return                                        # only valid programs are dumped
    assert prog.dump().splitlines()[pc] == expected


def test_dump_ldx_pktlen():
    # bpf_image() has no name for BPF_LDX|BPF_W|BPF_LEN (libpcap never emits it).
    prog = BPFProgram([(0x81, 0, 0, 0), (0x16, 0, 0, 0)])
    assert prog.dump() == "(000) ldx      #pktlen\n(001) ret      \n"


# ---------------------------------------------------------------- without libpcap

def test_missing_libpcap_says_what_to_install(monkeypatch):
    monkeypatch.setattr(zbpf.ctypes.util, "find_library", lambda name: None)
    with pytest.raises(FilterError) as info:
        zbpf._open_libpcap(["libpcap-does-not-exist.so.0"])
    message = str(info.value)
    assert "apt-get install libpcap0.8" in message
    assert "from_text" in message and "raw program still works" in message


def test_raw_programs_need_no_libpcap(monkeypatch):
    def no_libpcap():
        raise FilterError("no libpcap here")

    monkeypatch.setattr(zbpf, "_libpcap", no_libpcap)
    with pytest.raises(FilterError, match="no libpcap"):
        compile_filter("tcp")
    prog = BPFProgram.from_text("2\n40 0 0 12\n6 0 0 262144\n")
    assert prog.match(bytes(14)) == 262144


def test_libpcap_is_loaded_once():
    assert zbpf._libpcap() is zbpf._libpcap()
    assert zbpf.libpcap_version().startswith("libpcap version")


# ---------------------------------------------------------------- Linux VLAN code
# (checked against tcpdump on a live interface in tests/live/test_filter_linux_vlan.py)

# `tcpdump -i <veth> -ddd 'vlan 100'` on Linux with libpcap 1.10: the tag is
# tested in the kernel's metadata first, in the packet bytes second.
LINUX_VLAN_100 = """15
48 0 0 4294963248
21 4 0 1
40 0 0 12
21 2 0 33024
21 1 0 34984
21 0 8 37120
48 0 0 4294963248
21 0 2 1
48 0 0 4294963244
5 0 0 1
40 0 0 14
84 0 0 4095
21 0 1 100
6 0 0 262144
6 0 0 0
"""
