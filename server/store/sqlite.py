"""``SqliteStore``: the ``Store`` protocol on an embedded SQLite file (the zero-config default).

Every method is one unit of work on ``SqliteDatabase`` (worker threads, one writer at a
time). Because writes are serialized, per-project event ``seq`` numbers taken from
``projects.last_event_seq`` inside the write transaction are gap-free. Most operations
are written once for both backends (``accounts``, ``files``, ``runs``: programs that
``_unit`` runs with ``sqlite_runs.drive``); what stays here is SQLite's own: migrations,
backup, user creation, project deletion, the event trim. Statements come from
``server.store.sql`` (shared with PostgreSQL) unless noted.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any, TypeVar

from server.errors import EmailTaken, NotFound
from server.store import codec, sql
from server.store.accounts import AccountStore
from server.store.codec import time_text
from server.store.faults import MAINTENANCE_TIMEOUT_S, NO_DEADLINE
from server.store.files import FileStore
from server.store.migrations import SCHEMA_MIGRATIONS_SQLITE, pending
from server.store.models import (
    User,
)
from server.store.program import Access
from server.store.runs import RunStore
from server.store.sqlite_db import DEFAULT_TIMEOUT_S, SqliteDatabase
from server.store.sqlite_runs import DEC, Conn, drive, q
from server.timeutil import new_id, utc_now

if TYPE_CHECKING:
    from datetime import datetime
    from pathlib import Path

    from server.events.pgchannel import RunControl
    from server.store.program import Make

T = TypeVar("T")


class SqliteStore(AccountStore, FileStore, RunStore):
    """The ``Store`` on one SQLite file. Open with ``await SqliteStore.open(path)``."""

    backend = "sqlite"
    single_process = True  # one process per data directory

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db
        self._run_control: RunControl | None = None

    @classmethod
    async def open(
        cls, path: Path, *, readers: int = 4, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> SqliteStore:
        """Raises ``StoreCorrupt`` (damaged file) or ``StoreUnavailable``."""
        return cls(await SqliteDatabase.open(path, readers, timeout_s=timeout_s))

    async def _unit(self, make: Make[T], access: Access) -> T:
        """A program (``server.store.program``) as one read or write unit of work."""
        if access in (Access.READ, Access.SNAPSHOT):
            return await self._db.read(lambda conn: drive(conn, make()))
        return await self._db.write(lambda conn: drive(conn, make()))

    # -- capabilities ------------------------------------------------------------------------
    def pool_usage(self) -> tuple[int, int, int]:
        return self._db.pool_usage()

    def run_control(self) -> RunControl | None:
        return self._run_control  # None: one process runs everything, a cancel is local

    def share_runs(self, control: RunControl, *, takeover: bool) -> None:
        """Sibling processes share this file (``serve --workers N``): cancels reach them
        through ``control``; ``takeover``: whether the first resume may take over runs whose
        lease another process holds (only a worker that starts before its siblings)."""
        self._run_control = control
        self.single_process = takeover

    # -- lifecycle ---------------------------------------------------------------------------
    async def migrate(self) -> list[int]:
        def applied_versions(conn: Conn) -> set[int]:
            conn.execute(SCHEMA_MIGRATIONS_SQLITE)
            return {int(r[0]) for r in q(conn, sql.MIGRATIONS_APPLIED)}

        done: list[int] = []
        for migration in pending(await self._db.write(applied_versions, timeout_s=NO_DEADLINE)):

            def apply(conn: Conn, migration: Any = migration) -> bool:
                if q(conn, sql.MIGRATION_DONE, migration.version).fetchone():
                    return False  # another process applied it meanwhile
                for statement in _statements(migration.sqlite_sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, description, applied_at) "
                    "VALUES (?, ?, ?)",
                    (migration.version, migration.description, time_text(utc_now())),
                )
                return True

            if await self._db.write(apply, timeout_s=NO_DEADLINE):
                done.append(migration.version)
        return done

    async def pending_migrations(self) -> list[int]:
        def read(conn: Conn) -> set[int]:
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
            ).fetchone()
            if not exists:
                return set()
            return {int(r[0]) for r in q(conn, sql.MIGRATIONS_APPLIED)}

        return [m.version for m in pending(await self._db.read(read))]

    async def backup(self, dest: Path) -> None:
        """Copy the database to ``dest`` with SQLite's online backup API (a consistent copy
        while the server runs). Raises ``StoreUnavailable``."""
        await self._db.backup(dest)

    async def ping(self) -> None:
        self._db.check_sound()
        await self._db.read(lambda conn: q(conn, sql.PING).fetchall())

    async def aclose(self) -> None:
        await self._db.aclose()

    # -- users and refresh tokens ------------------------------------------------------------
    async def create_user(self, email: str, password_hash: str | None, name: str | None) -> User:
        user = User(new_id(), codec.normalize_email(email), name, utc_now(), password_hash)

        def op(conn: Conn) -> User:
            try:
                q(conn, sql.USER_INSERT, user.id, user.email, name, password_hash,
                  time_text(user.created_at))  # fmt: skip
            except sqlite3.IntegrityError:
                raise EmailTaken() from None
            return user

        return await self._db.write(op)

    async def ensure_user(self, user_id: str, email: str, name: str | None) -> User:
        def op(conn: Conn) -> User:
            row = q(conn, sql.USER_BY_ID, user_id).fetchone()
            if row is None:
                try:
                    q(conn, sql.USER_INSERT, user_id, codec.normalize_email(email), name, None,
                      time_text(utc_now()))  # fmt: skip
                except sqlite3.IntegrityError:
                    raise EmailTaken() from None
                row = q(conn, sql.USER_BY_ID, user_id).fetchone()
            return DEC.user(row)

        return await self._db.write(op)

    # -- projects ----------------------------------------------------------------------------
    async def delete_project(self, owner_id: str, project_id: str) -> None:
        def op(conn: Conn) -> None:
            if q(conn, sql.PROJECT_DELETE, project_id, owner_id).fetchone() is None:
                raise NotFound("Project not found.")

        await self._db.write(op)

    # -- event log ---------------------------------------------------------------------------
    async def trim_events(self, project_id: str, keep_last: int, older_than: datetime) -> int:
        def op(conn: Conn) -> int:  # SQLite only: PostgreSQL's is one statement
            row = conn.execute(
                "SELECT last_event_seq FROM projects WHERE id = ?", (project_id,)
            ).fetchone()
            if row is None:
                return 0
            cutoff = int(row[0]) - max(keep_last, 0)
            young = conn.execute(
                "SELECT min(seq) FROM events WHERE project_id = ? AND created_at >= ?",
                (project_id, time_text(older_than)),
            ).fetchone()[0]
            if young is not None:
                cutoff = min(cutoff, int(young) - 1)
            cur = conn.execute(
                "DELETE FROM events WHERE project_id = ? AND seq <= ?", (project_id, cutoff)
            )
            return int(cur.rowcount)

        return await self._db.write(op, timeout_s=MAINTENANCE_TIMEOUT_S)


def _statements(script: str) -> list[str]:
    """Split a migration script into complete statements."""
    out: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            out.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        out.append(buffer.strip())
    return out
