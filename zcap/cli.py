"""The `zcap` command: tcpdump-like capture, plus `zcap demo` and `zcap replay`.

    zcap -i eth0 -c 100 'tcp port 80'          print packets like tcpdump -n
    zcap -i any -w out.pcapng --format pcapng  write a savefile
    zcap -r out.pcap 'udp'                     read one (filtered in user space)
    zcap demo                                  a live demo on a private veth pair
    zcap replay FILE -i IFACE [--pps N]        send a savefile's packets

Stopping with Ctrl-C loses nothing the kernel had accepted: zcap stops the
kernel from accepting more, waits (at most two block timeouts) for the block
it is still filling, and only then writes the summary, so every packet
"received by filter" is in the file and in "packets captured".

Exit codes: 0 done, 1 unexpected error, 2 bad arguments, 3 unreadable or bad
input file, 4 interface problem (unknown, down, gone), 5 missing privilege,
6 bad filter, 7 output cannot be written.
"""

from __future__ import annotations

import argparse
import os
import pwd
import signal
import sys
import time
import warnings
from typing import Any, Optional

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INPUT = 0, 1, 2, 3
EXIT_INTERFACE, EXIT_PERMISSION, EXIT_FILTER, EXIT_OUTPUT = 4, 5, 6, 7

SUBCOMMANDS = ("demo", "replay")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:           # bad flags: exit code 2, as tcpdump
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: {message}\n")


def capture_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="zcap", description="zero-copy packet capture (tcpdump-like)",
                epilog="subcommands: zcap demo [-c N], zcap replay FILE -i IFACE ...")
    p.add_argument("-i", "--interface", default="any",
                   help="interface to capture on (default: any)")
    p.add_argument("-c", "--count", type=int, help="exit after this many packets")
    p.add_argument("-w", "--write", metavar="FILE", help="write packets to a savefile ('-': stdout)")
    p.add_argument("--format", choices=("pcap", "pcapng", "parquet", "arrow"), default=None,
                   help="format for -w (default: parquet for .parquet, arrow for .arrow/.feather, "
                        "else pcap; parquet and arrow need pyarrow)")
    p.add_argument("-r", "--read", metavar="FILE", help="read packets from a pcap/pcapng file")
    p.add_argument("-s", "--snaplen", type=int, default=0,
                   help="bytes to keep per packet (0: 262144, as tcpdump)")
    p.add_argument("-B", "--buffer-size", type=int, metavar="KiB",
                   help="ring size in KiB (default 32768)")
    p.add_argument("-p", "--no-promiscuous-mode", action="store_true",
                   help="do not put the interface in promiscuous mode")
    p.add_argument("-Q", "--direction", choices=("in", "out", "inout"), default="inout")
    p.add_argument("-n", action="count", default=0, help="accepted for tcpdump compatibility "
                   "(zcap never resolves names)")
    p.add_argument("-e", action="store_true", help="print the link-level header")
    p.add_argument("-C", dest="file_size", type=float, metavar="MB",
                   help="start a new file when the current one is larger than MB x 1,000,000 bytes")
    p.add_argument("-G", dest="rotate_seconds", type=float, metavar="SECONDS",
                   help="start a new file every SECONDS (-w may hold strftime patterns)")
    p.add_argument("-Z", "--relinquish-privileges", dest="user", metavar="USER",
                   help="drop privileges to USER once the capture is open (before -w files are made)")
    p.add_argument("--time-stamp-precision", choices=("micro", "nano"), default="micro")
    p.add_argument("--nano", dest="time_stamp_precision", action="store_const", const="nano",
                   help="same as --time-stamp-precision=nano")
    p.add_argument("--immediate-mode", action="store_true", help="deliver each packet at once")
    p.add_argument("--mode", choices=("ring", "copy"), default="ring")
    p.add_argument("--netns", help="capture inside this network namespace (ip netns name or path)")
    p.add_argument("--stats", action="store_true",
                   help="show a live line: packets/s, Mbit/s, drops, ring occupancy")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print packets")
    p.add_argument("expression", nargs="*", help="a tcpdump filter expression")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SUBCOMMANDS:
        return _subcommand(argv[0], argv[1:])
    args = capture_parser().parse_args(argv)
    try:
        return _run(args)
    except BrokenPipeError:                    # `zcap ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _subcommand(name: str, argv: list[str]) -> int:
    if name == "demo":
        p = _Parser(prog="zcap demo", description="capture generated traffic on a private veth pair")
        p.add_argument("-c", "--count", type=int, default=20000, help="frames to send (default 20000)")
        p.add_argument("--show", type=int, default=10, help="packets to print (default 10)")
        p.add_argument("--mode", choices=("ring", "copy", "immediate"), default="ring")
        args = p.parse_args(argv)
        from zcap.demo import run_demo
        return run_demo(count=args.count, show=args.show, mode=args.mode)
    from zcap import replay
    return replay.main(argv)


