"""The network interfaces a capture can open, and their IPv4 networks.

    zcap.interfaces.list_interfaces(netns=None)   -> [InterfaceInfo(name, ifindex, up, loopback)]
    zcap.interfaces.ipv4_network("eth0")          -> IPv4Network('192.168.1.0/24') or None

What libpcap's pcap_findalldevs() and pcap_lookupnet() answer, without
libpcap: the names come from if_nameindex(), flags and addresses from the
SIOCGIF* ioctls, all read inside network namespace `netns` when one is given
(a name in /run/netns, a path, or an open fd; None: the caller's own).
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import socket
import struct
from typing import NamedTuple, Optional

from zcap import netns as _netns
from zcap.errors import InterfaceNotFoundError

__all__ = ["InterfaceInfo", "list_interfaces", "ipv4_network"]

_SIOCGIFFLAGS = 0x8913
_SIOCGIFADDR = 0x8915
_SIOCGIFNETMASK = 0x891B
_IFF_UP = 0x1
_IFF_LOOPBACK = 0x8


class InterfaceInfo(NamedTuple):
    name: str
    ifindex: int
    up: bool
    loopback: bool


def _ifreq(name: str) -> bytes:
    return struct.pack("16s24x", name.encode()[:15])


def _flags(sock: socket.socket, name: str) -> int:
    return struct.unpack_from("H", fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, _ifreq(name)), 16)[0]


def list_interfaces(netns: _netns.NetnsSpec = None) -> list[InterfaceInfo]:
    """The interfaces of the namespace, in index order (without the "any" pseudo-device)."""
    with _netns.entered(netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        names = socket.if_nameindex()
    out = []
    with sock:
        for index, name in names:
            try:
                flags = _flags(sock, name)
            except OSError:
                continue            # removed while we were listing
            out.append(InterfaceInfo(name, index, bool(flags & _IFF_UP), bool(flags & _IFF_LOOPBACK)))
    return out


def ipv4_network(name: str, netns: _netns.NetnsSpec = None) -> Optional[ipaddress.IPv4Network]:
    """The IPv4 network of the interface's (first) address, None if it has none.

    As pcap_lookupnet(): the address masked with the netmask.  Raises
    InterfaceNotFoundError for an unknown interface.
    """
    with _netns.entered(netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    with sock:
        try:
            addr = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, _ifreq(name))[20:24]
            mask = fcntl.ioctl(sock.fileno(), _SIOCGIFNETMASK, _ifreq(name))[20:24]
        except OSError as exc:
            if exc.errno in (errno.ENODEV, errno.ENXIO):
                raise InterfaceNotFoundError(
                    f"no interface named {name!r}; check the name with `ip link`") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                return None
            raise
    prefix = bin(int.from_bytes(mask, "big")).count("1")
    return ipaddress.IPv4Network((int.from_bytes(addr, "big"), prefix), strict=False)
