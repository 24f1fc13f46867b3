"""Each counter in Ring.stats() is reported under its own name: the C field st_X is key "X"."""

import re
from pathlib import Path

import zcap

RING = Path(zcap.__file__).resolve().parent / "_ring.pyx"      # the checkout's, or a wheel's
ENTRY = re.compile(r'^\s*"(\w+)":\s*self\.st_(\w+),', re.M)


def _stats_body(source: str) -> str:
    start = source.index("    def stats(self):")
    return source[start:source.index("\n    def ", start + 1)]


def test_every_counter_field_is_named_after_its_stats_key():
    pairs = ENTRY.findall(_stats_body(RING.read_text()))
    assert len(pairs) >= 10, "Ring.stats() no longer looks as this check expects"
    assert {"blocks", "snapshots"} <= {key for key, _ in pairs}
    renamed = [f'"{key}": self.st_{field}' for key, field in pairs if key != field]
    assert not renamed, f"name the field after the key it reports: {renamed}"


def test_the_check_sees_a_misnamed_field():
    sample = '    def stats(self):\n        return {\n            "blocks": self.st_units,\n' \
             '            "polls": self.st_polls,\n        }\n\n    def close(self):\n'
    assert ENTRY.findall(_stats_body(sample)) == [("blocks", "units"), ("polls", "polls")]
