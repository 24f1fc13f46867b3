"""`zcap --workers N -w 'cap-{worker}.pcap'` and `zcap merge` on a real veth pair."""

from __future__ import annotations

import subprocess

import zcap
from tests.live.cli_helpers import ZcapProcess, run_zcap, summary
from tests.live.test_fanout import fragmented_traffic, send_flows
from zcap.testbed import frame_seq


def read(path) -> list[tuple[int, int, int]]:
    with zcap.open_offline(str(path)) as src:
        return [(p.ts_ns, int.from_bytes(bytes(p)[34:36], "big"), frame_seq(bytes(p))) for p in src]


def test_workers_write_one_file_each_and_merge_restores_one_stream(testbed, tmp_path):
    pattern = str(tmp_path / "cap-{worker}.pcap")
    z = ZcapProcess("-i", testbed.b, "--netns", testbed.netns, "--workers", "2", "-w", pattern,
                    "--nano", "udp")
    sent = send_flows(testbed, flows=60, per_flow=20)
    code, _, err = z.interrupt()
    assert code == 0, err
    numbers = summary(err)
    assert numbers["captured"] == numbers["received"] == len(sent), err
    files = [tmp_path / "cap-0.pcap", tmp_path / "cap-1.pcap"]
    per_worker = [read(f) for f in files]
    assert all(per_worker), "60 flows should reach both workers"
    assert sorted((f, s) for part in per_worker for _, f, s in part) == sorted(sent)
    for part in per_worker:                                  # each flow in one file
        assert not {f for _, f, _ in part} & {f for _, f, _ in per_worker[1 - per_worker.index(part)]}

    merged = tmp_path / "all.pcap"
    r = run_zcap("merge", "-w", str(merged), *map(str, files))
    assert r.returncode == 0, r.stderr
    out = read(merged)
    assert sorted(out) == sorted(p for part in per_worker for p in part)   # lossless
    assert [ts for ts, _, _ in out] == sorted(ts for ts, _, _ in out)      # in timestamp order
    # tcpdump agrees on the count and keeps the nanoseconds
    td = subprocess.run(["tcpdump", "-r", str(merged), "-nn", "--time-stamp-precision=nano"],
                        capture_output=True, text=True)
    assert len(td.stdout.splitlines()) == len(sent)


def test_workers_needs_a_worker_pattern(testbed, tmp_path):
    r = run_zcap("-i", testbed.b, "--netns", testbed.netns, "--workers", "2",
                 "-w", str(tmp_path / "x.pcap"))
    assert r.returncode == 2 and "{worker}" in r.stderr
    r = run_zcap("-i", testbed.b, "--netns", testbed.netns, "--workers", "2")
    assert r.returncode == 2 and "-w" in r.stderr


def test_workers_write_ip_fragments_as_they_arrived(testbed, tmp_path):
    """The files hold the wire's frames: fragments stay fragments (the
    kernel's fanout defrag would hand a worker the reassembled datagram, and
    swallow the fragments of one that never completes)."""
    pattern = str(tmp_path / "frag-{worker}.pcap")
    z = ZcapProcess("-i", testbed.b, "--netns", testbed.netns, "--workers", "2", "-w", pattern)
    sent, _, _ = fragmented_traffic(testbed)
    code, _, err = z.interrupt()
    assert code == 0, err
    assert summary(err)["captured"] == len(sent), err
    merged = tmp_path / "all.pcap"
    r = run_zcap("merge", "-w", str(merged), str(tmp_path / "frag-0.pcap"),
                 str(tmp_path / "frag-1.pcap"))
    assert r.returncode == 0, r.stderr
    with zcap.open_offline(str(merged)) as src:
        assert sorted(bytes(p) for p in src) == sorted(sent)
