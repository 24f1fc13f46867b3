"""Type stubs for the transmit ring (zcap/_tx.pyx)."""

from typing import Any, Iterable

from typing_extensions import disjoint_base

TX_DATA_OFFSET: int
ETH_HLEN: int
VLAN_HLEN: int

@disjoint_base
class TxRing:
    """A packet socket's transmit ring of TPACKET_V2 frames; the producer side."""

    frame_size: int
    frame_count: int
    block_size: int
    max_len: int
    max_len_vlan: int
    mtu: int
    ifname: str
    qdisc_bypass: bool
    batch: int

    def __new__(cls, fd: int, *, ifname: str, ifindex: int, mtu: int, frame_size: int,
                frame_count: int, block_size: int, qdisc_bypass: bool = ..., batch: int = ...) -> TxRing: ...
    @property
    def closed(self) -> bool: ...
    def fileno(self) -> int: ...
    def put(self, frame: Any, flush: bool = ..., timeout: float = ...) -> None: ...
    def put_many(self, frames: Iterable[Any], timeout: float = ...) -> int: ...
    def flush(self, wait: bool = ..., timeout: float = ...) -> int: ...
    def send_sequence(self, template: Any, seq_offset: int, first_seq: int, count: int,
                      pps: float = ..., mbps: float = ..., max_seconds: float = ...
                      ) -> tuple[int, int, float]: ...
    def send_packets(self, packets: Iterable[Any], pps: float = ..., mbps: float = ...,
                     respect_timestamps: bool = ..., multiplier: float = ..., max_seconds: float = ...
                     ) -> tuple[int, int, float]: ...
    def stats(self) -> dict[str, int]: ...
    def close(self, timeout: float = ...) -> None: ...
