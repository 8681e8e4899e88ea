"""ai.generate and ai.edit on a real FileService (SQLite), with both providers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import trio

from server.ai.offline_text import SIMULATION_LABEL
from server.ai.prompts import file_content_system
from server.config import Settings
from server.errors import ToolError
from server.workflow.tools.ai_tools import ai_tools, strip_fences
from server.workflow.tools.registry import Tool
from tests.ai.fake_gemini import FakeGemini, error_reply, text_reply

if TYPE_CHECKING:
    from server.ai.gemini import GeminiProvider
    from server.ai.offline import OfflineProvider
    from tests.ai.conftest import Project

TOOLS = {tool.name: tool for tool in ai_tools()}


async def run_tool(tool: str, project: Project, provider: Any, **args: Any) -> dict[str, Any]:
    return await TOOLS[tool].run(project.context(provider), args)


async def test_generate_streams_deltas_as_they_arrive(
    gemini: GeminiProvider, fake_gemini: FakeGemini, project: Project
) -> None:
    fake_gemini.script(text_reply("Once ", "upon ", "a time."))

    output = await run_tool("ai.generate", project, gemini, prompt="tell a story")

    assert output == {"text": "Once upon a time.", "context_omitted": []}
    assert project.publisher.deltas() == ["Once ", "upon ", "a time."]
    delta = project.publisher.transient[0]
    assert delta["type"] == "step.delta"
    assert (delta["run_id"], delta["step_id"], delta["attempt"]) == ("run-1", "step-1", 1)
    assert delta["project_id"] == project.id


async def test_generate_loads_context_within_the_budget(
    gemini: GeminiProvider, fake_gemini: FakeGemini, project: Project
) -> None:
    await project.put("small.txt", "tiny file")
    await project.put("big.txt", "x" * 200)
    fake_gemini.script(text_reply("ok"))
    provider_context = project.context(gemini, Settings(ai_max_context_bytes=100))

    output = await TOOLS["ai.generate"].run(
        provider_context, {"prompt": "summarize", "context_paths": ["small.txt", "big.txt"]}
    )

    assert output["context_omitted"] == ["big.txt"]
    sent = fake_gemini.requests[0].prompt_text
    assert "--- small.txt ---\ntiny file" in sent
    assert "x" * 200 not in sent


async def test_generate_with_a_missing_context_file_fails_clearly(
    offline: OfflineProvider, project: Project
) -> None:
    with pytest.raises(ToolError) as caught:
        await run_tool("ai.generate", project, offline, prompt="p", context_paths=["nope.txt"])
    assert caught.value.code == "not_found"


async def test_generate_maps_model_errors_to_tool_errors(
    gemini: GeminiProvider, fake_gemini: FakeGemini, project: Project
) -> None:
    fake_gemini.script(*[error_reply(429, "quota", retry_after="0")] * 3)
    with pytest.raises(ToolError) as transient:
        await run_tool("ai.generate", project, gemini, prompt="p")
    assert transient.value.code == "model_rate_limited"
    assert transient.value.retryable
    assert transient.value.retry_after == 0.0

    fake_gemini.script(error_reply(400, "bad"))
    with pytest.raises(ToolError) as permanent:
        await run_tool("ai.generate", project, gemini, prompt="p")
    assert permanent.value.code == "model_bad_request"
    assert not permanent.value.retryable


async def test_no_provider_is_a_clear_failure(project: Project) -> None:
    with pytest.raises(ToolError) as caught:
        await run_tool("ai.generate", project, None, prompt="p")
    assert caught.value.code == "ai_unavailable"


async def test_prompt_budget_of_generate(offline: OfflineProvider, project: Project) -> None:
    context = project.context(offline, Settings(ai_max_prompt_chars=5))
    with pytest.raises(ToolError) as caught:
        await TOOLS["ai.generate"].run(context, {"prompt": "too long"})
    assert caught.value.code == "prompt_too_large"


async def test_offline_generate_is_a_labelled_simulation(
    offline: OfflineProvider, project: Project
) -> None:
    output = await run_tool(
        "ai.generate",
        project,
        offline,
        prompt='create hello.txt containing "hello world"',
        system=file_content_system("hello.txt"),
    )
    assert output["text"].startswith(SIMULATION_LABEL)
    assert "".join(project.publisher.deltas()) == output["text"]


async def test_edit_rewrites_the_file_with_gemini(
    gemini: GeminiProvider, fake_gemini: FakeGemini, project: Project
) -> None:
    version = await project.put("app.py", "print('hi')\n")
    fake_gemini.script(text_reply("```python\n", "print('hello')\n", "```"))

    output = await run_tool("ai.edit", project, gemini, path="app.py", instruction="say hello")

    assert output == {"path": "app.py", "version": version + 1, "size": 15, "changed": True}
    assert await project.text("app.py") == "print('hello')\n"
    sent = fake_gemini.requests[0]
    assert "say hello" in sent.prompt_text
    assert "print('hi')" in sent.prompt_text
    assert project.publisher.deltas()  # the edit streamed too


async def test_edit_with_offline_rules(offline: OfflineProvider, project: Project) -> None:
    await project.put("a.txt", "colour\n")
    output = await run_tool(
        "ai.edit", project, offline, path="a.txt", instruction='replace "colour" with "color"'
    )
    assert output["changed"]
    assert await project.text("a.txt") == "color\n"


async def test_edit_that_changes_nothing_does_not_write(
    offline: OfflineProvider, project: Project
) -> None:
    version = await project.put("a.txt", "same\n")
    output = await run_tool(
        "ai.edit", project, offline, path="a.txt", instruction='replace "zzz" with "y"'
    )
    assert output == {"path": "a.txt", "version": version, "size": 5, "changed": False}


async def test_concurrent_change_fails_the_edit_instead_of_being_overwritten(
    gemini: GeminiProvider, fake_gemini: FakeGemini, project: Project
) -> None:
    await project.put("doc.md", "v1\n")
    answer = trio.Event()
    fake_gemini.script(text_reply("model's v2\n", gate=answer))
    failures: list[ToolError] = []

    async def edit() -> None:
        with pytest.raises(ToolError) as caught:
            await run_tool("ai.edit", project, gemini, path="doc.md", instruction="rewrite")
        failures.append(caught.value)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(edit)
        await fake_gemini.wait_for_requests(1)  # the tool has read v1 and asked the model
        await project.put("doc.md", "user's v2\n")  # someone else writes meanwhile
        answer.set()

    [failure] = failures
    assert failure.code == "version_mismatch"
    assert not failure.retryable
    assert "doc.md changed while it was being edited" in failure.message
    assert await project.text("doc.md") == "user's v2\n"  # not overwritten


async def test_edit_of_a_missing_file(offline: OfflineProvider, project: Project) -> None:
    with pytest.raises(ToolError) as caught:
        await run_tool("ai.edit", project, offline, path="nope.md", instruction="x")
    assert caught.value.code == "not_found"


async def test_edit_of_a_binary_file(offline: OfflineProvider, project: Project) -> None:
    await project.files.write(project.id, "blob.bin", b"\xff\xfe\x00")
    with pytest.raises(ToolError) as caught:
        await run_tool("ai.edit", project, offline, path="blob.bin", instruction="x")
    assert caught.value.code == "binary_file"


def test_strip_fences() -> None:
    assert strip_fences("```py\nx = 1\n```") == "x = 1\n"
    assert strip_fences("```\nx\n```\n") == "x\n"
    assert strip_fences("no fence\n") == "no fence\n"
    assert strip_fences("a ``` b") == "a ``` b"


def test_catalog_entries() -> None:
    for tool in ai_tools():
        assert isinstance(tool, Tool)
        entry = tool.describe()
        assert entry["transient_errors"] is True
        assert entry["args_schema"]["additionalProperties"] is False
    assert set(TOOLS) == {"ai.generate", "ai.edit"}
