"""Kernel filters from tcpdump expressions: the kernel delivers exactly what
zcap's user-space engine and libpcap's own bpf_filter accept, and no packet a
filter rejects is ever delivered, at open and across a filter change."""

from __future__ import annotations

import time

import pytest

import zcap
from tests.live.conftest import collect_until_idle, flooding, open_on
from tests.live.reference import Tcpdump
from tests.live.traffic import corpus
from zcap import bpf

EXPRESSIONS = [
    "host 10.99.0.1", "src host 10.0.0.5", "dst net 10.99.0.0/24", "net 192.168.0.0/16",
    "port 53", "tcp port 80", "udp port 123", "portrange 1000-2000", "tcp", "udp", "icmp",
    "ip6", "ip6 and tcp", "icmp6", "arp", "tcp[tcpflags] & tcp-syn != 0",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn", "icmp[icmptype] == icmp-echo",
    "icmp[icmptype] == icmp-echoreply", "vlan", "vlan 100", "vlan and udp port 53", "vlan 0",
    "len > 500", "less 100", "greater 1000", "ether host 02:00:00:00:00:01", "ether broadcast",
    "broadcast", "multicast", "ip multicast", "not tcp", "tcp or udp and not port 53",
    "(tcp or udp) and not port 53", "ip[2:2] > 576", "ip[8] < 64", "udp and (port 53 or port 123)",
    "not arp and not ip6", "ether proto 0x88b5", "ether[0] & 1 != 0",
]


@pytest.fixture(scope="module")
def frames():
    from zcap.testbed import Testbed
    with Testbed() as tb:
        return corpus(tb.mac(tb.b))


def _send(tb, frames):
    with tb.sender() as s:
        s.send_all(frames)


def test_corpus_is_varied(frames):
    assert len(frames) > 100 and len(set(frames)) == len(frames)


def _for_bed(tb, frames):
    dst = tb.mac(tb.b)
    return [f if f[0] & 1 else dst + f[6:] for f in frames]


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_wire_bytes_by_default_with_live_libpcap_semantics(testbed, frames, expr):
    """By default zcap delivers the wire bytes (tags reinserted) and the filter
    keeps libpcap's live semantics: exactly the packets, and the bytes, that
    a live `tcpdump -i IFACE -w - EXPR` keeps from the same traffic."""
    frames = _for_bed(testbed, frames)
    ref = Tcpdump(testbed.netns, testbed.b, len(frames), expr)
    with open_on(testbed, filter=expr) as cap:
        _send(testbed, frames)
        by_kernel = collect_until_idle(cap, idle=0.3)
        stats = cap.stats()
    _, by_tcpdump = ref.result(timeout=1)
    assert by_kernel == [data for _, _, data in by_tcpdump]
    assert all(f in frames for f in by_kernel)
    assert stats.dropped == 0 and stats.filter_location == "kernel"
    assert stats.delivered + stats.filtered == stats.received


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_as_delivered_untagged_matches_the_kernel_and_live_libpcap(testbed, frames, expr):
    """By default a tagged packet is delivered untagged with its tag as metadata,
    and the filter runs wholly in the kernel, as a live libpcap capture does
    on Linux: zcap delivers what the kernel accepts, which is what zcap's
    engine says on the kernel's view, and what tcpdump -i delivers."""
    frames = _for_bed(testbed, frames)
    kernel_prog = bpf.compile_filter(expr, linktype=1, linux_vlan=True, netns=testbed.netns,
                                     device=testbed.b)
    with open_on(testbed, reinsert_vlan=False) as cap:  # the unfiltered stream
        _send(testbed, frames)
        seen = collect_until_idle(cap, idle=0.3, keep=lambda p: (p.vlan, bytes(p)))
    assert len(seen) == len(frames)
    by_engine = [data for vlan, data in seen if kernel_prog.match(data, vlan_tci=vlan)]
    ref = Tcpdump(testbed.netns, testbed.b, max(1, len(by_engine)), expr)
    with open_on(testbed, filter=expr, reinsert_vlan=False) as cap:
        _send(testbed, frames)
        by_kernel = collect_until_idle(cap, idle=0.3)
        stats = cap.stats()
    assert by_kernel == by_engine
    assert stats.filtered == 0 and stats.dropped == 0 and stats.delivered == stats.received
    _, by_tcpdump = ref.result(timeout=3)
    assert len(by_tcpdump) == len(by_kernel)


@pytest.mark.parametrize("opts", [dict(), dict(mode="copy"), dict(immediate=True)],
                         ids=["ring", "copy", "immediate"])
def test_no_unfiltered_packet_at_open_even_under_traffic(testbed, opts):
    """Traffic flows before the capture opens; not one packet slips through."""
    wanted = testbed.frame(64, dport=53)
    other = testbed.frame(64, dport=80)
    with flooding(testbed, [other] * 50 + [wanted]):
        for _ in range(5):
            with open_on(testbed, filter="udp dst port 53", **opts) as cap:
                got = [cap.next(timeout=2) for _ in range(20)]
            assert all(p is not None and bytes(p) == wanted for p in got)


