"""PACKET_FANOUT groups of captures in one process, on a real veth pair."""

from __future__ import annotations

import struct
import threading
import time

import pytest

import zcap
from tests.live.conftest import open_on
from zcap.testbed import SEQ_OFFSET, ipv4_fragments


def key(pkt) -> tuple[int, int]:
    data = bytes(pkt)
    return struct.unpack_from("!H", data, 34)[0], struct.unpack_from("!Q", data, SEQ_OFFSET)[0]


def send_flows(tb, flows: int, per_flow: int, first_port: int = 2000, *,
               back_to_back: bool = False) -> list[tuple[int, int]]:
    """`per_flow` numbered packets of each of `flows` UDP flows, interleaved
    (or one whole flow after the other)."""
    order = ([(f, seq) for f in range(flows) for seq in range(per_flow)] if back_to_back else
             [(f, seq) for seq in range(per_flow) for f in range(flows)])
    sent = []
    with tb.sender() as s:
        for f, seq in order:
            s.send(tb.frame(seq=seq, sport=first_port + f))
            sent.append((first_port + f, seq))
    return sent


def drain(cap) -> list[tuple[int, int]]:
    cap.stop()
    return [key(p) for p in cap]


def group(tb, n: int, fanout, **kw) -> list[zcap.Capture]:
    first = open_on(tb, fanout=fanout, **kw)
    caps = [first]
    for _ in range(n - 1):
        caps.append(open_on(tb, fanout=first.fanout, **kw))
    return caps


@pytest.mark.parametrize("opts", [
    pytest.param({}, id="ring"),
    pytest.param(dict(immediate=True), id="immediate"),
    pytest.param(dict(mode="copy"), id="copy"),
])
def test_hash_keeps_each_flow_in_one_member_in_order(testbed, opts):
    caps = group(testbed, 3, "hash", **opts)
    try:
        assert caps[0].fanout.mode == "hash" and caps[0].fanout.defrag
        assert len({c.fanout.group_id for c in caps}) == 1
        sent = send_flows(testbed, flows=120, per_flow=8)
        got = [drain(c) for c in caps]
        owner = {}
        for i, packets in enumerate(got):
            for flow, _ in packets:
                assert owner.setdefault(flow, i) == i, f"flow {flow} reached members {owner[flow]} and {i}"
            for flow in {f for f, _ in packets}:
                assert [s for f, s in packets if f == flow] == list(range(8)), "flow out of order"
        union = [k for packets in got for k in packets]
        assert sorted(union) == sorted(sent)                  # each packet exactly once
        assert all(len(p) > 0 for p in got)                   # 120 flows spread over 3 members
    finally:
        for c in caps:
            c.close()


def test_lb_spreads_evenly(testbed):
    caps = group(testbed, 2, "lb")
    try:
        sent = send_flows(testbed, flows=1, per_flow=2000)
        got = [drain(c) for c in caps]
        assert sorted(k for g in got for k in g) == sorted(sent)
        for g in got:
            assert abs(len(g) - 1000) <= 100, [len(x) for x in got]
    finally:
        for c in caps:
            c.close()


def test_cbpf_program_routes_by_its_return_value(testbed):
    # member = UDP source port & 1 (ldh [20]; and #1; ret a): a fanout program
    # sees the packet from its network header, as the kernel runs it
    program = [(0x28, 0, 0, 20), (0x54, 0, 0, 1), (0x16, 0, 0, 0)]
    caps = group(testbed, 2, zcap.Fanout("cbpf", program=program))
    try:
        sent = send_flows(testbed, flows=10, per_flow=20)
        got = [drain(c) for c in caps]
        assert got[0] and got[1]
        assert all(flow % 2 == 0 for flow, _ in got[0])
        assert all(flow % 2 == 1 for flow, _ in got[1])
        assert sorted(got[0] + got[1]) == sorted(sent)
    finally:
        for c in caps:
            c.close()


def test_cbpf_program_from_compile_filter(testbed):
    # a compiled filter returns 0 (member 0) for what it rejects, snaplen for the rest:
    # snaplen % 2 members == 0 too, so use 3 members: 262144 % 3 == 1
    prog = zcap.compile_filter("udp src port 2001", linktype=zcap.LinkType.RAW)
    caps = group(testbed, 3, zcap.Fanout("cbpf", program=prog))
    try:
        send_flows(testbed, flows=3, per_flow=10)
        got = [drain(c) for c in caps]
        assert {f for f, _ in got[1]} == {2001}
        assert {f for f, _ in got[0]} == {2000, 2002}
        assert got[2] == []
    finally:
        for c in caps:
            c.close()


