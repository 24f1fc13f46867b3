"""`zcap --workers N -w 'cap-{worker}.pcap'`: capture with a zcap.Pool, one file per worker.

Each worker writes its own savefile, or Parquet/Arrow file (the name's `{worker}` is the worker's
number; -C/-G rotate each worker's files).  Ctrl-C stops the pool
losslessly: every packet the kernel accepted for any worker is written
before the summary.  `zcap merge -w all.pcap cap-*.pcap` merges the files by
timestamp.  The group does not reassemble IP fragments: the files hold the
frames as they were on the wire.
"""

from __future__ import annotations

import functools
import os
import signal
import string
import sys
import threading
from typing import Any, Optional

from zcap import cliopts, errors
from zcap.exitcodes import EXIT_ERROR, EXIT_OK, EXIT_OUTPUT, EXIT_USAGE, exit_code, fail

IDLE_TICK_S = 0.2     # a worker with no packet for this long rotates (-G) and flushes its file


def write_packets(settings: dict, cap: Any, out: Any) -> int:
    """A pool handler: write every packet of this worker to its own file."""
    from zcap.dumper import Dumper
    writer: Any = Dumper
    if settings["format"] in ("parquet", "arrow"):
        from zcap.arrow import TableDumper
        writer = TableDumper
    path = settings["write"].format(worker=out.worker)
    extra = dict(settings["savefile"], stats=cap.stats) if settings["savefile"] else {}
    dumper = writer(path, format=settings["format"], linktype=int(cap.linktype),
                    snaplen=cap.snaplen, nano=settings["nano"], if_name=settings["if_name"],
                    file_size=settings["file_size"], rotate_seconds=settings["rotate_seconds"],
                    **extra)
    try:
        while not dumper.finished:              # -W N with -G: N files made, as tcpdump
            pkt = cap.next(timeout=IDLE_TICK_S)
            if pkt is not None:
                dumper.write(pkt)
            elif cap.drained or cap.closed:     # the pool stopped it and everything is written
                break
            else:                               # a quiet link: -G rotates on time, and what
                dumper.tick()                   # the file holds is flushed, as one capture does
    finally:
        dumper.close()
    return dumper.packets


def report_failures(failures: list, stats: Any) -> int:
    """One line per failed worker (no traceback: the message says what
    happened and what its file holds); the exit code of the first failure."""
    codes = []
    for error, worker_stats in zip(failures, stats.workers):
        if error is None:
            continue
        exc = error.exception
        if isinstance(exc, errors.SavefileWriteError):
            lost = max(0, worker_stats.received - exc.packets_written)
            text = (f"worker {error.worker}: {exc}; {lost} of the {worker_stats.received} "
                    f"packets this worker received were not written")
        elif isinstance(exc, OSError) and exc.filename:
            text = f"worker {error.worker}: cannot write {exc.filename}: {exc.strerror}"
        elif exc is not None:
            text = f"worker {error.worker}: {exc}"
        else:                                   # died, or raised what does not pickle
            text = error.args[0]
        # a worker's plain OSError is its file's (the capture's own errors are ZcapErrors)
        file_error = isinstance(exc, OSError) and not isinstance(exc, errors.ZcapError)
        codes.append(fail(EXIT_OUTPUT if file_error else exit_code(exc or error), text))
    sys.stderr.flush()
    return codes[0] if codes else EXIT_ERROR


def pattern_problem(name: str) -> Optional[str]:
    """Why `name` cannot name the workers' files, or None: it must hold
    {worker} (with a format spec if wanted, e.g. {worker:02d}) and no other
    field; literal braces are written {{ and }}."""
    literal = "write {{ and }} for literal braces"
    try:
        fields = {field for _, field, _, _ in string.Formatter().parse(name) if field is not None}
    except ValueError as exc:
        return f"the -w name {name!r} is not a valid pattern ({exc}); {literal}"
    others = sorted(fields - {"worker"})
    if others:
        return (f"the -w name {name!r} may hold only {{worker}} in braces (the worker's number; "
                f"{{worker:02d}} pads it), not {', '.join('{' + f + '}' for f in others)}; "
                f"{literal}")
    if not fields:
        return (f"with --workers the -w name needs '{{worker}}' (e.g. '{name}.{{worker}}'): "
                f"each worker writes its own file")
    try:
        name.format(worker=0)
    except ValueError as exc:
        return f"the -w name {name!r} cannot format the worker's number: {exc}"
    return None


