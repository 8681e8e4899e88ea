#!/usr/bin/env bash
# Build dist/stretto, one self-contained executable, from a clean clone:
#   build/build.sh
# Creates a build virtualenv (build/work/venv) with the project's runtime dependencies and
# PyInstaller (from PyPI or the configured pip index), then runs build/stretto.spec.
# Needs: python3.11 with venv, binutils (objdump), git (for the commit; optional).
# Environment:
#   STRETTO_BUILD_VENV=/path     reuse a virtualenv that already has the deps + pyinstaller
#   STRETTO_BUILD_PYTHON=python3.11   interpreter for a new build venv
#   STRETTO_BUILD_COMMIT=abc123  commit to bake in (default: git rev-parse HEAD)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
started=$(date +%s)
mkdir -p build/work

VENV="${STRETTO_BUILD_VENV:-build/work/venv}"
PYTHON="${STRETTO_BUILD_PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -x "$VENV/bin/python" ]; then
  echo "== build venv: $VENV"
  "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import PyInstaller, trio, quart_trio, asyncpg, google.genai' 2>/dev/null; then
  echo "== installing runtime dependencies and pyinstaller"
  # The dependencies only: the server package is analysed from the source tree, so no
  # wheel of the project is built (setuptools would write into build/).
  "$VENV/bin/python" - >build/work/requirements.txt <<'PY'
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(project["dependencies"] + project["optional-dependencies"]["build"]))
PY
  "$VENV/bin/pip" install --quiet -r build/work/requirements.txt
fi

if [ -z "${STRETTO_BUILD_COMMIT:-}" ]; then
  commit=$(git -c safe.directory='*' rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
  if [ "$commit" != unknown ] && [ -n "$(git -c safe.directory='*' status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    commit="$commit-dirty"
  fi
  export STRETTO_BUILD_COMMIT="$commit"
fi

echo "== pyinstaller (commit $STRETTO_BUILD_COMMIT)"
"$VENV/bin/pyinstaller" --noconfirm --clean --log-level WARN \
  --distpath dist --workpath build/work/pyinstaller build/stretto.spec

echo "== built"
dist/stretto version
size=$(stat -c %s dist/stretto)
echo "dist/stretto: $((size / 1024 / 1024)) MiB ($size bytes), built in $(( $(date +%s) - started ))s"
