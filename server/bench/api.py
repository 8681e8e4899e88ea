"""The bench's client of the server's JSON API: a small pool of keep-alive raw connections,
with the few calls a scenario needs (register, create project, put file, start run).

Speaks the bench API subset of API.md, which the peer servers implement too. Every failure is
raised as BenchError naming the call and the status.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

import trio

from server.bench.conn import HttpConnection
from server.bench.errors import BenchError

if TYPE_CHECKING:
    from server.bench.target import Target

BENCH_PASSWORD = "bench-password"


class ApiClient:
    """Requests over up to ``max_connections`` keep-alive connections (open-loop callers may
    issue many at once: the extra ones wait for a free connection)."""

    def __init__(self, target: Target, *, max_connections: int = 64, timeout_s: float = 30.0):
        self.target = target
        self.token: str | None = None
        self._idle: list[HttpConnection] = []
        self._limiter = trio.CapacityLimiter(max_connections)
        self._timeout_s = timeout_s

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        content_type: str = "application/json",
    ) -> tuple[int, bytes]:
        """One request; returns (status, body). Raises BenchError on connection failure."""
        headers = [("Accept", "application/json")]
        if self.token is not None:
            headers.append(("Authorization", f"Bearer {self.token}"))
        if body or method in ("POST", "PUT", "PATCH"):
            headers.append(("Content-Type", content_type))
        async with self._limiter:
            conn = self._idle.pop() if self._idle else None
            try:
                with trio.fail_after(self._timeout_s):
                    if conn is None:
                        conn = await HttpConnection.connect(self.target)
                    status, data = await conn.request(method, path, headers, body)
            except (OSError, trio.BrokenResourceError, trio.TooSlowError, BenchError) as exc:
                if conn is not None:
                    await conn.aclose()
                raise BenchError(f"{method} {path}: {type(exc).__name__} {exc}") from None
            except BaseException:
                if conn is not None:
                    await conn.aclose()
                raise
            if conn.open:
                self._idle.append(conn)
            else:
                await conn.aclose()
            return status, data

    async def call(self, method: str, path: str, body: Any, expect: int, what: str) -> Any:
        """A JSON call expecting one status; returns the decoded body."""
        payload = json.dumps(body).encode() if body is not None else b""
        status, data = await self.request(method, path, body=payload)
        if status != expect:
            raise BenchError(f"{what}: expected {expect}, got {status} {data[:200]!r}")
        try:
            return json.loads(data) if data else None
        except ValueError:
            raise BenchError(f"{what}: response is not JSON: {data[:200]!r}") from None

    async def setup_project(self) -> str:
        """Register a fresh user (keeping its access token) and create a project; returns its id."""
        email = f"bench-{os.getpid()}-{time.time_ns()}@example.com"
        reg = await self.call(
            "POST",
            "/api/auth/register",
            {"email": email, "password": BENCH_PASSWORD},
            201,
            "register",
        )
        self.token = str(reg["access_token"])
        project = await self.call("POST", "/api/projects", {"name": "bench"}, 201, "create project")
        return str(project["id"])

    @classmethod
    async def project_for(cls, target: Target) -> tuple[str, str]:
        """A fresh user's access token and project on ``target`` (the client closed after)."""
        api = cls(target)
        try:
            project_id = await api.setup_project()
        finally:
            await api.aclose()
        assert api.token is not None
        return api.token, project_id

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.aclose()
