"""Build tests/live/cy_collect.pyx (a Ring.consume() consumer) once per source state."""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SOURCE = HERE / "cy_collect.pyx"
BUILDER = REPO / "bench" / "drain" / "build_cy_consumer.py"


def cy_collect():
    """The built module (compiled the first time, ~20 s; cached in /tmp by content)."""
    digest = hashlib.sha256(SOURCE.read_bytes() + (REPO / "zcap" / "_ring.pxd").read_bytes())
    out = Path(tempfile.gettempdir()) / f"zcap-cy-collect-{digest.hexdigest()[:16]}"
    built = list(out.glob("cy_collect*.so"))
    if not built:
        code = (f"import sys; sys.path.insert(0, {str(BUILDER.parent)!r}); import build_cy_consumer as b; "
                f"from pathlib import Path; b.SOURCE = Path({str(SOURCE)!r}); b.MODULE = 'cy_collect'; "
                f"b.build(Path({str(out)!r}))")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=out.parent)
        if proc.returncode != 0:
            raise RuntimeError(f"building cy_collect failed:\n{proc.stdout}\n{proc.stderr}")
        built = list(out.glob("cy_collect*.so"))
    spec = importlib.util.spec_from_file_location("cy_collect", built[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
