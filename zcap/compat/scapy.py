"""A scapy SuperSocket on zcap's ring: scapy's sniff() keeps up and loses nothing it can hold.

    from zcap.compat.scapy import ZcapSocket, install

    sniff(opened_socket=ZcapSocket(iface="eth0", filter="tcp"), prn=print)
    AsyncSniffer(opened_socket=ZcapSocket(iface="eth0")).start()

    install()                       # conf.L2listen = ZcapSocket
    sniff(iface="eth0", filter="udp port 53", prn=lambda p: p.summary())

ZcapSocket(iface=None, filter=None, **open_live_options) is a listen-only
SuperSocket (as scapy's L2ListenSocket): the packets come from a zcap ring
(32 MiB by default instead of a socket buffer), the filter is compiled in
process by libpcap (no tcpdump binary) and runs in the kernel, and each
packet's `time` is its exact nanosecond timestamp as an EDecimal (scapy's
own sockets give a float).  Any zcap.open_live() option passes through
(block_size, block_count, immediate, netns, ...); without `netns`,
$ZCAP_NETNS is used.  AsyncSniffer.stop() ends the capture at once: scapy's
control pipe is selected together with the ring's socket.

scapy is needed only by this module (zcap itself does not depend on it).
"""

from __future__ import annotations

import select as _select
from decimal import Decimal
from typing import Any, Optional

from scapy.config import conf
from scapy.consts import LINUX
from scapy.data import ETH_P_ALL, MTU
from scapy.error import Scapy_Exception
from scapy.interfaces import network_name
from scapy.supersocket import SuperSocket
from scapy.utils import EDecimal

import zcap
from zcap.compat import netns_from_env

__all__ = ["ZcapSocket", "install", "uninstall"]

_NS = Decimal(1).scaleb(-9)


class ZcapSocket(SuperSocket):
    """Read packets at layer 2 from a zcap ring (scapy's L2ListenSocket, faster and lossless)."""

    desc = "read packets at layer 2 from a zcap TPACKET_V3 ring (zero copy, in-process filters)"

    def __init__(self, iface: Any = None, type: int = ETH_P_ALL, promisc: Optional[bool] = None,
                 filter: Optional[str] = None, nofilter: int = 0, monitor: Optional[bool] = None,
                 **open_live_options: Any) -> None:
        self.iface = network_name(iface or conf.iface)
        self.type = type
        self.promisc = conf.sniff_promisc if promisc is None else bool(promisc)
        if monitor:
            raise Scapy_Exception("monitor mode is not supported by zcap")
        if not nofilter and conf.except_filter:
            filter = (f"({filter}) and not ({conf.except_filter})" if filter
                      else f"not ({conf.except_filter})")
        self.filter = None if nofilter else filter
        options = dict(open_live_options)
        options["netns"] = netns_from_env(options.get("netns"))
        if type != ETH_P_ALL:
            options.setdefault("protocol", type)
        try:
            self.cap = zcap.open_live(self.iface, filter=self.filter,
                                      promisc=self.promisc and self.iface != "any", **options)
        except zcap.FilterError as exc:
            raise Scapy_Exception(f"Cannot set filter: {exc}") from exc
        except (zcap.ZcapError, OSError, ValueError) as exc:
            raise Scapy_Exception(f"Cannot open a zcap capture on {self.iface!r}: {exc}") from exc
        self.ins = self.outs = None  # type: ignore[assignment]  # no Python socket: the ring is read directly
        self.LL = conf.l2types.num2layer.get(int(self.cap.linktype), conf.default_l2)
        self.lvl = 2
        self._next = self.cap.next
        self._ahead: Any = None               # a packet select() found ready

    # -- what sniff() calls -----------------------------------------------------

    def fileno(self) -> int:
        return self.cap.fileno()

    def _ready(self) -> bool:
        if self._ahead is None and not self.closed:
            self._ahead = self._next(0)
        return self._ahead is not None

    @staticmethod
    def select(sockets: list[Any], remain: Optional[float] = None) -> list[Any]:
        """The sockets with a packet ready; only when none has one, wait in select()
        (with scapy's control pipe, so AsyncSniffer.stop() wakes it)."""
        ready = [s for s in sockets if isinstance(s, ZcapSocket) and s._ready()]
        if ready:
            return ready
        try:
            inp, _, _ = _select.select(sockets, [], [], remain)
        except InterruptedError:
            return []
        return inp

    def _take(self) -> Any:
        pkt = self._ahead
        if pkt is not None:
            self._ahead = None
            return pkt
        if self.closed:
            return None
        return self._next(0)

    def recv_raw(self, x: int = MTU) -> tuple[Any, Optional[bytes], Optional[float]]:
        """(layer class, bytes, float time) of the next packet, or (None, None, None)."""
        pkt = self._take()
        if pkt is None:
            return None, None, None
        return self.LL, bytes(pkt)[:x], pkt.ts_ns / 1e9

    def recv(self, x: int = MTU, **kwargs: Any) -> Any:
        """The next packet dissected, with its exact time and wire length; None if none is ready."""
        pkt = self._take()
        if pkt is None:
            return None
        data = bytes(pkt)[:x]
        try:
            p = self.LL(data, **kwargs)
        except KeyboardInterrupt:
            raise
        except Exception:
            if conf.debug_dissector:
                raise
            p = conf.raw_layer(data)
        p.time = EDecimal(Decimal(pkt.ts_ns) * _NS)
        p.wirelen = pkt.wirelen
        return p

    def send(self, x: Any) -> int:
        raise Scapy_Exception("Can't send anything with ZcapSocket (it only listens)")

    def stats(self) -> Any:
        """zcap's capture statistics (received, dropped, delivered, ...)."""
        return self.cap.stats()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._ahead = None
        cap = getattr(self, "cap", None)
        if cap is not None:
            cap.close()

    def __repr__(self) -> str:
        return f"<ZcapSocket {self.iface!r} {'closed' if self.closed else 'open'}>"


_previous: list[Any] = []


def install() -> Any:
    """Make ZcapSocket scapy's conf.L2listen, so sniff(iface=...) uses zcap.

    Returns the socket class it replaced (uninstall() puts it back).
    """
    if not LINUX:
        raise OSError("zcap captures on Linux only")
    if conf.L2listen is not ZcapSocket:
        _previous.append(conf.L2listen)
        conf.L2listen = ZcapSocket
    return _previous[-1] if _previous else None


def uninstall() -> None:
    """Restore the conf.L2listen that install() replaced."""
    if _previous and conf.L2listen is ZcapSocket:
        conf.L2listen = _previous.pop()
