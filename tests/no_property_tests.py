"""A pytest plugin that leaves out the Hypothesis property tests: `pytest -p tests.no_property_tests`.

scripts/wheel_check.sh uses it when it re-runs tests/unit against the installed
release wheel.  That run answers "is the wheel complete, and does it work where
nothing can be compiled?": every test module is still collected (so every
module they import must be in the wheel), and every example-based test still
runs, which calls into each compiled module.  What it leaves out are the ~25
tests driven by Hypothesis (@given): fuzzers and model comparisons that run the
same compiled code on hundreds to thousands of generated inputs each.  They are
half of tests/unit's time, and the full suite (scripts/test.sh) has just run
them on the same sources, built with the same setup.py and flags.

The tests left out are reported as deselected in pytest's summary line.
"""

from __future__ import annotations

from hypothesis import is_hypothesis_test


def pytest_collection_modifyitems(config, items):
    kept, dropped = [], []
    for item in items:
        test = getattr(item, "obj", None)
        (dropped if test is not None and is_hypothesis_test(test) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
