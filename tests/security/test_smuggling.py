"""Request smuggling and the responses the server writes itself (issue 12 items 6 and 11),
through raw sockets: an HTTP client would not send these.

- ``Content-Length`` with ``Transfer-Encoding`` -> 400 with the contract's JSON and the
  connection closed; the request hidden in the body is never answered (RFC 9112 6.1);
- h11's own refusals (400 malformed, 431 head too large, 501 unknown transfer coding) carry
  the contract's JSON error body and close the connection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio

from tests.security.rawhttp import assert_error_shape, request

if TYPE_CHECKING:
    from tests.fixtures.server import StartServer
    from tests.security.conftest import Connect

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

HANG_GUARD_S = 15


async def test_content_length_with_transfer_encoding_is_refused_and_closed(
    start_server: StartServer, connect: Connect
) -> None:
    server = await start_server()
    smuggled = request("GET", "/api/health")
    body = b"0\r\n\r\n" + smuggled  # chunked: empty body, then a second request
    head = request(
        "POST",
        "/api/auth/login",
        {
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
            "Transfer-Encoding": "chunked",
        },
    )
    conn = await connect(server.url)
    with trio.fail_after(HANG_GUARD_S):
        await conn.send(head + body)
        response = await conn.read_response()
        assert_error_shape(response, 400, "bad_request")
        assert "Transfer-Encoding" in response.json()["error"]["message"]
        assert response.headers["connection"] == "close"
        assert "x-request-id" in response.headers
        assert await conn.wait_closed() == b""  # the smuggled request got no answer


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"GET /api/health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400, "bad_request"),
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "bad_request"),
        (
            b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
            431,
            "headers_too_large",
        ),
        (
            request("POST", "/api/auth/login", {"Transfer-Encoding": "gzip"}),
            501,
            "not_implemented",
        ),
    ],
)
async def test_protocol_errors_get_the_contract_error_body(
    start_server: StartServer, connect: Connect, raw: bytes, status: int, code: str
) -> None:
    server = await start_server()
    conn = await connect(server.url)
    with trio.fail_after(HANG_GUARD_S):
        await conn.send(raw)
        response = await conn.read_response()
        assert_error_shape(response, status, code)
        assert response.headers["connection"] == "close"
        assert await conn.wait_closed() == b""
