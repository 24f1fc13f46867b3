"""Packet analytics: header pass, address-set and flow-head selection vs pcapy-ng, Arrow, Parquet.

    python3 bench/analytics.py                 # 300,000 packets, 3 runs each
    python3 bench/analytics.py --quick         # 100,000 packets, 2 runs, sets up to 100,000
    python3 bench/analytics.py --count 500000 --sizes 10,1000000 --rates 1,50

Everything runs on one generated offline capture (bench/results/analytics-mixed.pcap):
Ethernet frames, ~60 % IPv4 / ~40 % IPv6, ~30 % behind an 802.1Q tag (some
QinQ), TCP / UDP / ICMP.  Each packet has a unique microsecond timestamp, by
which admitted packets are matched across tools.

1. Header pass: ns per packet to compute every header column
   (`batch.headers().columns()`) and the typical query's columns (ip_src,
   ip_dst, proto, sport, dport: one lazy group) on the mixed capture and on
   64-byte UDP frames, timed on batches already in memory.  Compare with C
   libpcap's drain cost per 64-byte packet from bench/drain/drain.py (`--only
   c-libpcap,zcap-numpy,zcap-headers,zcap-headers-query`: the pass is
   zcap-headers minus zcap-numpy), which needs root and a veth pair, so it
   runs separately; bench/drain/callgrind_drain.py counts the same in instructions
   (stable on a busy machine) and bench/callgrind_headers.py the pass alone.
2. Address sets vs pcapy-ng 2.x `loop_filtered` (class SET_MATCH, IPv4 sets,
   packed network order): for each set size and hit rate, both read the same
   file from the start and select; ns per packet read, set building included
   for both.  zcap is timed twice: `select()` only (indices, no Python per
   packet), and `select()` plus one Python call per admitted packet with its
   bytes, which is what pcapy-ng's callback API always does.  The admitted
   packets must be identical (checked on every run).
3. Flow heads: pcapy-ng's flow_cutoff (first N packets of each one-direction
   IPv4 TCP/UDP 5-tuple, in a 1M-slot table that overwrites on collision) vs
   zcap's select(flow_heads=N, flows=FlowTable(..., bidirectional=False)).
   Agreement is reported on the packets pcapy-ng can classify (IPv4 TCP/UDP).
4. Arrow export per packet (batch.to_arrow()) and `zcap -w out.parquet` vs
   `zcap -w out.pcap` on the same file (packets/s).

The machine is shared: figures are noisy; min and median of the runs are given.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

import zcap  # noqa: E402
from tests.unit import packets as P  # noqa: E402
from tests.unit.savefiles import pcap  # noqa: E402
from zcap.offline import open_offline  # noqa: E402

RESULTS = REPO / "bench" / "results"
HOT = 100_000              # the long tail of IPv4 sources (in no set)
COLD_BASE = 0x64400000     # 100.64.0.0/10: set padding, never in the capture


HOT_SHARES = (0.01, 0.09, 0.40)   # of the IPv4 packets: sources 10.0.0.1, .2, .3; so 1 %, 10 %, 50 %


def generate(path: Path, count: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    records = []
    for i in range(count):
        s = P.random_spec(rng, v6_share=0.4, vlan_share=0.3)
        if s.l3 == "ipv4":
            u = rng.random()
            if u < 0.5:
                s.src = (0x0A000001 + (u >= 0.01) + (u >= 0.10)).to_bytes(4, "big")
            else:
                s.src = (0x0A010000 + rng.randrange(HOT)).to_bytes(4, "big")    # the long tail
            s.dst = (0xC0000000 + rng.randrange(1 << 24)).to_bytes(4, "big")   # 192.x: never in a set
        s.payload = bytes(rng.randrange(0, 64))
        data = P.build(s)
        records.append((1_600_000_000_000_000_000 + i * 1000, len(data), data))
    path.write_bytes(pcap(records, nano=False))


def hot_set(rate: int, size: int) -> np.ndarray:
    """`size` addresses matching `rate` % (1, 10 or 50) of the IPv4 packets: the sources that
    carry that share, padded with addresses that are in no packet."""
    n_hot = {1: 1, 10: 2, 50: 3}[rate]
    hot = np.arange(0x0A000001, 0x0A000001 + n_hot, dtype=np.uint32)
    pad = np.arange(COLD_BASE, COLD_BASE + max(0, size - n_hot), dtype=np.uint32)
    return np.concatenate([hot, pad])


def zcap_select(path: Path, addrs: np.ndarray, per_packet: bool) -> tuple[float, list[int], int]:
    t0 = time.perf_counter()
    aset = zcap.AddressSet()
    aset.add_ipv4_array(addrs)
    admitted: list[int] = []
    seen = 0

    def deliver(data: memoryview, ts: int) -> None:
        admitted.append(ts)

    with open_offline(path) as src:
        for b in src.batches():
            idx = b.select(addresses=aset)
            if per_packet:                  # one Python call per admitted packet, with its bytes
                buf, offs, caps, ts = b.buffer, b.offsets, b.caplen, b.ts_ns
                for i in idx:
                    deliver(buf[offs[i]:offs[i] + caps[i]], ts[i])
            else:
                ts = np.frombuffer(b.ts_ns, np.int64)
                admitted.extend(ts[np.asarray(idx)].tolist())
            seen += len(b)
    return time.perf_counter() - t0, admitted, seen


def pcapy_select(path: Path, addrs: np.ndarray, flow_cutoff: int = 0,
                 admit: int = 1 << 2) -> tuple[float, list[int], tuple]:
    import pcapy
    t0 = time.perf_counter()
    packed = addrs.astype(">u4").tobytes()
    admitted: list[int] = []
    cap = pcapy.open_offline(str(path))

    def cb(hdr, data, cls):
        sec, usec = hdr.getts()
        admitted.append(sec * 1_000_000_000 + usec * 1000)

    res = cap.loop_filtered(-1, cb, admit, packed, flow_cutoff)
    return time.perf_counter() - t0, admitted, res


def stats(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values)}


QUERY = ("ip_src", "ip_dst", "proto", "sport", "dport")     # the typical query's columns


def header_pass(path: Path, runs: int, columns: tuple = ()) -> dict:
    """ns per packet to compute `columns` (all if empty) of every batch, as a drain does:
    each batch's Headers is dropped before the next one is computed."""
    with open_offline(path) as src:
        batches = list(src.batches())
    n = sum(len(b) for b in batches)
    times = []
    for _ in range(runs):
        fresh = [b.__class__(b._table, b._start, b._stop, b._meta) for b in batches]   # no cached headers
        t0 = time.perf_counter()
        for b in fresh:
            h = b.headers()
            if columns:
                for name in columns:
                    np.asarray(getattr(h, name))
            else:
                h.columns()
            b._hdrs = h = None
        times.append((time.perf_counter() - t0) / n * 1e9)
    return {"packets": n, "ns_per_packet": stats(times)}


