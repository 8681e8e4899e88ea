"""The generated HS256 secret kept in the data directory.

Used when no ``STRETTO_JWT_SECRET`` is configured: for access tokens in HS256 mode, and for
SSE stream tickets in every mode. The file ``<data_dir>/jwt-secret`` is created once,
atomically (written to a private temporary file, then hard-linked into place, so two
processes starting together agree on one secret), readable by its owner only (0600).

A generated secret is local to one data directory: deployments running several instances
(PostgreSQL) must set ``STRETTO_JWT_SECRET`` on all of them, or tokens and tickets minted
by one instance are refused by the others.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from typing import TYPE_CHECKING

from server.config import SettingsError

if TYPE_CHECKING:
    from pathlib import Path

log = logging.getLogger(__name__)

SECRET_FILE_NAME = "jwt-secret"
MIN_SECRET_BYTES = 32

_warned: set[Path] = set()
_warned_lock = threading.Lock()


def load_or_create_secret(data_dir: Path) -> bytes:
    """The secret in ``data_dir/jwt-secret``, generating it first if it does not exist.

    Logs one warning per process and path. Raises ``SettingsError`` when the file exists
    but holds fewer than 32 bytes, or cannot be read or written.
    """
    path = data_dir / SECRET_FILE_NAME
    try:
        created = _create_if_missing(data_dir, path)
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read or create the JWT secret: {exc}") from exc
    if len(secret) < MIN_SECRET_BYTES:
        raise SettingsError(f"{path}: the JWT secret must be at least {MIN_SECRET_BYTES} bytes")
    _warn_once(path, created)
    return secret


def _create_if_missing(data_dir: Path, path: Path) -> bool:
    if path.exists():
        return False
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / f".{SECRET_FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_urlsafe(48) + "\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)  # fails if another process won the race: use theirs
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _warn_once(path: Path, created: bool) -> None:
    with _warned_lock:
        if path in _warned:
            return
        _warned.add(path)
    action = "generated a new" if created else "using the generated"
    log.warning(
        "No STRETTO_JWT_SECRET configured: %s secret in %s. Set STRETTO_JWT_SECRET when "
        "several instances serve the same users.",
        action,
        path,
    )
