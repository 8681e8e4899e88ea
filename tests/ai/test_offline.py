"""The offline provider: intent rules, plan templates, text templates. No network."""

from __future__ import annotations

from contextlib import aclosing
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from server.ai import offline_rules, offline_text
from server.ai.factory import build_provider
from server.ai.offline import OfflineProvider
from server.ai.prompts import INTENT_SCHEMA, file_content_system
from server.config import Settings
from server.errors import ModelError
from server.workflow.plan import parse_plan

if TYPE_CHECKING:
    from server.workflow.tools.registry import ToolRegistry

FILES = ["src/app.py", "src/util.py", "README.md", "docs/guide.md"]

CASES = [
    ('Create notes/todo.md containing "buy milk"', "create_file", ["notes/todo.md"]),
    ("create a new file `scripts/run.sh`", "create_file", ["scripts/run.sh"]),
    ('In src/app.py replace "foo" with "bar"', "edit_files", ["src/app.py"]),
    ("Add input validation to every handler in src/", "edit_files", ["src/app.py", "src/util.py"]),
    ("Explain what src/util.py does", "explain", ["src/util.py"]),
    ("Summarize the project", "explain", FILES),
    ('Find "TODO" in src/', "search", ["src/"]),
    ("search for handler", "search", []),
    ("Write a haiku about autumn", "generate", []),
    ("hello there", "unknown", []),
]


@pytest.mark.parametrize(("prompt", "intent", "targets"), CASES)
def test_rules_classify_the_common_intents(prompt: str, intent: str, targets: list[str]) -> None:
    result = offline_rules.classify(prompt, FILES)
    assert result["intent"] == intent
    assert result["targets"] == targets
    assert 0 <= result["confidence"] <= 1
    assert result["summary"]
    assert set(result) == set(INTENT_SCHEMA["required"])


@pytest.mark.parametrize(("prompt", "intent", "targets"), CASES)
async def test_every_intent_gets_a_plan_the_validator_accepts(
    offline: OfflineProvider, registry: ToolRegistry, prompt: str, intent: str, targets: list[str]
) -> None:
    hints = {"task": "intent", "prompt": prompt, "files": FILES}
    found = await offline.generate_json(system="", prompt=prompt, schema={}, hints=hints)
    assert found["intent"] == intent
    plan_json = await offline.generate_json(
        system="", prompt=prompt, schema={}, hints={**hints, "task": "plan", "intent": found}
    )
    plan = parse_plan(plan_json, registry, max_steps=100)
    tools = [step.tool for step in plan.steps]
    expected = {
        "create_file": {"ai.generate", "vfs.write"},
        "edit_files": {"ai.edit"},
        "explain": {"ai.generate"},
        "search": {"vfs.search"} if '"' in prompt or "for" in prompt else {"ai.generate"},
        "generate": {"ai.generate"},
        "unknown": {"ai.generate"},
    }[intent]
    assert set(tools) == expected


def test_create_plan_writes_the_generated_text() -> None:
    intent = offline_rules.classify("create a.txt and b.md", [])
    plan = offline_rules.plan_for(intent, "create a.txt and b.md", [])
    writes = [s for s in plan["steps"] if s["tool"] == "vfs.write"]
    assert [w["args"]["path"] for w in writes] == ["a.txt", "b.md"]
    assert writes[0]["needs"] == ["generate_1"]
    assert writes[0]["args"]["content"] == "{{steps.generate_1.output.text}}"


def test_edits_of_several_files_are_independent_steps() -> None:
    intent = offline_rules.classify("fix the bugs in src/", FILES)
    plan = offline_rules.plan_for(intent, "fix the bugs in src/", FILES)
    assert [(s["id"], s["needs"]) for s in plan["steps"]] == [("edit_1", []), ("edit_2", [])]


def test_quoted_text_is_never_a_path() -> None:
    assert offline_rules.path_tokens('create v.txt containing "version 1.2 of a/b"') == ["v.txt"]
    assert offline_rules.path_tokens("see https://example.com/x.html and `a b/c.md`") == [
        "a b/c.md"
    ]


def test_file_content_templates() -> None:
    assert offline_text.file_content("n.md", 'create n.md containing "buy milk"') == "buy milk\n"
    python = offline_text.file_content("tool.py", "a tool that greets")
    assert python.startswith('"""a tool that greets"""')
    compile(python, "tool.py", "exec")
    assert offline_text.file_content("notes.md", "my notes").startswith("# Notes\n")


@pytest.mark.parametrize(
    ("instruction", "before", "after"),
    [
        ('replace "foo" with "bar"', "foo = foo()\n", "bar = bar()\n"),
        ('append "# end"', "x = 1", "x = 1\n# end\n"),
        ('add "#!/bin/sh" at the top', "echo hi\n", "#!/bin/sh\necho hi\n"),
        ("make it uppercase", "abc\n", "ABC\n"),
        ("tidy it up", "x = 1\n", "# Edited (offline): tidy it up\nx = 1\n"),
    ],
)
def test_edit_rules(instruction: str, before: str, after: str) -> None:
    assert offline_text.edited("f.py", before, instruction) == after


@given(st.text())
def test_chunks_give_the_text_back(text: str) -> None:
    assert "".join(offline_text.chunks(text)) == text


async def test_stream_text_streams_file_content_in_chunks(offline: OfflineProvider) -> None:
    prompt = 'create a.md containing "one two three four five six seven eight nine"'
    async with aclosing(
        offline.stream_text(system=file_content_system("a.md"), prompt=prompt)
    ) as stream:
        chunks = [chunk async for chunk in stream]
    assert len(chunks) > 1
    assert "".join(chunks) == "one two three four five six seven eight nine\n"


async def test_explain_uses_the_context_files(offline: OfflineProvider) -> None:
    hints = {"task": "generate", "prompt": "explain", "context": {"m.py": "def run():\n  pass\n"}}
    async with aclosing(offline.stream_text(system=None, prompt="x", hints=hints)) as stream:
        text = "".join([chunk async for chunk in stream])
    assert "m.py: 2 lines" in text
    assert "Defines: run" in text


async def test_structured_request_without_a_task_is_refused(offline: OfflineProvider) -> None:
    with pytest.raises(ModelError) as caught:
        await offline.generate_json(system="s", prompt="p", schema={})
    assert caught.value.code == "model_unsupported"


async def test_simulated_latency_is_spent_once_per_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    slow = OfflineProvider(latency_s=2.5)
    start = trio.current_time()
    await slow.generate_json(system="", prompt="p", schema={}, hints={"task": "intent"})
    assert trio.current_time() - start == 2.5
    async with aclosing(slow.stream_text(system=None, prompt="a b c d e f g h i")) as stream:
        chunks = [chunk async for chunk in stream]
    assert len(chunks) > 1
    assert trio.current_time() - start == 5.0


def test_build_provider_passes_the_latency_setting() -> None:
    provider = build_provider(Settings(offline_latency_ms=250))
    assert isinstance(provider.inner, OfflineProvider)
    assert provider.inner.latency_s == 0.25
