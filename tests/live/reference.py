"""Reference captures with tcpdump (libpcap), run in the same namespace.

zcap's output is compared with what libpcap itself produced for the same
packets: same bytes (including synthesized cooked headers and re-inserted
VLAN tags) and, with nanosecond files, the same timestamps.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import pytest


def read_pcap(path: Path) -> tuple[int, list[tuple[int, int, bytes]]]:
    """(linktype, [(ts_ns, wirelen, data), ...]) of a classic pcap file."""
    raw = path.read_bytes()
    magic = struct.unpack_from("<I", raw)[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    magic = struct.unpack_from(endian + "I", raw)[0]
    scale = 1 if magic == 0xA1B23C4D else 1000
    linktype = struct.unpack_from(endian + "I", raw, 20)[0] & 0x0FFFFFFF
    out, off = [], 24
    while off + 16 <= len(raw):
        sec, frac, caplen, wirelen = struct.unpack_from(endian + "IIII", raw, off)
        off += 16
        out.append((sec * 10**9 + frac * scale, wirelen, raw[off:off + caplen]))
        off += caplen
    return linktype, out


class Tcpdump:
    """`tcpdump -w` in a namespace, started and ready before the test sends."""

    def __init__(self, netns: str, iface: str, count: int, *args: str) -> None:
        if shutil.which("tcpdump") is None:
            pytest.skip("tcpdump is not installed (scripts/test.sh installs it)")
        self.dir = tempfile.TemporaryDirectory(prefix="zcap-ref-")
        self.path = Path(self.dir.name) / "ref.pcap"
        self.count = count
        # -Z root: tcpdump must keep the right to write into our temp dir
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, "tcpdump", "-i", iface, "-w", str(self.path), "-U",
             "-c", str(count), "-n", "-Z", "root", "--time-stamp-precision=nano", *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        line = ""
        while "listening on" not in line:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError(f"tcpdump did not start: {line}")

    def result(self, timeout: float = 10.0) -> tuple[int, list[tuple[int, int, bytes]]]:
        """Wait for tcpdump's -c count (or stop it after `timeout`) and read its file."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(2)      # SIGINT: tcpdump flushes its file and exits
            self.proc.wait(5)
        self.proc.stderr.close()
        try:
            return read_pcap(self.path)
        finally:
            self.dir.cleanup()
