"""Packet bytes as tcpdump prints them with -x, -xx, -X, -XX, -A and -AA.

The formats are tcpdump's (print-ascii.c), byte for byte: lines of 16 bytes
as 8 groups of 4 hex digits behind "\\n\\t0xOOOO: ", -X adds the bytes as
ASCII (printable, non-space characters; others as '.'), and -A prints the
bytes as text (tabs, spaces and newlines kept, a CR before a newline or at
the end dropped, other unprintable bytes as '.').  A single -x/-X/-A leaves
out the link-layer header, whose length `link_header_length()` computes as
tcpdump's link printers do.
"""

from __future__ import annotations

from zcap._enums import LinkType

__all__ = ["hex_lines", "hex_ascii_lines", "ascii_text", "link_header_length", "dump"]

_VLAN_TPIDS = (0x8100, 0x88A8, 0x9100, 0x9200)
_FIXED = {int(LinkType.LINUX_SLL): 16, int(LinkType.LINUX_SLL2): 20, int(LinkType.RAW): 0,
          0: 4, 108: 4, 12: 0, 14: 0, 228: 0, 229: 0}   # 0, 108: BSD loopback


def link_header_length(data: bytes, linktype: int) -> int:
    """How many leading bytes tcpdump's link-layer printer consumes (tags included)."""
    if linktype == LinkType.ETHERNET:
        if len(data) < 14:
            return len(data)
        length = 14
        ethertype = int.from_bytes(data[12:14], "big")
        while ethertype in _VLAN_TPIDS and len(data) >= length + 4:
            ethertype = int.from_bytes(data[length + 2:length + 4], "big")
            length += 4
        return length
    return min(_FIXED.get(int(linktype), 0), len(data))


def _graph(b: int) -> str:
    return chr(b) if 0x21 <= b <= 0x7E else "."


def hex_lines(data: bytes, indent: str = "\n\t") -> str:
    """-x: hex only (hex_print_with_offset)."""
    out = []
    for offset in range(0, len(data), 16):
        chunk = data[offset:offset + 16]
        groups = " ".join(chunk[i:i + 2].hex() for i in range(0, len(chunk), 2))
        out.append(f"{indent}0x{offset:04x}:  {groups}")
    return "".join(out)


def hex_ascii_lines(data: bytes, indent: str = "\n\t") -> str:
    """-X: hex and ASCII (hex_and_ascii_print_with_offset)."""
    out = []
    for offset in range(0, len(data), 16):
        chunk = data[offset:offset + 16]
        groups = "".join(" " + chunk[i:i + 2].hex() for i in range(0, len(chunk), 2))
        text = "".join(_graph(b) for b in chunk)
        out.append(f"{indent}0x{offset:04x}: {groups:<40}  {text}")
    return "".join(out)


def ascii_text(data: bytes) -> str:
    """-A: the bytes as text (ascii_print)."""
    out = ["\n"]
    n = len(data)
    for i, b in enumerate(data):
        left = n - i - 1
        if b == 0x0D:
            if left > 1 and data[i + 1] != 0x0A:
                out.append(".")
        elif 0x21 <= b <= 0x7E or b in (0x09, 0x20, 0x0A):
            out.append(chr(b))
        else:
            out.append(".")
    return "".join(out)


def dump(data: bytes, linktype: int, *, hex_level: int = 0, ascii_hex_level: int = 0,
         ascii_level: int = 0) -> str:
    """What tcpdump prints after a packet's line for -x/-X/-A counts (-X wins over -x over -A)."""
    level = ascii_hex_level or hex_level or ascii_level
    if not level:
        return ""
    if level < 2:
        skip = link_header_length(data, linktype)
        if len(data) <= skip:
            return ""
        data = data[skip:]
    if ascii_hex_level:
        return hex_ascii_lines(data)
    if hex_level:
        return hex_lines(data)
    return ascii_text(data)
