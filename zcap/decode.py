"""Decode packets with dpkt, and describe them in one line as `tcpdump -n` does.

Packet.decode() and Packet.summary() delegate here.  decode_packet() picks
the dpkt class for the packet's link type; summarize() walks the result and
prints the fields tcpdump prints, for the protocols a capture tool meets
most: Ethernet (with 802.1Q/802.1ad tags), ARP, IPv4, IPv6, TCP, UDP, ICMP,
ICMPv6.  It is stateless, so TCP sequence numbers are absolute, as with
`tcpdump -S`, unless a zcap.tcpseq.RelativeSequence is active (the `zcap`
command's default, as tcpdump's); application protocols are not decoded (a DNS reply reads
"UDP, length 240").  summarize() never raises on packet bytes: what it
cannot parse it marks as tcpdump does, e.g. "IP [|ip]".
"""

from __future__ import annotations

import socket
import struct
from typing import Any

import dpkt  # type: ignore[import-untyped]

from zcap import tcpseq as _tcpseq
from zcap._enums import LinkType
from zcap.errors import DecodeError

__all__ = ["decode_packet", "summarize", "DECODED_LINKTYPES"]

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = int(LinkType.ETHERNET)
LINKTYPE_RAW = int(LinkType.RAW)
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = int(LinkType.LINUX_SLL)
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = int(LinkType.LINUX_SLL2)
_SHORT_NAMES = {LINKTYPE_NULL: "null", LINKTYPE_ETHERNET: "ether", LINKTYPE_RAW: "ip",
                LINKTYPE_LOOP: "loop", LINKTYPE_LINUX_SLL: "sll", LINKTYPE_IPV4: "ip",
                LINKTYPE_IPV6: "ip6", LINKTYPE_LINUX_SLL2: "sll2"}
DECODED_LINKTYPES = {
    LINKTYPE_NULL: "BSD loopback", LINKTYPE_ETHERNET: "Ethernet", LINKTYPE_RAW: "raw IP",
    LINKTYPE_LOOP: "OpenBSD loopback", LINKTYPE_LINUX_SLL: "Linux cooked v1",
    LINKTYPE_IPV4: "raw IPv4", LINKTYPE_IPV6: "raw IPv6", LINKTYPE_LINUX_SLL2: "Linux cooked v2",
}

_AF_INET = 2
_AF_INET6 = (10, 24, 28, 30)        # Linux, NetBSD/OpenBSD, FreeBSD, macOS
_VLAN_TPIDS = {0x8100: "802.1Q", 0x88A8: "802.1ad", 0x9100: "802.1Q-9100"}
_ETHERTYPE_NAMES = {0x0800: "IPv4", 0x0806: "ARP", 0x86DD: "IPv6", 0x8035: "Reverse ARP",
                    0x88CC: "LLDP", 0x8847: "MPLS unicast", 0x8848: "MPLS multicast",
                    0x8863: "PPPoE D", 0x8864: "PPPoE S", 0x888E: "EAPOL", 0x88F7: "PTP"}

try:
    from dpkt.sll2 import SLL2 as _SLL2  # type: ignore[import-untyped]
except ImportError:                 # dpkt < 1.9.8
    class _SLL2(dpkt.Packet):  # type: ignore[no-redef]
        """Linux cooked v2 (LINKTYPE_LINUX_SLL2), for dpkt releases without dpkt.sll2."""

        __hdr__ = (("ethtype", "H", 0x0800), ("mbz", "H", 0), ("intindex", "i", 0),
                   ("hrd", "H", 1), ("type", "B", 0), ("hlen", "B", 6), ("hdr", "8s", b""))

        def unpack(self, buf: bytes) -> None:
            dpkt.Packet.unpack(self, buf)
            try:
                self.data = dpkt.ethernet.Ethernet._typesw[self.ethtype](self.data)  # type: ignore[has-type]
            except (KeyError, dpkt.UnpackError):
                pass


# -- decoding ---------------------------------------------------------------

def _raw_ip(buf: bytes) -> Any:
    version = buf[0] >> 4 if buf else 0
    if version == 4:
        return dpkt.ip.IP(buf)
    if version == 6:
        return dpkt.ip6.IP6(buf)
    raise DecodeError(f"raw IP packet with IP version {version}, neither 4 nor 6")


