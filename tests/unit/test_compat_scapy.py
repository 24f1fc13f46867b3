"""zcap.compat.scapy without a network: install()/uninstall() and the README's example."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("scapy")

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_compat_block() -> str:
    text = README.read_text()
    section = text[text.index("### Existing code: pcapy, pypcap, scapy"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_compat_example_runs_as_written():
    check = ("\nfrom scapy.config import conf\nfrom zcap.compat.scapy import ZcapSocket\n"
             "assert conf.L2listen is ZcapSocket, conf.L2listen\n"
             "assert pcapy.open_offline and pcap.pcap\nprint('ok')\n")
    out = subprocess.run([sys.executable, "-c", readme_compat_block() + check], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr


def test_install_and_uninstall():
    code = """
from scapy.config import conf
from zcap.compat.scapy import ZcapSocket, install, uninstall
before = conf.L2listen
assert install() is before and conf.L2listen is ZcapSocket
assert install() is before and conf.L2listen is ZcapSocket      # idempotent
uninstall()
assert conf.L2listen is before
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
