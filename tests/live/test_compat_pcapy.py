"""zcap.compat.pcapy on a real veth pair: pcapy-ng's live tests, timeouts, Ctrl-C, fanout."""

from __future__ import annotations

import os
import struct
import threading
import time

import pytest

import zcap
import zcap.compat.pcapy as pcapy
from tests.live.cli_helpers import interrupt_while_waiting
from tests.live.conftest import open_on, seq_of
from tests.unit.test_compat_pcapy import PINGS, run_pcapy_suite

SMALL = dict(block_size=1 << 18, block_count=4)


def open_shim(tb, iface=None, to_ms=100, **kw):
    return pcapy.open_live(iface or tb.b, 65535, 0, to_ms, netns=tb.netns, **kw)


def send_seq(tb, count, first=0, size=64):
    with tb.sender() as s:
        for i in range(first, first + count):
            s.send(tb.frame(size, seq=i))


def test_pcapy_ng_live_tests_on_the_testbed_interface(testbed, tmp_path):
    """Its disabled _testLiveCapture / _testSendPacket, unmodified, on veth-b instead
    of vboxnet0 (given the address 192.168.56.1/24 the test expects)."""
    testbed.ip("addr", "add", "192.168.56.1/24", "dev", testbed.b)
    stop = threading.Event()

    def trickle():               # _testLiveCapture waits (to_ms=1500) for one packet
        with testbed.sender() as s:
            for i in range(600):
                if stop.wait(0.02):
                    break
                s.send(testbed.frame(64, seq=i))

    with zcap.open_live(testbed.a, netns=testbed.netns, filter="icmp", **SMALL) as watch:
        sender = threading.Thread(target=trickle)
        sender.start()
        try:
            env = dict(os.environ, ZCAP_NETNS=testbed.netns)
            outcomes = run_pcapy_suite(tmp_path, testbed.b, env=env)
        finally:
            stop.set()
            sender.join()
        sent = [bytes(p) for p in iter(lambda: watch.next(timeout=1.0), None)]
    assert outcomes["_testLiveCapture"] == "ok", outcomes
    assert outcomes["_testSendPacket"] == "ok", outcomes
    with zcap.open_offline(PINGS) as f:
        assert sent == [bytes(p) for p in f]           # all 96 pings went out, in order


def test_next_honours_to_ms_on_an_idle_link(testbed):
    with open_shim(testbed, to_ms=200) as r:
        t0 = time.monotonic()
        assert r.next() == (None, b"")
        waited = time.monotonic() - t0
        assert 0.15 <= waited < 5, waited
        r.setnonblock(1)
        assert r.getnonblock() == 1
        assert r.next() == (None, b"")
        assert r.dispatch(-1, print) == 0
        assert r.next_batch(10) == (b"", b"")


