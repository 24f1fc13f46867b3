"""Shared test configuration.

Live tests open real AF_PACKET sockets on veth pairs in network namespaces
that the fixtures create and remove.  Without root they skip, with a reason;
with ZCAP_REQUIRE_LIVE=1 (set by scripts/test.sh when run as root, as CI does)
a skipped live test is a failure - except a test marked `shared_captures`
when ../shared/captures is absent: the planners' capture collection is not
part of the product, and the tests must pass where it is missing.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.unit.savefiles import SHARED_CAPTURES

REQUIRE_LIVE = os.environ.get("ZCAP_REQUIRE_LIVE") == "1"


def live_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "live tests need root (AF_PACKET sockets and network namespaces)"
    if shutil.which("ip") is None:
        return "live tests need iproute2's `ip` command"
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "/live/" in str(item.fspath):
            item.add_marker(pytest.mark.live)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    shared_missing = item.get_closest_marker("shared_captures") is not None and not SHARED_CAPTURES.is_dir()
    if (REQUIRE_LIVE and report.skipped and item.get_closest_marker("live") is not None
            and not shared_missing):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"live test skipped although ZCAP_REQUIRE_LIVE=1: {reason}"
