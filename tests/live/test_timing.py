"""Block retirement and immediate mode: when does a lone packet arrive?

These are behaviour checks with generous bounds (a packet arrives within its
block timeout, or is held back without it), not performance measurements.
"""

from __future__ import annotations

import time

from tests.live.conftest import expected_frame, open_on


def _arrival(cap, tb, template, wait):
    with tb.sender() as s:
        t0 = time.monotonic()
        s.send_sequence(template, 1, first_seq=42)
    pkt = cap.next(timeout=wait)
    return pkt, time.monotonic() - t0


def test_partly_filled_block_arrives_within_the_retire_timeout(testbed):
    template = testbed.frame(64)
    with open_on(testbed, timeout_ms=200) as cap:
        pkt, took = _arrival(cap, testbed, template, wait=5)
        assert pkt is not None and bytes(pkt) == expected_frame(template, 42)
    assert took < 0.2 + 1.0


def test_without_the_timer_a_lone_packet_waits_in_its_block(testbed):
    template = testbed.frame(64)
    with open_on(testbed, timeout_ms=4000) as cap:
        pkt, _ = _arrival(cap, testbed, template, wait=1.0)
        assert pkt is None                           # still in the kernel's open block
        pkt = cap.next(timeout=6)                    # ... until the block retires
        assert pkt is not None and bytes(pkt) == expected_frame(template, 42)


def test_immediate_mode_delivers_a_single_packet_at_once(testbed):
    template = testbed.frame(64)
    with open_on(testbed, timeout_ms=10000, immediate=True) as cap:
        assert cap.mode == "immediate"
        pkt, took = _arrival(cap, testbed, template, wait=5)
        assert pkt is not None and bytes(pkt) == expected_frame(template, 42)
    assert took < 2.0                                # the block timer (10 s) played no part


def test_copy_mode_delivers_a_single_packet_at_once(testbed):
    template = testbed.frame(64)
    with open_on(testbed, timeout_ms=10000, mode="copy") as cap:
        pkt, took = _arrival(cap, testbed, template, wait=5)
        assert pkt is not None and bytes(pkt) == expected_frame(template, 42)
    assert took < 2.0


def test_idle_wait_uses_no_cpu(testbed):
    with open_on(testbed) as cap:
        cpu0 = time.process_time()
        t0 = time.monotonic()
        assert cap.next(timeout=1.0) is None
        wall = time.monotonic() - t0
        cpu = time.process_time() - cpu0
    assert wall >= 0.99
    assert cpu < 0.2 * wall                          # sleeping in poll(), not spinning
