"""The `zcap` command: tcpdump-like capture, plus `zcap demo`, `zcap replay` and `zcap merge`.

    zcap -i eth0 -c 100 'tcp port 80'          print packets like tcpdump -n
    zcap -i any -w out.pcapng --format pcapng  write a savefile
    zcap -r out.pcap 'udp'                     read one (filtered in user space)
    zcap demo                                  a live demo on a private veth pair
    zcap replay FILE -i IFACE [--pps N]        send a savefile's packets
    zcap -i eth0 --workers 4 -w 'cap-{worker}.pcap'   one file per worker (zcap.Pool)
    zcap merge -w all.pcap cap-*.pcap          merge savefiles by timestamp

Stopping with Ctrl-C or SIGTERM loses nothing the kernel had accepted:
zcap calls Capture.stop() (the kernel accepts no more packets), writes every
packet already accepted, however large the backlog, and only then prints the
summary, so every packet "received by filter" is in the file and in "packets
captured" or counted as dropped.  A second Ctrl-C ends at once; what was not
written then is reported as "abandoned".  A reader that closes the pipe
(`zcap ... | head`) ends zcap quietly, as it ends tcpdump.

Exit codes: 0 done, 1 unexpected error, 2 bad arguments, 3 unreadable or bad
input file, 4 interface problem (unknown, gone, down for longer than the
grace), 5 missing privilege, 6 bad filter, 7 output cannot be written (e.g. a
full disk: the file is cut back to its last whole record); zcap.exitcodes
holds them.
"""

from __future__ import annotations

import argparse
import os
import pwd
import signal
import sys
import warnings
from typing import Any, Optional

from zcap.exitcodes import (
    EXIT_FILTER,
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_OUTPUT,
    EXIT_PERMISSION,
    EXIT_USAGE,
)
from zcap.exitcodes import exit_code as _exit_code
from zcap.exitcodes import fail as _fail
from zcap.linux import MAX_SNAPLEN

SUBCOMMANDS = ("demo", "replay", "merge")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:           # bad flags: exit code 2, as tcpdump
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: {message}\n")


