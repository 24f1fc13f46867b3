"""zcap.Pool on a real veth pair: worker processes in one fanout group."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import zcap
from tests.live import pool_handlers as H
from tests.live.conftest import BackgroundSender, wait_for
from tests.live.test_fanout import send_flows

ROOT = Path(__file__).resolve().parents[2]
RING = dict(block_size=1 << 20, block_count=8, timeout_ms=10)


def pool(tb, handler, **kw) -> zcap.Pool:
    opts = dict(RING)
    opts.update(kw)
    return zcap.Pool(tb.b, handler, netns=tb.netns, **opts)


def test_hash_pool_every_flow_in_one_worker_in_order_union_exact(testbed):
    with pool(testbed, H.keys, workers=2) as p:
        assert len(set(p.pids)) == 2 and os.getpid() not in p.pids
        sent = send_flows(testbed, flows=200, per_flow=10)
    got = p.join()
    owner = {}
    for i, packets in enumerate(got):
        assert packets, "200 flows should reach both workers"
        for flow, _ in packets:
            assert owner.setdefault(flow, i) == i, f"flow {flow} reached workers {owner[flow]} and {i}"
        for flow in {f for f, _ in packets}:
            assert [s for f, s in packets if f == flow] == list(range(10)), "flow out of order"
    assert sorted(k for g in got for k in g) == sorted(sent)
    s = p.stats()
    assert s.received == s.delivered == len(sent) and s.dropped == 0
    assert [w.delivered for w in s.workers] == [len(g) for g in got]


def test_streamed_results_and_stats(testbed):
    with pool(testbed, H.stream_keys, workers=2) as p:
        sent = send_flows(testbed, flows=50, per_flow=40)
        live = p.stats()
        assert len(live.workers) == 2 and live.stale == ()
        p.stop()
        items = list(p.results())
    counts = p.join()
    assert sorted((f, s) for _, f, s in items) == sorted(sent)
    assert {pid for pid, _, _ in items} <= set(p.pids)
    assert sum(counts) == len(sent)
    s = p.stats()
    assert s.delivered == s.received == len(sent)
    assert abs(sum(s.shares) - 1.0) < 1e-9


def test_lb_pool_spreads_within_ten_percent(testbed):
    with pool(testbed, H.count_batches, workers=2, fanout="lb") as p:
        send_flows(testbed, flows=1, per_flow=4000)
    counts = p.join()
    assert sum(counts) == 4000
    assert p.stats().imbalance <= 0.10, counts


def test_cbpf_pool_routes_by_worker_index(testbed):
    program = [(0x28, 0, 0, 20), (0x54, 0, 0, 1), (0x16, 0, 0, 0)]   # UDP sport & 1
    with pool(testbed, H.keys, workers=2, fanout=zcap.Fanout("cbpf", program=program)) as p:
        sent = send_flows(testbed, flows=10, per_flow=20)
    got = p.join()
    assert got[0] and all(f % 2 == 0 for f, _ in got[0])
    assert got[1] and all(f % 2 == 1 for f, _ in got[1])
    assert sorted(got[0] + got[1]) == sorted(sent)


def _send_flows_paced(tb, p: zcap.Pool, flows: int, per_flow: int,
                      chunk: int = 1000) -> list[tuple[int, int]]:
    """send_flows(back_to_back=True), `chunk` packets at a time, each time
    waiting until worker 1 has handled what its ring accepted."""
    order = [(2000 + f, seq) for f in range(flows) for seq in range(per_flow)]
    with tb.sender() as s:
        for start in range(0, len(order), chunk):
            for port, seq in order[start:start + chunk]:
                s.send(tb.frame(seq=seq, sport=port))
            assert wait_for(lambda: _worker_caught_up(p, 1), timeout=60), p.stats(timeout=1)
    return order


def _worker_caught_up(p: zcap.Pool, index: int) -> bool:
    """Worker `index` answered and has handled (or seen dropped) every packet
    its ring accepted."""
    s = p.stats(timeout=0.05)
    w = s.workers[index]
    return index not in s.stale and w.delivered + w.dropped >= w.received


@pytest.mark.parametrize("fanout, flows", [
    pytest.param("rollover", 4, id="rollover-mode"),
    # The flag moves a flow off a 3/4-full member only when it dominates that
    # member's recent packets (an elephant, here: flows sent one after the
    # other); mice stay until the ring is full, and the packet that finds it
    # full is dropped (see docs/pool.md).
    pytest.param(zcap.Fanout("hash", rollover=True), 16, id="hash-with-rollover-flag"),
])
def test_rollover_with_a_stopped_worker_loses_nothing(testbed, fanout, flows):
    # Worker 0 is frozen with SIGSTOP: once its ring (~27,000 frames) is 3/4
    # full the kernel hands its share to worker 1; after SIGCONT worker 0
    # delivers what it holds.  The kernel rolls over only to a member below
    # 3/4 full (and not marked under pressure), so worker 1 must keep up, and
    # on a busy machine it can get no CPU for a long while: the packets go
    # 1,000 at a time, each time waiting until worker 1 has taken everything
    # its ring accepted, so its ring never holds more than a few blocks.
    with pool(testbed, H.keys, workers=2, fanout=fanout,
              block_size=1 << 16, block_count=64) as p:
        os.kill(p.pids[0], signal.SIGSTOP)
        try:
            sent = _send_flows_paced(testbed, p, flows=flows, per_flow=64_000 // flows)
            frozen = p.stats(timeout=0.3)
            assert frozen.stale == (0,)
        finally:
            os.kill(p.pids[0], signal.SIGCONT)
    got = p.join()
    s = p.stats()
    # nothing hidden: each packet the group took was delivered or counted as dropped
    assert s.received == len(sent) and s.delivered + s.dropped == s.received, s
    assert s.dropped == 0, s
    assert got[0] and len(got[1]) > len(got[0])
    assert sorted(got[0] + got[1]) == sorted(sent)


def test_async_handler_runs_on_uvloop_in_each_worker(testbed):
    with pool(testbed, H.async_keys, workers=2) as p:
        sent = send_flows(testbed, flows=20, per_flow=10)
    got = p.join()
    assert [loop for loop, _ in got] == ["uvloop", "uvloop"]
    assert sorted(k for _, keys in got for k in keys) == sorted(sent)


@pytest.mark.asyncio
async def test_aresults_inside_an_asyncio_app(testbed):
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    tick_task = asyncio.ensure_future(ticker())
    items = []
    async with pool(testbed, H.stream_keys, workers=2) as p:
        loop = asyncio.get_running_loop()
        sent = await loop.run_in_executor(None, send_flows, testbed, 20, 20)

        async def consume():
            async for item in p.aresults():
                items.append(item)
        consumer = asyncio.ensure_future(consume())
        before = ticks
        await asyncio.sleep(0.2)
        assert ticks > before + 5, "the loop was blocked"
        p.stop()
        await asyncio.wait_for(consumer, 10)
    tick_task.cancel()
    assert sorted((f, s) for _, f, s in items) == sorted(sent)


def test_worker_crash_is_reported_with_its_signal_and_stops_the_others(testbed):
    with pytest.raises(zcap.WorkerError) as info:
        with pool(testbed, H.crash_on_seq, workers=2) as p:
            send_flows(testbed, flows=1, per_flow=1001)
            assert wait_for(lambda: p._all_done.is_set(), timeout=10), "the pool did not stop"
    err = info.value
    assert err.signal == signal.SIGSEGV and "SIGSEGV" in str(err)
    assert err.pid in p.pids


def test_worker_exception_comes_back_with_its_traceback(testbed):
    with pool(testbed, H.raise_on_seq, workers=2, on_error="continue") as p:
        send_flows(testbed, flows=1, per_flow=1001)
        assert wait_for(lambda: any(w.error for w in p._workers), timeout=10)
    values = p.join()
    errors = [v for v in values if isinstance(v, zcap.WorkerError)]
    assert len(errors) == 1 and values.count("unreachable") == 1   # the other ran on
    assert "packet 1000 is not welcome" in errors[0].traceback
    assert isinstance(errors[0].exception, ValueError)


def test_open_errors_reach_the_parent_with_their_type(testbed):
    with pytest.raises(zcap.InterfaceNotFoundError):
        with zcap.Pool("nonexistent0", H.count, workers=2, netns=testbed.netns):
            pass
    with pytest.raises(TypeError, match="picklable"):
        zcap.Pool(testbed.b, lambda cap, out: None)


def test_workers_pinned_to_cpus(testbed):
    with pool(testbed, H.count, workers=2, cpus=[0]) as p:
        assert [os.sched_getaffinity(pid) for pid in p.pids] == [{0}, {0}]


def test_filter_change_under_traffic_never_mixes(testbed):
    # The old filter passes only source port 1000, the new one only 1001.  Each
    # worker must see a run of 1000s, then only 1001s: no packet of the old
    # filter after the new one took effect, none of the new before.
    a = testbed.frame(sport=1000)
    b = testbed.frame(sport=1001)
    with pool(testbed, H.keys, workers=2, filter="udp src port 1000") as p:
        senders = [BackgroundSender(testbed, a, 60_000, pps=40_000),
                   BackgroundSender(testbed, b, 60_000, pps=40_000, first_seq=10**6)]
        for s in senders:
            s.start()
        time.sleep(0.4)
        p.set_filter("udp src port 1001")
        time.sleep(0.4)
        p.stop()
        for s in senders:
            s.join_checked()
    got = p.join()
    for packets in got:
        ports = [f for f, _ in packets]
        switch = ports.index(1001) if 1001 in ports else len(ports)
        assert set(ports[:switch]) <= {1000} and set(ports[switch:]) <= {1001}
    assert any(1000 in [f for f, _ in g] for g in got)
    assert any(1001 in [f for f, _ in g] for g in got)
    s = p.stats()
    assert s.delivered + sum(w.filtered for w in s.workers) + s.dropped == s.received


def _run_script(body: str) -> subprocess.Popen:
    code = textwrap.dedent(body)
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_parent_sigkill_leaves_no_orphans(testbed):
    proc = _run_script(f"""
        import sys, time, zcap
        from tests.live import pool_handlers as H
        if __name__ == "__main__":
            with zcap.Pool({testbed.b!r}, H.count, workers=2, netns={testbed.netns!r}) as p:
                print(*p.pids, flush=True)
                time.sleep(60)
        """)
    try:
        line = proc.stdout.readline()
        pids = [int(x) for x in line.split()]
        assert len(pids) == 2, proc.stderr.read()
        assert all(_alive(pid) for pid in pids)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        assert wait_for(lambda: not any(_alive(pid) for pid in pids), timeout=5), \
            "workers outlived their parent"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ctrl_c_under_traffic_is_lossless(testbed):
    proc = _run_script(f"""
        import zcap
        from tests.live import pool_handlers as H
        if __name__ == "__main__":
            with zcap.Pool({testbed.b!r}, H.stream_keys, workers=2, netns={testbed.netns!r},
                           block_size=1 << 20, block_count=8) as p:
                print("ready", flush=True)
                items = sum(1 for _ in p.results())      # until Ctrl-C stops the pool
            s = p.stats()
            print(items, s.received, s.delivered, s.dropped, sum(p.join()), flush=True)
        """)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        sender = BackgroundSender(testbed, testbed.frame(), 75_000, pps=50_000)
        sender.start()
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)        # as a terminal does: the whole group
        out, err = proc.communicate(timeout=20)
        sender.join_checked()
        assert proc.returncode == 0, err
        items, received, delivered, dropped, returned = map(int, out.split())
        assert items == delivered == returned > 0
        assert delivered + dropped == received
        assert received < sender.sent                # it stopped under traffic
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_pool_example_runs():
    examples = ROOT / "docs" / "examples"
    out = subprocess.run([sys.executable, "pool_flows.py", "--seconds", "1.5"], cwd=examples,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "reached 1000 packets" in out.stdout
    received, delivered, dropped = map(int, re.search(
        r"received (\d+), delivered (\d+), dropped (\d+)", out.stdout).groups())
    assert received == delivered > 0 and dropped == 0
