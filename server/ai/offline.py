"""The offline provider: exact operations only, no network, no key.

The default when no Gemini key is configured. It never fakes work. It works from the call's
``hints`` (see ``server.ai.provider.Hints``):
- ``task=intent`` / ``plan``: the grammar of ``server.ai.offline_rules``; a request it cannot
  carry out exactly raises ``ModelRequired`` (422 ``model_required``) at planning;
- ``task=edit`` (``ai.edit`` in a user-given plan): exact instructions only, else
  ``ModelError("model_required")`` and the step fails without writing;
- ``ai.generate`` in a user-given plan: a deterministic text labelled as a simulation.
``latency_s`` simulates a model's latency once per call (benchmarks; default 0).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from server.ai import offline_rules, offline_text
from server.errors import ModelError

if TYPE_CHECKING:
    from server.ai.provider import Hints


_cpu_limiter = trio.CapacityLimiter(2)
T = TypeVar("T")
# Inputs up to this many characters are handled on the event loop: tens of microseconds,
# less than the thread hop itself (and the hop queues behind a 2-thread limiter: a wave of
# ten short ai.generate steps waited on it in the workflow bench).
INLINE_CHARS = 2048


async def _off_loop(size: int, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Parsing a 20k-character request or rewriting a file is CPU work: off the event loop;
    an input of at most ``INLINE_CHARS`` (``size``) is done in place."""
    if size <= INLINE_CHARS:
        await trio.lowlevel.checkpoint()
        return fn(*args, **kwargs)
    return await trio.to_thread.run_sync(
        partial(fn, *args, **kwargs), limiter=_cpu_limiter, abandon_on_cancel=True
    )


class OfflineProvider:
    name = "offline"

    def __init__(self, *, latency_s: float = 0.0, words_per_chunk: int = 4) -> None:
        self.latency_s = latency_s
        self.words_per_chunk = words_per_chunk

    async def _latency(self) -> None:
        if self.latency_s > 0:
            await trio.sleep(self.latency_s)
        else:
            await trio.lowlevel.checkpoint()

    async def generate_json(
        self, *, system: str, prompt: str, schema: dict[str, Any], hints: Hints | None = None
    ) -> dict[str, Any]:
        await self._latency()
        hints = hints or {}
        files = [f for f in hints.get("files", []) if isinstance(f, str)]
        request = str(hints.get("prompt", prompt))
        task = hints.get("task")
        if task == "intent":
            size = len(request) + sum(map(len, files))
            return await _off_loop(size, offline_rules.classify, request, files)
        if task == "plan":
            intent = hints.get("intent")
            return await _off_loop(
                len(request) + sum(map(len, files)),
                offline_rules.plan_for,
                intent if isinstance(intent, Mapping) else {},
                request,
                files,
            )
        raise ModelError(
            "model_unsupported",
            f"The offline provider cannot answer a structured request of task {task!r}.",
        )

    async def stream_text(
        self, *, system: str | None, prompt: str, hints: Hints | None = None
    ) -> AsyncGenerator[str, None]:
        await self._latency()
        hints = hints or {}
        size = len(prompt) + sum(len(v) for v in hints.values() if isinstance(v, str))
        text = await _off_loop(size, self.text_for, system=system, prompt=prompt, hints=hints)
        for chunk in offline_text.chunks(text, self.words_per_chunk):
            await trio.lowlevel.checkpoint()
            yield chunk

    def text_for(self, *, system: str | None, prompt: str, hints: Hints) -> str:
        """Raises ``ModelError("model_required")`` for an edit it cannot do exactly."""
        if hints.get("task") == "edit":
            return offline_text.edited(
                str(hints["path"]), str(hints["content"]), str(hints["instruction"])
            )
        return offline_text.simulation(str(hints.get("prompt", prompt)))

    async def aclose(self) -> None:
        return None
