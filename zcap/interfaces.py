"""zcap.interfaces(): the interfaces one can capture on, like pcap_findalldevs().

One `Interface` record per link of a network namespace (the current one, or
`netns=`), plus the "any" pseudo-device, in libpcap's order (up and running
first, then disconnected, loopback, down; ties in interface-index order), so
`zcap -D` numbers them as `tcpdump -D` would.  Everything is read from the
kernel of that namespace: getifaddrs() for addresses and hardware addresses,
interface ioctls for flags and MTU, ethtool (ETHTOOL_GLINK,
ETHTOOL_GET_TS_INFO) for the link state and the timestamp sources.

Timestamp types use libpcap's names: "host" (the kernel's software stamp,
always available), "adapter" (hardware stamps synchronised to the system
clock: SOF_TIMESTAMPING_SYS_HARDWARE, which kernels since 3.17 no longer
offer) and "adapter_unsynced" (the NIC's own clock: SOF_TIMESTAMPING_RAW_HARDWARE).

lookup_interface(fd, name, netns) resolves one interface through a packet
socket (in that socket's namespace) for open_live() and open_inject().
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import socket
import struct
from dataclasses import dataclass
from typing import Optional

from zcap import errors
from zcap import netns as _netns
from zcap._enums import LinkType
from zcap.linux import (
    ARPHRD_ETHER,
    ARPHRD_LOOPBACK,
    ARPHRD_NONE,
    ARPHRD_RAWIP,
    IFF_BROADCAST,
    IFF_LOOPBACK,
    IFF_POINTOPOINT,
    IFF_PROMISC,
    IFF_RUNNING,
    IFF_UP,
    SIOCETHTOOL,
    SIOCGIFFLAGS,
    SIOCGIFHWADDR,
    SIOCGIFINDEX,
    SIOCGIFMTU,
    ifreq,
    ioctl_int,
)

__all__ = ["interfaces", "Interface", "Address", "timestamp_types", "TSTAMP_TYPES",
           "SOF_TIMESTAMPING_SOFTWARE", "SOF_TIMESTAMPING_SYS_HARDWARE",
           "SOF_TIMESTAMPING_RAW_HARDWARE"]

# <linux/ethtool.h>, <linux/net_tstamp.h>
_ETHTOOL_GLINK, _ETHTOOL_GET_TS_INFO = 0x0000000A, 0x00000041
SOF_TIMESTAMPING_SOFTWARE = 1 << 4
SOF_TIMESTAMPING_SYS_HARDWARE = 1 << 5
SOF_TIMESTAMPING_RAW_HARDWARE = 1 << 6

#: libpcap's timestamp type names and descriptions (pcap_tstamp_type_val_to_description)
TSTAMP_TYPES = {
    "host": "Host",
    "adapter": "Adapter",
    "adapter_unsynced": "Adapter, not synced with system time",
}

ANY_DESCRIPTION = "Pseudo-device that captures on all interfaces"


@dataclass(frozen=True)
class Address:
    """One network address of an interface (pcap_addr)."""

    family: str                     # "inet" or "inet6"
    address: str
    prefixlen: int
    netmask: str
    broadcast: Optional[str] = None  # IPv4 broadcast address
    peer: Optional[str] = None       # point-to-point destination

    def __str__(self) -> str:
        return f"{self.address}/{self.prefixlen}"


@dataclass(frozen=True)
class Interface:
    """An interface zcap can be asked to capture on (see zcap.interfaces())."""

    name: str
    index: int                      # 0 for "any"
    description: Optional[str]
    flags: int                      # IFF_* bits as the kernel reports them
    mtu: int
    hatype: int                     # ARPHRD_* (0 for "any")
    linktype: LinkType              # what open_live() delivers by default
    linktypes: tuple[LinkType, ...]  # what it can deliver (-y / cooked=)
    hwaddr: Optional[str]           # "aa:bb:cc:dd:ee:ff", None if the link has none
    addresses: tuple[Address, ...]
    netns: _netns.NetnsSpec         # the namespace asked for (None: the caller's)
    netns_inode: int                # identifies the namespace (`ls -l /proc/self/ns/net`)
    connected: Optional[bool]       # carrier (ethtool link); None where it does not apply
    can_capture: bool               # this process has CAP_NET_RAW
    tstamp_types: tuple[str, ...]   # "host", "adapter", "adapter_unsynced"
    phc_index: int = -1             # the NIC's PTP clock (/dev/ptpN), -1 if none

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)

    @property
    def running(self) -> bool:
        return bool(self.flags & IFF_RUNNING)

    @property
    def loopback(self) -> bool:
        return bool(self.flags & IFF_LOOPBACK)

    @property
    def promiscuous(self) -> bool:
        return bool(self.flags & IFF_PROMISC)

    def status_flags(self) -> str:
        """The bracketed status of `tcpdump -D`: "Up, Running, Connected", "none", ..."""
        words = [w for w, on in (("Up", self.up), ("Running", self.running),
                                 ("Loopback", self.loopback)) if on]
        text = ", ".join(words) or "none"
        if self.connected is not None:
            text += ", Connected" if self.connected else ", Disconnected"
        return text


# -- getifaddrs() through ctypes ----------------------------------------------

class _IfAddrs(ctypes.Structure):
    pass


_IfAddrs._fields_ = [("ifa_next", ctypes.POINTER(_IfAddrs)), ("ifa_name", ctypes.c_char_p),
                     ("ifa_flags", ctypes.c_uint), ("ifa_addr", ctypes.c_void_p),
                     ("ifa_netmask", ctypes.c_void_p), ("ifa_ifu", ctypes.c_void_p),
                     ("ifa_data", ctypes.c_void_p)]

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.getifaddrs.argtypes = [ctypes.POINTER(ctypes.POINTER(_IfAddrs))]
_libc.freeifaddrs.argtypes = [ctypes.POINTER(_IfAddrs)]


def _sockaddr(ptr: Optional[int]) -> Optional[tuple[int, bytes]]:
    """(family, raw bytes) of a sockaddr pointer, enough for AF_INET/AF_INET6/AF_PACKET."""
    if not ptr:
        return None
    family = ctypes.c_ushort.from_address(ptr).value
    size = {socket.AF_INET: 16, socket.AF_INET6: 28, socket.AF_PACKET: 20}.get(family)
    return (family, ctypes.string_at(ptr, size)) if size else None


def _ip_text(family: int, raw: bytes) -> str:
    if family == socket.AF_INET:
        return socket.inet_ntop(family, raw[4:8])
    return socket.inet_ntop(family, raw[8:24])


def _getifaddrs() -> list[tuple[str, int, int, bytes, Optional[tuple[int, bytes]],
                                Optional[tuple[int, bytes]]]]:
    """(name, flags, family, address, netmask, broadcast/peer) per entry, in the kernel's order."""
    head = ctypes.POINTER(_IfAddrs)()
    if _libc.getifaddrs(ctypes.byref(head)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"getifaddrs: {os.strerror(err)}")
    out = []
    try:
        node = head
        while node:
            entry = node.contents
            addr = _sockaddr(entry.ifa_addr)
            if addr is not None:
                out.append((entry.ifa_name.decode(errors="replace"), entry.ifa_flags, addr[0],
                            addr[1], _sockaddr(entry.ifa_netmask), _sockaddr(entry.ifa_ifu)))
            node = entry.ifa_next
    finally:
        _libc.freeifaddrs(head)
    return out


