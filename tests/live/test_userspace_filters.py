"""Filters libpcap compiles but Linux refuses to attach (`protochain` jumps
backwards) run in user space, in the ring walker: live capture keeps exactly
what offline `tcpdump -r FILE -w - EXPR` keeps of the same frames, on every
path, and nothing they reject reaches the consumer."""

from __future__ import annotations

import asyncio
import struct
import tempfile
from pathlib import Path

import pytest

import zcap
from tests.live.cli_helpers import ZcapProcess
from tests.live.conftest import MODES, collect_until_idle, flooding, open_on
from tests.live.test_vlan_fidelity import _offline, _packets_of
from tests.live.traffic import _eth, _icmp, _ipv4, _ipv6, _tcp, _udp

HOP, ROUTING, FRAGMENT, DSTOPTS, AH = 0, 43, 44, 60, 51
TCP, UDP, ICMP6 = 6, 17, 58


def _opts(nxt: int) -> bytes:
    """A hop-by-hop or destination options header: 8 bytes, one PadN option."""
    return bytes([nxt, 0, 1, 4, 0, 0, 0, 0])


def _routing(nxt: int) -> bytes:
    return bytes([nxt, 0, 0, 0, 0, 0, 0, 0])          # type 0, no segments left


def _fragment(nxt: int) -> bytes:
    return struct.pack("!BBHI", nxt, 0, 0x0001, 0x1234)  # offset 0, more fragments


def _ah(nxt: int) -> bytes:
    return struct.pack("!BBHII", nxt, 1, 0, 0x100, 1)     # 12 bytes: (1 + 2) * 4


def _v6_chain(dst: bytes, chain: list[int], last: int, body: bytes, n: int) -> bytes:
    """IPv6 with extension headers `chain` (in order), then protocol `last`."""
    builders = {HOP: _opts, DSTOPTS: _opts, ROUTING: _routing, FRAGMENT: _fragment, AH: _ah}
    payload = body
    kinds = chain + [last]
    for i in range(len(chain) - 1, -1, -1):
        payload = builders[chain[i]](kinds[i + 1]) + payload
    return _eth(dst, 0x86DD, _ipv6(f"fd00::{n}", "fd00::99", kinds[0], payload))


def protochain_frames(dst: bytes) -> list[bytes]:
    frames = []
    n = 1
    for chain in ([], [HOP], [HOP, ROUTING, FRAGMENT, DSTOPTS], [FRAGMENT], [DSTOPTS],
                  [HOP, DSTOPTS], [ROUTING, AH], [AH]):
        for last, body in ((UDP, _udp(1, 53, b"u")), (TCP, _tcp(1, 80, 2, b"t")),
                           (ICMP6, bytes([128, 0, 0, 0, 0, 1, 0, 1]))):
            frames.append(_v6_chain(dst, chain, last, body + bytes([n]), n))
            n += 1
    for proto, body in ((UDP, _udp(1, 53, b"u")), (TCP, _tcp(1, 80, 2, b"t")), (1, _icmp(8, b"i"))):
        frames.append(_eth(dst, 0x0800, _ipv4("10.2.0.1", "10.2.0.2", proto, body, n)))
        n += 1
        frames.append(_eth(dst, 0x0800, _ipv4("10.2.0.1", "10.2.0.2", AH, _ah(proto) + body, n)))
        n += 1
    assert len(set(frames)) == len(frames)
    return frames


PROTOCHAIN = ["ip protochain 17", "ip6 protochain 17", "ip6 protochain 6", "protochain 6",
              "ip6 protochain 44", "ip6 protochain 58 or ip protochain 1", "ip6 protochain 60",
              "protochain 17 and not ip6 protochain 0"]


@pytest.fixture
def tmp():
    with tempfile.TemporaryDirectory(prefix="zcap-protochain-") as d:
        yield Path(d)


def _send(tb, frames) -> None:
    with tb.sender() as s:
        s.send_all(frames)


def _open_warned(tb, expr, **opts) -> zcap.Capture:
    with pytest.warns(zcap.UserSpaceFilterWarning, match="runs in user space.*jumps backwards"):
        return open_on(tb, filter=expr, **opts)


@pytest.mark.parametrize("expr", PROTOCHAIN)
def test_compile_filter_gives_libpcaps_program(expr):
    import subprocess
    ddd = subprocess.run(["tcpdump", "-ddd", "-y", "EN10MB", expr], capture_output=True,
                         text=True, check=True).stdout
    prog = zcap.compile_filter(expr)
    assert prog.dump_ddd() == ddd
    assert "jumps backwards" in prog.kernel_refusal


