#!/usr/bin/env bash
# Install what the tests need, then run them.  As root the live tests must run:
# a skipped live test then counts as a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "$(id -u)" -eq 0 ]; then export ZCAP_REQUIRE_LIVE=1; fi
exec .venv/bin/python -m pytest -q "$@"
