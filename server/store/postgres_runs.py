"""The PostgreSQL side of the event log and of workflow runs (part of ``PostgresStore``).

Event ``seq`` numbers come from ``UPDATE projects SET last_event_seq = last_event_seq + n
... RETURNING``: the row lock it takes serializes writers per project until commit, so
seqs are gap-free, and file quota checks made after it see every committed write. The
same statement queues one ``Committed`` notification (``server.events.pgchannel``) per
project, delivered by PostgreSQL at commit (never for a rolled-back transaction).
Statements come from ``server.store.sql`` (shared with SQLite) unless noted.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from server.errors import NotFound, RunStatusChanged
from server.events.model import StoredEvent
from server.events.pgchannel import EVENTS_CHANNEL, committed_payload_sql
from server.store import codec, sql
from server.store.codec import aware, decode_cursor, page_cursor
from server.store.limits import check_runs_in_flight
from server.store.models import Page, Run, RunChange, RunStatus, Step, StepChange
from server.store.program import Append, Call, Reserve
from server.timeutil import utc_now

if TYPE_CHECKING:
    from collections.abc import Sequence

    from server.events.model import NewEvent
    from server.store.postgres_db import Conn, PostgresDatabase
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
    answer: Any = None
    reserved: dict[str, int] = {}  # first seq of each project's allocated seqs
    try:
        while True:
            try:
                request = program.send(answer)
            except StopIteration as done:
                result: T = done.value
                return result
            answer = await _answer(conn, request, reserved)
    finally:
        program.close()


async def _answer(conn: Conn, request: Request, reserved: dict[str, int]) -> Any:
    if isinstance(request, Call):
        args = [aware(a) if isinstance(a, datetime) else a for a in request.args]
        if request.fetch == "val":
            return await conn.fetchval(request.statement, *args)
        if request.fetch == "row":
            return await conn.fetchrow(request.statement, *args)
        if request.fetch == "rows":
            return await conn.fetch(request.statement, *args)
        await conn.execute(request.statement, *args)
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
    counts: dict[str, int] = {}
    for event in events:
        counts[event.project_id] = counts.get(event.project_id, 0) + 1
    for project_id in sorted(counts):  # one lock order: no deadlock between writers
        if project_id not in next_seq:
            next_seq[project_id] = await allocate(conn, project_id, counts[project_id])
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
        for row in await conn.fetch(  # PostgreSQL only: SQLite spells it IN (?, ...)
            "SELECT * FROM steps WHERE run_id = ANY($1::text[]) ORDER BY run_id, position, id",
            run_ids,
        ):
            steps[row["run_id"]].append(DEC.step(row))
    return [DEC.run(row, steps[row["id"]]) for row in rows]


async def _upsert_steps(conn: Conn, steps: Sequence[Step]) -> None:
    if steps:
        await conn.executemany(
            sql.STEP_UPSERT, [codec.step_values(s, time_as_text=False) for s in steps]
        )


class PostgresRuns:
    """Run and step operations of ``PostgresStore`` (see ``server.store.protocol``)."""

    _db: PostgresDatabase

    async def create_run(
        self, run: Run, events: Sequence[NewEvent], *, max_in_flight: int | None = None
    ) -> tuple[Run, bool, list[StoredEvent]]:
        async def op(conn: Conn) -> tuple[Run, bool, list[StoredEvent]]:
            if max_in_flight is not None:  # the user's row lock orders concurrent submissions
                if await conn.fetchval(USER_LOCK, run.owner_id) is None:
                    raise NotFound("User not found.")
                if run.idempotency_key is not None:
                    row = await conn.fetchrow(sql.RUN_BY_KEY, run.owner_id, run.idempotency_key)
                    if row is not None:  # a retry gets its run, whatever the count
                        return (await _runs_with_steps(conn, [row]))[0], False, []
                in_flight = await conn.fetchval(sql.RUNS_IN_FLIGHT, run.owner_id)
                check_runs_in_flight(in_flight, max_in_flight)
            try:
                inserted = await conn.fetchval(
                    sql.RUN_INSERT, *codec.run_values(run, time_as_text=False)
                )
            except asyncpg.ForeignKeyViolationError:
                raise NotFound("Project not found.") from None
            if inserted is None:  # a run with the same owner and idempotency key exists
                row = await conn.fetchrow(sql.RUN_BY_KEY, run.owner_id, run.idempotency_key)
                return (await _runs_with_steps(conn, [row]))[0], False, []
            await _upsert_steps(conn, run.steps)
            stored = await append_in(conn, events, utc_now())
            row = await conn.fetchrow(sql.RUN_BY_ID, run.id)
            return (await _runs_with_steps(conn, [row]))[0], True, stored

        return await self._db.run(op)

    async def get_run(self, run_id: str, owner_id: str | None = None) -> Run | None:
        async def op(conn: Conn) -> Run | None:
            row = await conn.fetchrow(sql.RUN_GET, run_id, owner_id)
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
                sql.RUN_LIST, owner_id, project_id, status_value, after, limit + 1
            )
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
        if_status: RunStatus | None = None,
        replace_steps: bool = False,
    ) -> list[StoredEvent]:
        guard = () if if_status is None else (RunStatus(if_status).value,)
        run_fields = None if run is None else dict(run.fields)
        if run_fields is not None and run_fields.get("status") == RunStatus.SUCCEEDED:
            run_fields.setdefault("error", None)  # drop a cancel request that came too late
        run_sets = (
            None if run_fields is None else codec.run_change_values(run_fields, time_as_text=False)
        )
        step_sets = [codec.step_change_values(s.fields, time_as_text=False) for s in steps]

        async def op(conn: Conn) -> list[StoredEvent]:
            if run is not None and run_sets:
                found = await conn.fetchval(
                    sql.run_update(run_sets, if_status=bool(guard)),
                    run.run_id,
                    *run_sets.values(),
                    *guard,
                )
                if found is None:
                    if guard:
                        raise RunStatusChanged(details={"run_id": run.run_id})
                    raise NotFound("Run not found.", {"run_id": run.run_id})
                if replace_steps:
                    await conn.execute(sql.STEPS_DELETE, run.run_id)
            try:
                await _upsert_steps(conn, new_steps)
            except asyncpg.ForeignKeyViolationError:
                raise NotFound("Run not found.") from None
            for change, sets in zip(steps, step_sets, strict=True):
                if not sets:
                    continue
                found = await conn.fetchval(
                    sql.step_update(sets), change.run_id, change.step_id, *sets.values()
                )
                if found is None:
                    raise NotFound("Step not found.", {"step_id": change.step_id})
            return await append_in(conn, events, utc_now())

        return await self._db.run(op)

    async def unfinished_runs(self, lease_expired_before: datetime | None) -> list[Run]:
        moment = None if lease_expired_before is None else aware(lease_expired_before)

        async def op(conn: Conn) -> list[Run]:
            return await _runs_with_steps(conn, await conn.fetch(sql.RUNS_UNFINISHED, moment))

        return await self._db.run(op, readonly=True)

    async def expired_approvals(self, now: datetime, limit: int) -> list[Run]:
        async def op(conn: Conn) -> list[Run]:
            rows = await conn.fetch(sql.RUNS_APPROVAL_EXPIRED, aware(now), limit)
            return await _runs_with_steps(conn, rows)

        return await self._db.run(op, readonly=True)

    async def claim_run(self, run_id: str, owner: str, expires_at: datetime) -> bool:
        async def op(conn: Conn) -> bool:
            claimed = await conn.fetchval(
                sql.RUN_CLAIM, run_id, owner, aware(expires_at), utc_now()
            )
            return claimed is not None

        return await self._db.run(op, transaction=False)

    async def renew_leases(self, owner: str, expires_at: datetime) -> None:
        async def op(conn: Conn) -> None:
            await conn.execute(sql.LEASES_RENEW, owner, aware(expires_at))

        await self._db.run(op, transaction=False)
