"""A raw HTTP/1.1 client over a trio socket, for tests where an HTTP library would
normalise what is sent (framing headers, pipelining, half-sent bodies).

``RawConnection.send`` writes bytes as given; ``read_response`` parses one response (status,
lower-cased headers, a Content-Length or chunked body); ``wait_closed`` waits for the
server's EOF or reset. Every wait is bounded by the caller's ``trio.fail_after``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import trio


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class RawConnection:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    @classmethod
    async def open(cls, url: str) -> RawConnection:
        parts = urlsplit(url)
        assert parts.hostname is not None
        assert parts.port is not None
        return cls(await trio.open_tcp_stream(parts.hostname, parts.port))

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _fill(self) -> bool:
        try:
            data = await self.stream.receive_some(65536)
        except trio.BrokenResourceError:  # reset by the server
            data = b""
        self.buffer += data
        return bool(data)

    async def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not await self._fill():
                raise EOFError(bytes(self.buffer))
        index = self.buffer.index(marker) + len(marker)
        out = bytes(self.buffer[:index])
        del self.buffer[:index]
        return out

    async def _read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not await self._fill():
                raise EOFError(bytes(self.buffer))
        out = bytes(self.buffer[:size])
        del self.buffer[:size]
        return out

    async def read_response(self, *, head_only: bool = False) -> RawResponse:
        head = (await self._read_until(b"\r\n\r\n")).decode("latin-1")
        status_line, *lines = head.split("\r\n")
        headers = {}
        for line in lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        status = int(status_line.split(" ")[1])
        body = b""
        if head_only:
            pass
        elif "content-length" in headers:
            body = await self._read_exactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            while True:
                size = int((await self._read_until(b"\r\n")).strip(), 16)
                chunk = await self._read_exactly(size + 2)
                if size == 0:
                    break
                body += chunk[:-2]
        return RawResponse(status, headers, body)

    async def wait_closed(self) -> bytes:
        """Everything the server still sent, once it closed the connection."""
        while await self._fill():
            pass
        return bytes(self.buffer)

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def __aenter__(self) -> RawConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def request(
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> bytes:
    """One request's bytes: ``Host`` added, nothing else (no implicit Content-Length)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: test"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def assert_error_shape(response: RawResponse, status: int, code: str | None = None) -> None:
    assert response.status == status, (response.status, response.body)
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    if code is not None:
        assert error["code"] == code, error
