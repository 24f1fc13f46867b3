"""What tcpdump captures, zcap captures: tagged traffic of every kind arrives as
its wire bytes, by default, through every path (the API, `zcap -w` pcap and
pcapng), byte for byte what was sent and what `tcpdump -w` wrote at the same
time; and filters keep libpcap's live semantics on it.

The veth's receive path strips the outermost 802.1Q / 802.1ad tag into
metadata, like a NIC with VLAN offload, so these frames exercise the
reinsertion of every outer tag below.
"""

from __future__ import annotations

import asyncio
import struct
import subprocess
import tempfile
import warnings
from pathlib import Path

import pytest

import zcap
from tests.live.cli_helpers import ZcapProcess
from tests.live.conftest import MODES, collect, collect_until_idle, flooding, open_on
from tests.live.reference import Tcpdump, read_pcap
from tests.live.traffic import _arp, _eth, _ipv4, _ipv6, _tcp, _udp

DOT1Q, DOT1AD = 0x8100, 0x88A8
MPLS_UC, PPPOE_SESSION = 0x8847, 0x8864


def _pppoe(inner: bytes) -> bytes:
    """A PPPoE session header (version 1, type 1, code 0) carrying IPv4 in PPP."""
    return struct.pack("!BBHHH", 0x11, 0, 0x1234, len(inner) + 2, 0x0021) + inner


def _mpls(inner: bytes, label: int = 100) -> bytes:
    return struct.pack("!I", (label << 12) | (1 << 8) | 64) + inner


def tagged_frames(dst: bytes, *, mtu: int = 1500) -> dict[str, bytes]:
    """One frame of each kind a trunk carries, each distinct."""
    def ip_tcp(ident: int, pad: int = 0) -> bytes:
        return _ipv4("10.1.0.1", "10.1.0.2", 6, _tcp(1000 + ident, 80, 0x18, bytes(pad)), ident)

    def ip_udp(ident: int, pad: int = 0) -> bytes:
        return _ipv4("10.1.0.1", "10.1.0.2", 17, _udp(2000 + ident, 53, bytes(pad)), ident)

    # the largest 802.1Q frame the MTU allows: 14 + 4 + mtu bytes
    biggest = ip_udp(9, mtu - 20 - 8)
    frames = {
        "dot1q": _eth(dst, 0x0800, ip_udp(1), [(DOT1Q, (5 << 13) | 100)]),
        "double-dot1q": _eth(dst, 0x0800, ip_tcp(2), [(DOT1Q, 100), (DOT1Q, 200)]),
        "qinq-802.1ad": _eth(dst, 0x0800, ip_udp(3), [(DOT1AD, (3 << 13) | 200), (DOT1Q, 300)]),
        "mpls-behind-qinq": _eth(dst, MPLS_UC, _mpls(ip_udp(4)), [(DOT1AD, 10), (DOT1Q, 20)]),
        "pppoe-behind-qinq": _eth(dst, PPPOE_SESSION, _pppoe(ip_tcp(5)), [(DOT1AD, 30), (DOT1Q, 40)]),
        "pppoe-behind-double-dot1q": _eth(dst, PPPOE_SESSION, _pppoe(ip_tcp(6)),
                                          [(DOT1Q, 30), (DOT1Q, 40)]),
        "priority-tag": _eth(dst, 0x0800, ip_udp(7), [(DOT1Q, (6 << 13) | (1 << 12) | 0)]),
        "dei-and-pcp": _eth(dst, 0x0800, ip_tcp(8), [(DOT1Q, (7 << 13) | (1 << 12) | 4094)]),
        "max-size-dot1q": _eth(dst, 0x0800, biggest, [(DOT1Q, 300)]),
        "ipv6-dot1q": _eth(dst, 0x86DD, _ipv6("fd00::1", "fd00::2", 17, _udp(1, 53, b"v6")),
                           [(DOT1Q, 100)]),
        "untagged-ip": _eth(dst, 0x0800, ip_tcp(10)),
        "untagged-arp": _eth(dst, 0x0806, _arp(1, "10.1.0.1", "10.1.0.2")),
    }
    assert len(frames["max-size-dot1q"]) == 14 + 4 + mtu
    assert len(set(frames.values())) == len(frames)
    return frames


