"""bench/'s layout: one folder per family of benchmarks, which import each other by module name.

A script in a family folder starts with

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # bench/
    import benchpath  # puts every family folder on sys.path

(bench/'s own scripts need only the import), so `from drain_consumers import
SEQ` works from bench/live/ as from bench/drain/.  Results go to bench/results/.
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
FAMILIES = ("drain", "live", "peers", "compat", "pool", "stress")

for _folder in reversed(FAMILIES):
    if str(BENCH / _folder) not in sys.path:
        sys.path.insert(1, str(BENCH / _folder))
