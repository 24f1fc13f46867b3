"""Capture.stop(): the kernel takes no more, every packet it accepted is delivered.

The backlog at the stop is made large on purpose (the consumer reads nothing
while a sender fills the ring at full speed): the drain is bounded by that
backlog, not by a time limit.  The checks are on accounting, not timing:

    delivered + dropped + filtered + skipped + abandoned == received

with abandoned == 0, and the delivered sequence numbers strictly increasing.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import struct
import threading
import time

import pytest

import zcap
from tests.live.conftest import MODES, BackgroundSender, open_on, seq_of, wait_for

BIG = dict(block_size=1 << 20, block_count=16, timeout_ms=10)


def accounted(s: zcap.Stats) -> int:
    return s.delivered + s.dropped + s.filtered + s.skipped + s.abandoned


def fill(testbed, cap, count: int) -> int:
    with testbed.sender() as s:
        sent = s.send_sequence(testbed.frame(64), count)
    assert wait_for(lambda: cap.stats().received >= sent, 5)
    return sent


def check_in_order(seqs: list[int]) -> None:
    assert all(b > a for a, b in zip(seqs, seqs[1:])), "a packet came twice or out of order"


@pytest.mark.parametrize("opts", MODES)
@pytest.mark.parametrize("path", ["for", "next", "batches", "async", "anext"])
def test_stop_delivers_the_whole_backlog_then_ends(testbed, opts, path):
    cap = open_on(testbed, **{**BIG, **opts})
    sent = fill(testbed, cap, 60_000)
    cap.stop()
    assert cap.stopped and not cap.drained
    # after the stop the kernel accepts nothing more
    with testbed.sender() as s:
        s.send_sequence(testbed.frame(64), 500, first_seq=10**6)
    seqs: list[int] = []
    if path == "for":
        seqs = [seq_of(p) for p in cap]
    elif path == "next":
        while (p := cap.next(timeout=5)) is not None:
            seqs.append(seq_of(p))
    elif path == "batches":
        for b in cap.batches():
            seqs.extend(seq_of(p) for p in b)
    elif path == "async":
        async def run():
            async for p in cap:
                seqs.append(seq_of(p))
        asyncio.run(asyncio.wait_for(run(), 30))
    else:
        async def run():
            while (p := await cap.anext(timeout=5)) is not None:
                seqs.append(seq_of(p))
        asyncio.run(run())
    assert cap.drained
    assert cap.next(timeout=0.2) is None                      # stays ended
    cap.close()
    s = cap.stats()
    check_in_order(seqs)
    assert max(seqs) < sent, "a packet sent after stop() was accepted"
    # len(seqs), not s.delivered: batches count delivered twice (issue 11 item 9,
    # fixed on another branch)
    assert s.received == len(seqs) + s.dropped + s.filtered + s.skipped, s
    assert s.abandoned == 0


def test_stop_from_another_thread_wakes_a_blocked_reader(testbed):
    cap = open_on(testbed, **BIG)
    seqs: list[int] = []
    reader = threading.Thread(target=lambda: seqs.extend(seq_of(p) for p in cap))
    reader.start()
    sender = BackgroundSender(testbed, testbed.frame(64), 20_000)
    sender.start()
    sender.join_checked()
    time.sleep(0.05)
    cap.stop()
    cap.stop()                                               # idempotent
    reader.join(10)
    assert not reader.is_alive()
    cap.close()
    s = cap.stats()
    check_in_order(seqs)
    assert accounted(s) == s.received and s.abandoned == 0 and len(seqs) == s.delivered


def test_stop_from_a_signal_handler_mid_traffic(testbed):
    cap = open_on(testbed, **BIG)
    previous = signal.signal(signal.SIGUSR1, lambda *a: cap.stop())
    try:
        sender = BackgroundSender(testbed, testbed.frame(64), 200_000)
        sender.start()
        threading.Timer(0.1, lambda: signal.pthread_kill(threading.main_thread().ident,
                                                         signal.SIGUSR1)).start()
        seqs = [seq_of(p) for p in cap]                     # ends by itself after the stop
        sender.join_checked()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    cap.close()
    s = cap.stats()
    check_in_order(seqs)
    assert len(seqs) > 0 and accounted(s) == s.received and s.abandoned == 0


def test_stop_with_a_locked_filter(testbed):
    cap = open_on(testbed, filter="udp", lock_filter=True, **BIG)
    sent = fill(testbed, cap, 20_000)
    cap.stop()
    seqs = [seq_of(p) for p in cap]
    cap.close()
    s = cap.stats()
    assert seqs == list(range(sent)) and s.received == sent and s.abandoned == 0


def test_stop_in_a_fanout_group_uses_a_reject_all_filter(testbed):
    # the kernel refuses bind() for a fanout member: stop() falls back to a filter
    cap = open_on(testbed, **BIG)
    with socket.socket(fileno=cap.fileno()) as s:
        try:
            s.setsockopt(263, 18, struct.pack("HH", 4242, 0))   # PACKET_FANOUT, hash
        finally:
            s.detach()
    sent = fill(testbed, cap, 5_000)
    cap.stop()
    with testbed.sender() as snd:
        snd.send_sequence(testbed.frame(64), 500, first_seq=10**6)
    seqs = [seq_of(p) for p in cap]
    cap.close()
    s = cap.stats()
    assert seqs == list(range(sent)) and accounted(s) == s.received and s.abandoned == 0


def test_close_counts_unread_accepted_packets(testbed):
    cap = open_on(testbed, **BIG)
    sent = fill(testbed, cap, 3_000)
    got = [cap.next(timeout=5) for _ in range(10)]
    assert all(p is not None for p in got)
    cap.close()
    s = cap.stats()
    assert s.received == sent and s.delivered == 10
    assert s.abandoned == sent - 10 - s.dropped                 # not silent
    assert accounted(s) == s.received


def test_stop_before_any_traffic_ends_at_once(testbed):
    cap = open_on(testbed, **BIG)
    cap.stop()
    t0 = time.monotonic()
    assert list(cap) == [] and cap.drained
    assert time.monotonic() - t0 < 5
    cap.close()


def test_cython_consume_ends_after_stop(testbed, cy_consumer):
    cap = open_on(testbed, **BIG)
    sent = fill(testbed, cap, 20_000)
    cap.stop()
    result: list = []

    def run():
        try:
            # timeout -1 waits forever for more: only the drained stop ends it
            cy_consumer.drain(cap.ring, sent + 1000, timeout_ms=-1)
        except BaseException as exc:
            result.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "consume() kept waiting after the ring was drained"
    cap.close()
    s = cap.stats()
    assert len(result) == 1 and isinstance(result[0], TimeoutError), result
    # every packet in order (drain checks the sequence), then the end
    assert f"after {sent} of" in str(result[0]), result[0]
    assert s.delivered == s.received == sent and s.dropped == 0 and s.abandoned == 0
