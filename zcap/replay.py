"""`zcap replay`: send a savefile's packets on an interface, as tcpreplay does.

    zcap replay FILE -i IFACE [--netns NS] [--pps N | --mbps N | --topspeed | --multiplier X]
                [--loop K] [--max-seconds S]
    python3 -m zcap.replay FILE -i IFACE ...        (the same)

Timing: by default the file's own (each packet leaves when its timestamp
says, relative to the first); --multiplier X plays it X times as fast;
--pps / --mbps space the packets evenly; --topspeed sends as fast as the
interface takes them.  Each loop starts its timing afresh.

Before the first frame leaves, the whole file is read once: a file zcap
cannot read, a packet whose link type is not Ethernet, or a packet too short
or too long for the interface is refused, so a replay never stops halfway
because of its input.  Each loop then reads the file again through
zcap.offline (one chunk in memory at a time) and sends every packet through
zcap.inject's transmit ring, copied once from the file's buffer into the
ring.  Packets the capture truncated (caplen < wire length) are sent as
captured; the summary says how many.

Exit codes (those of the zcap command): 0 done, 1 stopped early
(--max-seconds passed) or an unexpected error, 2 bad arguments, 3 unreadable
or bad file (also: not Ethernet), 4 interface problem (unknown, down, no such
namespace, MTU too small for the file), 5 missing privilege (CAP_NET_RAW),
130 interrupted (Ctrl-C; the summary shows what was sent).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any, Iterator, NoReturn, Optional

from zcap import errors
from zcap._enums import LinkType
from zcap.exitcodes import (
    EXIT_ERROR,
    EXIT_INPUT,
    EXIT_INTERFACE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PERMISSION,
    EXIT_USAGE,
    fail,
)
from zcap.inject import ETH_HLEN, VLAN_HLEN, Injector, open_inject
from zcap.offline import open_offline

__all__ = ["main", "build_parser", "scan"]

LINKTYPE_ETHERNET = int(LinkType.ETHERNET)
DEFAULT_MAX_SECONDS = 3600.0
_ETHERTYPE_8021Q = b"\x81\x00"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:       # bad arguments: exit code 2
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: {message}\n")


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, not {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="zcap replay", description="send the packets of a pcap/pcapng file on an "
                "interface (Ethernet link type), through a zero-copy transmit ring")
    p.add_argument("file", help="the pcap or pcapng file")
    p.add_argument("-i", "--interface", required=True, help="interface to send on")
    p.add_argument("--netns", help="the interface's network namespace (ip netns name or path)")
    timing = p.add_mutually_exclusive_group()
    timing.add_argument("--pps", type=_positive(float), help="packets per second, evenly spaced")
    timing.add_argument("--mbps", type=_positive(float),
                        help="megabits per second of frame bytes (no preamble or FCS)")
    timing.add_argument("--topspeed", action="store_true", help="as fast as the interface takes them")
    timing.add_argument("--multiplier", type=_positive(float),
                        help="the file's own timing, X times as fast (default: 1)")
    p.add_argument("--loop", type=_positive(int), default=1, metavar="K",
                   help="send the file K times (default 1)")
    p.add_argument("--max-seconds", type=_positive(float), default=DEFAULT_MAX_SECONDS, metavar="S",
                   help=f"stop after S seconds (default {DEFAULT_MAX_SECONDS:g}); exit code 1 if "
                        f"packets were left")
    return p


@dataclass
class FileScan:
    """What the check pass found in the file."""

    packets: int = 0
    bytes: int = 0
    longest: int = 0            #: the longest untagged frame
    longest_tagged: int = 0     #: the longest frame with an 802.1Q ethertype
    truncated: int = 0          #: packets captured shorter than they were on the wire
    first_ts_ns: int = 0
    latest_ts_ns: int = 0       #: the latest timestamp (files need not be in time order)

    @property
    def span_seconds(self) -> float:
        """How long the file takes at its own timing."""
        return max(0, self.latest_ts_ns - self.first_ts_ns) / 1e9


class ReplayError(Exception):
    """A replay that cannot start; `code` is the exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def scan(path: str) -> FileScan:
    """Read the whole file once; refuse what cannot be replayed on Ethernet."""
    found = FileScan()
    with open_offline(path) as src:
        for pkt in src:
            linktype = pkt.linktype
            n = len(pkt)
            if linktype != LINKTYPE_ETHERNET:
                try:
                    shown = f"{LinkType(linktype).name} ({int(linktype)})"
                except ValueError:
                    shown = str(int(linktype))
                raise ReplayError(EXIT_INPUT, f"{path}: packet {found.packets} has link type {shown}; "
                                              f"zcap replay sends Ethernet frames (link type 1) only")
            if n < ETH_HLEN:
                raise ReplayError(EXIT_INPUT, f"{path}: packet {found.packets} is {n} bytes, shorter than "
                                              f"an Ethernet header ({ETH_HLEN}); it cannot be sent")
            if found.packets == 0:
                found.first_ts_ns = found.latest_ts_ns = pkt.ts_ns
            found.latest_ts_ns = max(found.latest_ts_ns, pkt.ts_ns)
            found.packets += 1
            found.bytes += n
            if pkt.wirelen > n:
                found.truncated += 1
            if pkt[12:14] == _ETHERTYPE_8021Q:
                found.longest_tagged = max(found.longest_tagged, n)
            else:
                found.longest = max(found.longest, n)
    return found


