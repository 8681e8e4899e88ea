"""JSON and text log lines, request ids, and the redaction of every secret we know."""

from __future__ import annotations

import io
import json
import logging
from typing import TYPE_CHECKING

import pytest
import trio
import trio.lowlevel

from server.config import Settings
from server.observability.logging import (
    REDACTED,
    configure_logging,
    redact,
    redact_text,
    request_id_bound,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
TICKET = "tkt_Zm9vYmFyYmF6cXV4cXV1eA"
REFRESH = "rt_8c1b4f8e2d2a4c3fa6a0a7e5b1c9d0e2"


@pytest.fixture
def log_lines(request: pytest.FixtureRequest) -> Iterator[tuple[io.StringIO, logging.Handler]]:
    stream = io.StringIO()
    fmt = getattr(request, "param", "json")
    handler = configure_logging(Settings(log_format=fmt, log_level="debug"), stream=stream)
    root = logging.getLogger()
    try:
        yield stream, handler
    finally:
        root.removeHandler(handler)
        root.setLevel(logging.WARNING)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_level_logger_message_and_extra_fields(
    log_lines: tuple[io.StringIO, logging.Handler],
) -> None:
    stream, _ = log_lines
    logging.getLogger("stretto.test").info("run %s started", "r1", extra={"run_id": "r1"})
    (line,) = lines(stream)
    assert line["level"] == "info"
    assert line["logger"] == "stretto.test"
    assert line["msg"] == "run r1 started"
    assert line["run_id"] == "r1"
    assert str(line["ts"]).endswith("Z")
    assert "request_id" not in line


async def test_request_id_follows_the_task_that_serves_the_request(
    log_lines: tuple[io.StringIO, logging.Handler],
) -> None:
    stream, _ = log_lines
    log = logging.getLogger("stretto.test")

    async def handle(request_id: str) -> None:
        with request_id_bound(request_id):
            await trio.lowlevel.checkpoint()
            log.info("handling")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(handle, "req-a")
        nursery.start_soon(handle, "req-b")
    log.info("outside")
    got = sorted(str(line.get("request_id")) for line in lines(stream))
    assert got == ["None", "req-a", "req-b"]


def test_secrets_never_reach_the_output(log_lines: tuple[io.StringIO, logging.Handler]) -> None:
    stream, _ = log_lines
    log = logging.getLogger("hypercorn.access")
    log.info("GET /api/sse/projects/p1?ticket=%s&last_event_id=4 200", TICKET)
    log.info("headers %s", {"Authorization": f"Bearer {JWT}", "Accept": "text/event-stream"})
    log.info("body %s", json.dumps({"refresh_token": REFRESH, "email": "a@example.com"}))
    log.warning(
        "login", extra={"password": "hunter22", "access_token": JWT, "nested": {"ticket": TICKET}}
    )
    log.info("db postgresql://stretto:s3cretpw@db.internal:5432/stretto")
    try:
        raise ValueError(f"token was {JWT}")
    except ValueError:
        log.exception("boom")
    text = stream.getvalue()
    for secret in (TICKET, JWT, REFRESH, "hunter22", "s3cretpw"):
        assert secret not in text
    assert "last_event_id=4" in text  # the rest of the line survives
    assert "a@example.com" in text
    assert "db.internal:5432" in text
    assert text.count(REDACTED) >= 7


@pytest.mark.parametrize("log_lines", ["text"], indirect=True)
def test_text_format_is_one_readable_line_and_redacts_too(
    log_lines: tuple[io.StringIO, logging.Handler],
) -> None:
    stream, _ = log_lines
    with request_id_bound("req-1"):
        logging.getLogger("stretto.test").info(
            "sse open ticket=%s", TICKET, extra={"project_id": "p1"}
        )
    (line,) = stream.getvalue().splitlines()
    assert " INFO stretto.test: sse open ticket=[REDACTED]" in line
    assert 'project_id="p1"' in line
    assert 'request_id="req-1"' in line
    assert TICKET not in line


def test_configure_logging_twice_keeps_one_handler(
    log_lines: tuple[io.StringIO, logging.Handler],
) -> None:
    stream, first = log_lines
    second_stream = io.StringIO()
    second = configure_logging(Settings(log_level="warning"), stream=second_stream)
    try:
        root = logging.getLogger()
        assert first not in root.handlers
        logging.getLogger("stretto.test").warning("once")
        logging.getLogger("stretto.test").info("filtered by level")
        assert len(lines(second_stream)) == 1
        assert stream.getvalue() == ""
    finally:
        logging.getLogger().removeHandler(second)


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        (f"Authorization: Bearer {JWT}", "Authorization: "),
        ("authorization=Basic dXNlcjpwYXNz", "authorization="),
        (f"/api/sse/projects/p?ticket={TICKET}", "/api/sse/projects/p?ticket="),
        (f'{{"access_token": "{JWT}", "token_type": "Bearer"}}', '"token_type": "Bearer"'),
        ("gemini key AIzaSyA1234567890abcdefghijklmnopqrstuv", "gemini key "),
        ("?key=AIzaSyA1234567890abcdefghijklmnopqrstuv&alt=sse", "&alt=sse"),
    ],
)
def test_redact_text(raw: str, kept: str) -> None:
    out = redact_text(raw)
    assert REDACTED in out
    assert kept in out
    for secret in (JWT, TICKET, "dXNlcjpwYXNz", "AIzaSyA1234567890abcdefghijklmnopqrstuv"):
        assert secret not in out


def test_redact_structures() -> None:
    value = {
        "headers": [("authorization", f"Bearer {JWT}"), ("accept", "*/*")],
        "Refresh-Token": REFRESH,
        "count": 3,
        "note": f"ticket={TICKET}",
    }
    out = redact(value)
    assert out["headers"] == [["authorization", REDACTED], ["accept", "*/*"]]
    assert out["Refresh-Token"] == REDACTED
    assert out["count"] == 3
    assert TICKET not in out["note"]
