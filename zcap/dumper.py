"""The `-w` output of `zcap`: one savefile, or a series rotated by size (-C) or time (-G).

Rotation follows tcpdump: with -C the first file has the given name and the
next ones get a number appended (file, file1, file2, ...); with -G the name
is a strftime() pattern expanded when each file is opened (a number is
appended too if the pattern gives the same name twice).  Each file is a
complete savefile; together they hold every packet once, in order.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Optional

from zcap import savefile


class Dumper:
    def __init__(self, path: str, *, format: str, linktype: int, snaplen: int, nano: bool,
                 if_name: Optional[str], file_size: Optional[int] = None,
                 rotate_seconds: Optional[float] = None) -> None:
        self.path = path
        self.format = format
        self.linktype = linktype
        self.snaplen = snaplen
        self.nano = nano
        self.if_name = if_name
        self.file_size = file_size
        self.rotate_seconds = rotate_seconds
        self.files: list[str] = []
        self._writer: Optional[savefile.Writer] = None
        self._opened_at = 0.0
        self._sequence = 0
        self.packets = 0
        self._open_next()

    def _next_name(self) -> str:
        if self.path == "-":
            return "-"
        name = time.strftime(self.path) if self.rotate_seconds else self.path
        if self.file_size or self.rotate_seconds:
            if self._sequence and (not self.rotate_seconds or name in self.files):
                name = f"{name}{self._sequence}"
        self._sequence += 1
        return name

    def _open_next(self) -> None:
        if self._writer is not None:
            self._writer.close()
        name = self._next_name()
        target: Any = sys.stdout.buffer if name == "-" else name
        # stdout: flush every packet, so a reader on the other end of a pipe sees them
        self._writer = savefile.open_writer(
            target, format=self.format, linktype=self.linktype, snaplen=self.snaplen,
            ts_resolution="ns" if self.nano else "us", if_name=self.if_name,
            **({"flush_interval": 0} if name == "-" else {}))
        self.files.append(name)
        self._opened_at = time.monotonic()

    def due(self) -> bool:
        """Time to start the next file (-G), checked even when no packet comes."""
        return self.rotate_seconds is not None and time.monotonic() - self._opened_at >= self.rotate_seconds

    def write(self, pkt: Any) -> None:
        assert self._writer is not None
        if self.due() or (self.file_size and self._writer.bytes_written >= self.file_size
                          and self._writer.packets_written):
            self._open_next()
        self._writer.write(pkt)
        self.packets += 1

    def tick(self) -> None:
        """Called when no packet came for a while: rotate (-G) or flush."""
        if self.due():
            self._open_next()
        elif self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
