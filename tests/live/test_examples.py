"""The runnable examples in docs/examples stay runnable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def run(script: str, *args: str) -> str:
    out = subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True,
                         text=True, timeout=120, cwd=EXAMPLES)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.mark.parametrize("loop", [[], ["--uvloop"]], ids=["asyncio", "uvloop"])
def test_async_app(loop):
    out = run("async_app.py", "--seconds", "1.5", *loop)
    assert "top talkers: 10.99.0.1" in out and "done:" in out


def test_async_server_serves_counters():
    out = run("async_server.py", "--self-test", "--port", "0")
    assert "self-test OK" in out


def test_async_bench():
    out = run("async_bench.py", "--count", "20000", "--repeat", "1")
    assert all(f"{how} " in out for how in ("sync", "asyncio", "uvloop"))
