"""Install what the comparison needs, or say clearly why a peer will be missing.

    sudo python3 bench/peers/peers.py        # what bench/run_all.py does first
    python3 bench/peers/peers.py --help      # this text; installs nothing

Python packages (pcapy-ng, pypcap, scapy, matplotlib, numpy, uvloop,
pyarrow: the `bench` extra of pyproject.toml) go into the running
interpreter with pip; tcpdump,
libpcap's headers (for the C libpcap reader), gcc and perf come from apt-get
when missing.  Nothing fails here: a peer that cannot be installed is
reported, and the benchmarks skip it with the reason in their tables.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PIP_TIMEOUT = 600
APT_TIMEOUT = 900

# import name -> pip requirement: the `bench` extra of pyproject.toml
PYTHON_PEERS = {
    "pcapy": "pcapy-ng>=2.1",
    "pcap": "pypcap>=1.3",
    "scapy": "scapy>=2.5",
    "matplotlib": "matplotlib>=3.8",
    "numpy": "numpy>=1.26",
    "uvloop": "uvloop>=0.19",
    "pyarrow": "pyarrow>=16",
}
# what must exist -> Debian package
SYSTEM_PEERS = {
    "/usr/bin/tcpdump": "tcpdump",
    "/usr/include/pcap/pcap.h": "libpcap-dev",
    "gcc": "gcc",
    "perf": "linux-perf",
}


@dataclass
class Status:
    name: str
    state: str          # "present", "installed" or "missing"
    detail: str = ""

    def line(self) -> str:
        return f"{self.name}: {self.state}" + (f" ({self.detail})" if self.detail else "")


def have_module(name: str) -> bool:
    importlib.invalidate_caches()
    return importlib.util.find_spec(name) is not None


def have_file_or_command(what: str) -> bool:
    return Path(what).exists() if what.startswith("/") else shutil.which(what) is not None


def run(cmd: list[str], timeout: float) -> tuple[bool, str]:
    """(succeeded, last lines of output); a hung installer is killed."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"{' '.join(cmd[:3])} did not finish within {timeout:.0f} s"
    except OSError as exc:
        return False, str(exc)
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
    return proc.returncode == 0, " / ".join(tail)


def version(module: str) -> str:
    """The installed version of the distribution PYTHON_PEERS names for `module`."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version
    try:
        return dist_version(PYTHON_PEERS[module].split(">=")[0])
    except PackageNotFoundError:
        return getattr(importlib.import_module(module), "__version__", "?")


def tool_version(pkg: str) -> str:
    """tcpdump's and libpcap's versions (the ones the tables compare with)."""
    if pkg != "tcpdump":
        return ""
    ok, out = run(["tcpdump", "--version"], 10)
    return out if ok else ""


NOT_ASKED = "not installed, and no install asked for"


def ensure_python(install: bool = True) -> list[Status]:
    missing = [m for m in PYTHON_PEERS if not have_module(m)]
    why = NOT_ASKED
    if missing and install:
        print(f"pip install {' '.join(PYTHON_PEERS[m] for m in missing)} ...", file=sys.stderr)
        ok, detail = run([sys.executable, "-m", "pip", "install", "--quiet",
                          *(PYTHON_PEERS[m] for m in missing)], PIP_TIMEOUT)
        why = f"pip install failed: {detail}"
    statuses = []
    for module in PYTHON_PEERS:
        if not have_module(module):
            statuses.append(Status(PYTHON_PEERS[module], "missing", why))
        else:
            state = "installed with pip" if module in missing else "present"
            statuses.append(Status(PYTHON_PEERS[module], state, version(module)))
    return statuses


def ensure_system(install: bool = True) -> list[Status]:
    missing = {what: pkg for what, pkg in SYSTEM_PEERS.items() if not have_file_or_command(what)}
    why = NOT_ASKED
    if missing and install and shutil.which("apt-get"):
        print(f"apt-get install {' '.join(missing.values())} ...", file=sys.stderr)
        ok, detail = run(["apt-get", "update", "-qq"], APT_TIMEOUT)
        if ok:
            ok, detail = run(["apt-get", "install", "-y", "-qq", *missing.values()], APT_TIMEOUT)
        why = f"apt-get install failed: {detail}"
    elif missing and install:
        why = "no apt-get on this system"
    statuses = []
    for what, pkg in SYSTEM_PEERS.items():
        if not have_file_or_command(what):
            statuses.append(Status(pkg, "missing", why))
        else:
            state = "installed with apt-get" if what in missing else "present"
            statuses.append(Status(pkg, state, tool_version(pkg)))
    return statuses


def ensure_all(install: bool = True) -> list[Status]:
    """Every peer's status, after installing the missing ones if `install`."""
    statuses = ensure_python(install) + ensure_system(install)
    for s in statuses:
        print(("  " if s.state != "missing" else "  WARNING ") + s.line(), file=sys.stderr)
    return statuses


def main(argv: list[str] | None = None) -> int:
    """Parse the command line first, so `--help` (or a bad option) exits before anything is installed."""
    argparse.ArgumentParser(
        prog="peers.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exit status: 0 when every peer is present, 1 when one is missing.").parse_args(argv)
    return 0 if all(s.state != "missing" for s in ensure_all()) else 1


if __name__ == "__main__":
    sys.exit(main())