def test_filters_apply_to_each_member(testbed):
    caps = group(testbed, 2, "hash", filter="udp and src port 2003")
    try:
        send_flows(testbed, flows=8, per_flow=10)
        got = [drain(c) for c in caps]
        assert sorted(k for g in got for k in g) == [(2003, s) for s in range(10)]
    finally:
        for c in caps:
            c.close()


def test_any_interface_group(testbed):
    first = zcap.open_live("any", netns=testbed.netns, fanout="hash", filter="udp",
                           block_size=1 << 20, block_count=4)
    second = zcap.open_live("any", netns=testbed.netns, fanout=first.fanout, filter="udp",
                            block_size=1 << 20, block_count=4)
    try:
        sent = send_flows(testbed, flows=20, per_flow=5)
        got = []
        for c in (first, second):
            c.stop()
            got += [(struct.unpack_from("!H", bytes(p), 20 + 20)[0],
                     struct.unpack_from("!Q", bytes(p), 20 + 28)[0]) for p in c]
        # on "any" each frame is seen leaving veth-a and arriving on veth-b
        assert sorted(got) == sorted(sent + sent)
    finally:
        first.close()
        second.close()


def test_conflicting_group_names_the_conflict(testbed):
    first = open_on(testbed, fanout="hash")
    try:
        gid = first.fanout.group_id
        with pytest.raises(zcap.FanoutError, match=r"mode 'hash'.*asked for mode 'lb'"):
            open_on(testbed, fanout=zcap.Fanout("lb", gid))
        with pytest.raises(zcap.FanoutError, match=r"interface ifindex.*asked for .*'veth-a'"):
            open_on(testbed, testbed.a, fanout=zcap.Fanout("hash", gid))
        with pytest.raises(zcap.FanoutError, match=r"other flags"):
            open_on(testbed, fanout=zcap.Fanout("hash", gid, rollover=True))
        with pytest.raises(zcap.FanoutError, match=r"other flags"):
            open_on(testbed, fanout=zcap.Fanout("hash", gid, defrag=False))
        # a failed join leaves nothing behind: the group still works as before
        send_flows(testbed, flows=1, per_flow=5)
        assert len(drain(first)) == 5
    finally:
        first.close()


def test_rollover_mode_spills_when_a_member_is_full(testbed):
    # member 0 (a small ring) is not read while the traffic runs: once it is
    # 3/4 full the kernel moves on to member 1, which a thread reads
    first = open_on(testbed, fanout="rollover", block_size=1 << 16, block_count=4)
    caps = [first, open_on(testbed, fanout=first.fanout)]
    try:
        second: list = []
        reader = threading.Thread(target=lambda: second.extend(key(p) for p in caps[1]))
        reader.start()
        sent = send_flows(testbed, flows=4, per_flow=1000)
        caps[1].stop()
        reader.join(10)
        got = [drain(caps[0]), second]
        assert got[0] and got[1]
        assert sorted(got[0] + got[1]) == sorted(sent)
        assert sum(c.stats().dropped for c in caps) == 0
        rolled, _, failed = zcap.fanout.rollover_stats(caps[0].fileno())
        assert rolled > 0 and failed == 0
    finally:
        for c in caps:
            c.close()


def test_ignore_outgoing_flag(testbed):
    # veth-a sends: its own captures see those frames as outgoing
    plain = open_on(testbed, testbed.a, fanout="hash")
    quiet = open_on(testbed, testbed.a, fanout=zcap.Fanout("hash", ignore_outgoing=True))
    try:
        send_flows(testbed, flows=2, per_flow=5)
        assert len(drain(plain)) == 10
        assert drain(quiet) == []
    finally:
        plain.close()
        quiet.close()


def test_stop_delivers_what_was_accepted_then_ends(testbed):
    cap = open_on(testbed, fanout="hash")
    try:
        sent = send_flows(testbed, flows=5, per_flow=200)
        first = cap.next(timeout=2)
        cap.stop()
        cap.stop()                                           # idempotent
        rest = [key(p) for p in cap]
        assert [key(first)] + rest == sent
        send_flows(testbed, flows=1, per_flow=10)            # after the stop: not accepted
        assert cap.next(timeout=0.2) is None
        s = cap.stats()
        assert s.received == len(sent) == s.delivered
    finally:
        cap.close()


