"""The planner: a prompt -> (intent, validated plan). Implements the supervisor's ``RunPlanner``.

Steps: check the prompt budget, list the project's files (bounded), analyze the intent,
load the contents most relevant to the prompt (``relevant_context``, within
``settings.ai_plan_context_bytes``), ask the model for a plan (structured output) given the
file tree and those contents, validate it with ``parse_plan``. An invalid
plan (or an answer that is not JSON) gets one repair round that sends the validator's
problems back to the model; if that plan is invalid too, ``InvalidPlan`` carries them.

Raises: ``ValidationFailed`` (prompt), ``InvalidPlan`` (after the repair round),
``ModelUnavailable`` (503, transient model failure) or ``ModelFailed`` (502, permanent).
Cancellation propagates untouched (the supervisor cancels planning with the run).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from server.ai.budget import check_prompt, project_listing, relevant_context
from server.ai.intent import IntentAnalyzer
from server.ai.prompts import (
    PLAN_SYSTEM,
    context_text,
    listing_text,
    plan_prompt,
    plan_schema,
    repair_prompt,
)
from server.ai.provider import to_app_error
from server.errors import InvalidPlan, ModelError
from server.fairness import FairLimiter, acting_user
from server.workflow.plan import parse_plan

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

    import trio

    from server.ai.budget import ReadableFiles
    from server.ai.provider import ModelProvider
    from server.config import Settings
    from server.workflow.tools.registry import ToolRegistry

log = logging.getLogger("stretto.workflow.planner")


class Planner:
    """Turns prompts into plans with a ``ModelProvider``.

    ``limiter`` (optional) bounds planning sessions in flight; model calls themselves are
    bounded by the provider's own limiter (``LimitedProvider``), so do not pass that one.
    A ``FairLimiter`` shares the sessions between users (``acting_user``: the run's owner).
    """

    def __init__(
        self,
        *,
        provider: ModelProvider,
        files: ReadableFiles,
        registry: ToolRegistry,
        settings: Settings,
        limiter: trio.CapacityLimiter | FairLimiter | None = None,
    ) -> None:
        self.provider = provider
        self.files = files
        self.registry = registry
        self.settings = settings
        self.limiter = limiter
        self.analyzer = IntentAnalyzer(provider)

    async def analyze(self, project_id: str, prompt: str) -> dict[str, Any]:
        """``{intent, confidence, summary, targets}`` for ``prompt`` in this project."""
        async with self._session():
            text = check_prompt(prompt, self.settings.ai_max_prompt_chars)
            listing, total = await project_listing(self.files, project_id)
            return await self._analyze(text, listing, total)

    async def analyze_and_plan(
        self, project_id: str, prompt: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(intent, plan JSON); the plan passed ``parse_plan`` with this registry."""
        async with self._session():
            text = check_prompt(prompt, self.settings.ai_max_prompt_chars)
            listing, total = await project_listing(self.files, project_id)
            intent = await self._analyze(text, listing, total)
            context = await relevant_context(
                self.files, project_id, text, listing, self.settings.ai_plan_context_bytes
            )
            contents = context_text(context.texts, context.omitted)
            plan = await self._plan(text, intent, listing, total, contents)
            return intent, plan

    # -- internals --------------------------------------------------------------------------
    @asynccontextmanager
    async def _session(self) -> AsyncIterator[None]:
        if self.limiter is None:
            yield
        elif isinstance(self.limiter, FairLimiter):
            async with self.limiter.slot(acting_user.get()):
                yield
        else:
            async with self.limiter:
                yield

    async def _analyze(
        self, prompt: str, listing: Sequence[Mapping[str, Any]], total: int | None
    ) -> dict[str, Any]:
        try:
            return await self.analyzer.analyze(prompt, listing, total)
        except ModelError as exc:
            raise to_app_error(exc) from exc

    async def _plan(
        self,
        prompt: str,
        intent: Mapping[str, Any],
        listing: Sequence[Mapping[str, Any]],
        total: int | None,
        contents: str,
    ) -> dict[str, Any]:
        max_steps = self.settings.max_plan_steps
        schema = plan_schema(self.registry.names(), max_steps)
        base = plan_prompt(
            prompt,
            intent,
            listing_text(listing, total),
            self.registry.catalog(),
            max_steps,
            contents,
        )
        hints: dict[str, Any] = {
            "task": "plan",
            "prompt": prompt,
            "intent": dict(intent),
            "files": [item["path"] for item in listing],
        }
        request = base
        problems: dict[str, Any] = {}
        for round_number in (0, 1):
            previous: object
            try:
                raw = await self.provider.generate_json(
                    system=PLAN_SYSTEM, prompt=request, schema=schema, hints=hints
                )
            except ModelError as exc:
                if exc.code != "model_invalid_output":
                    raise to_app_error(exc) from exc
                previous, problems = "(an answer that is not a JSON object)", {"plan": exc.message}
            else:
                try:
                    return parse_plan(raw, self.registry, max_steps).to_json()
                except InvalidPlan as exc:
                    previous, problems = raw, dict(exc.details) or {"plan": exc.message}
            log.info("plan rejected (round %d): %s", round_number, problems)
            request = repair_prompt(base, previous, problems)
            hints = {**hints, "problems": problems}
        first = next(iter(problems), "plan")
        raise InvalidPlan(
            "The model's plan is not valid, even after a repair round: "
            f"{first}: {problems.get(first)}",
            problems,
        )
