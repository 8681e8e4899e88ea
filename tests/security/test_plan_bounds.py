"""Issue 12 item 2: a small plan cannot make the server build huge values.

Template substitutions of one step's args are bounded (``max_template_arg_bytes``), checked
before the value is built; step and run errors that echo substituted values are bounded
too. Through a real socket, on both databases (outputs and errors are stored).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from server.errors import bounded_text
from server.workflow.templates import ArgsTooLarge, render_args
from tests.fixtures.server import create_project, register_user
from tests.workflow.test_api import post_run, wait_run

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.fixtures.server import AuthedUser, StartServer

BOUND = 64 * 1024
BIG = 40 * 1024  # one copy fits the bound, two do not


@dataclass
class Setup:
    client: httpx.AsyncClient
    user: AuthedUser
    project_id: str


@pytest.fixture
async def setup(start_server: StartServer) -> AsyncIterator[Setup]:
    server = await start_server(max_template_arg_bytes=BOUND)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        user = await register_user(client)
        project_id = await create_project(client, user)
        response = await client.put(
            f"/api/projects/{project_id}/files/big.txt", content=b"x" * BIG, headers=user.headers
        )
        assert response.status_code == 201, response.text
        yield Setup(client, user, project_id)


def _plan(*writes: dict[str, Any]) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"id": "read", "tool": "vfs.read", "args": {"path": "big.txt"}}]
    for index, args in enumerate(writes):
        steps.append({"id": f"w{index}", "tool": "vfs.write", "args": args, "needs": ["read"]})
    return {"steps": steps}


REF = "{{steps.read.output.content}}"


async def test_substitutions_within_the_bound_run(setup: Setup) -> None:
    client, user, project_id = setup.client, setup.user, setup.project_id
    plan = _plan({"path": "copy.txt", "content": REF})
    response = await post_run(client, user, {"project_id": project_id, "plan": plan})
    assert response.status_code == 202, response.text
    run = await wait_run(client, user, response.json()["id"])
    assert run["status"] == "succeeded", run["error"]
    copy = await client.get(f"/api/projects/{project_id}/files/copy.txt", headers=user.headers)
    assert copy.content == b"x" * BIG


async def test_repeated_substitution_fails_the_step_before_building(setup: Setup) -> None:
    client, user, project_id = setup.client, setup.user, setup.project_id
    # 1,000 copies of a 40 KB value would be 40 MB; the bound stops it at the second.
    plan = _plan({"path": "bomb.txt", "content": REF * 1000})
    response = await post_run(client, user, {"project_id": project_id, "plan": plan})
    assert response.status_code == 202, response.text
    run = await wait_run(client, user, response.json()["id"])
    assert run["status"] == "failed"
    step = {s["id"]: s for s in run["steps"]}["w0"]
    assert step["error"]["code"] == "args_too_large"
    assert str(BOUND) in step["error"]["message"]
    missing = await client.get(f"/api/projects/{project_id}/files/bomb.txt", headers=user.headers)
    assert missing.status_code == 404


async def test_the_bound_covers_all_args_of_a_step_together(setup: Setup) -> None:
    client, user, project_id = setup.client, setup.user, setup.project_id
    plan = _plan({"path": "a.txt", "content": f"{REF}-{REF}"})
    response = await post_run(client, user, {"project_id": project_id, "plan": plan})
    run = await wait_run(client, user, response.json()["id"])
    step = {s["id"]: s for s in run["steps"]}["w0"]
    assert step["error"]["code"] == "args_too_large"


async def test_errors_echoing_substituted_values_are_bounded(setup: Setup) -> None:
    client, user, project_id = setup.client, setup.user, setup.project_id
    # The 40 KB content becomes a path: the schema error echoes it, and must be cut.
    plan = _plan({"path": REF, "content": "y"})
    response = await post_run(client, user, {"project_id": project_id, "plan": plan})
    assert response.status_code == 202, response.text
    run = await wait_run(client, user, response.json()["id"])
    assert run["status"] == "failed"
    step = {s["id"]: s for s in run["steps"]}["w0"]
    assert step["error"]["code"] == "invalid_args"
    assert len(step["error"]["message"].encode()) <= 2048
    assert "truncated" in step["error"]["message"]
    assert len(run["error"]["message"].encode()) <= 2048 + 64
    whole = await client.get(f"/api/workflow/runs/{run['id']}", headers=user.headers)
    # The read step's stored output (<= 64 KiB) dominates; no error copies the 40 KB.
    assert len(whole.content) < 64 * 1024 + 16 * 1024


# -- the pure helpers ------------------------------------------------------------------------


def test_render_args_budget_is_shared_by_all_args_and_exact() -> None:
    outputs = {"a": {"text": "x" * 10, "items": list(range(100))}}
    args = {"one": "{{steps.a.output.text}}", "two": ["{{steps.a.output.text}}"]}
    assert render_args(args, outputs, max_bytes=20) == {"one": "x" * 10, "two": ["x" * 10]}
    with pytest.raises(ArgsTooLarge) as caught:
        render_args(args, outputs, max_bytes=19)
    assert caught.value.code == "args_too_large"
    # Non-string values are charged while they are encoded.
    with pytest.raises(ArgsTooLarge):
        render_args("{{steps.a.output.items}}", outputs, max_bytes=50)
    assert render_args("{{steps.a.output.items}}", outputs, max_bytes=10_000).startswith("[0,1,")
    # Multi-byte characters are charged by their UTF-8 size.
    with pytest.raises(ArgsTooLarge):
        render_args("{{steps.b.output}}", {"b": "\u00e9" * 6}, max_bytes=11)
    assert render_args("{{steps.b.output}}", {"b": "\u00e9" * 6}, max_bytes=12) == "\u00e9" * 6


def test_bounded_text_keeps_small_texts_and_cuts_large_ones() -> None:
    assert bounded_text("short") == "short"
    cut = bounded_text("\u00e9" * 5000, 100)
    assert len(cut.encode()) <= 100
    assert cut.endswith("[truncated, 10000 bytes]")
    assert cut.startswith("\u00e9")
