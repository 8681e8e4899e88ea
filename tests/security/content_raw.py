"""Raw-socket HTTP/1.1 for the security tests: the request goes out byte for byte (HTTP
client libraries normalise paths, methods and bodies; a hostile client does not)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import trio


async def raw_request(
    base_url: str,
    method: str,
    target: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection (``Connection: close``): status, headers, body."""
    url = httpx.URL(base_url)
    assert url.port is not None
    lines = [f"{method} {target} HTTP/1.1", f"Host: {url.host}:{url.port}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    head_out = "\r\n".join(lines).encode("latin-1")
    stream = await trio.open_tcp_stream(url.host, url.port)
    async with stream:
        await stream.send_all(head_out + body)
        data = b""
        with trio.fail_after(30):
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(65536)
                assert chunk, f"connection closed before a response head: {data!r}"
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            found = {}
            for line in header_lines:
                name, _, value = line.partition(":")
                found[name.strip().lower()] = value.strip()
            length = int(found.get("content-length", "0"))
            while len(rest) < length:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                rest += chunk
    return int(status_line.split(" ")[1]), found, rest[:length]


def error_code(body: bytes) -> str:
    """The contract error code of an error body (fails when the body is not that shape)."""
    parsed: Any = json.loads(body)
    assert set(parsed) == {"error"}, parsed
    assert set(parsed["error"]) == {"code", "message", "details"}, parsed
    return str(parsed["error"]["code"])
