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
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence

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


def merge(inputs: Sequence[str], output: str, *, format: Optional[str] = None) -> MergeResult:
    """Merge the savefiles `inputs` into `output`; see the module docstring."""
    if not inputs:
        raise ValueError("merge needs at least one input file")
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
        except OSError as exc:
            raise OutputError(exc.errno, exc.strerror, output) from None
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
