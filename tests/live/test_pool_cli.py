"""`zcap --workers N -w 'cap-{worker}.pcap'` and `zcap merge` on a real veth pair."""

from __future__ import annotations

import subprocess
import time

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


def test_workers_keep_vlan_tags(testbed, tmp_path):
    """Trunk traffic (802.1Q, QinQ, 802.1ad) through --workers: the kernel
    strips the outer tag of each frame, every worker's writer puts it back."""
    tags = [(), ((0x8100, 100),), ((0x88A8, 200), (0x8100, 300)), ((0x8100, 7), (0x8100, 8))]
    sent = [testbed.frame(80, seq=k, sport=3000 + k % 16, vlan_tags=tags[k % 4]) for k in range(64)]
    pattern = str(tmp_path / "vlan-{worker}.pcapng")
    z = ZcapProcess("-i", testbed.b, "--netns", testbed.netns, "--workers", "2", "-w", pattern)
    with testbed.sender() as s:
        s.send_all(sent)
    code, _, err = z.interrupt()
    assert code == 0, err
    got = []
    for i in range(2):
        with zcap.open_offline(str(tmp_path / f"vlan-{i}.pcapng")) as src:
            got += [bytes(p) for p in src]
    assert sorted(got) == sorted(sent)


def test_workers_on_a_full_disk_exit_7_with_a_line_per_worker_and_readable_files(testbed,
                                                                                   small_disk):
    """Each failed worker says, in one line, what its file holds and how many
    of its packets are not in it; no traceback; exit 7 as for one capture."""
    z = ZcapProcess("-i", testbed.b, "--netns", testbed.netns, "--workers", "2",
                    "-w", str(small_disk / "cap-{worker}.pcap"))
    with testbed.sender() as s:      # 4 MB for a 64 KiB disk: both workers' writers fill it
        s.send_all([testbed.frame(1000, seq=k, sport=2000 + k % 50) for k in range(4000)])
    code, _, err = z.wait(30)        # it ends by itself: the first failure stops the pool
    assert code == 7, err
    assert "Traceback" not in err and "traceback" not in err, err
    lines = err.splitlines()[1:]     # after "listening on ..."
    assert lines and all(line.startswith("zcap: worker ") for line in lines), err
    for line in lines:
        worker = int(line.split()[2].rstrip(":"))
        assert "No space left on device" in line and f"cap-{worker}.pcap" in line, line
        held = int(line.split("the file holds ")[1].split()[0])
        lost, _, _, received = line.rsplit("; ", 1)[1].split()[:4]
        with zcap.open_offline(str(small_disk / f"cap-{worker}.pcap")) as src:
            assert sum(1 for _ in src) == held
        assert held + int(lost) == int(received) > 0


def test_worker_patterns_are_checked_before_capturing(testbed, tmp_path):
    """Braces other than {worker} and a folder that is not there are refused
    at once, before any worker starts (they used to fail in every worker,
    after "listening", with messages like "worker 0: 'b'")."""
    base = ("-i", testbed.b, "--netns", testbed.netns, "--workers", "2", "-w")
    for name, words in (("a{b}-{worker}.pcap", "not {b}"), ("x{worker}{}.pcap", "not {}"),
                        ("c-{worker", "not a valid pattern"),
                        ("c-{worker:zz}.pcap", "cannot format the worker's number")):
        r = run_zcap(*base, str(tmp_path / name), timeout=30)
        assert r.returncode == 2 and words in r.stderr and "listening" not in r.stderr, r.stderr
    r = run_zcap(*base, str(tmp_path / "no" / "cap-{worker}.pcap"), timeout=30)
    assert r.returncode == 7 and "is not a directory" in r.stderr, r.stderr
    assert "listening" not in r.stderr


def test_a_padded_worker_number_and_literal_braces(testbed, tmp_path):
    z = ZcapProcess("-i", testbed.b, "--netns", testbed.netns, "--workers", "2",
                    "-w", str(tmp_path / "c-{{x}}-{worker:02d}.pcap"))
    sent = send_flows(testbed, flows=20, per_flow=5)
    code, _, err = z.interrupt()
    assert code == 0, err
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["c-{x}-00.pcap", "c-{x}-01.pcap"]
    assert sum(len(read(tmp_path / f)) for f in files) == len(sent)


def test_workers_honour_the_savefile_options(testbed, tmp_path):
    """-C with -W keeps each worker's ring of files bounded, --comment reaches
    each pcapng file (they were ignored with --workers: -W's files grew
    without bound)."""
    z = ZcapProcess("-i", testbed.b, "--netns", testbed.netns, "--workers", "2", "--format",
                    "pcapng", "-C", "0.002", "-W", "2", "--comment", "rack 7",
                    "-w", str(tmp_path / "ring-{worker}.pcapng"))
    send_flows(testbed, flows=40, per_flow=10)       # 400 frames: ~40 KB, ~10 files a worker
    code, _, err = z.interrupt()
    assert code == 0, err
    files = sorted(p.name for p in tmp_path.iterdir())
    for worker in (0, 1):
        mine = [f for f in files if f.startswith(f"ring-{worker}.pcapng")]
        assert 1 <= len(mine) <= 2, files
        shown = subprocess.run(["capinfos", "-k", str(tmp_path / mine[0])],
                               capture_output=True, text=True)
        assert "rack 7" in shown.stdout, shown.stdout + shown.stderr


def test_options_that_do_not_fit_workers_are_refused(testbed, tmp_path):
    base = ("-i", testbed.b, "--netns", testbed.netns, "--workers", "2")
    for extra, words in ((("--print",), "--print"), (("--stats",), "--stats"),
                         (("-Z", "nobody"), "-Z"), (("-y", "EN10MB"), "-y"),
                         (("--format", "parquet", "-W", "3", "-C", "1"), "-W")):
        r = run_zcap(*base, *extra, "-w", str(tmp_path / "x-{worker}"), timeout=30)
        assert r.returncode == 2 and words in r.stderr and "listening" not in r.stderr, \
            (extra, r.stderr)


def test_a_quiet_worker_flushes_its_file_and_rotates_on_time(testbed, tmp_path):
    """What a worker wrote is in its file soon after the link goes quiet (a
    crash then loses nothing), and -G T -W N ends the command after N files,
    as tcpdump does; a worker used to block in its ring with both undone."""
    z = ZcapProcess("-i", testbed.b, "--netns", testbed.netns, "--workers", "2",
                    "-w", str(tmp_path / "quiet-{worker}.pcap"))
    try:
        sent = send_flows(testbed, flows=8, per_flow=3)
        deadline = time.monotonic() + 10
        while True:                      # files are read while zcap still runs
            held = sum(len(read(f)) for f in tmp_path.glob("quiet-*.pcap") if f.stat().st_size)
            if held == len(sent) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert held == len(sent)
    finally:
        code, _, err = z.interrupt()
    assert code == 0, err

    z = ZcapProcess("-i", testbed.b, "--netns", testbed.netns, "--workers", "2", "-G", "1",
                    "-W", "2", "-w", str(tmp_path / "g-{worker}-%s.pcap"))
    code, _, err = z.wait(15)            # no Ctrl-C: two 1-second files per worker, then the end
    assert code == 0, err
    for worker in (0, 1):
        assert len(list(tmp_path.glob(f"g-{worker}-*.pcap"))) == 2
