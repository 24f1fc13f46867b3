"""Linux numbers and interface look-ups the Python modules share (one home for them).

The ioctl requests, flags and ARPHRD hardware types of <linux/sockios.h>,
<linux/if.h> and <linux/if_arp.h>; resolving an interface name through a packet
socket (so in that socket's network namespace); the memory the kernel says is
available.  The Cython modules take the same numbers from zcap/includes/.
"""

from __future__ import annotations

import errno
import fcntl
import socket
import struct
from dataclasses import dataclass
from typing import Optional

from zcap import errors
from zcap import netns as _netns

__all__ = ["SIOCGIFFLAGS", "SIOCGIFMTU", "SIOCGIFHWADDR", "SIOCGIFINDEX", "IFF_UP",
           "ARPHRD_ETHER", "ARPHRD_LOOPBACK", "ARPHRD_NONE", "ARPHRD_RAWIP",
           "InterfaceInfo", "lookup_interface", "interface_names", "ifreq", "ioctl_int",
           "mem_available"]

SIOCGIFFLAGS = 0x8913
SIOCGIFMTU = 0x8921
SIOCGIFHWADDR = 0x8927
SIOCGIFINDEX = 0x8933
IFF_UP = 0x1
ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772
ARPHRD_RAWIP = 519
ARPHRD_NONE = 0xFFFE


def mem_available() -> Optional[int]:
    """/proc/meminfo's MemAvailable in bytes, or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def ifreq(name: str, tail: bytes = b"") -> bytes:
    """A struct ifreq for `name` (16-byte name, 24-byte union)."""
    return struct.pack("16s", name.encode()[:15]) + tail.ljust(24, b"\0")


def ioctl_int(fd: int, request: int, name: str, fmt: str = "i") -> int:
    """An SIOCGIF* ioctl on `fd` for interface `name`; the union's first field as `fmt`."""
    out = fcntl.ioctl(fd, request, ifreq(name))
    return struct.unpack_from(fmt, out, 16)[0]


@dataclass(frozen=True)
class InterfaceInfo:
    """What open_live() and open_inject() need to know of an interface."""

    name: str
    index: int
    flags: int
    mtu: int
    hatype: int


def interface_names(spec: _netns.NetnsSpec) -> list[str]:
    """The interface names in network namespace `spec` (None: the current one)."""
    with _netns.entered(spec):
        return [name for _, name in socket.if_nameindex()]


def lookup_interface(fd: int, name: str, spec: _netns.NetnsSpec) -> InterfaceInfo:
    """Resolve an interface through the socket itself, i.e. in its own namespace."""
    if len(name.encode()) > 15 or not name or "/" in name:
        raise errors.InterfaceNotFoundError(
            f"{name!r} is not a valid interface name (at most 15 bytes, no '/')")
    try:
        index = ioctl_int(fd, SIOCGIFINDEX, name)
    except OSError as exc:
        if exc.errno in (errno.ENODEV, errno.ENXIO):
            where = f" in network namespace {spec!r}" if spec is not None else ""
            try:
                have = ", ".join(interface_names(spec)) or "none"
            except OSError:
                have = "unknown"
            raise errors.InterfaceNotFoundError(
                f"no interface named {name!r}{where} (available: {have}); "
                f"check the name with `ip link`, or use 'any' for all interfaces") from None
        raise
    flags = ioctl_int(fd, SIOCGIFFLAGS, name, "H")
    mtu = ioctl_int(fd, SIOCGIFMTU, name)
    hatype = ioctl_int(fd, SIOCGIFHWADDR, name, "H")
    return InterfaceInfo(name, index, flags, mtu, hatype)