@pytest.mark.parametrize("expr", PROTOCHAIN)
def test_protochain_live_equals_offline_tcpdump(testbed, tmp, expr):
    frames = protochain_frames(testbed.mac(testbed.b))
    expected = _offline(frames, expr, tmp)
    assert 0 < len(expected) < len(frames)
    with _open_warned(testbed, expr) as cap:
        _send(testbed, frames)
        ours = collect_until_idle(cap, idle=0.3)
        stats = cap.stats()
        assert cap.filter_location == "user"
    assert ours == expected
    assert stats.filter_location == "user"
    assert stats.filtered == len(frames) - len(expected) and stats.delivered == len(expected)


@pytest.mark.parametrize("opts", MODES)
def test_every_path_sees_only_what_the_filter_keeps(testbed, tmp, opts):
    """Iteration, batches and their columns, async: in ring, immediate and copy modes."""
    expr = "ip6 protochain 17"
    frames = protochain_frames(testbed.mac(testbed.b))
    expected = _offline(frames, expr, tmp)
    with _open_warned(testbed, expr, **opts) as cap:
        _send(testbed, frames)
        assert collect_until_idle(cap, idle=0.3) == expected
        _send(testbed, frames)
        got, columns = [], []
        while len(got) < len(expected):
            batch = cap.next_batch(timeout=3)
            assert batch is not None
            buf = bytes(batch.buffer)
            offsets = memoryview(batch.offsets).tolist()
            caplens = memoryview(batch.caplen).tolist()
            columns += [buf[o:o + c] for o, c in zip(offsets, caplens)]
            got += [bytes(p) for p in batch]
        assert got == columns == expected

        async def read_async() -> list[bytes]:
            out = []
            while (pkt := await cap.anext(timeout=0.3)) is not None:
                out.append(bytes(pkt))
            return out

        _send(testbed, frames)
        assert asyncio.run(read_async()) == expected
        assert cap.stats().filtered == 3 * (len(frames) - len(expected))


def test_cli_writes_what_offline_tcpdump_keeps_and_warns(testbed, tmp):
    expr = "ip6 protochain 6"
    frames = protochain_frames(testbed.mac(testbed.b))
    expected = _offline(frames, expr, tmp)
    out = tmp / "z.pcapng"
    proc = ZcapProcess("-i", testbed.b, "--netns", testbed.netns, "-c", str(len(expected)),
                       "-w", str(out), "--format", "pcapng", expr)
    _send(testbed, frames)
    code, _, err = proc.wait(timeout=20)
    assert code == 0, err
    assert _packets_of(out) == expected
    warnings = [line for line in proc.startup + err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "runs in user space" in warnings[0], (proc.startup, err)
    assert warnings[0].startswith("zcap: warning: filter 'ip6 protochain 6' runs in user space")


@pytest.mark.parametrize("opts", [dict(), dict(mode="copy"), dict(immediate=True),
                                  dict(interface="any")],
                         ids=["ring", "copy", "immediate", "any"])
def test_filter_change_between_kernel_and_user_space_never_leaks(testbed, opts):
    """Switch back and forth between a kernel program and one the kernel refuses,
    under continuous traffic: every packet delivered matches the filter in force."""
    opts = dict(opts)
    iface = opts.pop("interface", None)
    frames = [testbed.frame(64, seq=i, dport=53 if i % 2 else 80) for i in range(64)]
    filters = ["udp dst port 53", "ip protochain 17 and udp dst port 80"]
    with open_on(testbed, iface, filter=filters[0], block_size=1 << 16, block_count=16,
                 **opts) as cap:
        assert cap.filter_location == "kernel"
        with flooding(testbed, frames):
            delivered = {0: 0, 1: 0}
            for switch in range(8):
                current = switch % 2
                assert cap.filter_location == ("kernel", "user")[current]
                prog = cap.filter_program
                for _ in range(200):
                    pkt = cap.next(timeout=2)
                    assert pkt is not None
                    assert prog.match(pkt) > 0, f"leak after switching to {filters[current]!r}"
                    delivered[current] += 1
                with pytest.warns() if current == 0 else _no_warning():
                    cap.set_filter(filters[1 - current])
        stats = cap.stats()
    assert delivered[0] > 0 and delivered[1] > 0
    assert stats.filtered > 0


class _no_warning:
    def __enter__(self):
        import warnings
        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("error", zcap.UserSpaceFilterWarning)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


@pytest.mark.parametrize("opts", MODES)
def test_cython_consume_sees_only_what_the_filter_keeps(testbed, tmp, opts):
    from tests.live.cy_build import cy_collect
    consume_all = cy_collect().consume_all
    expr = "ip6 protochain 44 or ip protochain 1"
    frames = protochain_frames(testbed.mac(testbed.b))
    expected = _offline(frames, expr, tmp)
    with _open_warned(testbed, expr, **opts) as cap:
        _send(testbed, frames)
        assert consume_all(cap.ring) == [(f, len(f)) for f in expected]
        assert cap.stats().filtered == len(frames) - len(expected)
