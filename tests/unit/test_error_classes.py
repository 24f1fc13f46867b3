"""The exception tree: one base for everything zcap raises, CaptureError only for capturing."""

import inspect
import subprocess
import sys

import zcap
from zcap import errors

CAPTURE = {"CaptureClosedError", "CapturePermissionError", "InterfaceNotFoundError", "InterfaceDownError",
           "InterfaceGoneError", "TimestampTypeError", "RingAllocationError", "RingCorruptionError",
           "StaleBatchError", "FilterError", "FanoutError", "WorkerError"}
NOT_CAPTURE = {"SavefileError", "TruncatedSavefileError", "SavefileWriteError", "DecodeError",
               "FrameRejectedError", "TransmitTimeoutError"}


def _public_exceptions():
    return {name: obj for name in zcap.__all__
            if inspect.isclass(obj := getattr(zcap, name)) and issubclass(obj, BaseException)}


def test_every_public_exception_is_a_zcap_error():
    found = _public_exceptions()
    assert CAPTURE | NOT_CAPTURE <= set(found)
    stray = [name for name, cls in found.items()
             if not issubclass(cls, (zcap.ZcapError, Warning))]
    assert not stray, f"derive these from zcap.ZcapError: {stray}"


def test_capture_error_names_only_errors_of_capturing():
    found = _public_exceptions()
    assert {n for n, c in found.items() if issubclass(c, zcap.CaptureError)} == CAPTURE | {"CaptureError"}


def test_a_savefile_error_is_caught_as_zcap_error_not_capture_error():
    try:
        raise errors.SavefileError("f: at byte offset 0: not a pcap file", 0)
    except zcap.CaptureError:                          # pragma: no cover - the failure case
        raise AssertionError("a savefile error is not an error of capturing") from None
    except zcap.ZcapError as exc:
        assert isinstance(exc, ValueError) and exc.offset == 0


def test_the_command_reports_a_bad_file_read_with_a_filter_as_bad_input(tmp_path):
    """`zcap -r FILE EXPR` on a file that is not a capture: exit 3 (bad input) with the
    savefile error's message, not exit 6 (a filter problem) - SavefileError is not a
    CaptureError any more, and the command still knows it for one of its own."""
    bad = tmp_path / "notes.pcap"
    bad.write_bytes(b"this is not a capture file at all\n")
    r = subprocess.run([sys.executable, "-m", "zcap", "-r", str(bad), "tcp"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr and str(bad) in r.stderr and "filter" not in r.stderr, r.stderr
