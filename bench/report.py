"""Turn bench/results/*.json into the tables and chart of docs/benchmarks.md.

    python3 bench/report.py      # regenerate from the last results (run_all.py calls this)

Everything between `<!-- generated:start -->` and `<!-- generated:end -->`
in docs/benchmarks.md is replaced; the prose around it is left alone.  The
chart (docs/benchmarks.png) shows median ns per packet on a log scale with
min..max whiskers and C libpcap of the same run as the reference line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results"
DOCS = BENCH_DIR.parent / "docs"
MARKDOWN = DOCS / "benchmarks.md"
CHART = DOCS / "benchmarks.png"
START, END = "<!-- generated:start -->", "<!-- generated:end -->"
REFERENCE = "c-libpcap"
FRAME_SIZES = (64, 1500)
RING_ZCAP = ("zcap-iter", "zcap-batch", "zcap-numpy", "zcap-numpy-readme", "zcap-numpy-readme-take",
             "zcap-field", "zcap-cython",
             "zcap-async-asyncio", "zcap-async-uvloop")


def load(name: str) -> Optional[dict]:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def x(value: Optional[float], ref: Optional[float]) -> str:
    return f"{value / ref:.2f}x" if value is not None and ref else "n/a"


def drain_table(doc: dict) -> str:
    consumers = doc["consumers"]
    ref = (consumers.get(REFERENCE) or {}).get("median")
    limit = (consumers.get("c-tpacket-v3") or {}).get("median")
    meta = doc["meta"]
    lines = ["| consumer | how it reads | frames | ns/packet min / median / max "
             "| **vs C libpcap** | vs C TPACKET_V3 | syscalls/packet |",
             "|---|---|---|---|---|---|---|"]
    for name, c in consumers.items():
        frames = (meta.get("scapy_count") if name == "scapy"
                  else meta.get("copy_count") if name in ("zcap-copy", "python-socket")
                  else meta["count"])
        if c["skipped"] or c["median"] is None:
            why = f"skipped: {c['skipped'].splitlines()[0]}" if c["skipped"] else "failed (see notes)"
            lines.append(f"| {name} | {c['summary']} | | {why} | | | |")
            continue
        syscalls = c.get("syscalls")
        sc = f"{syscalls['per_packet']:.6f}" if syscalls else ("-" if name == "python-floor" else "n/a")
        lines.append(f"| {name} | {c['summary']} | {frames:,} "
                     f"| {c['min']:.1f} / {c['median']:.1f} / {c['max']:.1f} "
                     f"| **{x(c['median'], ref)}** | {x(c['median'], limit)} | {sc} |")
    return "\n".join(lines)


def drain_notes(doc: dict) -> str:
    lines = []
    for name, c in doc["consumers"].items():
        for text in dict.fromkeys(c["failures"] + c["notes"]):
            lines.append(f"- {name}: {text}")
    return "\n".join(lines)


def median(doc: Optional[dict], name: str) -> Optional[float]:
    if not doc or name not in doc["consumers"]:
        return None
    return doc["consumers"][name]["median"]


def targets(drains: dict[int, dict], live: Optional[dict]) -> str:
    """The issue's goals for zcap, checked against this run's medians."""
    def verdict(ok: Optional[bool]) -> str:
        return "n/a" if ok is None else ("met" if ok else "**missed**")

    def check(doc: Optional[dict], fn) -> str:
        try:
            value, ok = fn(lambda name: median(doc, name), doc)
        except (TypeError, KeyError, ZeroDivisionError):
            return "n/a"
        return f"{value} ({verdict(ok)})"

    def cython(m, doc):
        a, b = m("zcap-cython") / m("c-tpacket-v3"), m("zcap-cython") / m(REFERENCE)
        return f"{a:.2f}x TPACKET_V3, {b:.2f}x libpcap", a <= 1.25 and b <= 1.0

    def numpy(m, doc):
        a = m("zcap-numpy") / m(REFERENCE)
        return f"{a:.2f}x libpcap", a <= 3.0

    def readme(m, doc):
        a = m("zcap-numpy-readme") / m(REFERENCE)
        runs = doc["consumers"]["zcap-numpy-readme"]["runs"]
        snaps = max(r["counters"].get("snapshots", 0) for r in runs)
        return f"{a:.2f}x libpcap, snapshots {snaps}", a <= 3.0 and snaps == 0

    def field(m, doc):
        a = m("zcap-field") / m(REFERENCE)
        return f"{a:.2f}x libpcap", a <= 1.5

    def header_pass(m, doc):
        a = m("zcap-headers-pass") / m(REFERENCE)
        return f"{a:.2f}x libpcap", a <= 1.5

    def batch(m, doc):
        a = m("zcap-batch") / m("zcap-iter")
        return f"{a:.2f}x zcap-iter", a <= 1.05

    def iteration(m, doc):
        over = m("zcap-iter") - m("python-floor")
        return (f"floor {over:+.0f} ns, {m('zcap-iter') / m('pcapy-ng'):.2f}x pcapy-ng",
                over <= 25 and m("zcap-iter") < m("pcapy-ng"))

    def asyncs(m, doc):
        a, b = m("zcap-async-asyncio") / m("zcap-iter"), m("zcap-async-uvloop") / m("zcap-iter")
        return f"asyncio {a:.2f}x, uvloop {b:.2f}x", max(a, b) <= 1.15

    def syscalls(m, doc):
        worst = max(doc["consumers"][n]["syscalls"]["per_packet"] for n in RING_ZCAP
                    if doc["consumers"].get(n, {}).get("syscalls"))
        return f"worst {worst:.6f}", worst <= 0.001

    rows = [("zcap-cython within 1.25x of C TPACKET_V3 and at or below C libpcap", cython),
            ("zcap-numpy within 3x of C libpcap", numpy),
            ("README batch idiom (zcap-numpy-readme) within 3x of C libpcap, no snapshots", readme),
            ("batch.field() gather (zcap-field) within 1.5x of C libpcap", field),
            ("header pass alone, every column (zcap-headers-pass), within 1.5x of C libpcap",
             header_pass),
            ("for pkt in batch (zcap-batch) within 1.05x of for pkt in cap", batch),
            ("zcap-iter at most python-floor + 25 ns, faster than pcapy-ng", iteration),
            ("async within 1.15x of zcap-iter", asyncs),
            ("ring-mode zcap syscalls/packet <= 0.001", syscalls)]
    lines = ["| goal (drain, medians) | " + " | ".join(f"{s} B" for s in drains) + " |",
             "|---|" + "---|" * len(drains)]
    for label, fn in rows:
        lines.append(f"| {label} | " + " | ".join(check(doc, fn) for doc in drains.values()) + " |")
    if live:
        at_max = [r for r in live["results"] if r["rate"] == 0 and r["name"] in RING_ZCAP and r["runs"]]
        if at_max:
            drops = {r["name"]: max(run["dropped"] for run in r["runs"]) for r in at_max}
            worst = ", ".join(f"{n} {d:,}" for n, d in drops.items() if d) or "none"
            lines.append(f"| live, max rate: zero kernel drops for ring-mode zcap consumers "
                         f"(drops in any run: {worst}) | {verdict(not any(drops.values()))} |"
                         + " |" * (len(drains) - 1))
    return "\n".join(lines)


def live_section(doc: dict) -> str:
    meta = doc["meta"]
    buffer = meta["buffer"]
    rates = ", ".join("max" if r == 0 else f"{r:,} pps" for r in meta["rates"])
    return (f"{meta['count']:,} x {meta['frame_bytes']}-byte frames per run (scapy: "
            f"{meta['counts'].get('scapy', meta['count']):,}) at {rates}; {meta['repeat']} runs; "
            f"every consumer gets {buffer['block_size'] * buffer['block_count'] >> 20} MiB "
            f"(ring or socket buffer), block timeout {buffer['timeout_ms']} ms. "
            f"CPU ns/packet is the consumer's CPU time per captured packet; "
            f"vs c-libpcap compares that at the same rate.\n\n" + doc["table_markdown"]
            + floor_section(doc))


def floor_section(doc: dict) -> str:
    """The event loops' own wake-up cost beside the live readers (live.py's loop floors)."""
    if not doc.get("floor_table_markdown"):
        return ""
    return ("\n\nThe event loops' floor: no capture, a process on the consumers' CPU "
            "waking on a timer every block timeout while the same frames are sent "
            "(bench/live/loop_floor.py). *Over poll* is what the loop alone adds to a "
            "sync reader's wake-ups at that rate, the least any `async for` reader on "
            "that loop can add; the last column is what zcap's reader adds.\n\n"
            + doc["floor_table_markdown"])


def chart(drains: dict[int, dict], live: Optional[dict]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(f"drain, {size}-byte frames: ns/packet", {
        n: (c["min"], c["median"], c["max"]) for n, c in doc["consumers"].items()
        if c["median"] is not None}) for size, doc in drains.items()]
    if live:
        panels.append((f"live at max rate, {live['meta']['frame_bytes']}-byte frames: "
                       f"consumer CPU ns/packet", {
                           r["name"]: tuple(r["cpu_ns_per_packet"][k] for k in ("min", "median", "max"))
                           for r in live["results"] if r["rate"] == 0 and r["cpu_ns_per_packet"]}))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 6.5), squeeze=False)
    for ax, (title, data) in zip(axes[0], panels):
        names = list(data)[::-1]
        lo, mid, hi = ([data[n][i] for n in names] for i in range(3))
        colors = ["tab:blue" if n.startswith("zcap") else
                  "tab:gray" if n == "python-floor" else
                  "tab:green" if n.startswith("c-") else "tab:orange" for n in names]
        ax.barh(names, mid, color=colors,
                xerr=[[m - a for m, a in zip(mid, lo)], [b - m for m, b in zip(mid, hi)]],
                error_kw={"elinewidth": 1, "capsize": 2})
        ax.set_xscale("log")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", which="both", alpha=0.3)
        if REFERENCE in data:
            ax.axvline(data[REFERENCE][1], color="red", linestyle="--", linewidth=1,
                       label="C libpcap (same run)")
            ax.legend(loc="lower right", fontsize=8)
        for y, (m, top) in enumerate(zip(mid, hi)):
            ax.annotate(f"{m:,.0f}" if m >= 10 else f"{m:.1f}", (top, y), xytext=(3, -3),
                        textcoords="offset points", fontsize=7)
    fig.suptitle("zcap vs. what a user would pick instead (blue: zcap, green: C, orange: peers; "
                 "lower is better)", fontsize=11)
    fig.tight_layout()
    fig.savefig(CHART, dpi=90)
    plt.close(fig)


def generated_section(peers: Optional[dict]) -> str:
    drains = {size: doc for size in FRAME_SIZES if (doc := load(f"drain-{size}.json"))}
    live = load("live-64.json")
    if not drains:
        sys.exit("no bench/results/drain-*.json: run bench/run_all.py first")
    first = next(iter(drains.values()))["meta"]
    parts = [f"Generated by `{peers.get('command', 'bench/run_all.py') if peers else 'bench/run_all.py'}` "
             f"on {first['date']}: {first['cpu']}, {first['cpus']} CPUs, Linux {first['kernel']}, "
             f"Python {first['python']}, zcap {first['zcap']}.",
             "", "![ns per packet per consumer](benchmarks.png)", ""]
    if peers:
        parts += ["Peers: " + "; ".join(peers["statuses"]) + ".", ""]
    parts += ["### Goals", "", targets(drains, live), ""]
    for size, doc in drains.items():
        meta = doc["meta"]
        ring = meta["ring"]
        parts += [f"### Drain, {size}-byte frames", "",
                  f"{meta['count']:,} frames per run, {meta['repeat']} runs per consumer after "
                  f"{meta['warmup']} warm-up round(s); ring {ring['block_count']} x "
                  f"{ring['block_size'] >> 20} MiB, block timeout {ring['timeout_ms']} ms.", "",
                  drain_table(doc), ""]
        notes = drain_notes(doc)
        if notes:
            parts += ["Notes:", "", notes, ""]
    if live:
        parts += ["### Live, 64-byte frames", "", live_section(live), ""]
    live_large = load("live-1500.json")
    if live_large:
        parts += ["### Live, 1500-byte frames", "", live_section(live_large), ""]
    chart(drains, live)
    return "\n".join(parts)


def update_markdown(section: str) -> None:
    text = MARKDOWN.read_text()
    if START not in text or END not in text:
        sys.exit(f"{MARKDOWN} has no {START} / {END} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    MARKDOWN.write_text(f"{head}{START}\n{section}\n{END}{tail}")


def main(argv: Optional[list[str]] = None) -> int:
    # parsed first, so `--help` prints this and rewrites nothing
    argparse.ArgumentParser(prog="report.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    update_markdown(generated_section(load("peers.json")))
    print(f"updated {MARKDOWN} and {CHART}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
