"""A browser frontend on another origin, in Debian's headless Chromium, against real
``stretto serve`` processes on both databases.

Each test asserts on what the page received (``window.report``), and where ids matter,
checks them against the store's event log: every id from the page's first to the run's
terminal event, in order, none twice. Screenshots of every page land in the folder the
run's summary names.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
import pytest
import trio

from tests.browser.harness import start_stretto
from tests.fixtures.postgres import open_migrated_store
from tests.fixtures.server import create_project, register_user
from tests.ops.process import free_port

if TYPE_CHECKING:
    from pathlib import Path

    from tests.browser.conftest import LaunchBrowser
    from tests.fixtures.postgres import BackendConfig
    from tests.fixtures.server import AuthedUser
    from tests.ops.process import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TRANSIENT = {"step.delta", "project.deleted"}  # live-only: no id of their own
TERMINAL = {"run.succeeded", "run.failed", "run.cancelled"}
PASSWORD = "correct horse battery"
HANG_GUARD_S = 90  # fails a hung test; never a timing assertion


def page(site: str, name: str, **params: str) -> str:
    return f"{site}/{name}.html?{urlencode(params)}"


async def mint_ticket(client: httpx.AsyncClient, user: AuthedUser, pid: str) -> str:
    response = await client.post("/api/sse/tickets", json={"project_id": pid}, headers=user.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["ticket"])


async def start_run(client: httpx.AsyncClient, user: AuthedUser, pid: str, prompt: str) -> str:
    body = {"project_id": pid, "prompt": prompt}
    response = await client.post("/api/workflow/runs", json=body, headers=user.headers)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def event_log(backend: BackendConfig, pid: str) -> list[tuple[int, str, dict[str, Any]]]:
    async with open_migrated_store(backend) as store:
        events = await store.events_after(pid, 0, 100_000)
    return [(e.seq, e.type, json.loads(e.data)) for e in events]


def page_ids(report: dict[str, Any]) -> list[int]:
    return [int(e["id"]) for e in report["events"] if e["type"] not in TRANSIENT]


def assert_complete(ids: list[int], log: list[tuple[int, str, dict[str, Any]]], last: int) -> None:
    """``ids``, cut at ``last``, is the log's every id from the first one the page got."""
    assert ids, "the page received no event"
    received = [i for i in ids if i <= last]
    assert len(received) == len(set(received)), f"duplicates: {received}"
    expected = [seq for seq, _, _ in log if received[0] <= seq <= last]
    assert received == expected
    assert received[-1] == last


def terminal_seq(log: list[tuple[int, str, dict[str, Any]]], run_id: str) -> int:
    ends = [seq for seq, kind, data in log if kind in TERMINAL and data.get("run_id") == run_id]
    assert len(ends) == 1, f"run {run_id} has terminal events {ends}"
    return ends[0]


async def serve(
    nursery: trio.Nursery, backend: BackendConfig, tmp_path: Path, port: int = 0, **settings: Any
) -> ServerProcess:
    return await start_stretto(
        nursery, backend, tmp_path / "stretto.log", port or free_port(), **settings
    )


# -- (a) --------------------------------------------------------------------------------------


async def test_page_on_another_origin_signs_up_and_streams_a_run(
    backend: BackendConfig, tmp_path: Path, nursery: trio.Nursery, site: str,
    browsers: LaunchBrowser,
) -> None:  # fmt: skip
    server = await serve(nursery, backend, tmp_path, cors_origins=site)
    try:
        browser = await browsers(f"a-signup-{backend.name}")
        email = f"a-{backend.name}@example.com"
        await browser.open(page(site, "client", api=server.url, flow="signup", email=email))
        report = await browser.wait_for("report.done", HANG_GUARD_S)
        await browser.screenshot()
        assert report["terminal"] == "run.succeeded"
        log = await event_log(backend, report["projectId"])
        assert_complete(page_ids(report), log, terminal_seq(log, report["runId"]))
    finally:
        server.ensure_dead()


# -- (b) --------------------------------------------------------------------------------------


