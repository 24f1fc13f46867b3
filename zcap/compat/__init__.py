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

import os
from typing import Union

NETNS_ENV = "ZCAP_NETNS"


def netns_from_env(explicit: Union[str, int, None] = None) -> Union[str, int, None]:
    """The namespace to use: `explicit` if given, else $ZCAP_NETNS, else None (our own)."""
    if explicit is not None:
        return explicit
    return os.environ.get(NETNS_ENV) or None
