"""Interfaces, timestamp sources and the tcpdump options that need a live capture.

Everything runs inside the test bed's namespace: `zcap --netns NS` against
`ip netns exec NS tcpdump` for -D, -L, -J and -d; rotation rings (-W), -z,
-U, the pcapng statistics block, and hardware timestamps on a veth pair
(which has none: the error must say so).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import time

import pytest

import zcap
from tests.live.cli_helpers import ZcapProcess, run_zcap, summary
from tests.live.conftest import open_on

needs_tcpdump = pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")


def in_netns(tb, *argv: str) -> str:
    r = subprocess.run(["ip", "netns", "exec", tb.netns, *argv], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def in_netns_stderr(tb, *argv: str) -> str:
    r = subprocess.run(["ip", "netns", "exec", tb.netns, *argv], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and not r.stdout, r.stderr
    return r.stderr


def send(tb, count: int, size: int = 64, first: int = 0) -> None:
    with tb.sender(tb.a) as s:
        for i in range(count):
            s.send(tb.frame(size=size, seq=first + i))


def test_interfaces_describe_the_namespace(testbed):
    tb = testbed
    tb.ip("addr", "add", "10.9.0.1/24", "broadcast", "+", "dev", tb.a)
    with open_on(tb, promisc=True):
        found = {i.name: i for i in zcap.interfaces(tb.netns)}
    assert set(found) == {tb.a, tb.b, "lo", "any"}
    ns_inode = os.stat(f"/run/netns/{tb.netns}").st_ino
    for name in (tb.a, tb.b):
        iface = found[name]
        assert iface.index == tb.ifindex(name) and iface.mtu == 1500
        assert iface.hwaddr == tb.mac(name).hex(":")
        assert iface.up and iface.running and not iface.loopback and iface.connected
        assert iface.linktype == zcap.LinkType.ETHERNET and iface.linktypes == (zcap.LinkType.ETHERNET,)
        assert iface.tstamp_types == ("host",) and iface.can_capture
        assert iface.netns == tb.netns and iface.netns_inode == ns_inode
    assert found[tb.b].promiscuous and not found[tb.a].promiscuous
    (addr,) = found[tb.a].addresses
    assert (addr.family, addr.address, addr.prefixlen, addr.netmask, addr.broadcast) == \
        ("inet", "10.9.0.1", 24, "255.255.255.0", "10.9.0.255")
    assert found["lo"].loopback and found["lo"].connected is None
    assert found["any"].linktypes == (zcap.LinkType.LINUX_SLL2, zcap.LinkType.LINUX_SLL)
    tb.ip("link", "set", tb.a, "down")
    after = {i.name: i for i in zcap.interfaces(tb.netns)}
    assert not after[tb.a].up and after[tb.b].connected is False
    assert [i.name for i in zcap.interfaces(tb.netns)][-1] == tb.a        # down sorts last


@needs_tcpdump
def test_list_interfaces_as_tcpdump_and_capture_by_number(testbed):
    tb = testbed
    tb.ip("link", "set", tb.a, "down")      # a down interface and a disconnected one, too
    tb.ip("link", "set", tb.a, "up")
    ours = run_zcap("--netns", tb.netns, "-D").stdout.splitlines()
    theirs = in_netns(tb, "tcpdump", "-D").splitlines()
    def strip(line):
        return re.sub(r"^\d+\.", "", line)

    assert [strip(line) for line in ours] == [strip(line) for line in theirs
                                              if strip(line).split()[0] in {tb.a, tb.b, "lo", "any"}]
    assert [line.split(".")[0] for line in ours] == [str(n) for n in range(1, len(ours) + 1)]
    number = next(line.split(".")[0] for line in ours if strip(line).startswith(tb.b + " "))
    proc = ZcapProcess("--netns", tb.netns, "-i", number, "-c", "3", "-t")
    send(tb, 3)
    rc, out, err = proc.wait()
    lines = out.splitlines()          # on veth-b itself: no "veth-b In" prefix as on "any"
    assert rc == 0 and len(lines) == 3 and all(line.startswith("IP ") for line in lines), (out, err)
    by_number = run_zcap("--netns", tb.netns, "-i", number, "-L")
    assert by_number.stderr.startswith(f"Data link types for {tb.b} ")
    bad = run_zcap("--netns", tb.netns, "-i", "99", "-c", "1")
    assert bad.returncode == 4 and "no interface number 99" in bad.stderr


@needs_tcpdump
def test_link_and_timestamp_types_as_tcpdump(testbed):
    tb = testbed
    for option in ("-L", "-J"):
        for iface in (tb.b, "lo", "any"):
            # tcpdump prints both lists on standard error; so does zcap
            ours = run_zcap("--netns", tb.netns, option, "-i", iface).stderr.splitlines()
            theirs = in_netns_stderr(tb, "tcpdump", option, "-i", iface).splitlines()
            assert ours[0] == theirs[0]
            # zcap lists what it delivers; libpcap adds DOCSIS to Ethernet devices
            assert ours[1:] and set(ours[1:]) <= {re.sub(r" \(printing not supported\)", "", t)
                                                  for t in theirs[1:]}
            if option == "-J":
                assert ours == theirs


@needs_tcpdump
@pytest.mark.parametrize("level", ["-d", "-dd", "-ddd"])
def test_compiled_filter_for_the_interface_as_tcpdump(testbed, level):
    tb = testbed
    for iface, expr in ((tb.b, "vlan 10 and udp"), (tb.b, "tcp port 80"), ("any", "udp")):
        ours = run_zcap("--netns", tb.netns, level, "-s", "96", "-i", iface, expr)
        assert ours.returncode == 0, ours.stderr
        assert ours.stdout == in_netns(tb, "tcpdump", level, "-s", "96", "-i", iface, expr)


def test_hardware_timestamps_on_a_veth_are_a_clear_error(testbed):
    tb = testbed
    for kind in ("adapter_unsynced", "adapter"):
        with pytest.raises(zcap.TimestampTypeError) as info:
            open_on(tb, tstamp_type=kind)
        assert f"{tb.b!r}" in str(info.value) and f"ethtool -T {tb.b}" in str(info.value)
    with pytest.raises(zcap.TimestampTypeError, match="'any' device supports only"):
        zcap.open_live("any", netns=tb.netns, tstamp_type="adapter_unsynced")
    with pytest.raises(ValueError, match="tstamp_type must be one of"):
        open_on(tb, tstamp_type="gps")
    r = run_zcap("--netns", tb.netns, "-i", tb.b, "-j", "adapter_unsynced", "-c", "1")
    assert r.returncode == 4 and f"ethtool -T {tb.b}" in r.stderr and "Traceback" not in r.stderr
    for kw in (dict(mode="ring", tstamp_type="host"), dict(immediate=True), dict(mode="copy")):
        with open_on(tb, **kw) as cap:
            send(tb, 1)
            pkt = cap.next(timeout=5)
            assert pkt is not None and pkt.ts_source == "host"
            assert isinstance(pkt.ts_ns, int) and abs(pkt.ts_ns - time.time_ns()) < 60 * 10**9
    with zcap.open_offline(_one_packet_file(tb)) as src:
        assert src.next().ts_source is None                     # a file does not say


def _one_packet_file(tb) -> str:
    path = f"/tmp/zcap-one-{tb.netns}.pcap"
    with zcap.open_writer(path, linktype=1) as w:
        w.write_raw(tb.frame(), 10**18)
    return path


def read_blocks(raw: bytes) -> list[tuple[int, bytes]]:
    out, pos = [], 0
    while pos < len(raw):
        btype, blen = struct.unpack_from("=II", raw, pos)
        out.append((btype, raw[pos + 8:pos + blen - 4]))
        pos += blen
    return out


def test_statistics_block_matches_the_capture_summary(testbed, tmp_path):
    tb = testbed
    out = tmp_path / "isb.pcapng"
    proc = ZcapProcess("--netns", tb.netns, "-i", tb.b, "-w", str(out), "--format", "pcapng",
                       "--comment", "test run", "udp")
    send(tb, 25)
    time.sleep(0.3)
    rc, _, err = proc.interrupt()
    assert rc == 0, err
    counts = summary(err)
    blocks = read_blocks(out.read_bytes())
    isbs = [body for t, body in blocks if t == 5]
    assert len(isbs) == 1 and sum(1 for t, _ in blocks if t == 6) == counts["captured"] == 25
    opts, pos = {}, 12
    body = isbs[0]
    while pos + 4 <= len(body):
        code, length = struct.unpack_from("=HH", body, pos)
        if code == 0:
            break
        opts[code] = body[pos + 4:pos + 4 + length]
        pos += 4 + ((length + 3) & ~3)
    def u64(code):
        return struct.unpack("=Q", opts[code])[0]

    def stamp(code):                        # pcapng's timestamp: high and low 32-bit words
        high, low = struct.unpack("=II", opts[code])
        return high << 32 | low

    assert (u64(4), u64(5), u64(8)) == (counts["received"], counts["dropped"], counts["captured"])
    assert stamp(2) < stamp(3)
    if shutil.which("capinfos"):
        text = subprocess.run(["capinfos", str(out)], capture_output=True, text=True).stdout
        assert "Capture comment:     test run" in text and "Number of stat entries = 1" in text


def test_any_capture_names_each_interface_and_direction(testbed, tmp_path):
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    tb = testbed
    out = tmp_path / "any.pcapng"
    proc = ZcapProcess("--netns", tb.netns, "-i", "any", "-w", str(out), "--format", "pcapng", "udp")
    send(tb, 10)
    time.sleep(0.3)
    rc, _, err = proc.interrupt()
    assert rc == 0, err
    rows = subprocess.run(["tshark", "-r", str(out), "-T", "fields", "-e", "frame.interface_name",
                           "-e", "frame.packet_flags_direction"], capture_output=True, text=True,
                          timeout=60).stdout.split()
    pairs = sorted(zip(rows[::2], rows[1::2]))
    assert pairs == sorted([(tb.a, "0x00000002")] * 10 + [(tb.b, "0x00000001")] * 10)
    with zcap.open_offline(out) as src:                   # zcap's reader shows them too
        seen = sorted((src.interfaces[p.ifindex].name, p.direction.name) for p in src)
    assert seen == sorted([(tb.a, "OUT")] * 10 + [(tb.b, "IN")] * 10)


def test_ring_of_files_and_post_rotate_command(testbed, tmp_path):
    tb = testbed
    log = tmp_path / "rotated.log"
    script = tmp_path / "post.sh"
    script.write_text(f"#!/bin/sh\necho \"$1\" >> {log}\n")
    script.chmod(0o755)
    base = tmp_path / "ring.pcap"
    proc = ZcapProcess("--netns", tb.netns, "-i", tb.b, "-w", str(base), "-C", "0.002", "-W", "3",
                       "-z", str(script), "-U", "udp")
    send(tb, 60, size=200)
    time.sleep(0.3)
    rc, _, err = proc.interrupt()
    assert rc == 0, err
    names = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("ring.pcap"))
    assert names == ["ring.pcap0", "ring.pcap1", "ring.pcap2"]
    seqs = {}
    for name in names:
        with zcap.open_offline(tmp_path / name) as src:
            seqs[name] = [tb_seq(bytes(p)) for p in src]
        assert seqs[name] == sorted(seqs[name]) and seqs[name]
    newest = max(seqs.values(), key=max)
    assert max(newest) == 59                                 # the last packet is kept
    kept = sorted(s for v in seqs.values() for s in v)
    assert kept == list(range(60 - len(kept), 60))           # the oldest were overwritten
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (not log.exists() or len(log.read_text().split()) < 5):
        time.sleep(0.05)
    rotated = log.read_text().split()
    assert len(rotated) >= 5 and set(rotated) <= {str(tmp_path / n) for n in names}


def tb_seq(frame: bytes) -> int:
    from zcap.testbed import frame_seq
    return frame_seq(frame)


def test_time_rotation_stops_after_w_files(testbed, tmp_path):
    tb = testbed
    proc = ZcapProcess("--netns", tb.netns, "-i", tb.b, "-w", str(tmp_path / "t-%s.pcap"),
                       "-G", "1", "-W", "2")
    rc, _, err = proc.wait(timeout=20)            # ends by itself after two files
    assert rc == 0, err
    assert len(list(tmp_path.glob("t-*.pcap"))) == 2


def test_packet_buffered_output_is_in_the_file_at_once(testbed, tmp_path):
    tb = testbed
    out = tmp_path / "u.pcap"
    proc = ZcapProcess("--netns", tb.netns, "-i", tb.b, "-w", str(out), "-U", "udp")
    try:
        send(tb, 5)
        deadline = time.monotonic() + 10
        count = 0
        while time.monotonic() < deadline and count < 5:
            with zcap.open_offline(out) as src:
                count = sum(1 for _ in src)
            time.sleep(0.02)
        assert count == 5                       # while zcap still runs
        assert proc.proc.poll() is None
    finally:
        proc.interrupt()


def test_listing_works_without_privilege_and_says_so(testbed):
    import sys

    from tests.privileges import run_without_net_raw
    r = run_without_net_raw(sys.executable, "-m", "zcap", "--netns", testbed.netns, "-D", "-v")
    assert r.returncode == 0, r.stderr
    names = [line.split(".", 1)[1].split()[0] for line in r.stdout.splitlines() if line[0].isdigit()]
    assert set(names) == {testbed.a, testbed.b, "lo", "any"}
    assert r.stdout.count("no permission to capture (CAP_NET_RAW)") == 4
    code = f"import zcap; print(all(not i.can_capture for i in zcap.interfaces({testbed.netns!r})))"
    r = run_without_net_raw(sys.executable, "-c", code)
    assert r.returncode == 0 and r.stdout.strip() == "True", r.stderr
