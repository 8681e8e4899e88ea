"""The planner: intent + plan through a provider, validated, with one repair round."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from server.ai.factory import build_provider
from server.ai.intent import normalize_intent
from server.ai.provider import LimitedProvider, ModelFailed, ModelUnavailable
from server.config import Settings
from server.errors import InvalidPlan, ValidationFailed
from server.workflow.planner import Planner
from tests.ai.conftest import Project, gemini_settings
from tests.ai.fake_gemini import FakeGemini, error_reply, json_reply, text_reply

if TYPE_CHECKING:
    from server.ai.gemini import GeminiProvider
    from server.ai.offline import OfflineProvider
    from server.workflow.tools.registry import ToolRegistry

INTENT = {
    "intent": "create_file",
    "confidence": 0.9,
    "summary": "Create a.txt",
    "targets": ["a.txt"],
}
VALID_PLAN = {
    "steps": [
        {"id": "gen", "tool": "ai.generate", "args": {"prompt": "write it"}, "needs": []},
        {
            "id": "save",
            "tool": "vfs.write",
            "args": {"path": "a.txt", "content": "{{steps.gen.output.text}}"},
            "needs": ["gen"],
        },
    ]
}
INVALID_PLAN = {
    "steps": [
        {"id": "gen", "tool": "ai.dream", "args": {}, "needs": []},
        {"id": "save", "tool": "vfs.write", "args": {"path": "a.txt"}, "needs": ["save"]},
    ]
}


def make_planner(
    provider: object, project: Project, registry: ToolRegistry, **settings: object
) -> Planner:
    return Planner(
        provider=provider,  # type: ignore[arg-type]
        files=project.files,
        registry=registry,
        settings=Settings(**settings),  # type: ignore[arg-type]
    )


async def test_gemini_intent_and_structured_plan(
    gemini: GeminiProvider, fake_gemini: FakeGemini, project: Project, registry: ToolRegistry
) -> None:
    await project.put("src/app.py", "print('hi')\n")
    fake_gemini.script(json_reply(INTENT), json_reply(VALID_PLAN))

    intent, plan = await make_planner(gemini, project, registry).analyze_and_plan(
        project.id, "create a.txt with a greeting"
    )

    assert intent == INTENT
    assert plan == VALID_PLAN
    intent_request, plan_request = fake_gemini.requests
    assert "create a.txt with a greeting" in intent_request.prompt_text
    assert "src/app.py (12 bytes)" in intent_request.prompt_text  # the file listing
    assert intent_request.body["generationConfig"]["responseJsonSchema"]["properties"]["intent"][
        "enum"
    ] == ["create_file", "edit_files", "explain", "search", "generate", "unknown"]
    schema = plan_request.body["generationConfig"]["responseJsonSchema"]
    assert set(schema["properties"]["steps"]["items"]["properties"]["tool"]["enum"]) == set(
        registry.names()
    )
    assert '"ai.edit"' in plan_request.prompt_text  # the tool catalog


async def test_invalid_plan_is_repaired_once(
    gemini: GeminiProvider, fake_gemini: FakeGemini, project: Project, registry: ToolRegistry
) -> None:
    fake_gemini.script(json_reply(INTENT), json_reply(INVALID_PLAN), json_reply(VALID_PLAN))

    _, plan = await make_planner(gemini, project, registry).analyze_and_plan(project.id, "go")

    assert plan == VALID_PLAN
    repair = fake_gemini.requests[2].prompt_text
    assert "unknown tool 'ai.dream'" in repair  # the validator's problems went back
    assert "steps.save.args" in repair
    assert '"ai.dream"' in repair  # with the rejected plan


async def test_plan_still_invalid_after_repair_fails_with_the_reasons(
    gemini: GeminiProvider, fake_gemini: FakeGemini, project: Project, registry: ToolRegistry
) -> None:
    fake_gemini.script(json_reply(INTENT), json_reply(INVALID_PLAN), json_reply(INVALID_PLAN))

    with pytest.raises(InvalidPlan) as caught:
        await make_planner(gemini, project, registry).analyze_and_plan(project.id, "go")

    assert caught.value.details["steps.gen.tool"] == "unknown tool 'ai.dream'"
    assert "repair" in caught.value.message
    assert len(fake_gemini.requests) == 3


async def test_answer_that_is_not_json_gets_the_repair_round(
    gemini: GeminiProvider, fake_gemini: FakeGemini, project: Project, registry: ToolRegistry
) -> None:
    fake_gemini.script(
        json_reply(INTENT), text_reply("Here is a plan: ..."), json_reply(VALID_PLAN)
    )
    _, plan = await make_planner(gemini, project, registry).analyze_and_plan(project.id, "go")
    assert plan == VALID_PLAN
    assert "not JSON" in fake_gemini.requests[2].prompt_text


async def test_model_errors_become_app_errors(
    gemini: GeminiProvider, fake_gemini: FakeGemini, project: Project, registry: ToolRegistry
) -> None:
    planner = make_planner(gemini, project, registry)
    fake_gemini.script(error_reply(401, "API key not valid."))
    with pytest.raises(ModelFailed) as failed:
        await planner.analyze(project.id, "go")
    assert failed.value.status == 502
    assert "STRETTO_GEMINI_API_KEY" in failed.value.message

    fake_gemini.script(*[error_reply(503, "overloaded", retry_after="0")] * 3)
    with pytest.raises(ModelUnavailable) as unavailable:
        await planner.analyze(project.id, "go")
    assert unavailable.value.status == 503
    assert unavailable.value.headers() == {"Retry-After": "1"}


async def test_prompt_budget(
    offline: OfflineProvider, project: Project, registry: ToolRegistry
) -> None:
    planner = make_planner(offline, project, registry, ai_max_prompt_chars=10)
    with pytest.raises(ValidationFailed) as caught:
        await planner.analyze_and_plan(project.id, "x" * 11)
    assert "prompt" in caught.value.details
    with pytest.raises(ValidationFailed):
        await planner.analyze_and_plan(project.id, "   ")


async def test_offline_planner_plans_from_the_project_files(
    offline: OfflineProvider, project: Project, registry: ToolRegistry
) -> None:
    await project.put("src/a.py", "a = 1\n")
    await project.put("src/b.py", "b = 2\n")
    intent, plan = await make_planner(offline, project, registry).analyze_and_plan(
        project.id, 'replace "= " with "== " in src/'
    )
    assert intent["intent"] == "edit_files"
    assert intent["targets"] == ["src/a.py", "src/b.py"]
    assert [s["args"]["path"] for s in plan["steps"]] == ["src/a.py", "src/b.py"]


async def test_planning_limiter_bounds_sessions(
    offline: OfflineProvider, project: Project, registry: ToolRegistry
) -> None:
    limiter = trio.CapacityLimiter(1)
    planner = Planner(
        provider=offline,
        files=project.files,
        registry=registry,
        settings=Settings(),
        limiter=limiter,
    )
    results: list[str] = []
    release = trio.Event()

    async def hold() -> None:
        async with limiter:
            await release.wait()

    async def plan() -> None:
        results.append((await planner.analyze(project.id, "hello"))["intent"])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(plan)
        await trio.testing.wait_all_tasks_blocked()
        assert limiter.statistics().tasks_waiting == 1  # planning waits for the token
        assert results == []
        release.set()
    assert results == ["unknown"]


def test_normalize_intent_coerces_model_output() -> None:
    raw = {"intent": "destroy", "confidence": 7, "summary": " s ", "targets": ["ok.py", "../x", 3]}
    assert normalize_intent(raw) == {
        "intent": "unknown",
        "confidence": 1.0,
        "summary": "s",
        "targets": ["ok.py"],
    }
    assert normalize_intent({})["confidence"] == 0.0


async def test_build_provider_picks_by_settings(fake_gemini: FakeGemini) -> None:
    offline = build_provider(Settings())
    assert isinstance(offline, LimitedProvider)
    assert offline.name == "offline"
    assert offline.limiter.total_tokens == Settings().ai_concurrency
    gemini = build_provider(gemini_settings(fake_gemini, ai_concurrency=3))
    try:
        assert gemini.name == "gemini"
        assert gemini.limiter.total_tokens == 3
    finally:
        await gemini.aclose()


def test_offline_path_does_not_import_google_genai() -> None:
    code = (
        "import sys\n"
        "from server.config import Settings\n"
        "from server.ai.factory import build_provider\n"
        "from server.workflow.planner import Planner\n"
        "from server.workflow.tools.ai_tools import ai_tools\n"
        "build_provider(Settings())\n"
        "assert 'google.genai' not in sys.modules, 'google.genai imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
