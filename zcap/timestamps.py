"""Choosing the clock that stamps captured packets (open_live(tstamp_type=...)).

As libpcap's pcap_set_tstamp_type() on Linux: "host" is the kernel's
software stamp (the default, nothing to set up).  "adapter_unsynced" turns
on the NIC's receive stamping (SIOCSHWTSTAMP, HWTSTAMP_FILTER_ALL, which
needs CAP_NET_ADMIN) and asks the ring for the raw hardware stamp
(PACKET_TIMESTAMP = SOF_TIMESTAMPING_RAW_HARDWARE); the kernel marks each
packet with the clock it used (TP_STATUS_TS_*, `Packet.ts_source`).
"adapter" (NIC stamps converted to system time, SOF_TIMESTAMPING_SYS_HARDWARE)
was removed from Linux in 3.17; it is accepted only where the interface
still reports it.  Whatever cannot be done raises TimestampTypeError naming
the interface and `ethtool -T`, before any packet is captured: a capture
never falls back to software stamps silently.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import socket
import struct
from typing import Optional

from zcap import errors
from zcap import netns as _netns
from zcap.interfaces import SOF_TIMESTAMPING_RAW_HARDWARE, SOF_TIMESTAMPING_SYS_HARDWARE, TSTAMP_TYPES
from zcap.linux import PACKET_TIMESTAMP, SIOCSHWTSTAMP, SOL_PACKET

__all__ = ["check_type", "check_interface", "enable_hardware"]

_HWTSTAMP_TX_OFF, _HWTSTAMP_FILTER_ALL = 0, 1


def check_type(tstamp_type: Optional[str], interface: str, mode: str) -> None:
    """The checks that need no system call."""
    if tstamp_type is None or tstamp_type == "host":
        return
    if tstamp_type not in TSTAMP_TYPES:
        raise ValueError(f"tstamp_type must be one of {', '.join(map(repr, TSTAMP_TYPES))}, "
                         f"not {tstamp_type!r}")
    if interface == "any":
        raise errors.TimestampTypeError(
            "the 'any' device supports only tstamp_type='host': hardware stamps are set up "
            "per interface; capture on the interface itself (check it with `ethtool -T IFACE`)")
    if mode == "copy":
        raise ValueError(f"tstamp_type={tstamp_type!r} needs mode='ring' (copy mode reads the "
                         f"kernel's software stamp)")


def _no_hardware(interface: str, tstamp_type: str, detail: str) -> errors.TimestampTypeError:
    return errors.TimestampTypeError(
        f"interface {interface!r} cannot stamp packets with tstamp_type={tstamp_type!r}: {detail}; "
        f"`ethtool -T {interface}` shows what it supports (it needs hardware-receive and "
        f"hardware-raw-clock), `zcap -J -i {interface}` the types zcap can use; "
        f"use tstamp_type='host' for the kernel's stamps")


def check_interface(tstamp_type: str, interface: str, netns: _netns.NetnsSpec) -> None:
    """Refuse a type the interface does not report (ETHTOOL_GET_TS_INFO)."""
    from zcap.interfaces import timestamp_info
    with _netns.entered(netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        caps, _phc = timestamp_info(sock.fileno(), interface)
    if not caps & SOF_TIMESTAMPING_RAW_HARDWARE:
        raise _no_hardware(interface, tstamp_type, "it has no hardware timestamping")
    if tstamp_type == "adapter" and not caps & SOF_TIMESTAMPING_SYS_HARDWARE:
        raise _no_hardware(
            interface, tstamp_type,
            "it stamps with its own clock only (Linux removed SYS_HARDWARE stamps in 3.17); use "
            "tstamp_type='adapter_unsynced' and keep the NIC clock in step with phc2sys")


def enable_hardware(*, s_fd: int, interface: str) -> None:
    """Turn on receive stamping on the NIC and ask the ring for its stamps."""
    config = ctypes.create_string_buffer(struct.pack("=iii", 0, _HWTSTAMP_TX_OFF, _HWTSTAMP_FILTER_ALL))
    ifr = struct.pack("16sP", interface.encode()[:15], ctypes.addressof(config)).ljust(40, b"\0")
    try:
        fcntl.ioctl(s_fd, SIOCSHWTSTAMP, ifr)
    except OSError as exc:
        if exc.errno == errno.EPERM:
            raise errors.CapturePermissionError(
                exc.errno, f"turning on hardware timestamps on {interface!r} (SIOCSHWTSTAMP) "
                           f"needs CAP_NET_ADMIN") from None
        raise _no_hardware(interface, "adapter_unsynced",
                           f"SIOCSHWTSTAMP failed: {exc.strerror}") from None
    with socket.socket(fileno=s_fd) as s:
        try:
            s.setsockopt(SOL_PACKET, PACKET_TIMESTAMP, SOF_TIMESTAMPING_RAW_HARDWARE)
        finally:
            s.detach()
