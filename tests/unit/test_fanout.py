"""zcap.Fanout: option checks, the setsockopt encoding, and the constants against the C header."""

from __future__ import annotations

import shutil
import subprocess

import pytest

import zcap
from zcap import fanout as F


def test_constants_match_the_kernel_headers(tmp_path):
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc to read <linux/if_packet.h>")
    names = [n for n in dir(F) if n.startswith("PACKET_") and n not in
             ("PACKET_SHOW_INFO", "PACKET_SHOW_FANOUT", "PACKET_DIAG_INFO", "PACKET_DIAG_FANOUT")]
    diag = ["PACKET_SHOW_INFO", "PACKET_SHOW_FANOUT", "PACKET_DIAG_INFO", "PACKET_DIAG_FANOUT",
            "NETLINK_SOCK_DIAG", "SOCK_DIAG_BY_FAMILY", "NLM_F_REQUEST", "NLM_F_DUMP",
            "NLMSG_ERROR", "NLMSG_DONE", "SOL_PACKET"]
    src = tmp_path / "c.c"
    src.write_text("#include <stdio.h>\n#include <sys/socket.h>\n#include <linux/if_packet.h>\n"
                   "#include <linux/netlink.h>\n#include <linux/sock_diag.h>\n"
                   "#include <linux/packet_diag.h>\nint main(void){\n"
                   + "".join(f'#ifdef {n}\nprintf("{n} %ld\\n", (long)({n}));\n#endif\n'
                           for n in names + diag)
                   + "return 0;}\n")
    subprocess.run(["gcc", "-o", str(tmp_path / "c"), str(src)], check=True)
    out = subprocess.run([str(tmp_path / "c")], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        name, value = line.split()
        assert getattr(F, name) == int(value), name


def test_sockopt_encoding():
    assert zcap.Fanout("hash", 7).sockopt() == 7 | (F.PACKET_FANOUT_HASH | F.PACKET_FANOUT_FLAG_DEFRAG) << 16
    assert zcap.Fanout("lb", 9, rollover=True).sockopt() == 9 | (1 | 0x1000) << 16
    assert zcap.Fanout("hash", defrag=False, ignore_outgoing=True).sockopt() == (0x4000 | 0x2000) << 16
    assert zcap.Fanout("cpu", 1, defrag=True).flags == 0        # defrag is for hash only


@pytest.mark.parametrize("kwargs, error", [
    (dict(mode="roundrobin"), "fanout mode must be one of"),
    (dict(mode="hash", group_id=70000), "between 0 and 65535"),
    (dict(mode="cbpf"), "needs program="),
    (dict(mode="lb", program=[(6, 0, 0, 0)]), "only for fanout mode 'cbpf'"),
    (dict(mode="rollover", rollover=True), "already rolls over"),
])
def test_bad_options_are_refused_before_any_system_call(kwargs, error):
    with pytest.raises(ValueError, match=error):
        zcap.Fanout(**kwargs)


def test_mode_string_is_shorthand():
    assert F.Fanout.coerce("lb") == zcap.Fanout("lb")
    with pytest.raises(TypeError):
        F.Fanout.coerce(3)


def test_pool_checks_its_arguments():
    with pytest.raises(ValueError, match="on_error"):
        zcap.Pool("lo", print, on_error="ignore")
    with pytest.raises(ValueError, match="plain fork"):
        zcap.Pool("lo", print, start_method="fork")
    with pytest.raises(ValueError, match="workers"):
        zcap.Pool("lo", print, workers=0)
    with pytest.raises(TypeError, match="picklable"):
        zcap.Pool("lo", lambda cap, out: None)
    assert zcap.Pool("lo", print, cpus=[0, 1]).workers == 2


def test_pool_stats_spread():
    s = zcap.PoolStats(received=0, dropped=0, delivered=300,
                       workers=[zcap.Stats(
                           **{**zcap.Stats.zero().as_dict(), "delivered": d})
                           for d in (100, 200)])
    assert s.shares == [1 / 3, 2 / 3]
    assert s.imbalance == pytest.approx(1 / 3)
