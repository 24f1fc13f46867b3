"""The `-w` output of `zcap`: one savefile, or a series rotated by size (-C) or time (-G).

Rotation follows tcpdump: with -C the first file has the given name and the
next ones get a number appended (file, file1, file2, ...); with -G the name
is a strftime() pattern expanded when each file is opened (a number is
appended too if the pattern gives the same name twice).  Each file is a
complete savefile; together they hold every packet once, in order.

Reading a file (-r) into pcapng, each interface of the input (an interface
id and its link type) gets its own interface block, so a multi-link-type
pcapng stays one; a pcap output holds one link type and a packet of another
raises LinkTypeMismatch.  A failed write (a full disk) raises
SavefileWriteError counting every packet in the files written so far.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Optional

from zcap import savefile
from zcap.errors import SavefileWriteError


class LinkTypeMismatch(ValueError):
    """A packet whose link type the pcap output cannot hold."""

    def __init__(self, linktypes: list[int]) -> None:
        super().__init__(f"packets of link types {linktypes} cannot share one pcap file")
        self.linktypes = linktypes


class Dumper:
    def __init__(self, path: str, *, format: str, linktype: int, snaplen: int, nano: bool,
                 if_name: Optional[str], file_size: Optional[int] = None,
                 rotate_seconds: Optional[float] = None,
                 interfaces: Optional[list[Any]] = None) -> None:
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
        self._earlier = 0               # packets in the files already closed
        # reading a file: the input's interfaces, and (if id, linktype) -> output interface
        self._inputs = interfaces
        self._map: dict[tuple[int, int], int] = {}
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
            self._earlier += self._writer.packets_written
        self._map = {}
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
        try:
            if self.due() or (self.file_size and self._writer.bytes_written >= self.file_size
                              and self._writer.packets_written):
                self._open_next()
            interface = 0
            if self._inputs is not None:
                interface = self._interface_for(pkt)
            self._writer.write(pkt, interface)
        except SavefileWriteError as exc:
            raise self._counted(exc) from None
        self.packets += 1

    def _interface_for(self, pkt: Any) -> int:
        key = (pkt.ifindex, int(pkt.linktype))
        found = self._map.get(key)
        if found is not None:
            return found
        writer = self._writer
        assert writer is not None
        if key[1] != self.linktype and self.format == "pcap":
            raise LinkTypeMismatch(sorted({self.linktype, key[1]}))
        if not self._map and key[1] == self.linktype or self.format == "pcap":
            found = 0
        else:
            inputs = self._inputs or []
            name = inputs[key[0]].name if key[0] < len(inputs) else None
            found = writer.add_interface(name, key[1], self.snaplen)  # type: ignore[attr-defined]
        self._map[key] = found
        return found

    def _counted(self, exc: SavefileWriteError) -> SavefileWriteError:
        """The error with packets_written counting every file of the series."""
        exc.packets_written += self._earlier
        return exc

    def tick(self) -> None:
        """Called when no packet came for a while: rotate (-G) or flush."""
        try:
            if self.due():
                self._open_next()
            elif self._writer is not None:
                self._writer.flush()
        except SavefileWriteError as exc:
            raise self._counted(exc) from None

    def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except SavefileWriteError as exc:
                raise self._counted(exc) from None