@pytest.mark.timeout(240)
async def test_sigterm_and_restart_lose_nothing_for_plain_and_client_pages(
    backend: BackendConfig, tmp_path: Path, nursery: trio.Nursery, site: str,
    browsers: LaunchBrowser,
) -> None:  # fmt: skip
    port = free_port()
    # Slow model calls: the prompt run is still going when SIGTERM comes (default grace). The
    # offline plan has no model step, so intent and plan take the time (2 x 5 s).
    settings = {"cors_origins": site, "offline_latency_ms": 5000}
    first = await serve(nursery, backend, tmp_path, port, **settings)
    restarted: ServerProcess | None = None
    try:
        async with httpx.AsyncClient(base_url=first.url, timeout=30) as client:
            user = await register_user(client, password=PASSWORD)
            pid = await create_project(client, user)
            ticket = await mint_ticket(client, user, pid)
            run_id = await start_run(client, user, pid, 'create README.md containing "# demo"')
        plain = await browsers(f"b-plain-{backend.name}")
        js = await browsers(f"b-client-{backend.name}")
        await plain.open(
            page(site, "plain", api=first.url, project=pid, ticket=ticket, run=run_id)
            + "&last_event_id=0"
        )
        await js.open(
            page(site, "client", api=first.url, flow="watch", email=user.email,
                 password=PASSWORD, project=pid, run=run_id, after="0")
        )  # fmt: skip
        for browser in (plain, js):
            report = await browser.wait_for("report.events.length > 0", HANG_GUARD_S)
        log_before = await event_log(backend, pid)
        assert not any(kind in TERMINAL for _, kind, _ in log_before), "the run ended too soon"

        first.terminate()  # SIGTERM mid-run, default grace
        with trio.fail_after(HANG_GUARD_S):
            await first.process.wait()
        assert first.process.returncode == 0, first.log()
        restarted = await serve(nursery, backend, tmp_path, port, **settings)

        reports = {}
        for browser in (plain, js):
            reports[browser.name] = await browser.wait_for("report.done", HANG_GUARD_S)
            await browser.screenshot()
        log = await event_log(backend, pid)
        last = terminal_seq(log, run_id)
        for name, report in reports.items():
            assert_complete(page_ids(report), log, last)
            assert page_ids(report)[0] == 1, name  # both asked for everything
        assert not reports[plain.name].get("closed"), "the browser gave up on the stream"
        assert reports[plain.name]["opens"] >= 2  # it did reconnect
    finally:
        first.ensure_dead()
        if restarted is not None:
            restarted.ensure_dead()


# -- (c) --------------------------------------------------------------------------------------


