"""The .pyi stubs of the compiled modules match what the modules really export.

mypy's stubtest imports each compiled module and compares every name, signature
and class shape with its .pyi.  Only names Cython generates by itself are
allowlisted (tests/unit/stubtest_allowlist.txt); anything else that drifts fails
here.  A second test plants a drifted copy of one stub and checks that stubtest
reports it, so this check cannot silently stop checking.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import zcap

pytest.importorskip("mypy", reason="mypy is in the `test` extra: pip install -e '.[test]'")

# the package under test: the checkout's, or an installed wheel's (.ci/run checks both)
ROOT = Path(zcap.__file__).resolve().parents[1]
ALLOWLIST = Path(__file__).with_name("stubtest_allowlist.txt")
# mypy finds a checkout's package from its working directory; an installed one it
# finds by itself (and site-packages must not be its working directory).
CHECKOUT = (ROOT / "pyproject.toml").is_file()
COMPILED = ["zcap._ring", "zcap._bpf", "zcap._tx", "zcap._testbed", "zcap._headers", "zcap._records",
            "zcap.compat._fast"]

# The stubs import zcap's .py modules (zcap._enums, ...): mypy type-checks those
# too, and its own findings there are not this test's subject (stubtest refuses
# to run on any mypy error).  follow_imports=silent keeps those quiet.
MYPY_CONFIG = "[mypy]\nfollow_imports = silent\n"


def _stubtest(tmp_path: Path, modules: list[str], *extra: str, env_extra=None):
    config = tmp_path / "stubtest.ini"
    config.write_text(MYPY_CONFIG + f"cache_dir = {tmp_path / 'mypy-cache'}\n")
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "--mypy-config-file", str(config),
         *extra, *modules],
        cwd=ROOT if CHECKOUT else tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_compiled_modules_match_their_stubs(tmp_path):
    for module in COMPILED:
        __import__(module)          # a missing build is a clear error, not a stubtest one
    r = _stubtest(tmp_path, COMPILED, "--allowlist", str(ALLOWLIST))
    assert r.returncode == 0, f"stubs drifted from the compiled modules:\n{r.stdout}{r.stderr}"
    # an allowlist entry nothing needs any more hides nothing: stubtest reports it.
    assert "unused allowlist entry" not in r.stdout, r.stdout


def test_a_drifted_stub_is_reported(tmp_path):
    """A stub whose signature differs from the module fails the check."""
    drift = tmp_path / "stubs" / "zcap"
    drift.mkdir(parents=True)
    (drift / "__init__.pyi").write_text("")
    real = (ROOT / "zcap" / "_records.pyi").read_text()
    assert "limit: int," in real
    (drift / "_records.pyi").write_text(real.replace("limit: int,", "limit: int, extra: int,"))
    r = _stubtest(tmp_path, ["zcap._records"], env_extra={"MYPYPATH": str(drift.parent)})
    assert r.returncode != 0
    assert "zcap._records.pcap_records is inconsistent" in r.stdout, r.stdout
