"""`--help` on a benchmark command prints its usage and does nothing else.

These commands used to act on `--help`: peers.py installed the peers (pip,
apt-get), report.py rewrote docs/benchmarks.md, compat_idle.py started a test
bed and ran its measurement, build_cy_consumer.py compiled into a directory
named `--help`.  Each runs here in an empty directory with an empty PATH (no
apt-get, no ip) and pip pointed at no index, so an install or a build that is
attempted fails instead of changing the machine, and the output tells.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.parametrize("script", ["peers/peers.py", "report.py", "compat/compat_idle.py",
                                    "drain/build_cy_consumer.py"])
def test_help_prints_usage_and_does_nothing_else(script, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    env = dict(os.environ, PATH=str(empty), PIP_NO_INDEX="1", PIP_FIND_LINKS=str(empty),
               PIP_CONFIG_FILE=os.devnull)
    before = sorted(tmp_path.rglob("*"))
    proc = subprocess.run([sys.executable, str(BENCH / script), "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith(f"usage: {Path(script).name} "), proc.stdout + proc.stderr
    assert proc.stderr == ""                        # no "pip install ...", no status lines
    assert sorted(tmp_path.rglob("*")) == before    # nothing built or written
