"""The tcpdump options of the `zcap` command beyond capturing and writing.

zcap.cli defines the options; this module handles them, in small steps the
command calls in order:

* `prepare(args)`      -i N, -F file, -y, -l, -W/-z/-a/--print checks
* `information(args)`  -D, -L, -J, -d/-dd/-ddd: print and exit, as tcpdump
* `open_options(args)`, `printer_options(args)`, `dumper_options(args, ...)`
                       what open_live(), PacketPrinter and Dumper get
* tcpdump options zcap does not have exit with status 2 and a message saying
  so (`UNSUPPORTED`), instead of argparse's "unrecognized arguments".
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Optional

from zcap.exitcodes import EXIT_ERROR, EXIT_FILTER, EXIT_INPUT, EXIT_INTERFACE, EXIT_USAGE
from zcap.exitcodes import fail as _fail

#: libpcap's names and descriptions of the link types zcap delivers (-L, -y)
LINKTYPE_NAMES = {1: ("EN10MB", "Ethernet"), 101: ("RAW", "Raw IP"),
                  113: ("LINUX_SLL", "Linux cooked v1"), 276: ("LINUX_SLL2", "Linux cooked v2")}

#: tcpdump options zcap does not implement: option -> (takes a value, what it does)
UNSUPPORTED = {
    "-b": (False, "BGP AS numbers in ASDOT notation"),
    "-E": (True, "ESP decryption"),
    "-f": (False, "printing foreign IPv4 addresses numerically"),
    "-g": (False, "one-line IP header printing"),
    "--ip-oneline": (False, "one-line IP header printing"),
    "-H": (False, "802.11s mesh header detection"),
    "-I": (False, "monitor mode"),
    "--monitor-mode": (False, "monitor mode"),
    "-K": (False, "skipping checksum verification (zcap does not verify checksums)"),
    "--dont-verify-checksums": (False, "skipping checksum verification"),
    "-m": (True, "loading SMI MIB modules"),
    "-M": (True, "TCP-MD5 shared secrets"),
    "-N": (False, "printing host names without domain"),
    "-O": (False, "turning off the filter optimizer"),
    "--no-optimize": (False, "turning off the filter optimizer"),
    "-P": (False, "pcapng output through -P (use --format pcapng)"),
    "-T": (True, "forced interpretation of packets as a protocol"),
    "-u": (False, "printing undecoded NFS handles"),
    "-V": (True, "reading a list of savefiles"),
    "--lengths": (False, "printing frame lengths"),
    "--print-sampling": (True, "printing every Nth packet"),
    "--micro-printing": (False, ""),
}


class _Unsupported(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any,
                 option_string: Optional[str] = None) -> None:
        what = UNSUPPORTED.get(option_string or "", (False, ""))[1]
        parser.exit(EXIT_USAGE, f"{parser.prog}: tcpdump's {option_string}"
                    f"{f' ({what})' if what else ''} is not supported by zcap; "
                    f"see `zcap -h` for the options it has\n")


def add_unsupported(p: argparse.ArgumentParser) -> None:
    for option, (takes_value, _) in UNSUPPORTED.items():
        if option == "--micro-printing":
            continue
        p.add_argument(option, action=_Unsupported, nargs=1 if takes_value else 0,
                       help=argparse.SUPPRESS)


# -- zcap -h: options grouped as in tcpdump's manual ---------------------------

_GROUPS = (
    ("capture", ("-i", "-c", "-s", "--snapshot-length", "-B", "-p", "-Q", "-j", "-y", "--immediate-mode",
                 "--mode", "--netns", "-Z", "--stats")),
    ("input and output files", ("-r", "-w", "--format", "-a", "-C", "-G", "-W", "-z", "-U",
                                "--comment", "--print", "-F")),
    ("printing", ("-n", "-e", "-q", "-t", "-v", "-x", "-X", "-A", "-S", "-l", "-#",
                  "--time-stamp-precision", "--nano", "--micro")),
    ("information (print and exit)", ("-D", "-L", "-J", "-d", "--version", "-h")),
)


def group_help(p: argparse.ArgumentParser) -> None:
    """Regroup the parser's options for `zcap -h` (an option not listed stays where it is)."""
    by_flag = {}
    for action in p._actions:
        for flag in action.option_strings:
            by_flag.setdefault(flag, action)
    moved = set()
    for title, flags in _GROUPS:
        group = p.add_argument_group(title)
        for flag in flags:
            action = by_flag.get(flag)
            if action is not None and id(action) not in moved:
                moved.add(id(action))
                group._group_actions.append(action)
    for container in (p._optionals, p._positionals):
        container._group_actions[:] = [a for a in container._group_actions if id(a) not in moved]
    p.epilog = ((p.epilog or "") + "\ntcpdump options zcap does not have (" +
                ", ".join(sorted(k for k in UNSUPPORTED if k != "--micro-printing")) +
                ") exit with status 2.")