def _fail(code: int, message: str) -> int:
    sys.stderr.write(f"zcap: {message}\n")
    return code


def _exit_code(exc: BaseException) -> int:
    from zcap import errors
    if isinstance(exc, errors.FilterError):
        return EXIT_FILTER
    if isinstance(exc, (errors.InterfaceNotFoundError, errors.InterfaceDownError)):
        return EXIT_INTERFACE
    if isinstance(exc, (errors.CapturePermissionError, PermissionError)):
        return EXIT_PERMISSION
    if isinstance(exc, (errors.SavefileError, FileNotFoundError, IsADirectoryError)):
        return EXIT_INPUT
    return EXIT_ERROR


def drop_privileges(user: str) -> None:
    """Become `user` (tcpdump -Z): supplementary groups, group, then user."""
    entry = pwd.getpwnam(user)
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)


def _open_source(args: argparse.Namespace, expression: Optional[str]) -> Any:
    import zcap
    if args.read:
        from zcap.offline import open_offline
        return open_offline(sys.stdin.buffer if args.read == "-" else args.read, filter=expression)
    snaplen = args.snaplen or zcap.capture.MAX_SNAPLEN
    opts: dict[str, Any] = dict(snaplen=snaplen, filter=expression, direction=args.direction,
                                promisc=not args.no_promiscuous_mode and args.interface != "any",
                                mode=args.mode, immediate=args.immediate_mode, netns=args.netns)
    if args.buffer_size:
        block = zcap.capture.DEFAULT_BLOCK_SIZE
        opts["block_count"] = max(2, -(-args.buffer_size * 1024 // block))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", zcap.UserSpaceFilterWarning)
        source = zcap.open_live(args.interface, **opts)
    for w in caught:                        # e.g. a filter the kernel refuses: one line
        sys.stderr.write(f"zcap: warning: {w.message}\n")
    return source


def _run(args: argparse.Namespace) -> int:
    # Everything the capture will need is imported here, before -Z drops
    # privileges: a checkout or venv under /root is unreadable afterwards.
    from zcap.dumper import Dumper
    from zcap.printer import LiveStats, PacketPrinter
    expression = " ".join(args.expression) or None
    if args.count is not None and args.count <= 0:
        return _fail(EXIT_USAGE, "-c needs a positive count")
    if args.snaplen < 0 or args.snaplen > 262144:
        return _fail(EXIT_USAGE, f"invalid snaplen {args.snaplen}: between 0 and 262144")
    if (args.file_size or args.rotate_seconds) and not args.write:
        return _fail(EXIT_USAGE, "-C and -G need -w")
    if args.write == "-" and (args.file_size or args.rotate_seconds):
        return _fail(EXIT_USAGE, "cannot rotate standard output")
    args.format = _output_format(args.format, args.write)
    if args.format in ("parquet", "arrow"):
        try:
            import zcap.arrow
            zcap.arrow.require_pyarrow()
            import pyarrow.ipc  # type: ignore[import-untyped]  # noqa: F401  (now: -Z may forbid it later)
            import pyarrow.parquet  # type: ignore[import-untyped]  # noqa: F401
        except ImportError as exc:
            return _fail(EXIT_USAGE, f"cannot write {args.format}: {exc}")
    try:
        source = _open_source(args, expression)
    except ValueError as exc:              # bad geometry / options
        from zcap import errors
        if isinstance(exc, errors.CaptureError):
            return _fail(_exit_code(exc), str(exc))
        return _fail(EXIT_USAGE, str(exc))
    except (OSError, Exception) as exc:
        return _fail(_exit_code(exc), str(exc))
    live = not args.read
    try:
        if args.user:
            try:
                drop_privileges(args.user)
            except (KeyError, PermissionError) as exc:
                return _fail(EXIT_PERMISSION, f"cannot become user {args.user!r}: {exc}")
        linktype = int(source.linktype or 1)
        snaplen = int(source.snaplen or 262144)
        if live:
            sys.stderr.write(f"zcap: listening on {args.interface}, link-type "
                             f"{getattr(source.linktype, 'name', linktype)}, snapshot length "
                             f"{snaplen} bytes\n")
        else:
            sys.stderr.write(f"reading from file {args.read}, link-type {linktype}\n")
        sys.stderr.flush()
        dumper = None
        if args.write:
            try:
                writer = _writer_class(args.format, Dumper)
                dumper = writer(args.write, format=args.format, linktype=linktype, snaplen=snaplen,
                                nano=args.time_stamp_precision == "nano",
                                if_name=args.interface if live else None,
                                file_size=int(args.file_size * 1_000_000) if args.file_size else None,
                                rotate_seconds=args.rotate_seconds)
            except OSError as exc:
                return _fail(EXIT_OUTPUT, f"cannot write {args.write}: {exc.strerror or exc}")
        printer = None
        if not args.write and not args.quiet:
            printer = PacketPrinter(sys.stdout, nano=args.time_stamp_precision == "nano",
                                    link_header=args.e, any_device=live and args.interface == "any",
                                    netns=args.netns)
        live_stats = LiveStats() if args.stats else None
        return _loop(source, args, dumper, printer, live_stats, live)
    finally:
        source.close()


def _output_format(given: Optional[str], path: Optional[str]) -> str:
    """--format, else the suffix of -w for Arrow formats (.parquet, .arrow/.feather), else pcap."""
    if given:
        return given
    suffix = os.path.splitext(path or "")[1].lower()
    return {".parquet": "parquet", ".arrow": "arrow", ".feather": "arrow"}.get(suffix, "pcap")


def _writer_class(fmt: str, pcap_dumper: Any) -> Any:
    if fmt in ("parquet", "arrow"):
        from zcap.arrow import TableDumper
        return TableDumper
    return pcap_dumper


def _loop(source: Any, args: argparse.Namespace, dumper: Any, printer: Any, live_stats: Any,
          live: bool) -> int:
    captured = 0
    stats = None
    interrupted = False

    def handle(pkt: Any) -> None:
        nonlocal captured
        captured += 1
        if dumper is not None:
            dumper.write(pkt)
        if printer is not None:
            printer(pkt)
        if live_stats is not None:
            live_stats.count(pkt)

    # Wake up now and then even without packets: live stats, -G rotation,
    # and flushing a quiet savefile so a crash cannot lose what it holds.
    periodic = live and (live_stats is not None or dumper is not None)
    stop = _StopOnSigint(source.ring) if live else None
    try:
        try:
            while (args.count is None or captured < args.count) and not (stop and stop.requested):
                pkt = source.next(timeout=0.2 if periodic else None)
                if pkt is None:
                    if not live or source.closed:
                        break                       # end of file / closed
                else:
                    handle(pkt)
                if periodic:
                    if dumper is not None:
                        dumper.tick()
                    if live_stats is not None:
                        live_stats.maybe_show(source.stats())
        except KeyboardInterrupt:                   # reading a file: Ctrl-C just ends it
            interrupted = True
        if stop is not None:
            interrupted = stop.requested
            # a second Ctrl-C while finishing up ends at once
            signal.signal(signal.SIGINT, signal.SIG_DFL)
        if live and (interrupted or args.count is None):
            _drain_accepted(source, handle, args.count, lambda: captured)
        stats = source.stats()
    except OSError as exc:
        if dumper is not None and getattr(exc, "filename", None):
            return _fail(EXIT_OUTPUT, f"cannot write {exc.filename}: {exc.strerror}")
        return _fail(_exit_code(exc), str(exc))
    except Exception as exc:
        from zcap import errors
        if isinstance(exc, errors.CaptureError):
            return _fail(_exit_code(exc), str(exc))
        raise
    finally:
        if dumper is not None:
            dumper.close()
        if live_stats is not None:
            live_stats.finish()
        if printer is not None:
            sys.stdout.flush()
    if live:
        sys.stderr.write(f"{captured} packets captured\n{stats.received} packets received by filter\n"
                         f"{stats.dropped} packets dropped by kernel\n")
        if stats.filtered:
            sys.stderr.write(f"{stats.filtered} packets filtered in user space\n")
    return EXIT_OK


class _StopOnSigint:
    """Ctrl-C during a live capture: a flag and a breakloop(), never an exception.

    A KeyboardInterrupt could land between taking a packet from the ring and
    writing it, losing a packet the kernel counted as received by the
    filter; the flag is read only between packets, and breakloop() ends a
    wait in poll() at once.
    """

    def __init__(self, ring: Any) -> None:
        self.requested = False
        self._ring = ring
        signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self.requested = True
        self._ring.breakloop()


def _drain_accepted(cap: Any, handle: Any, limit: Optional[int], captured: Any) -> None:
    """After a stop: take every packet the kernel already accepted, then stop.

    A reject-all filter first keeps new packets out (unless the filter is
    locked); the block the kernel is still filling is retired within one
    block timeout, so the wait is bounded by two.
    """
    from zcap.filters import snaplen_only
    ring = cap.ring
    if not ring.filter_locked:
        ring.set_filter(snaplen_only(0), None)          # `ret #0`: accept nothing
    deadline = time.monotonic() + 2 * cap.geometry.timeout_ms / 1000 + 0.1
    while time.monotonic() < deadline and (limit is None or captured() < limit):
        s = cap.stats()
        if s.delivered + s.dropped + s.filtered + s.skipped >= s.received:
            break
        pkt = cap.next(timeout=max(0.0, min(0.05, deadline - time.monotonic())))
        if pkt is not None:
            handle(pkt)


if __name__ == "__main__":
    sys.exit(main())
