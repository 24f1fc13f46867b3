"""Small enumerations shared by the ring and the Python layer."""

from __future__ import annotations

import enum


class Direction(enum.IntEnum):
    """Whether this host received or sent the packet."""

    IN = 0
    OUT = 1


class PacketType(enum.IntEnum):
    """sockaddr_ll.sll_pkttype: how the kernel classified the packet."""

    HOST = 0
    BROADCAST = 1
    MULTICAST = 2
    OTHERHOST = 3
    OUTGOING = 4
    LOOPBACK = 5
    USER = 6
    KERNEL = 7


class LinkType(enum.IntEnum):
    """pcap LINKTYPE_* values of the link-layer headers zcap delivers."""

    ETHERNET = 1
    RAW = 101
    LINUX_SLL = 113
    LINUX_SLL2 = 276
