"""What `zcap` prints: a tcpdump-style line per packet (zcap.livestats has the --stats line)."""

from __future__ import annotations

import functools
import socket
import time
from typing import Any, TextIO

from zcap import decode, hexdump, verbose
from zcap import netns as _netns
from zcap._enums import LinkType
from zcap.tcpseq import RelativeSequence
from zcap.timefmt import TimestampFormatter

_NAMES = {0x0800: "IPv4", 0x0806: "ARP", 0x86DD: "IPv6", 0x8100: "802.1Q", 0x88A8: "802.1ad"}


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


class PacketPrinter:
    """Prints packets as `tcpdump -n` does: time, [interface direction,] summary."""

    def __init__(self, out: TextIO, *, nano: bool = False, link_header: bool = False,
                 any_device: bool = False, netns: Any = None, time_format: int = 0,
                 numbered: bool = False, hex_level: int = 0, ascii_hex_level: int = 0,
                 ascii_level: int = 0, absolute_seq: bool = True, verbose: int = 0) -> None:
        """time_format: tcpdump's -t count; numbered: -#; hex_level/ascii_hex_level/
        ascii_level: -x/-X/-A counts; absolute_seq=False: relative TCP numbers (no -S);
        verbose: -v count (IP header fields and checksums)."""
        self.out = out
        self.nano = nano
        self.link_header = link_header
        self.any_device = any_device
        self.netns = netns
        self._ifnames: dict[int, str] = {}
        self._time = TimestampFormatter(time_format, nano=nano)
        self.numbered = numbered
        self.packets = 0
        self._dump = dict(hex_level=hex_level, ascii_hex_level=ascii_hex_level, ascii_level=ascii_level)
        self._dumping = bool(hex_level or ascii_hex_level or ascii_level)
        self._tcp = None if absolute_seq else RelativeSequence()
        self._summarize = (decode.summarize if self._tcp is None
                           else functools.partial(self._tcp.call, decode.summarize))
        self.verbose = verbose

    def _ifname(self, index: int) -> str:
        if index not in self._ifnames:
            try:
                with _netns.entered(self.netns):
                    self._ifnames[index] = socket.if_indextoname(index)
            except OSError:
                self._ifnames[index] = f"if{index}"
        return self._ifnames[index]

    def stamp(self, ts_ns: int) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(ts_ns // 1_000_000_000))
        frac = ts_ns % 1_000_000_000
        return f"{clock}.{frac:09d}" if self.nano else f"{clock}.{frac // 1000:06d}"

    def ethernet_header(self, pkt: Any) -> str:
        head = bytes(pkt[:18])
        if pkt.linktype != LinkType.ETHERNET or len(head) < 14:
            return ""
        ethertype = int.from_bytes(head[12:14], "big")
        return (f"{_mac(head[6:12])} > {_mac(head[0:6])}, ethertype "
                f"{_NAMES.get(ethertype, 'Unknown')} (0x{ethertype:04x}), length {pkt.wirelen}: ")

    def line(self, pkt: Any) -> str:
        """The packet as tcpdump prints it: [number] [time] [interface] summary [bytes]."""
        self.packets += 1
        parts = []
        if self.any_device:
            way = "Out" if pkt.direction.name == "OUT" else "In "
            parts.append(f"{self._ifname(pkt.ifindex)} {way}")
        head = self.ethernet_header(pkt) if self.link_header else ""
        summary = self._summarize(pkt)
        if self.verbose:
            summary = verbose.annotate(summary, bytes(pkt), int(pkt.linktype), self.verbose,
                                       None if self._tcp is None else self._tcp.last_seq)
        parts.append(head + summary)
        text = self._time(pkt.ts_ns) + " ".join(parts)
        if self.numbered:
            text = f"{self.packets:5d}  " + text
        if self._dumping:
            text += hexdump.dump(bytes(pkt), int(pkt.linktype), **self._dump)
        return text

    def __call__(self, pkt: Any) -> None:
        self.out.write(self.line(pkt) + "\n")