def capture_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="zcap", description="zero-copy packet capture (tcpdump-like)",
                epilog="subcommands: zcap demo [-c N], zcap replay FILE -i IFACE ..., "
                       "zcap merge -w OUT IN...")
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
    # -- more tcpdump options (handled in zcap/cliopts.py) ------------------------
    from zcap import cliopts
    p.add_argument("-D", "--list-interfaces", action="store_true",
                   help="list the interfaces one can capture on, numbered for -i N (-v: details)")
    p.add_argument("-L", "--list-data-link-types", dest="list_linktypes", action="store_true",
                   help="list the interface's link types (for -y)")
    p.add_argument("-J", "--list-time-stamp-types", dest="list_tstamp_types", action="store_true",
                   help="list the interface's timestamp types (for -j)")
    p.add_argument("-j", "--time-stamp-type", dest="tstamp_type", type=str.lower,
                   choices=("host", "adapter", "adapter_unsynced"),
                   help="timestamp source: host (kernel, default), adapter_unsynced (the NIC's clock)")
    p.add_argument("-y", "--linktype", type=cliopts.parse_linktype, metavar="TYPE",
                   help="link type to deliver: EN10MB, RAW, LINUX_SLL or LINUX_SLL2 (-i any)")
    p.add_argument("-d", dest="dump_filter", action="count", default=0,
                   help="print the compiled filter and exit (-dd: as C, -ddd: as numbers)")
    p.add_argument("-x", action="count", default=0,
                   help="print each packet's bytes in hex (-xx: with the link-level header)")
    p.add_argument("-X", action="count", default=0,
                   help="print each packet's bytes in hex and ASCII (-XX: with the link header)")
    p.add_argument("-A", action="count", default=0,
                   help="print each packet's bytes as text (-AA: with the link header)")
    p.add_argument("-v", action="count", default=0,
                   help="more detail: IP header fields, TCP checksums (-vv: UDP's too); "
                        "-D -v: addresses, MTU, ...")
    p.add_argument("-t", action="count", default=0,
                   help="-t: no timestamp, -tt: epoch seconds, -ttt: since the previous packet, "
                        "-tttt: with the date, -ttttt: since the first packet")
    p.add_argument("-S", "--absolute-tcp-sequence-numbers", dest="S", action="store_true",
                   help="print absolute TCP sequence numbers (default: relative, as tcpdump)")
    p.add_argument("-l", action="store_true", help="line-buffer the printed packets (for | grep)")
    p.add_argument("-U", "--packet-buffered", action="store_true",
                   help="write each packet to the -w file as soon as it is captured")
    p.add_argument("-#", "--number", action="store_true", help="print a packet number on each line")
    p.add_argument("-F", dest="filter_file", metavar="FILE", help="read the filter expression from FILE")
    p.add_argument("-W", dest="file_count", type=int, metavar="N",
                   help="with -C/-G: keep a ring of N files, overwriting the oldest")
    p.add_argument("-z", dest="postrotate_command", metavar="COMMAND",
                   help="with -C/-G: run COMMAND FILE on each file once it is closed")
    p.add_argument("--print", action="store_true", help="print packets even when writing with -w")
    p.add_argument("-a", "--append", action="store_true",
                   help="append to the -w file (link type and snaplen must agree)")
    p.add_argument("--comment", help="pcapng: a comment stored in the file's section header")
    p.add_argument("--micro", dest="time_stamp_precision", action="store_const", const="micro",
                   help="same as --time-stamp-precision=micro")
    p.add_argument("--snapshot-length", dest="snaplen", type=int, metavar="SNAPLEN",
                   help="same as -s (tcpdump's long name)")
    p.add_argument("--version", action="version", version=_version_text())
    p.add_argument("--workers", type=int, metavar="N",
                   help="capture with N processes in one fanout group (needs -w with '{worker}')")
    p.add_argument("--fanout", default="hash", choices=("hash", "lb", "cpu", "rollover", "rnd", "qm"),
                   help="how --workers share the packets (default: hash, flow by flow; IP "
                        "fragments are written as they arrived, each datagram's in one file)")
    p.add_argument("expression", nargs="*", help="a tcpdump filter expression")
    cliopts.add_unsupported(p)
    cliopts.group_help(p)
    return p


def _version_text() -> str:
    from zcap.bpf import libpcap_version
    from zcap.version import __version__
    try:
        pcap = libpcap_version()
    except OSError:
        pcap = "libpcap not found"
    return f"zcap version {__version__}, {pcap}"


def main(argv: Optional[list[str]] = None) -> int:
    try:
        return _command(argv)
    except KeyboardInterrupt:       # Ctrl-C before the command installed its own handling
        return EXIT_INTERRUPTED     # (parsing, opening): end quietly, as a shell reports it


def _command(argv: Optional[list[str]]) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SUBCOMMANDS:
        return _subcommand(argv[0], argv[1:])
    args = capture_parser().parse_args(argv)
    from zcap import cliopts
    code = cliopts.prepare(args)                # -i N, -F file: also for -d, -L, -J
    if code is None:
        code = cliopts.information(args)
    if code is not None:
        return code
    try:
        return _run(args)
    except BrokenPipeError:                    # `zcap ... | head`: end quietly, as tcpdump
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _subcommand(name: str, argv: list[str]) -> int:
    if name == "demo":
        p = _Parser(prog="zcap demo", description="capture generated traffic on a private veth pair")
        p.add_argument("-c", "--count", type=int, default=20000, help="frames to send (default 20000)")
        p.add_argument("--show", type=int, default=10, help="packets to print (default 10)")
        p.add_argument("--mode", choices=("ring", "copy", "immediate"), default="ring")
        args = p.parse_args(argv)
        if args.count <= 0:
            p.error(f"argument -c/--count: must be a positive number of frames, not {args.count}")
        if args.show < 0:
            p.error(f"argument --show: must be 0 or more, not {args.show}")
        from zcap.demo import run_demo
        return run_demo(count=args.count, show=args.show, mode=args.mode)
    if name == "merge":
        return _merge(argv)
    from zcap import replay
    return replay.main(argv)


