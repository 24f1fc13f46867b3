"""Handlers the pool tests run in worker processes (module level: they must pickle)."""

from __future__ import annotations

import os
import signal
import struct

from zcap.testbed import SEQ_OFFSET


def _key(pkt) -> tuple[int, int]:
    """(flow, seq): the UDP source port names the flow, the payload the sequence."""
    data = bytes(pkt)
    sport = struct.unpack_from("!H", data, 34)[0]
    return sport, struct.unpack_from("!Q", data, SEQ_OFFSET)[0]


def keys(cap, out):
    """Return every packet's (flow, seq) in arrival order."""
    return [_key(pkt) for pkt in cap]


def stream_keys(cap, out):
    """Stream (worker pid, flow, seq) to the parent; return how many."""
    n = 0
    pid = os.getpid()
    for pkt in cap:
        out.put((pid,) + _key(pkt))
        n += 1
    return n


def count(cap, out):
    n = 0
    for _ in cap:
        n += 1
    return n


def count_batches(cap, out):
    n = 0
    for batch in cap.batches():
        n += len(batch)
    return n


async def async_keys(cap, out):
    import asyncio
    loop = type(asyncio.get_running_loop()).__module__
    got = []
    async for pkt in cap:
        got.append(_key(pkt))
        out.put(_key(pkt))
    return loop, got


def crash_on_seq(cap, out):
    """Die by SIGSEGV on the packet numbered 1000 (after counting what came before)."""
    n = 0
    for pkt in cap:
        if _key(pkt)[1] == 1000:
            os.kill(os.getpid(), signal.SIGSEGV)
        n += 1
    return n


def raise_on_seq(cap, out):
    for pkt in cap:
        if _key(pkt)[1] == 1000:
            raise ValueError("packet 1000 is not welcome")
    return "unreachable"


def _control_switches() -> int:
    """Voluntary context switches of this worker's control thread so far: one
    per time it blocked and woke up."""
    import threading
    tid = next(t.native_id for t in threading.enumerate() if t.name == "zcap-pool-control")
    with open(f"/proc/self/task/{tid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise RuntimeError("no voluntary_ctxt_switches in /proc status")


def control_wakeups_while_idle(cap, out):
    """How often the control thread woke during one idle second (no packets,
    nothing streamed, no message from the parent); then drain as usual."""
    import time
    before = _control_switches()
    time.sleep(1.0)
    woke = _control_switches() - before
    for _ in cap:
        pass
    return woke


def put_one_then_wait(cap, out):
    """Stream one item, then go on capturing: the item must reach the parent
    within the streaming delay, not only when the handler ends."""
    out.put(("hello", out.worker))
    n = 0
    for _ in cap:
        n += 1
    return n
