"""Checks that run before the server writes anything, and the error a bad start ends with.

A bad start (port in use, unusable data directory, unreachable database) must end with ONE
line naming the cause and a documented exit code, not a traceback, and before migrations
or the JWT secret are written. ``StartupError`` is that line and code; the CLI prints it.
``bind_listeners`` binds the listening sockets first; ``check_data_dir`` and
``describe_store_failure`` read, never create.
"""

from __future__ import annotations

import errno
import os
import socket
from enum import IntEnum
from typing import TYPE_CHECKING, TypeVar

from server.errors import StoreUnavailable

if TYPE_CHECKING:
    from server.config import Settings


class ExitCode(IntEnum):
    """``stretto`` exit codes (``serve``, ``migrate``, ``check``), documented in ``--help``."""

    OK = 0
    CRASH = 1  # an unexpected error: a traceback, and a bug to report
    BAD_SETTINGS = 2  # a setting is invalid (including a host that cannot be resolved)
    # PostgreSQL cannot be reached, refuses us, or has no such database; or the database is
    # unusable: a damaged SQLite file, a schema newer than this binary
    DATABASE_UNREACHABLE = 3
    MIGRATIONS_PENDING = 4  # ``check``: the schema needs ``stretto migrate`` (or no database)
    CANNOT_LISTEN = 5  # the listen address is in use or not allowed
    DATA_DIR_UNUSABLE = 6  # the data directory is a file, unreadable or not writable


EXIT_CODES_HELP = (
    "Exit codes: 0 ok, 1 unexpected error, 2 invalid settings, 3 database unreachable or "
    "unusable (damaged, newer schema), "
    "4 migrations pending, 5 cannot listen (port in use), 6 data directory unusable."
)


class StartupError(Exception):
    """A bad start: ``str(error)`` is the one line to print, ``exit_code`` the exit status."""

    def __init__(self, message: str, exit_code: ExitCode) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def bind_listeners(
    settings: Settings, *, reuse_port: bool = False, listen: bool = True
) -> list[socket.socket]:
    """Bind and listen on ``settings.host:settings.port``: IPv6 when the host has a colon,
    else IPv4 (as hypercorn's own binding does). The caller owns (closes) the sockets.
    ``reuse_port``: with ``SO_REUSEPORT`` (worker processes share the port, the kernel
    spreads connections over them); ``listen=False`` only reserves the address (the worker
    parent: a bound socket that does not listen gets no connections).

    Raises ``StartupError``: ``CANNOT_LISTEN`` (in use, not allowed, address not local),
    ``BAD_SETTINGS`` (the host does not resolve).
    """
    host, port = settings.host, settings.port
    where = f"{host}:{port}"
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    try:
        infos = socket.getaddrinfo(bare, port, family, socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise StartupError(
            f"invalid host {host!r}: it does not resolve to an address", ExitCode.BAD_SETTINGS
        ) from exc
    _, type_, proto, _, address = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        if listen:
            sock.listen(settings.backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            message = f"port {port} is in use ({where})"
        elif exc.errno in (errno.EACCES, errno.EPERM):
            message = f"not allowed to listen on {where} (ports below 1024 need privileges)"
        elif exc.errno == errno.EADDRNOTAVAIL:
            message = f"cannot listen on {where}: {host} is not an address of this machine"
        else:
            message = f"cannot listen on {where}: {exc.strerror or exc}"
        raise StartupError(message, ExitCode.CANNOT_LISTEN) from exc
    return [sock]


def check_data_dir(settings: Settings) -> bool:
    """Whether the data directory exists; raises ``StartupError`` (``DATA_DIR_UNUSABLE``) if
    it is not a directory or not readable and writable, or (missing) cannot be created."""
    path = settings.data_dir
    if path.exists():
        if not path.is_dir():
            raise StartupError(
                f"data directory {path} is not a directory", ExitCode.DATA_DIR_UNUSABLE
            )
        if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
            raise StartupError(
                f"data directory {path} is not readable and writable by this user",
                ExitCode.DATA_DIR_UNUSABLE,
            )
        return True
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise StartupError(
            f"data directory {path} does not exist and cannot be created in {parent}",
            ExitCode.DATA_DIR_UNUSABLE,
        )
    return False


def describe_store_failure(settings: Settings, error: BaseException) -> StartupError:
    """The one line for a store that could not be opened (``error`` is ``StoreUnavailable``;
    its ``__cause__`` is the driver's error)."""
    cause = error.__cause__ or error
    if not settings.uses_postgres:
        path = str(settings.sqlite_path)
        if isinstance(error, StoreUnavailable) and not error.retryable:
            # The file is there but cannot be used: damaged, or migrated by a newer stretto.
            text = str(error)
            line = text if path in text else f"the SQLite database {path}: {text}"
            return StartupError(line, ExitCode.DATABASE_UNREACHABLE)
        return StartupError(
            f"cannot open the SQLite database {path}: {cause}", ExitCode.DATA_DIR_UNUSABLE
        )
    where = postgres_address(settings.database_url or "")
    name = type(cause).__name__
    if isinstance(cause, ConnectionRefusedError):
        reason = "connection refused"
    elif isinstance(cause, socket.gaierror):
        reason = "the host does not resolve"
    elif isinstance(cause, TimeoutError):
        reason = "timed out"
    elif isinstance(cause, OSError):
        reason = cause.strerror or str(cause)
    elif name == "InvalidCatalogNameError":
        reason = f"database {postgres_database(settings.database_url or '')!r} does not exist"
    elif name in ("InvalidPasswordError", "InvalidAuthorizationSpecificationError"):
        reason = "authentication failed"
    elif name in ("CannotConnectNowError", "TooManyConnectionsError"):
        reason = str(cause).splitlines()[0]
    else:  # reached, then failed (a migration, a query): not a connection problem
        text = str(cause).splitlines()[0] if str(cause) else name
        return StartupError(f"PostgreSQL at {where}: {text}", ExitCode.DATABASE_UNREACHABLE)
    return StartupError(
        f"cannot reach PostgreSQL at {where}: {reason}", ExitCode.DATABASE_UNREACHABLE
    )


def postgres_address(url: str) -> str:
    """``host:port`` of a PostgreSQL URL (no user, password or database)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    try:
        port = parts.port or 5432
    except ValueError:
        port = 5432
    return f"{host}:{port}"


def postgres_database(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path.lstrip("/") or "(default)"


E = TypeVar("E", bound=BaseException)


def only_error(error: BaseException, kind: type[E]) -> E | None:
    """``error`` itself, or the single leaf of nested exception groups, if it is a ``kind``
    (trio nurseries and trio-asyncio's loop wrap what they propagate in groups)."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error if isinstance(error, kind) else None
