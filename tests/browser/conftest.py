"""Fixtures of the browser tests: ``browsers`` (launch headless Chromium instances, quit at
teardown), ``site`` (the test pages' origin). Screenshots go to ``$STRETTO_TEST_ARTIFACTS``
or /tmp/stretto-browser-shots; the run's summary names the folder."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio

from tests.browser.harness import (
    Browser,
    browser_missing,
    require_browser,
    screenshot_dir,
    static_site,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
    from pathlib import Path

    from _pytest.terminal import TerminalReporter

    LaunchBrowser = Callable[[str], Awaitable[Browser]]


@pytest.fixture
async def browsers(tmp_path: Path) -> AsyncIterator[LaunchBrowser]:
    require_browser()
    launched: list[Browser] = []

    async def launch(name: str) -> Browser:
        profile = tmp_path / f"profile-{name}"
        browser = await trio.to_thread.run_sync(Browser.launch, profile, name)
        launched.append(browser)
        return browser

    yield launch
    for browser in launched:
        await trio.to_thread.run_sync(browser.quit)


@pytest.fixture
def site() -> Iterator[str]:
    with static_site() as origin:
        yield origin


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    if browser_missing() is None and any(
        "tests/browser" in r.nodeid
        for r in terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", [])
    ):
        terminalreporter.write_line(f"browser screenshots: {screenshot_dir()}")
