"""What a capture attaches for a filter: the kernel's program and its user-space form.

As libpcap does on Linux, a filter has live semantics: it runs on the packet
as the kernel sees it, before zcap puts anything back into the bytes.

* Ethernet: the kernel strips the outer VLAN tag into metadata (also on a
  veth), so `vlan` tests compile to the kernel's VLAN extensions
  (SKF_AD_VLAN_TAG_PRESENT / SKF_AD_VLAN_TAG) and everything else tests the
  untagged bytes: `ip` keeps a tagged IPv4 packet, `vlan and vlan` needs two
  tags on the wire, exactly as a live `tcpdump -i IFACE EXPR` does.  The tag
  is then reinserted (the default), so the same filter does not always match
  the delivered wire bytes the way `tcpdump -r` would; neither does tcpdump's.
* cooked link types: loads from the cooked header become ancillary loads and
  the rest move back by its length (zcap.bpf.kernel_program); when that is
  impossible the kernel only truncates and the filter runs in user space.
* programs Linux refuses (backward jumps from `protochain`, reads of scratch
  words not written first, libpcap issue #834): the kernel only truncates and
  zcap runs the program in the ring walker (zcap._bpf.bpf_run, unset scratch
  words read as 0), with the metadata the kernel's ancillary loads would read.

The user-space form runs on the kernel's view (the cooked header synthesized,
no tag reinserted yet), on every packet when `location` is "user", and on
units a previous filter may have filled (see Ring.set_filter), so a filter
change never lets a packet through that the new filter rejects.
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
    user: Optional[bpf.BPFProgram]      # the filter on the kernel's view (None: no filter)
    user_only: bool                     # the kernel cannot run it: filter in user space
    reason: Optional[str] = None        # why it runs in user space

    @property
    def location(self) -> Optional[str]:
        """Where the filter runs: "kernel", "user" (in the ring walker) or None (no filter)."""
        if self.spec is None:
            return None
        return "user" if self.user_only else "kernel"

    def in_user_space(self, snaplen: int, reason: str) -> CaptureFilter:
        """The same filter, run in user space (the kernel refused it: `reason`)."""
        return CaptureFilter(self.spec, snaplen_only(snaplen), self.user, True, reason)

    def warning(self) -> str:
        """The one-line warning a capture gives when the filter runs in user space."""
        return (f"filter {self.spec!r} runs in user space (zcap's BPF engine in the ring "
                f"walker; the kernel passes every packet up to the snaplen): {self.reason}")


def for_capture(spec: Any, *, linktype: int, snaplen: int, reinsert_vlan: bool,
                interface: str, netns: Any) -> CaptureFilter:
    """Compile or parse `spec` for a capture; FilterError if it is not valid.

    reinsert_vlan does not change the program: filters keep libpcap's live
    semantics either way (see the module docstring).
    """
    if spec is None:
        return CaptureFilter(None, snaplen_only(snaplen), None, False)
    cooked = linktype in (LinkType.LINUX_SLL, LinkType.LINUX_SLL2)
    ethernet = linktype == LinkType.ETHERNET
    if is_raw_program(spec):
        user = bpf.BPFProgram.parse(spec, linktype=linktype, snaplen=snaplen)
    else:
        user = bpf.compile_filter(spec, linktype=linktype, snaplen=snaplen,
                                  linux_vlan=ethernet, netns=netns,
                                  device=interface if ethernet else None)
    if user.kernel_refusal is not None:
        return CaptureFilter(spec, snaplen_only(snaplen), user, True,
                             f"Linux refuses the program: {user.kernel_refusal}")
    kernel: Optional[bpf.BPFProgram] = user
    if cooked:
        kernel = bpf.kernel_program(user, linktype)
    if kernel is None or kernel.kernel_refusal is not None:
        return CaptureFilter(spec, snaplen_only(snaplen), user, True,
                             "its loads from the cooked header cannot be rewritten for the "
                             "kernel's view of the packet (see zcap.bpf.kernel_program)")
    return CaptureFilter(spec, kernel.as_bytes(), user, False)
