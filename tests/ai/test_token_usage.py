"""Token accounting: Gemini's usage metadata per call, per step, per run, as Prometheus
counters, and the per-user daily token budget (429 before any model call)."""

from __future__ import annotations

import json
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from server.ai import usage
from server.ai.budget import TokenBudget
from server.ai.gemini import GeminiProvider
from server.ai.usage import TokenUsage, UsageMeter
from server.errors import RateLimited
from tests.ai.conftest import FAST_RETRY, gemini_settings
from tests.ai.fake_gemini import PROMPT_TOKENS, candidate_tokens, json_reply, text_reply
from tests.ai.test_e2e_prompt_runs import gemini_overrides, httpx_client, run_prompt
from tests.fixtures.server import create_project, register_user

if TYPE_CHECKING:
    from tests.ai.fake_gemini import FakeGemini
    from tests.fixtures.server import StartServer

SCHEMA = {"type": "object"}
INTENT = {"intent": "create_file", "confidence": 0.9, "summary": "s", "targets": ["a.txt"]}


@dataclass
class Observed:
    calls: list[tuple[str, TokenUsage]] = field(default_factory=list)

    def model_tokens(self, model: str, spent: TokenUsage) -> None:
        self.calls.append((model, spent))


# -- the budget (pure) ------------------------------------------------------------------------
def test_budget_is_off_by_default_and_counts_per_user_and_day() -> None:
    TokenBudget(0).check("u")  # off: never limits
    now = [datetime(2026, 11, 30, 23, 59, 0, tzinfo=UTC)]
    budget = TokenBudget(100, now=lambda: now[0])
    budget.spend("u", 99)
    budget.check("u")
    budget.spend("u", 1)
    budget.check("v")  # another user's budget is their own
    with pytest.raises(RateLimited) as caught:
        budget.check("u")
    assert caught.value.status == 429
    assert caught.value.code == "rate_limited"
    assert caught.value.headers() == {"Retry-After": "60"}  # until 00:00 UTC
    assert caught.value.details == {"budget_tokens": 100, "spent_tokens": 100}
    now[0] = datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC)
    budget.check("u")  # a new day
    assert budget.spent("u") == 0


def test_meters_nest_and_see_only_their_block() -> None:
    outer, inner = UsageMeter(), UsageMeter()
    usage.record("m", TokenUsage(1, 1, 1, 1))  # no meter open: nobody counts it
    with usage.metering(outer):
        usage.record("m", TokenUsage(1, 2, 3, 1))
        with usage.metering(inner):
            usage.record("n", TokenUsage(10, 0, 0, 1))
    usage.record("m", TokenUsage(5, 5, 5, 1))
    assert outer.total() == TokenUsage(11, 2, 3, 2)
    assert inner.to_json() == {
        "prompt_tokens": 10,
        "candidate_tokens": 0,
        "thought_tokens": 0,
        "total_tokens": 10,
        "model_calls": 1,
        "models": {
            "n": {
                "prompt_tokens": 10,
                "candidate_tokens": 0,
                "thought_tokens": 0,
                "total_tokens": 10,
                "model_calls": 1,
            }
        },
    }


# -- the provider: the real SDK against the fake server --------------------------------------
async def test_gemini_reports_the_usage_of_each_call(fake_gemini: FakeGemini) -> None:
    observed = Observed()
    provider = GeminiProvider(gemini_settings(fake_gemini), retry=FAST_RETRY, observer=observed)
    try:
        fake_gemini.script(json_reply({"a": 1}, thoughts=7), text_reply("abcd", "efgh", thoughts=3))
        meter = UsageMeter()
        with usage.metering(meter):
            await provider.generate_json(system="s", prompt="p", schema=SCHEMA)
            async with aclosing(provider.stream_text(system=None, prompt="p")) as chunks:
                text = "".join([chunk async for chunk in chunks])
    finally:
        await provider.aclose()
    assert text == "abcdefgh"
    first = TokenUsage(PROMPT_TOKENS, candidate_tokens('{"a": 1}'), 7, 1)
    second = TokenUsage(PROMPT_TOKENS, candidate_tokens("abcdefgh"), 3, 1)  # the last chunk's
    assert observed.calls == [("gemini-test", first), ("gemini-test", second)]
    total = TokenUsage()
    total.add(first)
    total.add(second)
    assert meter.by_model == {"gemini-test": total}


# -- end to end: events, run metrics, /metrics, the budget -----------------------------------
PLAN = {
    "steps": [
        {"id": "draft", "tool": "ai.generate", "args": {"prompt": "a line"}, "needs": []},
        {
            "id": "save",
            "tool": "vfs.write",
            "args": {"path": "a.txt", "content": "{{steps.draft.output.text}}"},
            "needs": ["draft"],
        },
    ]
}


def _usage(prompt: int, candidates: int, thoughts: int, calls: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "candidate_tokens": candidates,
        "thought_tokens": thoughts,
        "total_tokens": prompt + candidates + thoughts,
        "model_calls": calls,
    }


