"""A mixed-traffic corpus for filter tests: every frame distinct, on the wire as built."""

from __future__ import annotations

import socket
import struct

from zcap.testbed import _checksum

A_MAC = b"\x02\x00\x00\x00\x00\x01"
BROADCAST = b"\xff" * 6
MCAST4 = b"\x01\x00\x5e\x00\x00\xfb"
MCAST6 = b"\x33\x33\x00\x00\x00\x01"


def _eth(dst: bytes, ethertype: int, payload: bytes, tags=()) -> bytes:
    tagbytes = b"".join(struct.pack("!HH", tpid, tci) for tpid, tci in tags)
    frame = dst + A_MAC + tagbytes + struct.pack("!H", ethertype) + payload
    return frame + b"\0" * max(0, 60 - len(frame))


def _ipv4(src: str, dst: str, proto: int, body: bytes, ident: int, ttl: int = 64) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), ident, 0, ttl, proto, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    return hdr[:10] + struct.pack("!H", _checksum(hdr)) + hdr[12:] + body


def _ipv6(src: str, dst: str, nxt: int, body: bytes) -> bytes:
    return (struct.pack("!IHBB", 0x60000000, len(body), nxt, 64) + socket.inet_pton(socket.AF_INET6, src)
            + socket.inet_pton(socket.AF_INET6, dst) + body)


def _tcp(sport: int, dport: int, flags: int, payload: bytes) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, 0x50, flags, 64240, 0, 0) + payload


def _udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def _icmp(kind: int, payload: bytes) -> bytes:
    return struct.pack("!BBHHH", kind, 0, 0, 1, 1) + payload


def _arp(op: int, sender: str, target: str) -> bytes:
    return (struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + A_MAC + socket.inet_aton(sender)
            + b"\0" * 6 + socket.inet_aton(target))


def corpus(dst_mac: bytes) -> list[bytes]:
    """About 150 frames: IPv4/IPv6 TCP/UDP/ICMP, ARP, 802.1Q, broadcast, multicast,
    lengths from the minimum to 1514, each one unique (the IP id / a counter)."""
    frames = []
    n = 0

    def tag() -> bytes:
        nonlocal n
        n += 1
        return struct.pack("!H", n)

    for i, size in enumerate((0, 20, 200, 600, 1400)):
        pad = bytes(size)
        for src, dst in (("10.99.0.1", "10.99.0.2"), ("10.0.0.5", "192.168.1.9"),
                         ("192.168.7.7", "10.99.0.77")):
            for flags in (0x02, 0x12, 0x10, 0x18, 0x11):
                for dport in (80, 443, 1500):
                    frames.append(_eth(dst_mac, 0x0800, _ipv4(src, dst, 6, _tcp(40000 + i, dport, flags,
                                                                                tag() + pad), n)))
            for dport in (53, 123, 9, 1999):
                frames.append(_eth(dst_mac, 0x0800, _ipv4(src, dst, 17, _udp(5353, dport, tag() + pad), n,
                                                          ttl=32 if dport == 9 else 64)))
            for kind in (8, 0, 3):
                frames.append(_eth(dst_mac, 0x0800, _ipv4(src, dst, 1, _icmp(kind, tag() + pad), n)))
        v6 = ("fd00::1", "fd00::2")
        frames.append(_eth(dst_mac, 0x86DD, _ipv6(*v6, 6, _tcp(1234, 80, 0x02, tag() + pad))))
        frames.append(_eth(dst_mac, 0x86DD, _ipv6(*v6, 17, _udp(1234, 53, tag() + pad))))
        echo6 = bytes([128, 0, 0, 0]) + tag() + pad
        frames.append(_eth(MCAST6, 0x86DD, _ipv6("fe80::1", "ff02::1", 58, echo6)))
        frames.append(_eth(BROADCAST, 0x0806, _arp(1, "10.99.0.1", f"10.99.0.{i + 2}")))
        frames.append(_eth(dst_mac, 0x0806, _arp(2, "10.99.0.2", "10.99.0.1") + tag()))
        mdns = _udp(5353, 5353, tag() + pad)
        frames.append(_eth(MCAST4, 0x0800, _ipv4("10.99.0.1", "224.0.0.251", 17, mdns, n)))
        dhcp = _udp(68, 67, tag() + pad)
        frames.append(_eth(BROADCAST, 0x0800, _ipv4("10.99.0.1", "10.99.0.255", 17, dhcp, n)))
        for vid in (100, 200, 0):
            frames.append(_eth(dst_mac, 0x0800, _ipv4("10.99.0.1", "10.99.0.2", 17,
                                                      _udp(7, 53 if vid == 100 else 80, tag() + pad), n),
                               tags=((0x8100, (3 << 13) | vid),)))
        frames.append(_eth(dst_mac, 0x88B5, tag() + pad))
    return [f for f in frames if len(f) <= 1514]