# -- information: print and exit ----------------------------------------------

def _print(text: str, out: Any = None) -> None:
    out = out or sys.stdout
    out.write(text)
    out.flush()


def _list_interfaces(args: argparse.Namespace) -> int:
    from zcap.interfaces import interfaces
    try:
        found = interfaces(args.netns)
    except OSError as exc:
        return _fail(EXIT_INTERFACE, str(exc))
    lines = []
    for number, iface in enumerate(found, 1):
        desc = f" ({iface.description})" if iface.description else ""
        lines.append(f"{number}.{iface.name}{desc} [{iface.status_flags()}]")
        if args.v:
            lines.append(f"\tindex {iface.index}, mtu {iface.mtu}, link-type "
                         f"{LINKTYPE_NAMES[int(iface.linktype)][0]}"
                         + (f", hwaddr {iface.hwaddr}" if iface.hwaddr else "")
                         + f", time stamp types {', '.join(iface.tstamp_types)}"
                         + ("" if iface.can_capture else ", no permission to capture (CAP_NET_RAW)"))
            lines.extend(f"\t{a.family} {a}" for a in iface.addresses)
    _print("".join(line + "\n" for line in lines))
    return 0


def _find(args: argparse.Namespace) -> Any:
    from zcap import errors
    from zcap.interfaces import interfaces
    for iface in interfaces(args.netns):
        if iface.name == args.interface:
            return iface
    where = f" in network namespace {args.netns!r}" if args.netns else ""
    raise errors.InterfaceNotFoundError(
        f"no interface named {args.interface!r}{where}; list them with `zcap -D`")


def _linktype_lines(args: argparse.Namespace) -> int:
    iface = _find(args)
    lines = [f"Data link types for {iface.name} (use option -y to set):"]
    for lt in sorted(int(x) for x in iface.linktypes):
        name, desc = LINKTYPE_NAMES[lt]
        lines.append(f"  {name} ({desc})")
    _print("".join(line + "\n" for line in lines), sys.stderr)       # as tcpdump -L
    return 0


def _tstamp_lines(args: argparse.Namespace) -> int:
    from zcap.interfaces import TSTAMP_TYPES
    iface = _find(args)
    lines = [f"Time stamp types for {iface.name} (use option -j to set):"]
    lines += [f"  {t} ({TSTAMP_TYPES[t]})" for t in iface.tstamp_types]
    _print("".join(line + "\n" for line in lines), sys.stderr)       # as tcpdump -J
    return 0


def _dump_filter(args: argparse.Namespace) -> int:
    """-d/-dd/-ddd: compile as tcpdump would for the interface (or file) and print."""
    import zcap
    from zcap.linux import MAX_SNAPLEN
    expression = " ".join(args.expression)
    snaplen = args.snaplen or MAX_SNAPLEN
    device = None
    if args.read:
        with zcap.open_offline(sys.stdin.buffer if args.read == "-" else args.read) as src:
            linktype = int(src.linktype)        # and, as tcpdump -r, the file's snaplen
            snaplen = int(src.snaplen or MAX_SNAPLEN)
    elif args.linktype is not None:
        linktype = args.linktype
    else:
        iface = _find(args)
        linktype = int(iface.linktype)
        device = None if iface.name == "any" else iface.name
    prog = zcap.compile_filter(expression, linktype=linktype, snaplen=snaplen,
                               linux_vlan=not args.read and device is not None,
                               netns=args.netns, device=device)
    if args.dump_filter >= 3:
        _print(prog.dump_ddd())
    elif args.dump_filter == 2:
        _print("".join(f"{{ 0x{c:x}, {jt}, {jf}, 0x{k:08x} }},\n" for c, jt, jf, k in prog.instructions))
    else:
        _print(prog.dump())
    return 0


