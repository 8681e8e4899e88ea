"""The offline provider: the grammar of exact operations, plans of exact tools only,
``model_required`` for everything else, strict ``ai.edit``, labelled ``ai.generate``."""

from __future__ import annotations

from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from server.ai import offline_rules, offline_text
from server.ai.factory import build_provider
from server.ai.offline import OfflineProvider
from server.ai.offline_grammar import Operation, parse
from server.ai.offline_tokens import tokenize
from server.ai.prompts import INTENT_SCHEMA
from server.config import Settings
from server.errors import ModelError, ModelRequired
from server.workflow.plan import parse_plan
from server.workflow.tools.vfs_tools import compile_pattern

if TYPE_CHECKING:
    from server.workflow.tools.registry import ToolRegistry

FILES = ["src/app.js", "src/routes/users.js", "src/utils.js", "README.md", "docs/guide.md"]

OPERATIONS: list[tuple[str, Operation]] = [
    ('find "TODO" in src/', Operation("search", old="TODO", targets=("src/",))),
    ('"TODO" 검색해줘', Operation("search", old="TODO")),
    ('grep for regex "a.*b"', Operation("search", old="a.*b", regex=True)),
    ("where is formatName used?", Operation("search", old="formatName")),
    ('Replace "foo" with "bar" in src/', Operation("replace", "foo", "bar", ("src/",))),
    (
        'src/app.js에서 "3000"을 "8080"으로 바꿔줘',
        Operation("replace", "3000", "8080", ("src/app.js",)),
    ),
    ("rename getUser to fetchUser", Operation("rename", "getUser", "fetchUser")),
    ("src/에서 foo를 bar로 이름 바꿔줘", Operation("rename", "foo", "bar", ("src/",))),
    (
        "could you rename `a1` to `b2` in src/utils.js please",
        Operation("rename", "a1", "b2", ("src/utils.js",)),
    ),
    ("move src/utils.js to lib/", Operation("move", targets=("src/utils.js",), dest="lib/")),
    (
        "README.md를 docs/README.md로 옮겨줘",
        Operation("move", targets=("README.md",), dest="docs/README.md"),
    ),
    (
        "delete src/utils.js and README.md",
        Operation("delete", targets=("src/utils.js", "README.md")),
    ),
    ("utils.js 파일 삭제해줘", Operation("delete", targets=("utils.js",))),
    ("list the files in src/", Operation("list", targets=("src/",))),
    ("파일 목록 보여줘", Operation("list")),
    (
        'create notes/todo.md containing "buy milk"',
        Operation("create", targets=("notes/todo.md",), content="buy milk\n"),
    ),
    (
        "create a.py:\n```python\nprint(1)\n```",
        Operation("create", targets=("a.py",), content="print(1)\n"),
    ),
    ("create an empty file tmp/x.txt", Operation("create", targets=("tmp/x.txt",), content="")),
    ('"hi" 내용으로 b.md 파일 만들어줘', Operation("create", targets=("b.md",), content="hi\n")),
    ("summarize the project", Operation("summary")),
    ("프로젝트 요약해줘", Operation("summary")),
    ("summarize src/", Operation("summary", targets=("src/",))),
]

NEEDS_A_MODEL = [
    "refactor src/utils.js",
    "remove the console.log calls from src/app.js",  # not "remove src/app.js"
    "delete the unused imports in src/app.js",
    "rename variables in src/app.js to be clearer",
    'replace "a" with something better',
    "create docs/architecture.md describing the architecture",
    "explain src/app.js",
    "Write a haiku about autumn",
    "src/app.js에 로깅 추가해줘",
    "foo를 bar로 바꿔줘",  # bare words, no 이름: ambiguous, not guessed
    "see https://example.com/a.md and delete it",
    "hello there",
    "⟨Q0⟩ 검색해줘",  # the grammar's own placeholder brackets are refused, not interpreted
]


@pytest.mark.parametrize(("prompt", "operation"), OPERATIONS)
def test_the_grammar_reads_exact_operations(prompt: str, operation: Operation) -> None:
    assert parse(prompt, FILES) == operation


@pytest.mark.parametrize("prompt", NEEDS_A_MODEL)
def test_anything_else_needs_a_model(prompt: str, registry: ToolRegistry) -> None:
    assert parse(prompt, FILES) is None
    assert offline_rules.classify(prompt, FILES)["intent"] == "unknown"
    with pytest.raises(ModelRequired) as caught:
        offline_rules.plan_for({}, prompt, FILES)
    assert caught.value.status == 422
    assert caught.value.code == "model_required"
    assert "STRETTO_GEMINI_API_KEY" in caught.value.message


@pytest.mark.parametrize(("prompt", "operation"), OPERATIONS)
async def test_every_operation_gets_a_valid_plan_of_exact_tools(
    offline: OfflineProvider, registry: ToolRegistry, prompt: str, operation: Operation
) -> None:
    hints: dict[str, Any] = {"task": "intent", "prompt": prompt, "files": FILES}
    intent = await offline.generate_json(system="", prompt=prompt, schema={}, hints=hints)
    assert set(intent) == set(INTENT_SCHEMA["required"])
    assert intent["intent"] != "unknown"
    plan_json = await offline.generate_json(
        system="", prompt=prompt, schema={}, hints={**hints, "task": "plan", "intent": intent}
    )
    plan = parse_plan(plan_json, registry, max_steps=100)
    tools = {step.tool for step in plan.steps}
    assert not tools & {"ai.generate", "ai.edit"}
    assert all(not step.needs for step in plan.steps)


