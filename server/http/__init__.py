"""The HTTP edge: stretto's connection handling on top of hypercorn's trio worker and h11.

All of stretto's reliance on hypercorn/h11 connection internals lives in this package
(``worker``: the connection task, ``protocol``: HTTP/1.1 rules, ``budget``: body bytes in
flight), pinned to the versions in ``PINNED`` (pyproject.toml pins the same;
tests/security/test_hypercorn_pins.py fails when they move). ``install(config, settings)``
is the one call, made where the hypercorn ``Config`` is built.

Upstream bugs worked around here (hypercorn 0.18.0 with quart-trio 0.12.0):

1. Keep-alive and ``Connection: close`` connections never end. ``H11Protocol._maybe_recycle``
   runs in the ASGI app's task (through ``send``): it puts ``http.disconnect``, then restarts
   the idle task (``Updated(idle=True)``) or closes (``Closed`` -> ``send_eof``). quart-trio's
   ``handle_messages`` cancels the app's nursery the moment it receives that disconnect, so
   the next checkpoint (``trio.Lock.acquire`` in ``TrioSingleTask.restart``; the checkpoint in
   ``SocketStream.send_eof``) raises ``Cancelled``: no idle task, no close, the reader waits
   with no deadline until the client leaves.
2. An early response (413/401 before the body arrived) is sent without ``Connection:
   close`` and its close is lost as in 1: the next request is read as the old body and hangs.
3. A ``HEAD`` on a streaming route never ends: the body is suppressed but the response ends
   only when the (endless) body does.
4. h11 serves a request with both Content-Length and Transfer-Encoding by the latter and
   keeps the connection (RFC 9112 section 6.1: the server ought to close it).
"""

from __future__ import annotations

from importlib.metadata import version
from typing import TYPE_CHECKING, Final

import hypercorn.trio.run
import hypercorn.trio.tcp_server

from server.http.budget import BodyBudget, pin_mmap_threshold
from server.http.worker import OPTIONS, EdgeOptions, EdgeTCPServer

if TYPE_CHECKING:
    from hypercorn.config import Config

    from server.config import Settings

PINNED: Final = {"hypercorn": "0.18.0", "h11": "0.16.0"}


class UnsupportedVersion(RuntimeError):
    """hypercorn or h11 is not the version this package was written against."""


def installed_versions() -> dict[str, str]:
    """hypercorn's from its distribution metadata (the executable bundles it), h11's from
    the module (its metadata is not bundled)."""
    from h11._version import __version__ as h11_version

    return {"hypercorn": version("hypercorn"), "h11": h11_version}


def check_versions() -> None:
    """Raise ``UnsupportedVersion`` unless the installed hypercorn and h11 are ``PINNED``."""
    installed = installed_versions()
    for name, pinned in PINNED.items():
        if installed[name] != pinned:
            raise UnsupportedVersion(
                f"server.http is written against {name} {pinned}, found {installed[name]}"
            )


def install(config: Config, settings: Settings) -> Config:
    """Apply the edge settings to ``config`` and make hypercorn's trio worker serve every
    connection with ``EdgeTCPServer`` (process-wide; a config not passed here gets
    hypercorn's own timeouts and no body budget)."""
    check_versions()
    config.keep_alive_timeout = settings.keep_alive_s
    OPTIONS[config] = EdgeOptions(
        body_read_timeout_s=settings.body_read_timeout_s,
        budget=BodyBudget(settings.max_inflight_body_bytes),
    )
    pin_mmap_threshold()
    # worker_serve builds connections through this module global; the SSE direct path
    # (server.events.direct) looks the class up in tcp_server.
    hypercorn.trio.run.TCPServer = EdgeTCPServer  # type: ignore[attr-defined]
    hypercorn.trio.tcp_server.TCPServer = EdgeTCPServer  # type: ignore[misc]
    return config
