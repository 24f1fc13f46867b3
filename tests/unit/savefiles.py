"""Build pcap and pcapng files byte by byte, in either byte order, for reader tests.

Independent of zcap.savefile on purpose: the readers are checked against
files assembled here from the format specifications, not only against
zcap's own writer.  Also: where the shared capture collection lives.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Iterable, Optional

REPO = Path(__file__).resolve().parents[2]
SHARED_CAPTURES = REPO.parent / "shared" / "captures"
SHARED_MISSING = f"the shared capture collection is not at {SHARED_CAPTURES} (CI has it at ../shared)"


def pcap(packets: Iterable[tuple[int, int, bytes]], *, order: str = "<", nano: bool = True,
         linktype: int = 1, snaplen: int = 65535, version: tuple[int, int] = (2, 4),
         modified: bool = False) -> bytes:
    """A classic pcap file of (ts_ns, wirelen, data) records."""
    magic = 0xA1B2CD34 if modified else 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, *version, 0, 0, snaplen, linktype)]
    for ts_ns, wirelen, data in packets:
        sec, ns = divmod(ts_ns, 10**9)
        out.append(struct.pack(order + "IIII", sec, ns if nano else ns // 1000, len(data), wirelen))
        if modified:
            out.append(struct.pack(order + "IHBB", 0, 0x0800, 0, 0))
        out.append(data)
    return b"".join(out)


def pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) & 3)


def option(order: str, code: int, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + pad4(value)


def options(order: str, *opts: tuple[int, bytes]) -> bytes:
    if not opts:
        return b""
    return b"".join(option(order, c, v) for c, v in opts) + option(order, 0, b"")


def block(order: str, block_type: int, body: bytes, *, total: Optional[int] = None,
          trailer: Optional[int] = None) -> bytes:
    body = pad4(body)
    n = 12 + len(body)
    return (struct.pack(order + "II", block_type, n if total is None else total) + body
            + struct.pack(order + "I", n if trailer is None else trailer))


def shb(order: str = "<", version: tuple[int, int] = (1, 0), opts: bytes = b"") -> bytes:
    return block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, *version, -1) + opts)


def idb(order: str = "<", linktype: int = 1, snaplen: int = 0, *, name: Optional[str] = None,
        tsresol: Optional[int] = None, tsoffset: Optional[int] = None) -> bytes:
    opts = []
    if name is not None:
        opts.append((2, name.encode()))
    if tsresol is not None:
        opts.append((9, bytes([tsresol])))
    if tsoffset is not None:
        opts.append((14, struct.pack(order + "q", tsoffset)))
    return block(order, 1, struct.pack(order + "HHI", linktype, 0, snaplen) + options(order, *opts))


def epb(order: str, ifid: int, ts: int, data: bytes, wirelen: Optional[int] = None, *,
        caplen: Optional[int] = None, opts: bytes = b"") -> bytes:
    head = struct.pack(order + "IIIII", ifid, ts >> 32, ts & 0xFFFFFFFF,
                       len(data) if caplen is None else caplen,
                       len(data) if wirelen is None else wirelen)
    return block(order, 6, head + pad4(data) + opts)


def spb(order: str, data: bytes, wirelen: Optional[int] = None) -> bytes:
    return block(order, 3, struct.pack(order + "I", len(data) if wirelen is None else wirelen) + data)


def pb(order: str, ifid: int, ts: int, data: bytes, wirelen: Optional[int] = None) -> bytes:
    head = struct.pack(order + "HHIIII", ifid, 0, ts >> 32, ts & 0xFFFFFFFF, len(data),
                       len(data) if wirelen is None else wirelen)
    return block(order, 2, head + data)


class Trickle(io.RawIOBase):
    """A pipe-like file: readinto() gives at most `step` bytes and cannot seek."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.pos, self.step = data, 0, step

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(self.step, len(b), len(self.data) - self.pos)
        b[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


def frame(i: int, size: int = 60) -> bytes:
    """An Ethernet-looking frame whose bytes depend on i."""
    return bytes((i * 31 + k * 7) & 0xFF for k in range(size))


# -- what tshark and tcpdump make of a file ------------------------------------

BENIGN_STDERR = ('Running as user "root" and group "root". This could be dangerous.',
                 "reading from file ")


def unexpected_stderr(stderr: str) -> list[str]:
    """Lines of a tool's stderr other than its usual notices (root warning, 'reading from file')."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith(BENIGN_STDERR)]


def epoch_ns(text: str) -> int:
    """tshark's frame.time_epoch ("1340954905.298858000") as integer nanoseconds, no float."""
    sign = -1 if text.startswith("-") else 1
    sec, _, frac = text.lstrip("-").partition(".")
    return sign * (int(sec) * 10**9 + int((frac + "000000000")[:9]))


def tshark_packets(path: Path) -> list[tuple[Optional[int], int, int, int, bytes]]:
    """(ts_ns or None, wirelen, caplen, interface id, bytes) of each packet tshark reads.

    Records that are not packets (pcapng custom blocks tshark shows as frames)
    are left out.  Fails if tshark reports a problem.
    """
    import json
    import subprocess
    out = subprocess.run(["tshark", "-r", str(path), "-T", "json", "-x", "-j", "frame"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and not unexpected_stderr(out.stderr), out.stderr
    rows = []
    for entry in json.loads(out.stdout or "[]"):
        layers = entry["_source"]["layers"]
        fr = layers["frame"]
        if "frame.encap_type" not in fr:
            continue
        stamp = fr.get("frame.time_epoch")
        rows.append((epoch_ns(stamp) if stamp is not None else None, int(fr["frame.len"]),
                     int(fr["frame.cap_len"]), int(fr.get("frame.interface_id", 0)),
                     bytes.fromhex(layers["frame_raw"][0])))
    return rows


def tcpdump_summaries(path: Path, *args: str) -> list[str]:
    """`tcpdump -n -S -r path` lines without their timestamp (fails if tcpdump complains)."""
    import subprocess
    out = subprocess.run(["tcpdump", "-n", "-S", "-tt", "-r", str(path), *args], capture_output=True,
                         text=True, timeout=60)
    # a Linux cooked v2 file names interfaces by index, which tcpdump resolves on this host
    complaints = [line for line in unexpected_stderr(out.stderr)
                  if line != "Warning: interface names might be incorrect"]
    assert out.returncode == 0 and not complaints, out.stderr
    return [line.split(" ", 1)[1] for line in out.stdout.splitlines() if line[:1].isdigit()]


def like_tcpdump(ours: str, theirs: str) -> bool:
    """Whether zcap's summary says what tcpdump's line says, field for field.

    tcpdump may go further (an application protocol after the transport
    header); zcap adds what tcpdump shows only with -e (802.1Q tags); a Linux
    cooked v2 line opens with an interface name tcpdump cannot know in a file.
    """
    ours, theirs = " ".join(ours.split()), " ".join(theirs.split())
    while ours.startswith(("802.1Q vlan ", "802.1ad vlan ")):
        ours = ours.split(", ", 2)[2]
    candidates = [theirs, theirs.split(" ", 1)[-1]]           # without a cooked v2 interface name
    for line in candidates:
        if line == ours or line.startswith(ours + ":"):
            return True
        head, _, rest = ours.partition(": ")
        if rest.startswith("UDP, length") and line.startswith(head + ": "):
            return True                                        # tcpdump decoded the application
    return False
