"""``stretto version``: the server version, the git commit it was built from, the Python.

The commit comes from ``build_info.json``, which the PyInstaller spec (build/stretto.spec)
writes into the one-file bundle at build time; running from a source checkout it is asked
of git, and is ``unknown`` when neither is available. Never raises.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import TextIO

from server import __version__

BUILD_INFO_FILE = "build_info.json"


def _bundled_build_info() -> dict[str, str]:
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle is None:
        return {}
    try:
        data = json.loads((Path(bundle) / BUILD_INFO_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _git_commit() -> str | None:
    source = Path(__file__).resolve().parents[2]
    if not (source / ".git").exists():
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def version_info() -> dict[str, str]:
    """``{"version", "commit", "python", "frozen"}``: what ``stretto version`` prints."""
    built = _bundled_build_info()
    return {
        "version": built.get("version", __version__),
        "commit": built.get("commit") or _git_commit() or "unknown",
        "python": platform.python_version(),
        "frozen": "yes" if getattr(sys, "frozen", False) else "no",
    }


def version_text() -> str:
    info = version_info()
    return f"stretto {info['version']} (commit {info['commit']}, Python {info['python']})"


def run_version(*, as_json: bool = False, out: TextIO | None = None) -> int:
    """Print the version line (or JSON) and return exit status 0."""
    stream = sys.stdout if out is None else out
    stream.write((json.dumps(version_info()) if as_json else version_text()) + "\n")
    return 0
