"""What the browser tests drive: Debian's headless Chromium (selenium), a static site for
the test pages on a second port (another origin), and ``stretto serve`` processes on a
chosen port (a restart must come back on the same one).

Selenium calls block, so every one of them runs in a worker thread
(``trio.to_thread.run_sync``); the test's event loop stays free.
"""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trio

from tests.ops.process import ServerProcess, server_env

if TYPE_CHECKING:
    from collections.abc import Iterator

    from selenium.webdriver.remote.webdriver import WebDriver

    from tests.fixtures.postgres import BackendConfig

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PAGES = Path(__file__).resolve().parent / "pages"
REQUIRE_ENV = "STRETTO_TEST_REQUIRE_BROWSER"
SHOTS_ENV = "STRETTO_TEST_ARTIFACTS"
DEFAULT_SHOTS = Path("/tmp/stretto-browser-shots")
CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1000,900",
)
POLL_S = 0.1


def screenshot_dir() -> Path:
    path = Path(os.environ.get(SHOTS_ENV) or DEFAULT_SHOTS)
    path.mkdir(parents=True, exist_ok=True)
    return path


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


def require_browser() -> None:
    """Skip without a browser, or fail when ``STRETTO_TEST_REQUIRE_BROWSER=1`` (CI)."""
    reason = browser_missing()
    if reason is None:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {reason}", pytrace=False)
    pytest.skip(reason)


class Browser:
    """One headless Chromium with a fresh profile; every call runs in a worker thread."""

    def __init__(self, driver: WebDriver, name: str) -> None:
        self.driver = driver
        self.name = name

    @classmethod
    def launch(cls, profile: Path, name: str) -> Browser:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in CHROME_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        service = Service(executable_path=str(CHROMEDRIVER))
        return cls(webdriver.Chrome(service=service, options=options), name)

    async def open(self, url: str) -> None:
        await trio.to_thread.run_sync(self.driver.get, url)

    async def js(self, script: str, *args: Any) -> Any:
        return await trio.to_thread.run_sync(
            functools.partial(self.driver.execute_script, script, *args)
        )

    async def report(self) -> dict[str, Any]:
        report = await self.js("return window.report || null")
        assert isinstance(report, dict), "the page did not start (no window.report)"
        return report

    async def wait_for(self, condition: str, hang_guard_s: float) -> dict[str, Any]:
        """Poll ``condition`` (a JS expression over ``report``) until true; the report.
        Fails (with a screenshot) when the page failed or the hang guard runs out."""
        with trio.move_on_after(hang_guard_s):
            while True:
                report = await self.report()
                if report.get("failure"):
                    await self.screenshot("failed")
                    raise AssertionError(f"page failed: {report['failure']}")
                if await self.js(f"const report = window.report; return Boolean({condition})"):
                    return await self.report()
                await trio.sleep(POLL_S)
        await self.screenshot("timeout")
        report = await self.report()
        raise AssertionError(f"{self.name}: not {condition!r} in {hang_guard_s}s: {report}")

    async def screenshot(self, suffix: str = "") -> Path:
        path = screenshot_dir() / f"{self.name}{'-' + suffix if suffix else ''}.png"
        await trio.to_thread.run_sync(self.driver.save_screenshot, str(path))
        return path

    def quit(self) -> None:
        self.driver.quit()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
    }

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def static_site() -> Iterator[str]:
    """The test pages on 127.0.0.1:<free port> (another origin than stretto's)."""
    handler = functools.partial(_QuietHandler, directory=str(PAGES))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def start_stretto(
    nursery: trio.Nursery, backend: BackendConfig, log_path: Path, port: int, **settings: Any
) -> ServerProcess:
    """``python -m server serve`` on ``port`` (``tests.ops.process.ServerProcess`` picks a
    free port itself; a restart must reuse the first one), ready when this returns."""
    log = log_path.open("ab")
    try:
        run = functools.partial(
            trio.run_process,
            [sys.executable, "-m", "server", "serve"],
            env=server_env(backend, port, **settings),
            check=False,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        process: trio.Process = await nursery.start(run)
    finally:
        log.close()
    server = ServerProcess(process, f"http://127.0.0.1:{port}", log_path)
    await server.wait_ready()
    return server
