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
