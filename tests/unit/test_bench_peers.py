"""bench/peers/peers.py installs exactly the `bench` extra of pyproject.toml."""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _peers_module():
    spec = importlib.util.spec_from_file_location("bench_peers", ROOT / "bench" / "peers" / "peers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_the_python_peers_are_the_bench_extra():
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["bench"]
    assert sorted(_peers_module().PYTHON_PEERS.values()) == sorted(extra)


def test_versions_are_read_for_every_installed_peer():
    peers = _peers_module()
    for module in peers.PYTHON_PEERS:
        if peers.have_module(module):
            assert peers.version(module) not in ("", "?"), module


def test_without_install_every_peer_is_reported_and_nothing_is_installed(tmp_path):
    """run_all.py --no-install: the docs still name every peer and its version
    (they said "Peers: ." before), and neither pip nor apt-get runs.  With an
    empty PATH the tools looked up on it are missing, and say why."""
    import subprocess

    code = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
            "import peers\n"
            "for s in peers.ensure_all(install=False): print('STATUS', s.line())\n")
    env = {"PATH": str(tmp_path), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code, str(ROOT / "bench" / "peers"), str(ROOT / "bench")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "pip install" not in proc.stderr and "apt-get install" not in proc.stderr
    lines = [line[len("STATUS "):] for line in proc.stdout.splitlines() if line.startswith("STATUS ")]
    peers = _peers_module()
    names = list(peers.PYTHON_PEERS.values()) + list(peers.SYSTEM_PEERS.values())
    assert [line.split(":")[0] for line in lines] == names
    for line in lines:
        assert ": present" in line or line.endswith(": missing (" + peers.NOT_ASKED + ")"), line
    assert "gcc: missing (" + peers.NOT_ASKED + ")" in lines        # looked up on PATH
