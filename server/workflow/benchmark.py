"""Engine overhead benchmark (not a test): ``python -m server.workflow.benchmark [--database-url]``.

Runs the real executor on a real store (SQLite in a temp dir, or PostgreSQL) with tools that
do nothing but sleep, and reports:
- steps per second with a zero-latency tool (one run of N independent steps, and a chain);
- wall time vs critical path for 20 steps in two layers of width 10 at 100 ms each
  (ideal: 200 ms; the difference is the engine's overhead).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from server.config import Settings
from server.store.factory import open_store
from server.store.models import RunStatus
from server.workflow.supervisor import RunSupervisor
from server.workflow.tools.defaults import default_registry
from server.workflow.tools.registry import Tool, ToolContext

if TYPE_CHECKING:
    from collections.abc import Mapping


class _NullPublisher:
    def publish(self, events: Any) -> None:
        pass

    def publish_transient(self, project_id: str, data: Mapping[str, Any]) -> None:
        pass


async def _sleep_tool(ctx: ToolContext, args: Mapping[str, Any]) -> dict[str, Any]:
    await trio.sleep(args["seconds"])
    return {}


SLEEP_TOOL = Tool(
    "bench.sleep",
    "sleeps",
    {"type": "object", "properties": {"seconds": {"type": "number"}}},
    {"type": "object"},
    timeout_s=60,
    retries=0,
    run=_sleep_tool,
)


def _step(sid: str, seconds: float, needs: list[str]) -> dict[str, Any]:
    return {"id": sid, "tool": "bench.sleep", "args": {"seconds": seconds}, "needs": needs}


async def _run(sup: RunSupervisor, owner: str, project: str, steps: list[dict[str, Any]]) -> Any:
    run, _ = await sup.submit(
        owner_id=owner,
        project_id=project,
        prompt=None,
        plan={"steps": steps},
        options={},
        idempotency_key=None,
    )
    start = trio.current_time()
    await sup.wait_finished(run.id)
    elapsed = trio.current_time() - start
    done = await sup.store.get_run(run.id)
    assert done is not None
    assert done.status is RunStatus.SUCCEEDED, done.error
    return elapsed, done


async def benchmark(settings: Settings) -> dict[str, Any]:
    async with open_store(settings) as store:
        await store.migrate()
        user = await store.create_user("bench@example.com", None, None)
        project = await store.create_project(user.id, "bench", None)
        sup = RunSupervisor(
            store=store,
            publisher=_NullPublisher(),
            files=None,  # type: ignore[arg-type]
            registry=default_registry([SLEEP_TOOL]),
            settings=settings,
            planner=None,
            provider=None,
            instance_id="bench",
        )
        out: dict[str, Any] = {"backend": store.backend}
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            n = min(100, settings.max_plan_steps)
            flat, _ = await _run(
                sup, user.id, project.id, [_step(f"s{i}", 0, []) for i in range(n)]
            )
            out["zero_latency_parallel_steps_per_s"] = round(n / flat, 1)
            chain = [_step(f"s{i}", 0, [f"s{i - 1}"] if i else []) for i in range(n)]
            serial, _ = await _run(sup, user.id, project.id, chain)
            out["zero_latency_chain_steps_per_s"] = round(n / serial, 1)
            layers = [_step(f"a{i}", 0.1, []) for i in range(10)]
            layers += [_step(f"b{i}", 0.1, [f"a{i}"]) for i in range(10)]
            _, run = await _run(sup, user.id, project.id, layers)
            metrics = run.metrics or {}
            out["width10_depth2_100ms"] = {
                "wall_ms": metrics.get("wall_ms"),
                "critical_path_ms": metrics.get("critical_path_ms"),
                "ideal_ms": 200.0,
                "max_parallelism": metrics.get("max_parallelism"),
            }
            nursery.cancel_scope.cancel()
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), database_url=args.database_url, max_plan_steps=1000)
        if args.database_url:
            import trio_asyncio

            async def with_loop() -> dict[str, Any]:
                async with trio_asyncio.open_loop():
                    return await benchmark(settings)

            result = trio.run(with_loop)
        else:
            result = trio.run(benchmark, settings)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
