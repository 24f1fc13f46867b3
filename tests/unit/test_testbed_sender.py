"""The test rig's C traffic generator (zcap._testbed): argument checks and errors, no socket needed."""

import errno
import os

import pytest

from zcap import _testbed


def test_a_failing_socket_is_an_oserror_naming_the_call():
    r, w = os.pipe()                     # not a socket: sendmmsg fails with ENOTSOCK
    try:
        with pytest.raises(OSError) as info:
            _testbed.send_sequence(w, bytes(64), 14, 0, 3, max_seconds=1.0)
    finally:
        os.close(r)
        os.close(w)
    assert info.value.errno == errno.ENOTSOCK
    assert str(info.value).startswith(f"[Errno {errno.ENOTSOCK}] sendmmsg after 0 frames: ")


def test_the_sequence_number_must_fit_the_frame():
    with pytest.raises(ValueError, match="does not fit a 20-byte frame"):
        _testbed.send_sequence(-1, bytes(20), 14, 0, 1)
    with pytest.raises(ValueError, match="count"):
        _testbed.send_sequence(-1, bytes(64), 14, 0, -1)
