"""``RunStore``: the workflow run and step operations of the ``Store``, written once for both
backends (mixed into ``SqliteStore`` and ``PostgresStore``).

Each method is one unit of work: a program (``server.store.program``) that the backend runs
with ``_unit``. Limits are counted inside the inserting transaction (``LockUser`` orders one
user's concurrent submissions on PostgreSQL; SQLite has one writer). What each method raises
is in ``server.store.protocol``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from server.errors import NotFound, RunStatusChanged
from server.store import codec, sql
from server.store.codec import decode_cursor, page_cursor
from server.store.limits import check_runs_in_flight
from server.store.models import Page, Run, RunChange, RunStatus, StateWrite, Step, StepChange
from server.store.program import (
    Access,
    Append,
    LockUser,
    RunsWithSteps,
    UnitRunner,
    execute,
    many,
    row,
    rows,
    value,
)
from server.timeutil import utc_now

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from server.events.model import NewEvent, StoredEvent
    from server.store.program import Program


def _with_steps(found: Sequence[Any]) -> Program[list[Run]]:
    runs: list[Run] = yield RunsWithSteps(found)
    return runs


def _one_with_steps(found: Any) -> Program[Run]:
    [run] = yield from _with_steps([found])
    return run


def _write_lease(run_id: str, fields: dict[str, Any]) -> Program[None]:
    """Apply a run change's lease fields (encoded) to the run's ``run_leases`` row."""
    if "lease_owner" in fields and fields["lease_owner"] is None:
        yield execute(sql.LEASE_DROP, run_id)
    elif "lease_owner" in fields:
        expires = fields.get("lease_expires_at")
        yield execute(sql.LEASE_SET, run_id, fields["lease_owner"], expires)
    elif "lease_expires_at" in fields:
        yield execute(sql.LEASE_EXPIRES, run_id, fields["lease_expires_at"])


def _upsert_steps(steps: Sequence[Step], missing: str | None = None) -> Program[None]:
    if steps:
        yield many(sql.STEP_UPSERT, [codec.step_values(s, time_as_text=False) for s in steps],
                   missing)  # fmt: skip


class _Encoded:
    """A run state change encoded for the statements (outside the unit: pure work)."""

    __slots__ = ("guard", "lease", "run", "run_sets", "step_sets", "steps")

    def __init__(
        self, run: RunChange | None, steps: Sequence[StepChange], if_status: RunStatus | None
    ) -> None:
        self.run, self.steps = run, steps
        self.guard = () if if_status is None else (RunStatus(if_status).value,)
        run_fields = None if run is None else dict(run.fields)
        if run_fields is not None and run_fields.get("status") == RunStatus.SUCCEEDED:
            run_fields.setdefault("error", None)  # drop a cancel request that came too late
        self.run_sets = (
            {} if run_fields is None else codec.run_change_values(run_fields, time_as_text=False)
        )
        lease_keys = codec.LEASE_FIELDS & self.run_sets.keys()
        self.lease = {k: self.run_sets.pop(k) for k in lease_keys}  # the run_leases row
        self.step_sets = [codec.step_change_values(s.fields, time_as_text=False) for s in steps]


def _apply_state(
    change: _Encoded, new_steps: Sequence[Step] = (), replace_steps: bool = False
) -> Program[None]:
    """Update the run (guarded), insert/replace steps, update steps: the writes of
    ``write_run_state`` before its events."""
    run, run_sets, guard = change.run, change.run_sets, change.guard
    if run is not None and (run_sets or change.lease):
        statement = sql.run_update(run_sets, if_status=bool(guard))
        if (yield value(statement, run.run_id, *run_sets.values(), *guard)) is None:
            if guard:
                raise RunStatusChanged(details={"run_id": run.run_id})
            raise NotFound("Run not found.", {"run_id": run.run_id})
        yield from _write_lease(run.run_id, change.lease)
        if replace_steps:
            yield execute(sql.STEPS_DELETE, run.run_id)
    yield from _upsert_steps(new_steps, "Run not found.")
    for step_change, sets in zip(change.steps, change.step_sets, strict=True):
        if not sets:
            continue
        statement = sql.step_update(sets)
        found = yield value(statement, step_change.run_id, step_change.step_id, *sets.values())
        if found is None:
            raise NotFound("Step not found.", {"step_id": step_change.step_id})


class RunStore(UnitRunner):
    """Run operations of the ``Store`` protocol; the backend provides ``_unit``."""

    async def create_run(
        self,
        run: Run,
        events: Sequence[NewEvent],
        *,
        max_in_flight: int | None = None,
        then: StateWrite | None = None,
    ) -> tuple[Run, bool, list[StoredEvent]]:
        started = None if then is None else _Encoded(then.run, then.steps, None)

        def program() -> Program[tuple[Run, bool, list[StoredEvent]]]:
            if (yield value(sql.PROJECT_OWNER, run.project_id)) != run.owner_id:
                raise NotFound("No such project.")  # none, or another user's
            if max_in_flight is not None:
                yield LockUser(run.owner_id)
                if run.idempotency_key is not None:
                    found = yield row(sql.RUN_BY_KEY, run.owner_id, run.idempotency_key)
                    if found is not None:  # a retry gets its run, whatever the count
                        return (yield from _one_with_steps(found)), False, []
                in_flight = yield value(sql.RUNS_IN_FLIGHT, run.owner_id)
                check_runs_in_flight(int(in_flight), max_in_flight)
            values = codec.run_values(run, time_as_text=False)
            inserted = yield value(sql.RUN_INSERT, *values, missing="Project not found.")
            if inserted is None:  # a run with the same owner and idempotency key exists
                found = yield row(sql.RUN_BY_KEY, run.owner_id, run.idempotency_key)
                return (yield from _one_with_steps(found)), False, []
            if run.lease_owner is not None:
                lease = {"lease_owner": run.lease_owner, "lease_expires_at": run.lease_expires_at}
                yield from _write_lease(run.id, lease)
            yield from _upsert_steps(run.steps)
            appended = list(events)
            if started is not None and then is not None:
                yield from _apply_state(started, then.new_steps)
                appended += then.events
            stored: list[StoredEvent] = yield Append(appended, utc_now())
            created = yield from _one_with_steps((yield row(sql.RUN_BY_ID, run.id)))
            return created, True, stored

        return await self._unit(program, Access.WRITE)

    async def get_run(self, run_id: str, owner_id: str | None = None) -> Run | None:
        def program() -> Program[Run | None]:
            found = yield row(sql.RUN_GET, run_id, owner_id)
            return None if found is None else (yield from _one_with_steps(found))

        return await self._unit(program, Access.SNAPSHOT)

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

        def program() -> Program[Page[Run]]:
            found = yield rows(sql.RUN_LIST, owner_id, project_id, status_value, after, limit + 1)
            items = yield from _with_steps(found[:limit])
            return Page(items, page_cursor([r["id"] for r in found], limit))

        return await self._unit(program, Access.SNAPSHOT)

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
        change = _Encoded(run, steps, if_status)

        def program() -> Program[list[StoredEvent]]:
            yield from _apply_state(change, new_steps, replace_steps)
            stored: list[StoredEvent] = yield Append(events, utc_now())
            return stored

        return await self._unit(program, Access.WRITE)

    async def unfinished_runs(self, lease_expired_before: datetime | None) -> list[Run]:
        def program() -> Program[list[Run]]:
            found = yield rows(sql.RUNS_UNFINISHED, lease_expired_before)
            return (yield from _with_steps(found))

        return await self._unit(program, Access.SNAPSHOT)

    async def expired_approvals(self, now: datetime, limit: int) -> list[Run]:
        def program() -> Program[list[Run]]:
            found = yield rows(sql.RUNS_APPROVAL_EXPIRED, now, limit)
            return (yield from _with_steps(found))

        return await self._unit(program, Access.SNAPSHOT)

    async def claim_run(self, run_id: str, owner: str, expires_at: datetime) -> bool:
        def program() -> Program[bool]:
            claimed = yield value(sql.RUN_CLAIM, run_id, owner, expires_at, utc_now())
            return claimed is not None

        return await self._unit(program, Access.WRITE_ONE)

    async def renew_leases(self, owner: str, expires_at: datetime) -> None:
        def program() -> Program[None]:
            yield execute(sql.LEASES_RENEW, owner, expires_at)

        await self._unit(program, Access.WRITE_ONE)
