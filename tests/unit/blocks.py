"""Build TPACKET_V3 block images the way the kernel lays them out."""

from __future__ import annotations

import struct
from dataclasses import dataclass

BLOCK_DESC = struct.Struct("<IIIIIIQIIII")          # version, priv, status, num, first, len, seq, ts
PKT_HDR = struct.Struct("<IIIIIIHHIIHH8x")          # tpacket3_hdr (48 bytes)
SLL = struct.Struct("<HHiHBB8s")                    # sockaddr_ll (20 bytes)
HDR_END = 48 + 20
FIRST = 48


@dataclass
class Pkt:
    data: bytes
    wirelen: int | None = None
    sec: int = 1_700_000_000
    nsec: int = 123
    status: int = 0
    vlan_tci: int = 0
    vlan_tpid: int = 0
    rxhash: int = 0
    ifindex: int = 2
    pkttype: int = 0
    protocol: int = 0x0800
    hatype: int = 1
    addr: bytes = b"\x02\0\0\0\0\1"
    mac: int | None = None            # default: where the kernel puts an Ethernet frame


def _align8(n: int) -> int:
    return (n + 7) & ~7


def make_block(pkts: list[Pkt], size: int = 4096, *, seq: int = 1, dgram: bool = False,
               reserve: int = 0) -> bytearray:
    blk = bytearray(size)
    off = FIRST
    for i, p in enumerate(pkts):
        if p.mac is not None:
            mac = p.mac
        elif dgram:
            mac = _align8(HDR_END) + 16 + reserve       # netoff for SOCK_DGRAM
        else:
            mac = _align8(HDR_END + 16) + reserve - 14  # netoff - Ethernet header
        total = _align8(mac + len(p.data))
        nxt = total if i + 1 < len(pkts) else 0
        PKT_HDR.pack_into(blk, off, nxt, p.sec, p.nsec, len(p.data),
                          p.wirelen if p.wirelen is not None else len(p.data), p.status,
                          mac, mac + (0 if dgram else 14), p.rxhash, p.vlan_tci, p.vlan_tpid, 0)
        SLL.pack_into(blk, off + 48, 17, struct.unpack("<H", struct.pack("!H", p.protocol))[0],
                      p.ifindex, p.hatype, p.pkttype, len(p.addr), p.addr)
        blk[off + mac:off + mac + len(p.data)] = p.data
        off += total
    BLOCK_DESC.pack_into(blk, 0, 3, 48, 1, len(pkts), FIRST, off, seq, 0, 0, 0, 0)
    return blk
