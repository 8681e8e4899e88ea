"""The SQLite driver of programs (``server.store.program``) and the event log's appends.

``drive`` runs a program inside the caller's transaction (in the worker thread): shared
statements in SQLite's spelling, times as RFC 3339 text. ``append_in`` assigns gap-free
per-project seqs inside the write transaction (writes are serialized, so
``projects.last_event_seq`` is exact). Statements come from ``server.store.sql`` (shared
with PostgreSQL) unless noted.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from server.errors import NotFound
from server.store import codec, sql
from server.store.codec import time_text
from server.store.program import Append, Call, Done, LockUser, Reserve, step

if TYPE_CHECKING:
    from collections.abc import Sequence

    from server.events.model import NewEvent, StoredEvent
    from server.store.models import Run
    from server.store.program import Program, Request

Conn = sqlite3.Connection
DEC = codec.RowDecoder()
T = TypeVar("T")


def q(conn: Conn, statement: str, *args: Any) -> sqlite3.Cursor:
    """Run a shared statement (``server.store.sql``) on SQLite."""
    return conn.execute(sql.sqlite(statement), args)


def drive(conn: Conn, program: Program[T]) -> T:
    """Run a program (``server.store.program``) in the caller's transaction on SQLite."""
    with closing(program):
        request = step(program, None)
        while not isinstance(request, Done):
            request = step(program, _answer(conn, request))
    return request.value


def _encoded(args: Sequence[Any]) -> list[Any]:
    return [time_text(a) if isinstance(a, datetime) else a for a in args]


def _call(conn: Conn, call: Call) -> Any:
    statement = sql.sqlite(call.statement)
    if call.fetch == "many":
        conn.executemany(statement, [_encoded(args) for args in call.args])
        return None
    cursor = conn.execute(statement, _encoded(call.args))
    if call.fetch == "rows":
        return cursor.fetchall()
    if call.fetch == "none":
        return None
    found = cursor.fetchone()
    return found if call.fetch == "row" or found is None else found[0]


def _answer(conn: Conn, request: Request) -> Any:
    if isinstance(request, Call):
        if request.missing is None:
            return _call(conn, request)
        try:
            return _call(conn, request)
        except sqlite3.IntegrityError:  # a foreign key (SQLite does not say which error)
            raise NotFound(request.missing) from None
    if isinstance(request, LockUser):  # one writer: the counts hold until the insert
        return None
    if isinstance(request, Reserve):  # one writer: seqs are taken at the append
        if q(conn, sql.PROJECT_OWNER, request.project_id).fetchone() is None:
            raise NotFound("Project not found.")
        return None
    if isinstance(request, Append):
        return append_in(conn, request.events, request.now)
    return _runs_with_steps(conn, request.rows)


def append_in(conn: Conn, events: Sequence[NewEvent], now: datetime) -> list[StoredEvent]:
    """Assign gap-free seqs per project and insert; raises ``NotFound`` for a missing project."""
    next_seq: dict[str, int] = {}
    for project_id, n in codec.event_counts(events).items():
        rows = conn.execute(  # SQLite only: PostgreSQL's also notifies
            "UPDATE projects SET last_event_seq = last_event_seq + ? WHERE id = ? "
            "RETURNING last_event_seq",
            (n, project_id),
        ).fetchall()
        if not rows:
            raise NotFound("Project not found.", {"project_id": project_id})
        next_seq[project_id] = int(rows[0][0]) - n + 1
    stored = codec.numbered(events, next_seq, now)
    conn.executemany(
        "INSERT INTO events (project_id, seq, type, data, created_at) VALUES (?, ?, ?, ?, ?)",
        [(e.project_id, e.seq, e.type, e.data, time_text(now)) for e in stored],
    )
    return stored


def _runs_with_steps(conn: Conn, rows: Sequence[sqlite3.Row]) -> list[Run]:
    run_ids = [row["id"] for row in rows]
    if not run_ids:
        return []
    marks = ", ".join("?" for _ in run_ids)
    step_rows = conn.execute(  # SQLite only: PostgreSQL takes an array (= ANY)
        f"SELECT * FROM steps WHERE run_id IN ({marks}) ORDER BY run_id, position, id", run_ids
    )
    return DEC.runs(rows, step_rows)
