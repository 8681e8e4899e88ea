"""`stretto version`: version, commit and Python, from the source tree or the bundle."""

from __future__ import annotations

import io
import json
import platform
import sys
from typing import TYPE_CHECKING

from server import __version__
from server.cli.version import BUILD_INFO_FILE, run_version, version_info, version_text

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def test_version_text_names_version_commit_and_python() -> None:
    text = version_text()
    assert text.startswith(f"stretto {__version__} (commit ")
    assert text.endswith(f", Python {platform.python_version()})")


def test_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    assert run_version(as_json=True, out=out) == 0
    info = json.loads(out.getvalue())
    assert info["version"] == __version__
    assert info["python"] == platform.python_version()
    assert info["commit"]


def test_a_bundle_reports_the_commit_baked_at_build_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / BUILD_INFO_FILE).write_text(json.dumps({"version": "9.9.9", "commit": "abc123"}))
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert version_info() == {
        "version": "9.9.9",
        "commit": "abc123",
        "python": platform.python_version(),
        "frozen": "yes",
    }
