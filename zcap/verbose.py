"""What tcpdump -v and -vv add to an IP packet's line.

    IP (tos 0x0, ttl 64, id 1, offset 0, flags [DF], proto TCP (6), length 60)
        10.0.0.1.40000 > 10.0.0.2.80: Flags [S], cksum 0x1c46 (correct), seq ...
    IP6 (flowlabel 0x12345, hlim 64, next-header UDP (17) payload length: 20) ...

The IPv4 header's fields (and a bad header checksum), the IPv6 header's,
TCP's checksum (-v), UDP's (-vv over IPv4, -v over IPv6), in tcpdump's words
(print-ip.c, print-ip6.c, print-tcp.c, print-udp.c).  IPv4 options are not
listed, and what tcpdump's application printers add (DNS, HTTP, ...) is not.  `annotate()` takes
the one-line summary zcap.decode made and the packet bytes, and returns the
line tcpdump -v prints; anything it does not recognise is left as it was.
"""

from __future__ import annotations

import re
import struct
from typing import Optional

from zcap.hexdump import link_header_length

__all__ = ["annotate"]

PROTOCOL_NAMES = {0: "HBH", 1: "ICMP", 2: "IGMP", 4: "IPIP", 6: "TCP", 8: "EGP", 17: "UDP",
                  33: "DCCP", 41: "IPv6", 43: "Routing", 44: "frag", 46: "RSVP", 47: "GRE",
                  50: "ESP", 51: "AH", 58: "ICMPv6", 59: "NONE", 60: "DSTOPTS", 89: "OSPF",
                  103: "PIM", 112: "VRRP", 115: "L2TP", 132: "SCTP", 136: "UDPLite"}
_ETHERTYPES = {0x0800: 4, 0x86DD: 6}
_VLAN_TPIDS = (0x8100, 0x88A8, 0x9100, 0x9200)


def _checksum(data: bytes) -> int:
    """The Internet checksum's ones-complement sum, folded (0 = the data checks out)."""
    if len(data) & 1:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _should_be(stored: int, sum_: int) -> int:
    """tcpdump's in_cksum_shouldbe(): the value the checksum field should hold."""
    value = stored + sum_
    value = (value & 0xFFFF) + (value >> 16)
    return ((value & 0xFFFF) + (value >> 16)) & 0xFFFF


def _network(data: bytes, linktype: int) -> tuple[int, int]:
    """(IP version, offset of the IP header) in the packet, or (0, 0)."""
    if linktype in (101, 12, 14):
        version = data[0] >> 4 if data else 0
        return (version, 0) if version in (4, 6) else (0, 0)
    if linktype == 228:
        return 4, 0
    if linktype == 229:
        return 6, 0
    if linktype == 1:
        if len(data) < 14:
            return 0, 0
        ethertype, at = int.from_bytes(data[12:14], "big"), 14
        while ethertype in _VLAN_TPIDS and len(data) >= at + 4:
            ethertype, at = int.from_bytes(data[at + 2:at + 4], "big"), at + 4
        return _ETHERTYPES.get(ethertype, 0), at
    if linktype in (113, 276):
        at = link_header_length(data, linktype)
        field = data[14:16] if linktype == 113 else data[0:2]
        return _ETHERTYPES.get(int.from_bytes(field, "big"), 0), at
    return 0, 0


def _transport_sum(src: bytes, dst: bytes, proto: int, segment: bytes) -> int:
    pseudo = src + dst + struct.pack("!BBH", 0, proto, len(segment)) if len(src) == 4 else \
        src + dst + struct.pack("!IxxxB", len(segment), proto)
    return _checksum(pseudo + segment)


def annotate(summary: str, data: bytes, linktype: int, level: int,
             tcp_seq: Optional[int] = None) -> str:
    """The summary line with what tcpdump -v (level 1) or -vv (2) adds.

    tcp_seq: the TCP sequence number the summary would show (relative), for
    -vv, which shows it on every segment; None: the one in the header."""
    version, at = _network(data, linktype)
    if version == 4 and len(data) >= at + 20:
        return _ipv4(summary, data, at, level, tcp_seq)
    if version == 6 and len(data) >= at + 40:
        return _ipv6(summary, data, at, level, tcp_seq)
    return summary


