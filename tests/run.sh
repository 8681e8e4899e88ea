#!/usr/bin/env bash
# The test command: lint (ruff), format check, types (mypy strict), then the test suite
# (pytest) with branch coverage of server/ (server subprocesses included) and the leak check
# (tests/fixtures/leaks.py). Creates ./.venv with the project and its test extras on first use.
#   tests/run.sh                 # everything; fails under the coverage floor (pyproject.toml)
#   tests/run.sh tests/store -x  # arguments go to pytest; coverage shown, no floor
# PostgreSQL: the suite starts its own throwaway cluster when the server binaries are
# installed (Debian: apt-get install postgresql), or uses DATABASE_URL. Without either,
# PostgreSQL tests are skipped, unless STRETTO_TEST_REQUIRE_POSTGRES=1 (CI) makes that a failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${STRETTO_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
fi
if ! "$VENV/bin/python" -c 'import server, pytest_trio, pytest_cov, httpx_sse, hypothesis, mypy, selenium, openapi_spec_validator, schemathesis' 2>/dev/null; then
  "$VENV/bin/pip" install --quiet -e '.[test]'
fi
echo "== ruff"
"$VENV/bin/ruff" check --output-format concise .
"$VENV/bin/ruff" format --check .
echo "== mypy"
"$VENV/bin/mypy"
echo "== pytest (branch coverage)"
rm -f .coverage .coverage.*
coverage_args=(--cov --cov-report=term:skip-covered)
if [ "$#" -gt 0 ]; then
  coverage_args+=(--cov-fail-under=0)  # a partial run cannot meet the whole suite's floor
fi
"$VENV/bin/python" -m pytest "${coverage_args[@]}" "$@"