def information(args: argparse.Namespace) -> Optional[int]:
    """Run -D, -L, -J or -d (print and exit); None when none of them was given."""
    from zcap import errors
    if args.list_interfaces:
        return _list_interfaces(args)
    if not (args.list_linktypes or args.list_tstamp_types or args.dump_filter):
        return None
    try:
        if args.list_linktypes:
            return _linktype_lines(args)
        if args.list_tstamp_types:
            return _tstamp_lines(args)
        return _dump_filter(args)
    except errors.FilterError as exc:
        return _fail(EXIT_FILTER, str(exc))
    except errors.SavefileError as exc:
        return _fail(EXIT_INPUT, str(exc))
    except errors.ZcapError as exc:
        return _fail(EXIT_INTERFACE if isinstance(exc, LookupError) else EXIT_ERROR, str(exc))
    except OSError as exc:
        return _fail(EXIT_INPUT if args.read else EXIT_INTERFACE, str(exc))


# -- before capturing -----------------------------------------------------------

def parse_linktype(text: str) -> int:
    """-y: a libpcap name (EN10MB, LINUX_SLL, LINUX_SLL2, RAW) or a number."""
    for value, (name, _) in LINKTYPE_NAMES.items():
        if text.upper() == name:
            return value
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown link type {text!r}; zcap delivers "
            f"{', '.join(n for n, _ in LINKTYPE_NAMES.values())} (see `zcap -L -i IFACE`)") from None
    if value not in LINKTYPE_NAMES:
        raise argparse.ArgumentTypeError(f"link type {value} is not one zcap delivers")
    return value


