"""The `-w` output of `zcap`: one savefile, or a series rotated by size (-C) or time (-G).

Rotation follows tcpdump: with -C the first file has the given name and the
next ones get a number appended (file, file1, file2, ...); with -G the name
is a strftime() pattern expanded when each file is opened (a number is
appended too if the pattern gives the same name twice).  Each file is a
complete savefile; together they hold every packet once, in order.

With -W N and -C the files form a ring, as tcpdump's: file0 .. file{N-1}
(numbers padded to the width of N-1), then file0 again, overwritten.  With
-W N and -G alone, the capture ends after N files (`finished`).  -z runs
`COMMAND FILE` (no shell) on each file once rotation closes it.

pcapng files carry the capture's metadata (see zcap.savefile): the filter,
an optional comment, one interface block per interface a packet came from
when capturing on "any", and an Interface Statistics Block at the close of
each file with the kernel's counts so far (`stats`).

Reading a file (-r) into pcapng, each interface of the input (an interface
id and its link type) gets its own interface block, so a multi-link-type
pcapng stays one; a pcap output holds one link type and a packet of another
raises LinkTypeMismatch.  A failed write (a full disk) raises
SavefileWriteError counting every packet in the files written so far.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from typing import Any, Callable, Optional

from zcap import savefile
from zcap.errors import SavefileWriteError


class LinkTypeMismatch(ValueError):
    """A packet whose link type the pcap output cannot hold."""

    def __init__(self, linktypes: list[int]) -> None:
        super().__init__(f"packets of link types {linktypes} cannot share one pcap file")
        self.linktypes = linktypes

    def __reduce__(self) -> tuple:
        return type(self), (self.linktypes,)


class Dumper:
    def __init__(self, path: str, *, format: str, linktype: int, snaplen: int, nano: bool,
                 if_name: Optional[str], file_size: Optional[int] = None,
                 rotate_seconds: Optional[float] = None, packet_buffered: bool = False,
                 file_count: Optional[int] = None, postrotate_command: Optional[str] = None,
                 append: bool = False, comment: Optional[str] = None,
                 filter_text: Optional[str] = None, stats: Optional[Callable[[], Any]] = None,
                 per_interface: bool = False, netns: Any = None,
                 interfaces: Optional[list[Any]] = None) -> None:
        self.path = path
        self.format = format
        self.linktype = linktype
        self.snaplen = snaplen
        self.nano = nano
        self.if_name = if_name
        self.file_size = file_size
        self.rotate_seconds = rotate_seconds
        self.packet_buffered = packet_buffered
        self.file_count = file_count
        self.postrotate_command = postrotate_command
        self.append = append
        self.comment = comment
        self.filter_text = filter_text
        self.stats = stats
        self.per_interface = per_interface and format == "pcapng"
        self.netns = netns
        self.started_ns = time.time_ns()
        self.finished = False           # -W with -G alone: the last file was closed
        self._children: list[subprocess.Popen] = []
        self._ifids: dict[int, int] = {}
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
        if self.file_count and self.file_size:
            # a ring of file_count files, as tcpdump's -W with -C
            width = len(str(self.file_count - 1)) if self.file_count > 1 else 0
            number = self._sequence % self.file_count
            self._sequence += 1
            return f"{name}{number:0{width}d}" if width else name
        if self.file_size or self.rotate_seconds:
            if self._sequence and (not self.rotate_seconds or name in self.files):
                name = f"{name}{self._sequence}"
        self._sequence += 1
        return name

    def _close_current(self, rotating: bool) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            if self.stats is not None and self.format == "pcapng":
                s = self.stats()
                writer.write_statistics(0, start_ns=self.started_ns, received=s.received,  # type: ignore[attr-defined]
                                        dropped=s.dropped, delivered=self.packets)
        finally:
            writer.close()
        self._earlier += writer.packets_written
        if rotating and self.postrotate_command and self.files[-1] != "-":
            try:
                self._children.append(subprocess.Popen([self.postrotate_command, self.files[-1]]))
            except OSError as exc:
                sys.stderr.write(f"zcap: -z {self.postrotate_command}: {exc.strerror or exc}\n")

    def _open_next(self) -> None:
        if self._writer is not None:
            self._close_current(rotating=True)
            if self.file_count and not self.file_size and len(self.files) >= self.file_count:
                self.finished = True        # -W N -G T: N files made, as tcpdump: stop
                return
        name = self._next_name()
        target: Any = sys.stdout.buffer if name == "-" else name
        self._ifids = {}
        self._map = {}
        description = "Pseudo-device that captures on all interfaces" if self.if_name == "any" else None
        # stdout: flush every packet, so a reader on the other end of a pipe sees them
        self._writer = savefile.open_writer(
            target, format=self.format, linktype=self.linktype, snaplen=self.snaplen,
            ts_resolution="ns" if self.nano else "us", if_name=self.if_name,
            append=self.append and name != "-",
            **({"if_description": description, "if_filter": self.filter_text,
                "comment": self.comment} if self.format == "pcapng" else {}),
            **({"flush_interval": 0} if name == "-" or self.packet_buffered else {}))
        self.files.append(name)
        self._opened_at = time.monotonic()

    def _interface_of(self, pkt: Any) -> int:
        """pcapng on "any": the file's interface block for the packet's interface (added once)."""
        index = pkt.ifindex
        ifid = self._ifids.get(index)
        if ifid is None:
            from zcap import netns as _netns
            try:
                with _netns.entered(self.netns):
                    name = socket.if_indextoname(index)
            except OSError:
                name = f"if{index}"
            ifid = self._writer.add_interface(name, self.linktype, self.snaplen,  # type: ignore[union-attr]
                                              filter=self.filter_text)
            self._ifids[index] = ifid
        return ifid

    def due(self) -> bool:
        """Time to start the next file (-G), checked even when no packet comes."""
        return self.rotate_seconds is not None and time.monotonic() - self._opened_at >= self.rotate_seconds

    def write(self, pkt: Any) -> None:
        if self.finished:
            return
        assert self._writer is not None
        try:
            if self.due() or (self.file_size and self._writer.bytes_written >= self.file_size
                              and self._writer.packets_written):
                self._open_next()
                if self.finished:
                    return
            if self._inputs is not None:
                self._writer.write(pkt, self._interface_for(pkt))
            elif self.per_interface and pkt.ifindex > 0:
                self._writer.write(pkt, self._interface_of(pkt))
            else:
                self._writer.write(pkt)
        except SavefileWriteError as exc:
            raise self._counted(exc) from None
        self.packets += 1

    def _interface_for(self, pkt: Any) -> int:
        """Reading a file: the output interface for the input's (interface id, link type)."""
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
        if self.finished:
            return
        try:
            if self.due():
                self._open_next()
            elif self._writer is not None:
                self._writer.flush()
        except SavefileWriteError as exc:
            raise self._counted(exc) from None

    def close(self) -> None:
        try:
            self._close_current(rotating=False)
        except SavefileWriteError as exc:
            raise self._counted(exc) from None
        for child in self._children:        # -z commands: reap those already done
            child.poll()
