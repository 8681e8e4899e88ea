"""``PostgresStore``: the ``Store`` protocol on PostgreSQL (asyncpg through trio-asyncio).

Every method is one unit of work on one pooled connection (``PostgresDatabase.run``, with
its deadline). Most operations are written once for both backends (``accounts``,
``files``, ``runs``: programs that ``_unit`` runs with ``postgres_runs.drive``, which also
appends events with their NOTIFY); what stays here is PostgreSQL's own: migrations under an
advisory lock, user creation, project deletion (it notifies other instances), the event
trim. Cross-instance cancel (the ``RunControl`` capability) is in ``pg_runcontrol``.
Statements come from ``server.store.sql`` (shared with SQLite) unless noted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from server.errors import EmailTaken, NotFound
from server.events.pgchannel import EVENTS_CHANNEL, Deleted, encode
from server.store import codec, sql
from server.store.accounts import AccountStore
from server.store.codec import aware
from server.store.faults import MAINTENANCE_TIMEOUT_S, NO_DEADLINE
from server.store.files import FileStore
from server.store.migrations import SCHEMA_MIGRATIONS_POSTGRES, pending
from server.store.models import (
    User,
)
from server.store.pg_runcontrol import PostgresRunControl
from server.store.postgres_db import DEFAULT_TIMEOUT_S, Conn, PostgresDatabase
from server.store.postgres_runs import DEC, drive
from server.store.program import Access
from server.store.runs import RunStore
from server.timeutil import new_id, utc_now

if TYPE_CHECKING:
    from datetime import datetime

    from server.events.pgchannel import RunControl
    from server.store.program import Make

T = TypeVar("T")
MIGRATION_LOCK_KEY = 0x5772_6574_746F  # pg_advisory_xact_lock key for migrations


class PostgresStore(AccountStore, FileStore, RunStore):
    """The ``Store`` on PostgreSQL. Open with ``await PostgresStore.open(url)`` inside a
    trio-asyncio loop."""

    backend = "postgresql"
    single_process = False  # instances share the database

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        self._run_control = PostgresRunControl(db)

    @classmethod
    async def open(
        cls, url: str, *, pool_size: int = 10, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> PostgresStore:
        """Raises ``StoreUnavailable`` naming the address and the cause."""
        return cls(await PostgresDatabase.open(url, pool_size=pool_size, timeout_s=timeout_s))

    async def _unit(self, make: Make[T], access: Access) -> T:
        """A program (``server.store.program``) on one pooled connection: in a transaction
        unless it is one statement, a read-only snapshot for several reads."""
        snapshot = access is Access.SNAPSHOT

        async def unit(conn: Conn) -> T:
            return await drive(conn, make())

        transaction = snapshot or access is Access.WRITE
        return await self._db.run(unit, transaction=transaction, readonly=snapshot)

    # -- capabilities ------------------------------------------------------------------------
    def pool_usage(self) -> tuple[int, int, int]:
        return self._db.pool_usage()

    def run_control(self) -> RunControl | None:
        return self._run_control

    # -- lifecycle ---------------------------------------------------------------------------
    async def migrate(self) -> list[int]:
        async def applied_versions(conn: Conn) -> set[int]:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
            await conn.execute(SCHEMA_MIGRATIONS_POSTGRES)
            return {int(r[0]) for r in await conn.fetch(sql.MIGRATIONS_APPLIED)}

        done: list[int] = []
        for migration in pending(await self._db.run(applied_versions, timeout_s=NO_DEADLINE)):

            async def apply(conn: Conn, migration: Any = migration) -> bool:
                await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
                if await conn.fetchval(sql.MIGRATION_DONE, migration.version):
                    return False  # another instance applied it meanwhile
                await conn.execute(migration.postgres_sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, description) VALUES ($1, $2)",
                    migration.version,
                    migration.description,
                )
                return True

            if await self._db.run(apply, timeout_s=NO_DEADLINE):
                done.append(migration.version)
        return done

    async def pending_migrations(self) -> list[int]:
        async def read(conn: Conn) -> set[int]:
            if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
                return set()
            return {int(r[0]) for r in await conn.fetch(sql.MIGRATIONS_APPLIED)}

        return [m.version for m in pending(await self._db.run(read, readonly=True))]

    async def ping(self) -> None:
        async def op(conn: Conn) -> None:
            await conn.fetchval(sql.PING)

        await self._db.run(op, transaction=False)

    async def aclose(self) -> None:
        await self._db.aclose()

    # -- users and refresh tokens ------------------------------------------------------------
    async def create_user(self, email: str, password_hash: str | None, name: str | None) -> User:
        user = User(new_id(), codec.normalize_email(email), name, utc_now(), password_hash)

        async def op(conn: Conn) -> User:
            try:
                await conn.execute(sql.USER_INSERT, user.id, user.email, name, password_hash,
                                   user.created_at)  # fmt: skip
            except asyncpg.UniqueViolationError:
                raise EmailTaken() from None
            return user

        return await self._db.run(op, transaction=False)

    async def ensure_user(self, user_id: str, email: str, name: str | None) -> User:
        async def op(conn: Conn) -> User:
            row = await conn.fetchrow(  # PostgreSQL only: SQLite has no INSERT in a CTE
                "WITH ins AS (INSERT INTO users (id, email, name, created_at) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING *) "
                "SELECT * FROM ins UNION ALL SELECT * FROM users WHERE id = $1",
                user_id, codec.normalize_email(email), name, utc_now(),
            )  # fmt: skip
            if row is None:
                raise EmailTaken()
            return DEC.user(row)

        return await self._db.run(op, transaction=False)

    # -- projects ----------------------------------------------------------------------------
    async def delete_project(self, owner_id: str, project_id: str) -> None:
        async def op(conn: Conn) -> None:
            if await conn.fetchval(sql.PROJECT_DELETE, project_id, owner_id) is None:
                raise NotFound("Project not found.")
            # Other instances end the project's streams (server.events.pgbus).
            payload = encode(Deleted(project_id))
            await conn.execute("SELECT pg_notify($1, $2)", EVENTS_CHANNEL, payload)

        await self._db.run(op, transaction=True)

    # -- event log ---------------------------------------------------------------------------
    async def trim_events(self, project_id: str, keep_last: int, older_than: datetime) -> int:
        async def op(conn: Conn) -> int:  # PostgreSQL only: SQLite's takes three statements
            status = await conn.execute(
                "DELETE FROM events WHERE project_id = $1 AND seq <= LEAST("
                "(SELECT last_event_seq FROM projects WHERE id = $1) - $2, "
                "coalesce((SELECT min(seq) FROM events WHERE project_id = $1 "
                "AND created_at >= $3), 9223372036854775807) - 1)",
                project_id, max(keep_last, 0), aware(older_than),
            )  # fmt: skip
            return int(status.split()[-1])

        return await self._db.run(op, transaction=False, timeout_s=MAINTENANCE_TIMEOUT_S)
