"""Type stubs for the C-speed frame sender (zcap/_tx.pyx)."""

from typing import Union

Buffer = Union[bytes, bytearray, memoryview]

def send_sequence(fd: int, template: Buffer, seq_offset: int, first_seq: int, count: int,
                  pps: float = ..., batch: int = ..., max_seconds: float = ...
                  ) -> tuple[int, float, int]: ...
