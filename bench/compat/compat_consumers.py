"""The compat shims (zcap.compat.pcapy, zcap.compat.pcap) against the libraries they replace.

Each pair runs the same read call with the same loop body (unpack the
sequence number, check it counts up), one opened with the peer, the other
with the shim, through the same calls (`create()` + set_* + `activate()`
for pcapy, `pcap.pcap(...)` for pypcap).  Registered in peer_consumers.PEERS,
so drain.py and peer_worker.py run them like the other peers:

    sudo python3 bench/drain/drain.py --only pcapy-ng-next,zcap-pcapy-next,pcapy-ng-loop,\\
        zcap-pcapy-loop,pcapy-ng,zcap-pcapy-batch,pypcap,zcap-pcap --no-syscalls
"""

from __future__ import annotations

import importlib

from peer_consumers import SNAPLEN, PcapyBatch, PcapyNext, Peer

from zcap.testbed import SEQ_OFFSET

from drain_consumers import SEQ, SequenceError


def _open_pcapy(module: str, iface: str, buffer_bytes: int, timeout_ms: int):
    pcapy = importlib.import_module(module)
    reader = pcapy.create(iface)
    reader.set_snaplen(SNAPLEN)
    reader.set_buffer_size(min(buffer_bytes, 2**31 - 1))
    reader.set_timeout(timeout_ms)
    reader.activate()
    return reader


class ShimNext(PcapyNext):
    """zcap.compat.pcapy next(): same calls and loop as pcapy-ng-next."""

    def __init__(self, iface: str, buffer_bytes: int, timeout_ms: int) -> None:
        Peer.__init__(self, iface, buffer_bytes, timeout_ms)
        self.reader = _open_pcapy("zcap.compat.pcapy", iface, buffer_bytes, timeout_ms)


class ShimBatch(PcapyBatch):
    """zcap.compat.pcapy next_batch(4096): same calls and loop as pcapy-ng."""

    def __init__(self, iface: str, buffer_bytes: int, timeout_ms: int) -> None:
        Peer.__init__(self, iface, buffer_bytes, timeout_ms)
        self.reader = _open_pcapy("zcap.compat.pcapy", iface, buffer_bytes, timeout_ms)


class PcapyLoop(PcapyNext):
    """pcapy-ng loop(count, callback): one callback(header, bytes) per packet."""

    module = "pcapy"

    def __init__(self, iface: str, buffer_bytes: int, timeout_ms: int) -> None:
        Peer.__init__(self, iface, buffer_bytes, timeout_ms)
        self.reader = _open_pcapy(self.module, iface, buffer_bytes, timeout_ms)

    def drain(self, count: int) -> int:
        unpack_seq = SEQ.unpack_from
        state = [0]

        def callback(_header, data) -> None:
            seq = unpack_seq(data, SEQ_OFFSET)[0]
            if seq != state[0]:
                raise SequenceError(f"expected sequence {state[0]}, got {seq}")
            state[0] += 1

        self.reader.loop(count, callback)
        return state[0]

    def live(self, count: int) -> int:
        unpack_seq = SEQ.unpack_from
        state = [0]

        class Done(Exception):
            pass

        def callback(_header, data) -> None:
            if unpack_seq(data, SEQ_OFFSET)[0] >= count:
                raise Done
            state[0] += 1

        try:
            self.reader.loop(-1, callback)
        except Done:
            pass
        return state[0]


class ShimLoop(PcapyLoop):
    """zcap.compat.pcapy loop(count, callback): same calls and loop as pcapy-ng-loop."""

    module = "zcap.compat.pcapy"


class Pypcap(Peer):
    """pypcap: `for ts, buf in pc`, timestamps in ns, one (ts, bytes) per packet."""

    module = "pcap"

    def __init__(self, iface: str, buffer_bytes: int, timeout_ms: int) -> None:
        super().__init__(iface, buffer_bytes, timeout_ms)
        pcap = importlib.import_module(self.module)
        self.pc = pcap.pcap(iface, snaplen=SNAPLEN, promisc=False, timeout_ms=timeout_ms,
                            buffer_size=min(buffer_bytes, 2**31 - 1), timestamp_in_ns=True)

    def counters(self) -> tuple[int, int]:
        received, dropped, _ = self.pc.stats()
        return received, dropped

    def drain(self, count: int) -> int:
        unpack_seq = SEQ.unpack_from
        expected = 0
        for _ts, buf in self.pc:
            seq = unpack_seq(buf, SEQ_OFFSET)[0]
            if seq != expected:
                raise SequenceError(f"expected sequence {expected}, got {seq}")
            expected += 1
            if expected == count:
                break
        return expected

    def live(self, count: int) -> int:
        unpack_seq = SEQ.unpack_from
        packets = 0
        for _ts, buf in self.pc:
            if unpack_seq(buf, SEQ_OFFSET)[0] >= count:
                break
            packets += 1
        return packets


class ShimPcap(Pypcap):
    """zcap.compat.pcap: same calls and loop as pypcap."""

    module = "zcap.compat.pcap"


COMPAT_PEERS: dict[str, tuple[type, str, str]] = {
    "pcapy-ng-loop": (PcapyLoop, "pcapy", "pcapy-ng loop(count, callback)"),
    "zcap-pcapy-next": (ShimNext, "zcap", "zcap.compat.pcapy next(), as pcapy-ng-next"),
    "zcap-pcapy-loop": (ShimLoop, "zcap", "zcap.compat.pcapy loop(count, callback), as pcapy-ng-loop"),
    "zcap-pcapy-batch": (ShimBatch, "zcap", "zcap.compat.pcapy next_batch(4096), as pcapy-ng"),
    "pypcap": (Pypcap, "pcap", "pypcap `for ts, buf in pc` (ns timestamps)"),
    "zcap-pcap": (ShimPcap, "zcap", "zcap.compat.pcap `for ts, buf in pc`, as pypcap"),
}
