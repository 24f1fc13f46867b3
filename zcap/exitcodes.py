"""The exit codes of the `zcap` command and its subcommands, and the error line they print.

    0 done                      4 interface problem (unknown, gone, down, no namespace)
    1 unexpected error          5 missing privilege
    2 bad arguments             6 bad filter
    3 unreadable or bad input   7 output cannot be written
  130 interrupted (zcap replay; any command by a Ctrl-C before it captures)

zcap.cli, zcap.cliopts, zcap.pool_cli and zcap.replay take them from here, so
no command module imports another for its numbers.
"""

from __future__ import annotations

import sys

__all__ = ["EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_INPUT", "EXIT_INTERFACE", "EXIT_PERMISSION",
           "EXIT_FILTER", "EXIT_OUTPUT", "EXIT_INTERRUPTED", "fail", "exit_code"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INPUT = 0, 1, 2, 3
EXIT_INTERFACE, EXIT_PERMISSION, EXIT_FILTER, EXIT_OUTPUT = 4, 5, 6, 7
EXIT_INTERRUPTED = 130              # Ctrl-C, as a shell reports SIGINT


def fail(code: int, message: str, prog: str = "zcap") -> int:
    """Print `prog: message` on stderr and return `code` (for `return fail(...)`)."""
    sys.stderr.write(f"{prog}: {message}\n")
    return code


def exit_code(exc: BaseException) -> int:
    """The exit code for an exception that ends a command."""
    from zcap import errors
    if isinstance(exc, errors.FilterError):
        return EXIT_FILTER
    if isinstance(exc, (errors.InterfaceNotFoundError, errors.InterfaceDownError,
                        errors.TimestampTypeError)):
        return EXIT_INTERFACE
    if isinstance(exc, (errors.CapturePermissionError, PermissionError)):
        return EXIT_PERMISSION
    if isinstance(exc, (errors.SavefileError, FileNotFoundError, IsADirectoryError)):
        return EXIT_INPUT
    if isinstance(exc, errors.SavefileWriteError):
        return EXIT_OUTPUT
    return EXIT_ERROR
