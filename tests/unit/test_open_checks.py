"""open_live() rejects bad arguments with a message that says what is wrong and
what to do, before any system call (issue 11, item 10).  No root needed."""

from __future__ import annotations

import os

import pytest

import zcap


@pytest.mark.parametrize("name", ["if\x00evil", "eth 0", "a:b", "a/b", "", ".", "x" * 16])
def test_invalid_interface_names_are_refused(name):
    with pytest.raises(zcap.InterfaceNotFoundError, match="not a valid interface name"):
        zcap.open_live(name)


def test_protocol_must_be_an_int_ethertype():
    with pytest.raises(TypeError, match="ethertype.*filter='ip'"):
        zcap.open_live("lo", protocol="ip")


@pytest.mark.parametrize("spec", [42, 4.2, object()])
def test_filter_of_a_wrong_type_names_what_a_filter_may_be(spec):
    with pytest.raises(TypeError, match="tcpdump expression"):
        zcap.open_live("lo", filter=spec)


def test_netns_that_is_not_an_open_descriptor():
    fd = 9999
    while True:
        try:
            os.fstat(fd)
            fd += 1
        except OSError:
            break
    with pytest.raises(OSError, match=f"netns={fd} is not an open file descriptor.*ip netns"):
        zcap.open_live("lo", netns=fd)


def test_link_down_grace_must_be_seconds():
    with pytest.raises(ValueError, match="link_down_grace"):
        zcap.open_live("lo", link_down_grace=-1)
