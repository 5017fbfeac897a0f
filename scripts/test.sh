#!/usr/bin/env bash
# Run the test suite: most tests in parallel worker processes (one test file per worker at a
# time, so a file's fixtures stay shared), then the few marked `serial` alone, since they
# restart the Docker daemon under everything else. Extra arguments go to both pytest calls.
#   bash scripts/test.sh                 # the whole suite
#   bash scripts/test.sh tests/test_x.py # a subset
set -euo pipefail
cd "$(dirname "$0")/.."
workers="${ELM_TEST_WORKERS:-4}"
status=0
.venv/bin/python -m pytest -q -p no:cacheprovider -n "$workers" --dist loadfile -m "not serial" "$@" || status=$?
# Exit 5 means that part selected no test (e.g. a subset with no serial test).
[ "$status" = 5 ] && status=0
serial=0
.venv/bin/python -m pytest -q -p no:cacheprovider -m serial "$@" || serial=$?
[ "$serial" = 5 ] && serial=0
[ "$status" != 0 ] && exit "$status"
exit "$serial"