def _loopback(buf: bytes, linktype: int) -> Any:
    """BSD NULL (address family in the writer's byte order) or LOOP (network order)."""
    if len(buf) < 4:
        raise DecodeError(f"loopback packet of {len(buf)} bytes, shorter than its 4-byte header")
    if linktype == LINKTYPE_LOOP:
        family = int.from_bytes(buf[:4], "big")
    else:
        # as tcpdump does: the writer's byte order, taken as ours unless that
        # makes no sense (a family above 0xffff)
        family = int.from_bytes(buf[:4], "little")
        if family & 0xFFFF0000:
            family = int.from_bytes(buf[:4], "big")
    lo = dpkt.loopback.Loopback(family=family)
    payload = buf[4:]
    try:
        if family == _AF_INET:
            lo.data = dpkt.ip.IP(payload)
        elif family in _AF_INET6:
            lo.data = dpkt.ip6.IP6(payload)
        else:
            lo.data = payload
    except dpkt.UnpackError:
        lo.data = payload
    return lo


def decode_packet(pkt: Any) -> Any:
    """The packet as a dpkt object for its link type (pkt.linktype, default Ethernet).

    Ethernet: dpkt.ethernet.Ethernet; 113: dpkt.sll.SLL; 276: dpkt.sll2.SLL2;
    101/228/229 raw IP: dpkt.ip.IP or dpkt.ip6.IP6; 0/108 loopback:
    dpkt.loopback.Loopback.  Raises DecodeError for another link type, or
    when the outermost header does not parse (inner layers dpkt cannot parse
    stay bytes, as dpkt leaves them).
    """
    linktype = int(getattr(pkt, "linktype", LINKTYPE_ETHERNET))
    buf = bytes(pkt)
    try:
        if linktype == LINKTYPE_ETHERNET:
            return dpkt.ethernet.Ethernet(buf)
        if linktype == LINKTYPE_LINUX_SLL:
            return dpkt.sll.SLL(buf)
        if linktype == LINKTYPE_LINUX_SLL2:
            return _SLL2(buf)
        if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
            return _raw_ip(buf)
        if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
            return _loopback(buf, linktype)
    except DecodeError:
        raise
    except Exception as exc:
        # dpkt's many decoders fail in many ways on bytes that are not what
        # they expect (UnpackError, struct.error, IndexError, ...): one error
        name = DECODED_LINKTYPES[linktype]
        raise DecodeError(f"dpkt could not parse this {len(buf)}-byte {name} packet: "
                          f"{type(exc).__name__}: {exc}") from exc
    known = ", ".join(f"{k} {v}" for k, v in DECODED_LINKTYPES.items())
    raise DecodeError(f"link type {linktype} is not one zcap decodes ({known}); "
                      f"use bytes(pkt) and a decoder for that link layer")


# -- one-line summaries -------------------------------------------------------

def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def _ip4(b: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET, b)


def _ip6(b: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6, b)


_TRANSPORT_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmp6"}
_TCP_FLAGS = ((dpkt.tcp.TH_FIN, "F"), (dpkt.tcp.TH_SYN, "S"), (dpkt.tcp.TH_RST, "R"),
              (dpkt.tcp.TH_PUSH, "P"), (dpkt.tcp.TH_ACK, "."), (dpkt.tcp.TH_URG, "U"),
              (dpkt.tcp.TH_ECE, "E"), (dpkt.tcp.TH_CWR, "W"))


