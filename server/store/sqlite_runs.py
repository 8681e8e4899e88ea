"""The SQLite side of the event log and of workflow runs (part of ``SqliteStore``).

``append_in`` assigns gap-free per-project seqs inside the caller's write transaction
(writes are serialized, so ``projects.last_event_seq`` is exact). ``SqliteRuns`` holds the
run and step operations of the ``Store`` protocol; ``SqliteStore`` inherits them.
Statements come from ``server.store.sql`` (shared with PostgreSQL) unless noted.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from server.errors import NotFound, RunStatusChanged
from server.events.model import StoredEvent
from server.store import codec, sql
from server.store.codec import decode_cursor, page_cursor, time_text
from server.store.limits import check_runs_in_flight
from server.store.models import Page, Run, RunChange, RunStatus, Step, StepChange
from server.store.program import Append, Call, Reserve
from server.timeutil import utc_now

if TYPE_CHECKING:
    from collections.abc import Sequence

    from server.events.model import NewEvent
    from server.store.program import Program, Request
    from server.store.sqlite_db import SqliteDatabase

Conn = sqlite3.Connection
DEC = codec.RowDecoder()
T = TypeVar("T")


def q(conn: Conn, statement: str, *args: Any) -> sqlite3.Cursor:
    """Run a shared statement (``server.store.sql``) on SQLite."""
    return conn.execute(sql.sqlite(statement), args)


def drive(conn: Conn, program: Program[T]) -> T:
    """Run a program (``server.store.program``) in the caller's transaction on SQLite."""
    answer: Any = None
    try:
        while True:
            try:
                request = program.send(answer)
            except StopIteration as done:
                result: T = done.value
                return result
            answer = _answer(conn, request)
    finally:
        program.close()


def _answer(conn: Conn, request: Request) -> Any:
    if isinstance(request, Call):
        args = [time_text(a) if isinstance(a, datetime) else a for a in request.args]
        cursor = conn.execute(sql.sqlite(request.statement), args)
        if request.fetch == "rows":
            return cursor.fetchall()
        if request.fetch == "none":
            return None
        found = cursor.fetchone()
        return found if request.fetch == "row" or found is None else found[0]
    if isinstance(request, Reserve):  # one writer: seqs are taken at the append
        if q(conn, sql.PROJECT_OWNER, request.project_id).fetchone() is None:
            raise NotFound("Project not found.")
        return None
    if isinstance(request, Append):
        return append_in(conn, request.events, request.now)
    return _runs_with_steps(conn, request.rows)


