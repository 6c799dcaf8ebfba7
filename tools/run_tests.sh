#!/usr/bin/env bash
# Quick-start command 2: set up the environment (idempotent) and run the test suite.
#   bash tools/run_tests.sh [pytest args...]
# The test files run in parallel on one pytest-xdist worker per core (MMQM_TEST_WORKERS=N to
# choose, 0 for one process); a file's tests stay on one worker (--dist loadfile), so module
# fixtures are built once, and each worker's torch gets its share of the cores
# (tests/conftest.py).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PY="$(bash "$REPO/tools/setup_env.sh" | tail -n 1)"
cd "$REPO"
# pytest exits 5 when it collected no test: that is a failure here, as any non-zero code.
exec "$PY" -m pytest tests -q -p no:cacheprovider -n "${MMQM_TEST_WORKERS:-auto}" \
  --dist loadfile "$@"
