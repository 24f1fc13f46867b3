"""Drop-in replacements for other capture libraries, running on zcap's ring.

    import zcap.compat.pcapy as pcapy      # pcapy / pcapy-ng
    import zcap.compat.pcap as pcap        # pypcap
    from zcap.compat import scapy          # scapy: ZcapSocket, install()

Each module is a client of zcap's public API (see docs/compat.md for the
differences from the library it replaces).  Code that cannot be changed to
pass a namespace can still capture inside one: set ZCAP_NETNS (a name in
/run/netns or a path) and every live open, device list and device lookup of
these modules happens in that network namespace; an explicit `netns=`
keyword wins over the variable.
"""

from __future__ import annotations

import ipaddress  # noqa: F401  (annotation)
import os
from typing import Optional, Union  # noqa: F401

NETNS_ENV = "ZCAP_NETNS"


def netns_from_env(explicit: Union[str, int, None] = None) -> Union[str, int, None]:
    """The namespace to use: `explicit` if given, else $ZCAP_NETNS, else None (our own)."""
    if explicit is not None:
        return explicit
    return os.environ.get(NETNS_ENV) or None


def capture_devices(netns: Union[str, int, None] = None) -> list:
    """zcap.interfaces() of the namespace (from `netns` or $ZCAP_NETNS), "any" included."""
    import zcap
    return zcap.interfaces(netns_from_env(netns))


def ipv4_network(name: str, netns: Union[str, int, None] = None) -> Optional[ipaddress.IPv4Network]:
    """The IPv4 network of the interface's first address, as pcap_lookupnet(); None without one.

    Raises zcap.InterfaceNotFoundError for an unknown interface.
    """
    import ipaddress

    import zcap
    for iface in capture_devices(netns):
        if iface.name == name:
            for addr in iface.addresses:
                if addr.family == "inet":
                    return ipaddress.IPv4Network(f"{addr.address}/{addr.prefixlen}", strict=False)
            return None
    raise zcap.InterfaceNotFoundError(f"no interface named {name!r}; check the name with `ip link`")
