"""zcap: zero-copy packet capture for Python on Linux (AF_PACKET TPACKET_V3)."""

from zcap._bpf import BPFProgram
from zcap._enums import Direction, LinkType, PacketType
from zcap._ring import Batch, Packet, retained_memory, set_snapshot_limit
from zcap.bpf import compile_filter
from zcap.capture import Capture, RingGeometry, open_live
from zcap.errors import (
    CaptureClosedError,
    CaptureError,
    CapturePermissionError,
    DecodeError,
    FilterError,
    FrameRejectedError,
    InterfaceDownError,
    InterfaceGoneError,
    InterfaceNotFoundError,
    RingAllocationError,
    RingCorruptionError,
    SavefileError,
    StaleBatchError,
    TransmitTimeoutError,
    TruncatedSavefileError,
)
from zcap.inject import Injector, open_inject
from zcap.offline import open_offline
from zcap.savefile import open_writer
from zcap.stats import Stats

__version__ = "0.1.0"

__all__ = [
    "open_live",
    "open_offline",
    "open_writer",
    "open_inject",
    "Injector",
    "compile_filter",
    "BPFProgram",
    "Capture",
    "Packet",
    "Batch",
    "Stats",
    "RingGeometry",
    "Direction",
    "PacketType",
    "LinkType",
    "CaptureError",
    "CaptureClosedError",
    "CapturePermissionError",
    "FilterError",
    "InterfaceNotFoundError",
    "InterfaceDownError",
    "InterfaceGoneError",
    "RingAllocationError",
    "RingCorruptionError",
    "StaleBatchError",
    "SavefileError",
    "TruncatedSavefileError",
    "DecodeError",
    "FrameRejectedError",
    "TransmitTimeoutError",
    "retained_memory",
    "set_snapshot_limit",
]
