"""The `zcap` command stopped by Ctrl-C or SIGTERM with a large backlog, a closed
pipe, a full disk (issue 11, items 1, 6, 7, 10).

The stop comes right after a sender filled the ring at full speed, so the
backlog is tens of thousands of packets: zcap must write every one the kernel
accepted (however long that takes) before its summary, and the summary must
add up: captured + dropped == received.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.live.cli_helpers import ZCAP, ZcapProcess, interrupt_when, summary
from tests.live.reference import read_pcap
from tests.unit.savefiles import frame, pcap, unexpected_stderr


def seqs_of(packets) -> list[int]:
    return [int.from_bytes(d[42:50], "big") for _, _, d in packets]


@pytest.mark.parametrize("how", ["print", "ring", "copy", "immediate"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stop_with_a_large_backlog_writes_every_accepted_packet(testbed, tmp_path, how, sig):
    out = tmp_path / "out.pcap"
    text = tmp_path / "out.txt"
    args = ["-i", testbed.b, "--netns", testbed.netns, "-B", "16384"]
    if how == "print":
        args += ["-n"]
    else:
        args += ["-w", str(out)] + {"ring": [], "copy": ["--mode", "copy"],
                                    "immediate": ["--immediate-mode"]}[how]
    with open(text, "wb") as sink:
        proc = ZcapProcess(*args, stdout=sink)
        with testbed.sender() as s:
            sent = s.send_sequence(testbed.frame(64), 150_000)
        proc.proc.send_signal(sig)
        code, _, err = proc.wait(120)
    assert code == 0, err
    assert "Traceback" not in err
    counts = summary(err)
    assert counts["received"] <= sent
    assert counts["captured"] + counts["dropped"] == counts["received"], err
    assert "abandoned" not in err and "not read" not in err
    if how == "print":
        lines = text.read_text().splitlines()
        assert len(lines) == counts["captured"]
    else:
        _, packets = read_pcap(out)
        assert len(packets) == counts["captured"]
        seqs = seqs_of(packets)
        assert all(b > a for a, b in zip(seqs, seqs[1:]))


def test_head_closing_the_pipe_ends_a_live_capture_quietly(testbed):
    from tests.live.conftest import BackgroundSender
    proc = ZcapProcess("-i", testbed.b, "--netns", testbed.netns, "-c", "100000", "-n")
    sender = BackgroundSender(testbed, testbed.frame(64), 20_000, pps=100_000)
    sender.start()
    for _ in range(3):
        assert proc.proc.stdout.readline()
    proc.proc.stdout.close()                                   # `| head -3`
    err = proc.proc.stderr.read().decode()
    code = proc.proc.wait(30)
    sender.join_checked()
    assert code == 0, err
    assert "Broken pipe" not in err and "Traceback" not in err and "Exception" not in err


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_full_disk_exit_7_one_line_and_a_readable_file(small_disk, tmp_path, fmt):
    src = tmp_path / "big.pcap"
    count = 2000
    src.write_bytes(pcap([(10**18 + i * 1000, 100, frame(i, 100)) for i in range(count)]))
    out = small_disk / f"out.{fmt}"
    result = subprocess.run([*ZCAP, "-r", str(src), "-w", str(out), "--format", fmt],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 7, result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("reading from")]
    assert len(lines) == 1 and "No space left on device" in lines[0], result.stderr
    # the message says how many packets are in the file and how many were not written
    held = int(lines[0].split("the file holds ")[1].split()[0])
    lost = int(lines[0].split("; ")[-1].split()[0])
    assert held > 0 and held + lost == count
    tshark = subprocess.run(["tshark", "-r", str(out), "-T", "fields", "-e", "frame.number"],
                            capture_output=True, text=True)
    assert tshark.returncode == 0 and unexpected_stderr(tshark.stderr) == [], tshark.stderr
    assert len(tshark.stdout.split()) == held


def test_a_second_ctrl_c_ends_at_once_and_counts_what_was_not_read(testbed, tmp_path):
    text = tmp_path / "out.txt"
    with open(text, "wb") as sink:
        proc = ZcapProcess("-i", testbed.b, "--netns", testbed.netns, "-B", "16384", "-n",
                           stdout=sink)
        with testbed.sender() as s:
            s.send_sequence(testbed.frame(64), 100_000)
        proc.proc.send_signal(signal.SIGINT)
        time.sleep(0.3)                          # printing 100,000 lines takes seconds
        proc.proc.send_signal(signal.SIGINT)
        code, _, err = proc.wait(60)
    assert code == 0, err
    counts = summary(err)
    abandoned = int(next(line for line in err.splitlines() if "not read" in line).split()[0])
    assert abandoned > 0
    assert counts["captured"] + counts["dropped"] + abandoned == counts["received"], err
    assert len(text.read_text().splitlines()) == counts["captured"]


def test_ctrl_c_as_soon_as_zcap_says_listening_stops_cleanly(testbed, tmp_path):
    # "listening on" is the moment scripts (and our tests) start traffic and may
    # press Ctrl-C.  It once came before the output file was opened and the
    # Ctrl-C handler installed: a signal in that window (a busy machine makes it
    # long) ended zcap with a KeyboardInterrupt traceback and no summary.  A FIFO
    # holds zcap at opening its output until the reader below comes.
    fifo = tmp_path / "out.pcap"
    os.mkfifo(fifo)
    got = bytearray()

    def read_fifo():
        time.sleep(1.0)                          # zcap is blocked opening the FIFO
        with open(fifo, "rb") as f:
            got.extend(f.read())

    reader = threading.Thread(target=read_fifo, daemon=True)
    reader.start()
    proc = ZcapProcess("-i", testbed.b, "--netns", testbed.netns, "-w", str(fifo))
    with testbed.sender() as s:
        s.send_sequence(testbed.frame(64), 5)
    code, _, err = proc.interrupt()
    reader.join(15)
    assert code == 0 and "Traceback" not in err, err
    assert summary(err) == {"captured": 5, "received": 5, "dropped": 0}, err
    assert seqs_of(read_pcap_bytes(bytes(got), tmp_path)) == list(range(5))


def read_pcap_bytes(data: bytes, tmp_path: Path) -> list:
    copy = tmp_path / "copy.pcap"
    copy.write_bytes(data)
    return read_pcap(copy)[1]


@pytest.mark.parametrize("extra", [(), ("--workers", "2")], ids=["one", "workers"])
def test_ctrl_c_before_the_capture_starts_ends_quietly_with_130(testbed, tmp_path, extra):
    """A Ctrl-C while zcap is still setting up (here: blocked opening its -F
    file, a FIFO nobody writes) ends it quietly, as a shell reports SIGINT:
    it used to end with a KeyboardInterrupt traceback."""
    fifo = tmp_path / "filter"
    os.mkfifo(fifo)
    def blocked_opening_the_fifo(proc) -> bool:
        return Path(f"/proc/{proc.pid}/wchan").read_text() == "wait_for_partner"
    code, _, err = interrupt_when([*ZCAP, "-i", testbed.b, "--netns", testbed.netns, "-F", str(fifo),
                                   "-w", str(tmp_path / "out-{worker}.pcap"), *extra],
                                  blocked_opening_the_fifo)
    assert code == 130 and err == "", err