@pytest.mark.parametrize("opts", [dict(), dict(mode="copy"), dict(immediate=True),
                                  dict(interface="any")],
                         ids=["ring", "copy", "immediate", "any"])
def test_no_leak_across_filter_changes_under_continuous_traffic(testbed, opts):
    opts = dict(opts)
    iface = opts.pop("interface", None)
    frames = [testbed.frame(64, seq=i, dport=53 if i % 2 else 80) for i in range(64)]
    filters = ["udp dst port 53", "udp dst port 80"]
    with open_on(testbed, iface, filter=filters[0], block_size=1 << 16, block_count=16,
                 **opts) as cap:
        with flooding(testbed, frames):
            delivered = {0: 0, 1: 0}
            for switch in range(12):
                current = switch % 2
                prog = cap.filter_program
                for _ in range(300):
                    pkt = cap.next(timeout=2)
                    assert pkt is not None
                    assert prog.match(pkt) > 0, f"leak after switching to {filters[current]!r}"
                    delivered[current] += 1
                cap.set_filter(filters[1 - current])
        stats = cap.stats()
    assert delivered[0] > 0 and delivered[1] > 0
    assert stats.filtered > 0        # packets of the old filter were caught in user space


def test_lock_filter(testbed):
    with open_on(testbed, filter="udp", lock_filter=True) as cap:
        with pytest.raises(zcap.FilterError, match="locked"):
            cap.set_filter("tcp")
        with pytest.raises(zcap.FilterError, match="locked"):
            cap.set_filter(None)
        assert cap.filter == "udp"
        _send(testbed, [testbed.frame(64)])
        assert cap.next(timeout=2) is not None


INVALID = ["tcp port 99999", "udp and (", "portrange 10-", "vlan 5000", "proto nosuchproto",
           "ether host zz:zz:zz:zz:zz:zz", "net 10.0.0.0/33", "tcp[tcpflags] & bogus != 0",
           "ip[2:3] > 1", "&& ||", "host"]


@pytest.mark.parametrize("expr", INVALID)
def test_invalid_expression_keeps_the_capture_working(testbed, expr):
    with pytest.raises(zcap.FilterError):
        open_on(testbed, filter=expr)
    with open_on(testbed, filter="udp dst port 9") as cap:
        with pytest.raises(zcap.FilterError) as info:
            cap.set_filter(expr)
        assert expr.split()[0] in str(info.value) or "BPF" in str(info.value)
        assert cap.filter == "udp dst port 9"
        _send(testbed, [testbed.frame(64, dport=80), testbed.frame(64, dport=9)])
        got = collect_until_idle(cap, idle=0.3)
    assert got == [testbed.frame(64, dport=9)]


def test_raw_programs_are_accepted(testbed):
    ddd = bpf.compile_filter("udp dst port 9").dump_ddd()
    tuples = bpf.compile_filter("udp dst port 9").instructions
    for spec in (ddd, tuples, bpf.BPFProgram.from_tuples(tuples)):
        with open_on(testbed, filter=spec) as cap:
            _send(testbed, [testbed.frame(64, dport=80), testbed.frame(64, dport=9)])
            assert collect_until_idle(cap, idle=0.3) == [testbed.frame(64, dport=9)]
    with pytest.raises(zcap.FilterError):
        open_on(testbed, filter=[(0x15, 5, 0, 1)])             # jumps past the end


def test_filter_change_with_a_full_ring_refilters_every_block_the_old_filter_filled(testbed):
    # With every block handed over, the scan for blocks an earlier filter
    # filled came round to the block being read (the oldest) and took its
    # number as the newest: the blocks after it reached the application
    # unfiltered.  A consumer that falls behind (a busy machine) sees this.
    frames = [testbed.frame(64, seq=i, dport=53 if i % 2 else 80) for i in range(64)]
    with open_on(testbed, filter="udp", block_size=1 << 16, block_count=8) as cap:
        with testbed.sender() as s:
            for _ in range(100):                     # 6,400 frames: twice what 8 blocks hold
                s.send_all(frames)
        assert cap.next(timeout=2) is not None       # the first block is being read
        time.sleep(0.2)                              # every other block is retired: the ring is full
        cap.set_filter("udp dst port 53")
        prog = cap.filter_program
        got = collect_until_idle(cap, idle=0.3)
        stats = cap.stats()
    assert len(got) > 1000 and stats.dropped > 0
    leaks = [d for d in got if not prog.match(d)]
    assert leaks == [], f"{len(leaks)} of {len(got)} packets the new filter rejects"
    assert stats.filtered > 1000
