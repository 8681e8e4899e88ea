"""What both backends share: JSON, cursors, row decoding, event bodies and version checks.

Quota rules live in ``server.vfs.quota`` (pure); the backends call them inside the write.

Pure functions, no I/O. A backend hands rows (anything indexable by column name:
``sqlite3.Row``, ``asyncpg.Record``) to a ``RowDecoder``; the only dialect difference is
how a time comes back (RFC 3339 text on SQLite, ``datetime`` on PostgreSQL).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from server.errors import ValidationFailed, VersionMismatch
from server.events.model import EventType, StoredEvent, event_data
from server.store.models import (
    RUN_MUTABLE_FIELDS,
    STEP_MUTABLE_FIELDS,
    FileMeta,
    FileVersion,
    Project,
    Run,
    RunStatus,
    StagedChange,
    Step,
    StepStatus,
    User,
)
from server.timeutil import parse_rfc3339, rfc3339

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from server.events.model import NewEvent

Row = Any  # sqlite3.Row or asyncpg.Record: both index by column name

RUN_JSON_COLUMNS = frozenset({"intent", "plan", "options", "error", "metrics"})
RUN_TIME_COLUMNS = frozenset(
    {"created_at", "started_at", "finished_at", "lease_expires_at", "approved_at",
     "approval_expires_at"}
)  # fmt: skip
STEP_JSON_COLUMNS = frozenset({"args", "needs", "output", "error", "reads"})
STEP_TIME_COLUMNS = frozenset({"started_at", "finished_at"})
FINISHED_RUN_STATUSES = tuple(s.value for s in RunStatus if s.finished)

RUN_COLUMNS = (  # of the runs table; the lease is in run_leases (migration 5)
    "id", "project_id", "owner_id", "status", "prompt", "intent", "plan", "options", "error",
    "metrics", "created_at", "started_at", "finished_at", "idempotency_key", "retry_of",
    "approved_at", "approval_expires_at",
)  # fmt: skip
LEASE_FIELDS = frozenset({"lease_owner", "lease_expires_at"})
STEP_COLUMNS = (
    "run_id", "id", "position", "tool", "args", "needs", "status", "attempts", "output", "error",
    "started_at", "finished_at", "duration_ms", "queue_ms", "reads",
)  # fmt: skip


# -- JSON ------------------------------------------------------------------------------------
def dumps(value: Any) -> str:
    """Compact JSON text: what events carry and JSON columns hold."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def dumps_or_none(value: Any) -> str | None:
    return None if value is None else dumps(value)


def loads_or_none(text: str | None) -> Any:
    return None if text is None else json.loads(text)


# -- times on SQLite -------------------------------------------------------------------------
def time_text(moment: datetime | None) -> str | None:
    """SQLite's time encoding: fixed-width RFC 3339 UTC text (sorts as it compares)."""
    return None if moment is None else rfc3339(moment)


def aware(moment: datetime) -> datetime:
    """A datetime in UTC; naive values are taken as UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


# -- cursors ---------------------------------------------------------------------------------
def encode_cursor(key: str) -> str:
    """An opaque cursor for the last sort key of a page."""
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    """The sort key in a cursor; raises ``ValidationFailed`` for a malformed one."""
    if cursor is None or cursor == "":
        return None
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValidationFailed("The cursor is not valid.", {"cursor": "invalid cursor"}) from None


def page_cursor(keys: Sequence[str], limit: int) -> str | None:
    """Given up to ``limit + 1`` sort keys fetched, the next cursor (None on the last page)."""
    return encode_cursor(keys[limit - 1]) if len(keys) > limit else None


def int_cursor(cursor: str | None) -> int | None:
    """The integer sort key in a cursor (file versions); ``ValidationFailed`` when malformed."""
    key = decode_cursor(cursor)
    if key is None:
        return None
    if not (key.isascii() and key.isdigit()) or len(key) > 18:
        raise ValidationFailed("The cursor is not valid.", {"cursor": "invalid cursor"})
    return int(key)


def opt_bytes(row: Row) -> bytes | None:
    """A row's ``content``: None for a version at which the path stopped existing."""
    value = row["content"]
    return None if value is None else bytes(value)


