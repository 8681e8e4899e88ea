"""``PostgresStore``: the ``Store`` protocol on PostgreSQL (asyncpg through trio-asyncio).

Every method is one unit of work on one pooled connection (``PostgresDatabase.run``).
Event ``seq`` numbers come from ``UPDATE projects SET last_event_seq = last_event_seq + n
... RETURNING``: the row lock it takes serializes writers per project until commit, so seqs
are gap-free, and file quota checks made after it see every committed write. The same
statement queues one ``pg_notify(EVENTS_CHANNEL, '<project_id>:<last seq>')`` per project,
delivered by PostgreSQL at commit (never for a rolled-back transaction).

Cross-instance cancel: ``request_cancel`` marks a run another instance executes (``error``
``{"code": "cancel_requested"}``, overwritten by the run's final state) and notifies
``'<project_id>:cancel:<run_id>'`` on the same channel; the owner's event bus hands it to
``deliver_cancel_request``, which calls the listener its supervisor registered. The owner's
lease maintenance reads ``cancel_requests`` as the fallback for a lost notification.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import asyncpg

from server.errors import Conflict, EmailTaken, NotFound
from server.store import codec
from server.store.codec import (
    FINISHED_RUN_STATUSES,
    RUN_COLUMNS,
    STEP_COLUMNS,
    aware,
    decode_cursor,
    page_cursor,
)
from server.store.migrations import SCHEMA_MIGRATIONS_POSTGRES, pending
from server.store.models import (
    FileData,
    FileLimits,
    FileMeta,
    NewEvent,
    Page,
    Project,
    RefreshOutcome,
    RefreshUse,
    Run,
    RunChange,
    RunStatus,
    Step,
    StepChange,
    StoredEvent,
    User,
)
from server.store.postgres_db import Conn, PostgresDatabase
from server.timeutil import new_id, utc_now

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime

EVENTS_CHANNEL = "stretto_events"
CANCEL_TAG = "cancel"  # payload '<project_id>:cancel:<run_id>': the run's owner cancels it
CANCEL_REQUESTED = "cancel_requested"  # runs.error code of a run whose cancel was requested
MIGRATION_LOCK_KEY = 0x5772_6574_746F  # pg_advisory_xact_lock key for migrations

_DEC = codec.RowDecoder()
_FILE_META_COLS = "project_id, path, size, version, sha256, content_type, updated_at"
_NOT_FINISHED = "status NOT IN ({})".format(", ".join(f"'{s}'" for s in FINISHED_RUN_STATUSES))
_ALLOCATE_SQL = f"""
WITH bumped AS (
    UPDATE projects SET last_event_seq = last_event_seq + $2 WHERE id = $1
    RETURNING last_event_seq
)
SELECT last_event_seq, pg_notify('{EVENTS_CHANNEL}', $1 || ':' || last_event_seq) FROM bumped
"""
_INSERT_EVENTS_SQL = """
INSERT INTO events (project_id, seq, type, data, created_at)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[])
"""
_STEP_UPSERT_SQL = "INSERT INTO steps ({cols}) VALUES ({marks}) ON CONFLICT (run_id, id) DO UPDATE SET {sets}".format(  # noqa: E501
    cols=", ".join(STEP_COLUMNS),
    marks=", ".join(f"${i}" for i in range(1, len(STEP_COLUMNS) + 1)),
    sets=", ".join(f"{c} = EXCLUDED.{c}" for c in STEP_COLUMNS if c not in ("run_id", "id")),
)
_RUN_INSERT_SQL = (
    "INSERT INTO runs ({cols}) VALUES ({marks}) "
    "ON CONFLICT (owner_id, idempotency_key) DO NOTHING RETURNING id"
).format(
    cols=", ".join(RUN_COLUMNS),
    marks=", ".join(f"${i}" for i in range(1, len(RUN_COLUMNS) + 1)),
)


async def _allocate(conn: Conn, project_id: str, n: int) -> int:
    """Reserve ``n`` seqs (locking the project row, queueing the NOTIFY); return the first."""
    last = await conn.fetchval(_ALLOCATE_SQL, project_id, n)
    if last is None:
        raise NotFound("Project not found.", {"project_id": project_id})
    return int(last) - n + 1


async def _append_events(
    conn: Conn, events: Sequence[NewEvent], now: datetime, first_seqs: dict[str, int] | None = None
) -> list[StoredEvent]:
    """Insert events with gap-free seqs; ``first_seqs`` holds seqs already allocated."""
    if not events:
        return []
    next_seq = dict(first_seqs or {})
    counts: dict[str, int] = {}
    for event in events:
        counts[event.project_id] = counts.get(event.project_id, 0) + 1
    for project_id in sorted(counts):  # one lock order: no deadlock between writers
        if project_id not in next_seq:
            next_seq[project_id] = await _allocate(conn, project_id, counts[project_id])
    stored: list[StoredEvent] = []
    for event in events:
        seq = next_seq[event.project_id]
        next_seq[event.project_id] = seq + 1
        stored.append(
            StoredEvent(event.project_id, seq, event.type, codec.dumps(dict(event.data)), now)
        )
    await conn.execute(
        _INSERT_EVENTS_SQL,
        [e.project_id for e in stored],
        [e.seq for e in stored],
        [e.type for e in stored],
        [e.data for e in stored],
        [now] * len(stored),
    )
    return stored


async def _runs_with_steps(conn: Conn, rows: Sequence[Any]) -> list[Run]:
    run_ids = [row["id"] for row in rows]
    steps: dict[str, list[Step]] = {run_id: [] for run_id in run_ids}
    if run_ids:
        for row in await conn.fetch(
            "SELECT * FROM steps WHERE run_id = ANY($1::text[]) ORDER BY run_id, position, id",
            run_ids,
        ):
            steps[row["run_id"]].append(_DEC.step(row))
    return [_DEC.run(row, steps[row["id"]]) for row in rows]


async def _upsert_steps(conn: Conn, steps: Sequence[Step]) -> None:
    if steps:
        await conn.executemany(
            _STEP_UPSERT_SQL, [codec.step_values(s, time_as_text=False) for s in steps]
        )


class PostgresStore:
    """The ``Store`` on PostgreSQL. Open with ``await PostgresStore.open(url)`` inside a
    trio-asyncio loop."""

    backend = "postgresql"

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        self._cancel_listener: Callable[[str], object] | None = None

    @classmethod
    async def open(cls, url: str, *, pool_size: int = 10) -> PostgresStore:
        return cls(await PostgresDatabase.open(url, pool_size=pool_size))

    # -- lifecycle ---------------------------------------------------------------------------
    async def migrate(self) -> list[int]:
        async def applied_versions(conn: Conn) -> set[int]:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
            await conn.execute(SCHEMA_MIGRATIONS_POSTGRES)
            return {int(r[0]) for r in await conn.fetch("SELECT version FROM schema_migrations")}

        done: list[int] = []
        for migration in pending(await self._db.run(applied_versions)):

            async def apply(conn: Conn, migration: Any = migration) -> bool:
                await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
                if await conn.fetchval(
                    "SELECT 1 FROM schema_migrations WHERE version = $1", migration.version
                ):
                    return False  # another instance applied it meanwhile
                await conn.execute(migration.postgres_sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, description) VALUES ($1, $2)",
                    migration.version,
                    migration.description,
                )
                return True

            if await self._db.run(apply):
                done.append(migration.version)
        return done

    async def pending_migrations(self) -> list[int]:
        async def read(conn: Conn) -> set[int]:
            if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
                return set()
            return {int(r[0]) for r in await conn.fetch("SELECT version FROM schema_migrations")}

        return [m.version for m in pending(await self._db.run(read, readonly=True))]

    async def ping(self) -> None:
        async def op(conn: Conn) -> None:
            await conn.fetchval("SELECT 1")

        await self._db.run(op, transaction=False)

    def pool_usage(self) -> tuple[int, int, int]:
        """(open connections, connections checked out, maximum) of the pool, for metrics."""
        return self._db.pool_usage()

    async def aclose(self) -> None:
        await self._db.aclose()

    # -- users and refresh tokens ------------------------------------------------------------
    async def create_user(self, email: str, password_hash: str | None, name: str | None) -> User:
        user = User(new_id(), codec.normalize_email(email), name, utc_now(), password_hash)

        async def op(conn: Conn) -> User:
            try:
                await conn.execute(
                    "INSERT INTO users (id, email, name, password_hash, created_at) "
                    "VALUES ($1, $2, $3, $4, $5)",
                    user.id, user.email, name, password_hash, user.created_at,
                )  # fmt: skip
            except asyncpg.UniqueViolationError:
                raise EmailTaken() from None
            return user

        return await self._db.run(op, transaction=False)

    async def ensure_user(self, user_id: str, email: str, name: str | None) -> User:
        async def op(conn: Conn) -> User:
            row = await conn.fetchrow(
                "WITH ins AS (INSERT INTO users (id, email, name, created_at) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING *) "
                "SELECT * FROM ins UNION ALL SELECT * FROM users WHERE id = $1",
                user_id, codec.normalize_email(email), name, utc_now(),
            )  # fmt: skip
            if row is None:
                raise EmailTaken()
            return _DEC.user(row)

        return await self._db.run(op, transaction=False)

    async def get_user(self, user_id: str) -> User | None:
        async def op(conn: Conn) -> User | None:
            row = await conn.fetchrow("SELECT * FROM users WHERE id = $1", user_id)
            return None if row is None else _DEC.user(row)

        return await self._db.run(op, transaction=False)

    async def get_user_by_email(self, email: str) -> User | None:
        async def op(conn: Conn) -> User | None:
            row = await conn.fetchrow(
                "SELECT * FROM users WHERE email = $1", codec.normalize_email(email)
            )
            return None if row is None else _DEC.user(row)

        return await self._db.run(op, transaction=False)

    async def create_refresh_token(
        self, token_id: str, user_id: str, family_id: str, expires_at: datetime
    ) -> None:
        async def op(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO refresh_tokens (id, user_id, family_id, expires_at) "
                "VALUES ($1, $2, $3, $4)",
                token_id, user_id, family_id, aware(expires_at),
            )  # fmt: skip

        await self._db.run(op, transaction=False)

    async def use_refresh_token(self, token_id: str, now: datetime) -> RefreshUse:
        now = aware(now)

        async def op(conn: Conn) -> RefreshUse:
            row = await conn.fetchrow(
                "UPDATE refresh_tokens SET used_at = $2 WHERE id = $1 AND used_at IS NULL "
                "AND revoked_at IS NULL AND expires_at > $2 RETURNING user_id, family_id",
                token_id,
                now,
            )
            if row is not None:
                return RefreshUse(RefreshOutcome.OK, row["user_id"], row["family_id"])
            row = await conn.fetchrow(
                "SELECT user_id, family_id, used_at FROM refresh_tokens WHERE id = $1", token_id
            )
            if row is None:
                return RefreshUse(RefreshOutcome.INVALID)
            if row["used_at"] is not None:
                await conn.execute(
                    "UPDATE refresh_tokens SET revoked_at = $2 "
                    "WHERE family_id = $1 AND revoked_at IS NULL",
                    row["family_id"],
                    now,
                )
                return RefreshUse(RefreshOutcome.REUSED, row["user_id"], row["family_id"])
            return RefreshUse(RefreshOutcome.INVALID, row["user_id"], row["family_id"])

        return await self._db.run(op)

    async def revoke_refresh_family(self, family_id: str) -> None:
        async def op(conn: Conn) -> None:
            await conn.execute(
                "UPDATE refresh_tokens SET revoked_at = $2 "
                "WHERE family_id = $1 AND revoked_at IS NULL",
                family_id,
                utc_now(),
            )

        await self._db.run(op, transaction=False)

    async def revoke_refresh_token_family_of(self, token_id: str, user_id: str) -> None:
        async def op(conn: Conn) -> None:
            await conn.execute(
                "UPDATE refresh_tokens SET revoked_at = $3 WHERE revoked_at IS NULL AND "
                "family_id = (SELECT family_id FROM refresh_tokens WHERE id = $1 AND user_id = $2)",
                token_id, user_id, utc_now(),
            )  # fmt: skip

        await self._db.run(op, transaction=False)

    async def refresh_family_active(self, family_id: str, user_id: str, now: datetime) -> bool:
        async def op(conn: Conn) -> bool:
            row = await conn.fetchval(
                "SELECT 1 FROM refresh_tokens WHERE family_id = $1 AND user_id = $2 "
                "AND revoked_at IS NULL AND expires_at > $3 LIMIT 1",
                family_id, user_id, now,
            )  # fmt: skip
            return row is not None

        return await self._db.run(op, transaction=False)

    # -- projects ----------------------------------------------------------------------------
    async def create_project(self, owner_id: str, name: str, description: str | None) -> Project:
        now = utc_now()
        project = Project(new_id(), owner_id, name, description, now, now)

        async def op(conn: Conn) -> Project:
            try:
                await conn.execute(
                    "INSERT INTO projects (id, owner_id, name, description, created_at, "
                    "updated_at) VALUES ($1, $2, $3, $4, $5, $5)",
                    project.id, owner_id, name, description, now,
                )  # fmt: skip
            except asyncpg.ForeignKeyViolationError:
                raise NotFound("User not found.") from None
            return project

        return await self._db.run(op, transaction=False)

    async def get_project(self, owner_id: str, project_id: str) -> Project | None:
        async def op(conn: Conn) -> Project | None:
            row = await conn.fetchrow(
                "SELECT * FROM projects WHERE id = $1 AND owner_id = $2", project_id, owner_id
            )
            return None if row is None else _DEC.project(row)

        return await self._db.run(op, transaction=False)

    async def list_projects(self, owner_id: str, limit: int, cursor: str | None) -> Page[Project]:
        after = decode_cursor(cursor)

        async def op(conn: Conn) -> Page[Project]:
            rows = await conn.fetch(
                "SELECT * FROM projects WHERE owner_id = $1 AND ($2::text IS NULL OR id < $2) "
                "ORDER BY id DESC LIMIT $3",
                owner_id, after, limit + 1,
            )  # fmt: skip
            items = [_DEC.project(r) for r in rows[:limit]]
            return Page(items, page_cursor([r["id"] for r in rows], limit))

        return await self._db.run(op, transaction=False)

    async def update_project(
        self,
        owner_id: str,
        project_id: str,
        *,
        name: str | None,
        description: str | None,
        set_description: bool,
    ) -> tuple[Project, StoredEvent]:
        async def op(conn: Conn) -> tuple[Project, StoredEvent]:
            now = utc_now()
            row = await conn.fetchrow(
                "UPDATE projects SET name = coalesce($3::text, name), "
                "description = CASE WHEN $4::boolean THEN $5::text ELSE description END, "
                "updated_at = $6 WHERE id = $1 AND owner_id = $2 RETURNING *",
                project_id, owner_id, name, set_description, description, now,
            )  # fmt: skip
            if row is None:
                raise NotFound("Project not found.")
            project = _DEC.project(row)
            data = codec.project_updated_data(project, now)
            [event] = await _append_events(conn, [NewEvent(project_id, data["type"], data)], now)
            return project, event

        return await self._db.run(op)

    async def delete_project(self, owner_id: str, project_id: str) -> None:
        async def op(conn: Conn) -> None:
            status = await conn.execute(
                "DELETE FROM projects WHERE id = $1 AND owner_id = $2", project_id, owner_id
            )
            if status == "DELETE 0":
                raise NotFound("Project not found.")
            # Other instances end the project's streams (server.events.pgbus).
            await conn.execute("SELECT pg_notify($1, $2)", EVENTS_CHANNEL, f"{project_id}:deleted")

        await self._db.run(op, transaction=True)

    async def project_owner(self, project_id: str) -> str | None:
        async def op(conn: Conn) -> str | None:
            owner = await conn.fetchval("SELECT owner_id FROM projects WHERE id = $1", project_id)
            return None if owner is None else str(owner)

        return await self._db.run(op, transaction=False)

    # -- files -------------------------------------------------------------------------------
    async def list_files(
        self, project_id: str, prefix: str, limit: int, cursor: str | None
    ) -> Page[FileMeta]:
        after = decode_cursor(cursor) or ""

        async def op(conn: Conn) -> Page[FileMeta]:
            rows = await conn.fetch(
                f"SELECT {_FILE_META_COLS} FROM files WHERE project_id = $1 AND path > $2 "
                "AND starts_with(path, $3) ORDER BY path LIMIT $4",
                project_id, after, prefix, limit + 1,
            )  # fmt: skip
            items = [_DEC.file_meta(r) for r in rows[:limit]]
            return Page(items, page_cursor([r["path"] for r in rows], limit))

        return await self._db.run(op, transaction=False)

    async def get_file(self, project_id: str, path: str) -> FileData | None:
        async def op(conn: Conn) -> FileData | None:
            row = await conn.fetchrow(
                f"SELECT {_FILE_META_COLS}, content FROM files WHERE project_id = $1 AND path = $2",
                project_id,
                path,
            )
            return None if row is None else FileData(_DEC.file_meta(row), bytes(row["content"]))

        return await self._db.run(op, transaction=False)

    async def get_file_meta(self, project_id: str, path: str) -> FileMeta | None:
        async def op(conn: Conn) -> FileMeta | None:
            row = await conn.fetchrow(
                f"SELECT {_FILE_META_COLS} FROM files WHERE project_id = $1 AND path = $2",
                project_id,
                path,
            )
            return None if row is None else _DEC.file_meta(row)

        return await self._db.run(op, transaction=False)

    async def put_file(
        self,
        project_id: str,
        path: str,
        content: bytes,
        *,
        content_type: str,
        sha256: str,
        limits: FileLimits,
        if_match: int | None = None,
        if_none_match_any: bool = False,
    ) -> tuple[FileMeta, bool, StoredEvent]:
        async def op(conn: Conn) -> tuple[FileMeta, bool, StoredEvent]:
            now = utc_now()
            seq = await _allocate(conn, project_id, 1)  # locks the project row first
            row = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM files WHERE project_id = $1) AS count, "
                "(SELECT coalesce(sum(size), 0) FROM files WHERE project_id = $1) AS total, "
                "f.version, f.size FROM (SELECT 1) AS one "
                "LEFT JOIN files f ON f.project_id = $1 AND f.path = $2",
                project_id,
                path,
            )
            old_version = None if row["version"] is None else int(row["version"])
            old_size = None if row["size"] is None else int(row["size"])
            codec.check_preconditions(old_version, if_match, if_none_match_any)
            codec.check_quota(
                limits, len(content), old_size=old_size,
                file_count=int(row["count"]), total_bytes=int(row["total"]),
            )  # fmt: skip
            version = 1 if old_version is None else old_version + 1
            await conn.execute(
                "INSERT INTO files (project_id, path, content, size, version, sha256, "
                "content_type, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
                "ON CONFLICT (project_id, path) DO UPDATE SET content = EXCLUDED.content, "
                "size = EXCLUDED.size, version = EXCLUDED.version, sha256 = EXCLUDED.sha256, "
                "content_type = EXCLUDED.content_type, updated_at = EXCLUDED.updated_at",
                project_id, path, content, len(content), version, sha256, content_type, now,
            )  # fmt: skip
            meta = FileMeta(project_id, path, len(content), version, sha256, content_type, now)
            created = old_version is None
            data = codec.file_changed_data(meta, created, now)
            [event] = await _append_events(
                conn, [NewEvent(project_id, data["type"], data)], now, {project_id: seq}
            )
            return meta, created, event

        return await self._db.run(op)

    async def move_file(
        self, project_id: str, src: str, dst: str, *, if_match: int | None = None
    ) -> tuple[FileMeta, StoredEvent]:
        async def op(conn: Conn) -> tuple[FileMeta, StoredEvent]:
            now = utc_now()
            seq = await _allocate(conn, project_id, 1)
            version = await conn.fetchval(
                "SELECT version FROM files WHERE project_id = $1 AND path = $2", project_id, src
            )
            if version is None:
                raise NotFound("File not found.", {"path": src})
            codec.check_preconditions(int(version), if_match, False)
            if await conn.fetchval(
                "SELECT 1 FROM files WHERE project_id = $1 AND path = $2", project_id, dst
            ):
                raise Conflict("A file exists at the target path.", {"path": dst})
            row = await conn.fetchrow(
                f"UPDATE files SET path = $3, version = version + 1, updated_at = $4 "
                f"WHERE project_id = $1 AND path = $2 RETURNING {_FILE_META_COLS}",
                project_id, src, dst, now,
            )  # fmt: skip
            meta = _DEC.file_meta(row)
            data = codec.file_moved_data(meta, src, now)
            [event] = await _append_events(
                conn, [NewEvent(project_id, data["type"], data)], now, {project_id: seq}
            )
            return meta, event

        return await self._db.run(op)

    async def delete_file(
        self, project_id: str, path: str, *, if_match: int | None = None
    ) -> StoredEvent:
        async def op(conn: Conn) -> StoredEvent:
            now = utc_now()
            seq = await _allocate(conn, project_id, 1)
            version = await conn.fetchval(
                "DELETE FROM files WHERE project_id = $1 AND path = $2 RETURNING version",
                project_id,
                path,
            )
            if version is None:
                raise NotFound("File not found.", {"path": path})
            codec.check_preconditions(int(version), if_match, False)  # raising rolls back
            data = codec.file_deleted_data(project_id, path, now)
            [event] = await _append_events(
                conn, [NewEvent(project_id, data["type"], data)], now, {project_id: seq}
            )
            return event

        return await self._db.run(op)

    # -- event log ---------------------------------------------------------------------------
    async def append_events(self, events: Sequence[NewEvent]) -> list[StoredEvent]:
        if not events:
            return []

        async def op(conn: Conn) -> list[StoredEvent]:
            return await _append_events(conn, events, utc_now())

        return await self._db.run(op)

    async def events_after(self, project_id: str, after_seq: int, limit: int) -> list[StoredEvent]:
        async def op(conn: Conn) -> list[StoredEvent]:
            rows = await conn.fetch(
                "SELECT * FROM events WHERE project_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                project_id,
                after_seq,
                limit,
            )
            return [_DEC.event(r) for r in rows]

        return await self._db.run(op, transaction=False)

    async def event_bounds(self, project_id: str) -> tuple[int, int]:
        async def op(conn: Conn) -> tuple[int, int]:
            row = await conn.fetchrow(
                "SELECT last_event_seq, (SELECT min(seq) FROM events WHERE project_id = $1) "
                "AS first FROM projects WHERE id = $1",
                project_id,
            )
            last = 0 if row is None else int(row["last_event_seq"])
            first = last + 1 if row is None or row["first"] is None else int(row["first"])
            return first, last

        return await self._db.run(op, transaction=False)  # one statement: one snapshot

    async def trim_events(self, project_id: str, keep_last: int, older_than: datetime) -> int:
        async def op(conn: Conn) -> int:
            status = await conn.execute(
                "DELETE FROM events WHERE project_id = $1 AND seq <= LEAST("
                "(SELECT last_event_seq FROM projects WHERE id = $1) - $2, "
                "coalesce((SELECT min(seq) FROM events WHERE project_id = $1 "
                "AND created_at >= $3), 9223372036854775807) - 1)",
                project_id, max(keep_last, 0), aware(older_than),
            )  # fmt: skip
            return int(status.split()[-1])

        return await self._db.run(op, transaction=False)

    # -- workflow runs -----------------------------------------------------------------------
    async def create_run(
        self, run: Run, events: Sequence[NewEvent]
    ) -> tuple[Run, bool, list[StoredEvent]]:
        async def existing(conn: Conn) -> Run | None:
            row = await conn.fetchrow(
                "SELECT * FROM runs WHERE owner_id = $1 AND idempotency_key = $2",
                run.owner_id,
                run.idempotency_key,
            )
            return None if row is None else (await _runs_with_steps(conn, [row]))[0]

        async def op(conn: Conn) -> tuple[Run, bool, list[StoredEvent]]:
            if run.idempotency_key is not None:
                found = await existing(conn)
                if found is not None:
                    return found, False, []
            try:
                inserted = await conn.fetchval(
                    _RUN_INSERT_SQL, *codec.run_values(run, time_as_text=False)
                )
            except asyncpg.ForeignKeyViolationError:
                raise NotFound("Project not found.") from None
            if inserted is None:  # a concurrent request with the same key won
                found = await existing(conn)
                assert found is not None
                return found, False, []
            await _upsert_steps(conn, run.steps)
            stored = await _append_events(conn, events, utc_now())
            row = await conn.fetchrow("SELECT * FROM runs WHERE id = $1", run.id)
            return (await _runs_with_steps(conn, [row]))[0], True, stored

        return await self._db.run(op)

    async def get_run(self, run_id: str, owner_id: str | None = None) -> Run | None:
        async def op(conn: Conn) -> Run | None:
            row = await conn.fetchrow(
                "SELECT * FROM runs WHERE id = $1 AND ($2::text IS NULL OR owner_id = $2)",
                run_id,
                owner_id,
            )
            return None if row is None else (await _runs_with_steps(conn, [row]))[0]

        return await self._db.run(op, readonly=True)

    async def list_runs(
        self,
        owner_id: str,
        project_id: str | None,
        status: RunStatus | None,
        limit: int,
        cursor: str | None,
    ) -> Page[Run]:
        after = decode_cursor(cursor)
        status_value = None if status is None else RunStatus(status).value

        async def op(conn: Conn) -> Page[Run]:
            rows = await conn.fetch(
                "SELECT * FROM runs WHERE owner_id = $1 AND ($2::text IS NULL OR project_id = $2) "
                "AND ($3::text IS NULL OR status = $3) AND ($4::text IS NULL OR id < $4) "
                "ORDER BY id DESC LIMIT $5",
                owner_id, project_id, status_value, after, limit + 1,
            )  # fmt: skip
            items = await _runs_with_steps(conn, rows[:limit])
            return Page(items, page_cursor([r["id"] for r in rows], limit))

        return await self._db.run(op, readonly=True)

    async def write_run_state(
        self,
        *,
        run: RunChange | None = None,
        new_steps: Sequence[Step] = (),
        steps: Sequence[StepChange] = (),
        events: Sequence[NewEvent] = (),
    ) -> list[StoredEvent]:
        run_fields = None if run is None else dict(run.fields)
        if run_fields is not None and run_fields.get("status") == RunStatus.SUCCEEDED:
            run_fields.setdefault("error", None)  # drop a cancel request that came too late
        run_sets = (
            None if run_fields is None else codec.run_change_values(run_fields, time_as_text=False)
        )
        step_sets = [codec.step_change_values(s.fields, time_as_text=False) for s in steps]

        async def op(conn: Conn) -> list[StoredEvent]:
            if run is not None and run_sets:
                assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(run_sets, 2))
                status = await conn.execute(
                    f"UPDATE runs SET {assignments} WHERE id = $1", run.run_id, *run_sets.values()
                )
                if status == "UPDATE 0":
                    raise NotFound("Run not found.", {"run_id": run.run_id})
            try:
                await _upsert_steps(conn, new_steps)
            except asyncpg.ForeignKeyViolationError:
                raise NotFound("Run not found.") from None
            for change, sets in zip(steps, step_sets, strict=True):
                if not sets:
                    continue
                assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(sets, 3))
                status = await conn.execute(
                    f"UPDATE steps SET {assignments} WHERE run_id = $1 AND id = $2",
                    change.run_id, change.step_id, *sets.values(),
                )  # fmt: skip
                if status == "UPDATE 0":
                    raise NotFound("Step not found.", {"step_id": change.step_id})
            return await _append_events(conn, events, utc_now())

        return await self._db.run(op)

    async def unfinished_runs(self, lease_expired_before: datetime | None) -> list[Run]:
        moment = None if lease_expired_before is None else aware(lease_expired_before)

        async def op(conn: Conn) -> list[Run]:
            rows = await conn.fetch(
                f"SELECT * FROM runs WHERE {_NOT_FINISHED} AND ($1::timestamptz IS NULL "
                "OR lease_owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at < $1) "
                "ORDER BY id",
                moment,
            )
            return await _runs_with_steps(conn, rows)

        return await self._db.run(op, readonly=True)

    async def claim_run(self, run_id: str, owner: str, expires_at: datetime) -> bool:
        async def op(conn: Conn) -> bool:
            status = await conn.execute(
                f"UPDATE runs SET lease_owner = $2, lease_expires_at = $3 WHERE id = $1 "
                f"AND {_NOT_FINISHED} AND (lease_owner IS NULL OR lease_owner = $2 "
                "OR lease_expires_at IS NULL OR lease_expires_at < $4)",
                run_id, owner, aware(expires_at), utc_now(),
            )  # fmt: skip
            return bool(status == "UPDATE 1")

        return await self._db.run(op, transaction=False)

    async def renew_leases(self, owner: str, expires_at: datetime) -> None:
        async def op(conn: Conn) -> None:
            await conn.execute(
                f"UPDATE runs SET lease_expires_at = $2 WHERE lease_owner = $1 AND {_NOT_FINISHED}",
                owner,
                aware(expires_at),
            )

        await self._db.run(op, transaction=False)

    # -- cross-instance cancel (PostgreSQL only; see the module doc) -------------------------
    def on_cancel_request(self, listener: Callable[[str], object] | None) -> None:
        """Register who cancels a run of this process when another instance asks (run id)."""
        self._cancel_listener = listener

    def deliver_cancel_request(self, run_id: str) -> None:
        """Called by the event bus for a ``cancel`` notification; never raises."""
        if self._cancel_listener is not None:
            self._cancel_listener(run_id)

    async def request_cancel(self, run_id: str) -> bool:
        """Ask the instance holding an unfinished run's lease to cancel it (mark + notify, one
        transaction). False when the run is finished or nobody holds it."""

        async def op(conn: Conn) -> bool:
            project_id = await conn.fetchval(
                "UPDATE runs SET error = jsonb_build_object('code', $2::text, 'message', "
                f"'Cancel requested.') WHERE id = $1 AND {_NOT_FINISHED} "
                "AND lease_owner IS NOT NULL RETURNING project_id",
                run_id, CANCEL_REQUESTED,
            )  # fmt: skip
            if project_id is None:
                return False
            await conn.execute(
                "SELECT pg_notify($1, $2)", EVENTS_CHANNEL, f"{project_id}:{CANCEL_TAG}:{run_id}"
            )
            return True

        return await self._db.run(op)

    async def cancel_requests(self, owner: str) -> list[str]:
        """Ids of the unfinished runs ``owner`` holds whose cancel was requested."""

        async def op(conn: Conn) -> list[str]:
            rows = await conn.fetch(
                f"SELECT id FROM runs WHERE lease_owner = $1 AND {_NOT_FINISHED} "
                "AND error->>'code' = $2",
                owner, CANCEL_REQUESTED,
            )  # fmt: skip
            return [str(r["id"]) for r in rows]

        return await self._db.run(op, transaction=False)
