"""Token accounting: what each model call cost, attributed to whatever was running it.

Pure bookkeeping, no I/O. A provider reports every answered call with ``record(model,
usage)``. The callers that want to know (the executor around a step attempt, the planner's
caller around planning) open ``metering(meter)`` around their awaits: every call made in that
task (and its async generators) while the block is open is added to each open meter. Meters
nest, so a run's planning meter and a step's meter can both see a call. Nothing is recorded
when no meter is open.

Why a context variable: the provider seam (``ModelProvider``) returns text, not usage, and the
AI tools sit between the executor and the provider; the context carries the meter through
them without changing every signature. Trio gives each task a copy of its parent's context,
so a meter opened in one step's task never sees another step's calls.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

KINDS = ("prompt", "candidates", "thoughts")
"""The token kinds Gemini's usage metadata reports (and the ``kind`` label of the counter)."""


@dataclass
class TokenUsage:
    """Tokens of one or more model calls."""

    prompt: int = 0
    candidates: int = 0
    thoughts: int = 0
    calls: int = 0

    @property
    def total(self) -> int:
        return self.prompt + self.candidates + self.thoughts

    def add(self, other: TokenUsage) -> None:
        self.prompt += other.prompt
        self.candidates += other.candidates
        self.thoughts += other.thoughts
        self.calls += other.calls

    def by_kind(self) -> dict[str, int]:
        return {"prompt": self.prompt, "candidates": self.candidates, "thoughts": self.thoughts}

    def to_json(self) -> dict[str, int]:
        """The ``usage`` object of events and run metrics."""
        return {
            "prompt_tokens": self.prompt,
            "candidate_tokens": self.candidates,
            "thought_tokens": self.thoughts,
            "total_tokens": self.total,
            "model_calls": self.calls,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> TokenUsage:
        """Read back ``to_json`` (a resumed run's stored metrics); junk reads as zero."""
        if not data:
            return cls()

        def num(key: str) -> int:
            value = data.get(key)
            return value if isinstance(value, int) and value >= 0 else 0

        return cls(
            num("prompt_tokens"),
            num("candidate_tokens"),
            num("thought_tokens"),
            num("model_calls"),
        )


@dataclass
class UsageMeter:
    """Accumulates the usage of the calls made while it is open, per model."""

    by_model: dict[str, TokenUsage] = field(default_factory=dict)

    def add(self, model: str, usage: TokenUsage) -> None:
        self.by_model.setdefault(model, TokenUsage()).add(usage)

    def total(self) -> TokenUsage:
        total = TokenUsage()
        for usage in self.by_model.values():
            total.add(usage)
        return total

    def to_json(self) -> dict[str, Any] | None:
        """``{..totals.., "models": {model: {...}}}``, or None when no call was made."""
        if not self.by_model:
            return None
        return {
            **self.total().to_json(),
            "models": {model: usage.to_json() for model, usage in self.by_model.items()},
        }


class TokenObserver(Protocol):
    """Told of every answered model call (``server.observability.metrics.Metrics``)."""

    def model_tokens(self, model: str, usage: TokenUsage) -> None: ...


_meters: ContextVar[tuple[UsageMeter, ...]] = ContextVar("stretto_usage_meters", default=())


@contextmanager
def metering(meter: UsageMeter) -> Iterator[UsageMeter]:
    """Add the usage of every model call made in this task to ``meter`` until the block ends."""
    token = _meters.set((*_meters.get(), meter))
    try:
        yield meter
    finally:
        _meters.reset(token)


def record(model: str, usage: TokenUsage) -> None:
    """A model call was answered: add its usage to every open meter of this task."""
    for meter in _meters.get():
        meter.add(model, usage)