def _tcp_options(opts: bytes) -> str:
    out = []
    for opt in dpkt.tcp.parse_opts(opts):
        if opt is None:
            out.append("[bad opt]")
            break
        kind, data = opt
        if kind == dpkt.tcp.TCP_OPT_EOL:
            out.append("eol")
        elif kind == dpkt.tcp.TCP_OPT_NOP:
            out.append("nop")
        elif kind == dpkt.tcp.TCP_OPT_MSS and len(data) == 2:
            out.append(f"mss {struct.unpack('!H', data)[0]}")
        elif kind == dpkt.tcp.TCP_OPT_WSCALE and len(data) == 1:
            out.append(f"wscale {data[0]}")
        elif kind == dpkt.tcp.TCP_OPT_SACKOK and not data:
            out.append("sackOK")
        elif kind == dpkt.tcp.TCP_OPT_SACK and len(data) % 8 == 0:
            edges = struct.unpack(f"!{len(data) // 4}I", data)
            blocks = "".join(f"{{{edges[i]}:{edges[i + 1]}}}" for i in range(0, len(edges), 2))
            out.append(f"sack {len(edges) // 2} {blocks}")
        elif kind == dpkt.tcp.TCP_OPT_TIMESTAMP and len(data) == 8:
            val, ecr = struct.unpack("!II", data)
            out.append(f"TS val {val} ecr {ecr}")
        else:
            out.append(f"unknown-{kind}" + (f" 0x{data.hex()}" if data else ""))
    return ",".join(out)


def _tcp(tcp: Any, src: str, dst: str, length: int) -> str:
    flags = "".join(char for bit, char in _TCP_FLAGS if tcp.flags & bit) or "none"
    payload = length - tcp.off * 4
    if payload < 0:
        return f"{src}.{tcp.sport} > {dst}.{tcp.dport}: tcp {length} [bad hdr length {tcp.off * 4}]"
    text = f"{src}.{tcp.sport} > {dst}.{tcp.dport}: Flags [{flags}]"
    seq, ack = tcp.seq, tcp.ack
    relative = _tcpseq.active()         # a printer's tcpdump-style relative numbers
    if relative is not None:
        seq, ack = relative.map(src, tcp.sport, dst, tcp.dport, tcp.flags, seq, ack)
    if payload > 0 or tcp.flags & (dpkt.tcp.TH_SYN | dpkt.tcp.TH_FIN | dpkt.tcp.TH_RST):
        text += f", seq {seq}"
        if payload > 0:
            text += f":{(seq + payload) & 0xFFFFFFFF}"
    if tcp.flags & dpkt.tcp.TH_ACK:
        text += f", ack {ack}"
    text += f", win {tcp.win}"
    if tcp.flags & dpkt.tcp.TH_URG:
        text += f", urg {tcp.urp}"
    if tcp.opts:
        text += f", options [{_tcp_options(tcp.opts)}]"
    return text + f", length {payload}"


def _udp(udp: Any, src: str, dst: str) -> str:
    if udp.ulen < 8:
        return f"{src}.{udp.sport} > {dst}.{udp.dport}: UDP, bad length {udp.ulen} < 8"
    return f"{src}.{udp.sport} > {dst}.{udp.dport}: UDP, length {udp.ulen - 8}"


_ICMP_TYPES = {0: "echo reply", 4: "source quench", 5: "redirect", 8: "echo request",
               9: "router advertisement", 10: "router solicitation", 12: "parameter problem",
               13: "time stamp request", 14: "time stamp reply", 17: "address mask request",
               18: "address mask reply"}


def _icmp_unreachable(icmp: Any) -> str:
    inner = getattr(icmp.data, "data", None)
    if not isinstance(inner, dpkt.ip.IP):
        return f"unreachable, code {icmp.code}"
    where = _ip4(inner.dst)
    if icmp.code == 0:
        return f"net {where} unreachable"
    if icmp.code == 1:
        return f"host {where} unreachable"
    if icmp.code == 2:
        return f"{where} protocol {inner.p} unreachable"
    if icmp.code == 3:
        port = struct.unpack_from("!H", bytes(inner.data), 2)[0] if len(bytes(inner.data)) >= 4 else 0
        proto = {6: "tcp", 17: "udp"}.get(inner.p)
        return f"{where} {proto} port {port} unreachable" if proto else \
            f"{where} protocol {inner.p} port {port} unreachable"
    if icmp.code == 4:
        return f"{where} unreachable - need to frag (mtu {icmp.data.mtu})"
    return f"{where} unreachable, code {icmp.code}"


