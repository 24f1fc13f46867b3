"""Is a capture's interface up, down, or gone?  Asked through the capture socket.

The ring calls state() when its socket reports ENETDOWN/ENODEV, to tell a
link flap (ride it out: the kernel re-hooks the socket when the link comes
back up) from a deleted interface (end the capture).  The ioctl goes through
the capture's own socket, so it answers in that socket's network namespace.
"""

from __future__ import annotations

import errno
import fcntl
import struct

from zcap.linux import IFF_UP, SIOCGIFFLAGS

UP, DOWN, GONE = "up", "down", "gone"



def state(fd: int, name: str) -> str:
    """UP, DOWN or GONE for interface `name` as seen by socket `fd`."""
    if fd < 0 or not name or name == "any":
        return GONE if fd < 0 else UP
    try:
        out = fcntl.ioctl(fd, SIOCGIFFLAGS, struct.pack("16s16x", name.encode()[:15]))
    except OSError as exc:
        if exc.errno in (errno.ENODEV, errno.ENXIO):
            return GONE
        return DOWN
    (flags,) = struct.unpack_from("H", out, 16)
    return UP if flags & IFF_UP else DOWN