def frames64(path: Path, count: int) -> None:
    from zcap.testbed import udp_frame
    path.write_bytes(pcap([(i * 1000, 64, udp_frame(64, seq=i)) for i in range(count)], nano=False))


def arrow_export(path: Path, runs: int) -> dict:
    times = []
    with open_offline(path) as src:
        batches = list(src.batches())
    n = sum(len(b) for b in batches)
    batches[0].to_arrow()                   # warm: the first call imports pyarrow (~0.2 s)
    for _ in range(runs):
        fresh = [b.__class__(b._table, b._start, b._stop, b._meta) for b in batches]
        t0 = time.perf_counter()
        for b in fresh:
            b.to_arrow()
        times.append((time.perf_counter() - t0) / n * 1e9)
    return {"ns_per_packet": stats(times)}


def writers(path: Path, count: int, runs: int, tmp: Path) -> dict:
    out = {}
    for fmt, name in (("pcap", "w.pcap"), ("parquet", "w.parquet")):
        times = []
        for _ in range(runs):
            target = tmp / name
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "zcap", "-r", str(path), "-w", str(target)], check=True,
                           capture_output=True)
            times.append(time.perf_counter() - t0)
        out[fmt] = {"seconds": stats(times), "packets_per_s": count / min(times),
                    "file_bytes": (tmp / name).stat().st_size}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int)
    p.add_argument("--runs", type=int)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--sizes", help="address-set sizes (default 10,1000,100000,1000000)")
    p.add_argument("--rates", default="1,10,50", help="hit rates in %% of the IPv4 packets")
    p.add_argument("--flow-cutoff", type=int, default=3)
    args = p.parse_args()
    count = args.count or (100_000 if args.quick else 300_000)
    runs = args.runs or (2 if args.quick else 3)
    sizes = [int(x) for x in (args.sizes or ("10,1000,100000" if args.quick else "10,1000,100000,1000000")
                              ).split(",")]
    rates = [int(x) for x in args.rates.split(",")]
    RESULTS.mkdir(parents=True, exist_ok=True)
    mixed = RESULTS / f"analytics-mixed-{count}.pcap"
    if not mixed.exists():
        print(f"generating {count:,} packets into {mixed} ...", file=sys.stderr)
        generate(mixed, count)
    small = RESULTS / f"analytics-64b-{count}.pcap"
    if not small.exists():
        frames64(small, count)
    report: dict = {"count": count, "runs": runs, "host_load": os.getloadavg()}

    for key, path, cols in (("header_pass_mixed", mixed, ()), ("header_pass_64b", small, ()),
                            ("header_query_mixed", mixed, QUERY), ("header_query_64b", small, QUERY)):
        report[key] = header_pass(path, runs, cols)
        print(f"{key}: {report[key]['ns_per_packet']} ns/packet", file=sys.stderr)

    try:
        import pcapy
        has_peer = hasattr(pcapy.open_offline(str(mixed)), "loop_filtered")
    except ImportError:
        has_peer = False
    rows = []
    for size in sizes:
        for rate in rates:
            addrs = hot_set(rate, size)
            z_t, z2_t, p_t = [], [], []
            same = True
            admitted = 0
            for _ in range(runs):
                t, zadm, seen = zcap_select(mixed, addrs, per_packet=False)
                z_t.append(t / seen * 1e9)
                t, zadm2, _ = zcap_select(mixed, addrs, per_packet=True)
                z2_t.append(t / seen * 1e9)
                admitted = len(zadm)
                if has_peer:
                    t, padm, _ = pcapy_select(mixed, addrs)
                    p_t.append(t / seen * 1e9)
                    same = same and sorted(padm) == sorted(zadm) == sorted(zadm2)
            row = {"set_size": size, "hit_rate": rate, "admitted": admitted,
                   "admitted_pct": 100 * admitted / count,
                   "zcap_select_ns": stats(z_t), "zcap_select_python_ns": stats(z2_t),
                   "pcapy_ns": stats(p_t) if p_t else None, "identical": same if has_peer else None}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    report["address_sets"] = rows

    if has_peer:
        flows = {}
        z_t, p_t = [], []
        eligible = []                       # what pcapy-ng can classify: IPv4 TCP/UDP with ports
        with open_offline(mixed) as src:
            for b in src.batches():
                h = b.headers()
                ts = np.frombuffer(b.ts_ns, np.int64)
                v4 = (np.asarray(h.ip_version) == 4) & np.isin(np.asarray(h.proto), (6, 17)) & (
                    np.asarray(h.sport) >= 0)
                eligible.extend(ts[v4].tolist())
        for _ in range(runs):
            t0 = time.perf_counter()
            table = zcap.FlowTable(1 << 20, bidirectional=False)
            zadm = []
            with open_offline(mixed) as src:
                for b in src.batches():
                    ts = np.frombuffer(b.ts_ns, np.int64)
                    idx = np.asarray(b.select(flow_heads=args.flow_cutoff, flows=table))
                    zadm.extend(ts[idx].tolist())
            z_t.append((time.perf_counter() - t0) / count * 1e9)
            t, padm, res = pcapy_select(mixed, np.zeros(0, np.uint32), args.flow_cutoff, admit=1 << 1)
            p_t.append(t / count * 1e9)
        el = set(eligible)
        zset = set(zadm) & el
        pset = set(padm)
        flows = {"cutoff": args.flow_cutoff, "zcap_ns": stats(z_t), "pcapy_ns": stats(p_t),
                 "zcap_admitted_all": len(zadm), "zcap_admitted_ipv4_tcp_udp": len(zset),
                 "pcapy_admitted": len(pset), "agree": len(zset & pset),
                 "only_zcap": len(zset - pset), "only_pcapy": len(pset - zset)}
        report["flow_heads"] = flows
        print(json.dumps(flows), file=sys.stderr)

    report["arrow_export"] = arrow_export(mixed, runs)
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        report["writers"] = writers(mixed, count, runs, Path(tmp))
    (RESULTS / "analytics.json").write_text(json.dumps(report, indent=1))
    print(markdown(report))
    return 0


