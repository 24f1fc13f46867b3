"""zcap.compat.pcap (pypcap's API) on a real veth pair."""

from __future__ import annotations

import threading
import time

import pytest

import zcap.compat.pcap as pcap
from tests.live.cli_helpers import interrupt_while_waiting
from tests.live.conftest import open_on, seq_of
from tests.live.test_compat_pcapy import SMALL, send_seq


def open_pc(tb, name=None, **kw):
    kw.setdefault("timeout_ms", 50)
    return pcap.pcap(name or tb.b, netns=tb.netns, **SMALL, **kw)


@pytest.mark.parametrize("immediate", [False, True])
def test_iteration_in_order_and_close_ends_it(testbed, immediate):
    pc = open_pc(testbed, immediate=immediate, timestamp_in_ns=True)
    assert pc.capture.mode == ("immediate" if immediate else "ring")
    send_seq(testbed, 100)
    got = []
    closer = threading.Timer(1.0, pc.close)
    closer.start()
    try:
        for ts, buf in pc:                  # ends when another thread closes the capture
            got.append((ts, seq_of(buf)))
    finally:
        closer.cancel()
    assert [s for _, s in got] == list(range(100))
    times = [t for t, _ in got]
    assert times == sorted(times) and all(type(t) is int for t in times)
    assert any(t % 1000 for t in times)     # nanoseconds, not microseconds


def test_dispatch_readpkts_timeout_and_nonblock(testbed):
    pc = open_pc(testbed, timeout_ms=200)
    try:
        t0 = time.monotonic()
        assert pc.dispatch(-1, print) == 0            # idle: returns after timeout_ms
        assert 0.15 <= time.monotonic() - t0 < 5
        pc.setnonblock(True)
        assert pc.getnonblock() is True
        assert pc.readpkts() == []
        pc.setnonblock(False)
        send_seq(testbed, 30)
        got = []
        while len(got) < 30:
            pkts = pc.readpkts()
            assert pkts, "timed out with packets left"
            got += [seq_of(b) for _, b in pkts]
        assert got == list(range(30))
        assert all(type(ts) is float for ts, _ in pkts)
        received, dropped, _ = pc.stats()
        assert (received, dropped) == (30, 0)
        assert pc.fileno() == pc.fd == pc.capture.fileno()
    finally:
        pc.close()


def test_setfilter_setdirection_sendpacket_and_device_lookups(testbed, monkeypatch):
    testbed.ip("addr", "add", "172.16.5.5/16", "dev", testbed.b)
    assert pcap.lookupnet(testbed.b, netns=testbed.netns) == (bytes([172, 16, 0, 0]), bytes([255, 255, 0, 0]))
    with pytest.raises(OSError):
        pcap.lookupnet(testbed.a, netns=testbed.netns)          # no IPv4 address
    monkeypatch.setenv("ZCAP_NETNS", testbed.netns)
    assert set(pcap.findalldevs()) == {"lo", testbed.a, testbed.b, "any"}
    pc = pcap.pcap(timeout_ms=50, **SMALL)                     # name=None: lookupdev()
    assert pc.name in (testbed.a, testbed.b)
    pc.close()
    pc = open_pc(testbed)
    try:
        pc.setfilter("udp and ip[5] & 1 == 1")
        send_seq(testbed, 3)
        assert pc.readpkts() == []
        pc.setfilter("udp")
        assert pc.filter == "udp"
        assert pc.setdirection(pcap.PCAP_D_OUT) is True
        send_seq(testbed, 3, first=3)
        assert pc.readpkts() == []
        assert pc.setdirection(pcap.PCAP_D_IN) is True
        send_seq(testbed, 3, first=6)
        assert [seq_of(b) for _, b in pc.readpkts()] == [6, 7, 8]
    finally:
        pc.close()
    tx = open_pc(testbed, testbed.a)
    with open_on(testbed, **SMALL) as ref:
        frame = testbed.frame(90, seq=5)
        assert tx.sendpacket(frame) == 90
        assert bytes(ref.next(timeout=2)) == frame
    tx.close()


IDLE_ITER = """
import sys, zcap.compat.pcap as pcap
pc = pcap.pcap(sys.argv[1], timeout_ms=0)
print("waiting", flush=True)
try:
    for ts, buf in pc:
        pass
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def test_ctrl_c_ends_iteration_on_an_idle_link(testbed):
    import os
    env = dict(os.environ, ZCAP_NETNS=testbed.netns)
    _, out, err = interrupt_while_waiting(IDLE_ITER, testbed.b, env=env)
    assert "interrupted" in out, err
