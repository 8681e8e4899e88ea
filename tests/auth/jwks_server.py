"""A stand-in auth service's JWKS endpoint on loopback, for the JWKS URL tests.

Raw trio sockets, HTTP/1.1, one request per connection (``Connection: close``). ``mode``:
``"ok"`` serves ``keys``, ``"error"`` answers 500, ``"hang"`` reads the request and never
answers. ``requests`` counts the requests received; ``stop()`` closes the listener (the
next fetch is refused) and ends every open connection.
"""

from __future__ import annotations

import json
from typing import Any

import trio


class JWKSServer:
    def __init__(self, keys: list[dict[str, Any]] | None = None) -> None:
        self.keys: list[dict[str, Any]] = list(keys or [])
        self.mode = "ok"
        self.requests = 0
        self.url = ""
        self._scope = trio.CancelScope()
        self._changed = trio.Event()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with self._scope:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            port = listeners[0].socket.getsockname()[1]
            self.url = f"http://127.0.0.1:{port}/.well-known/jwks.json"
            task_status.started()
            await trio.serve_listeners(self._handle, listeners)

    def stop(self) -> None:
        self._scope.cancel()

    async def wait_requests(self, count: int) -> None:
        """Until at least ``count`` requests have arrived (a hang guard fails the test)."""
        with trio.fail_after(10):
            while self.requests < count:
                await self._changed.wait()

    async def _handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                data += chunk
            self.requests += 1
            self._changed.set()
            self._changed = trio.Event()
            if self.mode == "hang":
                await trio.sleep_forever()
            if self.mode == "ok":
                status, body = "200 OK", json.dumps({"keys": self.keys}).encode()
            else:
                status, body = "500 Internal Server Error", b'{"error":"down"}'
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            try:
                await stream.send_all(head.encode() + body)
            except trio.BrokenResourceError:
                return
