"""Test-only parts for the workflow engine: an in-memory store of runs, a recording
publisher and tool doubles. The store keeps the Store protocol's rules that the executor
relies on (one atomic write per call, gap-free event seq per project) without threads, so
``MockClock(autojump_threshold=0)`` measures exactly what the executor does."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

import trio

from server.config import Settings
from server.errors import NotFound, RunStatusChanged, ToolError
from server.events.model import NewEvent, StoredEvent
from server.store.models import (
    RUN_MUTABLE_FIELDS,
    STEP_MUTABLE_FIELDS,
    Page,
    Project,
    Run,
    RunChange,
    RunStatus,
    StateWrite,
    Step,
    StepChange,
)
from server.timeutil import utc_now
from server.workflow.tools.defaults import default_registry
from server.workflow.tools.registry import Tool, ToolContext, ToolRegistry

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime


class MemoryRunStore:
    """The run-related part of the Store protocol, in memory."""

    backend = "memory"
    single_process = False

    def run_control(self) -> None:
        return None  # no cross-instance cancel

    def __init__(self) -> None:
        self.projects: dict[str, Project] = {}
        self.runs: dict[str, Run] = {}
        self.events: list[StoredEvent] = []
        self._seq: dict[str, int] = {}
        self.writes = 0

    def add_project(self, owner_id: str, project_id: str = "p1") -> Project:
        now = utc_now()
        project = Project(project_id, owner_id, "test", None, now, now)
        self.projects[project_id] = project
        return project

    async def get_project(self, owner_id: str, project_id: str) -> Project | None:
        await trio.lowlevel.checkpoint()
        project = self.projects.get(project_id)
        return project if project and project.owner_id == owner_id else None

    def _append(self, events: Sequence[NewEvent]) -> list[StoredEvent]:
        out = []
        for event in events:
            seq = self._seq.get(event.project_id, 0) + 1
            self._seq[event.project_id] = seq
            stored = StoredEvent(
                event.project_id, seq, event.type, json.dumps(event.data), utc_now()
            )
            self.events.append(stored)
            out.append(stored)
        return out

    async def create_run(
        self,
        run: Run,
        events: Sequence[NewEvent],
        *,
        max_in_flight: int | None = None,
        then: StateWrite | None = None,
    ) -> tuple[Run, bool, list[StoredEvent]]:
        await trio.lowlevel.checkpoint()
        project = self.projects.get(run.project_id)
        if project is None or project.owner_id != run.owner_id:
            raise NotFound("No such project.")
        if run.idempotency_key:
            for existing in self.runs.values():
                if (
                    existing.owner_id == run.owner_id
                    and existing.idempotency_key == run.idempotency_key
                ):
                    return existing, False, []
        self.runs[run.id] = run
        if then is None:
            return run, True, self._append(events)
        stored = self._append(events)
        # One transaction with the insert: not a ``write_run_state`` (whose faults the
        # doubles built on this one inject).
        stored += await MemoryRunStore.write_run_state(
            self, run=then.run, new_steps=then.new_steps, steps=then.steps, events=then.events
        )
        return self.runs[run.id], True, stored

    async def get_run(self, run_id: str, owner_id: str | None = None) -> Run | None:
        await trio.lowlevel.checkpoint()
        run = self.runs.get(run_id)
        if run is None or (owner_id is not None and run.owner_id != owner_id):
            return None
        return run

    async def list_runs(
        self,
        owner_id: str,
        project_id: str | None,
        status: RunStatus | None,
        limit: int,
        cursor: str | None,
    ) -> Page[Run]:
        await trio.lowlevel.checkpoint()
        items = [
            r
            for r in sorted(self.runs.values(), key=lambda r: r.id, reverse=True)
            if r.owner_id == owner_id
            and (project_id is None or r.project_id == project_id)
            and (status is None or r.status == status)
        ]
        return Page(items[:limit], None)

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
        await trio.lowlevel.checkpoint()
        # The real stores' rule: only the columns of RunFields / StepFields may be set.
        unknown = set(run.fields if run else ()) - RUN_MUTABLE_FIELDS
        for change in steps:
            unknown |= set(change.fields) - STEP_MUTABLE_FIELDS
        if unknown:
            raise ValueError(f"cannot set {sorted(unknown)}")
        if run is not None and if_status is not None and self.runs[run.run_id].status != if_status:
            raise RunStatusChanged()
        self.writes += 1
        run_id = (
            run.run_id
            if run
            else (steps[0].run_id if steps else new_steps[0].run_id if new_steps else None)
        )
        if run_id is not None:
            current = self.runs[run_id]
            if run is not None:
                current = replace(current, **cast("dict[str, Any]", run.fields))
            by_id = {} if replace_steps else {s.id: s for s in current.steps}
            for step in new_steps:
                by_id[step.id] = step
            for change in steps:
                by_id[change.step_id] = replace(
                    by_id[change.step_id], **cast("dict[str, Any]", change.fields)
                )
            current = replace(
                current, steps=tuple(sorted(by_id.values(), key=lambda s: s.position))
            )
            self.runs[run_id] = current
        return self._append(events)

    async def unfinished_runs(self, lease_expired_before: datetime | None) -> list[Run]:
        await trio.lowlevel.checkpoint()
        return [
            r
            for r in self.runs.values()
            if not r.status.finished
            and r.status is not RunStatus.AWAITING_APPROVAL
            and (
                r.lease_owner is None
                or lease_expired_before is None
                or (r.lease_expires_at is not None and r.lease_expires_at < lease_expired_before)
            )
        ]

    async def expired_approvals(self, now: datetime, limit: int) -> list[Run]:
        await trio.lowlevel.checkpoint()
        return [
            r
            for r in self.runs.values()
            if r.status is RunStatus.AWAITING_APPROVAL
            and r.approval_expires_at is not None
            and r.approval_expires_at < now
        ][:limit]

    async def claim_run(self, run_id: str, owner: str, expires_at: datetime) -> bool:
        await trio.lowlevel.checkpoint()
        run = self.runs[run_id]
        if (
            run.lease_owner not in (None, owner)
            and run.lease_expires_at
            and run.lease_expires_at > utc_now()
        ):
            return False
        self.runs[run_id] = replace(run, lease_owner=owner, lease_expires_at=expires_at)
        return True

    async def renew_leases(self, owner: str, expires_at: datetime) -> None:
        await trio.lowlevel.checkpoint()
        for run_id, run in self.runs.items():
            if run.lease_owner == owner:
                self.runs[run_id] = replace(run, lease_expires_at=expires_at)

    async def event_bounds(self, project_id: str) -> tuple[int, int]:
        await trio.lowlevel.checkpoint()
        return 1, self._seq.get(project_id, 0)

    async def events_after(self, project_id: str, after_seq: int, limit: int) -> list[StoredEvent]:
        await trio.lowlevel.checkpoint()
        mine = [e for e in self.events if e.project_id == project_id and e.seq > after_seq]
        return mine[:limit]

    def event_types(self, run_id: str) -> list[tuple[str, str | None]]:
        out = []
        for event in self.events:
            data = json.loads(event.data)
            if data.get("run_id") == run_id:
                out.append((event.type, data.get("step_id")))
        return out

    def event_data(self, run_id: str, kind: str) -> list[dict[str, Any]]:
        return [
            d
            for d in (json.loads(e.data) for e in self.events)
            if d.get("run_id") == run_id and d["type"] == kind
        ]


@dataclass
class RecordingPublisher:
    published: list[StoredEvent] = field(default_factory=list)
    transient: list[Mapping[str, Any]] = field(default_factory=list)

    def publish(self, events: Sequence[StoredEvent]) -> None:
        self.published.extend(events)

    def publish_transient(self, project_id: str, data: Mapping[str, Any]) -> None:
        self.transient.append(data)


class NoFiles:
    """Tool doubles never touch files."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected file access: {name}")


