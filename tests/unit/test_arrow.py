"""Arrow export of offline batches and `zcap -r IN -w OUT.parquet`: columns, rotation, readers."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import numpy as np
import pytest

from tests.unit import packets as P
from tests.unit.savefiles import pcap
from zcap import _headers
from zcap.offline import open_offline

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

ZCAP = [sys.executable, "-m", "zcap"]


@pytest.fixture
def mixed(tmp_path):
    rng = random.Random(21)
    specs = [P.random_spec(rng, v6_share=0.4) for _ in range(3000)]
    for i, s in enumerate(specs):
        s.payload = bytes((i + k) & 0xFF for k in range(i % 40))
    path = tmp_path / "mixed.pcap"
    path.write_bytes(pcap([(1_700_000_000_000_000_000 + i * 1000, len(P.build(s)) + 4, P.build(s))
                           for i, s in enumerate(specs)]))
    return path, specs


def test_to_arrow_columns(mixed):
    path, specs = mixed
    with open_offline(path, chunk_size=1 << 16) as src:
        rbs = [b.to_arrow() for b in src.batches()]
    assert len(rbs) > 1
    t = pa.Table.from_batches(rbs)
    assert t.num_rows == len(specs)
    assert t.schema.field("ts_ns").type == pa.timestamp("ns")
    assert t.schema.field("data").type in (pa.binary_view(), pa.binary())
    assert [bytes(x) for x in t.column("data").to_pylist()] == [P.build(s) for s in specs]
    assert t.column("caplen").to_pylist() == [len(P.build(s)) for s in specs]
    assert t.column("wirelen").to_pylist() == [len(P.build(s)) + 4 for s in specs]
    assert t.column("ts_ns").cast(pa.int64()).to_pylist() == [
        1_700_000_000_000_000_000 + i * 1000 for i in range(len(specs))]
    for name in ("ip_version", "ip_src", "ip_dst", "proto", "sport", "dport", "tcp_flags", "vlan_outer",
                 "l3_offset", "l4_offset", "payload_offset", "flow_hash"):
        with open_offline(path) as src:
            want = np.concatenate([np.asarray(b.headers().column(name)) for b in src.batches()])
        assert t.column(name).to_pylist() == want.tolist(), name
    assert [bytes(x) for x in t.column("ip6_src").to_pylist()] == [
        s.src if s.l3 == "ipv6" else bytes(16) for s in specs]


def test_record_batch_outlives_its_source(mixed):
    path, specs = mixed
    with open_offline(path) as src:
        rb = next(iter(src.batches())).to_arrow()
    del src
    assert bytes(rb.column("data")[0].as_py()) == P.build(specs[0])


def test_zcap_r_writes_parquet_readable_by_pyarrow(mixed, tmp_path):
    path, specs = mixed
    out = tmp_path / "out.parquet"
    r = subprocess.run([*ZCAP, "-r", str(path), "-w", str(out)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    t = pq.read_table(out)
    assert t.num_rows == len(specs)
    assert [bytes(x) for x in t.column("data").to_pylist()] == [P.build(s) for s in specs]
    assert t.column("dport").to_pylist() == [s.dport if s.proto in (6, 17) else -1 for s in specs]


def test_format_flag_and_arrow_ipc(mixed, tmp_path):
    path, specs = mixed
    out = tmp_path / "out.bin"
    r = subprocess.run([*ZCAP, "-r", str(path), "-w", str(out), "--format", "parquet"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert pq.read_table(out).num_rows == len(specs)
    ipc = tmp_path / "out.arrow"
    r = subprocess.run([*ZCAP, "-r", str(path), "-w", str(ipc)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    import pyarrow.ipc
    with pa.OSFile(str(ipc)) as f:
        assert pyarrow.ipc.open_file(f).read_all().num_rows == len(specs)


@pytest.mark.parametrize("flags", [["-W", "3", "-C", "1"], ["-a"], ["-z", "gzip", "-C", "1"],
                                   ["--comment", "x"], ["-U"]])
def test_pcap_only_options_with_parquet_are_a_usage_error(mixed, tmp_path, flags):
    path, _ = mixed
    out = tmp_path / "out.parquet"
    r = subprocess.run([*ZCAP, "-r", str(path), "-w", str(out), *flags], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2, r.stderr
    assert flags[0] in r.stderr                 # the message names the option
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_size_rotation_holds_every_packet_once(mixed, tmp_path):
    path, specs = mixed
    base = tmp_path / "rot.parquet"
    r = subprocess.run([*ZCAP, "-r", str(path), "-w", str(base), "-C", "0.05"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    files = [base] + sorted((p for p in tmp_path.iterdir() if p.name.startswith("rot.parquet") and p != base),
                            key=lambda p: int(p.name[len("rot.parquet"):]))
    assert len(files) >= 3
    data = []
    for f in files:
        data += [bytes(x) for x in pq.read_table(f).column("data").to_pylist()]
    assert data == [P.build(s) for s in specs]


def test_duckdb_and_polars_read_the_files(mixed, tmp_path):
    duckdb = pytest.importorskip("duckdb")
    pl = pytest.importorskip("polars")
    path, specs = mixed
    out = tmp_path / "q.parquet"
    subprocess.run([*ZCAP, "-r", str(path), "-w", str(out)], check=True, capture_output=True, timeout=60)
    v4 = [s for s in specs if s.l3 == "ipv4"]
    top = duckdb.connect().execute(f"select count(*) from '{out}' where ip_version = 4").fetchall()[0][0]
    assert top == len(v4)
    df = pl.read_parquet(out)
    assert df.height == len(specs) and df["sport"].to_list()[:5] == [
        s.sport if s.proto in (6, 17) else -1 for s in specs[:5]]


def test_without_pyarrow_zcap_says_what_to_install(mixed, tmp_path):
    path, _ = mixed
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "pyarrow.py").write_text("raise ImportError('blocked for the test')\n")
    env = {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    r = subprocess.run([*ZCAP, "-r", str(path), "-w", str(tmp_path / "x.parquet")], capture_output=True,
                       text=True, timeout=60, env=env)
    assert r.returncode == 2
    assert "pip install 'zcap[arrow]'" in r.stderr and "Traceback" not in r.stderr
    # and zcap itself works: pcap output, headers
    r = subprocess.run([*ZCAP, "-r", str(path), "-w", str(tmp_path / "x.pcap")], capture_output=True,
                       text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    code = ("import zcap, zcap.offline as o\n"
            f"b = next(iter(o.open_offline({str(path)!r}).batches()))\n"
            "print(len(b.headers().sport))\n"
            "try:\n    b.to_arrow()\nexcept ImportError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert "pip install 'zcap[arrow]'" in r.stdout


def test_binary_views_inline_short_and_point_at_long():
    buf = bytes(range(100))
    views = _headers.binary_views(buf, memoryview(bytes(8)).cast("I"),
                                  memoryview(np.array([5, 40], np.uint32).tobytes()).cast("I"))
    assert views[:4] == (5).to_bytes(4, "little") and views[4:9] == buf[:5]
    assert views[16:20] == (40).to_bytes(4, "little") and views[20:24] == buf[:4]
    assert views[24:28] == bytes(4) and views[28:32] == bytes(4)


def _doc_block(lang: str, containing: str) -> str:
    import re
    from pathlib import Path
    text = (Path(__file__).resolve().parents[2] / "docs" / "analytics.md").read_text()
    blocks = re.findall(rf"```{lang}\n(.*?)```", text, re.S)
    return next(b for b in blocks if containing in b)


def test_docs_top_talkers_examples_run(mixed, tmp_path):
    """docs/analytics.md: the DuckDB query over Parquet files and the Polars loop over batches."""
    duckdb = pytest.importorskip("duckdb")
    pytest.importorskip("polars")
    path, specs = mixed
    subprocess.run([*ZCAP, "-r", str(path), "-w", str(tmp_path / "capture1.parquet")], check=True,
                   capture_output=True, timeout=60)
    sql = _doc_block("sql", "FROM 'capture*.parquet'").replace("capture*.parquet",
                                                                  str(tmp_path / "capture*.parquet"))
    rows = duckdb.connect().execute(sql.replace("-- duckdb\n", "")).fetchall()
    from collections import Counter
    want = Counter(".".join(map(str, s.src)) if s.l3 == "ipv4" else s.src.hex().upper() for s in specs)
    assert rows[0][0] in want and sum(r[1] for r in rows) <= len(specs)
    code = _doc_block("python", "pl.from_arrow").replace('zcap.open_live("eth0")',
                                                          f"zcap.open_offline({str(path)!r})")
    scope: dict = {}
    exec(compile(code, "docs/analytics.md", "exec"), scope)
    totals = scope["totals"]
    assert int(totals["packets"].sum()) == sum(1 for s in specs if s.l3 in ("ipv4", "ipv6"))
