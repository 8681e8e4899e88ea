"""Issue 12 item 1: a catastrophic-backtracking pattern cannot freeze the server.

``vfs.search`` compiles patterns with RE2 (linear time). Through a real socket: the evil
pattern's run finishes, and ``/api/health`` answers while it runs; Python-only syntax
(backreferences, lookaround) is refused at plan validation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import trio

from tests.api.test_health_and_errors import assert_error
from tests.fixtures.server import create_project, register_user
from tests.workflow.test_api import post_run, wait_run

if TYPE_CHECKING:
    import httpx

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

EVIL = "(a+)+$"


def _search_plan(pattern: str, *, copies: int = 1) -> dict[str, Any]:
    return {
        "steps": [
            {
                "id": f"s{i}",
                "tool": "vfs.search",
                "args": {"pattern": pattern},
                "timeout_s": 5,
            }
            for i in range(copies)
        ]
    }


async def test_evil_pattern_finishes_and_health_answers_meanwhile(
    client: httpx.AsyncClient,
) -> None:
    user = await register_user(client)
    project_id = await create_project(client, user)
    # With Python's re, each extra "a" doubles the time: 40 would take days.
    for index in range(4):
        response = await client.put(
            f"/api/projects/{project_id}/files/evil{index}.txt",
            content=b"a" * 40 + b"!\n" + b"a" * 40 + b"\n",
            headers=user.headers,
        )
        assert response.status_code == 201, response.text
    response = await post_run(
        client, user, {"project_id": project_id, "plan": _search_plan(EVIL, copies=4)}
    )
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]
    health_answered = 0
    finished: dict[str, Any] = {}
    done = trio.Event()

    async def watch() -> None:
        finished.update(await wait_run(client, user, run_id))
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        while not done.is_set():  # health keeps answering while the search runs
            health = await client.get("/api/health")
            assert health.status_code == 200
            health_answered += 1
            await trio.sleep(0.01)
    assert health_answered >= 1
    assert finished["status"] == "succeeded", finished
    for step in finished["steps"]:
        output = step["output"]
        assert output["files_scanned"] == 4
        # "a…a!" does not match (a+)+$; the all-"a" second line does, in every file.
        assert sorted((m["path"], m["line"]) for m in output["matches"]) == [
            (f"evil{i}.txt", 2) for i in range(4)
        ]


@pytest.mark.parametrize("pattern", [r"(a)\1", "(?=a)a", "(?<!b)a", "a{1001}"])
async def test_syntax_re2_lacks_is_refused_at_plan_validation(
    client: httpx.AsyncClient, pattern: str
) -> None:
    user = await register_user(client)
    project_id = await create_project(client, user)
    response = await post_run(
        client, user, {"project_id": project_id, "plan": _search_plan(pattern)}
    )
    error = assert_error(response, 400, "invalid_plan")
    details = error["details"]
    assert isinstance(details, dict)
    assert "steps.s0.args.pattern" in details


async def test_templated_pattern_is_checked_when_the_step_runs(
    client: httpx.AsyncClient,
) -> None:
    user = await register_user(client)
    project_id = await create_project(client, user)
    response = await client.put(
        f"/api/projects/{project_id}/files/p.txt", content=b"(a)\\1", headers=user.headers
    )
    assert response.status_code == 201
    plan = {
        "steps": [
            {"id": "read", "tool": "vfs.read", "args": {"path": "p.txt"}},
            {
                "id": "search",
                "tool": "vfs.search",
                "args": {"pattern": "{{steps.read.output.content}}"},
                "needs": ["read"],
            },
        ]
    }
    response = await post_run(client, user, {"project_id": project_id, "plan": plan})
    assert response.status_code == 202, response.text
    run = await wait_run(client, user, response.json()["id"])
    assert run["status"] == "failed"
    step = {s["id"]: s for s in run["steps"]}["search"]
    assert step["error"]["code"] == "invalid_pattern"
    assert "backreferences" in step["error"]["message"]