async def test_plain_eventsource_streams_through_lifetimes_without_a_gap(
    backend: BackendConfig, tmp_path: Path, nursery: trio.Nursery, site: str,
    browsers: LaunchBrowser,
) -> None:  # fmt: skip
    server = await serve(
        nursery, backend, tmp_path, cors_origins=site, sse_max_lifetime_s=5,
        sse_ticket_ttl_s=2, log_level="debug",
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            user = await register_user(client)
            pid = await create_project(client, user)
            browser = await browsers(f"c-lifetimes-{backend.name}")
            ticket = await mint_ticket(client, user, pid)  # TTL 2 s: the page opens it next
            await browser.open(page(site, "plain", api=server.url, project=pid, ticket=ticket))
            await browser.wait_for("report.opens >= 1", HANG_GUARD_S)
            writes = 0
            with trio.fail_after(HANG_GUARD_S):
                while (await browser.report())["opens"] < 4:  # three lifetimes ended
                    writes += 1
                    response = await client.put(
                        f"/api/projects/{pid}/files/tick.txt",
                        content=str(writes).encode(),
                        headers=user.headers,
                    )
                    assert response.status_code in (200, 201)
                    await trio.sleep(0.4)
        log = await event_log(backend, pid)
        last = log[-1][0]
        report = await browser.wait_for(f"report.events.some((e) => e.id === {last})", 30)
        await browser.screenshot()
        assert not report.get("closed"), "the browser gave up on the stream"
        assert_complete(page_ids(report), log, last)
        assert len(page_ids(report)) >= writes // 2
        server_log = server.log_path.read_text(errors="replace")
        assert "/api/sse/projects/" in server_log  # debug logs every request...
        assert ticket not in server_log  # ...never its ticket
    finally:
        server.ensure_dead()


# -- (d) --------------------------------------------------------------------------------------


async def test_after_logout_the_stream_cannot_reopen_with_the_old_ticket(
    backend: BackendConfig, tmp_path: Path, nursery: trio.Nursery, site: str,
    browsers: LaunchBrowser,
) -> None:  # fmt: skip
    server = await serve(nursery, backend, tmp_path, cors_origins=site, sse_max_lifetime_s=2)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            user = await register_user(client)
            pid = await create_project(client, user)
            ticket = await mint_ticket(client, user, pid)
            browser = await browsers(f"d-logout-{backend.name}")
            await browser.open(page(site, "plain", api=server.url, project=pid, ticket=ticket))
            await browser.wait_for("report.opens >= 1", HANG_GUARD_S)
            logout = await client.post(
                "/api/auth/logout",
                json={"refresh_token": user.refresh_token},
                headers=user.headers,
            )
            assert logout.status_code == 204
        # The stream ends at its lifetime; the browser's reconnect gets 401 and gives up.
        report = await browser.wait_for("report.closed", HANG_GUARD_S)
        await browser.screenshot()
        assert report["opens"] == 1
        status = await browser.js("return fetch(window.report.url).then((r) => r.status)")
        assert status == 401  # readable cross-origin: the error carries CORS headers
    finally:
        server.ensure_dead()


# -- (e) --------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # nothing reaches storage
async def test_a_disallowed_origin_is_blocked(
    backend: BackendConfig, tmp_path: Path, nursery: trio.Nursery, site: str,
    browsers: LaunchBrowser,
) -> None:  # fmt: skip
    server = await serve(nursery, backend, tmp_path, cors_origins="http://127.0.0.1:1")
    try:
        browser = await browsers("e-blocked")
        email = "blocked@example.com"
        await browser.open(page(site, "blocked", api=server.url, email=email))
        report = await browser.wait_for("report.done", HANG_GUARD_S)
        await browser.screenshot()
        for call in ("health", "register", "script"):
            assert report[call].startswith("TypeError"), (call, report[call])
        assert report["eventsource"] == "closed"
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            # The preflight failed, so the registration never reached the server.
            await register_user(client, email=email)
    finally:
        server.ensure_dead()


# -- stretto.js: auth and the routes a frontend needs ------------------------------------------


async def test_client_covers_auth_and_the_frontend_routes(
    backend: BackendConfig, tmp_path: Path, nursery: trio.Nursery, site: str,
    browsers: LaunchBrowser,
) -> None:  # fmt: skip
    # Access tokens live 2 s: shorter than the client's refresh margin, so it refreshes first.
    server = await serve(nursery, backend, tmp_path, cors_origins=site, access_token_ttl_s=2)
    try:
        browser = await browsers(f"tour-{backend.name}")
        email = f"tour-{backend.name}@example.com"
        await browser.open(page(site, "tour", api=server.url, email=email))
        report = await browser.wait_for("report.done", HANG_GUARD_S)
        await browser.screenshot()
    finally:
        server.ensure_dead()
    assert report["steps"] == {
        "me": email,
        "refreshed_before_expiry": True,
        "retried_after_401": email,
        "project_listed": True,
        "project_renamed": "tour 2",
        "project_get": "tour 2",
        "write_created": True,
        "read_text": "first",
        "read_etag_matches": True,
        "not_modified": True,
        "write_replaced": True,
        "stale_if_match": "412 version_mismatch",
        "files_listed": ["docs/a b.txt"],
        "moved": "docs/b.txt",
        "deleted": 0,
        "tools": True,
        "planned": True,
        "idempotent": True,
        "run_listed": True,
        "run_status": "succeeded",
        "cancel_finished": "409 run_finished",
        "ticket": True,
        "project_deleted": "404 not_found",
        "logged_out": True,
        "after_logout": "401 unauthorized",
    }


async def test_client_reopens_with_a_fresh_ticket_when_the_browser_gives_up(
    backend: BackendConfig, tmp_path: Path, nursery: trio.Nursery, site: str,
    browsers: LaunchBrowser,
) -> None:  # fmt: skip
    """Tickets capped at 4 s (plus the verifier's 10 s leeway): a reconnect after the cap
    gets 401, the EventSource closes for good, and stretto.js takes a new ticket and
    reopens after the last id it saw; the page still gets every event once."""
    server = await serve(
        nursery, backend, tmp_path, cors_origins=site, sse_max_lifetime_s=2,
        sse_ticket_ttl_s=1, sse_ticket_max_age_s=4,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            user = await register_user(client, password=PASSWORD)
            pid = await create_project(client, user)
            browser = await browsers(f"client-reopen-{backend.name}")
            await browser.open(
                page(site, "client", api=server.url, flow="watch", email=user.email,
                     password=PASSWORD, project=pid, run="none")
            )  # fmt: skip
            await browser.wait_for("report.opens >= 1", HANG_GUARD_S)
            writes = 0
            with trio.fail_after(HANG_GUARD_S):
                while (await browser.report())["tickets"] < 2:
                    writes += 1
                    response = await client.put(
                        f"/api/projects/{pid}/files/tick.txt",
                        content=str(writes).encode(),
                        headers=user.headers,
                    )
                    assert response.status_code in (200, 201)
                    await trio.sleep(0.4)
            response = await client.put(
                f"/api/projects/{pid}/files/last.txt", content=b"end", headers=user.headers
            )
            assert response.status_code == 201
        log = await event_log(backend, pid)
        last = log[-1][0]
        report = await browser.wait_for(f"report.events.some((e) => e.id === {last})", 30)
        await browser.screenshot()
        assert_complete(page_ids(report), log, last)
        assert page_ids(report)[0] == 1
    finally:
        server.ensure_dead()
