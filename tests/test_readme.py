"""The README stays true: every setting is in its configuration table, and its commands exist."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from server.config import Settings, env_name

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_every_setting_is_documented_with_its_default() -> None:
    for f in dataclasses.fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        default = "unset" if f.default is None else str(f.default)
        row = f"| `{env_name(f)}` | `{flag}` | {default} | {f.metadata['help']} |"
        assert row in README, f"README configuration table lacks or misstates {f.name}"


def test_the_two_commands_are_there_and_runnable() -> None:
    assert (
        "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/stretto serve" in README
    )
    assert "\ntests/run.sh\n" in README
    assert (ROOT / "tests" / "run.sh").stat().st_mode & 0o111
    assert (ROOT / ".ci" / "run").read_text().count("tests/run.sh") >= 1
