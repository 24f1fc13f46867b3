"""`pip install <checkout>` into a fresh venv gives a working package and command.

The venv gets only what pyproject.toml declares: the build runs with pip's
build isolation (its own setuptools and Cython from build-system.requires),
and the install pulls the runtime `dependencies`.  Then every `zcap`
subcommand and the README's API examples run there, on a test bed veth pair.

Building the extensions is the slow part (gcc on the ~30k-line generated
_ring.c), so the wheel pip builds is kept in a cache keyed by a hash of the
sources: a rebuild happens only when they change.  pip's download cache makes
the rest fast.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[2]
WHEEL_CACHE = Path(tempfile.gettempdir()) / "zcap-test-wheels"


def _sources() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=CHECKOUT,
                         capture_output=True, text=True, check=True).stdout
    return sorted(p for p in out.splitlines() if (CHECKOUT / p).is_file())


def _run(*cmd: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)
    assert proc.returncode == 0, f"{cmd}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _wheel(pip: Path, work: Path) -> Path:
    """The wheel `pip install <checkout>` builds, built once per state of the sources."""
    files = _sources()
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode() + b"\0" + (CHECKOUT / name).read_bytes() + b"\0")
    cached = WHEEL_CACHE / digest.hexdigest()[:24]
    wheels = list(cached.glob("zcap-*.whl"))
    if wheels:
        return wheels[0]
    # Build from a copy of the sources, so nothing is written into the checkout.
    src = work / "src"
    for name in files:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(CHECKOUT / name, src / name)
    out = work / "wheel"
    _run(str(pip), "wheel", "--no-deps", "-w", str(out), str(src), timeout=900)
    cached.mkdir(parents=True, exist_ok=True)
    wheel = next(out.glob("zcap-*.whl"))
    shutil.copy2(wheel, cached / wheel.name)
    return cached / wheel.name


README_EXAMPLES = '''
import sys
import zcap

iface, ns, out = sys.argv[1], sys.argv[2], sys.argv[3]

with zcap.open_live(iface, netns=ns, snaplen=262144, promisc=False, timeout_ms=10,
                    block_size=1 << 20, block_count=32, mode="ring") as cap:
    pkt = cap.next(timeout=5.0)
    data = memoryview(pkt)
    print(pkt.ts_ns, pkt.caplen, pkt.wirelen, pkt.ifindex, pkt.direction, pkt.vlan)
    keep = pkt
    batch = cap.next_batch(timeout=5.0)
    print(len(batch), cap.stats().delivered)

cap = zcap.open_live(iface, netns=ns, filter="tcp port 443 and not host 10.0.0.1", lock_filter=False)
cap.set_filter("udp")
prog = zcap.compile_filter("ip[2:2] > 576", linktype=1)
print(len(prog), prog.dump().splitlines()[0], prog.match(bytes(keep)))
cap.close()

with zcap.open_live(iface, netns=ns) as cap, \\
     zcap.open_writer(out, format="pcapng", linktype=cap.linktype,
                      snaplen=cap.snaplen, if_name=iface) as w:
    pkt = cap.next(timeout=5.0)
    w.write(pkt)

with zcap.open_offline(out, filter="udp") as src:
    for pkt in src:
        print(pkt.summary())
        print(type(pkt.decode()).__name__)
print("README examples OK")
'''


# Every step below has its own bound (the wheel build 900 s, the install 300 s, each
# command 120 s).  pyproject's 300 s per test is for hangs: on a loaded machine the
# build alone has taken longer, and that limit ends the whole pytest run, not this test.
@pytest.mark.timeout(1800)
def test_fresh_venv_runs_every_subcommand(testbed):
    with tempfile.TemporaryDirectory(prefix="zcap-venv-") as d:
        work = Path(d)
        venv = work / "venv"
        _run(sys.executable, "-m", "venv", str(venv))
        pip, python, zcap_cmd = venv / "bin" / "pip", venv / "bin" / "python", venv / "bin" / "zcap"
        wheel = _wheel(pip, work)
        _run(str(pip), "install", "-q", str(wheel), timeout=300)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        # only what the package declares: nothing from the test environment
        listed = _run(str(pip), "list", "--format=freeze", env=env).stdout
        names = {line.split("==")[0].lower() for line in listed.splitlines()}
        assert names - {"pip", "setuptools"} == {"zcap", "dpkt"}, names
        outside = dict(env, PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")
        cwd = str(work)                                     # not the checkout: no stray imports

        assert "usage: zcap" in _run(str(zcap_cmd), "-h", env=outside, cwd=cwd).stdout

        pcap = work / "x.pcap"
        frames = [testbed.frame(100, seq=i) for i in range(5)]
        proc = subprocess.Popen([str(zcap_cmd), "-i", testbed.b, "--netns", testbed.netns, "-c", "5",
                                 "-w", str(pcap)], stderr=subprocess.PIPE, env=outside, cwd=cwd)
        line = proc.stderr.readline()
        assert b"listening on" in line, line + proc.stderr.read()
        with testbed.sender() as s:
            s.send_all(frames)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err

        read = _run(str(zcap_cmd), "-r", str(pcap), "-n", env=outside, cwd=cwd).stdout
        assert len(read.splitlines()) == 5 and "UDP" in read

        proc = subprocess.Popen([str(zcap_cmd), "-i", testbed.b, "--netns", testbed.netns, "-c", "5",
                                 "-w", str(work / "replayed.pcap")], stderr=subprocess.PIPE,
                                env=outside, cwd=cwd)
        assert b"listening on" in proc.stderr.readline()
        _run(str(zcap_cmd), "replay", str(pcap), "-i", testbed.a, "--netns", testbed.netns,
             "--topspeed", env=outside, cwd=cwd)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err

        demo = _run(str(zcap_cmd), "demo", "-c", "200", "--show", "2", env=outside, cwd=cwd).stdout
        assert demo.strip(), demo

        script = work / "readme_examples.py"
        script.write_text(textwrap.dedent(README_EXAMPLES))
        proc = subprocess.Popen([str(python), str(script), testbed.b, testbed.netns,
                                 str(work / "out.pcapng")], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=outside, cwd=cwd, text=True)
        with testbed.sender() as s:
            for _ in range(300):                  # until the script has read what it needs
                s.send_all(frames)
                try:
                    out, err = proc.communicate(timeout=0.1)
                    break
                except subprocess.TimeoutExpired:
                    continue
            else:
                proc.kill()
                pytest.fail("the README examples did not finish")
        assert proc.returncode == 0, out + err
        assert "README examples OK" in out
