"""Bad input and a vanishing interface: a specific error with a useful message,
never a hang, a spin or lost packets."""

from __future__ import annotations

import threading
import time

import pytest

import zcap
from tests.live.conftest import MODES, BackgroundSender, open_on, seq_of
from tests.privileges import python_without_net_raw


def test_unknown_interface_names_the_available_ones(testbed):
    with pytest.raises(zcap.InterfaceNotFoundError) as info:
        zcap.open_live("nosuch0", netns=testbed.netns)
    msg = str(info.value)
    assert "nosuch0" in msg and testbed.b in msg and "ip link" in msg
    assert isinstance(info.value, LookupError)


def test_unknown_namespace():
    with pytest.raises(FileNotFoundError, match="ip netns"):
        zcap.open_live("lo", netns="zcap-no-such-namespace")


def test_missing_cap_net_raw_is_a_permission_error():
    code = ("import zcap\n"
            "try:\n"
            "    zcap.open_live('lo')\n"
            "except zcap.CapturePermissionError as e:\n"
            "    print('PERM', isinstance(e, PermissionError), e)\n")
    out = python_without_net_raw(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("PERM True") and "CAP_NET_RAW" in out.stdout


@pytest.mark.parametrize("kwargs,match", [
    (dict(block_size=5000), "multiple of the page size"),
    (dict(block_size=3 * 4096), "power of two"),
    (dict(block_size=0), "multiple of the page size"),
    (dict(block_size=1 << 31), "1 GiB"),
    (dict(block_count=1), "between 2"),
    (dict(block_count=0), "between 2"),
    (dict(snaplen=0), "snaplen"),
    (dict(snaplen=300000), "snaplen"),
    (dict(block_size=1 << 16, snaplen=262144), "larger than the 65536-byte block"),
    (dict(timeout_ms=0), "timeout_ms"),
    (dict(mode="zerocopy"), "mode"),
    (dict(direction="sideways"), "direction"),
    (dict(cooked="sll3"), "cooked"),
])
def test_invalid_options_fail_before_any_system_call(kwargs, match):
    # neither the namespace nor the interface exists: the check comes first
    with pytest.raises(ValueError, match=match):
        zcap.open_live("nosuch0", netns="zcap-no-such-namespace", **kwargs)


def test_immediate_ring_too_small_for_the_mtu(jumbo_testbed):
    # frames are sized from the interface MTU, so this check needs the interface
    with pytest.raises(ValueError, match="fewer than 2 frames"):
        open_on(jumbo_testbed, immediate=True, block_size=8192, block_count=2, snaplen=9000)


def test_wrong_option_types():
    with pytest.raises(TypeError):
        zcap.open_live("lo", block_size="big")
    with pytest.raises(TypeError):
        zcap.open_live(3)


def test_promiscuous_any_is_refused():
    with pytest.raises(ValueError, match="promiscuous"):
        zcap.open_live("any", promisc=True)


def test_ring_larger_than_memory_names_the_size(testbed):
    with pytest.raises(zcap.RingAllocationError) as info:
        zcap.open_live(testbed.b, netns=testbed.netns, block_size=1 << 30, block_count=1 << 12)
    assert "4 TiB" in str(info.value) and "block_count" in str(info.value)
    assert isinstance(info.value, MemoryError)


def test_interface_down_at_open(testbed):
    testbed.ip("link", "set", testbed.b, "down")
    with pytest.raises(zcap.InterfaceDownError, match=f"ip link set {testbed.b} up"):
        open_on(testbed)


def test_promiscuous_mode_lasts_while_open(testbed):
    def promisc():
        out = testbed.ip("-d", "link", "show", testbed.b).stdout
        return "PROMISC" in out.split(">")[0] or "promiscuity 1" in out

    assert not promisc()
    with open_on(testbed, promisc=True) as cap:
        assert cap.promisc and promisc()
    assert not promisc()


def _read_until_error(cap, out, errors):
    try:
        for pkt in cap:
            out.append(seq_of(pkt))
    except BaseException as exc:
        errors.append(exc)


@pytest.mark.parametrize("opts", MODES)
@pytest.mark.parametrize("how", ["down", "deleted"])
def test_interface_vanishing_mid_capture(testbed, opts, how):
    template = testbed.frame(64)
    cap = open_on(testbed, timeout_ms=50, **opts)
    seqs, errors = [], []
    reader = threading.Thread(target=_read_until_error, args=(cap, seqs, errors))
    reader.start()
    sender = BackgroundSender(testbed, template, 5000, pps=50_000)
    sender.start()
    sent = sender.join_checked()
    if how == "down":
        testbed.ip("link", "set", testbed.b, "down")
    else:
        testbed.ip("link", "del", testbed.a)          # takes its peer b with it
    cpu0, t0 = time.process_time(), time.monotonic()
    reader.join(10)
    wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    assert not reader.is_alive(), "iteration hung after the interface went away"
    cap.close()
    expected = zcap.InterfaceGoneError if how == "deleted" else zcap.InterfaceDownError
    assert len(errors) == 1 and type(errors[0]) is expected, errors
    assert testbed.b in str(errors[0])
    # nothing the kernel accepted was lost
    stats = cap.stats()
    assert seqs == list(range(sent)), f"{len(seqs)} of {sent}"
    assert stats.received == sent and stats.dropped == 0
    assert cpu < 0.5 * wall + 0.05                     # waited, did not spin


def test_link_error_stays_after_it_was_reported(testbed):
    cap = open_on(testbed, timeout_ms=20)
    testbed.ip("link", "set", testbed.b, "down")
    with pytest.raises(zcap.InterfaceDownError):
        cap.next(timeout=5)
    with pytest.raises(zcap.InterfaceDownError):
        cap.next(timeout=5)
    cap.close()