def prepare(args: argparse.Namespace) -> Optional[int]:
    """Resolve -i N, -F, -y, -l and check -W/-z/-a/--print; an exit code on a bad one."""
    if args.interface.isdigit() and not args.read:
        from zcap.interfaces import interfaces
        found = interfaces(args.netns)
        number = int(args.interface)
        if not 1 <= number <= len(found):
            return _fail(EXIT_INTERFACE, f"there is no interface number {number}: `zcap -D` lists "
                         f"{len(found)}")
        args.interface = found[number - 1].name
    if args.filter_file:
        if args.expression:
            sys.stderr.write("zcap: warning: the expression on the command line is ignored: -F "
                             "gives the filter\n")
        try:
            with open(args.filter_file, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError as exc:
            return _fail(EXIT_INPUT, f"cannot read filter file {args.filter_file}: "
                         f"{exc.strerror or exc}")
        # as tcpdump: '#' starts a comment to the end of the line
        args.expression = [" ".join(line.split("#", 1)[0] for line in text.splitlines()).strip()]
        if not args.expression[0]:
            args.expression = []
    if args.file_count is not None:
        if args.file_count <= 0:
            return _fail(EXIT_USAGE, "-W needs a positive number of files")
        if not (args.file_size or args.rotate_seconds):
            return _fail(EXIT_USAGE, "-W needs -C or -G (a ring of files rotated by size or time)")
    if args.postrotate_command and not (args.file_size or args.rotate_seconds):
        return _fail(EXIT_USAGE, "-z needs -C or -G: it runs on each file once it is closed")
    if args.append and (not args.write or args.write == "-"):
        return _fail(EXIT_USAGE, "-a appends to the -w file; give one (not standard output)")
    if args.append and (args.file_size or args.rotate_seconds):
        return _fail(EXIT_USAGE, "-a cannot be combined with -C/-G rotation")
    if args.print and args.write == "-":
        return _fail(EXIT_USAGE, "--print with -w - would mix text into the savefile on standard output")
    if args.comment is not None and args.format != "pcapng":
        return _fail(EXIT_USAGE, "--comment needs --format pcapng (pcap files have no comments)")
    if args.linktype is not None and args.read:
        return _fail(EXIT_USAGE, "-y selects the link type of a live capture; a file has its own")
    if args.tstamp_type is not None and args.read:
        return _fail(EXIT_USAGE, "-j selects a live capture's timestamp source; a file has its own")
    if args.l:
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    return None


def open_options(args: argparse.Namespace) -> dict[str, Any]:
    """open_live() options from -j and -y."""
    opts: dict[str, Any] = {}
    if args.tstamp_type:
        opts["tstamp_type"] = args.tstamp_type
    if args.linktype in (113, 276):
        if args.interface != "any":
            raise ValueError(f"-y {LINKTYPE_NAMES[args.linktype][0]}: zcap delivers cooked "
                             f"headers on 'any' only; {args.interface} has its own link type "
                             f"(see `zcap -L -i {args.interface}`)")
        opts["cooked"] = "sll" if args.linktype == 113 else "sll2"
    return opts


def check_linktype(args: argparse.Namespace, source: Any) -> Optional[int]:
    """-y on a live capture: the interface must deliver that link type."""
    if args.linktype is None or args.read or int(source.linktype) == args.linktype:
        return None
    name = LINKTYPE_NAMES[args.linktype][0]
    return _fail(EXIT_USAGE, f"{args.interface} does not deliver link type {name}; it delivers "
                 f"{LINKTYPE_NAMES[int(source.linktype)][0]} (see `zcap -L -i {args.interface}`)")


def printer_options(args: argparse.Namespace) -> dict[str, Any]:
    return dict(time_format=args.t, numbered=args.number, hex_level=args.x,
                ascii_hex_level=args.X, ascii_level=args.A, absolute_seq=args.S, verbose=args.v)


def savefile_options(args: argparse.Namespace, live: bool,
                     expression: Optional[str]) -> dict[str, Any]:
    """Dumper options from -U, -W, -z, -a, --comment and the capture (plain
    values: a pool sends them to its workers)."""
    return dict(packet_buffered=args.packet_buffered, file_count=args.file_count,
                postrotate_command=args.postrotate_command, append=args.append,
                comment=args.comment, filter_text=expression, netns=args.netns,
                per_interface=live and args.interface == "any")


def dumper_options(args: argparse.Namespace, source: Any, live: bool,
                   expression: Optional[str]) -> dict[str, Any]:
    return dict(savefile_options(args, live, expression),
                stats=source.stats if live else None)


def table_refusals(args: argparse.Namespace) -> Optional[str]:
    """Why the savefile-only options given cannot go with Parquet/Arrow output, or None."""
    refused = [flag for flag, on in (("-a", args.append), ("-W", args.file_count),
                                     ("-z", args.postrotate_command), ("--comment", args.comment),
                                     ("-U", args.packet_buffered)) if on]
    if not refused:
        return None
    return (f"{', '.join(refused)} cannot be used with {args.format} output; write pcap/pcapng "
            f"for them")


def live_options(args: argparse.Namespace, expression: Optional[str]) -> dict[str, Any]:
    """open_live() options from the command line (-s, -Q, -p, --mode,
    --immediate-mode, --netns, -B, -j, -y)."""
    from zcap.capture import DEFAULT_BLOCK_SIZE
    from zcap.linux import MAX_SNAPLEN
    opts: dict[str, Any] = dict(snaplen=args.snaplen or MAX_SNAPLEN, filter=expression,
                                direction=args.direction,
                                promisc=not args.no_promiscuous_mode and args.interface != "any",
                                mode=args.mode, immediate=args.immediate_mode, netns=args.netns)
    if args.buffer_size is not None:
        opts["block_count"] = max(2, -(-args.buffer_size * 1024 // DEFAULT_BLOCK_SIZE))
    opts.update(open_options(args))
    return opts
