"""Run a command without CAP_NET_RAW, to test what zcap says when it is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DROP_NET_RAW = ["setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw"]


def run_without_net_raw(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`argv` run from the repository with CAP_NET_RAW gone from every capability set."""
    return subprocess.run([*DROP_NET_RAW, *argv], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def python_without_net_raw(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -c code` without CAP_NET_RAW."""
    return run_without_net_raw(sys.executable, "-c", code, timeout=timeout)
