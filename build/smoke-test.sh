#!/usr/bin/env bash
# Smoke-test a built executable: build/smoke-test.sh dist/stretto
# Starts it with no configuration, registers, creates a project, runs a prompt (offline
# provider) while reading the SSE stream, then SIGTERM: exit status 0. Needs python3 (the
# standard library only). Prints size, start-to-ready time and idle memory.
set -euo pipefail
binary="${1:-dist/stretto}"
[ -x "$binary" ] || { echo "no executable at $binary (build it: build/build.sh)" >&2; exit 2; }
exec python3 "$(dirname "${BASH_SOURCE[0]}")/smoke_test.py" "$binary"
