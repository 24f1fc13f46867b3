"""Linux numbers have one home, zcap/linux.py: no other .py module defines them again."""

import ast
import re
from pathlib import Path

import zcap

PKG = Path(zcap.__file__).resolve().parent         # the checkout's package, or an installed wheel's
HOME = PKG / "linux.py"
# interface ioctls, flags, hardware types, packet-socket levels and options, the snaplen
# limit.  Fanout *modes and flags* (PACKET_FANOUT_HASH, ...) are option values of
# zcap.fanout (and pcapy's API), not socket options: they stay with their users.
LINUX_NAME = re.compile(r"_?(SIOC[A-Z]+|ARPHRD_[A-Z]+|IFF_[A-Z]+|SOL_PACKET|ETH_P_ALL|MAX_SNAPLEN|"
                        r"PACKET_(?!FANOUT_)[A-Z_]+)$")


def _definitions(path: Path) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Assign):
            targets = []
            for t in node.targets:
                targets += t.elts if isinstance(t, ast.Tuple) else [t]
            for t in targets:
                if isinstance(t, ast.Name) and LINUX_NAME.match(t.id):
                    found.append((t.id, node.lineno))
    return found


def test_linux_numbers_are_defined_only_in_zcap_linux():
    assert {"SIOCGIFINDEX", "ARPHRD_ETHER", "IFF_UP", "SOL_PACKET", "MAX_SNAPLEN"} <= \
        {name for name, _ in _definitions(HOME)}
    elsewhere = {str(p.relative_to(PKG.parent)): d for p in sorted(PKG.rglob("*.py"))
                 if p != HOME and (d := _definitions(p))}
    assert not elsewhere, f"import these from zcap.linux instead: {elsewhere}"


def test_the_check_sees_a_copy(tmp_path):
    copy = tmp_path / "m.py"
    copy.write_text("_SIOCGIFFLAGS, _IFF_UP = 0x8913, 1\nMAX_SNAPLEN = 262144\nPACKET_FANOUT_LB = 1\n")
    assert [n for n, _ in _definitions(copy)] == ["_SIOCGIFFLAGS", "_IFF_UP", "MAX_SNAPLEN"]


LINKTYPE_NAME = re.compile(r"_?LINKTYPE_(ETHERNET|RAW|LINUX_SLL2?)$")


def test_link_type_numbers_come_from_zcap_linktype():
    """1, 101, 113 and 276 are zcap.LinkType's (zcap/_enums.py); others refer to it."""
    literal = []
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                literal += [f"{path.name}:{node.lineno} {t.id}" for t in node.targets
                            if isinstance(t, ast.Name) and LINKTYPE_NAME.match(t.id)]
    assert not literal, f"use zcap._enums.LinkType: {literal}"


def _cython_sources() -> list[Path]:
    return sorted(p for p in PKG.rglob("*") if p.suffix in {".pyx", ".pxi", ".pxd"})


def test_c_declarations_live_in_zcap_includes():
    """Every `cdef extern` block is in zcap/includes/*.pxd; the modules cimport from there."""
    stray = [f"{p.relative_to(PKG)}:{n}" for p in _cython_sources()
             if p.parent.name != "includes"
             for n, line in enumerate(p.read_text().splitlines(), 1)
             if line.lstrip().startswith("cdef extern")]
    assert not stray, f"move these declarations into zcap/includes/: {stray}"


def test_compiled_modules_share_their_c_helpers():
    """The clock and errno helpers are defined once, in zcap/includes/helpers.pxd."""
    definition = re.compile(r"^cdef\b.*\b_?(now_ns|raise_errno)\(", re.M)
    copies = {str(p.relative_to(PKG)): found for p in _cython_sources()
              if p.parent.name != "includes" and (found := definition.findall(p.read_text()))}
    assert not copies, f"cimport these from zcap.includes.helpers: {copies}"
    assert sorted(definition.findall((PKG / "includes" / "helpers.pxd").read_text())) == \
        ["now_ns", "raise_errno"]
