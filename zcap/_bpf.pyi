"""Type stubs for the classic BPF programs and engine (zcap/_bpf.pyx)."""

from typing import Any, Iterable, Optional, Sequence, Union

from typing_extensions import disjoint_base

_Instruction = tuple[int, int, int, int]

RUN_BUDGET: int

@disjoint_base
class BPFProgram:
    """A validated classic BPF program: attach it to a socket, or run it here."""

    @property
    def uses_ancillary(self) -> bool:
        """It has Linux ancillary loads (ld [SKF_AD_OFF + n]); libpcap's bpf_filter() lacks them."""
    @property
    def kernel_only(self) -> bool:
        """It reads kernel state no user space has (SKF_AD_RANDOM, ...): match() refuses it."""
    @property
    def kernel_refusal(self) -> Optional[str]:
        """Why Linux refuses to attach it (a backward jump, a scratch word read before it is
        written), or None; match() and captures run such programs in user space."""
    @property
    def kernel_ok(self) -> bool:
        """Linux attaches it: kernel_refusal is None."""
    def __init__(self, instructions: Iterable[Sequence[int]], *, linktype: int = ...,
                 snaplen: Optional[int] = ..., expression: Optional[str] = ...) -> None: ...
    @classmethod
    def from_tuples(cls, instructions: Iterable[Sequence[int]], *, linktype: int = ...,
                    snaplen: Optional[int] = ..., expression: Optional[str] = ...) -> BPFProgram: ...
    @classmethod
    def from_text(cls, text: str, *, linktype: int = ..., snaplen: Optional[int] = ...) -> BPFProgram: ...
    @classmethod
    def from_bytes(cls, data: Union[bytes, bytearray, memoryview], *, linktype: int = ...,
                   snaplen: Optional[int] = ..., expression: Optional[str] = ...) -> BPFProgram: ...
    @classmethod
    def parse(cls, obj: Any, *, linktype: int = ..., snaplen: Optional[int] = ...) -> BPFProgram: ...
    @property
    def instructions(self) -> tuple[_Instruction, ...]: ...
    @property
    def linktype(self) -> int: ...
    @property
    def snaplen(self) -> Optional[int]: ...
    @property
    def expression(self) -> Optional[str]: ...
    def __len__(self) -> int: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def as_bytes(self) -> bytes: ...
    def dump(self) -> str: ...
    def dump_ddd(self) -> str: ...
    def match(self, buf: Any, wirelen: Optional[int] = ..., *, vlan_tci: Optional[int] = ...,
              vlan_tpid: int = ..., ifindex: int = ..., protocol: int = ..., pkttype: int = ...,
              hatype: int = ..., mark: int = ..., rxhash: int = ..., queue: int = ...,
              net_offset: Optional[int] = ...) -> int: ...
