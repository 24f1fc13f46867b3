"""zcap.Pool: one capture per core, in one fanout group, each running your handler.

    def count_flows(cap, out):            # runs in each worker process
        flows = collections.Counter()
        for pkt in cap:                   # ends once the pool is stopped and
            flows[pkt.rxhash] += 1        # this worker's ring is drained
        return flows                      # comes back from pool.join()

    with zcap.Pool("eth0", count_flows, workers=4, rxhash=True) as pool:
        time.sleep(10)
    # leaving the block stopped the pool losslessly and joined it
    totals = sum(pool.join(), collections.Counter())

How it works:

* Workers are processes made with the "forkserver" start method (or
  "spawn"): never a plain fork of a parent that may run threads or an event
  loop.  The handler must be picklable (a module-level function); a
  coroutine function runs in the worker's own event loop (uvloop when
  installed).
* Each worker opens its own capture (`open_live(interface, fanout=...,
  **open_live_options)`): its own zero-copy ring, one member of the group.
  With `fanout.group_id=None` worker 0 asks the kernel for an unused id and
  the others join it.  They join one after the other, so worker i is member
  i (the index a cbpf program returns; the kernel moves the last member into
  the place of one that leaves).  `with` returns once every worker is a member.
* Each worker has one socket pair to the parent.  The parent's manager
  thread reads every worker's messages: streamed items (`out.put(item)`,
  batched: one message per 256 items or per 50 ms), stats replies, the
  handler's return value or its exception with traceback.  A worker that
  dies is reported with its signal.
* A worker dies with the parent: PR_SET_PDEATHSIG, and its control thread
  kills it when the parent's end of the socket pair closes (the parent died
  even if the worker's parent is the forkserver).
* Stop (`pool.stop()`, Ctrl-C during `pool.results()`, leaving `with`):
  every worker's capture is stopped with `Capture.stop()`: its kernel
  socket accepts nothing new, and the handler's iteration delivers every
  packet already accepted before it ends.  Workers ignore SIGINT (a Ctrl-C
  at the terminal reaches the whole process group): the parent decides.
* on_error="stop" (default): the first worker that raises or dies stops the
  others (losslessly); join() and results() then raise WorkerError.
  on_error="continue": the others go on; join() returns the WorkerError in
  that worker's place.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import ctypes
import inspect
import multiprocessing
import os
import pickle
import signal
import threading
import time
import traceback
import weakref
from dataclasses import dataclass, field
from multiprocessing.connection import wait as _wait_ready
from typing import Any, AsyncIterator, Callable, Iterable, Iterator, Optional

from zcap import errors
from zcap.fanout import Fanout
from zcap.stats import Stats

__all__ = ["Pool", "PoolStats", "WorkerError", "Channel"]

_PR_SET_PDEATHSIG = 1          # <linux/prctl.h>
STREAM_BATCH = 256             # items per message from a worker
STREAM_DELAY = 0.05            # seconds an item may wait in a worker before it is sent
START_TIMEOUT = 60.0           # seconds for every worker to open its capture


class WorkerError(errors.CaptureError):
    """A pool worker raised (`traceback` holds its traceback) or died (`signal`)."""

    def __init__(self, message: str, *, worker: int, pid: Optional[int],
                 traceback: Optional[str] = None, signal: Optional[int] = None,
                 exitcode: Optional[int] = None, exception: Optional[BaseException] = None) -> None:
        super().__init__(message)
        self.worker = worker
        self.pid = pid
        self.traceback = traceback
        self.signal = signal
        self.exitcode = exitcode
        self.exception = exception

    def __reduce__(self) -> tuple:
        return type(self).__new__, (type(self),), {"args": self.args, **vars(self)}

    def __str__(self) -> str:
        text = self.args[0]
        if self.traceback:
            text += "\n\nWorker traceback:\n" + self.traceback.rstrip()
        return text


@dataclass(frozen=True)
class PoolStats:
    """The workers' capture statistics, summed, and each worker's own."""

    received: int                #: packets the kernel accepted for any member
    dropped: int                 #: packets a member's kernel ring had no room for
    delivered: int               #: packets handed to a handler
    workers: list                #: one zcap.Stats per worker, in worker order
    stale: tuple = ()            #: workers that did not answer in time (their last known Stats)

    @property
    def shares(self) -> list[float]:
        """Each worker's fraction of the delivered packets."""
        total = self.delivered
        return [w.delivered / total if total else 0.0 for w in self.workers]

    @property
    def imbalance(self) -> float:
        """How unevenly the load spread: the largest relative deviation from
        the mean (0.0: perfectly even; 0.1: some worker is 10 % off)."""
        n = len(self.workers)
        if not n or not self.delivered:
            return 0.0
        mean = self.delivered / n
        return max(abs(w.delivered - mean) for w in self.workers) / mean


