"""Header columns (zcap._headers): against a model of each layout, against dpkt, and on truncation.

Every packet of every file in ../shared/captures must give what dpkt decodes;
generated packets (hypothesis) cover tag stacks, MPLS, IPv4 options and
fragments, IPv6 extension headers, every link type, and every truncation:
a field either has the whole packet's value or its fill value plus the
HDR_TRUNCATED flag, and bytes past the captured length never change a column.
"""

from __future__ import annotations

import random
import struct
from array import array

import dpkt
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zcap
from tests.unit import packets as P
from tests.unit.savefiles import SHARED_CAPTURES, SHARED_MISSING
from zcap import _headers
from zcap.decode import decode_packet
from zcap.offline import open_offline

COMPARED = ("ethertype", "vlan_outer", "vlan_inner", "mpls_label", "ip_version", "ip_src", "ip_dst",
            "ip6_src", "ip6_dst", "proto", "sport", "dport", "tcp_flags", "l3_offset", "l4_offset",
            "payload_offset", "frag_offset", "frag_flags", "parse_flags", "ttl", "icmp_type", "icmp_code")
FILL = {"ethertype": 0, "vlan_outer": -1, "vlan_inner": -1, "mpls_label": -1, "ip_version": 0,
        "ip_src": 0, "ip_dst": 0, "ip6_src": bytes(16), "ip6_dst": bytes(16), "proto": -1, "sport": -1,
        "dport": -1, "tcp_flags": -1, "l3_offset": -1, "l4_offset": -1, "payload_offset": -1,
        "frag_offset": 0, "frag_flags": 0, "ttl": -1, "icmp_type": -1, "icmp_code": -1}


def parse_many(datas, linktype=1, vlan=None, pad=b""):
    buf = bytearray()
    offsets, caplen = array("I"), array("I")
    for d in datas:
        offsets.append(len(buf))
        caplen.append(len(d))
        buf += d + pad
    v = None if vlan is None else array("i", vlan)
    return _headers.parse(bytes(buf), offsets, caplen, linktype, v)


def row(h, i):
    out = {}
    for name in COMPARED:
        col = np.asarray(h.column(name))
        out[name] = bytes(col[i]) if col.ndim == 2 else int(col[i])
    return out


def parse_one(data, linktype=1, vlan=-1, pad=b""):
    return row(parse_many([data], linktype, None if vlan < 0 else [vlan], pad), 0)


# -- generated packets --------------------------------------------------------

@st.composite
def specs(draw):
    link = draw(st.sampled_from([P.LINK_ETHERNET] * 4 + [P.LINK_SLL, P.LINK_SLL2, P.LINK_RAW,
                                                          P.LINK_NULL, P.LINK_LOOP]))
    s = P.Spec(link=link)
    cooked_or_eth = link in (P.LINK_ETHERNET, P.LINK_SLL, P.LINK_SLL2)
    if cooked_or_eth:
        s.tags = draw(st.lists(st.tuples(st.sampled_from(P.TPIDS), st.integers(0, 0xFFFF)), max_size=3))
        if draw(st.booleans()):
            s.meta_vlan = draw(st.integers(0, 4095))
    s.l3 = draw(st.sampled_from(["ipv4", "ipv4", "ipv6", "ipv6", "arp"]))
    if link == P.LINK_ETHERNET and s.l3 != "arp" and draw(st.integers(0, 4)) == 0:
        s.mpls = draw(st.integers(1, 3))
        if s.l3 == "ipv4":
            s.ihl = 5               # behind MPLS, IPv4 is recognised by 0x45 (as dpkt does)
    s.ttl = draw(st.integers(0, 255))
    if s.l3 == "ipv4":
        s.src, s.dst = draw(st.binary(min_size=4, max_size=4)), draw(st.binary(min_size=4, max_size=4))
        if not s.mpls:
            s.ihl = draw(st.integers(5, 15))
        s.more_fragments = draw(st.booleans()) and draw(st.booleans())
        s.dont_fragment = draw(st.booleans())
        s.frag_offset = 8 * draw(st.integers(0, 3)) if draw(st.booleans()) else 0
        s.proto = draw(st.sampled_from([6, 17, 1, 132, 136, 47]))
    elif s.l3 == "ipv6":
        s.src, s.dst = draw(st.binary(min_size=16, max_size=16)), draw(st.binary(min_size=16, max_size=16))
        s.ext = draw(st.lists(st.sampled_from([P.EXT_HOP, P.EXT_ROUTING, P.EXT_DSTOPTS, P.EXT_AH,
                                               P.EXT_FRAGMENT]), max_size=4))
        if P.EXT_FRAGMENT in s.ext:
            s.more_fragments = draw(st.booleans())
            s.frag_offset = 8 * draw(st.integers(0, 3))
        s.proto = draw(st.sampled_from([6, 17, 58, 132, 136, 50, 59]))
    s.sport, s.dport = draw(st.integers(0, 65535)), draw(st.integers(0, 65535))
    s.tcp_flags = draw(st.integers(0, 255))
    s.tcp_doff = draw(st.sampled_from([5, 5, 6, 15, 3]))
    s.icmp = (draw(st.integers(0, 255)), draw(st.integers(0, 255)))
    s.payload = draw(st.binary(max_size=24))
    return s