def _merge(argv: list[str]) -> int:
    p = _Parser(prog="zcap merge", description="merge savefiles by timestamp (like mergecap)")
    p.add_argument("-w", "--write", metavar="OUT", required=True,
                   help="the merged savefile ('-': standard output; never one of the inputs)")
    p.add_argument("--format", choices=("pcap", "pcapng"),
                   help="output format (default: pcap, or pcapng when link types differ)")
    p.add_argument("inputs", nargs="+", metavar="IN", help="pcap or pcapng files")
    args = p.parse_args(argv)
    from zcap import errors
    from zcap.merge import OutputError, merge
    try:
        result = merge(args.inputs, sys.stdout.buffer if args.write == "-" else args.write,
                       format=args.format)
    except BrokenPipeError:                     # `zcap merge -w - ... | head`: end quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except OutputError as exc:
        return _fail(EXIT_OUTPUT, f"cannot write {args.write}: {exc.strerror or exc}")
    except errors.SavefileWriteError as exc:    # says the file and what it holds
        return _fail(EXIT_OUTPUT, str(exc))
    except (errors.SavefileError, FileNotFoundError, IsADirectoryError) as exc:
        return _fail(EXIT_INPUT, str(exc))
    except ValueError as exc:
        return _fail(EXIT_USAGE, str(exc))
    except OSError as exc:
        return _fail(EXIT_OUTPUT, f"cannot write {args.write}: {exc.strerror or exc}")
    sys.stderr.write(f"zcap: merged {result.packets} packets from {result.inputs} files into "
                     f"{args.write}\n")
    if result.out_of_order:
        sys.stderr.write(f"zcap: {result.out_of_order} packets were older than the one before "
                         f"them: an input was not in timestamp order\n")
    return EXIT_OK


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
    from zcap.cliopts import live_options
    opts = live_options(args, expression)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", zcap.UserSpaceFilterWarning)
        source = zcap.open_live(args.interface, **opts)
    for w in caught:                        # e.g. a filter the kernel refuses: one line
        sys.stderr.write(f"zcap: warning: {w.message}\n")
    return source