def _send(tb, frames) -> None:
    with tb.sender() as s:
        s.send_all(frames)


def _packets_of(path: Path) -> list[bytes]:
    with zcap.open_offline(str(path)) as src:
        return [bytes(p) for p in src]


def _wire_lengths(path: Path) -> list[tuple[int, int]]:
    with zcap.open_offline(str(path)) as src:
        return [(p.caplen, p.wirelen) for p in src]


@pytest.fixture
def tmp():
    with tempfile.TemporaryDirectory(prefix="zcap-fidelity-") as d:
        yield Path(d)


def test_cli_pcap_and_pcapng_equal_tcpdump_and_the_wire(testbed, tmp):
    """`zcap -w` (pcap and pcapng), the API and `tcpdump -w`, all capturing the
    same tagged traffic at the same time, hold the bytes that were sent."""
    frames = list(tagged_frames(testbed.mac(testbed.b)).values())
    n = len(frames)
    ref = Tcpdump(testbed.netns, testbed.b, n)
    pcap, pcapng = tmp / "z.pcap", tmp / "z.pcapng"
    procs = [ZcapProcess("-i", testbed.b, "--netns", testbed.netns, "-c", str(n), "-w", str(pcap)),
             ZcapProcess("-i", testbed.b, "--netns", testbed.netns, "-c", str(n), "-w", str(pcapng),
                         "--format", "pcapng")]
    with open_on(testbed) as cap:
        _send(testbed, frames)
        api = collect(cap, n, keep=lambda p: (bytes(p), p.caplen, p.wirelen, p.vlan_inserted))
    for proc in procs:
        code, _, err = proc.wait(timeout=20)
        assert code == 0, err
    _, theirs = ref.result(timeout=5)
    assert [data for _, _, data in theirs] == frames
    assert [t[1] for t in theirs] == [len(f) for f in frames]
    assert _packets_of(pcap) == _packets_of(pcapng) == frames
    assert _wire_lengths(pcap) == _wire_lengths(pcapng) == [(len(f), len(f)) for f in frames]
    assert [a[0] for a in api] == frames
    assert all(c == w == len(f) for (_, c, w, _), f in zip(api, frames, strict=True))
    assert [a[3] for a in api] == [f[12:14] in (b"\x81\x00", b"\x88\xa8") for f in frames]


@pytest.mark.parametrize("opts", MODES)
def test_every_path_delivers_the_wire_bytes_by_default(testbed, opts):
    """Iteration, batches (packets and columns) and async, in every mode."""
    frames = list(tagged_frames(testbed.mac(testbed.b)).values())
    with open_on(testbed, **opts) as cap:
        _send(testbed, frames)
        assert collect(cap, len(frames)) == frames
        _send(testbed, frames)
        got, columns = [], []
        for batch in cap.batches():
            buf = bytes(batch.buffer)
            offsets = memoryview(batch.offsets).tolist()
            caplens = memoryview(batch.caplen).tolist()
            columns += [buf[o:o + c] for o, c in zip(offsets, caplens)]
            got += [bytes(p) for p in batch]
            if len(got) >= len(frames):
                break
        assert got == columns == frames

        async def read_async() -> list[bytes]:
            out = []
            while len(out) < len(frames):
                pkt = await cap.anext(timeout=5)
                assert pkt is not None
                out.append(bytes(pkt))
            return out

        _send(testbed, frames)
        assert asyncio.run(read_async()) == frames


