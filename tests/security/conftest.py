"""Security tests: every test here fails when a hypercorn worker logs "Error in ASGI
Framework" (an exception escaped the application, e.g. ``trio.BusyResourceError``).

``connect(url)`` opens a ``RawConnection``, closed at teardown."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeAlias

import pytest

from tests.security.rawhttp import RawConnection

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

Connect: TypeAlias = Callable[[str], Awaitable[RawConnection]]


@pytest.fixture(autouse=True)
def no_framework_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.ERROR, logger="hypercorn.error")
    yield
    errors = [r for r in caplog.records if "Error in ASGI Framework" in r.getMessage()]
    assert not errors, [r.getMessage() for r in errors]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    opened: list[RawConnection] = []

    async def open_connection(url: str) -> RawConnection:
        conn = await RawConnection.open(url)
        opened.append(conn)
        return conn

    yield open_connection
    for conn in opened:
        await conn.aclose()
