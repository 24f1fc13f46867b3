"""A private, silent network to capture on: a veth pair inside a new namespace.

Used by `zcap demo`, the test suite and the benchmarks, so that all of them
work on a machine with no traffic and never touch its real interfaces.  IPv6
is disabled and no address is assigned, so the link carries nothing but what
we send.  Everything is removed on exit, also after a failure.
"""

from __future__ import annotations

import os
import secrets
import socket
import struct
import subprocess
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from zcap import netns as _netns
from zcap.linux import SIOCGIFHWADDR

PREFIX = "zcap-"
SEQ_MAGIC = b"zcapseq!"
ETHERTYPE_IPV4 = 0x0800
UDP_DISCARD_PORT = 9


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def remove_stale_namespaces() -> list[str]:
    """Delete namespaces left by zcap runs whose process no longer exists."""
    removed: list[str] = []
    try:
        names = os.listdir(_netns.NETNS_RUN_DIR)
    except FileNotFoundError:
        return removed
    for name in names:
        if not name.startswith(PREFIX):
            continue
        try:
            pid = int(name[len(PREFIX):].split("-")[0])
        except ValueError:
            continue
        if pid != os.getpid() and not os.path.exists(f"/proc/{pid}"):
            _ip("netns", "del", name, check=False)
            removed.append(name)
    return removed


@dataclass
class Testbed:
    """Namespace `netns` holding veth interfaces `a` (send) and `b` (capture)."""

    __test__ = False        # not a pytest test class, though its name starts with "Test"
    mtu: int = 1500
    netns: str = field(default_factory=lambda: f"{PREFIX}{os.getpid()}-{secrets.token_hex(3)}")
    a: str = "veth-a"
    b: str = "veth-b"
    _up: bool = False
    _macs: tuple[bytes, bytes] = ()  # type: ignore[assignment]

    def __enter__(self) -> Testbed:
        self.create()
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def create(self) -> None:
        _ip("netns", "add", self.netns)
        self._up = True
        try:
            self._sysctl("net.ipv6.conf.all.disable_ipv6", "1")
            self._sysctl("net.ipv6.conf.default.disable_ipv6", "1")
            _ip("-n", self.netns, "link", "set", "lo", "up")
            _ip("-n", self.netns, "link", "add", self.a, "type", "veth", "peer", "name", self.b)
            for name in (self.a, self.b):
                _ip("-n", self.netns, "link", "set", name, "mtu", str(self.mtu), "up")
        except BaseException:
            self.destroy()
            raise

    def destroy(self) -> None:
        if self._up:
            _ip("netns", "del", self.netns, check=False)
            self._up = False

    def _sysctl(self, key: str, value: str) -> None:
        # /proc/sys/net belongs to the namespace of the thread that opens it
        with _netns.entered(self.netns):
            with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                f.write(value)

    # -- helpers ------------------------------------------------------------

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return _ip("-n", self.netns, *args, check=check)

    def mac(self, name: str) -> bytes:
        with open_in(self.netns) as s:
            import fcntl
            out = fcntl.ioctl(s.fileno(), SIOCGIFHWADDR, struct.pack("16s16x", name.encode()))
        return out[18:24]

    def ifindex(self, name: str) -> int:
        with _netns.entered(self.netns):
            return socket.if_nametoindex(name)

    def counter(self, name: str, stat: str) -> int:
        """An interface statistic (e.g. 'tx_dropped') as seen inside the namespace."""
        out = subprocess.run(["ip", "netns", "exec", self.netns, "cat",
                              f"/sys/class/net/{name}/statistics/{stat}"],
                             check=True, capture_output=True, text=True).stdout
        return int(out)

    def sender(self, name: Optional[str] = None) -> Sender:
        return Sender(self.netns, name or self.a)

    def frame(self, size: int = 64, seq: int = 0, **kw: Any) -> bytes:
        """A sequence-numbered UDP frame from a to b.

        The MACs are looked up once: each lookup opens a packet socket, and on
        Linux 6.18 creating a packet socket retires the current block of every
        TPACKET_V3 ring on the machine, so building frames in a send loop would
        change what the capture under test sees (one packet per block).
        """
        if not self._macs:
            self._macs = (self.mac(self.a), self.mac(self.b))
        return udp_frame(size, src_mac=self._macs[0], dst_mac=self._macs[1], seq=seq, **kw)


