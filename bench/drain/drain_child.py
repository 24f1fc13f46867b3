"""Drive a reader process through the drain handshake, optionally under perf.

The C readers (bench/drain/c/) and drain_worker.py speak the same line protocol
(see bench/drain/c/drain_protocol.h): READY, then ARMED {kernel counters} once the
frames are queued, then DONE {packets, ns, polls} after the drain.  The
driver answers each with a line.  PerfCounter attaches `perf stat` to the
reader and counts its system calls (and page faults) only between the
"start" line and DONE.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

SYSCALLS = "raw_syscalls:sys_enter"
PAGE_FAULTS = "page-faults"


def read_chunk(fd: int, deadline: float) -> Optional[bytes]:
    """Up to 4 KiB from a child's pipe: None if `deadline` passes first, b"" at EOF."""
    left = deadline - time.monotonic()
    if left <= 0 or not select.select([fd], [], [], left)[0]:
        return None
    return os.read(fd, 4096)


class ReaderError(RuntimeError):
    pass


class ChildReader:
    """A reader process that has opened its capture and waits for the frames."""

    def __init__(self, cmd: Sequence[str], *, env: Optional[dict] = None,
                 startup_timeout: float = 60.0) -> None:
        self.cmd = list(cmd)
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        self._pending = b""
        try:
            self._expect("READY", startup_timeout)
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def arm(self, timeout: float = 30.0) -> dict:
        """Tell the reader the frames are queued; returns its kernel counters."""
        self._send_line()
        return self._expect("ARMED", timeout)

    def drain(self, timeout: float = 300.0) -> dict:
        """Start the timed drain; returns {packets, ns, polls}."""
        self._send_line()
        return self._expect("DONE", timeout)

    def close(self) -> None:
        """Let the reader exit (or end it if it does not)."""
        if self.proc.poll() is None:
            try:
                self._send_line()
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()

    def __enter__(self) -> ChildReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send_line(self) -> None:
        self.proc.stdin.write(b"\n")
        self.proc.stdin.flush()

    def _expect(self, word: str, timeout: float) -> dict:
        line = self._read_line(timeout)
        head, _, payload = line.partition(" ")
        if head != word:
            raise ReaderError(f"{self.cmd[0]}: expected {word}, got {line!r}{self._stderr_tail()}")
        return json.loads(payload) if payload else {}

    def _read_line(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._pending:
            chunk = read_chunk(fd, deadline)
            if chunk is None:
                raise ReaderError(f"{self.cmd[0]}: no answer within {timeout:.0f} s")
            if not chunk:
                raise ReaderError(f"{self.cmd[0]}: exited (status {self.proc.wait()})"
                                  f"{self._stderr_tail()}")
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode().strip()

    def _stderr_tail(self) -> str:
        if self.proc.poll() is None:
            return ""
        err = self.proc.stderr.read().decode(errors="replace").strip()
        return f"\n{err[-2000:]}" if err else ""


class PerfCounter:
    """`perf stat -e EVENTS -p PID`, enabled and disabled on command.

    perf starts with counting disabled (-D -1) and is switched through its
    control FIFO, which acknowledges each command, so the window is exact.
    """

    def __init__(self, pid: int, events: Sequence[str] = (SYSCALLS, PAGE_FAULTS), *,
                 startup_timeout: float = 30.0) -> None:
        self.events = list(events)
        self._dir = tempfile.TemporaryDirectory(prefix="drain-perf-")
        work = Path(self._dir.name)
        self._output = work / "perf.csv"
        control, ack = work / "control", work / "ack"
        os.mkfifo(control)
        os.mkfifo(ack)
        # O_RDWR: opening never blocks, whether or not perf has opened its end yet
        self._control = os.open(control, os.O_RDWR)
        self._ack = os.open(ack, os.O_RDWR)
        self.proc = subprocess.Popen(
            ["perf", "stat", "-x,", "-e", ",".join(self.events), "-D", "-1",
             "--control", f"fifo:{control},{ack}", "-p", str(pid), "-o", str(self._output)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._startup_timeout = startup_timeout

    def enable(self) -> None:
        self._command("enable", self._startup_timeout)

    def disable(self) -> None:
        self._command("disable", 10.0)

    def finish(self) -> dict[str, int]:
        """Stop perf; return {event: count while enabled}."""
        self._stop_perf()
        return self._parse_counts()

    def close(self) -> None:
        self._stop_perf()
        for fd in (self._control, self._ack):
            os.close(fd)
        self._dir.cleanup()

    def __enter__(self) -> PerfCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _command(self, word: str, timeout: float) -> None:
        os.write(self._control, f"{word}\n".encode())
        deadline = time.monotonic() + timeout
        answer = b""
        while b"ack" not in answer:
            left = deadline - time.monotonic()
            if self.proc.poll() is not None:
                raise ReaderError(f"perf exited: {self.proc.stderr.read().decode().strip()}")
            if left <= 0:
                raise ReaderError(f"perf did not acknowledge {word!r} within {timeout:.0f} s")
            if select.select([self._ack], [], [], min(left, 0.5))[0]:
                answer += os.read(self._ack, 64)

    def _stop_perf(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)     # perf stat writes its counts on SIGINT
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def _parse_counts(self) -> dict[str, int]:
        text = self._output.read_text()
        counts = {}
        for line in text.splitlines():
            fields = line.split(",")
            if len(fields) > 2 and fields[2] in self.events:
                # "<not counted>": the process never ran while counting was on
                counts[fields[2]] = 0 if fields[0].startswith("<not") else int(fields[0])
        missing = set(self.events) - set(counts)
        if missing:
            raise ReaderError(f"no count for {', '.join(sorted(missing))} in perf's output:\n{text}")
        return counts
