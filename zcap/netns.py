"""Entering a network namespace for the few calls that need it.

A packet socket belongs to the namespace it was created in; everything after
creation (ioctls, bind, the ring) works on the socket itself.  So zcap enters
the target namespace only around socket() and interface listing, and only in
the calling thread (setns() is per thread).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from typing import Iterator, Union

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"

NetnsSpec = Union[str, int, None]

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
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
    if isinstance(spec, int):
        target = os.dup(spec)
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
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)