def _icmp(icmp: Any, length: int) -> str:
    if icmp.type in (0, 8) and isinstance(icmp.data, dpkt.icmp.ICMP.Echo):
        text = f"{_ICMP_TYPES[icmp.type]}, id {icmp.data.id}, seq {icmp.data.seq}"
    elif icmp.type == 3:
        text = _icmp_unreachable(icmp)
    elif icmp.type == 11:
        text = "time exceeded in-transit" if icmp.code == 0 else "ip reassembly time exceeded"
    else:
        text = _ICMP_TYPES.get(icmp.type, f"type-#{icmp.type}")
    return f"ICMP {text}, length {length}"


_ICMP6_TYPES = {1: "destination unreachable", 2: "packet too big", 3: "time exceeded in-transit",
                4: "parameter problem", 128: "echo request", 129: "echo reply",
                130: "multicast listener query", 131: "multicast listener report",
                132: "multicast listener done", 133: "router solicitation",
                134: "router advertisement", 135: "neighbor solicitation",
                136: "neighbor advertisement", 137: "redirect", 143: "multicast listener report v2"}


def _icmp6(icmp6: Any, length: int) -> str:
    name = _ICMP6_TYPES.get(icmp6.type, f"unknown icmp6 type ({icmp6.type})")
    body = bytes(icmp6.data)
    if icmp6.type in (128, 129) and len(body) >= 4:
        ident, seq = struct.unpack_from("!HH", body)
        name += f", id {ident}, seq {seq}"
    elif icmp6.type == 135 and len(body) >= 20:
        name += f", who has {_ip6(body[4:20])}"
    elif icmp6.type == 136 and len(body) >= 20:
        name += f", tgt is {_ip6(body[4:20])}"
    return f"ICMP6, {name}, length {length}"


def _over_ip(family: str, data: Any, proto: int, src: str, dst: str, length: int) -> str:
    """The line of a transport header (or its absence) carried over IPv4 ("IP") or IPv6 ("IP6")."""
    if isinstance(data, dpkt.tcp.TCP):
        return f"{family} " + _tcp(data, src, dst, length)
    if isinstance(data, dpkt.udp.UDP):
        return f"{family} " + _udp(data, src, dst)
    if family == "IP" and isinstance(data, dpkt.icmp.ICMP):
        return f"IP {src} > {dst}: " + _icmp(data, length)
    if family == "IP6" and isinstance(data, dpkt.icmp6.ICMP6):
        return f"IP6 {src} > {dst}: " + _icmp6(data, length)
    if proto in _TRANSPORT_NAMES:       # its header was cut by the snaplen
        return f"{family} {src} > {dst}: [|{_TRANSPORT_NAMES[proto]}]"
    return f"{family} {src} > {dst}: ip-proto-{proto} {length}"


def _ipv4(ip: Any) -> str:
    if ip.v != 4:
        return f"IP, wrong version {ip.v}"
    src, dst = _ip4(ip.src), _ip4(ip.dst)
    length = ip.len - ip.hl * 4
    if ip.offset:                       # a later fragment: no transport header in it
        return f"IP {src} > {dst}: ip-proto-{ip.p}"
    return _over_ip("IP", ip.data, ip.p, src, dst, length)


def _ipv6(ip6: Any) -> str:
    if ip6.v != 6:
        return f"IP6, wrong version {ip6.v}"
    src, dst = _ip6(ip6.src), _ip6(ip6.dst)
    length = ip6.plen - sum(h.length for h in getattr(ip6, "all_extension_headers", ()))
    fragment = getattr(ip6, "extension_hdrs", {}).get(44)
    if fragment is not None and fragment.frag_off:     # a later fragment: no transport header
        return f"IP6 {src} > {dst}: frag ({fragment.frag_off * 8}|{length})"
    return _over_ip("IP6", ip6.data, getattr(ip6, "p", ip6.nxt), src, dst, length)


