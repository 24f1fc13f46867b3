#!/usr/bin/env bash
# Build the release files into dist/: the sdist and a manylinux wheel.
#
#   bash scripts/release.sh            # dist/zcap-VERSION.tar.gz, dist/zcap-VERSION-cpXY-...-manylinux_*.whl
#
# `python -m build` makes the sdist and, from it, a linux_<arch> wheel in an
# isolated environment (setuptools and Cython from build-system.requires);
# `auditwheel repair` checks that the extensions use nothing newer than the
# manylinux policy allows (glibc symbols, libraries outside the policy's list)
# and retags the wheel manylinux_2_17_<arch> (ZCAP_WHEEL_PLAT to choose
# another policy), stripping the extensions' debug symbols.  The tools come from the `release` extra, installed into
# build/release-tools, so the development venv is left alone.  Needs gcc and the
# Python headers (scripts/setup.sh installs them); the wheel it makes needs neither.
set -euo pipefail
cd "$(dirname "$0")/.."

plat=${ZCAP_WHEEL_PLAT:-manylinux_2_17_$(uname -m)}
tools=build/release-tools
if [ ! -x "$tools/bin/python" ]; then
  python3 -m venv "$tools"
fi
# the release extra's requirements, read from pyproject.toml (their one home)
mapfile -t reqs < <(python3 -c 'import tomllib
for r in tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["release"]:
    print(r)')
"$tools/bin/python" -m pip install -q --disable-pip-version-check "${reqs[@]}"

rm -rf dist build/release-raw
"$tools/bin/python" -m build --outdir build/release-raw . >build/release-build.log 2>&1 || {
  tail -40 build/release-build.log >&2; echo "zcap release: python -m build failed (log: build/release-build.log)" >&2; exit 1; }
mkdir -p dist
cp build/release-raw/zcap-*.tar.gz dist/
raw_wheel=$(ls build/release-raw/zcap-*.whl)
PATH="$PWD/$tools/bin:$PATH" "$tools/bin/auditwheel" show "$raw_wheel"
PATH="$PWD/$tools/bin:$PATH" "$tools/bin/auditwheel" repair --strip --plat "$plat" --wheel-dir dist "$raw_wheel"
echo "zcap release files:"
ls -l dist/
