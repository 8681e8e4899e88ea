"""An idle server does not load what only some requests need: the real ``stretto serve`` in a
subprocess (tests/bench/ready_modules.py) reports ``sys.modules`` when it is ready.

Each of these costs start-up time and idle memory (measured on this machine, RSS over a
Quart+hypercorn+PyJWT baseline): jsonschema ~2.4 MB (request bodies and plans are validated
on first use), RE2 ~2.4 MB (``vfs.search`` patterns), argon2 (register and login),
google-genai ~53 MB (only with a Gemini key), the bench client (``stretto bench``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.ready_modules import MARKER

SCRIPT = Path(__file__).with_name("ready_modules.py")
LAZY = ("jsonschema", "referencing", "re2", "argon2", "google.genai", "server.bench")


def ready_report(tmp_path: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--data-dir", str(tmp_path), "--log-level", "warning"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    assert len(lines) == 1, done.stdout[-2000:]
    report: dict[str, object] = json.loads(lines[0][len(MARKER) :])
    return report


@pytest.mark.timeout(90)
def test_a_ready_idle_server_has_not_imported_what_only_some_requests_need(
    tmp_path: Path,
) -> None:
    report = ready_report(tmp_path)
    modules = report["modules"]
    assert isinstance(modules, list)
    assert "server.runtime.serve" in modules  # it really served
    assert "server.api.validation" in modules
    assert "server.workflow.tools.vfs_tools" in modules
    loaded = sorted(
        name for name in modules for lazy in LAZY if name == lazy or name.startswith(lazy + ".")
    )
    assert loaded == []
