"""One peer (pcapy-ng, a plain socket, scapy) drained in its own process.

    ip netns exec NETNS python3 bench/peers/peer_worker.py PEER IFACE COUNT BUFFER_BYTES TIMEOUT_MS

Speaks the handshake of bench/drain/c/drain_protocol.h on stdin/stdout, so
drain.py drives it exactly like the C readers and drain_worker.py (and perf
can count its system calls during the drain alone).
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # bench/
import benchpath  # noqa: E402,F401  (every family folder on sys.path)
from peer_consumers import PEERS

from drain_worker import say, wait_for_driver


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        sys.exit(__doc__)
    name, iface = argv[:2]
    count, buffer_bytes, timeout_ms = map(int, argv[2:5])
    cls, module, _ = PEERS[name]
    importlib.import_module(module)         # before the clock and perf start
    peer = cls(iface, buffer_bytes, timeout_ms)
    print("READY", flush=True)
    wait_for_driver()
    received, dropped = peer.counters()
    say("ARMED", {"received": received, "dropped": dropped})
    wait_for_driver()
    start = time.perf_counter_ns()
    drained = peer.drain(count)
    elapsed = time.perf_counter_ns() - start
    say("DONE", {"packets": drained, "ns": elapsed, "polls": 0})
    wait_for_driver()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