def test_paths_resolve_against_the_project() -> None:
    plan = offline_rules.plan_for({}, "utils.js 파일 삭제해줘", FILES)
    assert plan["steps"] == [
        {"id": "delete", "tool": "vfs.delete", "args": {"path": "src/utils.js"}, "needs": []}
    ]
    plan = offline_rules.plan_for({}, 'routes 폴더에서 "x" 찾아줘', FILES)
    assert plan["steps"][0]["args"] == {"pattern": "x", "prefix": "src/routes/"}
    plan = offline_rules.plan_for({}, "move src/utils.js to lib/", FILES)
    assert plan["steps"][0]["args"] == {"from": "src/utils.js", "to": "lib/utils.js"}


def test_replace_in_a_folder_is_one_step_per_file() -> None:
    plan = offline_rules.plan_for({}, 'replace "a" with "b" in src/', FILES)
    assert [(s["id"], s["args"]) for s in plan["steps"]] == [
        ("replace_1", {"old": "a", "new": "b", "path": "src/app.js"}),
        ("replace_2", {"old": "a", "new": "b", "path": "src/routes/users.js"}),
        ("replace_3", {"old": "a", "new": "b", "path": "src/utils.js"}),
    ]
    many = [f"f{i}.txt" for i in range(300)]  # a listing this long may be cut: one prefix step
    plan = offline_rules.plan_for({}, 'replace "a" with "b"', many)
    assert [s["args"] for s in plan["steps"]] == [{"old": "a", "new": "b"}]


@pytest.mark.parametrize("text", ["a.b", "(x)", "[1]+{2}", "a|b^$", "back\\slash", "q?*"])
def test_literal_searches_are_escaped_for_re2(text: str) -> None:
    pattern = offline_rules.re2_escape(text)
    assert compile_pattern(pattern).search(f"before {text} after")
    assert not compile_pattern(pattern).search(text[:-1] + "\n")


def test_quoted_text_and_urls_are_never_paths() -> None:
    tokens = tokenize('create v.txt containing "version 1.2 of a/b.md"', [])
    assert tokens.paths == ["v.txt"]
    assert tokens.literals == ["version 1.2 of a/b.md"]
    assert tokenize("see https://example.com/x.html", []).paths == []


@pytest.mark.parametrize(
    ("instruction", "before", "after"),
    [
        ('replace "foo" with "bar"', "foo = foo()\n", "bar = bar()\n"),
        ('"foo"를 "bar"로 바꿔줘', "foo\n", "bar\n"),
        ('append "# end"', "x = 1", "x = 1\n# end\n"),
        ('add "#!/bin/sh" at the top', "echo hi\n", "#!/bin/sh\necho hi\n"),
        ('prepend "a"', "b\n", "a\nb\n"),
        ('끝에 "# 끝" 추가해줘', "x\n", "x\n# 끝\n"),
    ],
)
def test_exact_edit_instructions(instruction: str, before: str, after: str) -> None:
    assert offline_text.edited("f.py", before, instruction) == after


@pytest.mark.parametrize(
    "instruction",
    ["make it uppercase", "tidy it up", 'replace "a" with "b" and fix the bugs', "add logging"],
)
def test_other_edit_instructions_need_a_model(instruction: str) -> None:
    with pytest.raises(ModelError) as caught:
        offline_text.edited("f.py", "x = 1\n", instruction)
    assert caught.value.code == "model_required"
    assert not caught.value.retryable


_WORDS = st.sampled_from(
    ["rename", "to", "in", "find", "delete", "src/", "a.js", '"x"', "'y'", "`z`", "를", "로",
     "이름", "바꿔줘", "삭제해줘", "```\nq\n```", "with", "containing", "⟨Q0⟩", "and", ","]
)  # fmt: skip


@given(st.one_of(st.text(), st.lists(_WORDS, max_size=12).map(" ".join)))
def test_any_request_parses_or_needs_a_model_never_crashes(prompt: str) -> None:
    operation = parse(prompt, FILES)
    if operation is None:
        with pytest.raises(ModelRequired):
            offline_rules.plan_for({}, prompt, FILES)
    else:
        assert offline_rules.plan_for({}, prompt, FILES)["steps"]
    error: ModelError | None = None
    try:
        offline_text.edited("f.txt", "x\n", prompt)
    except ModelError as exc:
        error = exc
    assert error is None or error.code == "model_required"


@given(st.text())
def test_chunks_give_the_text_back(text: str) -> None:
    assert "".join(offline_text.chunks(text)) == text


async def test_generate_streams_a_labelled_simulation(offline: OfflineProvider) -> None:
    hints = {"task": "generate", "prompt": "a poem about trio"}
    async with aclosing(offline.stream_text(system=None, prompt="x", hints=hints)) as stream:
        chunks = [chunk async for chunk in stream]
    assert len(chunks) > 1
    text = "".join(chunks)
    assert text.startswith(offline_text.SIMULATION_LABEL)
    assert "a poem about trio" in text


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
