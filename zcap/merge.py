"""`zcap merge -w OUT IN...`: merge savefiles into one, by timestamp.

Made for the files `zcap --workers N -w 'cap-{worker}.pcap'` writes (one per
worker), and for any pcap/pcapng files.  Like mergecap, each input is read
in its own order and the inputs are interleaved by timestamp (ties keep the
inputs' order), so inputs that are each in timestamp order give an output in
timestamp order; every packet of every input is written, with its bytes,
wire length and timestamp at the finest resolution any input has.

Output: pcap when every packet has the same link type, pcapng otherwise
(one interface per input interface), or as chosen with format=.
"""

from __future__ import annotations

import heapq
import os
from dataclasses import dataclass
from typing import Any, BinaryIO, Iterator, Optional, Sequence, Union

from zcap import savefile
from zcap.offline import open_offline

__all__ = ["merge", "MergeResult", "OutputError"]


class OutputError(OSError):
    """The merged file could not be created or written."""


@dataclass(frozen=True)
class MergeResult:
    packets: int                 #: packets written
    inputs: int                  #: files read
    out_of_order: int            #: packets older than the one written before them


def _packets(index: int, src: Any) -> Iterator[tuple[int, int, int, bytes, int, int]]:
    for n, pkt in enumerate(src):
        yield pkt.ts_ns, index, n, bytes(pkt), pkt.wirelen, int(pkt.linktype or src.linktype or 1)


def _refuse_writing_over_an_input(inputs: Sequence[str], output: str) -> None:
    """Opening the output truncates it: if it is an input (by any name: a
    link, the same path spelled otherwise), that input's packets would be
    lost while they are read."""
    if not os.path.exists(output):
        return
    for path in inputs:
        if os.path.exists(path) and os.path.samefile(path, output):
            raise ValueError(f"the output {output} is the input {path}: writing it would "
                             f"destroy that input; write the merge to another file")


def merge(inputs: Sequence[str], output: Union[str, BinaryIO], *,
          format: Optional[str] = None) -> MergeResult:
    """Merge the savefiles `inputs` into `output` (a path, never one of the
    inputs, or a binary file object such as sys.stdout.buffer, flushed and
    left open); see the module docstring."""
    if not inputs:
        raise ValueError("merge needs at least one input file")
    if isinstance(output, str):
        _refuse_writing_over_an_input(inputs, output)
    sources = [open_offline(path) for path in inputs]
    try:
        linktypes: list[int] = []
        snaplen = 0
        nano = False
        for src in sources:
            for iface in src.interfaces:
                if iface.linktype not in linktypes:
                    linktypes.append(iface.linktype)
                snaplen = max(snaplen, iface.snaplen or savefile.MAX_SNAPLEN)
                nano = nano or iface.ts_resolution > 10**6
        if not linktypes:                      # only empty files
            linktypes = [sources[0].linktype or 1]
        if format is None:
            format = "pcap" if len(linktypes) == 1 else "pcapng"
        if format == "pcap" and len(linktypes) > 1:
            raise ValueError(f"the inputs have link types {', '.join(map(str, linktypes))}: a pcap "
                             f"file holds one; write pcapng (--format pcapng)")
        try:
            writer = savefile.open_writer(output, format=format, linktype=linktypes[0],
                                          snaplen=min(snaplen or savefile.MAX_SNAPLEN,
                                                      savefile.MAX_SNAPLEN),
                                          ts_resolution="ns" if nano else "us")
        except savefile.SavefileWriteError:
            raise                              # it names the file and what it holds
        except OSError as exc:
            raise OutputError(exc.errno, exc.strerror, getattr(output, "name", output)) from None
        try:
            slots = {linktypes[0]: 0}
            for lt in linktypes[1:]:
                assert isinstance(writer, savefile.PcapngWriter)
                slots[lt] = writer.add_interface(None, lt, savefile.MAX_SNAPLEN)
            written = disorder = 0
            last = None
            for ts, _, _, data, wirelen, lt in heapq.merge(
                    *(_packets(i, src) for i, src in enumerate(sources))):
                if last is not None and ts < last:
                    disorder += 1
                last = ts
                writer.write_raw(data, ts, wirelen, slots.get(lt, 0))
                written += 1
        finally:
            writer.close()
        return MergeResult(written, len(sources), disorder)
    finally:
        for src in sources:
            src.close()
