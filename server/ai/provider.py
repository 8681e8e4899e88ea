"""The model provider seam: what the planner and the AI tools ask of a model.

Two real implementations: ``GeminiProvider`` (google-genai, imported only when an API key
is configured) and ``OfflineProvider`` (deterministic rules and templates, no network).
``server.ai.factory.build_provider`` picks one from the settings and wraps it in
``LimitedProvider``, which holds the process-wide bound on model calls in flight, shared
fairly between users (``server.fairness``: the caller's user is ``acting_user``).

Errors: providers raise ``ModelError`` only (``server.errors``; the same class as
``ToolError``). ``retryable`` marks transient failures (429, 503 and other 5xx, timeouts,
connection failures); ``retry_after`` carries the server's ``Retry-After``. The planner
turns a ``ModelError`` into an ``AppError`` with ``to_app_error``; the AI tools let it pass
to the executor unchanged.

Streaming: ``stream_text`` is an async generator. Callers must close it deterministically
(``async with contextlib.aclosing(provider.stream_text(...)) as chunks``), from the task
that iterates it, so that a cancelled run closes the HTTP request at once.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import trio

from server.errors import AppError, ModelError
from server.fairness import FairLimiter, acting_user

if TYPE_CHECKING:
    import httpx


Hints = Mapping[str, Any]
"""Structured facts a prompt was built from (``task``: intent, plan, generate, edit; the user
request, file listing, file content...). A model reads the prompt and ignores hints; the
offline provider works from the hints alone."""


class ModelProvider(Protocol):
    """A language model. Implementations are safe to share between concurrent tasks."""

    name: str

    async def generate_json(
        self, *, system: str, prompt: str, schema: dict[str, Any], hints: Hints | None = None
    ) -> dict[str, Any]:
        """Structured output: a JSON object meant to follow ``schema`` (callers validate it).

        Raises ``ModelError`` (``model_invalid_output`` when the answer is not a JSON object).
        """
        ...

    def stream_text(
        self, *, system: str | None, prompt: str, hints: Hints | None = None
    ) -> AsyncGenerator[str, None]:
        """Text chunks as they arrive. Raises ``ModelError``. Close it with ``aclosing``."""
        ...

    async def aclose(self) -> None:
        """Release the provider's connections. Idempotent."""
        ...


class ModelCallObserver(Protocol):
    """Told of every finished model call (``server.observability.metrics.Metrics``)."""

    def model_call(
        self, provider: str, operation: str, seconds: float, error_code: str | None = None
    ) -> None: ...


class LimitedProvider:
    """Wraps a provider so that at most ``limiter.total_tokens`` model calls run at once.

    A streaming call holds its slot until the stream is closed. A freed slot goes to the
    waiting user holding the fewest (``acting_user``: the run's owner; ``""`` outside runs).
    """

    def __init__(
        self,
        inner: ModelProvider,
        limiter: FairLimiter,
        observer: ModelCallObserver | None = None,
    ) -> None:
        self.inner = inner
        self.limiter = limiter
        self.name = inner.name
        self.observer = observer

    def _observe(self, operation: str, started: float, error: BaseException | None) -> None:
        if self.observer is None:
            return
        code = None
        if error is not None:
            code = error.code if isinstance(error, ModelError) else type(error).__name__
        self.observer.model_call(self.name, operation, trio.current_time() - started, code)

    async def generate_json(
        self, *, system: str, prompt: str, schema: dict[str, Any], hints: Hints | None = None
    ) -> dict[str, Any]:
        async with self.limiter.slot(acting_user.get()):
            started = trio.current_time()
            try:
                result = await self.inner.generate_json(
                    system=system, prompt=prompt, schema=schema, hints=hints
                )
            except Exception as exc:
                self._observe("generate_json", started, exc)
                raise
            self._observe("generate_json", started, None)
            return result

    async def stream_text(
        self, *, system: str | None, prompt: str, hints: Hints | None = None
    ) -> AsyncGenerator[str, None]:
        async with self.limiter.slot(acting_user.get()):
            started = trio.current_time()
            stream = self.inner.stream_text(system=system, prompt=prompt, hints=hints)
            try:
                async for chunk in stream:
                    yield chunk
            except Exception as exc:
                self._observe("stream_text", started, exc)
                raise
            else:
                self._observe("stream_text", started, None)
            finally:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()

    async def aclose(self) -> None:
        await self.inner.aclose()


class ModelUnavailable(AppError):
    """A transient model failure surfaced through the API (planning only)."""

    status = 503
    code = "model_unavailable"
    default_message = "The model is unavailable; try again later."

    def __init__(
        self,
        message: str | None = None,
        details: Mapping[str, Any] | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, details)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        seconds = 1.0 if self.retry_after is None else self.retry_after
        return {"Retry-After": str(max(1, round(seconds + 0.4999)))}


class ModelFailed(AppError):
    """A permanent model failure (bad request, refused key, unusable answer)."""

    status = 502
    code = "model_error"
    default_message = "The model could not handle the request."


def to_app_error(error: ModelError) -> AppError:
    details: dict[str, Any] = {"model_code": error.code}
    if error.status is not None:
        details["model_status"] = error.status
    if error.retryable:
        return ModelUnavailable(error.message, details, retry_after=error.retry_after)
    return ModelFailed(error.message, details)


HttpClientFactory = Callable[[], "httpx.AsyncClient"]