# ---------------------------------------------------------------------------
# worker side


class Channel:
    """`out` in a handler: out.put(item) streams item to the parent.

    Items are batched (STREAM_BATCH items or STREAM_DELAY seconds, whichever
    comes first) and pickled together, so a put costs about a deque append.
    """

    def __init__(self, conn: Any, lock: threading.Lock, worker: int = 0,
                 wake: Optional[Callable[[], None]] = None) -> None:
        #: this worker's number (0 .. workers-1)
        self.worker = worker
        self._conn = conn
        self._lock = lock
        self._items: collections.deque = collections.deque()
        self._oldest = 0.0
        self.sent = 0
        # The control thread sleeps without a timeout while nothing is buffered
        # (_control_asleep); the first item of a batch then wakes it with `wake`.
        self._wake = wake
        self._control_asleep = False

    def put(self, item: Any) -> None:
        items = self._items
        if not items:
            self._oldest = time.monotonic()
            items.append(item)
            # After the append: the control thread sets the flag before it looks
            # at the items, so one of the two always sees the other.
            if self._control_asleep and self._wake is not None:
                self._wake()
        else:
            items.append(item)
        if len(items) >= STREAM_BATCH:
            self.flush()

    def flush(self) -> None:
        """Send what is buffered now."""
        with self._lock:
            items = self._items
            batch = [items.popleft() for _ in range(len(items))]
            if batch:
                self._conn.send(("items", batch))
                self.sent += len(batch)

    def _due(self) -> bool:
        return bool(self._items) and time.monotonic() - self._oldest >= STREAM_DELAY

    def _until_due(self) -> Optional[float]:
        """Seconds until the buffered items are due to be sent; None if none are."""
        if not self._items:
            return None
        return max(0.0, self._oldest + STREAM_DELAY - time.monotonic())

    def _sleep_timeout(self) -> Optional[float]:
        """How long the control thread may block: until the buffered items are
        due, or (None) until a message or a wake-up when nothing is buffered."""
        timeout = self._until_due()
        if timeout is None:
            self._control_asleep = True
            timeout = self._until_due()      # a put() between the two looks
            if timeout is not None:
                self._control_asleep = False
        return timeout


@dataclass
class _WorkerSpec:
    index: int
    interface: str
    handler: Callable
    options: dict
    fanout: Optional[Fanout]
    cpu: Optional[int]
    wait_for_group: bool


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _run_handler(handler: Callable, cap: Any, out: Channel) -> Any:
    if inspect.iscoroutinefunction(handler):
        try:
            import uvloop
            factory: Any = uvloop.new_event_loop
        except ImportError:
            factory = None
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(handler(cap, out))
    return handler(cap, out)


def _picklable_exception(exc: BaseException) -> Optional[BaseException]:
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return None