def model(s):
    e = P.expected(s)
    return {k: e[k] for k in COMPARED}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_columns_match_the_model(s):
    data = P.build(s)
    got = parse_one(data, s.link, -1 if s.meta_vlan is None else s.meta_vlan)
    assert got == model(s)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs(), st.data())
def test_truncation_gives_fill_values_and_a_flag(s, data):
    whole = P.build(s)
    vlan = -1 if s.meta_vlan is None else s.meta_vlan
    full = parse_one(whole, s.link, vlan)
    k = data.draw(st.integers(0, len(whole)))
    garbage = data.draw(st.binary(min_size=64, max_size=64))
    cut = parse_one(whole[:k], s.link, vlan, pad=garbage)
    # bytes past caplen change nothing: the same prefix followed by other bytes
    assert cut == parse_one(whole[:k], s.link, vlan, pad=bytes(64))
    differs = [name for name in FILL if cut[name] != full[name]]
    for name in differs:
        assert cut[name] == FILL[name], (name, k)
    if differs:
        assert cut["parse_flags"] & _headers.HDR_TRUNCATED
    if k == len(whole):
        assert cut == full


def dpkt_view(data, linktype):
    """What dpkt decodes: the columns it has an opinion on (None where it decodes nothing)."""

    class Raw:
        pass
    raw = Raw()
    raw.linktype = linktype
    raw.__bytes__ = None
    try:
        obj = decode_packet(_Bytes(data, linktype))
    except (zcap.DecodeError, dpkt.UnpackError):
        return None
    out = {}
    ip = obj
    if isinstance(obj, dpkt.ethernet.Ethernet):
        tags = getattr(obj, "vlan_tags", [])
        vids = [t.id for t in tags]
        out["vlan_outer"] = vids[0] if vids else -1
        if len(vids) > 1:
            out["vlan_inner"] = vids[1]
        ip = obj.data
    elif hasattr(obj, "ethtype") or isinstance(obj, dpkt.loopback.Loopback):
        ip = obj.data
    if isinstance(ip, dpkt.ip.IP):
        out.update(ip_version=4, ip_src=int.from_bytes(ip.src, "big"), ip_dst=int.from_bytes(ip.dst, "big"),
                   proto=ip.p, ttl=ip.ttl, frag_offset=ip.offset * 8)
        l4 = ip.data
        if ip.offset == 0 and ip.mf and isinstance(l4, bytes):   # dpkt leaves a first fragment undecoded
            try:
                l4 = {6: dpkt.tcp.TCP, 17: dpkt.udp.UDP}.get(ip.p, bytes)(l4) if len(l4) >= 20 else l4
            except dpkt.UnpackError:
                pass
    elif isinstance(ip, dpkt.ip6.IP6):
        out.update(ip_version=6, ip6_src=ip.src, ip6_dst=ip.dst, ttl=ip.hlim)
        if getattr(ip, "p", None) is not None:      # dpkt sets no protocol after ESP
            out["proto"] = ip.p
        l4 = ip.data
    else:
        return out
    if isinstance(l4, (dpkt.tcp.TCP, dpkt.udp.UDP, dpkt.sctp.SCTP)):
        out.update(sport=l4.sport, dport=l4.dport)
        if isinstance(l4, dpkt.tcp.TCP):
            out["tcp_flags"] = l4.flags
    return out


class _Bytes:
    def __init__(self, data, linktype):
        self.data, self.linktype = data, linktype

    def __bytes__(self):
        return self.data


