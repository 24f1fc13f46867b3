"""Type stubs for the C pcap record walker (zcap/_records.pyx)."""

from typing import Any

NEED_HEADER: int
NEED_DATA: int
TOO_LONG: int

def pcap_records(buf: Any, pos: int, end: int, hlen: int, big_endian: bool, scale: int, limit: int,
                 offsets: Any, caplen: Any, wirelen: Any, ts_ns: Any) -> tuple[int, int, int]: ...
