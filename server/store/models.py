"""Records the store reads and writes. Frozen, typed, free of I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Generic, TypedDict, TypeVar

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from server.events.model import NewEvent

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    name: str | None
    created_at: datetime
    password_hash: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    owner_id: str
    name: str
    description: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class FileMeta:
    project_id: str
    path: str
    size: int
    version: int
    sha256: str
    content_type: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class FileData:
    meta: FileMeta
    content: bytes


@dataclass(frozen=True, slots=True)
class FileLimits:
    """Quotas checked inside the write transaction."""

    max_file_bytes: int
    max_files: int
    max_total_bytes: int
    max_user_bytes: int | None = None  # across all the owner's projects
    history_versions: int = 20
    """Versions kept per path, the current one included (file history retention)."""
    history_days: float = 30.0
    """Older versions than this are dropped (the newest state of a path is always kept)."""


@dataclass(frozen=True, slots=True)
class FileVersion:
    """One state of a path in the file history; ``deleted``: the path stopped existing."""

    path: str
    version: int
    size: int
    sha256: str | None
    content_type: str | None
    run_id: str | None
    created_at: datetime
    deleted: bool


@dataclass(frozen=True, slots=True)
class StagedChange:
    """A path's state in a review run's changeset (``content`` None: deleted)."""

    path: str
    content: bytes | None
    size: int
    sha256: str | None
    content_type: str | None
    base_version: int | None
    """The project's newest version of the path when the run first staged it."""
    moved_from: str | None
    staged_at: datetime


@dataclass(frozen=True, slots=True)
class RunFileSpan:
    """The versions a run wrote at one path: its first and its last."""

    path: str
    first_version: int
    last_version: int


class RefreshOutcome(StrEnum):
    OK = "ok"
    REUSED = "reused"  # already used: the whole family is now revoked
    INVALID = "invalid"  # unknown, expired or revoked


@dataclass(frozen=True, slots=True)
class RefreshUse:
    outcome: RefreshOutcome
    user_id: str | None = None
    family_id: str | None = None


class RunStatus(StrEnum):
    PENDING = "pending"
    PLANNING = "planning"
    AWAITING_APPROVAL = "awaiting_approval"  # planned; waits for POST .../approve or reject
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    AWAITING_REVIEW = "awaiting_review"
    """Its steps succeeded; its file changes wait to be applied or discarded."""

    @property
    def finished(self) -> bool:
        """No executor works on it (awaiting review included: nothing to resume)."""
        return self in (
            RunStatus.SUCCEEDED,
            RunStatus.FAILED,
            RunStatus.CANCELLED,
            RunStatus.AWAITING_REVIEW,
        )


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

    @property
    def finished(self) -> bool:
        return self not in (StepStatus.PENDING, StepStatus.RUNNING)


@dataclass(frozen=True, slots=True)
class Step:
    run_id: str
    id: str
    position: int  # order in the plan, for stable listing
    tool: str
    args: Mapping[str, Any]
    needs: tuple[str, ...]
    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    output: Any = None
    error: Mapping[str, Any] | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: float | None = None
    queue_ms: float | None = None
    # The files the step read and wrote (``workflow.file_log``), checked before a retry
    # reuses its output: ``{"files": [{"path", "version", "sha256", "op"}], "complete"}``.
    reads: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Run:
    id: str
    project_id: str
    owner_id: str
    status: RunStatus
    prompt: str | None
    intent: Mapping[str, Any] | None
    plan: Mapping[str, Any] | None
    options: Mapping[str, Any]
    error: Mapping[str, Any] | None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    metrics: Mapping[str, Any] | None = None
    idempotency_key: str | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    steps: tuple[Step, ...] = ()
    retry_of: str | None = None  # the failed/cancelled run this one retries
    approved_at: datetime | None = None  # option approval "plan": when the plan was approved
    approval_expires_at: datetime | None = None  # while awaiting_approval: the deadline


class RunFields(TypedDict, total=False):
    """The columns a ``RunChange`` may set (any subset)."""

    status: RunStatus
    intent: Mapping[str, Any] | None
    plan: Mapping[str, Any] | None
    error: Mapping[str, Any] | None
    started_at: datetime | None
    finished_at: datetime | None
    metrics: Mapping[str, Any] | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    approved_at: datetime | None
    approval_expires_at: datetime | None


class StepFields(TypedDict, total=False):
    """The columns a ``StepChange`` may set (any subset)."""

    status: StepStatus
    attempts: int
    args: Mapping[str, Any]  # a fan-out item reset on resume
    output: Any
    error: Mapping[str, Any] | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    queue_ms: float | None
    reads: Mapping[str, Any] | None


RUN_MUTABLE_FIELDS = frozenset(RunFields.__annotations__)
STEP_MUTABLE_FIELDS = frozenset(StepFields.__annotations__)


# ``fields`` is meant to be ``RunFields`` / ``StepFields``; it stays a Mapping until the
# executor's batch writer builds the typed dicts (the store checks the keys either way).
@dataclass(frozen=True, slots=True)
class RunChange:
    run_id: str
    fields: RunFields


@dataclass(frozen=True, slots=True)
class StepChange:
    run_id: str
    step_id: str
    fields: StepFields


@dataclass(frozen=True, slots=True)
class StateWrite:
    """A ``write_run_state`` (without its conditions) carried into another unit's
    transaction: ``create_run``'s ``then``, so a run is inserted already started."""

    run: RunChange | None = None
    new_steps: Sequence[Step] = ()
    steps: Sequence[StepChange] = ()
    events: Sequence[NewEvent] = ()


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None
