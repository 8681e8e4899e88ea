"""The PostgreSQL driver of programs (``server.store.program``) and the event log's appends.

``drive`` runs a program on one asyncpg connection (``Reserve``: the owner's row lock, then
the seqs' allocation; ``LockUser``: ``USER_LOCK``).

Event ``seq`` numbers come from ``UPDATE projects SET last_event_seq = last_event_seq + n
... RETURNING``: the row lock it takes serializes writers per project until commit, so
seqs are gap-free, and file quota checks made after it see every committed write. The
same statement queues one ``Committed`` notification (``server.events.pgchannel``) per
project, delivered by PostgreSQL at commit (never for a rolled-back transaction).
Statements come from ``server.store.sql`` (shared with SQLite) unless noted.
"""

from __future__ import annotations

from contextlib import closing
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from server.errors import NotFound
from server.events.pgchannel import EVENTS_CHANNEL, committed_payload_sql
from server.store import codec, sql
from server.store.codec import aware
from server.store.program import Append, Call, Done, LockUser, Reserve, step

if TYPE_CHECKING:
    from collections.abc import Sequence

    from server.events.model import NewEvent, StoredEvent
    from server.store.models import Run
    from server.store.postgres_db import Conn
    from server.store.program import Program, Request

DEC = codec.RowDecoder()
T = TypeVar("T")

# PostgreSQL only: the allocation notifies; events go in with one unnest.
_PAYLOAD = committed_payload_sql("$1", "last_event_seq")
_ALLOCATE_SQL = f"""
WITH bumped AS (
    UPDATE projects SET last_event_seq = last_event_seq + $2 WHERE id = $1
    RETURNING last_event_seq
)
SELECT last_event_seq, pg_notify('{EVENTS_CHANNEL}', {_PAYLOAD}) FROM bumped
"""
_INSERT_EVENTS_SQL = """
INSERT INTO events (project_id, seq, type, data, created_at)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[])
"""

# Serializes one user's limit checks (runs, projects, bytes). NO KEY UPDATE leaves the
# foreign-key share locks of other inserts alone: it never waits on (or deadlocks with) them.
# Lock order: the user's row, then the project's.
USER_LOCK = "SELECT id FROM users WHERE id = $1 FOR NO KEY UPDATE"


async def drive(conn: Conn, program: Program[T]) -> T:
    """Run a program (``server.store.program``) on one asyncpg connection."""
    reserved: dict[str, int] = {}  # first seq of each project's allocated seqs
    with closing(program):
        request = step(program, None)
        while not isinstance(request, Done):
            request = step(program, await _answer(conn, request, reserved))
    return request.value


def _encoded(args: Sequence[Any]) -> list[Any]:
    return [aware(a) if isinstance(a, datetime) else a for a in args]


async def _call(conn: Conn, call: Call) -> Any:
    if call.fetch == "many":
        await conn.executemany(call.statement, [_encoded(args) for args in call.args])
        return None
    args = _encoded(call.args)
    if call.fetch == "val":
        return await conn.fetchval(call.statement, *args)
    if call.fetch == "row":
        return await conn.fetchrow(call.statement, *args)
    if call.fetch == "rows":
        return await conn.fetch(call.statement, *args)
    await conn.execute(call.statement, *args)
    return None


async def _answer(conn: Conn, request: Request, reserved: dict[str, int]) -> Any:
    if isinstance(request, Call):
        if request.missing is None:
            return await _call(conn, request)
        try:
            return await _call(conn, request)
        except asyncpg.ForeignKeyViolationError:
            raise NotFound(request.missing) from None
    if isinstance(request, LockUser):  # orders one user's concurrent limit checks
        if await conn.fetchval(USER_LOCK, request.user_id) is None:
            raise NotFound("User not found.")
        return None
    if isinstance(request, Reserve):
        if request.lock_owner:  # the user's row before the project's: one lock order
            owner = await conn.fetchval(sql.PROJECT_OWNER, request.project_id)
            if owner is None or await conn.fetchval(USER_LOCK, owner) is None:
                raise NotFound("Project not found.")
        reserved[request.project_id] = await allocate(conn, request.project_id, request.events)
        return None
    if isinstance(request, Append):
        return await append_in(conn, request.events, request.now, reserved)
    return await _runs_with_steps(conn, request.rows)


async def allocate(conn: Conn, project_id: str, n: int) -> int:
    """Reserve ``n`` seqs (locking the project row, queueing the NOTIFY); return the first."""
    last = await conn.fetchval(_ALLOCATE_SQL, project_id, n)
    if last is None:
        raise NotFound("Project not found.", {"project_id": project_id})
    return int(last) - n + 1


async def append_in(
    conn: Conn, events: Sequence[NewEvent], now: datetime, first_seqs: dict[str, int] | None = None
) -> list[StoredEvent]:
    """Insert events with gap-free seqs; ``first_seqs`` holds seqs already allocated."""
    if not events:
        return []
    next_seq = dict(first_seqs or {})
    counts = codec.event_counts(events)
    for project_id in sorted(counts):  # one lock order: no deadlock between writers
        if project_id not in next_seq:
            next_seq[project_id] = await allocate(conn, project_id, counts[project_id])
    stored = codec.numbered(events, next_seq, now)
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
    if not run_ids:
        return []
    step_rows = await conn.fetch(  # PostgreSQL only: SQLite spells it IN (?, ...)
        "SELECT * FROM steps WHERE run_id = ANY($1::text[]) ORDER BY run_id, position, id", run_ids
    )
    return DEC.runs(rows, step_rows)
