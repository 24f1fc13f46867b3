"""The benchmark's README consumers run README.md's numpy idioms as written.

bench/drain/drain_consumers.py marks the lines it copies from README.md's
"### Columns with numpy" example with `# README`: each must be a line of that
example, and every line of the example that gathers packet data (`seqs =`,
`buf =`, `offsets =`, `caplen =`, `whole =`) must be run by a marked line, so the numbers
docs/benchmarks.md reports for zcap-numpy-readme and zcap-numpy-readme-take are
the README's.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARK = "# README"


def _readme_example() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("\n### Columns with numpy\n"):]
    code = re.search(r"^```python\n(.*?)^```", section, re.S | re.M).group(1)
    return [line.split("#", 1)[0].strip() for line in code.splitlines()]


def _marked_lines() -> list[str]:
    source = (ROOT / "bench" / "drain" / "drain_consumers.py").read_text()
    return [line[: line.rindex(MARK)].strip() for line in source.splitlines()
            if line.rstrip().endswith(MARK)]


def test_marked_bench_lines_are_the_readme_example():
    example = set(_readme_example())
    marked = _marked_lines()
    assert len(marked) >= 4
    for line in marked:
        assert line in example, f"bench line not in README's numpy example: {line}"


def test_every_gathering_line_of_the_readme_example_is_benchmarked():
    marked = set(_marked_lines())
    gathering = [line for line in _readme_example() if re.match(r"(seqs|buf|offsets|caplen|whole) = ", line)]
    assert len(gathering) >= 6
    for line in gathering:
        assert line in marked, f"README line not run by a bench consumer: {line}"