def test_stop_from_another_thread_ends_a_blocked_iteration(testbed):
    cap = open_on(testbed)
    try:
        got = []
        t = threading.Thread(target=lambda: got.extend(cap))
        t.start()
        send_flows(testbed, flows=1, per_flow=50)
        time.sleep(0.1)
        cap.stop()
        t.join(5)
        assert not t.is_alive()
        assert len(got) == 50
    finally:
        cap.close()


@pytest.mark.parametrize("mode", ["cpu", "rnd", "qm"])
def test_other_modes_deliver_each_packet_once(testbed, mode):
    caps = group(testbed, 2, mode)
    try:
        assert caps[1].fanout.mode == mode
        sent = send_flows(testbed, flows=20, per_flow=10)
        got = [drain(c) for c in caps]
        assert sorted(got[0] + got[1]) == sorted(sent)
    finally:
        for c in caps:
            c.close()


def fragmented_traffic(tb) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """Sends six 3,000-byte UDP datagrams as three IPv4 fragments each, the
    first two fragments of a seventh (its last never comes), and 40 whole
    frames, interleaved.  Returns (every frame sent, the six datagrams as
    unfragmented frames, the incomplete datagram's two fragments)."""
    datagrams = [tb.frame(3014, seq=k, sport=6000 + k) for k in range(6)]
    pieces = [ipv4_fragments(d, ident=100 + k) for k, d in enumerate(datagrams)]
    incomplete = ipv4_fragments(tb.frame(3014, seq=99, sport=6099), ident=199)[:2]
    whole = [tb.frame(seq=k, sport=7000 + k % 8) for k in range(40)]
    order = []
    for k in range(6):
        order += pieces[k] + whole[k * 6:k * 6 + 6]
    order += incomplete + whole[36:]
    with tb.sender() as s:
        for frame in order:
            s.send(frame)
    return order, datagrams, incomplete


def frames(cap) -> list[bytes]:
    cap.stop()
    return [bytes(p) for p in cap]


def is_fragment(data: bytes) -> bool:
    return struct.unpack_from("!H", data, 20)[0] & 0x3FFF != 0     # MF or an offset


def test_defrag_gives_a_member_the_reassembled_datagram_never_its_fragments(testbed):
    """Fanout("hash") (defrag on, the default) as the kernel does it: the
    member gets one packet per datagram, and the fragments of a datagram that
    never completes reach no member and no member's counters (docs/pool.md,
    "IP fragments")."""
    caps = group(testbed, 2, "hash")
    witness = open_on(testbed)
    try:
        sent, datagrams, incomplete = fragmented_traffic(testbed)
        got = frames(caps[0]) + frames(caps[1])
        stats = [c.stats() for c in caps]
        assert sorted(frames(witness)) == sorted(sent)                 # the wire
        assert not [d for d in got if is_fragment(d)]
        reassembled = [d for d in got if len(d) > 1514]
        # the first fragment's IP header with the whole length (DF is not restored)
        assert sorted(d[34:] for d in reassembled) == sorted(d[34:] for d in datagrams)
        assert all(len(d) == 3014 for d in reassembled)
        assert sorted(d for d in got if len(d) <= 1514) == sorted(
            f for f in sent if not is_fragment(f))                     # no trace of `incomplete`
        assert sum(s.received for s in stats) == len(got) == len(sent) - 6 * 3 - 2 + 6
        assert sum(s.dropped for s in stats) == 0
    finally:
        witness.close()
        for c in caps:
            c.close()


def test_without_defrag_every_fragment_is_delivered_once_with_its_datagram(testbed):
    caps = group(testbed, 2, zcap.Fanout("hash", defrag=False))
    try:
        sent, _, _ = fragmented_traffic(testbed)
        got = [frames(c) for c in caps]
        assert sorted(got[0] + got[1]) == sorted(sent)
        owner: dict[int, int] = {}
        for i, member in enumerate(got):
            for ident in {struct.unpack_from("!H", f, 18)[0] for f in member if is_fragment(f)}:
                assert owner.setdefault(ident, i) == i, f"datagram {ident} split over members"
        assert len(owner) == 7
    finally:
        for c in caps:
            c.close()
