"""Address-set and flow-head selection agree with pcapy-ng 2.x `loop_filtered` on the same file.

pcapy-ng classifies IPv4 only (skipping up to two VLAN tags), with a packed
network-order address set (SET_MATCH, class 2) and a first-N-packets table
over one-direction IPv4 TCP/UDP 5-tuples (FLOW_HEAD, class 1).  zcap must
admit exactly the same packets for an IPv4 set, and the same flow heads on
the packets pcapy-ng can classify, with FlowTable(bidirectional=False).
bench/analytics.py runs the same comparison at full size and times it.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

import zcap
from tests.unit import packets as P
from tests.unit.savefiles import pcap
from zcap.offline import open_offline

pcapy = pytest.importorskip("pcapy")


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    rng = random.Random(17)
    hosts = [bytes([10, 0, i // 256, i % 256]) for i in range(1, 200)]
    records = []
    for i in range(5000):
        s = P.random_spec(rng, v6_share=0.4, vlan_share=0.3)
        if s.l3 == "ipv4":
            s.src, s.dst = rng.choice(hosts), rng.choice(hosts)
            s.sport = rng.choice((1000, 2000, 3000))
        data = P.build(s)
        records.append((1_600_000_000_000_000_000 + i * 1000, len(data), data))
    path = tmp_path_factory.mktemp("pcapy") / "mixed.pcap"
    path.write_bytes(pcap(records, nano=False))
    return path, hosts


def pcapy_admitted(path, admit, addresses=b"", cutoff=0):
    cap = pcapy.open_offline(str(path))
    if not hasattr(cap, "loop_filtered"):
        pytest.skip("pcapy-ng before 2.0 has no loop_filtered")
    got = []

    def cb(hdr, data, cls):
        sec, usec = hdr.getts()
        got.append(sec * 1_000_000_000 + usec * 1000)

    cap.loop_filtered(-1, cb, admit, addresses, cutoff)
    return got


def zcap_admitted(path, **select):
    got = []
    with open_offline(path) as src:
        for b in src.batches():
            ts = np.frombuffer(b.ts_ns, np.int64)
            got += ts[np.asarray(b.select(**select))].tolist()
    return got


@pytest.mark.parametrize("n_hosts", [1, 10, 100])
def test_address_set_admits_what_pcapy_ng_admits(capture, n_hosts):
    path, hosts = capture
    chosen = hosts[:n_hosts]
    theirs = pcapy_admitted(path, 1 << 2, b"".join(chosen))
    ours = zcap_admitted(path, addresses=zcap.AddressSet(chosen))
    assert ours == theirs and len(ours) > 0


def test_flow_heads_agree_on_ipv4_tcp_udp(capture):
    path, _ = capture
    theirs = pcapy_admitted(path, 1 << 1, b"", 3)
    ours = zcap_admitted(path, flow_heads=3, flows=zcap.FlowTable(1 << 16, bidirectional=False))
    eligible = set()
    with open_offline(path) as src:
        for b in src.batches():
            h = b.headers()
            ts = np.frombuffer(b.ts_ns, np.int64)
            ok = (np.asarray(h.ip_version) == 4) & np.isin(np.asarray(h.proto), (6, 17))
            eligible |= set(ts[ok].tolist())
    assert [t for t in ours if t in eligible] == theirs
    assert len(theirs) > 100
