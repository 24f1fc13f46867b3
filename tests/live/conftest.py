"""Fixtures for live tests: a private veth pair per test, and helpers."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import pytest

import zcap
from tests.conftest import live_unavailable_reason
from zcap import testbed as tb_mod


@pytest.fixture
def small_disk():
    """A 64 KiB tmpfs, unmounted and removed afterwards (also on failure)."""
    where = Path(tempfile.mkdtemp(prefix="zcap-full-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        os.rmdir(where)


@pytest.fixture(scope="session", autouse=True)
def _live_environment():
    reason = live_unavailable_reason()
    if reason:
        pytest.skip(reason)
    tb_mod.remove_stale_namespaces()
    yield


@pytest.fixture(scope="session")
def cy_consumer(tmp_path_factory):
    """bench/drain/cy_consumer.pyx (Ring.consume with a C callback), built once per run (~5 s)."""
    import importlib.util

    from bench.drain.build_cy_consumer import build_in_subprocess
    out = build_in_subprocess(tmp_path_factory.mktemp("cy"))
    so = next(out.glob("cy_consumer*.so"))
    spec = importlib.util.spec_from_file_location("cy_consumer", so)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def testbed():
    with tb_mod.Testbed() as tb:
        yield tb


@pytest.fixture
def jumbo_testbed():
    with tb_mod.Testbed(mtu=9000) as tb:
        yield tb


@pytest.fixture(scope="module")
def module_testbed():
    """One testbed for a whole test module: for many checks that each only read its state."""
    with tb_mod.Testbed() as tb:
        yield tb


# Small rings make wrap-around and overflow cheap to provoke.
SMALL_RING = dict(block_size=1 << 16, block_count=4, timeout_ms=10)
MODES = [
    pytest.param(dict(mode="ring"), id="ring"),
    pytest.param(dict(mode="ring", immediate=True), id="immediate"),
    pytest.param(dict(mode="copy"), id="copy"),
]


def capacity(cap: zcap.Capture, frame: int = 64) -> int:
    """How many frames of `frame` bytes the capture can queue before dropping."""
    import socket
    if cap.mode == "immediate":
        return cap.stats().ring_blocks                      # one frame per packet
    if cap.mode == "copy":
        s = socket.socket(fileno=cap.fileno())
        try:
            rcvbuf = s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        finally:
            s.detach()
        return rcvbuf // (frame + 900)                      # skb truesize per frame
    per_packet = (82 + frame + 7) // 8 * 8 + 8
    return cap.geometry.block_count * ((cap.geometry.block_size - 48) // per_packet)


def open_on(tb, iface: Optional[str] = None, **kw) -> zcap.Capture:
    opts = dict(block_size=1 << 20, block_count=8, timeout_ms=10)
    opts.update(kw)
    return zcap.open_live(iface or tb.b, netns=tb.netns, **opts)


def collect(cap: zcap.Capture, count: int, *, timeout: float = 5.0,
            keep: Callable = bytes) -> list:
    """Up to `count` packets, transformed by `keep`, waiting at most `timeout` for each."""
    out = []
    while len(out) < count:
        pkt = cap.next(timeout=timeout)
        if pkt is None:
            break
        out.append(keep(pkt))
    return out


def collect_until_idle(cap: zcap.Capture, *, idle: float = 0.3, keep: Callable = bytes) -> list:
    out = []
    while (pkt := cap.next(timeout=idle)) is not None:
        out.append(keep(pkt))
    return out


def seq_of(pkt) -> int:
    return tb_mod.frame_seq(pkt)


def expected_frame(template: bytes, seq: int, offset: int = tb_mod.SEQ_OFFSET) -> bytes:
    return template[:offset] + seq.to_bytes(8, "big") + template[offset + 8:]


class BackgroundSender(threading.Thread):
    """Sends `count` numbered frames from a thread (the C loop releases the GIL)."""

    def __init__(self, tb, template: bytes, count: int, *, pps: float = 0.0,
                 first_seq: int = 0, iface: Optional[str] = None) -> None:
        super().__init__(daemon=True)
        self.sender = tb.sender(iface)
        self.template, self.count, self.pps, self.first_seq = template, count, pps, first_seq
        self.sent = 0
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            self.sent = self.sender.send_sequence(self.template, self.count, pps=self.pps,
                                                  first_seq=self.first_seq, max_seconds=60)
        except BaseException as exc:  # reported by join_checked
            self.error = exc

    def join_checked(self, timeout: float = 60.0) -> int:
        self.join(timeout)
        assert not self.is_alive(), "sender did not finish in time"
        self.sender.close()
        if self.error:
            raise self.error
        return self.sent


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.01) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def pytest_asyncio_loop_factories(config, item):
    """Every async test runs on asyncio's default loop and on uvloop."""
    import asyncio

    import uvloop

    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@contextlib.contextmanager
def flooding(tb, frames: Sequence[bytes], *, max_seconds: float = 60.0) -> Iterator[None]:
    """Send `frames` over and over from another thread while the block runs.

    Continuous traffic for tests that change things under load; the sender
    stops when the block ends, or after `max_seconds` at the latest.
    """
    stop = threading.Event()

    def flood() -> None:
        deadline = time.monotonic() + max_seconds
        with tb.sender() as s:
            while not stop.is_set() and time.monotonic() < deadline:
                s.send_all(frames)

    sender = threading.Thread(target=flood, name="zcap-test-flood", daemon=True)
    sender.start()
    try:
        yield
    finally:
        stop.set()
        sender.join()
