"""The ``Store`` protocol: every persistence operation stretto performs.

Two real implementations: ``server.store.sqlite.SqliteStore`` (sqlite3 in worker threads)
and ``server.store.postgres.PostgresStore`` (asyncpg through trio-asyncio). Most operations
are written once for both (``accounts``, ``files``, ``runs``; see ``server.store.program``).
One contract suite (``tests/store``) runs every operation against both.

Rules every backend follows:
- Ownership is checked in SQL: methods taking ``owner_id`` return ``None`` / raise
  ``NotFound`` for another user's resource, exactly as for a missing one.
- A change and its events commit in one transaction. Event ``seq`` numbers are assigned
  inside that transaction from ``projects.last_event_seq`` (gap-free per project).
  The returned ``StoredEvent`` list is what the caller publishes to the hub after commit.
- Driver errors are re-raised as ``server.errors`` types (``server.store.faults``):
  ``StoreUnavailable`` (503 ``not_ready``, retryable) when the database cannot answer,
  ``StoreCorrupt`` for a damaged file, ``StoreFailure`` for a rejected statement. No other
  exception class escapes a store call because of the database.
- Every call has a deadline (pool acquire plus query, ``db_timeout_s``); past it:
  ``StoreUnavailable``.
- Cursors are opaque strings produced by the backend for the same query.

Capabilities (asked, never inferred from the backend's name): ``single_process``,
``pool_usage()`` (every backend answers) and ``run_control()`` (cross-instance cancel,
PostgreSQL only; ``server.events.pgchannel.RunControl``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from server.events.model import NewEvent, StoredEvent
    from server.events.pgchannel import RunControl
    from server.store.models import (
        FileData,
        FileLimits,
        FileMeta,
        FileVersion,
        Page,
        Project,
        RefreshUse,
        Run,
        RunChange,
        RunFileSpan,
        RunStatus,
        StagedChange,
        StateWrite,
        Step,
        StepChange,
        User,
    )
    from server.vfs.writes import FileOp, FileWrite


class Store(Protocol):
    """Persistence for users, tokens, projects, files, runs, steps and the event log."""

    backend: str  # "sqlite" or "postgresql": for logs and metrics labels, never for branching
    single_process: bool
    """True when no other process can use the database (SQLite: one per data directory), so
    a lease another instance id holds at start belongs to a dead process."""

    # -- capabilities ------------------------------------------------------------------
    def pool_usage(self) -> tuple[int, int, int]:
        """(open connections, connections in use, maximum), right now, for metrics."""

    def run_control(self) -> RunControl | None:
        """Cross-instance cancel, or None where this process owns every run."""

    # -- lifecycle ---------------------------------------------------------------------
    async def migrate(self) -> list[int]:
        """Apply pending schema migrations; return the versions applied.

        Raises ``SchemaTooNew`` when the database holds a migration this binary lacks."""

    async def pending_migrations(self) -> list[int]:
        """Versions not yet applied (empty when the schema is current).

        Raises ``SchemaTooNew`` when the database holds a migration this binary lacks."""

    async def ping(self) -> None:
        """Round trip to the database; raises ``StoreUnavailable`` (``StoreCorrupt`` once a
        damaged file was seen)."""

    async def aclose(self) -> None: ...

    # -- users and refresh tokens ------------------------------------------------------
    async def create_user(self, email: str, password_hash: str | None, name: str | None) -> User:
        """Raises ``EmailTaken`` when the (lower-cased) email exists."""

    async def ensure_user(self, user_id: str, email: str, name: str | None) -> User:
        """Return the user with this id, creating it on first sight (external tokens)."""

    async def get_user(self, user_id: str) -> User | None: ...

    async def get_user_by_email(self, email: str) -> User | None:
        """Includes ``password_hash``."""

    async def create_refresh_token(
        self, token_id: str, user_id: str, family_id: str, expires_at: datetime
    ) -> None: ...

    async def use_refresh_token(self, token_id: str, now: datetime) -> RefreshUse:
        """Atomically mark a refresh token used.

        ``OK`` the first time; ``REUSED`` (and the whole family revoked) when it was used
        before; ``INVALID`` when unknown, expired or revoked.
        """

    async def revoke_refresh_family(self, family_id: str) -> None: ...

    async def revoke_refresh_token_family_of(self, token_id: str, user_id: str) -> None:
        """Logout: revoke the family the token belongs to, if it is that user's."""

    async def refresh_family_active(self, family_id: str, user_id: str, now: datetime) -> bool:
        """True while the user's family has an unrevoked, unexpired token: the session is
        alive and SSE tickets bound to it keep working. Used tokens count, so that the
        instant between a rotation's use and its successor's insert is no logout."""

    # -- projects ----------------------------------------------------------------------
    async def create_project(
        self, owner_id: str, name: str, description: str | None, *, max_projects: int | None = None
    ) -> Project:
        """Raises ``NotFound`` (no such user), ``RateLimited`` when the owner already owns
        ``max_projects`` (counted in the inserting transaction: no race)."""

    async def get_project(self, owner_id: str, project_id: str) -> Project | None: ...

    async def list_projects(
        self, owner_id: str, limit: int, cursor: str | None
    ) -> Page[Project]: ...

    async def update_project(
        self,
        owner_id: str,
        project_id: str,
        *,
        name: str | None,
        description: str | None,
        set_description: bool,
    ) -> tuple[Project, StoredEvent]:
        """Raises ``NotFound``. Appends ``project.updated``."""

    async def delete_project(self, owner_id: str, project_id: str) -> None:
        """Raises ``NotFound``. Cascades files, runs, steps and events."""

    async def project_owner(self, project_id: str) -> str | None:
        """Owner of a project, without an ownership check (internal use)."""

    # -- files -------------------------------------------------------------------------
    async def list_files(
        self, project_id: str, prefix: str, limit: int, cursor: str | None
    ) -> Page[FileMeta]: ...

    async def get_file(self, project_id: str, path: str) -> FileData | None: ...

    async def get_file_meta(self, project_id: str, path: str) -> FileMeta | None: ...

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
        run_id: str | None = None,
    ) -> tuple[FileMeta, bool, StoredEvent]:
        """Create or atomically replace; returns (meta, created, ``file.changed`` event).

        Every write keeps a version (``run_id``: the run that wrote it) and applies the
        history retention of ``limits``; kept versions count against the byte quota.

        Raises ``VersionMismatch`` when ``if_match`` is stale (or the file is missing),
        or when ``if_none_match_any`` and the file exists; ``TooLarge`` over a quota
        (the owner's total across projects included, counted in the same transaction).
        """

    async def put_files(
        self,
        project_id: str,
        files: Sequence[FileWrite],
        *,
        limits: FileLimits,
        run_id: str | None = None,
    ) -> list[tuple[FileMeta, bool, StoredEvent]]:
        """Write every file in one transaction (an import): all or none. Quotas are checked
        as the files accumulate; one ``file.changed`` event each, in order. Raises
        ``NotFound`` (project), ``TooLarge`` (quota)."""
        ...

    async def move_file(
        self,
        project_id: str,
        src: str,
        dst: str,
        *,
        if_match: int | None = None,
        run_id: str | None = None,
        limits: FileLimits | None = None,
    ) -> tuple[FileMeta, StoredEvent]:
        """Raises ``NotFound`` (no src), ``Conflict`` (dst exists), ``VersionMismatch``.
        History: src gets a deleted version, dst a new version (retention with ``limits``)."""

    async def delete_file(
        self,
        project_id: str,
        path: str,
        *,
        if_match: int | None = None,
        run_id: str | None = None,
        limits: FileLimits | None = None,
    ) -> StoredEvent:
        """Raises ``NotFound``, ``VersionMismatch``. Appends ``file.deleted``; the history
        keeps the old versions and a deleted one."""

    # -- file history ------------------------------------------------------------------
    async def list_file_versions(
        self, project_id: str, path: str, limit: int, cursor: str | None
    ) -> Page[FileVersion]:
        """The kept versions of a path (deleted ones included), newest first."""

    async def get_file_version(
        self, project_id: str, path: str, version: int
    ) -> tuple[FileVersion, bytes | None] | None:
        """One kept version and its bytes (None bytes: the path was deleted there)."""

    async def run_file_spans(self, project_id: str, run_id: str) -> list[RunFileSpan]:
        """Per path the run wrote, the first and last version it wrote, by path."""

    async def latest_file_versions(
        self, project_id: str, paths: Sequence[str]
    ) -> dict[str, int | None]:
        """The newest version number (a deleted one included) of each path; None: never."""

    async def apply_file_ops(
        self,
        project_id: str,
        ops: Sequence[FileOp],
        *,
        expected: Mapping[str, int | None],
        limits: FileLimits,
        run_id: str | None,
        staged_run: str | None = None,
        staged_paths: Sequence[str] = (),
    ) -> list[StoredEvent]:
        """One transaction: when every path in ``expected`` is still at its version (the
        newest, as ``latest_file_versions`` says), apply ``ops`` in order, one event each;
        otherwise raise ``Conflict`` with ``details.paths`` (the stale ones), nothing
        applied. A delete of a missing file raises ``NotFound``; quotas as ``put_files``.
        ``staged_paths`` of ``staged_run``'s changeset are dropped in the same transaction."""

    # -- review changesets -------------------------------------------------------------
    async def stage_change(
        self, run_id: str, project_id: str, change: StagedChange, *, limits: FileLimits
    ) -> None:
        """Put a path's new state in the run's changeset (``change.base_version`` is
        ignored: the project's newest version of the path when first staged is kept).
        Raises ``TooLarge`` when the changeset holds more paths or bytes than the project
        may (``max_files``, ``max_total_bytes``)."""

    async def get_staged(self, run_id: str, path: str) -> StagedChange | None: ...

    async def list_staged(self, run_id: str) -> list[StagedChange]:
        """The run's changeset, by path."""

    async def end_review(
        self, run_id: str, status: str, events: Sequence[NewEvent]
    ) -> list[StoredEvent] | None:
        """One transaction: a run still ``awaiting_review`` takes ``status``, its changeset is
        dropped, ``events`` are appended; None (nothing written) when it was not waiting."""

    # -- event log ---------------------------------------------------------------------
    async def append_events(self, events: Sequence[NewEvent]) -> list[StoredEvent]:
        """Append events (any projects) in one transaction."""

    async def events_after(self, project_id: str, after_seq: int, limit: int) -> list[StoredEvent]:
        """Retained events with ``seq > after_seq``, in order."""

    async def event_bounds(self, project_id: str) -> tuple[int, int]:
        """(first retained seq, last assigned seq); (last+1, last) when none retained."""

    async def trim_events(self, project_id: str, keep_last: int, older_than: datetime) -> int:
        """Delete events beyond the newest ``keep_last`` and older than ``older_than``.

        Only a prefix is ever deleted, so what remains stays gap-free.
        """

    # -- workflow runs -----------------------------------------------------------------
    async def create_run(
        self,
        run: Run,
        events: Sequence[NewEvent],
        *,
        max_in_flight: int | None = None,
        then: StateWrite | None = None,
    ) -> tuple[Run, bool, list[StoredEvent]]:
        """Insert a run with its steps. With ``run.idempotency_key`` set and a run of the same
        owner and key existing, return that one and ``created=False`` (no events).

        ``then``: a state change applied in the same transaction once the run is inserted
        (the run started with its first steps), its events appended after ``events``; the
        run returned is as it stands after it. Not applied to an existing run returned for
        a repeated key.

        Raises ``RateLimited`` when the owner already has ``max_in_flight`` unfinished runs
        (counted in the inserting transaction: no race, across instances); ``NotFound``
        when the project does not exist or is not the run owner's.
        """

    async def get_run(self, run_id: str, owner_id: str | None = None) -> Run | None:
        """The run with its steps; ``owner_id`` restricts it to that owner."""

    async def list_runs(
        self,
        owner_id: str,
        project_id: str | None,
        status: RunStatus | None,
        limit: int,
        cursor: str | None,
    ) -> Page[Run]:
        """Newest first, with steps."""

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
        """One transaction: update the run, insert/replace steps, update steps, append events.

        ``if_status``: the run update applies only while the run has that status, else
        nothing is written and ``RunStatusChanged`` is raised (of two concurrent conditional
        transitions exactly one wins). ``replace_steps``: the run's steps are deleted before
        ``new_steps`` go in (an edited plan)."""

    async def unfinished_runs(self, lease_expired_before: datetime | None) -> list[Run]:
        """Runs to execute: not finished, not awaiting approval, whose lease is empty or
        expired before the given time."""

    async def expired_approvals(self, now: datetime, limit: int) -> list[Run]:
        """Runs ``awaiting_approval`` whose approval deadline passed before ``now``."""

    async def claim_run(self, run_id: str, owner: str, expires_at: datetime) -> bool:
        """Take the run's lease if it is free, expired or already ours."""

    async def renew_leases(self, owner: str, expires_at: datetime) -> None: ...
