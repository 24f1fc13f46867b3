"""README.md's API examples and the docs' examples run, as written, on a test rig.

Each ```python block of README.md's "## API" part, and each block of docs/*.md
except those listed in DOC_SKIPPED (with the reason), is run in its own Python
process inside a Testbed namespace whose interfaces carry the names the README
uses: "eth0" (where it captures) and "veth0" (where it transmits; its peer is
eth0), while the test sends UDP frames veth0 -> eth0.  What the test adds, and
nothing else:

* A prelude (PRELUDE) that makes every open_live() capture and every Pool
  call its own stop() STOP_AFTER seconds after it opened/started - the same
  lossless stop Ctrl-C gives the `zcap` command - so the examples' endless
  `for pkt in cap` loops end the way the README says they end (every accepted
  packet, then the loop ends); a Pool gets POOL_STOP_AFTER seconds, as its
  worker processes take a while to start on two busy CPUs.  The names of zcap are otherwise untouched.
* `import zcap` before every block (the section's first block has it; the
  others continue it), and for the fragments that use names the README
  leaves to the reader (`cap`, `np`, `frames`, `template`) a per-block set-up
  (SETUP below).
* One bound: `send_sequence(template, 1_000_000, ..., pps=100_000)` would take
  10 s; it runs with 1_000 packets (SUBSTITUTIONS).

A block that fails here is a README (or doc) that is wrong: fix the text.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import zcap
from zcap import testbed as tb_mod

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
# docs/*.md blocks not run, by their first line, and why
DOC_SKIPPED = {
    "import pcapy": "the 'before' example: the real pcapy-ng, not zcap",
    "import pcap                          # before": "the 'before' example: needs pypcap",
    "from scapy.all import sniff, AsyncSniffer": "scapy's sniff() without count= runs until Ctrl-C",
}
STOP_AFTER = 1.0
POOL_STOP_AFTER = 4.0

PRELUDE = f'''
import threading as _threading
import zcap as _zcap

def _stop_later(obj, after={STOP_AFTER}):
    timer = _threading.Timer(after, obj.stop)
    timer.daemon = True
    timer.start()

_open_live = _zcap.open_live

def _open_live_stopping(*args, **kwargs):
    cap = _open_live(*args, **kwargs)
    _stop_later(cap)
    return cap

_zcap.open_live = _open_live_stopping

_pool_start = _zcap.Pool.start

def _pool_start_stopping(self):
    started = _pool_start(self)
    _stop_later(self, {POOL_STOP_AFTER})          # its workers need a moment to start
    return started

_zcap.Pool.start = _pool_start_stopping
import zcap            # the API section's first block imports it for the blocks that follow
'''

SETUP = {
    "batch.headers()": "import numpy as np\nimport zcap\ncap = zcap.open_live('eth0')\n",
    "open_inject": ("import zcap\nfrom zcap.testbed import udp_frame\n"
                    "frames = [udp_frame(64, seq=i) for i in range(100)]\ntemplate = udp_frame(64)\n"),
}
SUBSTITUTIONS = {"inj.send_sequence(template, 1_000_000,": "inj.send_sequence(template, 1_000,"}


def _api_blocks() -> list[tuple[str, str]]:
    text = README.read_text()
    api = text[text.index("\n## API\n"):]
    api = api[:api.index("\n## ", 1)]
    blocks = re.findall(r"^```python\n(.*?)^```", api, re.S | re.M)
    out = []
    for code in blocks:
        heading = api[:api.index(code)].rsplit("\n### ", 1)
        name = heading[1].split("\n", 1)[0] if len(heading) > 1 else "API"
        out.append((name, code))
    return out


def _doc_blocks() -> list[tuple[str, str]]:
    out = []
    for path in sorted((ROOT / "docs").glob("*.md")):
        for k, code in enumerate(re.findall(r"^```python\n(.*?)^```", path.read_text(), re.S | re.M)):
            if code.split("\n", 1)[0].strip() not in DOC_SKIPPED:
                out.append((f"{path.name}#{k}", code))
    return out


BLOCKS = _api_blocks() + _doc_blocks()


def test_the_readme_has_its_api_examples():
    names = [name for name, _ in BLOCKS]
    assert len(BLOCKS) >= 7 and "Interfaces" in names and "Transmit" in names, names
    assert any(n.startswith("analytics.md") for n in names) and any(n.startswith("pool.md") for n in names)


@pytest.mark.parametrize("code", [c for _, c in BLOCKS], ids=[n for n, _ in BLOCKS])
def test_readme_example_runs(code, tmp_path):
    setup = "".join(s for key, s in SETUP.items() if key in code)
    for old, new in SUBSTITUTIONS.items():
        code = code.replace(old, new)
    script = tmp_path / "example.py"
    script.write_text(PRELUDE + setup + code)
    if "trace.pcap" in code:                     # the file the Transmit example replays
        from zcap._ring import make_packet
        from zcap.testbed import udp_frame
        with zcap.open_writer(str(tmp_path / "trace.pcap"), linktype=1) as w:
            for i in range(20):
                w.write(make_packet(udp_frame(64, seq=i), ts_ns=1_000_000_000 + i * 1_000_000))
    with tb_mod.Testbed(a="veth0", b="eth0") as tb:
        frame = tb.frame(64)
        done = threading.Event()

        def traffic() -> None:                   # ~500 frames/s while the example runs
            sender = tb.sender()
            try:
                while not done.wait(0.002):
                    sender.send(frame)
            finally:
                sender.sock.close()

        thread = threading.Thread(target=traffic, daemon=True)
        thread.start()
        try:
            r = subprocess.run(["ip", "netns", "exec", tb.netns, sys.executable, str(script)],
                               cwd=tmp_path, capture_output=True, text=True, timeout=90)
        finally:
            done.set()
            thread.join(5)
    assert r.returncode == 0, f"README example failed:\n{code}\n--- stdout\n{r.stdout[-3000:]}" \
                              f"\n--- stderr\n{r.stderr[-3000:]}"
    if "pkt.summary()" in code:                  # it read back what it wrote
        assert "UDP" in r.stdout, r.stdout[-2000:]
    if "zcap.Pool(" in code:                     # the workers captured the traffic
        assert re.search(r"Stats\(mode='ring', received=[1-9]", r.stdout), r.stdout[-2000:]
    if "for pkt in cap:" in code and "print(pkt.ts_ns" in code:
        assert len(r.stdout.splitlines()) > 10, r.stdout   # it saw the traffic
