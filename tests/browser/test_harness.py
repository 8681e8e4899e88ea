"""Without Chromium the browser tests skip, except in CI (``STRETTO_TEST_REQUIRE_BROWSER=1``)
where they fail: a missing browser must never pass for a green run."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.browser import harness

if TYPE_CHECKING:
    from pathlib import Path


def test_missing_chromium_skips_or_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(harness, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv(harness.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-chromium"):
        harness.require_browser()
    monkeypatch.setenv(harness.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="no-chromium"):
        harness.require_browser()
