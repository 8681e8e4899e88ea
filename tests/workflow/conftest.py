"""Harness for executor tests: a supervisor over the in-memory run store, tool doubles."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from server.workflow.executor import ExecutorDeps
from server.workflow.supervisor import RunPlanner, RunSupervisor
from tests.workflow.doubles import (
    MemoryRunStore,
    NoFiles,
    RecordingPublisher,
    ToolLog,
    make_registry,
    make_settings,
)

if TYPE_CHECKING:
    from pathlib import Path

    import trio

    from server.store.models import Run


@dataclass
class Harness:
    store: MemoryRunStore
    publisher: RecordingPublisher
    log: ToolLog
    supervisor: RunSupervisor
    owner: str = "u1"
    project: str = "p1"

    async def submit(self, steps: list[dict[str, Any]], **options: Any) -> Run:
        run, _ = await self.supervisor.submit(
            owner_id=self.owner,
            project_id=self.project,
            prompt=None,
            plan={"steps": steps},
            options=options,
            idempotency_key=None,
        )
        return run

    async def run(self, steps: list[dict[str, Any]], **options: Any) -> Run:
        run = await self.submit(steps, **options)
        await self.supervisor.wait_finished(run.id)
        return await self.fetch(run.id)

    async def fetch(self, run_id: str) -> Run:
        run = await self.store.get_run(run_id)
        assert run is not None
        return run


def build_harness(
    tmp_path: Path,
    store: MemoryRunStore | None = None,
    planner: RunPlanner | None = None,
    **settings: Any,
) -> Harness:
    store = store or MemoryRunStore()
    store.add_project("u1", "p1")
    publisher = RecordingPublisher()
    log = ToolLog()
    conf = make_settings(tmp_path, **settings)
    registry = make_registry(log)
    deps = ExecutorDeps(
        store=store,  # type: ignore[arg-type]
        publisher=publisher,
        files=NoFiles(),
        registry=registry,
        settings=conf,
        planner=planner,
        rng=random.Random(7),
    )
    supervisor = RunSupervisor(
        store=store,  # type: ignore[arg-type]
        publisher=publisher,
        files=NoFiles(),
        registry=registry,
        settings=conf,
        planner=planner,
        provider=None,
        instance_id="test-1",
        deps=deps,
    )
    return Harness(store, publisher, log, supervisor)


@pytest.fixture
async def harness(tmp_path: Path, nursery: trio.Nursery) -> Harness:
    h = build_harness(tmp_path)
    await nursery.start(h.supervisor.run)
    return h
