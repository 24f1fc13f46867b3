"""Running the `zcap` command against a test bed."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import Callable, Optional, Sequence

ZCAP = [sys.executable, "-m", "zcap"]


class ZcapProcess:
    """`zcap ...` in the background, ready (it printed "listening on") before traffic."""

    def __init__(self, *args: str, stdout=subprocess.PIPE, command: Sequence[str] = tuple(ZCAP)) -> None:
        self.proc = subprocess.Popen([*command, *args], stdout=stdout, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        line = b""
        self.startup: list[str] = []            # stderr lines up to "listening on"
        while b"listening on" not in line:
            line = self.proc.stderr.readline()
            self.startup.append(line.decode(errors="replace"))
            if (not line and self.proc.poll() is not None) or time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError(f"zcap did not start: {line!r} {self.proc.stderr.read()!r}")

    def interrupt(self, timeout: float = 15) -> tuple[int, str, str]:
        self.proc.send_signal(signal.SIGINT)
        return self.wait(timeout)

    def wait(self, timeout: float = 15) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, (out or b"").decode(errors="replace"), err.decode()


def interrupt_when(command: Sequence[str], ready: Callable[[subprocess.Popen], bool], *,
                   env: Optional[dict] = None, timeout: float = 30) -> tuple[int, str, str]:
    """Run `command`, send it SIGINT once `ready(proc)` says so (asked every
    50 ms for `timeout` seconds), and return (returncode, stdout, stderr);
    the process is killed if anything fails on the way."""
    proc = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        deadline = time.monotonic() + timeout
        while not ready(proc):
            assert proc.poll() is None, f"it ended first: {proc.communicate()}"
            assert time.monotonic() < deadline, "it never got ready"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err


def interrupt_while_waiting(script: str, *args: str, env: dict) -> tuple[int, str, str]:
    """Run a Python `script` that prints "waiting" before it blocks on an idle
    link, send it SIGINT once it waits, and return (returncode, stdout, stderr)."""
    def said_waiting(proc: subprocess.Popen) -> bool:
        line = proc.stdout.readline().strip()
        assert line == "waiting", line
        time.sleep(0.3)
        return True
    return interrupt_when([sys.executable, "-c", script, *args], said_waiting, env=env)


def run_zcap(*args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*ZCAP, *args], capture_output=True, text=True, timeout=timeout, **kw)


def summary(stderr: str) -> dict[str, int]:
    out = {}
    for line in stderr.splitlines():
        for key in ("packets captured", "packets received by filter", "packets dropped by kernel"):
            if line.endswith(key):
                out[key.split()[1]] = int(line.split()[0])
    return out