# -- ioctls -------------------------------------------------------------------

def _ethtool(fd: int, name: str, request: bytearray) -> Optional[bytearray]:
    """Run an ethtool command on `name`; the filled request, or None if unsupported."""
    buf = ctypes.create_string_buffer(bytes(request), len(request))
    ifr = ifreq(name, struct.pack("P", ctypes.addressof(buf)))
    try:
        fcntl.ioctl(fd, SIOCETHTOOL, ifr)      # the kernel writes into `buf`
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENODEV, errno.EPERM, errno.ENOTTY):
            return None
        raise
    return bytearray(buf.raw)


def _promiscuity() -> dict[int, int]:
    """ifindex -> the kernel's promiscuity count (IFLA_PROMISCUITY), from one RTM_GETLINK dump.

    A packet socket's PACKET_MR_PROMISC raises the count without setting
    IFF_PROMISC in the flags SIOCGIFFLAGS reports, so the count is what says
    whether the interface is promiscuous now."""
    out: dict[int, int] = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as nl:
        nl.settimeout(2.0)
        # nlmsghdr (RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP) + ifinfomsg
        nl.send(struct.pack("=IHHII", 32, 18, 0x301, 1, 0) + struct.pack("=BxHiII", 0, 0, 0, 0, 0))
        while True:
            data = nl.recv(65536)
            pos = 0
            while pos + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, pos)
                if kind == 3 or length < 16:            # NLMSG_DONE
                    return out
                if kind == 2:                           # NLMSG_ERROR
                    return out
                if kind == 16 and length >= 32:         # RTM_NEWLINK
                    index = struct.unpack_from("=i", data, pos + 20)[0]
                    at = pos + 32
                    while at + 4 <= pos + length:
                        alen, atype = struct.unpack_from("=HH", data, at)
                        if alen < 4:
                            break
                        if atype == 30 and alen >= 8:   # IFLA_PROMISCUITY
                            out[index] = struct.unpack_from("=I", data, at + 4)[0]
                        at += (alen + 3) & ~3
                pos += (length + 3) & ~3


