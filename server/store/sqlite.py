"""``SqliteStore``: the ``Store`` protocol on an embedded SQLite file (the zero-config default).

Every method is one unit of work on ``SqliteDatabase`` (worker threads, one writer at a
time). Because writes are serialized, per-project event ``seq`` numbers taken from
``projects.last_event_seq`` inside the write transaction are gap-free. Statements come
from ``server.store.sql`` (shared with PostgreSQL) unless noted; runs and the event log's
appends live in ``sqlite_runs``.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any, TypeVar

from server.errors import EmailTaken, NotFound
from server.events.model import NewEvent, StoredEvent
from server.store import codec, sql
from server.store.codec import decode_cursor, page_cursor, time_text
from server.store.faults import MAINTENANCE_TIMEOUT_S, NO_DEADLINE
from server.store.files import FileStore
from server.store.limits import check_project_count
from server.store.migrations import SCHEMA_MIGRATIONS_SQLITE, pending
from server.store.models import (
    Page,
    Project,
    RefreshOutcome,
    RefreshUse,
    User,
)
from server.store.program import Access
from server.store.runs import RunStore
from server.store.sqlite_db import DEFAULT_TIMEOUT_S, SqliteDatabase
from server.store.sqlite_runs import DEC, Conn, append_in, drive, q
from server.timeutil import new_id, utc_now

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime
    from pathlib import Path

    from server.events.pgchannel import RunControl
    from server.store.program import Make

T = TypeVar("T")


class SqliteStore(FileStore, RunStore):
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

    async def get_user(self, user_id: str) -> User | None:
        def op(conn: Conn) -> User | None:
            row = q(conn, sql.USER_BY_ID, user_id).fetchone()
            return None if row is None else DEC.user(row)

        return await self._db.read(op)

    async def get_user_by_email(self, email: str) -> User | None:
        def op(conn: Conn) -> User | None:
            row = q(conn, sql.USER_BY_EMAIL, codec.normalize_email(email)).fetchone()
            return None if row is None else DEC.user(row)

        return await self._db.read(op)

    async def create_refresh_token(
        self, token_id: str, user_id: str, family_id: str, expires_at: datetime
    ) -> None:
        expires = time_text(expires_at)
        await self._db.write(
            lambda conn: q(conn, sql.REFRESH_INSERT, token_id, user_id, family_id, expires)
        )

    async def use_refresh_token(self, token_id: str, now: datetime) -> RefreshUse:
        moment = time_text(now)

        def op(conn: Conn) -> RefreshUse:
            row = q(conn, sql.REFRESH_USE, token_id, moment).fetchone()
            if row is not None:
                return RefreshUse(RefreshOutcome.OK, row["user_id"], row["family_id"])
            row = q(conn, sql.REFRESH_GET, token_id).fetchone()
            if row is None:
                return RefreshUse(RefreshOutcome.INVALID)
            if row["used_at"] is not None:
                q(conn, sql.REFRESH_REVOKE_FAMILY, row["family_id"], moment)
                return RefreshUse(RefreshOutcome.REUSED, row["user_id"], row["family_id"])
            return RefreshUse(RefreshOutcome.INVALID, row["user_id"], row["family_id"])

        return await self._db.write(op)

    async def revoke_refresh_family(self, family_id: str) -> None:
        now = time_text(utc_now())
        await self._db.write(lambda conn: q(conn, sql.REFRESH_REVOKE_FAMILY, family_id, now))

    async def revoke_refresh_token_family_of(self, token_id: str, user_id: str) -> None:
        now = time_text(utc_now())
        await self._db.write(
            lambda conn: q(conn, sql.REFRESH_REVOKE_FAMILY_OF, token_id, user_id, now)
        )

    async def refresh_family_active(self, family_id: str, user_id: str, now: datetime) -> bool:
        def op(conn: Conn) -> bool:
            row = conn.execute(
                "SELECT 1 FROM refresh_tokens WHERE family_id = ? AND user_id = ? "
                "AND revoked_at IS NULL AND expires_at > ? LIMIT 1",
                (family_id, user_id, time_text(now)),
            ).fetchone()
            return row is not None

        return await self._db.read(op)

    # -- projects ----------------------------------------------------------------------------
    async def create_project(
        self, owner_id: str, name: str, description: str | None, *, max_projects: int | None = None
    ) -> Project:
        now = utc_now()
        project = Project(new_id(), owner_id, name, description, now, now)

        def op(conn: Conn) -> Project:
            if max_projects is not None:  # one writer: the count holds until the insert
                check_project_count(int(q(conn, sql.PROJECT_COUNT, owner_id).fetchone()[0]),
                                    max_projects)  # fmt: skip
            try:
                q(conn, sql.PROJECT_INSERT, project.id, owner_id, name, description,
                  time_text(now))  # fmt: skip
            except sqlite3.IntegrityError:
                raise NotFound("User not found.") from None
            return project

        return await self._db.write(op)

    async def get_project(self, owner_id: str, project_id: str) -> Project | None:
        def op(conn: Conn) -> Project | None:
            row = q(conn, sql.PROJECT_GET, project_id, owner_id).fetchone()
            return None if row is None else DEC.project(row)

        return await self._db.read(op)

    async def list_projects(self, owner_id: str, limit: int, cursor: str | None) -> Page[Project]:
        after = decode_cursor(cursor)

        def op(conn: Conn) -> Page[Project]:
            rows = q(conn, sql.PROJECT_LIST, owner_id, after, limit + 1).fetchall()
            items = [DEC.project(r) for r in rows[:limit]]
            return Page(items, page_cursor([r["id"] for r in rows], limit))

        return await self._db.read(op)

    async def update_project(
        self,
        owner_id: str,
        project_id: str,
        *,
        name: str | None,
        description: str | None,
        set_description: bool,
    ) -> tuple[Project, StoredEvent]:
        def op(conn: Conn) -> tuple[Project, StoredEvent]:
            now = utc_now()
            row = q(conn, sql.PROJECT_UPDATE, project_id, owner_id, name, set_description,
                    description, time_text(now)).fetchone()  # fmt: skip
            if row is None:
                raise NotFound("Project not found.")
            project = DEC.project(row)
            data = codec.project_updated_data(project, now)
            [event] = append_in(conn, [NewEvent(project_id, data["type"], data)], now)
            return project, event

        return await self._db.write(op)

    async def delete_project(self, owner_id: str, project_id: str) -> None:
        def op(conn: Conn) -> None:
            if q(conn, sql.PROJECT_DELETE, project_id, owner_id).fetchone() is None:
                raise NotFound("Project not found.")

        await self._db.write(op)

    async def project_owner(self, project_id: str) -> str | None:
        def op(conn: Conn) -> str | None:
            row = q(conn, sql.PROJECT_OWNER, project_id).fetchone()
            return None if row is None else str(row[0])

        return await self._db.read(op)

    # -- event log ---------------------------------------------------------------------------
    async def append_events(self, events: Sequence[NewEvent]) -> list[StoredEvent]:
        if not events:
            return []
        return await self._db.write(lambda conn: append_in(conn, events, utc_now()))

    async def events_after(self, project_id: str, after_seq: int, limit: int) -> list[StoredEvent]:
        def op(conn: Conn) -> list[StoredEvent]:
            rows = q(conn, sql.EVENTS_AFTER, project_id, after_seq, limit).fetchall()
            return [DEC.event(r) for r in rows]

        return await self._db.read(op)

    async def event_bounds(self, project_id: str) -> tuple[int, int]:
        def op(conn: Conn) -> tuple[int, int]:
            row = q(conn, sql.EVENT_BOUNDS, project_id).fetchone()
            last = 0 if row is None else int(row["last_event_seq"])
            first = last + 1 if row is None or row["first_seq"] is None else int(row["first_seq"])
            return first, last

        return await self._db.read(op)

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