def run(args: Any, expression: Any) -> int:
    import zcap
    if not args.write or args.write == "-":
        return fail(EXIT_USAGE, "--workers needs -w FILE with '{worker}' in the name "
                         "(each worker writes its own file)")
    problem = pattern_problem(args.write)
    if problem:
        return fail(EXIT_USAGE, problem)
    folder = os.path.dirname(args.write.format(worker=0)) or "."
    if not os.path.isdir(folder):
        return fail(EXIT_OUTPUT, f"cannot write {args.write}: {folder} is not a directory")
    if args.read or args.count is not None:
        return fail(EXIT_USAGE, "--workers captures live until Ctrl-C: not with -r or -c")
    if args.workers < 1:
        return fail(EXIT_USAGE, "--workers needs a positive number")
    unfit = [flag for flag, on in (("--print", args.print), ("--stats", args.stats),
                                   ("-Z", args.user),
                                   ("-y", args.linktype not in (None, 113, 276))) if on]
    if unfit:
        return fail(EXIT_USAGE, f"{', '.join(unfit)} cannot be used with --workers (each worker "
                                f"writes its own file; -y only picks the cooked header on 'any')")
    table = args.format in ("parquet", "arrow")
    refused = cliopts.table_refusals(args) if table else None
    if refused:
        return fail(EXIT_USAGE, refused)
    settings = dict(write=args.write, format=args.format, nano=args.time_stamp_precision == "nano",
                    if_name=args.interface,
                    file_size=int(args.file_size * 1_000_000) if args.file_size else None,
                    rotate_seconds=args.rotate_seconds,
                    savefile={} if table else cliopts.savefile_options(args, True, expression))
    try:
        opts = cliopts.live_options(args, expression)
    except ValueError as exc:
        return fail(EXIT_USAGE, str(exc))
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        # no defrag: the files keep the wire's frames (with it the kernel would hand a
        # worker each reassembled datagram and never the fragments of one that does not
        # complete); a datagram's fragments share their addresses, so one worker gets them
        fanout = zcap.Fanout(args.fanout, defrag=False)
        pool = zcap.Pool(args.interface, functools.partial(write_packets, settings),
                         workers=args.workers, fanout=fanout, **opts)
        pool.start()
    except ValueError as exc:
        if isinstance(exc, zcap.ZcapError):
            return fail(exit_code(exc), str(exc))
        return fail(EXIT_USAGE, str(exc))
    except Exception as exc:
        return fail(exit_code(exc), str(exc))
    sys.stderr.write(f"zcap: listening on {args.interface} with {args.workers} workers (fanout "
                     f"{pool.fanout.mode}, group {pool.fanout.group_id}), writing "
                     f"{args.write}\n")
    sys.stderr.flush()
    try:
        while not stop.wait(0.2) and not pool._all_done.is_set():
            pass
    finally:
        pool.stop()
        signal.signal(signal.SIGINT, signal.SIG_DFL)    # a second Ctrl-C ends at once
        pool.close()
    stats = pool.stats()
    try:
        written = pool.join()
    except zcap.WorkerError:
        return report_failures(pool.errors, stats)
    sys.stderr.write(f"{sum(written)} packets captured\n{stats.received} packets received by "
                     f"filter\n{stats.dropped} packets dropped by kernel\n")
    for i, (n, w) in enumerate(zip(written, stats.workers)):
        sys.stderr.write(f"  worker {i}: {n} packets, {w.dropped} dropped\n")
    return EXIT_OK
