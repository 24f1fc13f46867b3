"""zcap: zero-copy packet capture for Python on Linux (AF_PACKET TPACKET_V3)."""

from zcap._bpf import BPFProgram
from zcap._enums import Direction, LinkType, PacketType
from zcap._headers import (
    FRAG_DONT,
    FRAG_MORE,
    HDR_FRAGMENT,
    HDR_MALFORMED,
    HDR_TRUNCATED,
    HDR_UNSUPPORTED_LINK,
    AddressSet,
    FlowTable,
    Headers,
)
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
    SavefileWriteError,
    StaleBatchError,
    TimestampTypeError,
    TransmitTimeoutError,
    TruncatedSavefileError,
    UserSpaceFilterWarning,
    ZcapError,
)
from zcap.fanout import Fanout, FanoutError
from zcap.inject import Injector, open_inject
from zcap.interfaces import Interface, interfaces
from zcap.offline import open_offline
from zcap.pool import Pool, PoolStats, WorkerError
from zcap.savefile import open_writer
from zcap.stats import Stats
from zcap.version import __version__ as __version__  # the "as" marks a re-export

__all__ = [
    "open_live",
    "open_offline",
    "open_writer",
    "open_inject",
    "interfaces",
    "Interface",
    "Injector",
    "compile_filter",
    "BPFProgram",
    "Capture",
    "Fanout",
    "FanoutError",
    "Pool",
    "PoolStats",
    "WorkerError",
    "Packet",
    "Batch",
    "Headers",
    "AddressSet",
    "FlowTable",
    "HDR_TRUNCATED",
    "HDR_MALFORMED",
    "HDR_FRAGMENT",
    "HDR_UNSUPPORTED_LINK",
    "FRAG_MORE",
    "FRAG_DONT",
    "Stats",
    "RingGeometry",
    "Direction",
    "PacketType",
    "LinkType",
    "ZcapError",
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
    "TimestampTypeError",
    "SavefileError",
    "SavefileWriteError",
    "TruncatedSavefileError",
    "DecodeError",
    "FrameRejectedError",
    "TransmitTimeoutError",
    "UserSpaceFilterWarning",
    "retained_memory",
    "set_snapshot_limit",
]
