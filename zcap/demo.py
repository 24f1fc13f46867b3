"""`zcap demo`: a live capture that works on a machine with no traffic.

It creates a private veth pair in a new network namespace, sends numbered
UDP frames on one end from a C-speed sender thread, captures them on the
other end with a zero-copy ring, prints the first few like tcpdump does, and
ends with the statistics.  The namespace is removed afterwards.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import threading
import time
from typing import Any

import zcap
from zcap.testbed import SEQ_OFFSET, Testbed, remove_stale_namespaces


def summarize(pkt: zcap.Packet, ifname: str) -> str:
    """A tcpdump -n style line for the demo's Ethernet/IPv4/UDP frames."""
    ns = pkt.ts_ns
    stamp = time.strftime("%H:%M:%S", time.localtime(ns // 10**9)) + f".{ns % 10**9:09d}"
    data = bytes(pkt[:SEQ_OFFSET + 8])
    direction = "In " if pkt.direction == zcap.Direction.IN else "Out"
    if len(data) >= 42 and data[12:14] == b"\x08\x00" and data[23] == 17:
        src, dst = socket.inet_ntoa(data[26:30]), socket.inet_ntoa(data[30:34])
        sport, dport, ulen = struct.unpack_from("!HHH", data, 34)
        seq = struct.unpack_from("!Q", data, SEQ_OFFSET)[0] if len(data) >= SEQ_OFFSET + 8 else -1
        return (f"{stamp} {ifname} {direction} IP {src}.{sport} > {dst}.{dport}: "
                f"UDP, length {ulen - 8}  (seq {seq})")
    return f"{stamp} {ifname} {direction} ethertype 0x{pkt.protocol:04x}, length {pkt.wirelen}"


def run_demo(count: int = 20000, show: int = 10, mode: str = "ring") -> int:
    if os.geteuid() != 0:
        print("zcap demo needs root: it creates a network namespace and opens packet sockets.\n"
              "Run it with sudo.", file=sys.stderr)
        return 77
    remove_stale_namespaces()
    choices: dict[str, dict[str, Any]] = {"ring": {}, "copy": {"mode": "copy"},
                                          "immediate": {"immediate": True}}
    options = choices[mode]
    with Testbed() as tb:
        print(f"zcap demo: veth pair {tb.a} <-> {tb.b} in private network namespace {tb.netns}")
        template = tb.frame(128)
        with zcap.open_live(tb.b, netns=tb.netns, **options) as cap:
            print(f"capturing on {tb.b}: {cap.mode} mode, {cap.geometry.block_count} blocks of "
                  f"{cap.geometry.block_size // 1024} KiB, linktype {cap.linktype.name}")
            print(f"sending {count} numbered UDP frames from {tb.a} ...\n")
            sent = []
            sender = threading.Thread(
                target=lambda: sent.append(tb.sender().send_sequence(template, count, pps=200_000)))
            t0 = time.monotonic()
            sender.start()
            received = out_of_order = 0
            expected = 0
            for pkt in iter(lambda: cap.next(timeout=1.0), None):
                if received < show:
                    print(summarize(pkt, tb.b))
                elif received == show:
                    print("...")
                seq = struct.unpack_from("!Q", pkt, SEQ_OFFSET)[0]
                out_of_order += seq != expected
                expected = seq + 1
                received += 1
                if received == count:
                    break
            elapsed = time.monotonic() - t0
            sender.join()
            stats = cap.stats()
    print(f"\n{received} of {sent[0] if sent else 0} frames captured in {elapsed:.2f} s "
          f"({received / elapsed:,.0f} packets/s), {out_of_order} out of order")
    print(f"kernel: {stats.received} received by filter, {stats.dropped} dropped; "
          f"zcap: {stats.delivered} delivered from {stats.blocks} ring blocks, "
          f"{stats.polls} waits in poll(), {stats.generation_gaps} generation gaps")
    ok = received == count and out_of_order == 0 and stats.dropped == 0
    print("OK: every frame arrived once, in order" if ok else "MISMATCH: see the counts above")
    return 0 if ok else 1