def markdown(r: dict) -> str:
    def f(d):
        return f"{d['min']:.1f} / {d['median']:.1f}" if d else "-"
    lines = [f"{r['count']:,} packets, {r['runs']} runs; load average at start {r['host_load'][0]:.2f} "
             "(shared machine: noisy).", "",
             "| header pass | ns/packet min / median |", "|---|---|",
             f"| all columns, mixed capture | {f(r['header_pass_mixed']['ns_per_packet'])} |",
             f"| all columns, 64-byte UDP frames | {f(r['header_pass_64b']['ns_per_packet'])} |",
             f"| {', '.join(QUERY)}, mixed | {f(r['header_query_mixed']['ns_per_packet'])} |",
             f"| {', '.join(QUERY)}, 64 B | {f(r['header_query_64b']['ns_per_packet'])} |",
             f"| batch.to_arrow() (mixed) | {f(r['arrow_export']['ns_per_packet'])} |", "",
             "| set size | hit rate | admitted | zcap select ns/pkt | zcap select + Python per admitted | "
             "pcapy-ng loop_filtered ns/pkt | same packets |", "|---|---|---|---|---|---|---|"]
    for row in r["address_sets"]:
        lines.append(f"| {row['set_size']:,} | {row['hit_rate']} % of IPv4 | {row['admitted']:,} "
                     f"({row['admitted_pct']:.1f} %) | {f(row['zcap_select_ns'])} | "
                     f"{f(row['zcap_select_python_ns'])} | {f(row['pcapy_ns'])} | {row['identical']} |")
    if "flow_heads" in r:
        fh = r["flow_heads"]
        lines += ["", f"Flow heads (first {fh['cutoff']} packets): zcap {f(fh['zcap_ns'])} ns/pkt, "
                  f"pcapy-ng {f(fh['pcapy_ns'])} ns/pkt; on IPv4 TCP/UDP zcap admits "
                  f"{fh['zcap_admitted_ipv4_tcp_udp']:,}, "
                  f"pcapy-ng {fh['pcapy_admitted']:,}, both {fh['agree']:,} (only zcap {fh['only_zcap']}, "
                  f"only pcapy-ng {fh['only_pcapy']}); zcap admits {fh['zcap_admitted_all']:,} in all "
                  "(IPv6 and ICMP flows too)."]
    w = r["writers"]
    pc, pq = w["pcap"], w["parquet"]
    lines += ["", f"`zcap -r` to pcap: {pc['packets_per_s']:,.0f} packets/s ({pc['file_bytes']:,} B); "
              f"to Parquet: {pq['packets_per_s']:,.0f} packets/s ({pq['file_bytes']:,} B)."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
