"""Entering a network namespace for the few calls that need it.

A packet socket belongs to the namespace it was created in; everything after
creation (ioctls, bind, the ring) works on the socket itself.  So zcap enters
the target namespace only around socket() and interface listing, and only in
the calling thread (setns() is per thread).  packet_socket() opens the packet
sockets of open_live() and open_inject() that way.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import socket
from typing import Iterator, Union

from zcap import errors

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"

NetnsSpec = Union[str, int, None]

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


_HOW = ("pass a name from `ip netns list`, a path such as /run/netns/NAME or "
        "/proc/PID/ns/net, or an open file descriptor of one")


def _setns(fd: int, spec: NetnsSpec = None) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        if spec is not None and err == errno.EINVAL:
            raise OSError(err, f"netns={spec!r} is not a network namespace; {_HOW}")
        raise OSError(err, f"setns(CLONE_NEWNET): {os.strerror(err)}")


def netns_path(spec: NetnsSpec) -> str | None:
    """A name (as `ip netns` uses) or a path to a namespace file."""
    if spec is None or isinstance(spec, int):
        return None
    if "/" in spec:
        return spec
    return os.path.join(NETNS_RUN_DIR, spec)


@contextlib.contextmanager
def entered(spec: NetnsSpec) -> Iterator[None]:
    """Run the body in network namespace `spec` (None: stay where we are)."""
    if spec is None:
        yield
        return
    if isinstance(spec, int) and not isinstance(spec, bool):
        try:
            target = os.dup(spec)
        except OSError as exc:
            raise OSError(exc.errno, f"netns={spec} is not an open file descriptor "
                                     f"({os.strerror(exc.errno)}); {_HOW}") from None
    elif not isinstance(spec, str):
        raise TypeError(f"netns must be a name, a path or a file descriptor, not "
                        f"{type(spec).__name__}")
    else:
        path = netns_path(spec) or ""
        try:
            target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"no network namespace {spec!r} ({path} does not exist); list them with `ip netns`"
            ) from None
    try:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except BaseException:
        os.close(target)
        raise
    try:
        _setns(target, spec)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def packet_socket(spec: NetnsSpec, kind: int = socket.SOCK_RAW, *,
                  purpose: str = "capturing packets") -> socket.socket:
    """An AF_PACKET socket of protocol 0 (it receives nothing until bound), created in
    namespace `spec`; CapturePermissionError saying how to get CAP_NET_RAW if refused."""
    try:
        with entered(spec):
            return socket.socket(socket.AF_PACKET, kind, 0)
    except PermissionError as exc:
        raise errors.CapturePermissionError(
            exc.errno,
            f"{purpose} needs the CAP_NET_RAW capability: run as root, or grant it "
            f"to the interpreter with `sudo setcap cap_net_raw,cap_net_admin=eip "
            f"$(readlink -f $(which python3))`") from None
