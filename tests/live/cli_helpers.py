"""Running the `zcap` command against a test bed."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import Sequence

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


def interrupt_while_waiting(script: str, *args: str, env: dict) -> tuple[int, str, str]:
    """Run a Python `script` that prints "waiting" before it blocks on an idle
    link, send it SIGINT once it waits, and return (returncode, stdout, stderr)."""
    proc = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "waiting"
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err


def run_zcap(*args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*ZCAP, *args], capture_output=True, text=True, timeout=timeout, **kw)


def summary(stderr: str) -> dict[str, int]:
    out = {}
    for line in stderr.splitlines():
        for key in ("packets captured", "packets received by filter", "packets dropped by kernel"):
            if line.endswith(key):
                out[key.split()[1]] = int(line.split()[0])
    return out
