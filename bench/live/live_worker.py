"""One Python consumer (zcap or a peer) reading live, in its own process.

    ip netns exec NETNS python3 bench/live/live_worker.py \
        NAME IFACE COUNT BLOCK_SIZE BLOCK_COUNT TIMEOUT_MS [CY_DIR]

Says READY once its capture is open, reads until live.py's end marker, then
says DONE {"packets": P, "received": R, "dropped": D} (live mode of
bench/drain/c/drain_protocol.h).  Peers get a buffer of BLOCK_SIZE * BLOCK_COUNT.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # bench/
import benchpath  # noqa: E402,F401  (every family folder on sys.path)
from live_consumers import LIVE_ZCAP
from peer_consumers import PEERS

from drain_ring import RingPlan, open_capture
from drain_worker import say


def main(argv: list[str]) -> int:
    if len(argv) not in (6, 7):
        sys.exit(__doc__)
    name, iface = argv[:2]
    count, block_size, block_count, timeout_ms = map(int, argv[2:6])
    if len(argv) == 7:
        sys.path.insert(0, argv[6])
    plan = RingPlan(block_size, block_count, timeout_ms)
    if name in PEERS:
        cls, module, _ = PEERS[name]
        importlib.import_module(module)
        peer = cls(iface, plan.total_bytes, timeout_ms)
        print("READY", flush=True)
        packets = peer.live(count)
        received, dropped = peer.counters()
    else:
        consumer = LIVE_ZCAP[name]
        if consumer.module:
            importlib.import_module(consumer.module)
        # netns=None: ip netns exec already put this process in the namespace
        with open_capture(iface, None, plan, consumer.mode) as cap:
            print("READY", flush=True)
            packets = consumer.run(cap, count)
            stats = cap.stats()
            received, dropped = stats.received, stats.dropped
    say("DONE", {"packets": packets, "received": received, "dropped": dropped})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
