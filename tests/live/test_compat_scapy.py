"""zcap.compat.scapy with scapy's own sniff()/AsyncSniffer inside the testbed's namespace.

scapy reads its interface list when imported, so the scapy side runs in a
child started with `ip netns exec`, with a PATH that has no tcpdump: the
filters must compile in process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

pytest.importorskip("scapy")

NO_TCPDUMP_PATH = "/nonexistent-zcap-test-path"

PRELUDE = """
import json, sys, time
from scapy.all import conf, sniff, AsyncSniffer
from zcap.compat.scapy import ZcapSocket, install
conf.verb = 0
iface = sys.argv[1]
def ready():
    print("ready", flush=True)
def report(**kw):
    print(json.dumps(kw), flush=True)
"""


class Child:
    """A Python child in the testbed namespace, talking one line at a time."""

    def __init__(self, tb, body: str) -> None:
        ip = shutil.which("ip")
        env = dict(os.environ, PATH=NO_TCPDUMP_PATH)
        env.pop("ZCAP_NETNS", None)
        self.proc = subprocess.Popen([ip, "netns", "exec", tb.netns, sys.executable, "-c",
                                      PRELUDE + body, tb.b], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env, cwd=os.getcwd())

    def line(self) -> str:
        out = self.proc.stdout.readline()
        if not out:
            self.proc.wait(timeout=30)
            raise AssertionError(f"child ended: {self.proc.stderr.read()}")
        return out.strip()

    def result(self) -> dict:
        try:
            return json.loads(self.line())
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def send(tb, count, first=0, port=9):
    with tb.sender() as s:
        for i in range(first, first + count):
            s.send(tb.frame(64, seq=i, dport=port))


def test_sniff_opened_socket_filters_in_process_with_exact_times(testbed):
    child = Child(testbed, """
from zcap.compat.scapy import ZcapSocket
s = ZcapSocket(iface=iface, filter="udp dst port 9")
ready()
pkts = sniff(opened_socket=s, count=50, timeout=20)
s.close()
from decimal import Decimal
report(seqs=[int.from_bytes(bytes(p)[42:50], "big") for p in pkts],
       ns=[str(p.time) for p in pkts], types=sorted({type(p.time).__name__ for p in pkts}),
       wirelen=[p.wirelen for p in pkts], layer=pkts[0].__class__.__name__)
""")
    assert child.line() == "ready"
    send(testbed, 20, first=100, port=53)       # filtered out in the kernel
    send(testbed, 50)
    out = child.result()
    assert out["seqs"] == list(range(50))
    assert out["types"] == ["EDecimal"] and out["layer"] == "Ether"
    assert all(len(t.split(".")[1]) == 9 for t in out["ns"])          # nanoseconds, exactly
    assert any(not t.endswith("000") for t in out["ns"])
    assert out["wirelen"] == [64] * 50


def test_async_sniffer_stops_promptly(testbed):
    child = Child(testbed, """
seen = []
t = AsyncSniffer(opened_socket=ZcapSocket(iface=iface), prn=lambda p: seen.append(p), store=False)
t.start()
time.sleep(0.5)
ready()
sys.stdin.readline()
t0 = time.monotonic()
t.stop()
report(stop_s=time.monotonic() - t0, count=len(seen))
""")
    assert child.line() == "ready"
    send(testbed, 30)
    time.sleep(0.5)
    child.proc.stdin.write("stop\n")
    child.proc.stdin.flush()
    out = child.result()
    assert out["count"] == 30
    assert out["stop_s"] < 1.0          # woken through scapy's control pipe, not a poll timeout


def test_install_makes_plain_sniff_use_zcap_and_filters_need_no_tcpdump(testbed):
    child = Child(testbed, """
err = None
try:                                   # scapy's own socket, without tcpdump on the PATH
    sniff(iface=iface, filter="udp", count=1, timeout=0.2)
except Exception as exc:
    err = type(exc).__name__
prev = install()
seen = []
# ready once sniff() has opened its socket: frames sent before would be missed
sniff(iface=iface, filter="udp dst port 9", prn=lambda p: seen.append(p), count=40, timeout=20,
      store=False, started_callback=ready)
report(native_error=err, replaced=prev.__name__, l2listen=conf.L2listen.__name__,
       seqs=[int.from_bytes(bytes(p)[42:50], "big") for p in seen],
       sniffed_on=sorted({str(p.sniffed_on) for p in seen}))
""")
    assert child.line() == "ready"
    send(testbed, 10, first=100, port=7)
    send(testbed, 40)
    out = child.result()
    # scapy >= 2.5 compiles filters through libpcap too when it finds it; older
    # ones ran tcpdump -ddd and fail here
    assert out["native_error"] in (None, "Scapy_Exception")
    assert out["replaced"] == "L2ListenSocket" and out["l2listen"] == "ZcapSocket"
    assert out["seqs"] == list(range(40))
    assert out["sniffed_on"] == [testbed.b]