def test_opt_out_delivers_the_kernel_view(testbed):
    """reinsert_vlan=False: the outer tag is only metadata (documented opt-out)."""
    frames = tagged_frames(testbed.mac(testbed.b))
    f = frames["qinq-802.1ad"]
    with open_on(testbed, reinsert_vlan=False) as cap:
        _send(testbed, [f])
        pkt = cap.next(timeout=5)
        assert bytes(pkt) == f[:12] + f[16:]
        assert (pkt.vlan, pkt.vlan_tpid, pkt.vlan_inserted) == ((3 << 13) | 200, DOT1AD, False)


def test_jumbo_tagged_frame_at_the_mtu(jumbo_testbed, tmp):
    tb = jumbo_testbed
    frames = [tagged_frames(tb.mac(tb.b), mtu=9000)["max-size-dot1q"]]
    ref = Tcpdump(tb.netns, tb.b, 1)
    out = tmp / "jumbo.pcapng"
    proc = ZcapProcess("-i", tb.b, "--netns", tb.netns, "-c", "1", "-w", str(out), "--format", "pcapng")
    with open_on(tb) as cap:
        _send(tb, frames)
        assert collect(cap, 1) == frames
    code, _, err = proc.wait(timeout=20)
    assert code == 0, err
    _, theirs = ref.result(timeout=5)
    assert [t[2] for t in theirs] == _packets_of(out) == frames
    assert len(frames[0]) == 9018


# ---------------------------------------------------------------- filters: live semantics

LIVE_EXPRESSIONS = [
    "vlan", "vlan 100", "vlan 200", "vlan 4094", "vlan 0", "vlan and vlan", "vlan 100 and vlan 200",
    "not vlan", "ip", "tcp", "udp", "ip6", "arp", "vlan and ip", "vlan and udp", "mpls",
    "vlan and vlan and mpls", "pppoes", "pppoes and tcp", "vlan and pppoes", "ether proto 0x8100",
    "ether proto 0x88a8", "len > 1000", "host 10.1.0.2",
]


@pytest.mark.parametrize("expr", LIVE_EXPRESSIONS)
def test_filters_keep_what_live_tcpdump_keeps(testbed, expr):
    """The same packets, and bytes, a live `tcpdump -i IFACE EXPR` keeps."""
    frames = list(tagged_frames(testbed.mac(testbed.b)).values()) * 2
    ref = Tcpdump(testbed.netns, testbed.b, len(frames), expr)
    with warnings.catch_warnings(record=True):          # `vlan and pppoes` reads M[1] unset
        warnings.simplefilter("always")
        cap = open_on(testbed, filter=expr)
    with cap:
        _send(testbed, frames)
        ours = collect_until_idle(cap, idle=0.3)
        stats = cap.stats()
        prog = cap.filter_program
    _, theirs = ref.result(timeout=1)
    assert ours == [data for _, _, data in theirs]
    where = "user" if prog.kernel_refusal else "kernel"
    assert stats.filter_location == where and stats.delivered == len(ours)


def _offline(frames: list[bytes], expr: str, tmp: Path) -> list[bytes]:
    """What `tcpdump -r FILE -w - EXPR` keeps of `frames` (libpcap offline)."""
    src, out = tmp / "in.pcap", tmp / "out.pcap"
    with zcap.open_writer(str(src), linktype=1, snaplen=262144) as w:
        for i, f in enumerate(frames):
            w.write_raw(f, ts_ns=i * 1000)
    subprocess.run(["tcpdump", "-r", str(src), "-w", str(out), expr], check=True,
                   capture_output=True, timeout=30)
    return [data for _, _, data in read_pcap(out)[1]]


