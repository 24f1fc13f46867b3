"""zcap.compat.pcap (pypcap's API) on savefiles, checked against pypcap 1.3's source
and, where it is installed (the `bench` extra), against pypcap itself."""

from __future__ import annotations

import pytest

import zcap
import zcap.compat.pcap as pcap
from tests.unit.test_compat_pcapy import PINGS
from zcap.testbed import udp_frame


def reference(in_ns: bool = False):
    with zcap.open_offline(PINGS) as src:
        out = []
        for p in src:
            sec, nsec = divmod(p.ts_ns, 10**9)
            out.append((p.ts_ns if in_ns else sec + nsec * 1e-9, bytes(p)))
    return out


@pytest.mark.parametrize("in_ns", [False, True])
def test_iteration_gives_pypcap_pairs(in_ns):
    pc = pcap.pcap(str(PINGS), timestamp_in_ns=in_ns)
    got = list(pc)
    assert got == reference(in_ns) and len(got) == 96
    assert all(type(ts) is (int if in_ns else float) and type(b) is bytes for ts, b in got)
    assert (pc.name, pc.snaplen, pc.dloff, pc.datalink(), pc.precision, pc.timestamp_in_ns) == \
        (str(PINGS), 96, 14, pcap.DLT_EN10MB, pcap.PCAP_TSTAMP_PRECISION_NANO, in_ns)
    assert pc.fileno() == -1 and pc.filter == ""
    with pytest.raises(StopIteration):
        next(pc)


def test_same_results_as_pypcap_itself():
    real = pytest.importorskip("pcap")
    for in_ns in (False, True):
        assert list(pcap.pcap(str(PINGS), timestamp_in_ns=in_ns)) == \
            list(real.pcap(str(PINGS), timestamp_in_ns=in_ns))
    ours, theirs = pcap.pcap(str(PINGS)), real.pcap(str(PINGS))
    ours.setfilter("ip[5] & 1 == 1")
    theirs.setfilter("ip[5] & 1 == 1")
    assert ours.readpkts() == theirs.readpkts()
    for name in dir(real):
        if name.startswith(("DLT_", "PCAP_D_", "PCAP_TSTAMP_")):
            assert getattr(pcap, name) == getattr(real, name), name
    for dlt, off in real.dltoff.items():
        assert pcap.dltoff[dlt] == off
    frames = [udp_frame(64), udp_frame(64, dport=53), udp_frame(100, vlan_tags=[(0x8100, 3)])]
    for expr in ("udp", "udp port 53", "vlan", "ip[2:2] > 50"):
        assert [pcap.bpf(expr, pcap.DLT_EN10MB).filter(f) for f in frames] == \
            [real.bpf(expr.encode(), real.DLT_EN10MB).filter(f) for f in frames]


def test_dispatch_loop_readpkts_and_callback_args():
    pc = pcap.pcap(str(PINGS))
    seen = []
    pc.loop(10, lambda ts, pkt, tag: seen.append((tag, ts, pkt)), "x")
    assert [(ts, pkt) for _, ts, pkt in seen] == reference()[:10] and seen[0][0] == "x"
    assert pc.dispatch(5, lambda ts, pkt: None) == 5
    rest = pc.readpkts()                   # on a savefile: to the end
    assert rest == reference()[15:]
    assert pc.readpkts() == []
    assert pc.dispatch(0, print) == 0


def test_callback_exceptions_propagate_at_once():
    class Stop(Exception):
        pass

    calls = []

    def cb(ts, pkt):
        calls.append(ts)
        raise Stop

    pc = pcap.pcap(str(PINGS))
    with pytest.raises(Stop):
        pc.dispatch(-1, cb)
    assert len(calls) == 1                  # pypcap would have called it for every packet
    with pytest.raises(Stop):
        pc.loop(0, cb)
    assert len(list(pc)) == 94


def test_setfilter_bpf_errors_and_close():
    pc = pcap.pcap(str(PINGS))
    pc.setfilter("ip[5] & 1 == 1")
    assert pc.filter == "ip[5] & 1 == 1"
    with zcap.open_offline(PINGS, filter="ip[5] & 1 == 1") as ref:
        assert [b for _, b in pc] == [bytes(p) for p in ref]
    with pytest.raises(OSError):
        pc.setfilter("ip[")
    assert "syntax" in pc.geterr() or pc.geterr()
    assert pc.setdirection(pcap.PCAP_D_IN) is False     # not on a savefile
    with pytest.raises(OSError, match="savefile"):
        pc.stats()
    with pytest.raises(OSError, match="savefile"):
        pc.sendpacket(b"x" * 60)
    pc.close()
    pc.close()
    with pytest.raises(OSError):
        pc.readpkts()
    assert pcap.bpf(b"udp", pcap.DLT_EN10MB).filter(udp_frame(64)) is True
    assert pcap.bpf("tcp", pcap.DLT_EN10MB).filter(udp_frame(64)) is False
    with pytest.raises(OSError, match="bad filter"):
        pcap.bpf("tcp port")
    with pytest.raises(OSError):
        pcap.pcap("/nonexistent-dir/no-such-if")
    assert pcap.ex_name("eth0") == "eth0"