def _link_connected(fd: int, name: str, flags: int) -> Optional[bool]:
    if flags & IFF_LOOPBACK:
        return None
    reply = _ethtool(fd, name, bytearray(struct.pack("=II", _ETHTOOL_GLINK, 0)))
    return None if reply is None else bool(struct.unpack_from("=I", reply, 4)[0])


def timestamp_info(fd: int, name: str) -> tuple[int, int]:
    """(so_timestamping capabilities, PHC index) from ETHTOOL_GET_TS_INFO."""
    reply = _ethtool(fd, name, bytearray(struct.pack("=II", _ETHTOOL_GET_TS_INFO, 0).ljust(44, b"\0")))
    if reply is None:
        return SOF_TIMESTAMPING_SOFTWARE, -1
    caps, phc = struct.unpack_from("=Ii", reply, 4)
    return caps, phc


def _tstamp_types_from(caps: int) -> tuple[str, ...]:
    """libpcap's rule: without raw hardware stamps only "host" is offered."""
    if not caps & SOF_TIMESTAMPING_RAW_HARDWARE:
        return ("host",)
    types = ["host"]
    if caps & SOF_TIMESTAMPING_SYS_HARDWARE:
        types.append("adapter")
    types.append("adapter_unsynced")
    return tuple(types)


def timestamp_types(interface: str, netns: _netns.NetnsSpec = None) -> tuple[tuple[str, ...], int]:
    """(the timestamp types `interface` supports, its PHC index or -1), read with ethtool."""
    if interface == "any":
        return ("host",), -1
    with _netns.entered(netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        caps, phc = timestamp_info(sock.fileno(), interface)
    return _tstamp_types_from(caps), phc


def _linktypes_for(hatype: int) -> tuple[LinkType, ...]:
    if hatype in (ARPHRD_ETHER, ARPHRD_LOOPBACK):
        return (LinkType.ETHERNET,)
    if hatype in (ARPHRD_NONE, ARPHRD_RAWIP):
        return (LinkType.RAW,)
    return (LinkType.LINUX_SLL2, LinkType.LINUX_SLL)     # captured cooked, as libpcap does


def _has_cap_net_raw() -> bool:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << 13))   # CAP_NET_RAW
    except OSError:
        pass
    return os.geteuid() == 0