def append_in(conn: Conn, events: Sequence[NewEvent], now: datetime) -> list[StoredEvent]:
    """Assign gap-free seqs per project and insert; raises ``NotFound`` for a missing project."""
    counts: dict[str, int] = {}
    for event in events:
        counts[event.project_id] = counts.get(event.project_id, 0) + 1
    next_seq: dict[str, int] = {}
    for project_id, n in counts.items():
        rows = conn.execute(  # SQLite only: PostgreSQL's also notifies
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


def _runs_with_steps(conn: Conn, rows: Sequence[sqlite3.Row]) -> list[Run]:
    run_ids = [row["id"] for row in rows]
    steps: dict[str, list[Step]] = {run_id: [] for run_id in run_ids}
    if run_ids:
        marks = ", ".join("?" for _ in run_ids)
        for row in conn.execute(  # SQLite only: PostgreSQL takes an array (= ANY)
            f"SELECT * FROM steps WHERE run_id IN ({marks}) ORDER BY run_id, position, id",
            run_ids,
        ):
            steps[row["run_id"]].append(DEC.step(row))
    return [DEC.run(row, steps[row["id"]]) for row in rows]


def _upsert_steps(conn: Conn, steps: Sequence[Step]) -> None:
    if steps:
        conn.executemany(
            sql.sqlite(sql.STEP_UPSERT), [codec.step_values(s, time_as_text=True) for s in steps]
        )


class SqliteRuns:
    """Run and step operations of ``SqliteStore`` (see ``server.store.protocol``)."""

    _db: SqliteDatabase

    async def create_run(
        self, run: Run, events: Sequence[NewEvent], *, max_in_flight: int | None = None
    ) -> tuple[Run, bool, list[StoredEvent]]:
        def op(conn: Conn) -> tuple[Run, bool, list[StoredEvent]]:
            if max_in_flight is not None:  # one writer: the count holds until the insert
                if run.idempotency_key is not None:
                    row = q(conn, sql.RUN_BY_KEY, run.owner_id, run.idempotency_key).fetchone()
                    if row is not None:  # a retry gets its run, whatever the count
                        return _runs_with_steps(conn, [row])[0], False, []
                in_flight = int(q(conn, sql.RUNS_IN_FLIGHT, run.owner_id).fetchone()[0])
                check_runs_in_flight(in_flight, max_in_flight)
            try:
                inserted = q(conn, sql.RUN_INSERT, *codec.run_values(run, time_as_text=True))
                created = inserted.fetchone() is not None
            except sqlite3.IntegrityError:
                raise NotFound("Project not found.") from None
            if not created:  # a run with the same owner and idempotency key exists
                row = q(conn, sql.RUN_BY_KEY, run.owner_id, run.idempotency_key).fetchone()
                return _runs_with_steps(conn, [row])[0], False, []
            _upsert_steps(conn, run.steps)
            stored = append_in(conn, events, utc_now())
            row = q(conn, sql.RUN_BY_ID, run.id).fetchone()
            return _runs_with_steps(conn, [row])[0], True, stored

        return await self._db.write(op)

    async def get_run(self, run_id: str, owner_id: str | None = None) -> Run | None:
        def op(conn: Conn) -> Run | None:
            row = q(conn, sql.RUN_GET, run_id, owner_id).fetchone()
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
            rows = q(conn, sql.RUN_LIST, owner_id, project_id, status_value, after, limit + 1)
            found = rows.fetchall()
            return Page(
                _runs_with_steps(conn, found[:limit]), page_cursor([r["id"] for r in found], limit)
            )

        return await self._db.read(op)

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
        run_sets = None if run is None else codec.run_change_values(run.fields, time_as_text=True)
        step_sets = [codec.step_change_values(s.fields, time_as_text=True) for s in steps]
        guard = () if if_status is None else (RunStatus(if_status).value,)

        def op(conn: Conn) -> list[StoredEvent]:
            if run is not None and run_sets:
                statement = sql.run_update(run_sets, if_status=bool(guard))
                found = q(conn, statement, run.run_id, *run_sets.values(), *guard)
                if found.fetchone() is None:
                    if guard:
                        raise RunStatusChanged(details={"run_id": run.run_id})
                    raise NotFound("Run not found.", {"run_id": run.run_id})
                if replace_steps:
                    q(conn, sql.STEPS_DELETE, run.run_id)
            try:
                _upsert_steps(conn, new_steps)
            except sqlite3.IntegrityError:
                raise NotFound("Run not found.") from None
            for change, sets in zip(steps, step_sets, strict=True):
                if not sets:
                    continue
                found = q(conn, sql.step_update(sets), change.run_id, change.step_id,
                          *sets.values())  # fmt: skip
                if found.fetchone() is None:
                    raise NotFound("Step not found.", {"step_id": change.step_id})
            return append_in(conn, events, utc_now())

        return await self._db.write(op)

    async def unfinished_runs(self, lease_expired_before: datetime | None) -> list[Run]:
        moment = time_text(lease_expired_before)

        def op(conn: Conn) -> list[Run]:
            return _runs_with_steps(conn, q(conn, sql.RUNS_UNFINISHED, moment).fetchall())

        return await self._db.read(op)

    async def expired_approvals(self, now: datetime, limit: int) -> list[Run]:
        moment = time_text(now)

        def op(conn: Conn) -> list[Run]:
            rows = q(conn, sql.RUNS_APPROVAL_EXPIRED, moment, limit).fetchall()
            return _runs_with_steps(conn, rows)

        return await self._db.read(op)

    async def claim_run(self, run_id: str, owner: str, expires_at: datetime) -> bool:
        now = time_text(utc_now())

        def op(conn: Conn) -> bool:
            claimed = q(conn, sql.RUN_CLAIM, run_id, owner, time_text(expires_at), now)
            return claimed.fetchone() is not None

        return await self._db.write(op)

    async def renew_leases(self, owner: str, expires_at: datetime) -> None:
        await self._db.write(
            lambda conn: q(conn, sql.LEASES_RENEW, owner, time_text(expires_at)).fetchall()
        )
