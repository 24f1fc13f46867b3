"""What a Python user would pick instead of zcap: pcapy-ng, a plain socket, scapy.

Each peer opens its capture on an interface of the current network namespace
(peer_worker.py and live_worker.py run under `ip netns exec`), reports the
kernel's counters, and reads packets with the same loop body as the zcap
consumers (drain_consumers.py): unpack the big-endian u64 at offset 42.

  drain(count)  reads exactly `count` packets, checking they count up from 0
  live(count)   counts packets numbered below `count` until one numbered
                `count` or above (live.py's end marker) arrives
"""

from __future__ import annotations

import socket
import struct
from typing import Callable

from zcap.testbed import SEQ_OFFSET

from drain_consumers import SEQ, SequenceError

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_RCVBUFFORCE = 33
SNAPLEN = 262144
MAX_EMPTY_READS = 20        # reads that time out before a drain gives up
PCAPY_BATCH = 4096          # packets per pcapy-ng next_batch() call
PCAPY_OFFSET_FIELD = 2      # its metadata: native u32 sec, usec, offset, caplen per packet


def packet_socket(iface: str, buffer_bytes: int) -> socket.socket:
    """An AF_PACKET socket on `iface` with a receive buffer of `buffer_bytes`.

    Protocol 0 until bound: nothing from other interfaces is queued first.
    """
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, min(buffer_bytes, 2**31 - 1) // 2)
    sock.bind((iface, ETH_P_ALL))
    return sock


def socket_counters(sock: socket.socket) -> tuple[int, int]:
    """(received including drops, dropped): PACKET_STATISTICS, which resets on read."""
    packets, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    return packets, drops


class Peer:
    """A capture from another library; subclasses fill in the reads."""

    def __init__(self, iface: str, buffer_bytes: int, timeout_ms: int) -> None:
        self.received = self.dropped = 0

    def counters(self) -> tuple[int, int]:
        """(received, dropped) since the capture was opened."""
        return self.received, self.dropped

    def drain(self, count: int) -> int:
        raise NotImplementedError

    def live(self, count: int) -> int:
        raise NotImplementedError


class PythonSocket(Peer):
    """A plain AF_PACKET socket and a recv_into() loop: one syscall per packet."""

    def __init__(self, iface: str, buffer_bytes: int, timeout_ms: int) -> None:
        super().__init__(iface, buffer_bytes, timeout_ms)
        # blocking: with a timeout CPython polls before every recv
        self.sock = packet_socket(iface, buffer_bytes)

    def counters(self) -> tuple[int, int]:
        packets, drops = socket_counters(self.sock)
        self.received += packets
        self.dropped += drops
        return self.received, self.dropped

    def drain(self, count: int) -> int:
        buf = bytearray(65536)
        recv_into, unpack_seq = self.sock.recv_into, SEQ.unpack_from
        for expected in range(count):
            recv_into(buf)
            seq = unpack_seq(buf, SEQ_OFFSET)[0]
            if seq != expected:
                raise SequenceError(f"expected sequence {expected}, got {seq}")
        return count

    def live(self, count: int) -> int:
        buf = bytearray(65536)
        recv_into, unpack_seq = self.sock.recv_into, SEQ.unpack_from
        packets = 0
        while True:
            recv_into(buf)
            if unpack_seq(buf, SEQ_OFFSET)[0] >= count:
                return packets
            packets += 1


class Pcapy(Peer):
    """pcapy-ng (libpcap underneath); subclasses pick the read call."""

    def __init__(self, iface: str, buffer_bytes: int, timeout_ms: int) -> None:
        super().__init__(iface, buffer_bytes, timeout_ms)
        import pcapy

        self.reader = pcapy.create(iface)
        self.reader.set_snaplen(SNAPLEN)
        self.reader.set_buffer_size(min(buffer_bytes, 2**31 - 1))
        self.reader.set_timeout(timeout_ms)
        self.reader.activate()

    def counters(self) -> tuple[int, int]:
        received, dropped, _ = self.reader.stats()
        return received, dropped


