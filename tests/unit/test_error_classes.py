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


def _own_init(cls) -> bool:
    return any("__init__" in vars(k) for k in cls.__mro__
               if k.__module__.startswith("zcap") and issubclass(k, BaseException))


def test_an_exception_with_its_own_constructor_says_how_to_pickle_it():
    """A pool worker's exception reaches the parent pickled: the default
    reduce calls the class with self.args, which a constructor of its own
    may not accept (SavefileWriteError's did not: a full disk in a worker
    came back as no exception at all)."""
    from zcap.dumper import LinkTypeMismatch
    found = dict(_public_exceptions(), LinkTypeMismatch=LinkTypeMismatch)
    missing = [name for name, cls in found.items()
               if _own_init(cls) and not any("__reduce__" in vars(k) for k in cls.__mro__
                                             if k.__module__.startswith("zcap"))]
    assert not missing, f"define __reduce__ for: {missing}"


def test_exceptions_with_their_own_fields_pickle_whole():
    import errno
    import pickle

    from zcap.dumper import LinkTypeMismatch
    examples = [
        (zcap.SavefileWriteError(errno.ENOSPC, "cannot write /x: No space left on device",
                                 filename="/x", packets_written=60, packets_lost=3),
         ("errno", "strerror", "filename", "packets_written", "packets_lost")),
        (zcap.SavefileError("bad record", 1234), ("args", "offset")),
        (zcap.TruncatedSavefileError("cut", 99), ("args", "offset")),
        (LinkTypeMismatch([1, 113]), ("args", "linktypes")),
        (zcap.WorkerError("worker 1 (pid 7) raised X", worker=1, pid=7, traceback="tb",
                          exception=ValueError("x")), ("args", "worker", "pid", "traceback")),
    ]
    for exc, fields in examples:
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc)
        assert [getattr(back, f) for f in fields] == [getattr(exc, f) for f in fields]