def _worker_main(spec: _WorkerSpec, conn: Any) -> None:
    """The body of a worker process."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # the parent decides when to stop
    if spec.cpu is not None:
        os.sched_setaffinity(0, {spec.cpu})
    from zcap.capture import open_live

    lock = threading.Lock()
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def wake() -> None:
        try:
            os.write(wake_w, b"w")
        except BlockingIOError:         # the pipe is full: the control thread will wake
            pass

    out = Channel(conn, lock, spec.index, wake)
    state: dict[str, Any] = {"cap": None, "stop": False, "group": None}
    group_known = threading.Event()
    if not spec.wait_for_group:
        group_known.set()

    def send(msg: Any) -> None:
        with lock:
            conn.send(msg)

    def control() -> None:
        # Blocks until a message from the parent, the parent's end closing, or
        # streamed items falling due: an idle worker's control thread never wakes.
        while True:
            try:
                ready = _wait_ready([conn, wake_r], out._sleep_timeout())
                out._control_asleep = False
                if wake_r in ready:
                    try:
                        os.read(wake_r, 4096)
                    except BlockingIOError:
                        pass
                msg = conn.recv() if conn in ready else None
            except (EOFError, OSError):
                # The parent is gone (its end closed): die with it.
                os.kill(os.getpid(), signal.SIGKILL)
                return
            try:
                if msg is not None:
                    on_message(msg)
                if out._due():
                    out.flush()
            except Exception:           # keep listening: the parent may still need us
                traceback.print_exc()

    def on_message(msg: tuple) -> None:
        kind = msg[0]
        cap = state["cap"]
        if kind == "group":
            state["group"] = msg[1]
            group_known.set()
        elif kind == "stop":
            state["stop"] = True
            group_known.set()
            if cap is not None:
                cap.stop()
        elif kind == "stats":               # ("stats", request id)
            send(("stats", msg[1], cap.stats() if cap is not None else None))
        elif kind == "filter":              # ("filter", spec, request id)
            try:
                if cap is not None:
                    cap.set_filter(msg[1])
                send(("filtered", msg[2], None))
            except Exception as exc:
                send(("filtered", msg[2], _picklable_exception(exc) or repr(exc)))

    threading.Thread(target=control, name="zcap-pool-control", daemon=True).start()
    group_known.wait()
    if state["stop"]:
        send(("done", None, Stats.zero()))
        return
    fanout = spec.fanout
    if fanout is not None and state["group"] is not None:
        fanout = fanout.with_group(state["group"])
    try:
        cap = open_live(spec.interface, fanout=fanout, **spec.options)
    except BaseException as exc:
        send(("failed", _picklable_exception(exc), traceback.format_exc(), repr(exc)))
        return
    with cap:
        state["cap"] = cap
        send(("ready", cap.fanout.group_id if cap.fanout else None, os.getpid()))
        if state["stop"]:
            cap.stop()
        try:
            value = _run_handler(spec.handler, cap, out)
        except BaseException as exc:
            out.flush()
            send(("error", _picklable_exception(exc), traceback.format_exc(), repr(exc),
                  cap.stats()))
            return
        out.flush()
        try:
            send(("done", value, cap.stats()))
        except Exception as exc:       # the return value does not pickle
            send(("error", None, traceback.format_exc(),
                  f"the handler's return value cannot be sent to the parent: {exc!r}",
                  cap.stats()))


# ---------------------------------------------------------------------------
# parent side


class _Inbox:
    """Streamed item batches, for results() (threads) and aresults() (asyncio)."""

    def __init__(self) -> None:
        self._batches: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._async: set = set()

    def push(self, batch: list) -> None:
        with self._cond:
            self._batches.append(batch)
            self._cond.notify_all()
            self._wake_async()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            self._wake_async()

    def _wake_async(self) -> None:
        for loop, event in list(self._async):
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:         # that loop is closed
                self._async.discard((loop, event))

    def get(self) -> Optional[list]:
        """The next batch; None once the workers are done and all was taken."""
        with self._cond:
            while not self._batches and not self._closed:
                self._cond.wait(0.5)
            return self._batches.popleft() if self._batches else None

    async def aget(self) -> Optional[list]:
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        key = (loop, event)
        with self._cond:
            self._async.add(key)
        try:
            while True:
                with self._cond:
                    if self._batches:
                        return self._batches.popleft()
                    if self._closed:
                        return None
                    event.clear()
                await event.wait()
        finally:
            with self._cond:
                self._async.discard(key)


@dataclass(eq=False)
class _Worker:
    index: int
    process: Any
    conn: Any
    cpu: Optional[int]
    ready: bool = False
    finished: bool = False
    value: Any = None
    error: Optional[WorkerError] = None
    stats: Stats = field(default_factory=Stats.zero)
    pid: Optional[int] = None


_running: weakref.WeakSet[Pool] = weakref.WeakSet()


@atexit.register
def _close_running_pools() -> None:
    for pool in list(_running):
        try:
            pool.close()
        except Exception:
            pass


class Pool:
    """Capture on `interface` with `workers` processes in one fanout group.

    handler(cap, out) runs in each worker with its own zcap.Capture (opened
    with **open_live_options and the pool's fanout) and a Channel `out`.
    See the module docstring.

    workers     number of processes (default: len(cpus), or the CPUs this
                process may run on)
    cpus        CPU numbers to pin the workers to (worker i on cpus[i % len]); each must
                be one os.sched_getaffinity(0) allows, else ValueError
    fanout      a zcap.Fanout or a mode string (default "hash")
    on_error    "stop" or "continue" (what the others do when a worker fails)
    start_method  "forkserver" (default) or "spawn"
    """

    def __init__(self, interface: str, handler: Callable, *, workers: Optional[int] = None,
                 cpus: Optional[Iterable[int]] = None, fanout: Any = "hash",
                 on_error: str = "stop", start_method: str = "forkserver",
                 **open_live_options: Any) -> None:
        if not callable(handler):
            raise TypeError(f"handler must be callable, not {type(handler).__name__}")
        if on_error not in ("stop", "continue"):
            raise ValueError(f"on_error must be 'stop' or 'continue', not {on_error!r}")
        if start_method not in ("forkserver", "spawn"):
            raise ValueError(f"start_method must be 'forkserver' or 'spawn' (a plain fork is not "
                             f"safe with threads or an event loop in the parent), not {start_method!r}")
        fan = Fanout.coerce(fanout)
        if fan is None:
            raise ValueError("a Pool needs a fanout mode: the workers share one group")
        if "fanout" in open_live_options:
            raise TypeError("give the fanout to Pool(fanout=...), not as an open_live option")
        self._cpus = None if cpus is None else [int(c) for c in cpus]
        if self._cpus is not None and not self._cpus:
            raise ValueError("cpus must list at least one CPU")
        if self._cpus:
            allowed = os.sched_getaffinity(0)
            missing = sorted(set(self._cpus) - allowed)
            if missing:
                # else each worker fails in sched_setaffinity (EINVAL) and start() with a broken pipe
                raise ValueError(f"cpus {missing} are not CPUs this process may run on "
                                 f"(os.sched_getaffinity(0): {sorted(allowed)})")
        if workers is None:
            workers = len(self._cpus) if self._cpus else len(os.sched_getaffinity(0))
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ValueError(f"workers must be a positive int, not {workers!r}")
        try:
            pickle.dumps(handler)
        except Exception as exc:
            raise TypeError(f"the handler must be picklable to reach the worker processes (a "
                            f"function defined at module level, not a lambda or a closure): "
                            f"{exc}") from None
        self.interface = interface
        self.handler = handler
        self.workers = workers
        self.fanout = fan
        self.on_error = on_error
        self.start_method = start_method
        self.options = open_live_options
        self._workers: list[_Worker] = []
        self._inbox = _Inbox()
        self._started = False
        self._closed = False
        self._stop_requested = False
        self._stop_sent = False
        self._wake_r, self._wake_w = -1, -1
        self._manager: Optional[threading.Thread] = None
        self._requests: collections.deque = collections.deque()
        self._pending: dict[int, Any] = {}
        self._next_request = 0
        self._lock = threading.Lock()
        self._all_done = threading.Event()
        self._first_error: Optional[WorkerError] = None

    # -- starting -------------------------------------------------------------

    def start(self) -> Pool:
        """Start the workers; returns once each has joined the fanout group."""
        if self._started:
            raise RuntimeError("this pool was already started; make a new Pool")
        self._started = True
        ctx: Any = multiprocessing.get_context(self.start_method)
        for i in range(self.workers):
            cpu = self._cpus[i % len(self._cpus)] if self._cpus else None
            spec = _WorkerSpec(i, self.interface, self.handler, self.options, self.fanout, cpu,
                               wait_for_group=i > 0)
            parent_end, child_end = ctx.Pipe(duplex=True)
            proc = ctx.Process(target=_worker_main, args=(spec, child_end),
                               name=f"zcap-pool-{i}", daemon=False)
            self._workers.append(_Worker(i, proc, parent_end, cpu))
            proc.start()
            child_end.close()
        _running.add(self)
        try:
            self._await_ready()
        except BaseException:
            self._abort()
            raise
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._manager = threading.Thread(target=self._manage, name="zcap-pool-manager",
                                         daemon=True)
        self._manager.start()
        return self

    def _await_ready(self) -> None:
        """Let the workers join one after the other, so that worker i is member i
        of the group (the index a cbpf program returns)."""
        deadline = time.monotonic() + START_TIMEOUT
        for w in self._workers:
            if w.index > 0:
                w.conn.send(("group", self.fanout.group_id))
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"pool worker {w.index} did not open its capture within "
                                       f"{START_TIMEOUT:.0f} s")
                if w.conn.poll(min(remaining, 1.0)):
                    break
            try:
                msg = w.conn.recv()
            except (EOFError, OSError):
                w.process.join(5)
                raise self._crash_error(w, "while opening its capture") from None
            if msg[0] == "failed":
                exc, tb, text = msg[1], msg[2], msg[3]
                if exc is not None:
                    exc.add_note(f"(in zcap pool worker {w.index}; its traceback:)\n{tb}")
                    raise exc
                raise WorkerError(f"worker {w.index} could not open its capture: {text}",
                                  worker=w.index, pid=w.process.pid, traceback=tb)
            w.ready, w.pid = True, msg[2]
            if w.index == 0:
                self.fanout = self.fanout.with_group(msg[1])

    def _abort(self) -> None:
        for w in self._workers:
            try:
                w.conn.send(("stop",))
            except OSError:
                pass
        for w in self._workers:
            w.process.join(10)
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
            w.conn.close()
        self._closed = True
        self._inbox.close()
        self._all_done.set()
        _running.discard(self)

    # -- the manager thread ------------------------------------------------------

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    def _manage(self) -> None:
        live = {w.conn: w for w in self._workers}
        try:
            while live:
                if self._stop_requested and not self._stop_sent:
                    self._stop_sent = True
                    for conn in live:
                        self._send(conn, ("stop",))
                while self._requests:
                    req = self._requests.popleft()
                    for w in req["waiting"].copy():
                        if w.conn in live:
                            self._send(w.conn, req["message"])
                        else:
                            self._answer(req, w, None)
                ready = _wait_ready(list(live) + [self._wake_r])
                if self._wake_r in ready:
                    os.read(self._wake_r, 4096)
                for conn in ready:
                    if conn == self._wake_r:
                        continue
                    w = live[conn]
                    try:
                        while True:
                            self._on_message(w, w.conn.recv())
                            if not w.conn.poll():
                                break
                    except (EOFError, OSError):
                        del live[w.conn]
                        self._on_exit(w)
        finally:
            self._inbox.close()
            for req in list(self._pending.values()):
                req["event"].set()
            self._all_done.set()

    def _send(self, conn: Any, msg: Any) -> None:
        try:
            conn.send(msg)
        except OSError:
            pass                # the worker is gone; its EOF will be seen

    def _on_message(self, w: _Worker, msg: tuple) -> None:
        kind = msg[0]
        if kind == "items":
            self._inbox.push(msg[1])
        elif kind in ("stats", "filtered"):
            req = self._pending.get(msg[1])
            if req is not None:
                if kind == "stats" and msg[2] is not None:
                    w.stats = msg[2]
                self._answer(req, w, msg[2])
        elif kind == "done":
            w.value, w.stats, w.finished = msg[1], msg[2], True
        elif kind == "error":
            exc, tb, text, stats = msg[1], msg[2], msg[3], msg[4]
            w.stats, w.finished = stats, True
            self._fail(w, WorkerError(f"worker {w.index} (pid {w.pid}) raised {text}",
                                      worker=w.index, pid=w.pid, traceback=tb, exception=exc))

    def _answer(self, req: dict, w: _Worker, value: Any) -> None:
        req["answers"][w.index] = value
        req["waiting"].discard(w)
        if not req["waiting"]:
            self._pending.pop(req["id"], None)
            req["event"].set()

    def _on_exit(self, w: _Worker) -> None:
        w.conn.close()
        w.process.join(5)
        for req in list(self._pending.values()):
            if w in req["waiting"]:
                self._answer(req, w, None)
        if not w.finished:
            w.finished = True
            self._fail(w, self._crash_error(w, "while capturing"))

    def _crash_error(self, w: _Worker, when: str) -> WorkerError:
        code = w.process.exitcode
        pid = w.pid or w.process.pid
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return WorkerError(f"worker {w.index} (pid {pid}) was killed by {name} {when}",
                               worker=w.index, pid=pid, signal=-code, exitcode=code)
        return WorkerError(f"worker {w.index} (pid {pid}) exited with code {code} {when}",
                           worker=w.index, pid=pid, exitcode=code)

    def _fail(self, w: _Worker, error: WorkerError) -> None:
        w.error = error
        if self._first_error is None:
            self._first_error = error
        if self.on_error == "stop":
            self._stop_requested = True         # the manager sends it on its next turn

    def _request(self, kind: str, *args: Any, timeout: float) -> dict:
        """Ask every running worker (kind, *args, request id); wait for the answers."""
        with self._lock:
            self._next_request += 1
            rid = self._next_request
        req: dict[str, Any] = {"id": rid, "message": (kind, *args, rid), "answers": {},
               "event": threading.Event(), "waiting": {w for w in self._workers if not w.finished}}
        if not req["waiting"]:
            return req
        self._pending[rid] = req
        self._requests.append(req)
        self._wake()
        req["event"].wait(timeout)
        self._pending.pop(rid, None)
        return req

    # -- public API ---------------------------------------------------------------

    @property
    def pids(self) -> list[int]:
        """The worker processes' ids, in worker order."""
        return [w.pid or w.process.pid for w in self._workers]

    @property
    def errors(self) -> list[Optional[WorkerError]]:
        """Each worker's WorkerError, or None, in worker order: every failure,
        where join() with on_error="stop" raises only the first."""
        return [w.error for w in self._workers]

    def stop(self) -> None:
        """Stop every worker's capture losslessly (see Capture.stop).

        Returns at once; join() waits for the handlers to finish.  Idempotent,
        callable from any thread and from a signal handler.
        """
        self._stop_requested = True
        if self._wake_w >= 0:
            self._wake()

    def join(self, timeout: Optional[float] = None) -> list:
        """Wait for every handler to return; their return values in worker order.

        Raises WorkerError if a worker failed and on_error="stop"; with
        on_error="continue" that worker's place holds its WorkerError.
        TimeoutError if `timeout` seconds pass first.
        """
        if not self._started:
            raise RuntimeError("the pool was not started (use `with zcap.Pool(...)` or start())")
        if not self._all_done.wait(timeout):
            raise TimeoutError(f"pool workers still running after {timeout} s; call stop() first")
        for w in self._workers:
            w.process.join()
        _running.discard(self)
        if self.on_error == "stop" and self._first_error is not None:
            raise self._first_error
        return [w.error if w.error is not None else w.value for w in self._workers]

    def results(self) -> Iterator[Any]:
        """The items the handlers stream with out.put(), as they arrive.

        Ends once every worker has finished and everything was yielded.
        Ctrl-C while iterating (main thread) stops the pool losslessly and
        the iteration goes on with what the workers still deliver; a second
        Ctrl-C raises KeyboardInterrupt.
        """
        previous = None
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            def on_sigint(signum: int, frame: Any) -> None:
                signal.signal(signal.SIGINT, signal.default_int_handler)
                self.stop()
            previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            while True:
                batch = self._inbox.get()
                if batch is None:
                    break
                yield from batch
        finally:
            if previous is not None and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, previous)
        if self.on_error == "stop" and self._first_error is not None:
            raise self._first_error

    async def aresults(self) -> AsyncIterator[Any]:
        """`async for item in pool.aresults()`: results() without blocking the loop."""
        while True:
            batch = await self._inbox.aget()
            if batch is None:
                break
            for item in batch:
                yield item
        if self.on_error == "stop" and self._first_error is not None:
            raise self._first_error

    def stats(self, timeout: float = 1.0) -> PoolStats:
        """Every worker's Stats, and their sums.

        Running workers are asked now; one that does not answer within
        `timeout` (e.g. stopped with SIGSTOP) is listed in `stale` with its
        last known numbers.  After join() these are the final numbers.
        """
        stale: list[int] = []
        if self._started and not self._all_done.is_set():
            req = self._request("stats", timeout=timeout)
            stale = sorted(w.index for w in req["waiting"])
        workers = [w.stats for w in self._workers]
        return PoolStats(received=sum(s.received for s in workers),
                         dropped=sum(s.dropped for s in workers),
                         delivered=sum(s.delivered for s in workers),
                         workers=workers, stale=tuple(stale))

    def set_filter(self, spec: Any, timeout: float = 10.0) -> None:
        """Change every worker's filter (Capture.set_filter: no packet of the old
        filter leaks).  Raises the first worker's FilterError."""
        req = self._request("filter", spec, timeout=timeout)
        if req["waiting"]:
            raise TimeoutError(f"workers {sorted(w.index for w in req['waiting'])} did not "
                               f"change their filter within {timeout} s")
        for answer in req["answers"].values():
            if isinstance(answer, BaseException):
                raise answer
            if isinstance(answer, str):
                raise errors.FilterError(answer)

    def close(self) -> None:
        """Stop and join; idempotent.  Workers that do not finish within a
        minute are killed."""
        if self._closed or not self._started:
            return
        self._closed = True
        self.stop()
        if not self._all_done.wait(60):
            for w in self._workers:
                if w.process.is_alive():
                    w.process.kill()
            self._all_done.wait(10)
        for w in self._workers:
            w.process.join(10)
        _running.discard(self)
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def __enter__(self) -> Pool:
        return self.start()

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        self.close()
        if exc_type is None and self.on_error == "stop" and self._first_error is not None:
            raise self._first_error

    async def __aenter__(self) -> Pool:
        await asyncio.get_running_loop().run_in_executor(None, self.start)
        return self

    async def __aexit__(self, exc_type: Any, *exc: object) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close)
        if exc_type is None and self.on_error == "stop" and self._first_error is not None:
            raise self._first_error

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._started else "new"
        return (f"<zcap.Pool {self.interface!r} {self.workers} workers {self.fanout.mode} "
                f"group={self.fanout.group_id} {state}>")