def check_against_dpkt(data, linktype, got):
    want = dpkt_view(data, linktype)
    if want is None:
        return 0
    for name, value in want.items():
        assert got[name] == value, (name, got[name], value, data.hex())
    if "ip_version" not in want and got["ip_version"]:
        # dpkt gave up on the IP header: zcap found it too short or malformed
        assert got["parse_flags"] & (_headers.HDR_TRUNCATED | _headers.HDR_MALFORMED)
    return 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_generated_packets_match_dpkt(s):
    # dpkt follows at most two tags, the second only if it is 802.1Q
    s.tags = [t for t in s.tags if t[0] != 0x9100][:2]
    if len(s.tags) == 2 and s.tags[1][0] != 0x8100:
        s.tags = s.tags[:1]
    if s.link != P.LINK_ETHERNET:
        s.tags = []                 # dpkt's cooked headers do not decode VLAN tags
    if s.proto == 50:
        s.payload += bytes(8)       # dpkt reads ESP's SPI and sequence number as a header
    if s.l3 == "ipv6" and P.EXT_FRAGMENT in s.ext[1:]:
        s.frag_offset = 0           # dpkt decodes L4 of a later fragment unless its header comes first
    if s.l3 == "ipv6" and s.ext.count(P.EXT_FRAGMENT) > 0 and s.frag_offset == 0 and s.proto == 6:
        s.proto = 17
    data = P.build(s)
    check_against_dpkt(data, s.link, parse_one(data, s.link))


# -- real captures --------------------------------------------------------------

@pytest.mark.shared_captures
@pytest.mark.skipif(not SHARED_CAPTURES.is_dir(), reason=SHARED_MISSING)
def test_every_packet_of_the_shared_captures_matches_dpkt():
    files = sorted(p for p in SHARED_CAPTURES.iterdir() if p.suffix in (".pcap", ".pcapng"))
    compared = 0
    for path in files:
        try:
            src = open_offline(path, on_truncated="stop")
        except zcap.SavefileError:
            continue
        with src:
            try:
                for batch in src.batches():
                    h = batch.headers()
                    lt = batch.linktype
                    for i, pkt in enumerate(batch):
                        linktype = lt if isinstance(lt, int) else lt[i]
                        assert linktype == pkt.linktype
                        compared += check_against_dpkt(bytes(pkt), linktype, row(h, i))
            except zcap.SavefileError:
                pass                        # a malformed file: the packets before the error were checked
    assert compared > 900


# -- VLAN tags in metadata, on every link layer ---------------------------------

def test_stripped_tag_is_outer_and_a_tag_in_the_bytes_is_inner():
    s = P.Spec(tags=[(0x8100, 0x2000 | 7)], meta_vlan=42)
    got = parse_one(P.build(s), 1, 42)
    assert (got["vlan_outer"], got["vlan_inner"]) == (42, 7)
    assert got["ip_version"] == 4 and got["l3_offset"] == 18


def test_bounds_are_checked_before_any_byte_is_read():
    with pytest.raises(ValueError, match="past the"):
        _headers.parse(b"\0" * 10, array("I", [4]), array("I", [7]))


def test_unsupported_link_type_is_flagged():
    got = parse_one(b"\0" * 40, 147)
    assert got["parse_flags"] == _headers.HDR_UNSUPPORTED_LINK and got["ip_version"] == 0


# -- flow hash -------------------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(specs())
def test_flow_hash_is_the_same_both_ways(s):
    forward = P.build(s)
    s.src, s.dst, s.sport, s.dport = s.dst, s.src, s.dport, s.sport
    backward = P.build(s)
    h = parse_many([forward, backward], s.link)
    fh = np.asarray(h.flow_hash)
    assert fh[0] == fh[1]
    if np.asarray(h.ip_version)[0] == 0:
        assert fh[0] == 0


def test_flow_hash_separates_flows():
    rng = random.Random(5)
    datas = [P.build(P.random_spec(rng)) for _ in range(2000)]
    fh = np.asarray(parse_many(datas).flow_hash)
    assert len(set(fh.tolist())) > 1990


# -- address sets and selection --------------------------------------------------

def test_address_set_members():
    s = zcap.AddressSet(["10.0.0.1", "2001:db8::1", b"\x0a\0\0\3", 0x0A000004, "0.0.0.0"])
    assert len(s) == 5
    for a in ("10.0.0.1", "2001:db8::1", "10.0.0.3", "10.0.0.4", "0.0.0.0"):
        assert a in s
    for a in ("10.0.0.2", "2001:db8::2", "::"):
        assert a not in s
    with pytest.raises(ValueError, match="not an IPv4 or IPv6"):
        zcap.AddressSet(["10.0.0.0/8"])


def test_address_set_of_a_million():
    rng = np.random.default_rng(1)
    values = rng.integers(1, 2**32, size=1_000_000, dtype=np.uint32)
    s = zcap.AddressSet()
    s.add_ipv4_array(values)
    assert len(s) == len(np.unique(values))
    assert all(int(v) in s for v in values[:1000])
    assert s.memory_bytes <= 16 * 2**20