def _merit(iface: Interface) -> int:
    """libpcap's figure of merit (lower sorts first), as in pcap.c."""
    n = 0
    if not iface.running:
        n |= 0x80000000
    if not iface.up:
        n |= 0x40000000
    if iface.connected is False:
        n |= 0x20000000
    if iface.loopback:
        n |= 0x10000000
    if iface.name == "any":
        n |= 0x08000000
    return n


def interfaces(netns: _netns.NetnsSpec = None) -> list[Interface]:
    """Every interface of the network namespace (`netns`: a name in /run/netns, a
    path or an fd; None for the caller's), plus "any", in libpcap's order.

    Each record has the name, index, flags (up, running, loopback,
    promiscuous), MTU, the link type zcap delivers and those it can deliver,
    the hardware address, IPv4/IPv6 addresses with prefix, the namespace,
    whether this process may capture (CAP_NET_RAW), and the timestamp types
    ("host", "adapter_unsynced", ...) the interface supports.
    """
    with _netns.entered(netns):
        inode = os.stat("/proc/thread-self/ns/net").st_ino
        names = socket.if_nameindex()
        entries = _getifaddrs()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            promiscuity = _promiscuity()
        except OSError:
            promiscuity = {}
    can_capture = _has_cap_net_raw()
    found = []
    with sock:
        fd = sock.fileno()
        for index, name in sorted(names):
            try:
                flags = struct.unpack_from("H", fcntl.ioctl(fd, SIOCGIFFLAGS, ifreq(name)), 16)[0]
                mtu = struct.unpack_from("i", fcntl.ioctl(fd, SIOCGIFMTU, ifreq(name)), 16)[0]
                hw = fcntl.ioctl(fd, SIOCGIFHWADDR, ifreq(name))
            except OSError as exc:
                if exc.errno in (errno.ENODEV, errno.ENXIO):
                    continue                    # removed while we looked
                raise
            hatype = struct.unpack_from("H", hw, 16)[0]
            if promiscuity.get(index):
                flags |= IFF_PROMISC
            hwaddr = None
            addresses = []
            for ename, _eflags, family, raw, mask, other in entries:
                if ename.split(":")[0] != name:
                    continue
                if family == socket.AF_PACKET:
                    halen = raw[11]
                    if halen:
                        hwaddr = ":".join(f"{b:02x}" for b in raw[12:12 + min(halen, 8)])
                    continue
                netmask = _ip_text(family, mask[1]) if mask and mask[0] == family else ""
                prefix = sum(bin(b).count("1") for b in
                             (mask[1][4:8] if family == socket.AF_INET else mask[1][8:24])) if netmask else 0
                extra = _ip_text(family, other[1]) if other and other[0] == family else None
                address = _ip_text(family, raw)
                if extra == address:            # glibc repeats the address when there is none
                    extra = None
                addresses.append(Address(
                    "inet" if family == socket.AF_INET else "inet6", address, prefix,
                    netmask, broadcast=extra if flags & IFF_BROADCAST else None,
                    peer=extra if flags & IFF_POINTOPOINT else None))
            caps, phc = timestamp_info(fd, name)
            linktypes = _linktypes_for(hatype)
            found.append(Interface(
                name=name, index=index, description=None, flags=flags, mtu=mtu, hatype=hatype,
                linktype=linktypes[0], linktypes=linktypes, hwaddr=hwaddr, addresses=tuple(addresses),
                netns=netns, netns_inode=inode, connected=_link_connected(fd, name, flags),
                can_capture=can_capture, tstamp_types=_tstamp_types_from(caps), phc_index=phc))
    found.append(Interface(
        name="any", index=0, description=ANY_DESCRIPTION, flags=IFF_UP | IFF_RUNNING, mtu=65536,
        hatype=0, linktype=LinkType.LINUX_SLL2, linktypes=(LinkType.LINUX_SLL2, LinkType.LINUX_SLL),
        hwaddr=None, addresses=(), netns=netns, netns_inode=inode, connected=None,
        can_capture=can_capture, tstamp_types=("host",)))
    return sorted(found, key=_merit)           # stable: ties keep interface-index order


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
