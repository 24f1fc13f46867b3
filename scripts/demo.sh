#!/usr/bin/env bash
# The live demo: a private veth pair, generated traffic, a zero-copy capture.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m zcap demo "$@"
