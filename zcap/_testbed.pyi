"""Type stubs for the test rig's traffic generator (zcap/_testbed.pyx)."""

from typing import Union

_Buffer = Union[bytes, bytearray, memoryview]

def send_sequence(fd: int, template: _Buffer, seq_offset: int, first_seq: int, count: int,
                  pps: float = ..., batch: int = ..., max_seconds: float = ...
                  ) -> tuple[int, float, int]: ...
