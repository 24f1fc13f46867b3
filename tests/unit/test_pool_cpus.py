"""Pool(cpus=...) refuses a CPU the process cannot run on, before any worker starts."""

import os

import pytest

import zcap


def _count(cap, out):
    return sum(1 for _ in cap)


def test_a_cpu_that_is_not_there_is_a_value_error():
    missing = max(os.sched_getaffinity(0)) + 1000
    with pytest.raises(ValueError, match=rf"cpus \[{missing}\] .*sched_getaffinity"):
        zcap.Pool("eth0", _count, workers=2, cpus=[0, missing])


def test_the_allowed_cpus_are_accepted():
    cpus = sorted(os.sched_getaffinity(0))
    pool = zcap.Pool("eth0", _count, cpus=cpus)      # not started: no socket, no process
    assert pool is not None
