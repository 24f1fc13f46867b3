"""Type stubs for the header parser, address sets and flow tables (zcap/_headers.pyx)."""

from collections.abc import Callable, Iterable
from typing import Any, Optional, Union, final

_Buffer = Any        # anything with the buffer protocol (collections.abc.Buffer from 3.12)

HDR_TRUNCATED: int
HDR_MALFORMED: int
HDR_UNSUPPORTED_LINK: int
HDR_FRAGMENT: int
FRAG_MORE: int
FRAG_DONT: int
COLUMNS: tuple[str, ...]
COLUMN_GROUPS: dict[str, tuple[str, ...]]

_Inputs = tuple[_Buffer, _Buffer, _Buffer, Union[int, _Buffer],
                Union[None, _Buffer, Callable[[], Optional[_Buffer]]]]

@final
class Headers:
    """Per-packet header columns of one batch, computed in C by group when first asked for."""

    @property
    def n(self) -> int: ...
    def __new__(cls, inputs: Callable[[], _Inputs], n: int) -> Headers: ...
    def __len__(self) -> int: ...
    def column(self, name: str) -> memoryview: ...
    def columns(self) -> dict[str, memoryview]: ...
    def compute(self, *names: str) -> Headers: ...
    @property
    def computed(self) -> tuple[str, ...]: ...
    link_type: memoryview
    ethertype: memoryview
    vlan_outer: memoryview
    vlan_inner: memoryview
    mpls_label: memoryview
    ip_version: memoryview
    ip_src: memoryview
    ip_dst: memoryview
    ip6_src: memoryview
    ip6_dst: memoryview
    ttl: memoryview
    ip_len: memoryview
    proto: memoryview
    frag_flags: memoryview
    frag_offset: memoryview
    sport: memoryview
    dport: memoryview
    tcp_flags: memoryview
    icmp_type: memoryview
    icmp_code: memoryview
    l3_offset: memoryview
    l4_offset: memoryview
    payload_offset: memoryview
    payload_len: memoryview
    parse_flags: memoryview
    flow_hash: memoryview

def parse(buffer: _Buffer, offsets: _Buffer, caplen: _Buffer, linktype: Union[int, _Buffer] = 1,
          vlan: Optional[_Buffer] = None) -> Headers: ...
def headers_of(inputs: Callable[[], _Inputs], n: int) -> Headers: ...

@final
class AddressSet:
    """IPv4 and IPv6 addresses, looked up in C."""

    def __new__(cls, iterable: Iterable[Any] = ...) -> AddressSet: ...
    def add(self, address: Any) -> None: ...
    def add_ipv4_array(self, values: _Buffer) -> None: ...
    def __contains__(self, address: Any, /) -> bool: ...
    def __len__(self) -> int: ...
    @property
    def memory_bytes(self) -> int: ...

@final
class FlowTable:
    """Per-flow packet counts across batches, bounded memory, LRU within 8-way sets."""

    def __new__(cls, max_flows: int, *, bidirectional: bool = True) -> FlowTable: ...
    @property
    def max_flows(self) -> int: ...
    @property
    def bidirectional(self) -> bool: ...
    @property
    def evictions(self) -> int: ...
    @property
    def flows(self) -> int: ...
    @property
    def memory_bytes(self) -> int: ...
    def clear(self) -> None: ...
    def __len__(self) -> int: ...

def select(h: Headers, addresses: Optional[Union[AddressSet, Iterable[Any]]] = None,
           flow_heads: Optional[int] = None, flows: Optional[FlowTable] = None) -> memoryview: ...
def binary_views(buffer: _Buffer, offsets: _Buffer, caplen: _Buffer) -> bytearray: ...
def _use_fast_path(on: bool) -> None: ...
