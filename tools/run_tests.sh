#!/usr/bin/env bash
# Quick-start command 2: set up the environment (idempotent) and run the test suite.
#   bash tools/run_tests.sh [pytest args...]
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PY="$(bash "$REPO/tools/setup_env.sh" | tail -n 1)"
cd "$REPO"
# pytest exits 5 when it collected no test: that is a failure here, as any non-zero code.
exec "$PY" -m pytest tests -q -p no:cacheprovider "$@"
