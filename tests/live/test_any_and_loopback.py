"""Interface "any" (cooked headers, like libpcap) and loopback (no duplicates)."""

from __future__ import annotations

import socket
import struct

import pytest

import zcap
from tests.live.conftest import MODES, collect, collect_until_idle, expected_frame, open_on
from tests.live.reference import Tcpdump
from zcap import netns

SLL2_LEN, SLL_LEN = 20, 16


@pytest.mark.parametrize("opts", MODES)
def test_any_synthesizes_sll2_headers(testbed, opts):
    template = testbed.frame(100)
    mac_a = testbed.mac(testbed.a)
    idx_a, idx_b = testbed.ifindex(testbed.a), testbed.ifindex(testbed.b)
    with open_on(testbed, "any", **opts) as cap:
        assert cap.linktype == zcap.LinkType.LINUX_SLL2
        with testbed.sender() as s:
            s.send_sequence(template, 10, first_seq=0)
        got = collect(cap, 20, keep=lambda p: (bytes(p), p.ifindex, p.direction, p.wirelen))
        assert collect_until_idle(cap, idle=0.2) == []
    assert len(got) == 20                       # each frame leaves a and enters b
    outgoing = [g for g in got if g[2] == zcap.Direction.OUT]
    incoming = [g for g in got if g[2] == zcap.Direction.IN]
    assert len(outgoing) == len(incoming) == 10
    for (data, ifindex, direction, wirelen) in got:
        proto, mbz, hdr_ifindex, hatype, pkttype, halen = struct.unpack_from("!HHIHBB", data)
        assert (proto, mbz, hatype, halen) == (0x0800, 0, 1, 6)
        assert hdr_ifindex == ifindex == (idx_a if direction == zcap.Direction.OUT else idx_b)
        assert pkttype == (4 if direction == zcap.Direction.OUT else 0)
        assert data[12:18] == mac_a                          # link-layer source address
        assert wirelen == len(data) == SLL2_LEN + 100 - 14
    seqs = sorted(struct.unpack_from("!Q", d, SLL2_LEN + 28)[0] for d, *_ in incoming)
    assert seqs == list(range(10))
    for data, *_ in incoming:
        seq = struct.unpack_from("!Q", data, SLL2_LEN + 28)[0]
        assert data[SLL2_LEN:] == expected_frame(template, seq)[14:]


def test_any_with_sll_headers(testbed):
    template = testbed.frame(64)
    with open_on(testbed, "any", cooked="sll", direction="in") as cap:
        assert cap.linktype == zcap.LinkType.LINUX_SLL
        with testbed.sender() as s:
            s.send_sequence(template, 5)
        got = collect_until_idle(cap, idle=0.3)
    assert len(got) == 5                          # direction="in" keeps b's copies only
    for seq, data in enumerate(got):
        pkttype, hatype, halen = struct.unpack_from("!HHH", data)
        assert (pkttype, hatype, halen) == (0, 1, 6)
        assert data[6:12] == testbed.mac(testbed.a) and data[14:16] == b"\x08\x00"
        assert data[SLL_LEN:] == expected_frame(template, seq)[14:]


@pytest.mark.parametrize("cooked,tcpdump_type", [("sll2", "LINUX_SLL2"), ("sll", "LINUX_SLL")])
def test_any_matches_libpcap_byte_for_byte(testbed, cooked, tcpdump_type):
    template = testbed.frame(90)
    ref = Tcpdump(testbed.netns, "any", 20, "-y", tcpdump_type)
    with open_on(testbed, "any", cooked=cooked) as cap:
        with testbed.sender() as s:
            s.send_sequence(template, 10)
        ours = collect(cap, 20, keep=lambda p: (p.ts_ns, p.wirelen, bytes(p)))
    linktype, theirs = ref.result()
    assert linktype == cap.linktype
    assert len(ours) == len(theirs) == 20
    assert sorted(ours) == sorted(theirs)         # same bytes, same ns timestamps


def _udp_in(ns):
    with netns.entered(ns):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    return rx, tx


@pytest.mark.parametrize("iface", ["lo", "any"])
@pytest.mark.parametrize("opts", MODES)
def test_loopback_packets_are_seen_once(testbed, iface, opts):
    rx, tx = _udp_in(testbed.netns)
    port = rx.getsockname()[1]
    with open_on(testbed, iface, **opts) as cap:
        for i in range(50):
            tx.sendto(b"loop%04d" % i, ("127.0.0.1", port))
        got = collect_until_idle(cap, idle=0.3, keep=lambda p: (bytes(p), p.pkttype))
        stats = cap.stats()
    rx.close()
    tx.close()
    payloads = [d[-8:] for d, _ in got]
    assert payloads == [b"loop%04d" % i for i in range(50)]
    assert all(t == zcap.PacketType.HOST for _, t in got)
    if iface == "any":
        assert stats.skipped == 50                # the outgoing copies, dropped as libpcap does


def test_loopback_matches_tcpdump_count(testbed):
    rx, tx = _udp_in(testbed.netns)
    port = rx.getsockname()[1]
    ref = Tcpdump(testbed.netns, "lo", 30)
    with open_on(testbed, "lo") as cap:
        for _ in range(30):
            tx.sendto(b"x" * 20, ("127.0.0.1", port))
        ours = collect(cap, 30, keep=lambda p: (p.ts_ns, p.wirelen, bytes(p)))
        assert collect_until_idle(cap, idle=0.2) == []
    _, theirs = ref.result()
    rx.close()
    tx.close()
    assert ours == theirs