def _ipv4(summary: str, data: bytes, at: int, level: int, tcp_seq: Optional[int]) -> str:
    m = re.search(r"(^|, )IP ", summary)
    if m is None:
        return summary
    vhl, tos, total, ident, off, ttl, proto, stored = struct.unpack_from("!BBHHHBBH", data, at)
    hlen = (vhl & 0xF) * 4
    ecn = {1: ",ECT(1)", 2: ",ECT(0)", 3: ",CE"}.get(tos & 3, "")
    flags = ", ".join(name for bit, name in ((0x2000, "+"), (0x4000, "DF"), (0x8000, "rsvd"))
                      if off & bit) or "none"
    text = f"(tos 0x{tos:x}{ecn}"
    if ttl >= 1:
        text += f", ttl {ttl}"
    text += (f", id {ident}, offset {(off & 0x1FFF) * 8}, flags [{flags}], "
             f"proto {PROTOCOL_NAMES.get(proto, 'unknown')} ({proto}), length {total}")
    if hlen >= 20 and len(data) >= at + hlen:
        sum_ = _checksum(data[at:at + hlen])
        if sum_ != 0:
            text += f", bad cksum {stored:x} (->{_should_be(stored, sum_):x})!"
    text += ")\n    "
    head, rest = summary[:m.end()], summary[m.end():]
    fragmented = bool(off & 0x3FFF)
    segment = data[at + hlen:at + total] if total >= hlen else b""
    if not fragmented and len(data) >= at + total:
        rest = _transport(rest, proto, data[at + 12:at + 16], data[at + 16:at + 20], segment, level, 4,
                          tcp_seq)
    return head + text + rest


def _ipv6(summary: str, data: bytes, at: int, level: int, tcp_seq: Optional[int]) -> str:
    m = re.search(r"(^|, )IP6 ", summary)
    if m is None:
        return summary
    first, plen, nxt, hlim = struct.unpack_from("!IHBB", data, at)
    text = "("
    if first & 0x0FF00000:
        text += f"class 0x{(first & 0x0FF00000) >> 20:02x}, "
    if first & 0x000FFFFF:
        text += f"flowlabel 0x{first & 0x000FFFFF:05x}, "
    text += f"hlim {hlim}, next-header {PROTOCOL_NAMES.get(nxt, 'unknown')} ({nxt}) payload length: {plen}) "
    head, rest = summary[:m.end()], summary[m.end():]
    segment = data[at + 40:at + 40 + plen]
    if len(segment) == plen:
        rest = _transport(rest, nxt, data[at + 8:at + 24], data[at + 24:at + 40], segment, level, 6,
                          tcp_seq)
    return head + text + rest


def _transport(rest: str, proto: int, src: bytes, dst: bytes, segment: bytes, level: int,
               version: int, tcp_seq: Optional[int]) -> str:
    if proto == 6 and len(segment) >= 20:
        stored = struct.unpack_from("!H", segment, 16)[0]
        sum_ = _transport_sum(src, dst, proto, segment)
        note = f", cksum 0x{stored:04x} " + ("(correct)" if sum_ == 0 else
                                             f"(incorrect -> 0x{_should_be(stored, sum_):04x})")
        if level > 1 and ", seq " not in rest:      # -vv: the sequence number of every segment
            seq = tcp_seq if tcp_seq is not None else struct.unpack_from("!I", segment, 4)[0]
            note += f", seq {seq}"
        return re.sub(r"(: Flags \[[^\]]*\])", lambda m: m.group(1) + note, rest, count=1)
    if proto == 17 and len(segment) >= 8 and (version == 6 or level > 1):
        ulen, stored = struct.unpack_from("!HH", segment, 4)
        if 8 <= ulen <= len(segment):
            segment = segment[:ulen]                # tcpdump sums the UDP length's bytes
        if stored == 0 and version == 4:
            note = "[no cksum] "
        else:
            sum_ = _transport_sum(src, dst, proto, segment)
            note = "[udp sum ok] " if sum_ == 0 else \
                f"[bad udp cksum 0x{stored:04x} -> 0x{_should_be(stored, sum_):04x}!] "
        return re.sub(r"(: )(UDP, )", lambda m: m.group(1) + note + m.group(2), rest, count=1)
    return rest