def _run(args: argparse.Namespace) -> int:
    # Everything the capture will need is imported here, before -Z drops
    # privileges: a checkout or venv under /root is unreadable afterwards.
    # The printer (and with it dpkt) only when packets will be printed.
    from zcap.dumper import Dumper
    from zcap.livestats import LiveStats
    prints = (not args.write or args.print) and not args.quiet
    if prints:
        from zcap.printer import PacketPrinter
    expression = " ".join(args.expression) or None
    if args.count is not None and args.count <= 0:
        return _fail(EXIT_USAGE, "-c needs a positive count")
    for flag, value, unit in (("-C", args.file_size, "megabytes"),
                              ("-G", args.rotate_seconds, "seconds"),
                              ("-B", args.buffer_size, "KiB")):
        if value is not None and not value > 0:
            return _fail(EXIT_USAGE, f"{flag} needs a positive number of {unit}, not {value:g}")
    if args.snaplen < 0 or args.snaplen > MAX_SNAPLEN:
        return _fail(EXIT_USAGE, f"invalid snaplen {args.snaplen}: between 0 and {MAX_SNAPLEN}")
    if (args.file_size is not None or args.rotate_seconds is not None) and not args.write:
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
    if args.workers is not None:
        from zcap import pool_cli
        return pool_cli.run(args, expression)
    try:
        source = _open_source(args, expression)
    except ValueError as exc:              # bad geometry / options
        from zcap import errors
        if isinstance(exc, errors.ZcapError):
            return _fail(_exit_code(exc), str(exc))
        if args.read and expression:
            # the file's link type cannot be filtered (libpcap knows no such type)
            return _fail(EXIT_FILTER, f"{args.read}: cannot apply the filter {expression!r}: "
                                      f"{exc}; read the file without a filter")
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
        from zcap.cliopts import check_linktype, dumper_options, printer_options
        bad = check_linktype(args, source)
        if bad is not None:
            return bad
        # a file's link type as it is: 0 (NULL/BSD loopback) stays 0
        linktype = int(source.linktype) if source.linktype is not None else 1
        # savefiles hold at most 262144 bytes per packet: a larger snaplen is
        # rewritten and longer packets cut, as tcpdump does
        snaplen = min(int(source.snaplen or MAX_SNAPLEN), MAX_SNAPLEN)
        listening = None
        if live:
            # written by _loop once Ctrl-C stops the capture cleanly (as tcpdump,
            # after the output is open): a signal right after it loses nothing
            listening = (f"zcap: listening on {args.interface}, link-type "
                         f"{getattr(source.linktype, 'name', linktype)}, snapshot length "
                         f"{snaplen} bytes\n")
        else:
            sys.stderr.write(f"reading from file {args.read}, link-type "
                             f"{_linktype_name(source.linktype)}\n")
            sys.stderr.flush()
        dumper = None
        if args.write:
            if not live and args.format == "pcap":
                kinds = sorted({int(i.linktype) for i in source.interfaces})
                if len(kinds) > 1:
                    return _fail(EXIT_USAGE, _several_linktypes(args.read, kinds))
            table = args.format in ("parquet", "arrow")
            if table:
                from zcap.cliopts import table_refusals
                refused = table_refusals(args)
                if refused:
                    return _fail(EXIT_USAGE, refused)
            try:
                common = dict(format=args.format, linktype=linktype, snaplen=snaplen,
                              nano=args.time_stamp_precision == "nano",
                              if_name=args.interface if live else None,
                              file_size=int(args.file_size * 1_000_000) if args.file_size else None,
                              rotate_seconds=args.rotate_seconds)
                if table:
                    from zcap.arrow import TableDumper
                    dumper = TableDumper(args.write, **common)
                else:
                    dumper = Dumper(args.write, **common,
                                    interfaces=None if live else source.interfaces,
                                    **dumper_options(args, source, live, expression))
            except (OSError, ValueError) as exc:
                if not isinstance(exc, OSError):
                    return _fail(EXIT_OUTPUT, str(exc))
                return _fail(EXIT_OUTPUT, f"cannot write {args.write}: {exc.strerror or exc}")
        printer = None
        if prints:
            printer = PacketPrinter(sys.stdout, nano=args.time_stamp_precision == "nano",
                                    link_header=args.e, any_device=live and args.interface == "any",
                                    netns=args.netns, **printer_options(args))
        live_stats = LiveStats() if args.stats else None
        return _loop(source, args, dumper, printer, live_stats, live, listening)
    finally:
        source.close()


def _linktype_name(linktype: Any) -> str:
    if linktype is None:
        return "none (no interface)"
    name = getattr(linktype, "name", None)
    return f"{name} ({int(linktype)})" if name else str(int(linktype))


def _several_linktypes(path: str, kinds: list[int]) -> str:
    return (f"{path} holds packets of several link types ({', '.join(map(str, kinds))}); a pcap "
            f"file holds one: write it with --format pcapng (one interface block per link type)")


def _output_format(given: Optional[str], path: Optional[str]) -> str:
    """--format, else the suffix of -w for Arrow formats (.parquet, .arrow/.feather), else pcap."""
    if given:
        return given
    suffix = os.path.splitext(path or "")[1].lower()
    return {".parquet": "parquet", ".arrow": "arrow", ".feather": "arrow"}.get(suffix, "pcap")


