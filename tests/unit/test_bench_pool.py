"""bench/pool/pool.py's summary: paired runs, some with the live regime, some without."""

from __future__ import annotations

import re
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH / "pool"))

import pool  # noqa: E402


def drained(packets: list[int], seconds: list[float]) -> dict:
    """A drain result as zcap_drain() makes it: workers that each handled
    `packets[i]` in `seconds[i]`, starting together, on a CPU all the time."""
    out = [(n, 10.0, 10.0 + t, 1.0, 1.0 + t, (0, 0), (int(t * 1e9), 0))
           for n, t in zip(packets, seconds)]
    return dict(pool.summarize(out), sent=sum(packets), dropped=0, stats_ms=None, load=0.1)


def lived(packets: list[int], sent: int) -> dict:
    out = [(n, 5.0, 15.0, 1.0, 11.0, (0, 0), (int(10e9), 0)) for n in packets]
    r = pool.live_result(pool.summarize(out), sent, sent - sum(packets), 10.0, 0.07, 0.1)
    r["polls"] = [2] * len(packets)
    return r


def a_run(one_s: float, two_s: tuple[float, float], live: bool) -> dict:
    r: dict = {"load_start": 0.1, "load_end": 0.2, "order": [1, 2]}
    for who in ("floor", "zcap", "pcapy"):
        r[f"{who} drain 1"] = drained([400_000], [one_s])
        r[f"{who} drain 2"] = drained([200_000, 200_000], list(two_s))
        if live:
            r[f"{who} live 1"] = lived([50_000], 120_000)
            r[f"{who} live 2"] = lived([49_000, 49_500], 120_000)
    if live:
        r["pool count only"] = dict(drained([400_000], [0.05]), stats_ms=0.2)
        r["pool streamed"] = drained([400_000], [0.1])
    return r


def test_summary_of_paired_runs_gives_each_runs_drain_ratio_and_their_median(capsys):
    timings = [(0.8, (0.4, 0.44)), (0.9, (0.41, 0.40)), (0.78, (0.5, 0.42)), (0.85, (0.42, 0.43))]
    runs = [a_run(one, two, live=i < 2) for i, (one, two) in enumerate(timings)]
    results = {"count": 400_000, "turns": 100, "handler_us": 2.0, "live_turns": 9000,
               "live_us": 200.0, "live_pps": 12_000, "live_seconds": 10.0, "live_frame": 1500,
               "cpus": 2, "ring": pool.RING, "live_ring": pool.LIVE_RING, "runs": runs}
    pool.summary(results)
    text = capsys.readouterr().out
    expected = [one / max(two) for one, two in timings]     # 400k/max(span) over 400k/one
    line = re.search(r"zcap\.Pool, drain 2 / 1 \(wall clock\) in each run: (.*?); range", text)
    assert [float(x.rstrip("x")) for x in line.group(1).split(", ")] == \
        [round(x, 2) for x in expected]
    assert f"{sum(x >= 1.8 for x in expected)} of 4 runs at 1.8x or more" in text
    assert "medians of 4 drain run(s) and 2 live run(s)" in text
    rows = [r for r in text.splitlines() if re.match(r"\| [34] \|", r)]
    assert len(rows) == 2                                    # no live in runs 3 and 4
    assert all([c.strip() for c in r.split("|")][9:13] == ["-"] * 4 for r in rows)
    live = re.search(r"\| zcap\.Pool \| 2 / 1 \| \| \| \| ([\d.]+)x", text)
    assert float(live.group(1)) == round(98_500 / 50_000, 2)
