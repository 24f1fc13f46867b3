"""The Linux numbers zcap's Python modules share (one home for them), and two tiny helpers.

Interface ioctls, flags and ARPHRD hardware types (<linux/sockios.h>,
<linux/if.h>, <linux/if_arp.h>), packet-socket options (<linux/if_packet.h>),
libpcap's largest snapshot length; ifreq()/ioctl_int() for the SIOCGIF*
requests, and the memory the kernel says is available.  It imports nothing of
zcap, so every module can use it.  The Cython modules take the same numbers
from zcap/includes/.
"""

from __future__ import annotations

import fcntl
import struct
from typing import Optional

MAX_SNAPLEN = 262144                # libpcap's MAXIMUM_SNAPLEN; savefile readers refuse more
ETH_P_ALL = 0x0003                  # every protocol (<linux/if_ether.h>)

# interface ioctls (<linux/sockios.h>)
SIOCGIFFLAGS = 0x8913
SIOCGIFMTU = 0x8921
SIOCGIFHWADDR = 0x8927
SIOCGIFINDEX = 0x8933
SIOCETHTOOL = 0x8946
SIOCSHWTSTAMP = 0x89B0

# interface flags (<linux/if.h>)
IFF_UP, IFF_BROADCAST, IFF_LOOPBACK, IFF_POINTOPOINT = 0x1, 0x2, 0x8, 0x10
IFF_RUNNING, IFF_PROMISC, IFF_MULTICAST = 0x40, 0x100, 0x1000

# hardware types (<linux/if_arp.h>)
ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772
ARPHRD_RAWIP = 519
ARPHRD_NONE = 0xFFFE

# packet-socket options (<linux/if_packet.h>)
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_TIMESTAMP = 17
PACKET_FANOUT = 18
PACKET_ROLLOVER_STATS = 21
PACKET_FANOUT_DATA = 22
PACKET_IGNORE_OUTGOING = 23

# packet sockets' sock_diag dump <linux/packet_diag.h>, <linux/sock_diag.h>, <linux/netlink.h>
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
PACKET_SHOW_INFO = 0x1
PACKET_SHOW_FANOUT = 0x8
PACKET_DIAG_INFO = 0
PACKET_DIAG_FANOUT = 4
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3


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
