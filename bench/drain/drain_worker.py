"""One zcap consumer in its own process, for counting its system calls with perf.

    python3 bench/drain/drain_worker.py CONSUMER NETNS IFACE COUNT BLOCK_SIZE BLOCK_COUNT TIMEOUT_MS [CY_DIR]

Speaks the handshake of bench/drain/c/drain_protocol.h on stdin/stdout, so
drain.py drives it exactly like the C readers.  CY_DIR holds the built
cy_consumer extension (needed by zcap-cython only).  With ZCAP_DRAIN_CLOCK=cpu
in the environment the drain is timed by the thread's CPU time
(bench/drain/cpu_drain.py), not the wall clock.  A consumer that times a
part of its work itself (ZcapConsumer.part, e.g. zcap-headers-pass) reports
that part's CPU time instead.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

from drain_consumers import PART_NS, ZCAP_CONSUMERS
from drain_ring import RingPlan, open_capture


def say(word: str, payload: dict) -> None:
    print(f"{word} {json.dumps(payload)}", flush=True)


def wait_for_driver() -> None:
    if not sys.stdin.readline():
        sys.exit(3)


def main(argv: list[str]) -> int:
    if len(argv) not in (7, 8):
        sys.exit(__doc__)
    name, netns, iface = argv[:3]
    count, block_size, block_count, timeout_ms = map(int, argv[3:7])
    if len(argv) == 8:
        sys.path.insert(0, argv[7])
    consumer = ZCAP_CONSUMERS[name]
    consumer.preload()                  # before the clock and perf start

    plan = RingPlan(block_size, block_count, timeout_ms)
    with open_capture(iface, netns, plan, consumer.mode) as cap:
        print("READY", flush=True)
        wait_for_driver()
        stats = cap.stats()
        say("ARMED", {"received": stats.received, "dropped": stats.dropped})
        wait_for_driver()
        clock = time.thread_time_ns if os.environ.get("ZCAP_DRAIN_CLOCK") == "cpu" \
            else time.perf_counter_ns
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = clock()
        drained = consumer.drain(cap, count)
        elapsed = clock() - start
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        if consumer.part:                   # a self-timed part (CPU time), not the whole drain
            elapsed = PART_NS[0]
        say("DONE", {"packets": drained, "ns": elapsed, "polls": cap.stats().polls,
                     "faults": faults})
        wait_for_driver()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
