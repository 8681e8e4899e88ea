"""Planning corpus, Gemini half: every prompt of ``gemini_corpus_cases`` runs through the real
server (both databases) and the real google-genai SDK against the fake Gemini server.

For each case: the plan the run executes is the model's (valid) plan, validated by the server
(after one repair round where the case's first plans are rejected, and the repair request
names the problems); every scripted reply was used, and nothing more was asked; the run
succeeded; the project's files are exactly what the replies say; fan-out steps ran one item
per element of their list, and the SSE stream shows each item's own event sequence
(``step.started`` then ``step.succeeded``, naming its fan-out step and index).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from server.workflow.plan import parse_plan
from server.workflow.tools.ai_tools import ai_tools
from server.workflow.tools.defaults import default_registry
from tests.ai.fake_gemini import json_reply, text_reply
from tests.ai.gemini_corpus_cases import (
    BASE,
    CASES,
    Case,
    expected_files,
    for_each_steps,
)
from tests.ai.test_e2e_prompt_runs import gemini_overrides, httpx_client, run_prompt
from tests.fixtures.server import create_project, register_user

if TYPE_CHECKING:
    import httpx

    from tests.ai.fake_gemini import FakeGemini
    from tests.fixtures.server import AuthedUser, StartServer

REGISTRY = default_registry(ai_tools())
Events = list[tuple[str, dict[str, Any]]]


def test_the_corpus_is_large_and_bilingual() -> None:
    assert len(CASES) >= 25
    assert len({case.name for case in CASES}) == len(CASES)
    korean = [case for case in CASES if any("\uac00" <= ch <= "\ud7a3" for ch in case.prompt)]
    assert len(korean) >= 8
    assert sum(1 for case in CASES if case.rejected) >= 4  # repair rounds
    assert sum(1 for case in CASES if case.fanout) >= 5  # fan-out runs
    for case in CASES:  # every case's final plan is valid; every rejected one is not
        parse_plan(case.plan, REGISTRY, 100)


async def project_files(client: httpx.AsyncClient, user: AuthedUser, pid: str) -> dict[str, str]:
    listing = await client.get(f"/api/projects/{pid}/files?limit=200", headers=user.headers)
    assert listing.status_code == 200
    files = {}
    for item in listing.json()["items"]:
        got = await client.get(f"/api/projects/{pid}/files/{item['path']}", headers=user.headers)
        assert got.status_code == 200
        files[item["path"]] = got.content.decode()
    return files


def script(fake: FakeGemini, case: Case) -> int:
    """Queue the case's replies; return how many model requests the run must make."""
    fake.script(json_reply(case.intent))
    fake.script(*[json_reply(p) for p in case.rejected], json_reply(case.plan))
    fake.script(*[text_reply(text) for text in case.replies])
    for path, content in case.edits.items():
        fake.script_for(f"File {path}:\n", text_reply(content))
    for needle, text in case.keyed.items():
        fake.script_for(needle, text_reply(text))
    return 2 + len(case.rejected) + len(case.replies) + len(case.edits) + len(case.keyed)


def check_fanout(case: Case, run: dict[str, Any], events: Events) -> None:
    assert sorted(for_each_steps(case)) == sorted(case.fanout)
    steps = {s["id"]: s for s in run["steps"]}
    for parent, count in case.fanout.items():
        items = [f"{parent}[{i}]" for i in range(count)]
        assert [s["id"] for s in run["steps"] if s["id"].startswith(parent + "[")] == items
        assert steps[parent]["output"] == [steps[i]["output"] for i in items]
        started = [d for k, d in events if k == "step.started" and d["step_id"] == parent]
        assert started[0]["items"] == count
        for index, item in enumerate(items):
            own = [(k, d) for k, d in events if d.get("step_id") == item and k != "step.delta"]
            assert [k for k, _ in own] == ["step.started", "step.succeeded"], (item, own)
            assert own[0][1]["parent"] == parent
            assert own[0][1]["index"] == index
            assert own[0][1]["tool"] == steps[parent]["tool"]
            assert steps[item]["status"] == "succeeded"


async def run_case(
    client: httpx.AsyncClient, user: AuthedUser, fake: FakeGemini, case: Case
) -> None:
    pid = await create_project(client, user, case.name)
    for path, text in BASE.items():
        put = await client.put(
            f"/api/projects/{pid}/files/{path}", content=text.encode(), headers=user.headers
        )
        assert put.status_code == 201, put.text
    before = len(fake.requests)
    expected_requests = script(fake, case)

    run, events = await run_prompt(client, user, pid, case.prompt)

    assert run["status"] == "succeeded", (run["error"], run["steps"])
    assert run["plan"] == parse_plan(case.plan, REGISTRY, 100).to_json()
    assert fake.pending_replies == 0
    requests = fake.requests[before:]
    assert len(requests) == expected_requests
    assert case.prompt in requests[0].prompt_text
    if case.rejected:  # the repair request sends the validator's problems back
        repair = requests[2].prompt_text
        assert "The validator rejected it with these problems" in repair
    assert await project_files(client, user, pid) == expected_files(case)
    steps = {s["id"]: s for s in run["steps"]}
    for step_id, subset in case.outputs.items():
        output = steps[step_id]["output"]
        assert {k: output[k] for k in subset} == subset
    if case.fanout:
        check_fanout(case, run, events)
    else:
        assert not any(s.get("for_each") for s in run["plan"]["steps"])


@pytest.mark.parametrize("half", [0, 1], ids=["first-half", "second-half"])
async def test_gemini_corpus(start_server: StartServer, fake_gemini: FakeGemini, half: int) -> None:
    server = await start_server(**gemini_overrides(fake_gemini))
    cases = CASES[half::2]
    async with httpx_client(server) as client:
        user = await register_user(client)
        for case in cases:
            try:
                await run_case(client, user, fake_gemini, case)
            except AssertionError as exc:
                raise AssertionError(f"corpus case {case.name!r}: {exc}") from exc
