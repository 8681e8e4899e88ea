"""The connection cap: past ``max_connections`` open connections, a new one gets a fast 503.

Without it, a flood of connections runs the process out of descriptors: trio's accept loop
then logs EMFILE and sleeps 0.1 s, again and again, and every client stalls (the database
pool and SQLite need descriptors too). With it, the count stays below the open-files limit,
so accept keeps working, and each connection past the cap is answered at once with
``503 {"error": {"code": "overloaded", ...}}``, ``Retry-After`` and ``Connection: close``, then
closed.

Where connections are accepted is hypercorn's: ``hypercorn.trio.run.worker_serve`` builds one
``TCPServer`` per accepted stream from that module's global ``TCPServer`` name. ``install``
wraps whichever class is there at the time (hypercorn's, or one a stretto edge module put
there before: call ``install`` after it) in a subclass whose ``run`` passes the gate first.
The gate travels on the hypercorn ``Config`` of each server (``attach``), so several servers
in one process count separately. Pinned to hypercorn 0.18 (tests/security/test_fairness.py
fails when that name or that call moves).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, Final

import hypercorn.trio.run
import trio

if TYPE_CHECKING:
    from hypercorn.config import Config

__all__ = ["ConnectionGate", "attach", "connection_cap", "install"]

log = logging.getLogger("stretto.http")

FD_RESERVE: Final = 256  # descriptors kept for the database, SQLite, files and logs
REFUSE_TIMEOUT_S: Final = 0.5  # the most a refused connection is held open
HEAD_WAIT_S: Final = 0.1  # how long the refusal waits for the request head first
RETRY_AFTER_S: Final = 1
_ATTR: Final = "stretto_connection_gate"

_BODY = json.dumps(
    {
        "error": {
            "code": "overloaded",
            "message": "The server has too many open connections; try again shortly.",
            "details": {"limit": "max_connections"},
        }
    }
).encode()
REFUSAL: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"content-type: application/json; charset=utf-8\r\n"
    b"content-length: " + str(len(_BODY)).encode() + b"\r\n"
    b"retry-after: " + str(RETRY_AFTER_S).encode() + b"\r\n"
    b"connection: close\r\n\r\n" + _BODY
)


def connection_cap(configured: int) -> int:
    """``configured``, or (0) the open-files soft limit less ``FD_RESERVE`` (at least 64)."""
    if configured > 0:
        return configured
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(64, soft - FD_RESERVE)


class ConnectionGate:
    """Counts the open connections of one server; ``enter`` is False at the cap."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.open = 0
        self.refused = 0

    def enter(self) -> bool:
        if self.open >= self.cap:
            self.refused += 1
            return False
        self.open += 1
        return True

    def leave(self) -> None:
        self.open -= 1


async def refuse(stream: Any) -> None:
    """Read what the client sent first (briefly, so that closing does not reset the answer
    away), answer 503 and close. Never raises ``Exception``."""
    try:
        with trio.move_on_after(REFUSE_TIMEOUT_S):
            if isinstance(stream, trio.SocketStream):
                with trio.move_on_after(HEAD_WAIT_S):
                    await stream.receive_some(1 << 16)
                await stream.send_all(REFUSAL)
                await stream.send_eof()
                while await stream.receive_some(1 << 16):  # until the client closes (bounded)
                    pass
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()


def attach(config: Config, gate: ConnectionGate) -> None:
    """Connections served with ``config`` pass ``gate``."""
    setattr(config, _ATTR, gate)


def install() -> None:
    """Wrap the connection class hypercorn's trio worker uses (idempotent)."""
    current: Any = hypercorn.trio.run.TCPServer  # type: ignore[attr-defined]
    if getattr(current, "stretto_gated", False):
        return

    class GatedTCPServer(current):  # type: ignore[misc]
        stretto_gated = True

        async def run(self) -> None:
            gate: ConnectionGate | None = getattr(self.config, _ATTR, None)
            if gate is None:
                await super().run()
                return
            if not gate.enter():
                if gate.refused % 1000 == 1:
                    log.warning("connection cap %d reached: refusing with 503", gate.cap)
                await refuse(self.stream)
                return
            try:
                await super().run()
            finally:
                keep_open = getattr(self, "keep_open", None)
                if keep_open is not None:  # a parked SSE stream took the socket over
                    keep_open(gate.leave)  # (server.http.worker.Handoff)
                else:
                    gate.leave()

    GatedTCPServer.__name__ = GatedTCPServer.__qualname__ = f"Gated{current.__name__}"
    hypercorn.trio.run.TCPServer = GatedTCPServer  # type: ignore[attr-defined]
