"""The built executable, end to end (build/smoke_test.py), when STRETTO_BINARY names one.

CI builds it (build/build.sh) and runs build/smoke-test.sh directly; this test lets a
developer run the same check through pytest: STRETTO_BINARY=dist/stretto pytest tests/ship.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_built_binary_smoke() -> None:
    binary = os.environ.get("STRETTO_BINARY")
    if not binary:
        pytest.skip("set STRETTO_BINARY=dist/stretto (built by build/build.sh)")
    done = subprocess.run(
        [sys.executable, str(ROOT / "build" / "smoke_test.py"), binary],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "smoke test passed" in done.stdout