def _check_fits(found: FileScan, inj: Injector, path: str) -> None:
    if found.longest > inj.max_frame or found.longest_tagged > inj.max_frame + VLAN_HLEN:
        need = max(found.longest - ETH_HLEN, found.longest_tagged - ETH_HLEN - VLAN_HLEN)
        raise ReplayError(EXIT_INTERFACE,
                          f"{path} holds a {max(found.longest, found.longest_tagged)}-byte frame; "
                          f"{inj.interface} (MTU {inj.mtu}) sends at most {inj.max_frame} bytes "
                          f"({inj.max_frame + VLAN_HLEN} with an 802.1Q tag). Raise its MTU to at least "
                          f"{need} (ip link set {inj.interface} mtu {need})")


def _open(args: argparse.Namespace) -> Injector:
    try:
        return open_inject(args.interface, netns=args.netns)
    except errors.CapturePermissionError as exc:
        raise ReplayError(EXIT_PERMISSION, str(exc)) from None
    except (errors.InterfaceNotFoundError, errors.InterfaceDownError, FileNotFoundError) as exc:
        # FileNotFoundError: no such network namespace
        raise ReplayError(EXIT_INTERFACE, str(exc)) from None
    except ValueError as exc:                       # not an Ethernet interface
        raise ReplayError(EXIT_INTERFACE, str(exc)) from None


def _summary(frames: int, nbytes: int, seconds: float) -> str:
    pps = frames / seconds if seconds > 0 else 0.0
    mbps = nbytes * 8 / seconds / 1e6 if seconds > 0 else 0.0
    return (f"sent {frames} packets ({nbytes} bytes) in {seconds:.6f} s: "
            f"{pps:.1f} pps, {mbps:.3f} Mbps")


def _fail(code: int, message: str) -> int:
    return fail(code, message, prog="zcap replay")


def main(argv: Optional[list[str]] = None) -> int:
    """Run `zcap replay` with `argv` (the arguments after "replay"); returns the exit code."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    path = args.file
    file_timing = not (args.pps or args.mbps or args.topspeed)
    multiplier = args.multiplier or 1.0
    try:
        try:
            found = scan(path)
        except errors.SavefileError as exc:
            raise ReplayError(EXIT_INPUT, str(exc)) from None
        except OSError as exc:
            raise ReplayError(EXIT_INPUT, f"cannot read {path}: {exc.strerror or exc}") from None
        if file_timing and found.span_seconds / multiplier > args.max_seconds:
            raise ReplayError(EXIT_USAGE, f"at its own timing {path} takes "
                                          f"{found.span_seconds / multiplier:.6g} s (its timestamps span "
                                          f"{found.span_seconds:.6g} s), more than --max-seconds "
                                          f"{args.max_seconds:g}; use --topspeed, --pps, --mbps, a "
                                          f"--multiplier or a larger --max-seconds")
        inj = _open(args)
    except ReplayError as exc:
        return _fail(exc.code, str(exc))
    timing: dict[str, Any] = {}
    if args.pps:
        timing = dict(pps=args.pps)
    elif args.mbps:
        timing = dict(mbps=args.mbps)
    elif file_timing:
        timing = dict(respect_timestamps=True, multiplier=multiplier)
    expected = found.packets * args.loop
    started = time.monotonic()
    elapsed = 0.0
    done = inj.stats()
    try:
        with inj:
            _check_fits(found, inj, path)
            if found.truncated:
                sys.stderr.write(f"zcap replay: {found.truncated} of {found.packets} packets were "
                                 f"captured truncated (snaplen); they are sent as captured\n")
            try:
                if file_timing:
                    # each loop plays the file's timing from its start
                    for _ in range(args.loop):
                        left = args.max_seconds - (time.monotonic() - started)
                        if left <= 0:
                            break
                        with open_offline(path) as src:
                            result = inj.send_packets(src, max_seconds=left, **timing)
                        if result.frames < found.packets:
                            break
                else:
                    # one paced stream across the loops
                    inj.send_packets(_looped(path, args.loop), max_seconds=args.max_seconds, **timing)
                inj.flush(wait=True)
                elapsed = time.monotonic() - started         # not the socket's close (~12 ms)
            finally:
                done = inj.stats()
    except ReplayError as exc:
        return _fail(exc.code, str(exc))
    except KeyboardInterrupt:
        print(_summary(done.queued, done.bytes_queued, time.monotonic() - started))
        return _fail(EXIT_INTERRUPTED, f"interrupted after {done.queued} of {expected} packets")
    except errors.SavefileError as exc:             # the file changed since the check pass
        return _fail(EXIT_INPUT, str(exc))
    except (errors.InterfaceDownError, errors.TransmitTimeoutError) as exc:
        return _fail(EXIT_INTERFACE, str(exc))
    except OSError as exc:
        return _fail(EXIT_ERROR, str(exc))
    print(_summary(done.queued, done.bytes_queued, elapsed))
    if done.queued < expected:
        return _fail(EXIT_ERROR, f"stopped after --max-seconds {args.max_seconds:g}: sent {done.queued} "
                                 f"of {expected} packets")
    return EXIT_OK


def _looped(path: str, loops: int) -> Iterator[Any]:
    for _ in range(loops):
        with open_offline(path) as src:
            yield from src

if __name__ == "__main__":
    sys.exit(main())