async def test_usage_on_step_events_run_metrics_and_prometheus(
    start_server: StartServer, fake_gemini: FakeGemini
) -> None:
    server = await start_server(**gemini_overrides(fake_gemini))
    fake_gemini.script(
        json_reply(INTENT, thoughts=5),
        json_reply(PLAN, thoughts=6),
        text_reply("hello ", "world\n", thoughts=2),
    )
    async with httpx_client(server) as client:
        user = await register_user(client)
        pid = await create_project(client, user)
        run, events = await run_prompt(client, user, pid, "write a line into a.txt")
        assert run["status"] == "succeeded", run
        metrics_text = (await client.get("/metrics")).text

    intent_c = candidate_tokens(json.dumps(INTENT))
    plan_c = candidate_tokens(json.dumps(PLAN))
    draft_c = candidate_tokens("hello world\n")
    planning = _usage(2 * PROMPT_TOKENS, intent_c + plan_c, 11, 2)
    draft = _usage(PROMPT_TOKENS, draft_c, 2, 1)
    ended = {d["step_id"]: d for kind, d in events if kind == "step.succeeded"}
    assert {k: v for k, v in ended["draft"]["usage"].items() if k != "models"} == draft
    assert ended["draft"]["usage"]["models"] == {"gemini-test": draft}
    assert "usage" not in ended["save"]  # no model call, no usage
    planned = next(d for kind, d in events if kind == "run.planned")
    assert {k: v for k, v in planned["usage"].items() if k != "models"} == planning
    total = _usage(3 * PROMPT_TOKENS, intent_c + plan_c + draft_c, 13, 3)
    assert {k: v for k, v in run["metrics"]["usage"].items() if k != "models"} == total
    succeeded = next(d for kind, d in events if kind == "run.succeeded")
    assert succeeded["metrics"]["usage"] == run["metrics"]["usage"]
    for kind, count in (
        ("prompt", 3 * PROMPT_TOKENS),
        ("candidates", intent_c + plan_c + draft_c),
        ("thoughts", 13),
    ):
        line = f'stretto_model_tokens_total{{kind="{kind}",model="gemini-test"}} {count}.0'
        assert line in metrics_text, metrics_text


TWO_DRAFTS = {
    "steps": [
        {"id": "one", "tool": "ai.generate", "args": {"prompt": "a"}, "needs": []},
        {
            "id": "two",
            "tool": "ai.generate",
            "args": {"prompt": "b {{steps.one.output.text}}"},
            "needs": ["one"],
        },
    ]
}


async def test_a_spent_daily_budget_answers_429_before_any_model_call(
    start_server: StartServer, fake_gemini: FakeGemini
) -> None:
    planning = 2 * PROMPT_TOKENS + candidate_tokens(json.dumps(INTENT))
    budget = planning + candidate_tokens(json.dumps(PLAN)) + 1  # planning fits, not the run
    server = await start_server(**gemini_overrides(fake_gemini), ai_daily_token_budget=budget)
    fake_gemini.script(json_reply(INTENT), json_reply(PLAN), text_reply("x\n"))
    async with httpx_client(server) as client:
        user = await register_user(client)
        pid = await create_project(client, user)
        run, _ = await run_prompt(client, user, pid, "write a line into a.txt")
        assert run["status"] == "succeeded", run
        calls = len(fake_gemini.requests)
        assert calls == 3

        again = await client.post(
            "/api/workflow/runs",
            json={"project_id": pid, "prompt": "one more"},
            headers=user.headers,
        )
        assert again.status_code == 429, again.text
        assert again.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(again.headers["Retry-After"]) <= 86400
        plan_only = await client.post(
            "/api/workflow/plan", json={"project_id": pid, "prompt": "x"}, headers=user.headers
        )
        assert plan_only.status_code == 429
        assert plan_only.json()["error"]["code"] == "rate_limited"
        with_ai: dict[str, Any] = {"project_id": pid, "plan": PLAN}
        explicit = await client.post("/api/workflow/runs", json=with_ai, headers=user.headers)
        assert explicit.status_code == 429
        assert len(fake_gemini.requests) == calls  # no model call was made

        # A plan without model steps still runs.
        no_ai = {
            "steps": [{"id": "w", "tool": "vfs.write", "args": {"path": "b.txt", "content": "b"}}]
        }
        plain = await client.post(
            "/api/workflow/runs", json={"project_id": pid, "plan": no_ai}, headers=user.headers
        )
        assert plain.status_code == 202

        # Another user has a budget of their own; when it runs out mid-run, the next model
        # step fails with rate_limited instead of calling the model.
        other = await register_user(client)
        other_pid = await create_project(client, other)
        fake_gemini.script(json_reply(INTENT), json_reply(TWO_DRAFTS), text_reply("y\n"))
        run, _ = await run_prompt(client, other, other_pid, "write two lines")
        assert run["status"] == "failed", run
        steps = {s["id"]: s for s in run["steps"]}
        assert steps["one"]["status"] == "succeeded"
        assert steps["two"]["status"] == "failed"
        assert steps["two"]["error"]["code"] == "rate_limited"
        assert len(fake_gemini.requests) == calls + 3  # intent, plan, one: never "two"
