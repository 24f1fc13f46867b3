"""compile_filter(linux_vlan=True) is what `tcpdump -i IFACE` compiles on a live interface.

Moved from tests/unit/test_bpf_compile.py (which keeps the dead-handle checks
and LINUX_VLAN_100): these need root, a namespace and a live veth pair, which
the shared `testbed` fixture provides.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

import zcap.bpf as zbpf
from tests.privileges import python_without_net_raw
from tests.unit.test_bpf_compile import LINUX_VLAN_100, TCPDUMP
from zcap.bpf import FilterError, compile_filter
from zcap.errors import CapturePermissionError

pytestmark = pytest.mark.skipif(TCPDUMP is None, reason="tcpdump is not installed")

VLAN_EXPRESSIONS = ["vlan", "vlan 100", "vlan and tcp", "not vlan", "tcp port 80 or vlan 7",
                    "vlan 10 and vlan 20 and udp port 53", "vlan and ip host 10.0.0.1"]


@pytest.fixture
def vlan_tb(testbed):
    """The testbed (an up veth pair) with lo down, as `ip netns add` leaves it."""
    testbed.ip("link", "set", "lo", "down")
    zbpf._live_cache.clear()
    yield testbed
    zbpf._live_cache.clear()


def tcpdump_live(tb, *args: str) -> str:
    proc = subprocess.run(["ip", "netns", "exec", tb.netns, TCPDUMP or "tcpdump", "-i", tb.b, *args],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("expr", VLAN_EXPRESSIONS)
def test_linux_vlan_code_is_tcpdump_on_a_live_interface(vlan_tb, expr):
    live = tcpdump_live(vlan_tb, "-ddd", "--", expr)
    prog = compile_filter(expr, linux_vlan=True, netns=vlan_tb.netns, device=vlan_tb.b)
    assert prog.dump_ddd() == live
    assert prog.uses_ancillary and not prog.kernel_only
    assert prog != compile_filter(expr)              # the dead handle's byte-matching code


def test_linux_vlan_100_constant_is_current(vlan_tb):
    assert tcpdump_live(vlan_tb, "-ddd", "vlan 100") == LINUX_VLAN_100
    assert compile_filter("vlan 100", linux_vlan=True, netns=vlan_tb.netns, device=vlan_tb.b).dump_ddd() \
        == LINUX_VLAN_100


def test_linux_vlan_falls_back_to_lo_and_says_what_to_do(vlan_tb):
    with pytest.raises(FilterError) as info:          # lo is down in a fresh namespace
        compile_filter("vlan", linux_vlan=True, netns=vlan_tb.netns)
    assert "lo" in str(info.value) and "device=" in str(info.value)
    with pytest.raises(FilterError):                   # no such device, and lo still down
        compile_filter("vlan", linux_vlan=True, netns=vlan_tb.netns, device="nosuch0")
    vlan_tb.ip("link", "set", "lo", "up")
    via_lo = compile_filter("vlan", linux_vlan=True, netns=vlan_tb.netns, device="nosuch0")
    assert via_lo.dump_ddd() == tcpdump_live(vlan_tb, "-ddd", "vlan")


def test_linux_vlan_snaplen(vlan_tb):
    small = compile_filter("vlan", linux_vlan=True, netns=vlan_tb.netns, device=vlan_tb.b, snaplen=100)
    assert small.dump_ddd() == tcpdump_live(vlan_tb, "-ddd", "-s", "100", "vlan")
    # libpcap clamps a live handle's snaplen to 262144; the result still returns ours.
    big = compile_filter("vlan", linux_vlan=True, netns=vlan_tb.netns, device=vlan_tb.b, snaplen=300000)
    assert {k for code, _, _, k in big.instructions if code == 0x06} == {0, 300000}


def test_linux_vlan_compiles_once_per_expression(vlan_tb):
    start = time.perf_counter()
    first = compile_filter("vlan 42", linux_vlan=True, netns=vlan_tb.netns, device=vlan_tb.b)
    activation = time.perf_counter() - start
    start = time.perf_counter()
    again = compile_filter("vlan 42", linux_vlan=True, netns="/nonexistent/never-entered")
    cached = time.perf_counter() - start
    assert first == again and cached < activation


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux setpriv")
def test_linux_vlan_without_cap_net_raw():
    code = ("import zcap.bpf as b\n"
            "try:\n"
            "    b.compile_filter('vlan', linux_vlan=True)\n"
            "except b.CapturePermissionError as e:\n"
            "    print('denied:', e)\n")
    proc = python_without_net_raw(code)
    assert "denied:" in proc.stdout and "CAP_NET_RAW" in proc.stdout, proc.stdout + proc.stderr
    assert issubclass(CapturePermissionError, PermissionError)

