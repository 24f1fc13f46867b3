"""bench/live/loop_floor.py and live.py's floor table: the event loops' own wake-up cost."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH / "live"))
sys.path.insert(0, str(BENCH))


@pytest.mark.parametrize("loop", ["poll", "asyncio", "uvloop"])
def test_the_floor_wakes_once_per_period_and_reports_its_cpu(loop):
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    proc = subprocess.Popen([sys.executable, str(BENCH / "live" / "loop_floor.py"), loop, "20", "0.3"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate("\n", timeout=60)
    assert proc.returncode == 0
    lines = out.splitlines()
    assert lines[:2] == ["READY", "ARMED"]
    head, _, payload = lines[2].partition(" ")
    assert head == "DONE"
    result = json.loads(payload)
    # 300 ms at one wake-up per 20 ms: ~15 (fewer on a loaded machine, when one
    # read collects several expirations; never more)
    assert 5 <= result["wakes"] <= 16
    assert 0 < result["cpu_ns"] < 300_000_000    # it slept, it did not spin


@pytest.mark.parametrize("loop", ["poll", "asyncio"])
def test_sigusr1_ends_the_floor_at_its_next_wake_up(loop):
    proc = subprocess.Popen([sys.executable, str(BENCH / "live" / "loop_floor.py"), loop, "10", "60"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "READY\n"
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "ARMED\n"
        time.sleep(0.3)
        started = time.monotonic()
        proc.send_signal(signal.SIGUSR1)
        head, _, payload = proc.stdout.readline().partition(" ")
        assert head == "DONE" and time.monotonic() - started < 5
        assert 8 <= json.loads(payload)["wakes"] <= 60       # ~30: 0.3 s at one per 10 ms
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_floor_table_sets_each_loop_against_poll_and_its_zcap_reader():
    live = pytest.importorskip("live")
    results = []
    for name, cpu_ns in [("zcap-iter", 150), ("zcap-async-asyncio", 240), ("loop-floor-poll", 50),
                         ("loop-floor-asyncio", 110)]:
        r = live.LiveResult(name, 100_000)
        wakes = 300 if name.startswith("loop-floor") else 0
        r.runs.append(live.LiveRun(300_000, 300_000, 0, 0, cpu_ns * 300_000, None, 3.0, wakes=wakes))
        results.append(r)
    rows = {line.split("|")[2].strip(): [c.strip() for c in line.split("|")[1:-1]]
            for line in live.floor_table(results).splitlines()[2:]}
    assert rows["poll"][3:] == ["50.0 / 50.0 / 50.0", "50", "+0", "150", "+0"]
    assert rows["asyncio"][3:] == ["110.0 / 110.0 / 110.0", "110", "+60", "240", "+90"]
    assert "| 100k pps | zcap-iter |" in live.markdown_table(results[:2], {"zcap-iter": 300_000,
                                                                          "zcap-async-asyncio": 300_000})
    assert "loop-floor" not in live.markdown_table(results, dict.fromkeys(live.CONSUMER_NAMES, 300_000))