class open_in:
    """A throwaway AF_PACKET socket in a namespace, for ioctls."""

    def __init__(self, ns: str) -> None:
        with _netns.entered(ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)

    def __enter__(self) -> socket.socket:
        return self.sock

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


SEQ_OFFSET = 14 + 20 + 8          # the sequence number opens the UDP payload


def udp_frame(size: int = 64, *, src_mac: bytes = b"\x02\0\0\0\0\1", dst_mac: bytes = b"\x02\0\0\0\0\2",
              seq: int = 0, src_ip: str = "10.99.0.1", dst_ip: str = "10.99.0.2",
              sport: int = 40000, dport: int = UDP_DISCARD_PORT,
              vlan_tags: Iterable[tuple[int, int]] = ()) -> bytes:
    """An Ethernet/IPv4/UDP frame of `size` bytes (without FCS) carrying `seq`.

    The payload is the big-endian sequence number, a magic marker and a fixed
    byte pattern, so a receiver can check every byte.  vlan_tags: outermost
    first, as (tpid, tci) pairs; the sequence then moves 4 bytes per tag.
    """
    tags = b"".join(struct.pack("!HH", tpid, tci) for tpid, tci in vlan_tags)
    l2 = dst_mac + src_mac + tags + struct.pack("!H", ETHERTYPE_IPV4)
    payload_len = size - len(l2) - 28
    if payload_len < 16:
        raise ValueError(f"a {size}-byte frame has no room for the sequence payload")
    payload = struct.pack("!Q", seq) + SEQ_MAGIC + bytes((i * 7 + 3) & 0xFF for i in range(payload_len - 16))
    udp = struct.pack("!HHHH", sport, dport, 8 + payload_len, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + 8 + payload_len, 0, 0x4000, 64, 17, 0,
                     socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return l2 + ip + udp + payload


def ipv4_fragments(frame: bytes, payload_per_fragment: int = 1480, *, ident: int = 1) -> list[bytes]:
    """An Ethernet/IPv4 frame (udp_frame(), no VLAN tags) cut into IPv4
    fragments of at most `payload_per_fragment` bytes of IP payload each (a
    multiple of 8), as a router would send it over a smaller MTU: identification
    `ident`, more-fragments set on all but the last, checksums recomputed."""
    if payload_per_fragment <= 0 or payload_per_fragment % 8:
        raise ValueError("fragments carry a positive multiple of 8 payload bytes")
    l2, header, body = frame[:14], frame[14:34], frame[34:]
    fragments = []
    for offset in range(0, len(body), payload_per_fragment):
        chunk = body[offset:offset + payload_per_fragment]
        more = offset + len(chunk) < len(body)
        ip = bytearray(header)
        struct.pack_into("!HHH", ip, 2, 20 + len(chunk), ident, (0x2000 if more else 0) | offset // 8)
        struct.pack_into("!H", ip, 10, 0)
        struct.pack_into("!H", ip, 10, _checksum(bytes(ip)))
        fragments.append(l2 + bytes(ip) + chunk)
    return fragments


def frame_seq(data: bytes, offset: int = SEQ_OFFSET) -> int:
    return struct.unpack_from("!Q", data, offset)[0]


class Sender:
    """A packet socket bound to one interface that only sends (protocol 0)."""

    def __init__(self, ns: str, name: str) -> None:
        with _netns.entered(ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        self.sock.bind((name, 0))
        self.sent = 0

    def send(self, frame: bytes) -> None:
        self.sock.send(frame)
        self.sent += 1

    def send_all(self, frames: Iterable[bytes]) -> int:
        n = 0
        for f in frames:
            self.send(f)
            n += 1
        return n

    def send_sequence(self, template: bytes, count: int, *, first_seq: int = 0, pps: float = 0.0,
                      seq_offset: int = SEQ_OFFSET, max_seconds: float = 60.0) -> int:
        """Send `count` copies of template numbered first_seq.. at C speed (GIL released)."""
        from zcap import _testbed
        sent, _, _ = _testbed.send_sequence(self.sock.fileno(), template, seq_offset, first_seq,
                                            count, pps, 32, max_seconds)
        self.sent += sent
        return sent

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