class PcapyBatch(Pcapy):
    """next_batch(): up to 4096 packets per call as one buffer plus a metadata
    array; the loop walks the packets' offsets (the fastest way to it)."""

    def drain(self, count: int) -> int:
        next_batch, unpack_seq = self.reader.next_batch, SEQ.unpack_from
        expected = empty = 0
        while expected < count:
            data, meta = next_batch(min(PCAPY_BATCH, count - expected))
            if not len(meta):
                empty += 1
                if empty > MAX_EMPTY_READS:
                    raise TimeoutError(f"no packets after {expected} of {count}")
                continue
            for offset in memoryview(meta).cast("I")[PCAPY_OFFSET_FIELD::4]:
                seq = unpack_seq(data, offset + SEQ_OFFSET)[0]
                if seq != expected:
                    raise SequenceError(f"expected sequence {expected}, got {seq}")
                expected += 1
        return expected

    def live(self, count: int) -> int:
        next_batch, unpack_seq = self.reader.next_batch, SEQ.unpack_from
        packets = 0
        while True:
            data, meta = next_batch(PCAPY_BATCH)
            for offset in memoryview(meta).cast("I")[PCAPY_OFFSET_FIELD::4]:
                if unpack_seq(data, offset + SEQ_OFFSET)[0] >= count:
                    return packets
                packets += 1


class PcapyNext(Pcapy):
    """next(): the classic pcapy loop, one (header, bytes) pair per call."""

    def drain(self, count: int) -> int:
        next_packet, unpack_seq = self.reader.next, SEQ.unpack_from
        expected = empty = 0
        while expected < count:
            _header, data = next_packet()
            if not data:
                empty += 1
                if empty > MAX_EMPTY_READS:
                    raise TimeoutError(f"no packets after {expected} of {count}")
                continue
            seq = unpack_seq(data, SEQ_OFFSET)[0]
            if seq != expected:
                raise SequenceError(f"expected sequence {expected}, got {seq}")
            expected += 1
        return expected

    def live(self, count: int) -> int:
        next_packet, unpack_seq = self.reader.next, SEQ.unpack_from
        packets = 0
        while True:
            _header, data = next_packet()
            if data:
                if unpack_seq(data, SEQ_OFFSET)[0] >= count:
                    return packets
                packets += 1


class Scapy(Peer):
    """scapy.sniff() on scapy's own packet socket (conf.L2listen), receive buffer
    raised like the others'; every packet is dissected into layers, which is
    what sniff() is for and where its time goes."""

    def __init__(self, iface: str, buffer_bytes: int, timeout_ms: int) -> None:
        super().__init__(iface, buffer_bytes, timeout_ms)
        from scapy.config import conf

        self.sock = conf.L2listen(iface=iface)
        self.sock.ins.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE,
                                 min(buffer_bytes, 2**31 - 1) // 2)

    def counters(self) -> tuple[int, int]:
        packets, drops = socket_counters(self.sock.ins)
        self.received += packets
        self.dropped += drops
        return self.received, self.dropped

    def _sniff(self, body: Callable, count: int, stop: Callable) -> None:
        from scapy.sendrecv import sniff

        sniff(opened_socket=self.sock, prn=body, store=False, count=count, stop_filter=stop,
              timeout=600)

    def drain(self, count: int) -> int:
        unpack_seq = SEQ.unpack_from
        state = {"expected": 0, "bad": None}

        def body(pkt) -> None:
            seq = unpack_seq(pkt.original, SEQ_OFFSET)[0]
            if seq != state["expected"] and state["bad"] is None:
                state["bad"] = f"expected sequence {state['expected']}, got {seq}"
            state["expected"] += 1

        self._sniff(body, count, lambda pkt: state["bad"] is not None)
        if state["bad"]:
            raise SequenceError(state["bad"])
        return state["expected"]

    def live(self, count: int) -> int:
        unpack_seq = SEQ.unpack_from
        state = {"packets": 0, "done": False}

        def body(pkt) -> None:
            if unpack_seq(pkt.original, SEQ_OFFSET)[0] >= count:
                state["done"] = True
            else:
                state["packets"] += 1

        self._sniff(body, 0, lambda pkt: state["done"])
        return state["packets"]


PEERS: dict[str, tuple[type, str, str]] = {
    # name: (class, module it needs, summary)
    "pcapy-ng": (PcapyBatch, "pcapy", "pcapy-ng next_batch(4096), loop over its metadata"),
    "pcapy-ng-next": (PcapyNext, "pcapy", "pcapy-ng next(), one (header, bytes) per call"),
    "python-socket": (PythonSocket, "socket", "AF_PACKET socket, recv_into() per packet"),
    "scapy": (Scapy, "scapy.all", "scapy sniff(prn=..., store=False), packets dissected"),
}


# The compat shims and the peers they replace (bench/compat/compat_consumers.py).
from compat_consumers import COMPAT_PEERS  # noqa: E402 - needs the classes above

PEERS.update(COMPAT_PEERS)
