#!/usr/bin/env bash
# Install what zcap needs on a fresh Debian/Ubuntu machine, then build it into .venv.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run again (it skips what is there).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

need_pkgs=()
command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v gcc >/dev/null || need_pkgs+=(gcc)
command -v setpriv >/dev/null || need_pkgs+=(util-linux)
command -v tcpdump >/dev/null || need_pkgs+=(tcpdump)
command -v tshark >/dev/null || need_pkgs+=(tshark)
ldconfig -p | grep -q 'libpcap\.so' || need_pkgs+=(libpcap0.8)
for extra in ${ZCAP_EXTRA_DEBS:-}; do need_pkgs+=("$extra"); done
python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || need_pkgs+=(python3-dev)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_pkgs+=(python3-venv)
if ((${#need_pkgs[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "zcap setup: please install: ${need_pkgs[*]} (or run this script with sudo)" >&2
    exit 1
  fi
  echo "zcap setup: apt-get install ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "zcap needs Python 3.11 or newer (found $(python3 --version))" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip "setuptools>=77" >/dev/null   # SPDX license strings
.venv/bin/python -m pip install -q -e ".[test]"
