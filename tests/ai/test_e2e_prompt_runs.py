"""Prompt runs end to end: the real server on loopback, both databases, both providers.

The offline provider is what a fresh ``stretto serve`` uses; Gemini is the real google-genai
SDK against the fake Gemini server. Events are read from the real SSE endpoint, subscribed
before the run is submitted so that the live-only ``step.delta`` events are seen too.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import trio

from tests.ai.fake_gemini import error_reply, json_reply, text_reply
from tests.events.sse_client import open_stream
from tests.fixtures.server import create_project, register_user

if TYPE_CHECKING:
    import httpx

    from tests.ai.fake_gemini import FakeGemini
    from tests.events.sse_client import SSEStream
    from tests.fixtures.server import AuthedUser, RunningServer, StartServer

TERMINAL = {"run.succeeded", "run.failed", "run.cancelled"}


def gemini_overrides(fake: FakeGemini) -> dict[str, Any]:
    return {
        "gemini_api_key": "test-key",
        "gemini_base_url": fake.url,
        "gemini_model": "gemini-test",
        "ai_timeout_s": 10.0,
    }


async def events_until_run_ends(sse: SSEStream) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    while True:
        message = await sse.next()
        data = json.loads(message.data)
        out.append((message.event, data))
        if message.event in TERMINAL:
            return out


async def submit(
    client: httpx.AsyncClient, user: AuthedUser, project_id: str, prompt: str
) -> dict[str, Any]:
    response = await client.post(
        "/api/workflow/runs",
        json={"project_id": project_id, "prompt": prompt},
        headers=user.headers,
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] in ("pending", "planning", "running")
    return body


async def run_prompt(
    client: httpx.AsyncClient, user: AuthedUser, project_id: str, prompt: str
) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """Submit a prompt run with an SSE subscriber open; (final run, its events in order)."""
    async with open_stream(client, project_id, headers=user.headers) as sse:
        await sse.started()
        run = await submit(client, user, project_id, prompt)
        events = [
            (kind, data)
            for kind, data in await events_until_run_ends(sse)
            if data.get("run_id") in (None, run["id"])
        ]
    final = await client.get(f"/api/workflow/runs/{run['id']}", headers=user.headers)
    assert final.status_code == 200
    return final.json(), events


def run_event_kinds(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [kind for kind, _ in events if kind.startswith("run.")]


async def read_file(client: httpx.AsyncClient, user: AuthedUser, pid: str, path: str) -> str:
    response = await client.get(f"/api/projects/{pid}/files/{path}", headers=user.headers)
    assert response.status_code == 200, response.text
    return response.text


async def test_offline_prompt_creates_the_file(client: httpx.AsyncClient) -> None:
    """A fresh server (no configuration: offline provider) handles a prompt end to end."""
    user = await register_user(client)
    pid = await create_project(client, user)

    run, events = await run_prompt(client, user, pid, 'Create notes/todo.md containing "buy milk"')

    assert run["status"] == "succeeded", run
    assert run["intent"]["intent"] == "create_file"
    assert [s["tool"] for s in run["plan"]["steps"]] == ["vfs.write"]  # exact: no model text
    assert run_event_kinds(events) == [
        "run.created",
        "run.planning",
        "run.planned",
        "run.started",
        "run.succeeded",
    ]
    planned = next(data for kind, data in events if kind == "run.planned")
    assert planned["intent"]["intent"] == "create_file"
    assert planned["plan"] == run["plan"]
    assert not [k for k, _ in events if k == "step.delta"]
    assert await read_file(client, user, pid, "notes/todo.md") == "buy milk\n"


async def test_offline_prompt_edits_existing_files(client: httpx.AsyncClient) -> None:
    user = await register_user(client)
    pid = await create_project(client, user)
    for path in ("src/a.py", "src/b.py"):
        put = await client.put(
            f"/api/projects/{pid}/files/{path}", content=b"foo = 1\n", headers=user.headers
        )
        assert put.status_code == 201

    run, events = await run_prompt(client, user, pid, 'Replace "foo" with "bar" in src/')

    assert run["status"] == "succeeded", run
    assert run["intent"]["intent"] == "edit_files"
    assert {s["tool"] for s in run["steps"]} == {"text.replace"}
    assert run["metrics"]["max_parallelism"] == 2  # the two edits ran side by side
    assert await read_file(client, user, pid, "src/a.py") == "bar = 1\n"
    assert await read_file(client, user, pid, "src/b.py") == "bar = 1\n"
    changed = [d["path"] for k, d in events if k == "file.changed"]
    assert sorted(changed) == ["src/a.py", "src/b.py"]


async def test_plan_only_runs_nothing(client: httpx.AsyncClient) -> None:
    user = await register_user(client)
    pid = await create_project(client, user)

    response = await client.post(
        "/api/workflow/plan",
        json={"project_id": pid, "prompt": 'create hello.py containing "print(1)"'},
        headers=user.headers,
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["intent"]["intent"] == "create_file"
    assert body["plan"]["steps"][-1]["args"]["path"] == "hello.py"
    runs = await client.get(f"/api/workflow/runs?project_id={pid}", headers=user.headers)
    assert runs.json()["items"] == []
    listing = await client.get(f"/api/projects/{pid}/files", headers=user.headers)
    assert listing.json()["items"] == []


async def test_gemini_prompt_run_streams_deltas_to_sse(
    start_server: StartServer, fake_gemini: FakeGemini
) -> None:
    server: RunningServer = await start_server(**gemini_overrides(fake_gemini))
    plan = {
        "steps": [
            {"id": "draft", "tool": "ai.generate", "args": {"prompt": "a poem"}, "needs": []},
            {
                "id": "save",
                "tool": "vfs.write",
                "args": {"path": "poem.txt", "content": "{{steps.draft.output.text}}"},
                "needs": ["draft"],
            },
        ]
    }
    intent = {
        "intent": "create_file",
        "confidence": 0.9,
        "summary": "poem",
        "targets": ["poem.txt"],
    }
    fake_gemini.script(json_reply(intent), json_reply(plan), text_reply("Roses ", "are ", "red.\n"))
    async with httpx_client(server) as client:
        user = await register_user(client)
        pid = await create_project(client, user)
        run, events = await run_prompt(client, user, pid, "write a poem into poem.txt")

        assert run["status"] == "succeeded", run
        assert run["intent"] == intent
        assert run["plan"] == plan
        deltas = [(d["step_id"], d["text"]) for k, d in events if k == "step.delta"]
        assert deltas == [("draft", "Roses "), ("draft", "are "), ("draft", "red.\n")]
        assert run_event_kinds(events) == [
            "run.created",
            "run.planning",
            "run.planned",
            "run.started",
            "run.succeeded",
        ]
        assert await read_file(client, user, pid, "poem.txt") == "Roses are red.\n"
    intent_call, plan_call, generate_call = fake_gemini.requests
    assert "write a poem into poem.txt" in intent_call.prompt_text
    assert plan_call.body["generationConfig"]["responseMimeType"] == "application/json"
    assert generate_call.streaming


async def test_gemini_invalid_plan_twice_fails_the_run_with_reasons(
    start_server: StartServer, fake_gemini: FakeGemini
) -> None:
    server = await start_server(**gemini_overrides(fake_gemini))
    bad = {"steps": [{"id": "x", "tool": "shell.exec", "args": {}, "needs": []}]}
    fake_gemini.script(
        json_reply({"intent": "unknown", "confidence": 0.1, "summary": "", "targets": []}),
        json_reply(bad),
        json_reply(bad),
    )
    async with httpx_client(server) as client:
        user = await register_user(client)
        pid = await create_project(client, user)
        run, events = await run_prompt(client, user, pid, "do something")

    assert run["status"] == "failed"
    assert run_event_kinds(events) == ["run.created", "run.planning", "run.failed"]
    error = events[-1][1]["error"]
    assert error["code"] == "planning_failed"
    assert error["details"]["steps.x.tool"] == "unknown tool 'shell.exec'"
    assert len(fake_gemini.requests) == 3  # intent, plan, one repair


async def test_cancelling_a_run_closes_the_streaming_model_call(
    start_server: StartServer, fake_gemini: FakeGemini
) -> None:
    server = await start_server(**gemini_overrides(fake_gemini))
    plan = {"steps": [{"id": "long", "tool": "ai.generate", "args": {"prompt": "x"}, "needs": []}]}
    fake_gemini.script(
        json_reply({"intent": "generate", "confidence": 1, "summary": "", "targets": []}),
        json_reply(plan),
        text_reply("first words", hold_open=True),
    )
    async with httpx_client(server) as client:
        user = await register_user(client)
        pid = await create_project(client, user)
        async with open_stream(client, pid, headers=user.headers) as sse:
            await sse.started()
            run = await submit(client, user, pid, "write forever")
            seen: list[str] = []
            while "step.delta" not in seen:
                seen.append((await sse.next()).event)
            cancel = await client.post(
                f"/api/workflow/runs/{run['id']}/cancel", headers=user.headers
            )
            assert cancel.status_code == 202
            rest = [kind for kind, _ in await events_until_run_ends(sse)]
        assert rest[-1] == "run.cancelled"
        assert "step.cancelled" in rest
    with trio.fail_after(10):
        await fake_gemini.disconnected.wait()  # the model's HTTP request was closed


def httpx_client(server: RunningServer) -> httpx.AsyncClient:
    import httpx

    return httpx.AsyncClient(base_url=server.url, timeout=30)


async def test_plan_only_reports_model_failures_as_contract_errors(
    start_server: StartServer, fake_gemini: FakeGemini
) -> None:
    server = await start_server(**gemini_overrides(fake_gemini))
    fake_gemini.script(
        error_reply(403, "API key not valid."),
        *[error_reply(503, "overloaded", retry_after="0")] * 3,
    )
    async with httpx_client(server) as client:
        user = await register_user(client)
        pid = await create_project(client, user)
        body = {"project_id": pid, "prompt": "create a.txt"}

        refused = await client.post("/api/workflow/plan", json=body, headers=user.headers)
        assert refused.status_code == 502
        assert refused.json()["error"]["code"] == "model_error"
        assert "STRETTO_GEMINI_API_KEY" in refused.json()["error"]["message"]

        busy = await client.post("/api/workflow/plan", json=body, headers=user.headers)
        assert busy.status_code == 503
        assert busy.json()["error"]["code"] == "model_unavailable"
        assert busy.headers["Retry-After"] == "1"
