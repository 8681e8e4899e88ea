"""A stand-in for the legacy Node server behind the gateway: it answers every request with
``X-Served-By: legacy`` and echoes what the gateway forwarded (path, X-Forwarded-For,
X-Request-ID), over HTTP/1.1 keep-alive, on a trio socket."""

from __future__ import annotations

import json

import trio

MAX_HEAD = 64 * 1024


async def _serve_connection(stream: trio.SocketStream) -> None:
    buffer = b""
    async with stream:
        while True:
            while b"\r\n\r\n" not in buffer:
                data = await stream.receive_some(65536)
                if not data or len(buffer) > MAX_HEAD:
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            while len(buffer) < length:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buffer += data
            buffer = buffer[length:]
            method, target, _ = request_line.split(" ", 2)
            body = json.dumps(
                {
                    "served_by": "legacy",
                    "method": method,
                    "path": target,
                    "x_forwarded_for": headers.get("x-forwarded-for"),
                    "x_request_id": headers.get("x-request-id"),
                }
            ).encode()
            await stream.send_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Served-By: legacy\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            if headers.get("connection", "").lower() == "close":
                return


async def serve_legacy(*, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve on 127.0.0.1 (a free port, reported through ``task_status``) until cancelled."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, _serve_connection, listeners)
        task_status.started(port)
