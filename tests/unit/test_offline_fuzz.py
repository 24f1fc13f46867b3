"""Fuzzing the readers with mutated real files: data or a SavefileError, nothing else.

Never a crash, never a hang (each example runs under a SIGALRM deadline),
never more memory than the file plus a chunk (tracemalloc), whatever the
mutation: flipped bytes, cuts, inserted garbage, huge length fields.
"""

from __future__ import annotations

import contextlib
import io
import signal
import struct
import tracemalloc
from typing import Optional

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit import savefiles as sf
from tests.unit.savefiles import Trickle
from zcap.decode import summarize
from zcap.errors import SavefileError
from zcap.offline import open_offline
from zcap.savefile import open_writer

SECONDS_PER_EXAMPLE = 10
FUZZ = settings(max_examples=1000, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _synthetic() -> dict[str, bytes]:
    pkts = [(10**18 + i * 997, 60 + i, sf.frame(i, 60 + i % 5)) for i in range(20)]
    seeds = {
        "pcap-le-ns": sf.pcap(pkts),
        "pcap-be-us": sf.pcap(pkts, order=">", nano=False, linktype=113, snaplen=64),
        "pcap-modified": sf.pcap(pkts[:5], nano=False, modified=True),
        "pcapng-mixed": b"".join([
            sf.shb("<", opts=sf.options("<", (4, b"fuzz"))), sf.idb("<", 1, 0, name="a", tsresol=9),
            sf.idb("<", 101, 64, tsresol=0x80 | 20, tsoffset=-5), sf.block("<", 0xBAD, b"custom"),
            *(sf.epb("<", i % 2, 10**15 + i, d, wl) for i, (_, wl, d) in enumerate(pkts[:8])),
            sf.shb(">"), sf.idb(">", 276, 100), sf.spb(">", pkts[0][2], 300),
            sf.pb(">", 0, 77, pkts[1][2]), sf.block(">", 5, b"\0" * 20),
        ]),
    }
    out = io.BytesIO()
    with open_writer(out, format="pcapng", linktype=1, if_name="veth") as w:
        for ts, wl, d in pkts:
            w.write_raw(d, ts, wl)
    seeds["zcap-pcapng"] = out.getvalue()
    return seeds


SEEDS = _synthetic()
if sf.SHARED_CAPTURES.is_dir():
    SEEDS.update({p.name: p.read_bytes() for p in sorted(sf.SHARED_CAPTURES.iterdir())
                  if p.suffix in (".pcap", ".pcapng")})

INTERESTING = [0, 1, 3, 4, 11, 12, 16, 28, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFF0,
               262144, 262145, 1 << 28, (1 << 28) + 4, 0x0A0D0D0A, 0x1A2B3C4D]


@st.composite
def mutated(draw) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "u32", "u32", "duplicate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=40))
        elif kind == "u32" and len(data) >= 4:
            at = min(at - at % draw(st.sampled_from([1, 4])), len(data) - 4)
            value = draw(st.sampled_from(INTERESTING) | st.integers(0, 0xFFFFFFFF))
            data[at:at + 4] = struct.pack(draw(st.sampled_from(["<I", ">I"])), value)
        elif kind == "duplicate" and data:
            end = draw(st.integers(at, len(data)))
            data[end:end] = data[at:end]
    return name, bytes(data)


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang(f"an example ran longer than {SECONDS_PER_EXAMPLE} s")


def read_everything(data: bytes, chunk_size: int, use_batches: bool) -> Optional[SavefileError]:
    """Read a file to its end; the SavefileError that stopped it, if any.  Checks each packet."""
    try:
        with open_offline(io.BytesIO(data), chunk_size=chunk_size) as src:
            if use_batches:
                for batch in src.batches():
                    offsets = np.frombuffer(batch.offsets, np.uint32)
                    caplen = np.frombuffer(batch.caplen, np.uint32)
                    wirelen = np.frombuffer(batch.wirelen, np.uint32)
                    buf = np.frombuffer(batch.buffer, np.uint8)
                    assert len(offsets) == len(batch) > 0
                    assert np.all(offsets.astype(np.int64) + caplen <= len(buf))
                    assert np.all(caplen <= wirelen)
            else:
                for pkt in src:
                    assert len(bytes(pkt)) == pkt.caplen <= pkt.wirelen
                    assert isinstance(pkt.ts_ns, int)
                    summarize(pkt)
    except SavefileError as err:
        assert f"at byte offset {err.offset}: " in str(err)
        assert 0 <= err.offset <= len(data)
        return err
    return None


@contextlib.contextmanager
def deadline():
    """Turn a hang into a failure: SIGALRM raises Hang after SECONDS_PER_EXAMPLE."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, SECONDS_PER_EXAMPLE)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@FUZZ
@given(case=mutated(), chunk_size=st.sampled_from([1, 13, 64, 4096, 1 << 20]),
       use_batches=st.booleans())
def test_mutated_files_give_data_or_a_savefile_error(case, chunk_size, use_batches):
    _, data = case
    tracemalloc.start()
    try:
        with deadline():
            read_everything(data, chunk_size, use_batches)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the file (copied into chunks, and tables of at most one entry per 12 bytes)
    # plus one chunk: never a length taken from the file
    assert peak < 8 * len(data) + 2 * max(chunk_size, 1 << 16) + (2 << 20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=mutated(), step=st.integers(1, 700))
def test_a_pipe_gives_the_same_result_as_a_file(case, step):
    """Chunk boundaries and short reads change nothing: same packets, same error, same offset."""
    _, data = case
    results = []
    with deadline():
        for source in (io.BytesIO(data), Trickle(data, step)):
            got, error = [], None
            try:
                with open_offline(source, chunk_size=512) as src:
                    got = [(p.ts_ns, p.wirelen, bytes(p), p.ifindex) for p in src]
            except SavefileError as err:
                error = (type(err), err.offset)
            results.append((got, error))
    (got_file, err_file), (got_pipe, err_pipe) = results
    if err_file is None or err_pipe is None or err_file == err_pipe:
        assert got_file == got_pipe and err_file == err_pipe
    else:
        # a length beyond the end of a file is refused before reading on; a pipe
        # has to read on to find the end: both report a truncation at the same record
        assert err_file[1] == err_pipe[1] and got_pipe[:len(got_file)] == got_file


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200), linktype=st.sampled_from([0, 1, 101, 108, 113, 228, 229, 276, 147]))
def test_summaries_of_random_bytes_never_raise(data, linktype):
    from zcap import _ring
    pkt = _ring.make_packet(data, linktype=linktype)
    assert isinstance(summarize(pkt), str)