def test_select_by_address_matches_python():
    rng = random.Random(7)
    specs_ = [P.random_spec(rng, v6_share=0.4) for _ in range(3000)]
    datas = [P.build(s) for s in specs_]
    chosen = [s.src for s in specs_[::37]] + [s.dst for s in specs_[5::41]]
    aset = zcap.AddressSet(chosen)
    want = [i for i, s in enumerate(specs_) if s.src in set(chosen) or s.dst in set(chosen)]
    h = parse_many(datas)
    got = np.asarray(_headers.select(h, addresses=aset))
    assert got.dtype == np.uint32
    assert got.tolist() == want


def test_flow_heads_across_batches_and_directions():
    rng = random.Random(3)
    flows = [P.random_spec(rng) for _ in range(50)]
    for f in flows:
        f.proto = 6
    order = [rng.randrange(50) for _ in range(2000)]
    datas = []
    for k in order:
        s = flows[k]
        if rng.random() < 0.5:   # the reply direction: same flow
            s = P.Spec(**{**s.__dict__, "src": s.dst, "dst": s.src, "sport": s.dport, "dport": s.sport})
        datas.append(P.build(s))
    table = zcap.FlowTable(1000)
    admitted = []
    for start in range(0, 2000, 300):
        h = parse_many(datas[start:start + 300])
        admitted += [start + i for i in np.asarray(_headers.select(h, flow_heads=3, flows=table)).tolist()]
    seen: dict[int, int] = {}
    want = []
    for i, k in enumerate(order):
        seen[k] = seen.get(k, 0) + 1
        if seen[k] <= 3:
            want.append(i)
    assert admitted == want
    assert len(table) == 50 and table.evictions == 0


def test_flow_table_memory_is_bounded_and_evicts_least_recent():
    table = zcap.FlowTable(16)
    assert table.max_flows == 16
    rng = random.Random(9)
    datas = [P.build(P.random_spec(rng, vlan_share=0)) for _ in range(500)]
    h = parse_many(datas)
    _headers.select(h, flows=table)
    assert len(table) <= 16 and table.evictions >= 500 - 16 - 10
    before = table.memory_bytes
    _headers.select(parse_many(datas), flows=table)
    assert table.memory_bytes == before


def test_select_combines_conditions_with_and():
    a = P.Spec(src=b"\1\1\1\1", dst=b"\2\2\2\2", sport=1, dport=2)
    b = P.Spec(src=b"\3\3\3\3", dst=b"\4\4\4\4", sport=1, dport=2)
    h = parse_many([P.build(x) for x in (a, b, a, b, a)])
    got = np.asarray(_headers.select(h, addresses=zcap.AddressSet(["1.1.1.1"]), flow_heads=2)).tolist()
    assert got == [0, 2]


def test_offline_batches_select_and_headers(tmp_path):
    from tests.unit.savefiles import pcap
    rng = random.Random(11)
    specs_ = [P.random_spec(rng) for _ in range(500)]
    path = tmp_path / "mixed.pcap"
    path.write_bytes(pcap([(i, len(P.build(s)), P.build(s)) for i, s in enumerate(specs_)]))
    with open_offline(path) as src:
        batches = list(src.batches())
    total = sum(len(b) for b in batches)
    assert total == 500
    sport = np.concatenate([np.asarray(b.headers().sport) for b in batches])
    want = [s.sport if s.proto in (6, 17) else -1 for s in specs_]
    assert sport.tolist() == want
    assert batches[0].headers() is batches[0].headers()
    aset = zcap.AddressSet([specs_[3].src])
    assert 3 in np.asarray(batches[0].select(addresses=aset)).tolist()


def test_struct_layout_of_ipv6_rows():
    s = P.Spec(l3="ipv6", src=bytes(range(16)), dst=bytes(range(16, 32)), proto=17)
    h = parse_many([P.build(s)])
    a = np.asarray(h.ip6_src)
    assert a.shape == (1, 16) and a.dtype == np.uint8 and bytes(a[0]) == bytes(range(16))
    assert struct.unpack("!I", struct.pack("!I", int(np.asarray(h.ip_src)[0])))[0] == 0


def test_flow_table_evicts_the_least_recently_seen_flow_of_a_full_set():
    table = zcap.FlowTable(8)                       # one set of 8 ways
    flows = [P.Spec(src=bytes([10, 0, 0, i + 1]), dst=b"\x0a\0\0\xfe", sport=1000 + i, dport=80)
             for i in range(9)]
    order = list(range(8)) + [0] + [8] + [0, 1]     # fill, touch flow 0, a 9th flow, then 0 and 1 again
    h = parse_many([P.build(flows[k]) for k in order])
    heads = np.asarray(_headers.select(h, flow_heads=1, flows=table)).tolist()
    # the 9th flow evicted flow 1 (least recently seen); flow 0 was kept, flow 1 starts anew
    assert heads == list(range(8)) + [9, 11]
    assert table.evictions == 2 and len(table) == 8
