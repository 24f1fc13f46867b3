"""What a capture attaches for a filter: the kernel's program and its user-view form.

The user writes a filter for the bytes zcap delivers (its link type, with a
synthesized cooked header on "any", with VLAN tags re-inserted if asked).
The kernel runs the socket filter on its own view of the packet: VLAN tags
stripped into metadata, no cooked header on SOCK_DGRAM sockets.  So, as
libpcap does on Linux:

* Ethernet: `vlan` tests compile to the kernel's VLAN extensions
  (SKF_AD_VLAN_TAG_PRESENT / SKF_AD_VLAN_TAG).  The filter applies to the
  packet as zcap delivers it: untagged plus metadata by default (as live
  libpcap captures behave on Linux: `host X` matches a tagged frame's inner
  packet); with reinsert_vlan=True the delivered bytes are the wire bytes, so
  tagged packets are checked again, as bytes, in user space (as tcpdump -r
  would match them).
* cooked link types: loads from the cooked header become ancillary loads and
  the rest move back by its length (zcap.bpf.kernel_program); when that is
  impossible the kernel only truncates and the filter runs in user space.

The user-view form is also what zcap runs in user space on units a previous
filter may have filled (see Ring.set_filter), so a filter change never lets
a packet through that the new filter rejects.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Optional

from zcap import bpf
from zcap._enums import LinkType

_BPF_RET_K = 0x06


def snaplen_only(snaplen: int) -> bytes:
    """`ret #snaplen`: accept everything, keep at most snaplen bytes (in the kernel)."""
    return struct.pack("HBBI", _BPF_RET_K, 0, 0, snaplen)


def is_raw_program(spec: Any) -> bool:
    """A raw program rather than an expression: a BPFProgram, tuples, bytes or -ddd text."""
    if isinstance(spec, str):
        first = spec.strip().replace(",", "\n").split("\n", 1)[0].strip()
        return first.isdigit()
    return True


@dataclass(frozen=True)
class CaptureFilter:
    spec: Any                           # what the user gave
    kernel: bytes                       # attached with SO_ATTACH_FILTER
    user: Optional[bpf.BPFProgram]      # matches the delivered bytes (None: no filter)
    user_only: bool                     # the kernel cannot run it: filter in user space
    tagged: bool = False                # re-check packets that carried a VLAN tag in user space

    @property
    def program(self) -> Optional[bpf.BPFProgram]:
        return self.user


def for_capture(spec: Any, *, linktype: int, snaplen: int, reinsert_vlan: bool,
                interface: str, netns: Any) -> CaptureFilter:
    """Compile or parse `spec` for a capture; FilterError if it is not valid."""
    if spec is None:
        return CaptureFilter(None, snaplen_only(snaplen), None, False)
    cooked = linktype in (LinkType.LINUX_SLL, LinkType.LINUX_SLL2)
    ethernet = linktype == LinkType.ETHERNET
    tagged = False
    if is_raw_program(spec):
        user = bpf.BPFProgram.parse(spec, linktype=linktype, snaplen=snaplen)
        kernel: Optional[bpf.BPFProgram] = user
    else:
        kernel = bpf.compile_filter(spec, linktype=linktype, snaplen=snaplen,
                                    linux_vlan=ethernet, netns=netns,
                                    device=interface if ethernet else None)
        user = kernel
        if ethernet and reinsert_vlan:
            # The delivered bytes carry the tags the kernel stripped: a tagged
            # packet must match as its wire bytes (`host X` alone does not match
            # a tagged frame), so those are checked again, as bytes, in user space.
            user = bpf.compile_filter(spec, linktype=linktype, snaplen=snaplen)
            tagged = True
    if cooked:
        kernel = bpf.kernel_program(user, linktype)
    if kernel is None:
        return CaptureFilter(spec, snaplen_only(snaplen), user, True)
    return CaptureFilter(spec, kernel.as_bytes(), user, False, tagged)