# -- row decoding ----------------------------------------------------------------------------
class RowDecoder:
    """Turns rows into records. ``time`` decodes one time column (overridden per dialect)."""

    def time(self, value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            return aware(value)
        return parse_rfc3339(str(value))

    def req_time(self, value: Any) -> datetime:
        moment = self.time(value)
        assert moment is not None
        return moment

    def user(self, row: Row) -> User:
        return User(
            id=row["id"],
            email=row["email"],
            name=row["name"],
            created_at=self.req_time(row["created_at"]),
            password_hash=row["password_hash"],
        )

    def project(self, row: Row) -> Project:
        return Project(
            id=row["id"],
            owner_id=row["owner_id"],
            name=row["name"],
            description=row["description"],
            created_at=self.req_time(row["created_at"]),
            updated_at=self.req_time(row["updated_at"]),
        )

    def file_meta(self, row: Row) -> FileMeta:
        return FileMeta(
            project_id=row["project_id"],
            path=row["path"],
            size=int(row["size"]),
            version=int(row["version"]),
            sha256=row["sha256"],
            content_type=row["content_type"],
            updated_at=self.req_time(row["updated_at"]),
        )

    def file_version(self, row: Row) -> FileVersion:
        return FileVersion(
            path=row["path"],
            version=int(row["version"]),
            size=int(row["size"]),
            sha256=row["sha256"],
            content_type=row["content_type"],
            run_id=row["run_id"],
            created_at=self.req_time(row["created_at"]),
            deleted=bool(row["deleted"]),
        )

    def staged(self, row: Row) -> StagedChange:
        return StagedChange(
            path=row["path"],
            content=opt_bytes(row),
            size=int(row["size"]),
            sha256=row["sha256"],
            content_type=row["content_type"],
            base_version=None if row["base_version"] is None else int(row["base_version"]),
            moved_from=row["moved_from"],
            staged_at=self.req_time(row["staged_at"]),
        )

    def event(self, row: Row) -> StoredEvent:
        return StoredEvent(
            project_id=row["project_id"],
            seq=int(row["seq"]),
            type=row["type"],
            data=row["data"],
            created_at=self.req_time(row["created_at"]),
        )

    def step(self, row: Row) -> Step:
        return Step(
            run_id=row["run_id"],
            id=row["id"],
            position=int(row["position"]),
            tool=row["tool"],
            args=json.loads(row["args"]),
            needs=tuple(json.loads(row["needs"])),
            status=StepStatus(row["status"]),
            attempts=int(row["attempts"]),
            output=loads_or_none(row["output"]),
            error=loads_or_none(row["error"]),
            started_at=self.time(row["started_at"]),
            finished_at=self.time(row["finished_at"]),
            duration_ms=row["duration_ms"],
            queue_ms=row["queue_ms"],
            reads=loads_or_none(row["reads"]),
        )

    def runs(self, rows: Sequence[Row], step_rows: Iterable[Row]) -> list[Run]:
        """Runs of ``rows``, each with its steps from ``step_rows`` (rows of ``steps``)."""
        steps: dict[str, list[Step]] = {row["id"]: [] for row in rows}
        for row in step_rows:
            steps[row["run_id"]].append(self.step(row))
        return [self.run(row, steps[row["id"]]) for row in rows]

    def run(self, row: Row, steps: Sequence[Step] = ()) -> Run:
        return Run(
            id=row["id"],
            project_id=row["project_id"],
            owner_id=row["owner_id"],
            status=RunStatus(row["status"]),
            prompt=row["prompt"],
            intent=loads_or_none(row["intent"]),
            plan=loads_or_none(row["plan"]),
            options=loads_or_none(row["options"]) or {},
            error=loads_or_none(row["error"]),
            created_at=self.req_time(row["created_at"]),
            started_at=self.time(row["started_at"]),
            finished_at=self.time(row["finished_at"]),
            metrics=loads_or_none(row["metrics"]),
            idempotency_key=row["idempotency_key"],
            lease_owner=row["lease_owner"],
            lease_expires_at=self.time(row["lease_expires_at"]),
            steps=tuple(sorted(steps, key=lambda s: (s.position, s.id))),
            retry_of=row["retry_of"],
            approved_at=self.time(row["approved_at"]),
            approval_expires_at=self.time(row["approval_expires_at"]),
        )


# -- event seqs ------------------------------------------------------------------------------
def event_counts(events: Sequence[NewEvent]) -> dict[str, int]:
    """How many of ``events`` each project gets (the seqs to allocate), in first-seen order."""
    counts: dict[str, int] = {}
    for event in events:
        counts[event.project_id] = counts.get(event.project_id, 0) + 1
    return counts


def numbered(
    events: Sequence[NewEvent], first_seqs: Mapping[str, int], now: datetime
) -> list[StoredEvent]:
    """``events`` as stored: each project's numbered on from its first allocated seq."""
    next_seq = dict(first_seqs)
    stored: list[StoredEvent] = []
    for event in events:
        seq = next_seq[event.project_id]
        next_seq[event.project_id] = seq + 1
        stored.append(StoredEvent(event.project_id, seq, event.type, dumps(dict(event.data)), now))
    return stored


# -- encoding runs and steps for writing -----------------------------------------------------
def _encode(name: str, value: Any, json_cols: frozenset[str], time_cols: frozenset[str],
            time_as_text: bool) -> Any:  # fmt: skip
    if name in json_cols:
        return dumps_or_none(value)
    if name in time_cols:
        if value is None:
            return None
        return time_text(value) if time_as_text else aware(value)
    if name == "needs":
        return dumps(list(value))
    if isinstance(value, RunStatus | StepStatus):
        return value.value
    return value


def run_values(run: Run, *, time_as_text: bool) -> list[Any]:
    """Column values of ``RUN_COLUMNS`` for an insert."""
    return [
        _encode(c, getattr(run, c), RUN_JSON_COLUMNS, RUN_TIME_COLUMNS, time_as_text)
        for c in RUN_COLUMNS
    ]


def step_values(step: Step, *, time_as_text: bool) -> list[Any]:
    """Column values of ``STEP_COLUMNS`` for an insert."""
    values = []
    for c in STEP_COLUMNS:
        value = getattr(step, c)
        if c == "needs":
            values.append(dumps(list(value)))
        elif c == "args":
            values.append(dumps(dict(value)))
        else:
            values.append(_encode(c, value, STEP_JSON_COLUMNS, STEP_TIME_COLUMNS, time_as_text))
    return values


def run_change_values(fields: Mapping[str, Any], *, time_as_text: bool) -> dict[str, Any]:
    """Encoded columns of a ``RunChange``; raises ``ValueError`` for a field it may not set."""
    unknown = set(fields) - RUN_MUTABLE_FIELDS
    if unknown:
        raise ValueError(f"RunChange cannot set {sorted(unknown)}")
    return {
        name: _encode(name, value, RUN_JSON_COLUMNS, RUN_TIME_COLUMNS, time_as_text)
        for name, value in fields.items()
    }


def step_change_values(fields: Mapping[str, Any], *, time_as_text: bool) -> dict[str, Any]:
    """Encoded columns of a ``StepChange``; raises ``ValueError`` for a field it may not set."""
    unknown = set(fields) - STEP_MUTABLE_FIELDS
    if unknown:
        raise ValueError(f"StepChange cannot set {sorted(unknown)}")
    return {
        name: _encode(name, value, STEP_JSON_COLUMNS, STEP_TIME_COLUMNS, time_as_text)
        for name, value in fields.items()
    }


# -- write rules -----------------------------------------------------------------------------
def normalize_email(email: str) -> str:
    return email.strip().lower()


def check_preconditions(
    current_version: int | None, if_match: int | None, if_none_match_any: bool
) -> None:
    """``If-Match`` / ``If-None-Match: *`` against the stored version (None: no file)."""
    if if_none_match_any and current_version is not None:
        raise VersionMismatch("The file already exists.", {"current_version": current_version})
    if if_match is not None and current_version != if_match:
        raise VersionMismatch(
            "The file changed: its version does not match.",
            {"expected_version": if_match, "current_version": current_version},
        )


# -- event bodies the store builds itself ----------------------------------------------------
def _run_field(run_id: str | None) -> dict[str, Any]:
    return {} if run_id is None else {"run_id": run_id}


def file_changed_data(
    meta: FileMeta, created: bool, at: datetime, run_id: str | None = None
) -> dict[str, Any]:
    return event_data(
        EventType.FILE_CHANGED,
        meta.project_id,
        at=rfc3339(at),
        path=meta.path,
        size=meta.size,
        version=meta.version,
        sha256=meta.sha256,
        content_type=meta.content_type,
        created=created,
        **_run_field(run_id),
    )


def file_moved_data(
    meta: FileMeta, src: str, at: datetime, run_id: str | None = None
) -> dict[str, Any]:
    fields = {"from": src, "to": meta.path, "version": meta.version, **_run_field(run_id)}
    return event_data(EventType.FILE_MOVED, meta.project_id, at=rfc3339(at), **fields)


def file_deleted_data(
    project_id: str, path: str, at: datetime, run_id: str | None = None
) -> dict[str, Any]:
    fields = {"path": path, **_run_field(run_id)}
    return event_data(EventType.FILE_DELETED, project_id, at=rfc3339(at), **fields)


def project_updated_data(project: Project, at: datetime) -> dict[str, Any]:
    return event_data(
        EventType.PROJECT_UPDATED,
        project.id,
        at=rfc3339(at),
        project={
            "id": project.id,
            "name": project.name,
            "description": project.description,
            "created_at": rfc3339(project.created_at),
            "updated_at": rfc3339(project.updated_at),
        },
    )
