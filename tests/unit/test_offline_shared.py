"""The readers on real capture files from other projects, checked against tshark and tcpdump.

The files live outside the repository (../shared/captures, see its
SOURCES.md); where that folder is absent these tests skip.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.unit.savefiles import (
    SHARED_CAPTURES,
    SHARED_MISSING,
    like_tcpdump,
    tcpdump_summaries,
    tshark_packets,
)
from zcap.errors import SavefileError, TruncatedSavefileError
from zcap.offline import open_offline

pytestmark = pytest.mark.skipif(not SHARED_CAPTURES.is_dir(), reason=SHARED_MISSING)

INT64_MAX = (1 << 63) - 1

READABLE = [
    "gopacket__pcapng_be_test004.pcapng",      # big-endian, two interfaces with different snaplens
    "gopacket__pcapng_le_test008.pcapng",      # if_tsresol 9, every IDB option there is
    "gopacket__pcapng_le_test202.pcapng",      # 3 sections, both byte orders, SPB, custom blocks
    "pcpp__dns_over_tcp.pcapng",               # 3 interfaces, a zero timestamp
    "pcpp__linktype_ipv4.pcap",                # LINKTYPE_IPV4
    "pcpp__linktype_ipv6.pcap",                # LINKTYPE_IPV6
    "pcpp__many_interfaces-1.pcapng",          # 11 interfaces, link types 0, 1, 12
    "pcpp__null_loopback.pcap",                # BSD NULL
    "pcpp__pcapng-example.pcapng",             # ns and us interfaces, timestamps past int64 ns
    "pcpp__raw_ip.pcap",                       # LINKTYPE_RAW
    "pcpp__sll.pcap",                          # Linux cooked v1
    "pcpp__sll2.pcap",                         # Linux cooked v2
    "scapy__pfcp.pcap",                        # really pcapng, with obsolete Packet Blocks
    "tcpdump__empty.pcapng",                   # an interface, no packet
    "tcpdump__tcp-handshake-nano.pcap",        # nanosecond pcap
]

# file -> (packets before the error, error class, offset, zcap's words, tcpdump's words)
MALFORMED = {
    "dpkt__truncated_dns_2.pcap": (
        1, TruncatedSavefileError, 240, "the file ends inside this packet record header: 7 of its 16 bytes",
        "truncated dump file; tried to read 16 header bytes, only got 7"),
    "gopacket__pcapng_le_test901.pcapng": (
        1, SavefileError, 480, "unsupported pcapng version 2.0",
        "unknown pcapng savefile major version number 2"),
    "libpcap__pcap-invalid-version-1.pcap": (
        0, SavefileError, 0, "unsupported pcap version 1.4 (an archaic format)",
        "archaic pcap savefile format"),
    "libpcap__pcapng-invalid-vers-1.pcapng": (
        0, SavefileError, 0, "unsupported pcapng version 0.1", "unsupported pcapng savefile version 0.1"),
    "libpcap__shb-option-too-long.pcapng": (
        0, SavefileError, 0, "section header block whose total length is 52 bytes in its header but "
                             "808464432 in its trailer",
        "block total length in header and trailer don't match"),
}


def test_every_shared_file_is_covered():
    files = {p.name for p in SHARED_CAPTURES.iterdir() if p.suffix in (".pcap", ".pcapng")}
    assert files == set(READABLE) | set(MALFORMED)


def zcap_rows(path):
    with open_offline(path) as src:
        return [(p.ts_ns, p.wirelen, p.caplen, p.ifindex, bytes(p)) for p in src]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize("name", READABLE)
def test_zcap_reads_what_tshark_reads(name):
    path = SHARED_CAPTURES / name
    ours = zcap_rows(path)
    theirs = tshark_packets(path)
    assert len(ours) == len(theirs)
    for i, (mine, ref) in enumerate(zip(ours, theirs)):
        ts, wirelen, caplen, ifid, data = ref
        if ts is None:
            ts = 0                                      # a Simple Packet Block has no time
        elif ts > INT64_MAX:
            ts = INT64_MAX                              # clamped, and counted
        # zcap needs wirelen >= caplen; tshark shows a smaller frame.len as it is
        assert mine == (ts, max(wirelen, caplen), caplen, ifid, data), f"packet {i}"


def test_interfaces_and_link_types_of_mixed_files():
    with open_offline(SHARED_CAPTURES / "pcpp__many_interfaces-1.pcapng") as src:
        kinds = {(p.ifindex, int(p.linktype)) for p in src}
        names = [i.name for i in src.interfaces]
    assert kinds == {(0, 1), (10, 0)}
    assert names[:3] == ["en0", "awdl0", "bridge0"] and names[10] == "lo0" and len(names) == 11
    with open_offline(SHARED_CAPTURES / "pcpp__pcapng-example.pcapng") as src:
        assert sum(1 for _ in src) == 159 and src.clamped_timestamps == 100
        assert [(i.linktype, i.ts_resolution) for i in src.interfaces] == [(1, 10**9), (113, 10**6)]


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_files_raise_a_specific_error(name):
    before, cls, offset, words, _ = MALFORMED[name]
    got = []
    with pytest.raises(SavefileError) as info:
        with open_offline(SHARED_CAPTURES / name) as src:
            got.extend(bytes(p) for p in src)
    err = info.value
    assert type(err) is cls and err.offset == offset and len(got) == before
    assert f"at byte offset {offset}: {words}" in str(err)


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_tcpdump_rejects_them_too(name):
    before, _, _, _, tcpdump_words = MALFORMED[name]
    out = subprocess.run(["tcpdump", "-n", "-r", str(SHARED_CAPTURES / name)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0 and tcpdump_words in out.stderr
    assert len(out.stdout.splitlines()) == before


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_tshark_rejects_them_after_the_same_packets(name):
    before = MALFORMED[name][0]
    out = subprocess.run(["tshark", "-r", str(SHARED_CAPTURES / name), "-T", "fields", "-e", "frame.len"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and len(out.stdout.split()) == before


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
@pytest.mark.parametrize("name", ["pcpp__linktype_ipv4.pcap", "pcpp__linktype_ipv6.pcap",
                                  "pcpp__null_loopback.pcap", "pcpp__raw_ip.pcap", "pcpp__sll.pcap",
                                  "pcpp__sll2.pcap", "scapy__pfcp.pcap",
                                  "tcpdump__tcp-handshake-nano.pcap"])
def test_summaries_say_what_tcpdump_says(name):
    path = SHARED_CAPTURES / name
    with open_offline(path) as src:
        ours = [p.summary() for p in src]
    theirs = tcpdump_summaries(path)
    assert len(ours) == len(theirs)
    wrong = [(o, t) for o, t in zip(ours, theirs) if not like_tcpdump(o, t)]
    assert not wrong