@dataclass
class ToolLog:
    """What the tool doubles saw: starts, cancellations observed, calls per step."""

    started: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    running: int = 0
    max_running: int = 0


def tool_doubles(log: ToolLog) -> list[Tool]:
    """``t.sleep {seconds}``: sleeps, records cancellation; ``t.fail {code, retryable, times}``:
    fails the first ``times`` calls of the step (all when absent), then succeeds;
    ``t.echo {value}``: returns it; ``t.delta {text}``: emits a delta;
    ``t.check {value}``: fails (``bad``) when value starts with "bad", fails retryably on
    the first call when it starts with "flaky", else returns it.
    ``t.sleep`` also takes ``seconds`` as a numeric string (a templated item)."""

    async def sleep(ctx: ToolContext, args: Mapping[str, Any]) -> dict[str, Any]:
        log.started.append(ctx.step_id)
        log.running += 1
        log.max_running = max(log.max_running, log.running)
        try:
            await trio.sleep(float(args["seconds"]))
        except trio.Cancelled:
            log.cancelled.append(ctx.step_id)
            raise
        finally:
            log.running -= 1
        return {"slept": args["seconds"], "step": ctx.step_id}

    async def fail(ctx: ToolContext, args: Mapping[str, Any]) -> dict[str, Any]:
        await trio.lowlevel.checkpoint()
        count = log.calls[ctx.step_id] = log.calls.get(ctx.step_id, 0) + 1
        times = args.get("times")
        if times is None or count <= times:
            raise ToolError(
                args.get("code", "boom"), "it failed", retryable=args.get("retryable", False)
            )
        return {"calls": count}

    async def echo(ctx: ToolContext, args: Mapping[str, Any]) -> dict[str, Any]:
        await trio.lowlevel.checkpoint()
        return {"value": args["value"]}

    async def check(ctx: ToolContext, args: Mapping[str, Any]) -> dict[str, Any]:
        await trio.lowlevel.checkpoint()
        count = log.calls[ctx.step_id] = log.calls.get(ctx.step_id, 0) + 1
        value = str(args["value"])
        if value.startswith("bad"):
            raise ToolError("bad", f"bad value {value}")
        if value.startswith("flaky") and count == 1:
            raise ToolError("flaky", "try again", retryable=True)
        return {"value": value, "calls": count}

    async def delta(ctx: ToolContext, args: Mapping[str, Any]) -> dict[str, Any]:
        ctx.emit_delta(args["text"])
        await trio.lowlevel.checkpoint()
        return {"text": args["text"]}

    obj = {"type": "object"}
    return [
        Tool(
            "t.sleep",
            "sleeps",
            {
                **obj,
                "properties": {"seconds": {"type": ["number", "string"]}},
                "required": ["seconds"],
            },
            obj,
            timeout_s=60,
            retries=0,
            run=sleep,
        ),
        Tool("t.fail", "fails", obj, obj, timeout_s=60, retries=0, run=fail, transient_errors=True),
        Tool(
            "t.echo",
            "echoes",
            {**obj, "properties": {"value": {}}, "required": ["value"]},
            obj,
            timeout_s=60,
            retries=0,
            run=echo,
        ),
        Tool("t.delta", "deltas", obj, obj, timeout_s=60, retries=0, run=delta),
        Tool(
            "t.check",
            "checks",
            {**obj, "properties": {"value": {}}, "required": ["value"]},
            obj,
            timeout_s=60,
            retries=1,
            run=check,
            transient_errors=True,
        ),
    ]


def make_registry(log: ToolLog) -> ToolRegistry:
    return default_registry(tool_doubles(log))


def make_settings(tmp: Any, **overrides: Any) -> Settings:
    return Settings(data_dir=tmp, **overrides)