def _arp(arp: Any, length: int) -> str:
    if arp.pro != 0x0800 or arp.pln != 4 or arp.hln != 6:
        return f"ARP, hardware {arp.hrd}, protocol 0x{arp.pro:04x}, op {arp.op}, length {length}"
    if arp.op == dpkt.arp.ARP_OP_REQUEST:
        asked = f" ({_mac(arp.tha)})" if any(arp.tha) else ""
        text = f"Request who-has {_ip4(arp.tpa)}{asked} tell {_ip4(arp.spa)}"
    elif arp.op == dpkt.arp.ARP_OP_REPLY:
        text = f"Reply {_ip4(arp.spa)} is-at {_mac(arp.sha)}"
    elif arp.op == dpkt.arp.ARP_OP_REVREQUEST:
        text = f"Reverse Request who-is {_mac(arp.tha)} tell {_mac(arp.sha)}"
    elif arp.op == dpkt.arp.ARP_OP_REVREPLY:
        text = f"Reverse Reply {_mac(arp.tha)} at {_ip4(arp.tpa)}"
    else:
        text = f"Unknown ({arp.op})"
    return f"ARP, {text}, length {length}"


def _network(data: Any, ethertype: int, length: int, unknown: str) -> str:
    """The network layer after a link header (`length` bytes); `unknown` describes
    the frame when its protocol is not one summarized here."""
    if isinstance(data, dpkt.ip.IP):
        return _ipv4(data)
    if isinstance(data, dpkt.ip6.IP6):
        return _ipv6(data)
    if isinstance(data, dpkt.arp.ARP):
        return _arp(data, length)
    if ethertype == 0x0800:
        return "IP [|ip]"
    if ethertype == 0x86DD:
        return "IP6 [|ip6]"
    if ethertype == 0x0806:
        return f"ARP, [|arp], length {length}"
    return unknown


def _ethertype(value: int) -> str:
    return f"ethertype {_ETHERTYPE_NAMES.get(value, 'Unknown')} (0x{value:04x})"


def _ethernet(eth: Any, wirelen: int) -> str:
    tags = getattr(eth, "vlan_tags", None) or []
    prefix = ""
    tpid = eth.type
    for tag in tags:
        prefix += f"{_VLAN_TPIDS.get(tpid, f'0x{tpid:04x}')} vlan {tag.id}, p {tag.pri}, "
        tpid = tag.type
    header = 14 + 4 * len(tags)
    ethertype = tags[-1].type if tags else eth.type
    if ethertype <= 1500:
        return f"{prefix}802.3, length {ethertype}"
    unknown = f"{_mac(eth.src)} > {_mac(eth.dst)}, {_ethertype(ethertype)}, length {wirelen}"
    return prefix + _network(eth.data, ethertype, wirelen - header, unknown)


_SLL_DIRECTIONS = {0: "In", 1: "B", 2: "M", 3: "P", 4: "Out"}


def _describe(obj: Any, wirelen: int) -> str:
    if isinstance(obj, dpkt.ethernet.Ethernet):
        return _ethernet(obj, wirelen)
    if isinstance(obj, dpkt.sll.SLL):
        unknown = f"{_ethertype(obj.ethtype)}, length {wirelen}"
        return _network(obj.data, obj.ethtype, wirelen - 16, unknown)
    if isinstance(obj, _SLL2):
        way = _SLL_DIRECTIONS.get(obj.type, str(obj.type))
        unknown = f"{_ethertype(obj.ethtype)}, length {wirelen}"
        return f"{way:<3} " + _network(obj.data, obj.ethtype, wirelen - 20, unknown)
    if isinstance(obj, dpkt.loopback.Loopback):
        return _network(obj.data, 0, wirelen - 4, f"AF Unknown ({obj.family}), length {wirelen}")
    return _network(obj, 0, wirelen, f"IP, length {wirelen}")


def summarize(pkt: Any) -> str:
    """One line like `tcpdump -n -S` prints after the timestamp.

    e.g. "IP 10.0.0.1.40000 > 10.0.0.2.9: UDP, length 86"; see the module
    docstring for what is covered.  Never raises on the packet's bytes.
    """
    linktype = int(getattr(pkt, "linktype", LINKTYPE_ETHERNET))
    wirelen = int(getattr(pkt, "wirelen", len(pkt)))
    if linktype not in DECODED_LINKTYPES:
        return f"link type {linktype}, length {wirelen}"
    try:
        return _describe(decode_packet(pkt), wirelen)
    except (DecodeError, dpkt.UnpackError, struct.error, ValueError, AttributeError, IndexError, TypeError):
        # what tcpdump prints for a packet cut inside its first header
        return f"[|{_SHORT_NAMES[linktype]}]"
