"""A tiny sd_notify(3) client: tell systemd (``Type=notify``) what the server is doing.

Messages go as one datagram to the AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a path, or
an abstract name written with a leading ``@``). Without ``$NOTIFY_SOCKET`` (not under
systemd: a terminal, Fly.io, the tests) every call is a cheap no-op returning False.
Sending never blocks: a datagram that cannot be queued right now is reported as not sent.

The watchdog service pings ``WATCHDOG=1`` at half of ``$WATCHDOG_USEC`` from a trio task,
so a wedged event loop stops the pings and systemd restarts the process. Under the
PyInstaller one-file binary the Python process is a child of the bootloader, which is the
unit's main PID: ``$WATCHDOG_PID`` may name the parent, and the unit needs
``NotifyAccess=all``.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from collections.abc import Mapping

_log = logging.getLogger(__name__)


def _address(environ: Mapping[str, str]) -> str | None:
    raw = environ.get("NOTIFY_SOCKET", "")
    if raw.startswith("@"):
        return "\0" + raw[1:]  # abstract namespace
    if raw.startswith("/"):
        return raw
    return None  # unset, or a kind we do not speak (vsock:...)


def notify(message: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``message`` (``READY=1``, ``STATUS=...``, several lines joined by ``\\n``).

    Returns True when the datagram was handed to the socket, False when there is no
    notify socket or it could not take the message (logged; never raises)."""
    address = _address(os.environ if environ is None else environ)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.sendto(message.encode(), address)
    except OSError as exc:
        _log.warning("sd_notify failed", extra={"notify_message": message, "error": str(exc)})
        return False
    return True


def ready(status: str | None = None) -> bool:
    """Listening and migrated: systemd may start dependent units (``READY=1``)."""
    return notify("READY=1" if status is None else f"READY=1\nSTATUS={status}")


def stopping(status: str | None = None) -> bool:
    """Shutdown started (``STOPPING=1``): sent when SIGTERM arrives, before the grace period."""
    return notify("STOPPING=1" if status is None else f"STOPPING=1\nSTATUS={status}")


def status(text: str) -> bool:
    """A free-form one-line status shown by ``systemctl status``."""
    return notify(f"STATUS={text}")


def watchdog_ping() -> bool:
    """Tell systemd the process is alive (``WATCHDOG=1``)."""
    return notify("WATCHDOG=1")


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between pings (half of ``$WATCHDOG_USEC``), or None when no watchdog is set
    for this process (``$WATCHDOG_PID`` naming another process that is not our parent)."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0 or _address(env) is None:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid not in (str(os.getpid()), str(os.getppid())):
        return None
    return usec / 1_000_000 / 2


async def watchdog(
    *,
    environ: Mapping[str, str] | None = None,
    task_status: trio.TaskStatus[float | None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Service: ping ``WATCHDOG=1`` every half ``$WATCHDOG_USEC`` until cancelled.

    Start it with ``await nursery.start(watchdog)``; it reports the interval (None, and
    returns at once, when systemd set no watchdog). Stop it by cancelling its nursery."""
    interval = watchdog_interval(environ)
    task_status.started(interval)
    if interval is None:
        return
    while True:
        notify("WATCHDOG=1", environ=environ)
        await trio.sleep(interval)
