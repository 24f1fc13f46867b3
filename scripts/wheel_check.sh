#!/usr/bin/env bash
# Check the release wheel where no C compiler exists: install dist/'s manylinux
# wheel (scripts/release.sh) into a fresh venv, then run the unit tests (all but
# the Hypothesis property tests) and `zcap demo` against it.
#
# The venv and every command run with a PATH that has no compiler on it (each
# command of the usual PATH is linked into build/wheel-check/bin, except cc,
# gcc, c++, clang and the like), CC=/bin/false and CXX=/bin/false, and pip may
# install wheels only (--only-binary :all:): nothing can be compiled, so the
# wheel must be complete.  The tests run from a copy of the checkout without
# its zcap/ directory, so `import zcap` is the installed wheel's.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

shopt -s nullglob
wheels=(dist/zcap-*-manylinux*.whl)
if ((${#wheels[@]} != 1)); then
  echo "zcap wheel check: expected one manylinux wheel in dist/ (run scripts/release.sh), found ${#wheels[@]}" >&2
  exit 1
fi
wheel=$repo/${wheels[0]}

work=$repo/build/wheel-check
rm -rf "$work"
mkdir -p "$work/bin" "$work/src"
IFS=: read -r -a path_dirs <<<"$PATH"
for dir in "${path_dirs[@]}"; do
  for cmd in "$dir"/*; do
    name=${cmd##*/}
    case $name in
      cc | c89 | c99 | gcc | gcc-* | c++ | g++ | g++-* | cpp | cpp-* | clang* | tcc | \
        *-linux-gnu-gcc* | *-linux-gnu-g++* | *-linux-gnu-cpp* | *-linux-gnu-c++* | *-linux-gnu-cc) continue ;;
    esac
    [ -x "$cmd" ] && [ ! -e "$work/bin/$name" ] && ln -s "$cmd" "$work/bin/$name"
  done
done
python3 -m venv "$work/venv"
nocc=(env "PATH=$work/venv/bin:$work/bin" CC=/bin/false CXX=/bin/false)
if "${nocc[@]}" sh -c 'command -v cc || command -v gcc || command -v c++' >/dev/null; then
  echo "zcap wheel check: a C compiler is still on the PATH" >&2
  exit 1
fi

echo "zcap wheel check: installing ${wheel##*/} (no compiler, wheels only)"
"${nocc[@]}" "$work/venv/bin/python" -m pip install -q --disable-pip-version-check \
  --only-binary :all: "$wheel[test]"

# the checkout without the package: tests, docs, README, pyproject (pytest's settings)
git ls-files -z | grep -zv '^zcap/' | (cd "$repo" && xargs -0 cp --parents -t "$work/src")
[ -d "$repo/../shared" ] && ln -s "$(cd "$repo/.." && pwd)/shared" "$work/shared"    # ../shared/captures
cd "$work/src"
"${nocc[@]}" python -c 'import sys, zcap, zcap._ring
where = zcap.__file__
assert where.startswith(sys.prefix), f"zcap imported from {where}, not the wheel in {sys.prefix}"
print(f"zcap wheel check: zcap {zcap.__version__} from {where}")'
# every unit test module, and every example-based test in them; the Hypothesis
# property tests (half the time) ran a moment ago in scripts/test.sh on the same
# sources: tests/no_property_tests.py says why they prove nothing more here
"${nocc[@]}" python -m pytest -q -p no:cacheprovider -p tests.no_property_tests tests/unit
if [ "$(id -u)" -eq 0 ]; then
  "${nocc[@]}" zcap demo
else
  echo "zcap wheel check: not root, so no \`zcap demo\` (it needs a network namespace)"
fi