def _loop(source: Any, args: argparse.Namespace, dumper: Any, printer: Any, live_stats: Any,
          live: bool, listening: Optional[str] = None) -> int:
    from zcap import errors
    from zcap.dumper import LinkTypeMismatch
    captured = 0

    def handle(pkt: Any) -> None:
        nonlocal captured
        if dumper is not None:
            dumper.write(pkt)
        captured += 1
        if printer is not None:
            printer(pkt)
        if live_stats is not None:
            live_stats.count(pkt)

    # Wake up now and then even without packets: live stats, -G rotation,
    # and flushing a quiet savefile so a crash cannot lose what it holds.
    periodic = live and (live_stats is not None or dumper is not None)
    stop = _StopOnSignals(source if live else None)
    if listening:
        sys.stderr.write(listening)
        sys.stderr.flush()
    try:
        try:
            while (args.count is None or captured < args.count) and not stop.abort \
                    and not (dumper is not None and dumper.finished):      # -W N -G: N files made
                if not live and stop.requested:
                    break                           # reading a file: a signal just ends it
                pkt = source.next(timeout=0.2 if periodic else None)
                if pkt is None:
                    if not live or source.closed or source.drained:
                        break                       # end of file / closed / stop() drained
                else:
                    handle(pkt)
                if periodic:
                    if dumper is not None:
                        dumper.tick()
                    if live_stats is not None:
                        live_stats.maybe_show(source.stats())
        except KeyboardInterrupt:                   # only before the handlers are in place
            pass
        if dumper is not None:
            dumper.close()
    except BrokenPipeError:
        raise                                       # `| head`: main() ends quietly
    except errors.SavefileWriteError as exc:
        source.close()
        return _fail(EXIT_OUTPUT, f"{exc}; {captured - exc.packets_written} of the {captured} "
                                  f"packets read were not written")
    except LinkTypeMismatch as exc:
        return _fail(EXIT_USAGE, _several_linktypes(args.read, exc.linktypes))
    except OSError as exc:
        if dumper is not None and getattr(exc, "filename", None):
            return _fail(EXIT_OUTPUT, f"cannot write {exc.filename}: {exc.strerror}")
        return _fail(_exit_code(exc), str(exc))
    except errors.ZcapError as exc:
        return _fail(_exit_code(exc), str(exc))
    except ValueError as exc:                       # a packet the output format cannot hold
        if dumper is not None and not live:
            return _fail(EXIT_INPUT, f"{args.read}: packet {captured + 1} cannot be written to "
                                     f"{args.write}: {exc}")
        raise
    finally:
        stop.restore()
        if dumper is not None:
            dumper.close()                          # after a write error: already closed
        if live_stats is not None:
            live_stats.finish()
        if printer is not None:
            sys.stdout.flush()
    if live:
        source.close()                              # counts what was left unread
        stats = source.stats()
        sys.stderr.write(f"{captured} packets captured\n{stats.received} packets received by filter\n"
                         f"{stats.dropped} packets dropped by kernel\n")
        if stats.filtered:
            sys.stderr.write(f"{stats.filtered} packets filtered in user space\n")
        if stats.abandoned and args.count is None:
            sys.stderr.write(f"{stats.abandoned} packets accepted but not read (stopped before "
                             f"the ring was drained)\n")
    return EXIT_OK


class _StopOnSignals:
    """Ctrl-C and SIGTERM: Capture.stop() (or a flag for a file), never an exception.

    A KeyboardInterrupt could land between taking a packet from the ring and
    writing it.  Instead the first signal calls stop(): the kernel accepts
    nothing more, the loop goes on writing every packet already accepted and
    ends when next() finds the ring drained.  A second signal ends the loop
    at once (what was not read is reported as abandoned).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, source: Any) -> None:
        self.requested = False
        self.abort = False
        self._source = source
        self._previous = {sig: signal.signal(sig, self._on_signal) for sig in self.SIGNALS}

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.requested:
            self.abort = True
            if self._source is not None:
                self._source.breakloop()
            return
        self.requested = True
        if self._source is not None:
            self._source.stop()

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
