"""Exceptions (and the one warning) zcap raises.  Each message says what went
wrong and what to do.

Every zcap exception is a `ZcapError`.  Below it, `CaptureError` is the base of
what goes wrong while capturing (interfaces, privileges, rings, filters,
fanout groups, worker pools); savefile, decoding and transmit errors derive
from `ZcapError` directly.  (Until 0.1.0 `CaptureError` was the base of every
error: code that caught it for savefile or transmit errors catches `ZcapError`
now.)  Each also derives from the built-in exception it refines (`ValueError`,
`OSError`, ...), so generic handlers keep working.
"""

from __future__ import annotations

import errno as _errno
import fcntl
import os
import struct

from zcap.linux import SIOCGIFINDEX

__all__ = [
    "ZcapError",
    "CaptureError",
    "CaptureClosedError",
    "CapturePermissionError",
    "InterfaceNotFoundError",
    "InterfaceDownError",
    "InterfaceGoneError",
    "TimestampTypeError",
    "RingAllocationError",
    "RingCorruptionError",
    "StaleBatchError",
    "SavefileError",
    "TruncatedSavefileError",
    "SavefileWriteError",
    "DecodeError",
    "FilterError",
    "UserSpaceFilterWarning",
    "FrameRejectedError",
    "TransmitTimeoutError",
    "link_down_error",
]


class ZcapError(Exception):
    """Base class of every zcap error."""


class CaptureError(ZcapError):
    """Base class of the errors of capturing: interface, privilege, ring, filter."""


class CaptureClosedError(CaptureError, ValueError):
    """The capture was closed; open a new one."""


class CapturePermissionError(CaptureError, PermissionError):
    """Packet capture needs CAP_NET_RAW (and CAP_NET_ADMIN for promiscuous mode)."""


class InterfaceNotFoundError(CaptureError, LookupError):
    """No interface of that name exists (in the chosen network namespace)."""


class InterfaceDownError(CaptureError, OSError):
    """The interface is down, or went down while capturing."""


class InterfaceGoneError(InterfaceDownError):
    """The interface was deleted while capturing."""


class TimestampTypeError(CaptureError, ValueError):
    """The interface cannot stamp packets with the requested clock (tstamp_type)."""


class RingAllocationError(CaptureError, MemoryError):
    """The kernel could not allocate or map a ring of the requested size."""


class RingCorruptionError(CaptureError):
    """A ring unit held an offset outside its bounds; it was skipped, never read."""


class StaleBatchError(CaptureError):
    """A Batch was used after its ring block was handed back to the kernel."""


class SavefileError(ZcapError, ValueError):
    """A pcap or pcapng file is malformed or unsupported.

    `offset` is the byte offset in the file of the header, block or record
    that is wrong, and the message says what is wrong with it.  Every packet
    before that point was delivered.
    """

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset

    def __reduce__(self) -> tuple:
        return type(self), (self.args[0], self.offset)


class TruncatedSavefileError(SavefileError):
    """The file ends inside a record: cut short by a crash, or still being written."""


class SavefileWriteError(ZcapError, OSError):
    """Writing a savefile failed (a full disk, a quota, an I/O error).

    The file was cut back to its last whole record, so it stays readable;
    `packets_written` is how many packets it holds (of this file), and
    `packets_lost` how many the writer had accepted that are not in it.
    The writer is closed.
    """

    def __init__(self, err: int, message: str, *, filename: str = "", packets_written: int = 0,
                 packets_lost: int = 0) -> None:
        super().__init__(err, message)
        self.filename = filename
        self.packets_written = packets_written
        self.packets_lost = packets_lost

    def __reduce__(self) -> tuple:
        """Pickles whole, so a pool worker's full disk reaches the parent as itself."""
        return type(self), (self.errno, self.strerror), {
            "filename": self.filename, "packets_written": self.packets_written,
            "packets_lost": self.packets_lost}

    def __str__(self) -> str:
        return str(self.strerror)


class DecodeError(ZcapError, ValueError):
    """A packet's link type is not one zcap decodes, or its bytes do not parse."""


def _interface_exists(fd: int, name: str) -> bool:
    """Ask the capture socket's own network namespace whether `name` exists."""
    if not name or name == "any":
        return True
    try:
        fcntl.ioctl(fd, SIOCGIFINDEX, struct.pack("16si", name.encode()[:15], 0))
    except OSError as exc:
        return exc.errno not in (_errno.ENODEV, _errno.ENXIO)
    return True


def link_down_error(name: str, fd: int, err: int, *, lost: int = 0,
                    down_for: float = 0.0) -> InterfaceDownError:
    """Build the error for a capture whose interface went down or away.

    Called once every packet the kernel had accepted was read; `lost` counts
    those that could not be (also in stats().abandoned).
    """
    if lost:
        fate = (f"{lost} packet(s) the kernel had accepted could not be read "
                f"(counted in stats().abandoned)")
    else:
        fate = "every packet the kernel had accepted was delivered"
    if fd >= 0 and not _interface_exists(fd, name):
        return InterfaceGoneError(
            err, f"interface {name!r} was deleted while capturing; {fate}. "
                 f"Reopen the capture once the interface exists again")
    return InterfaceDownError(
        err, f"interface {name!r} went down while capturing ({os.strerror(err)}) and stayed "
             f"down for {down_for:.2f} s (longer than link_down_grace); {fate}. Bring it up "
             f"(ip link set {name} up) and reopen the capture, or open it with "
             f"link_down_grace=None to wait for the link")


class FilterError(CaptureError, ValueError):
    """A capture filter could not be compiled, or is not a valid classic BPF program.

    The message names the expression and libpcap's reason, or the offending
    instruction and what is wrong with it.
    """


class UserSpaceFilterWarning(UserWarning):
    """The kernel refuses the capture's filter program (e.g. `protochain`'s
    backward jumps); zcap runs it in user space, in the ring walker, instead.
    Capture.filter_location and stats().filter_location then say "user"."""


class FrameRejectedError(ZcapError, OSError):
    """The kernel refused a frame of a transmit ring (TP_STATUS_WRONG_FORMAT).

    zcap.inject checks every frame's length before writing it, so this means
    the interface changed under the injector (e.g. its MTU was lowered).  The
    refused frame is dropped and counted in stats().errors; the frames queued
    after it are kept and still go out.
    """


class TransmitTimeoutError(ZcapError, TimeoutError):
    """No transmit-ring frame became free in time: the interface is not sending."""
