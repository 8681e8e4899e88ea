"""``SqliteStore``: the ``Store`` protocol on an embedded SQLite file (the zero-config default).

Every method is one unit of work on ``SqliteDatabase`` (worker threads, one writer at a
time). Because writes are serialized, per-project event ``seq`` numbers taken from
``projects.last_event_seq`` inside the write transaction are gap-free.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from server.errors import Conflict, EmailTaken, NotFound
from server.store import codec
from server.store.codec import (
    FINISHED_RUN_STATUSES,
    RUN_COLUMNS,
    STEP_COLUMNS,
    decode_cursor,
    page_cursor,
    time_text,
)
from server.store.migrations import SCHEMA_MIGRATIONS_SQLITE, pending
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
from server.store.sqlite_db import SqliteDatabase
from server.timeutil import new_id, utc_now

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime
    from pathlib import Path

Conn = sqlite3.Connection
_DEC = codec.RowDecoder()
_FILE_META_COLS = "project_id, path, size, version, sha256, content_type, updated_at"
_NOT_FINISHED = "status NOT IN ({})".format(", ".join(f"'{s}'" for s in FINISHED_RUN_STATUSES))


def _append_events(conn: Conn, events: Sequence[NewEvent], now: datetime) -> list[StoredEvent]:
    """Assign gap-free seqs per project and insert; raises ``NotFound`` for a missing project."""
    counts: dict[str, int] = {}
    for event in events:
        counts[event.project_id] = counts.get(event.project_id, 0) + 1
    next_seq: dict[str, int] = {}
    for project_id, n in counts.items():
        rows = conn.execute(
            "UPDATE projects SET last_event_seq = last_event_seq + ? WHERE id = ? "
            "RETURNING last_event_seq",
            (n, project_id),
        ).fetchall()
        if not rows:
            raise NotFound("Project not found.", {"project_id": project_id})
        next_seq[project_id] = int(rows[0][0]) - n + 1
    stored: list[StoredEvent] = []
    for event in events:
        seq = next_seq[event.project_id]
        next_seq[event.project_id] = seq + 1
        stored.append(
            StoredEvent(event.project_id, seq, event.type, codec.dumps(dict(event.data)), now)
        )
    conn.executemany(
        "INSERT INTO events (project_id, seq, type, data, created_at) VALUES (?, ?, ?, ?, ?)",
        [(e.project_id, e.seq, e.type, e.data, time_text(now)) for e in stored],
    )
    return stored


def _steps_of(conn: Conn, run_ids: Sequence[str]) -> dict[str, list[Step]]:
    out: dict[str, list[Step]] = {run_id: [] for run_id in run_ids}
    if not run_ids:
        return out
    marks = ", ".join("?" for _ in run_ids)
    for row in conn.execute(
        f"SELECT * FROM steps WHERE run_id IN ({marks}) ORDER BY run_id, position, id",
        list(run_ids),
    ):
        out[row["run_id"]].append(_DEC.step(row))
    return out


def _runs_with_steps(conn: Conn, rows: Sequence[sqlite3.Row]) -> list[Run]:
    steps = _steps_of(conn, [row["id"] for row in rows])
    return [_DEC.run(row, steps[row["id"]]) for row in rows]


def _insert_steps(conn: Conn, steps: Sequence[Step]) -> None:
    if not steps:
        return
    cols = ", ".join(STEP_COLUMNS)
    marks = ", ".join("?" for _ in STEP_COLUMNS)
    conn.executemany(
        f"INSERT OR REPLACE INTO steps ({cols}) VALUES ({marks})",
        [codec.step_values(s, time_as_text=True) for s in steps],
    )


class SqliteStore:
    """The ``Store`` on one SQLite file. Open with ``await SqliteStore.open(path)``."""

    backend = "sqlite"

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: Path, *, readers: int = 4) -> SqliteStore:
        return cls(await SqliteDatabase.open(path, readers))

    # -- lifecycle ---------------------------------------------------------------------------
    async def migrate(self) -> list[int]:
        def applied_versions(conn: Conn) -> set[int]:
            conn.execute(SCHEMA_MIGRATIONS_SQLITE)
            return {int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations")}

        done: list[int] = []
        for migration in pending(await self._db.write(applied_versions)):

            def apply(conn: Conn, migration: Any = migration) -> bool:
                if conn.execute(
                    "SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,)
                ).fetchone():
                    return False  # another process applied it meanwhile
                for statement in _statements(migration.sqlite_sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, description, applied_at) "
                    "VALUES (?, ?, ?)",
                    (migration.version, migration.description, time_text(utc_now())),
                )
                return True

            if await self._db.write(apply):
                done.append(migration.version)
        return done

    async def pending_migrations(self) -> list[int]:
        def read(conn: Conn) -> set[int]:
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
            ).fetchone()
            if not exists:
                return set()
            return {int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations")}

        return [m.version for m in pending(await self._db.read(read))]

    async def ping(self) -> None:
        await self._db.read(lambda conn: conn.execute("SELECT 1").fetchall())

    async def aclose(self) -> None:
        await self._db.aclose()

    # -- users and refresh tokens ------------------------------------------------------------
    async def create_user(self, email: str, password_hash: str | None, name: str | None) -> User:
        user = User(new_id(), codec.normalize_email(email), name, utc_now(), password_hash)

        def op(conn: Conn) -> User:
            try:
                conn.execute(
                    "INSERT INTO users (id, email, name, password_hash, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (user.id, user.email, name, password_hash, time_text(user.created_at)),
                )
            except sqlite3.IntegrityError:
                raise EmailTaken() from None
            return user

        return await self._db.write(op)

    async def ensure_user(self, user_id: str, email: str, name: str | None) -> User:
        def op(conn: Conn) -> User:
            row = conn.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
            if row is None:
                try:
                    conn.execute(
                        "INSERT INTO users (id, email, name, created_at) VALUES (?, ?, ?, ?)",
                        (user_id, codec.normalize_email(email), name, time_text(utc_now())),
                    )
                except sqlite3.IntegrityError:
                    raise EmailTaken() from None
                row = conn.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
            return _DEC.user(row)

        return await self._db.write(op)

    async def get_user(self, user_id: str) -> User | None:
        def op(conn: Conn) -> User | None:
            row = conn.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
            return None if row is None else _DEC.user(row)

        return await self._db.read(op)

    async def get_user_by_email(self, email: str) -> User | None:
        def op(conn: Conn) -> User | None:
            row = conn.execute(
                "SELECT * FROM users WHERE email = ?", (codec.normalize_email(email),)
            ).fetchone()
            return None if row is None else _DEC.user(row)

        return await self._db.read(op)

    async def create_refresh_token(
        self, token_id: str, user_id: str, family_id: str, expires_at: datetime
    ) -> None:
        await self._db.write(
            lambda conn: conn.execute(
                "INSERT INTO refresh_tokens (id, user_id, family_id, expires_at) "
                "VALUES (?, ?, ?, ?)",
                (token_id, user_id, family_id, time_text(expires_at)),
            )
        )

    async def use_refresh_token(self, token_id: str, now: datetime) -> RefreshUse:
        def op(conn: Conn) -> RefreshUse:
            row = conn.execute("SELECT * FROM refresh_tokens WHERE id = ?", (token_id,)).fetchone()
            if row is None:
                return RefreshUse(RefreshOutcome.INVALID)
            user_id, family_id = row["user_id"], row["family_id"]
            if row["used_at"] is not None:
                conn.execute(
                    "UPDATE refresh_tokens SET revoked_at = ? "
                    "WHERE family_id = ? AND revoked_at IS NULL",
                    (time_text(now), family_id),
                )
                return RefreshUse(RefreshOutcome.REUSED, user_id, family_id)
            expired = _DEC.req_time(row["expires_at"]) <= now
            if row["revoked_at"] is not None or expired:
                return RefreshUse(RefreshOutcome.INVALID, user_id, family_id)
            conn.execute(
                "UPDATE refresh_tokens SET used_at = ? WHERE id = ?", (time_text(now), token_id)
            )
            return RefreshUse(RefreshOutcome.OK, user_id, family_id)

        return await self._db.write(op)

    async def revoke_refresh_family(self, family_id: str) -> None:
        now = time_text(utc_now())
        await self._db.write(
            lambda conn: conn.execute(
                "UPDATE refresh_tokens SET revoked_at = ? "
                "WHERE family_id = ? AND revoked_at IS NULL",
                (now, family_id),
            )
        )

    async def revoke_refresh_token_family_of(self, token_id: str, user_id: str) -> None:
        now = time_text(utc_now())
        await self._db.write(
            lambda conn: conn.execute(
                "UPDATE refresh_tokens SET revoked_at = ? WHERE revoked_at IS NULL AND "
                "family_id = (SELECT family_id FROM refresh_tokens WHERE id = ? AND user_id = ?)",
                (now, token_id, user_id),
            )
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
    async def create_project(self, owner_id: str, name: str, description: str | None) -> Project:
        now = utc_now()
        project = Project(new_id(), owner_id, name, description, now, now)

        def op(conn: Conn) -> Project:
            try:
                conn.execute(
                    "INSERT INTO projects (id, owner_id, name, description, created_at, "
                    "updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (project.id, owner_id, name, description, time_text(now), time_text(now)),
                )
            except sqlite3.IntegrityError:
                raise NotFound("User not found.") from None
            return project

        return await self._db.write(op)

    async def get_project(self, owner_id: str, project_id: str) -> Project | None:
        def op(conn: Conn) -> Project | None:
            row = conn.execute(
                "SELECT * FROM projects WHERE id = ? AND owner_id = ?", (project_id, owner_id)
            ).fetchone()
            return None if row is None else _DEC.project(row)

        return await self._db.read(op)

    async def list_projects(self, owner_id: str, limit: int, cursor: str | None) -> Page[Project]:
        after = decode_cursor(cursor)

        def op(conn: Conn) -> Page[Project]:
            rows = conn.execute(
                "SELECT * FROM projects WHERE owner_id = ? AND (? IS NULL OR id < ?) "
                "ORDER BY id DESC LIMIT ?",
                (owner_id, after, after, limit + 1),
            ).fetchall()
            items = [_DEC.project(r) for r in rows[:limit]]
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
            rows = conn.execute(
                "UPDATE projects SET name = coalesce(?, name), "
                "description = CASE WHEN ? THEN ? ELSE description END, updated_at = ? "
                "WHERE id = ? AND owner_id = ? RETURNING *",
                (name, set_description, description, time_text(now), project_id, owner_id),
            ).fetchall()
            if not rows:
                raise NotFound("Project not found.")
            project = _DEC.project(rows[0])
            data = codec.project_updated_data(project, now)
            [event] = _append_events(conn, [NewEvent(project_id, data["type"], data)], now)
            return project, event

        return await self._db.write(op)

    async def delete_project(self, owner_id: str, project_id: str) -> None:
        def op(conn: Conn) -> None:
            cur = conn.execute(
                "DELETE FROM projects WHERE id = ? AND owner_id = ?", (project_id, owner_id)
            )
            if cur.rowcount == 0:
                raise NotFound("Project not found.")

        await self._db.write(op)

    async def project_owner(self, project_id: str) -> str | None:
        def op(conn: Conn) -> str | None:
            row = conn.execute(
                "SELECT owner_id FROM projects WHERE id = ?", (project_id,)
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._db.read(op)

    # -- files -------------------------------------------------------------------------------
    async def list_files(
        self, project_id: str, prefix: str, limit: int, cursor: str | None
    ) -> Page[FileMeta]:
        after = decode_cursor(cursor) or ""

        def op(conn: Conn) -> Page[FileMeta]:
            rows = conn.execute(
                f"SELECT {_FILE_META_COLS} FROM files WHERE project_id = ? AND path > ? "
                "AND substr(path, 1, length(?)) = ? ORDER BY path LIMIT ?",
                (project_id, after, prefix, prefix, limit + 1),
            ).fetchall()
            items = [_DEC.file_meta(r) for r in rows[:limit]]
            return Page(items, page_cursor([r["path"] for r in rows], limit))

        return await self._db.read(op)

    async def get_file(self, project_id: str, path: str) -> FileData | None:
        def op(conn: Conn) -> FileData | None:
            row = conn.execute(
                f"SELECT {_FILE_META_COLS}, content FROM files WHERE project_id = ? AND path = ?",
                (project_id, path),
            ).fetchone()
            return None if row is None else FileData(_DEC.file_meta(row), bytes(row["content"]))

        return await self._db.read(op)

    async def get_file_meta(self, project_id: str, path: str) -> FileMeta | None:
        def op(conn: Conn) -> FileMeta | None:
            row = conn.execute(
                f"SELECT {_FILE_META_COLS} FROM files WHERE project_id = ? AND path = ?",
                (project_id, path),
            ).fetchone()
            return None if row is None else _DEC.file_meta(row)

        return await self._db.read(op)

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
        def op(conn: Conn) -> tuple[FileMeta, bool, StoredEvent]:
            now = utc_now()
            if not conn.execute("SELECT 1 FROM projects WHERE id = ?", (project_id,)).fetchone():
                raise NotFound("Project not found.")
            row = conn.execute(
                "SELECT version, size FROM files WHERE project_id = ? AND path = ?",
                (project_id, path),
            ).fetchone()
            old_version, old_size = (None, None) if row is None else (row[0], row[1])
            codec.check_preconditions(old_version, if_match, if_none_match_any)
            count, total = conn.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM files WHERE project_id = ?",
                (project_id,),
            ).fetchone()
            codec.check_quota(
                limits, len(content), old_size=old_size, file_count=count, total_bytes=total
            )
            version = 1 if old_version is None else old_version + 1
            conn.execute(
                "INSERT OR REPLACE INTO files (project_id, path, content, size, version, sha256, "
                "content_type, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (project_id, path, content, len(content), version, sha256, content_type,
                 time_text(now)),
            )  # fmt: skip
            meta = FileMeta(project_id, path, len(content), version, sha256, content_type, now)
            created = old_version is None
            data = codec.file_changed_data(meta, created, now)
            [event] = _append_events(conn, [NewEvent(project_id, data["type"], data)], now)
            return meta, created, event

        return await self._db.write(op)

    async def move_file(
        self, project_id: str, src: str, dst: str, *, if_match: int | None = None
    ) -> tuple[FileMeta, StoredEvent]:
        def op(conn: Conn) -> tuple[FileMeta, StoredEvent]:
            now = utc_now()
            row = conn.execute(
                f"SELECT {_FILE_META_COLS} FROM files WHERE project_id = ? AND path = ?",
                (project_id, src),
            ).fetchone()
            if row is None:
                raise NotFound("File not found.", {"path": src})
            codec.check_preconditions(int(row["version"]), if_match, False)
            if conn.execute(
                "SELECT 1 FROM files WHERE project_id = ? AND path = ?", (project_id, dst)
            ).fetchone():
                raise Conflict("A file exists at the target path.", {"path": dst})
            rows = conn.execute(
                f"UPDATE files SET path = ?, version = version + 1, updated_at = ? "
                f"WHERE project_id = ? AND path = ? RETURNING {_FILE_META_COLS}",
                (dst, time_text(now), project_id, src),
            ).fetchall()
            meta = _DEC.file_meta(rows[0])
            data = codec.file_moved_data(meta, src, now)
            [event] = _append_events(conn, [NewEvent(project_id, data["type"], data)], now)
            return meta, event

        return await self._db.write(op)

    async def delete_file(
        self, project_id: str, path: str, *, if_match: int | None = None
    ) -> StoredEvent:
        def op(conn: Conn) -> StoredEvent:
            now = utc_now()
            row = conn.execute(
                "SELECT version FROM files WHERE project_id = ? AND path = ?", (project_id, path)
            ).fetchone()
            if row is None:
                raise NotFound("File not found.", {"path": path})
            codec.check_preconditions(int(row[0]), if_match, False)
            conn.execute("DELETE FROM files WHERE project_id = ? AND path = ?", (project_id, path))
            data = codec.file_deleted_data(project_id, path, now)
            [event] = _append_events(conn, [NewEvent(project_id, data["type"], data)], now)
            return event

        return await self._db.write(op)

    # -- event log ---------------------------------------------------------------------------
    async def append_events(self, events: Sequence[NewEvent]) -> list[StoredEvent]:
        if not events:
            return []
        return await self._db.write(lambda conn: _append_events(conn, events, utc_now()))

    async def events_after(self, project_id: str, after_seq: int, limit: int) -> list[StoredEvent]:
        def op(conn: Conn) -> list[StoredEvent]:
            rows = conn.execute(
                "SELECT * FROM events WHERE project_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (project_id, after_seq, limit),
            ).fetchall()
            return [_DEC.event(r) for r in rows]

        return await self._db.read(op)

    async def event_bounds(self, project_id: str) -> tuple[int, int]:
        def op(conn: Conn) -> tuple[int, int]:
            row = conn.execute(
                "SELECT last_event_seq, (SELECT min(seq) FROM events WHERE project_id = ?) "
                "FROM projects WHERE id = ?",
                (project_id, project_id),
            ).fetchone()
            last = 0 if row is None else int(row[0])
            first = last + 1 if row is None or row[1] is None else int(row[1])
            return first, last

        return await self._db.read(op)

    async def trim_events(self, project_id: str, keep_last: int, older_than: datetime) -> int:
        def op(conn: Conn) -> int:
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

        return await self._db.write(op)

    # -- workflow runs -----------------------------------------------------------------------
    async def create_run(
        self, run: Run, events: Sequence[NewEvent]
    ) -> tuple[Run, bool, list[StoredEvent]]:
        def op(conn: Conn) -> tuple[Run, bool, list[StoredEvent]]:
            if run.idempotency_key is not None:
                row = conn.execute(
                    "SELECT * FROM runs WHERE owner_id = ? AND idempotency_key = ?",
                    (run.owner_id, run.idempotency_key),
                ).fetchone()
                if row is not None:
                    return _runs_with_steps(conn, [row])[0], False, []
            cols = ", ".join(RUN_COLUMNS)
            marks = ", ".join("?" for _ in RUN_COLUMNS)
            try:
                conn.execute(
                    f"INSERT INTO runs ({cols}) VALUES ({marks})",
                    codec.run_values(run, time_as_text=True),
                )
            except sqlite3.IntegrityError:
                raise NotFound("Project not found.") from None
            _insert_steps(conn, run.steps)
            stored = _append_events(conn, events, utc_now())
            row = conn.execute("SELECT * FROM runs WHERE id = ?", (run.id,)).fetchone()
            return _runs_with_steps(conn, [row])[0], True, stored

        return await self._db.write(op)

    async def get_run(self, run_id: str, owner_id: str | None = None) -> Run | None:
        def op(conn: Conn) -> Run | None:
            row = conn.execute(
                "SELECT * FROM runs WHERE id = ? AND (? IS NULL OR owner_id = ?)",
                (run_id, owner_id, owner_id),
            ).fetchone()
            return None if row is None else _runs_with_steps(conn, [row])[0]

        return await self._db.read(op)

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

        def op(conn: Conn) -> Page[Run]:
            rows = conn.execute(
                "SELECT * FROM runs WHERE owner_id = ? AND (? IS NULL OR project_id = ?) "
                "AND (? IS NULL OR status = ?) AND (? IS NULL OR id < ?) "
                "ORDER BY id DESC LIMIT ?",
                (owner_id, project_id, project_id, status_value, status_value, after, after,
                 limit + 1),
            ).fetchall()  # fmt: skip
            items = _runs_with_steps(conn, rows[:limit])
            return Page(items, page_cursor([r["id"] for r in rows], limit))

        return await self._db.read(op)

    async def write_run_state(
        self,
        *,
        run: RunChange | None = None,
        new_steps: Sequence[Step] = (),
        steps: Sequence[StepChange] = (),
        events: Sequence[NewEvent] = (),
    ) -> list[StoredEvent]:
        run_sets = None if run is None else codec.run_change_values(run.fields, time_as_text=True)
        step_sets = [codec.step_change_values(s.fields, time_as_text=True) for s in steps]

        def op(conn: Conn) -> list[StoredEvent]:
            if run is not None and run_sets:
                assignments = ", ".join(f"{name} = ?" for name in run_sets)
                cur = conn.execute(
                    f"UPDATE runs SET {assignments} WHERE id = ?", [*run_sets.values(), run.run_id]
                )
                if cur.rowcount == 0:
                    raise NotFound("Run not found.", {"run_id": run.run_id})
            try:
                _insert_steps(conn, new_steps)
            except sqlite3.IntegrityError:
                raise NotFound("Run not found.") from None
            for change, sets in zip(steps, step_sets, strict=True):
                if not sets:
                    continue
                assignments = ", ".join(f"{name} = ?" for name in sets)
                cur = conn.execute(
                    f"UPDATE steps SET {assignments} WHERE run_id = ? AND id = ?",
                    [*sets.values(), change.run_id, change.step_id],
                )
                if cur.rowcount == 0:
                    raise NotFound("Step not found.", {"step_id": change.step_id})
            return _append_events(conn, events, utc_now())

        return await self._db.write(op)

    async def unfinished_runs(self, lease_expired_before: datetime | None) -> list[Run]:
        moment = time_text(lease_expired_before)

        def op(conn: Conn) -> list[Run]:
            rows = conn.execute(
                f"SELECT * FROM runs WHERE {_NOT_FINISHED} AND (? IS NULL OR lease_owner IS NULL "
                "OR lease_expires_at IS NULL OR lease_expires_at < ?) ORDER BY id",
                (moment, moment),
            ).fetchall()
            return _runs_with_steps(conn, rows)

        return await self._db.read(op)

    async def claim_run(self, run_id: str, owner: str, expires_at: datetime) -> bool:
        now = time_text(utc_now())

        def op(conn: Conn) -> bool:
            cur = conn.execute(
                f"UPDATE runs SET lease_owner = ?, lease_expires_at = ? WHERE id = ? "
                f"AND {_NOT_FINISHED} AND (lease_owner IS NULL OR lease_owner = ? "
                "OR lease_expires_at IS NULL OR lease_expires_at < ?)",
                (owner, time_text(expires_at), run_id, owner, now),
            )
            return cur.rowcount == 1

        return await self._db.write(op)

    async def renew_leases(self, owner: str, expires_at: datetime) -> None:
        await self._db.write(
            lambda conn: conn.execute(
                f"UPDATE runs SET lease_expires_at = ? WHERE lease_owner = ? AND {_NOT_FINISHED}",
                (time_text(expires_at), owner),
            )
        )


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
