"""Build bench/drain/cy_consumer.pyx into a directory outside the source tree.

    python3 bench/drain/build_cy_consumer.py OUT_DIR

The extension cimports zcap._ring, so the include path holds the repository
root (for zcap/_ring.pxd) and zcap/includes (for zcap_compat.h).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parents[1]
SOURCE = BENCH_DIR / "cy_consumer.pyx"
MODULE = "cy_consumer"


def build_in_subprocess(out_dir: Path) -> Path:
    """Build the extension into out_dir (quietly) and return out_dir.

    A subprocess keeps the compiler's output away from the benchmark's.
    """
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), str(out_dir)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"building {SOURCE.name} failed:\n{proc.stdout}\n{proc.stderr}")
    return out_dir


def build(out_dir: Path) -> None:
    from Cython.Build import cythonize
    from setuptools import Extension, setup

    includes = [str(REPO_ROOT / "zcap" / "includes"), str(REPO_ROOT)]
    extension = Extension(MODULE, [str(SOURCE)], include_dirs=includes,
                          extra_compile_args=["-O2", "-Wno-unused-function"])
    setup(
        name=MODULE,
        ext_modules=cythonize([extension], include_path=includes, build_dir=str(out_dir / "c"),
                              compiler_directives={"language_level": "3"}, quiet=True),
        script_args=["build_ext", "--build-lib", str(out_dir), "--build-temp", str(out_dir / "tmp")],
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="build_cy_consumer.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="where the built module goes")
    target = parser.parse_args().out_dir
    target.mkdir(parents=True, exist_ok=True)
    build(target)