IDLE_NEXT = """
import sys, zcap.compat.pcapy as pcapy
r = pcapy.open_live(sys.argv[1], 65535, 0, 0)     # to_ms=0: wait forever
print("waiting", flush=True)
try:
    r.next()
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def test_ctrl_c_interrupts_next_on_an_idle_link(testbed):
    env = dict(os.environ, ZCAP_NETNS=testbed.netns)
    returncode, out, err = interrupt_while_waiting(IDLE_NEXT, testbed.b, env=env)
    assert "interrupted" in out, err
    assert returncode == 0, err


def test_next_loop_dispatch_next_batch_deliver_everything_in_order_in_nanoseconds(testbed):
    with open_shim(testbed, to_ms=50, **SMALL) as r, open_on(testbed, **SMALL) as ref:
        send_seq(testbed, 400)
        expected = [(p.ts_ns, bytes(p)) for p in iter(lambda: ref.next(timeout=0.5), None)]
        assert len(expected) == 400
        got = []
        for _ in range(50):
            hdr, data = r.next()
            got.append((hdr.getts_ns(), data))
        r.loop(50, lambda h, d: got.append((h.getts_ns(), d)))
        while len(got) < 200:
            assert r.dispatch(7, lambda h, d: got.append((h.getts_ns(), d))) <= 7
        while len(got) < 400:
            data, meta = r.next_batch(33)
            assert meta, "timed out with packets left"
            for sec, usec, off, caplen in struct.iter_unpack("=IIII", meta):
                got.append(((sec, usec), data[off:off + caplen]))
        assert r.next() == (None, b"")
        assert [d for _, d in got] == [d for _, d in expected]
        # Each packet socket stamps the packet itself, so the two captures' times
        # differ slightly; ours are integer nanoseconds, not microseconds rounded.
        times = [t for t, _ in got if isinstance(t, int)]
        assert len(times) >= 200
        assert times == sorted(times) and any(t % 1000 for t in times)
        assert all(abs(t - e) < 10**9 for t, (e, _) in zip(times, expected))
        for (sec, usec), _ in got[len(times):]:
            assert 0 <= usec < 10**6 and abs(sec - expected[-1][0] // 10**9) <= 1
        received, dropped, ifdropped = r.stats()
        assert (received, dropped, ifdropped) == (400, 0, 0)


def test_callback_exception_propagates_and_nothing_is_lost(testbed):
    class Stop(Exception):
        pass

    def cb(hdr, data):
        if seq_of(data) == 5:
            raise Stop

    with open_shim(testbed, to_ms=50, **SMALL) as r:
        send_seq(testbed, 20)
        with pytest.raises(Stop):
            r.loop(-1, cb)
        rest = []
        r.loop(14, lambda h, d: rest.append(seq_of(d)))
        assert rest == list(range(6, 20))


def test_setfilter_setdirection_getfd_and_getnet(testbed):
    testbed.ip("addr", "add", "10.77.3.9/20", "dev", testbed.b)
    with open_shim(testbed, to_ms=50, **SMALL) as r:
        assert (r.getnet(), r.getmask()) == ("10.77.0.0", "255.255.240.0")
        assert r.datalink() == pcapy.DLT_EN10MB
        assert r.getfd() == r.capture.fileno()
        r.setfilter("udp and ip[5] & 1 == 1")       # the frames' IP id is 0: nothing passes
        send_seq(testbed, 5)
        assert r.next() == (None, b"")
        r.setfilter("udp")
        r.setdirection(pcapy.PCAP_D_OUT)           # veth-b only receives here
        send_seq(testbed, 5, first=5)
        assert r.next() == (None, b"")
        r.setdirection(pcapy.PCAP_D_IN)
        send_seq(testbed, 5, first=10)
        assert [seq_of(r.next()[1]) for _ in range(5)] == list(range(10, 15))
        with pytest.raises(pcapy.PcapError):
            r.setfilter("udp port")
        with pytest.raises(pcapy.PcapError):
            r.setdirection(7)


def test_findalldevs_lookupdev_and_zcap_netns_variable(testbed, monkeypatch):
    assert {testbed.a, testbed.b, "lo", "any"} == set(pcapy.findalldevs(netns=testbed.netns))
    monkeypatch.setenv("ZCAP_NETNS", testbed.netns)
    assert set(pcapy.findalldevs()) == {testbed.a, testbed.b, "lo", "any"}
    assert pcapy.lookupdev() in (testbed.a, testbed.b)
    r = pcapy.create(testbed.b)
    r.set_snaplen(60)
    r.set_timeout(50)
    r.set_buffer_size(1 << 20)
    assert r.activate() == 0
    assert r.set_snaplen(100) == pcapy.PCAP_ERROR_ACTIVATED
    send_seq(testbed, 1, size=200)
    hdr, data = r.next()
    assert (hdr.getcaplen(), hdr.getlen(), len(data)) == (60, 200, 60)
    r.close()
    with pytest.raises(pcapy.PcapError, match="no-such"):
        pcapy.open_live("no-such", 100, 0, 10)


def test_set_fanout_splits_traffic_between_readers(testbed):
    group = 0x4000 + os.getpid() % 0x3FFF
    readers = [open_shim(testbed, to_ms=50, **SMALL) for _ in range(2)]
    try:
        for r in readers:
            r.set_fanout(group, pcapy.PACKET_FANOUT_LB)
        send_seq(testbed, 100)
        seen = []
        for r in readers:
            got = []
            while True:
                hdr, data = r.next()
                if hdr is None:
                    break
                got.append(seq_of(data))
            seen.append(got)
        assert sorted(seen[0] + seen[1]) == list(range(100))
        assert seen[0] and seen[1]
        with pytest.raises(pcapy.PcapError):
            readers[0].set_fanout(group, 99)
    finally:
        for r in readers:
            r.close()
    with pytest.raises(pcapy.PcapError, match="offline"):
        pcapy.open_offline(str(PINGS)).set_fanout(1)


def test_sendpacket_and_any_device(testbed):
    with open_shim(testbed, iface="any", to_ms=50, **SMALL) as anyr, \
            open_on(testbed, testbed.b, **SMALL) as ref:
        assert anyr.datalink() == pcapy.DLT_LINUX_SLL        # libpcap's default for "any"
        with open_shim(testbed, iface=testbed.a, to_ms=50, **SMALL) as w:
            frame = testbed.frame(80, seq=77)
            w.sendpacket(frame)
        assert bytes(ref.next(timeout=2)) == frame
        hdr, data = anyr.next()
        assert data[16:] == frame[14:]


def test_next_batch_with_packet_sizes_changing_under_it(testbed):
    """next_batch() sizes its bytes from the last batch; a packet that does not
    fit is appended, never lost or cut."""
    sizes = [64] * 20 + [1400, 64, 1000, 1400, 64, 200, 1400, 1400, 64, 64]
    with open_shim(testbed, to_ms=50, **SMALL) as r, open_on(testbed, **SMALL) as ref:
        with testbed.sender() as s:
            for i, size in enumerate(sizes):
                s.send(testbed.frame(size, seq=i))
        expected = [bytes(p) for p in iter(lambda: ref.next(timeout=0.5), None)]
        got = []
        for max_n in [20, 10, 3, 3, 3, 3, 3, 3, 3, 3]:
            data, meta = r.next_batch(max_n)
            records = list(struct.iter_unpack("=IIII", meta))
            assert 0 < len(records) <= max_n
            assert sum(n for *_, n in records) == len(data)
            got += [data[off:off + n] for _, _, off, n in records]
            if len(got) == len(sizes):
                break
        assert got == expected and len(got) == len(sizes)


def test_direction_set_before_activate_can_be_changed_after(testbed):
    r = pcapy.create(testbed.b, netns=testbed.netns, **SMALL)
    r.set_timeout(50)
    r.setdirection(pcapy.PCAP_D_OUT)
    r.activate()
    try:
        send_seq(testbed, 3)
        assert r.next() == (None, b"")             # veth-b only receives here
        r.setdirection(pcapy.PCAP_D_INOUT)
        send_seq(testbed, 3, first=3)
        assert [seq_of(r.next()[1]) for _ in range(3)] == [3, 4, 5]
    finally:
        r.close()


def test_tagged_frames_arrive_as_on_the_wire(testbed):
    """802.1Q and QinQ frames come out with their tags, as libpcap gives them."""
    frames = [testbed.frame(80, seq=1, vlan_tags=[(0x8100, 7)]),
              testbed.frame(90, seq=2, vlan_tags=[(0x88A8, 100), (0x8100, 5)]),
              testbed.frame(64, seq=3)]
    with open_shim(testbed, to_ms=50, **SMALL) as r:
        with testbed.sender() as s:
            for f in frames:
                s.send(f)
        got = []
        for _ in frames:
            hdr, data = r.next()
            assert hdr is not None
            got.append(data)
        assert got == frames


def test_activating_a_created_handle_names_the_missing_interface():
    """(Moved from tests/unit/test_compat_pcapy.py: activating needs root.)"""
    r = pcapy.create("zcap-no-such-if0")
    assert r.set_snaplen(100) == 0 and r.set_promisc(1) == 0 and r.set_timeout(5) == 0
    with pytest.raises(pcapy.PcapError, match="zcap-no-such-if0"):
        r.activate()