@pytest.mark.parametrize("opts", MODES)
def test_scratch_slot_program_keeps_what_offline_tcpdump_keeps(testbed, tmp, opts):
    """Live `vlan and vlan and pppoes and tcp` loads M[1] before storing it
    (libpcap #834): Linux refuses it and libpcap's own fallback reads an
    uninitialised word.  zcap runs it in user space with unset words read as
    0, and keeps exactly what offline tcpdump keeps from the same frames."""
    expr = "vlan and vlan and pppoes and tcp"
    frames = list(tagged_frames(testbed.mac(testbed.b)).values()) * 3
    expected = _offline(frames, expr, tmp)
    assert 0 < len(expected) < len(frames)
    with pytest.warns(zcap.UserSpaceFilterWarning, match="runs in user space.*M\\[1\\]"):
        cap = open_on(testbed, filter=expr, **opts)
    with cap:
        assert cap.filter_program.kernel_refusal is not None
        _send(testbed, frames)
        ours = collect_until_idle(cap, idle=0.3)
        stats = cap.stats()
    assert ours == expected
    assert stats.filter_location == "user"
    assert stats.filtered == len(frames) - len(expected) and stats.delivered == len(expected)


# ---------------------------------------------------------------- "any": cooked headers


@pytest.mark.parametrize("cooked,dlt", [("sll", "LINUX_SLL"), ("sll2", "LINUX_SLL2")])
def test_any_capture_of_tagged_traffic_equals_tcpdump(testbed, cooked, dlt):
    """On "any" libpcap reinserts the tag into an SLL header (after the
    address, before the protocol) and not into SLL2: zcap writes the same."""
    frames = list(tagged_frames(testbed.mac(testbed.b)).values())
    # each frame twice: leaving veth-a (tags in the bytes) and entering veth-b (stripped)
    ref = Tcpdump(testbed.netns, "any", 2 * len(frames), "-y", dlt)
    with open_on(testbed, "any", cooked=cooked) as cap:
        _send(testbed, frames)
        ours = collect_until_idle(cap, idle=0.3)
    linktype, theirs = ref.result(timeout=2)
    assert linktype == {"sll": 113, "sll2": 276}[cooked]
    assert sorted(ours) == sorted(data for _, _, data in theirs)
    assert len(ours) == 2 * len(frames)


@pytest.mark.parametrize("opts", MODES)
def test_filter_change_on_tagged_traffic_never_leaks(testbed, opts):
    """Across filter changes under tagged traffic, also when packets an earlier
    filter let in are filtered again in user space (their tag is already back
    in the bytes then), every packet delivered carries the VLAN in force."""
    dst = testbed.mac(testbed.b)
    frames = [_eth(dst, 0x0800, _ipv4("10.1.0.1", "10.1.0.2", 17, _udp(i, 53, b"x"), i),
                   [(DOT1Q, (5 << 13) | (100 if i % 2 else 200))]) for i in range(64)]
    filters = {100: "vlan 100 and udp", 200: "ip protochain 17 and vlan 200"}
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        cap = open_on(testbed, filter=filters[100], block_size=1 << 16, block_count=16, **opts)
        with cap, flooding(testbed, frames):
            seen = {100: 0, 200: 0}
            for switch in range(8):
                vid = (100, 200)[switch % 2]
                for _ in range(200):
                    pkt = cap.next(timeout=2)
                    assert pkt is not None
                    assert pkt.vlan & 0xFFF == vid, f"leak after switching to {filters[vid]!r}"
                    assert bytes(pkt) in frames                   # the wire bytes
                    seen[vid] += 1
                cap.set_filter(filters[300 - vid])
    assert seen[100] > 0 and seen[200] > 0


@pytest.mark.parametrize("opts", MODES)
def test_cython_consume_gets_the_wire_bytes(testbed, opts):
    """Ring.consume() with a C callback sees the same bytes as every other path."""
    from tests.live.cy_build import cy_collect
    consume_all = cy_collect().consume_all
    frames = list(tagged_frames(testbed.mac(testbed.b)).values())
    with open_on(testbed, **opts) as cap:
        _send(testbed, frames)
        assert consume_all(cap.ring) == [(f, len(f)) for f in frames]
