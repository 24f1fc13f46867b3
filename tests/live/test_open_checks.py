"""open_live() argument checks that need root to get as far as the check
(moved from tests/unit/test_open_checks.py, which keeps those that need none)."""

from __future__ import annotations

import pytest

import zcap


def test_netns_descriptor_of_something_else(tmp_path):
    # setns() needs CAP_SYS_ADMIN to get as far as checking the descriptor
    with open(tmp_path / "plain", "w") as f:
        with pytest.raises(OSError, match="is not a network namespace"):
            zcap.open_live("lo", netns=f.fileno())
