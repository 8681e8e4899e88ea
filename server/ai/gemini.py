"""The Gemini provider, through google-genai on plain trio.

Owns one process-wide ``genai.Client`` built on an ``httpx.AsyncClient`` this object creates
and closes (google-genai needs a caller-made async client to run outside asyncio, and a
per-request client would leak into the garbage collector's hands). Import this module only
when Gemini is configured: it imports google-genai (~50 MB, ~1 s).

Every call is bounded by ``settings.ai_timeout_s`` as a whole (retries and stream included,
``trio.fail_at`` around each await, never across a ``yield``). The SDK's own retries are
switched off explicitly; this provider retries transient failures itself (``RetryPolicy``)
so that a ``Retry-After`` header is honoured. Errors surface as ``ModelError``.

Token usage: every answered call's usage metadata (prompt, candidate and thought tokens; for a
stream, the last chunk's, which is cumulative) goes to ``server.ai.usage.record`` (the meters
open in the calling task) and to the ``TokenObserver`` (Prometheus counters), by model.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import trio
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from server.ai import usage
from server.ai.retry import TRANSIENT_STATUSES, RetryPolicy, parse_retry_after
from server.errors import ModelError

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

    from server.ai.provider import Hints, HttpClientFactory
    from server.ai.usage import TokenObserver
    from server.config import Settings

T = TypeVar("T")
_Chunk = types.GenerateContentResponse
API_VERSION = "v1beta"


def default_http_client(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.ai_timeout_s, connect=min(10.0, settings.ai_timeout_s)),
        limits=httpx.Limits(
            max_connections=max(4, settings.ai_concurrency * 2),
            max_keepalive_connections=max(2, settings.ai_concurrency),
        ),
    )


class GeminiProvider:
    """``ModelProvider`` over the Gemini API. One instance per process; ``aclose`` at exit."""

    name = "gemini"

    def __init__(
        self,
        settings: Settings,
        *,
        http_client_factory: HttpClientFactory | None = None,
        retry: RetryPolicy | None = None,
        observer: TokenObserver | None = None,
    ) -> None:
        if not settings.gemini_api_key:
            raise ValueError("GeminiProvider needs settings.gemini_api_key")
        self.model = settings.gemini_model
        self.timeout_s = settings.ai_timeout_s
        self.retry = retry or RetryPolicy()
        self.observer = observer
        self._http = http_client_factory() if http_client_factory else default_http_client(settings)
        options = types.HttpOptions(
            api_version=API_VERSION,
            timeout=int(settings.ai_timeout_s * 1000),
            httpx_async_client=self._http,
            retry_options=types.HttpRetryOptions(attempts=1),  # retries are ours: see RetryPolicy
        )
        if settings.gemini_base_url:
            options.base_url = settings.gemini_base_url
        self._client = genai.Client(api_key=settings.gemini_api_key, http_options=options)
        self._closed = False

    async def generate_json(
        self, *, system: str, prompt: str, schema: dict[str, Any], hints: Hints | None = None
    ) -> dict[str, Any]:
        config = types.GenerateContentConfig(
            system_instruction=system,
            response_mime_type="application/json",
            response_json_schema=schema,
            temperature=0.2,
        )
        deadline = trio.current_time() + self.timeout_s

        async def call() -> types.GenerateContentResponse:
            return await self._client.aio.models.generate_content(
                model=self.model, contents=prompt, config=config
            )

        response = await self._with_retries(call, deadline)
        self._record_usage(response.usage_metadata)
        text = response.text
        if not text:
            raise ModelError("model_empty_response", _empty_reason(response))
        try:
            value = json.loads(text)
        except ValueError:
            raise ModelError(
                "model_invalid_output",
                f"Gemini answered with text that is not JSON: {text[:200]!r}",
            ) from None
        if not isinstance(value, dict):
            raise ModelError(
                "model_invalid_output", "Gemini answered with JSON that is not an object"
            )
        return value

    async def stream_text(
        self, *, system: str | None, prompt: str, hints: Hints | None = None
    ) -> AsyncGenerator[str, None]:
        config = types.GenerateContentConfig(system_instruction=system) if system else None
        deadline = trio.current_time() + self.timeout_s

        async def start() -> tuple[AsyncIterator[_Chunk], _Chunk | None]:
            # The SDK sends the request lazily: an HTTP error (429...) arrives with the
            # first chunk, so "starting" includes it and is what gets retried.
            stream = await self._client.aio.models.generate_content_stream(
                model=self.model, contents=prompt, config=config
            )
            try:
                return stream, await anext(stream)
            except StopAsyncIteration:
                return stream, None
            except BaseException:
                await _close_stream(stream)
                raise

        stream, first = await self._with_retries(start, deadline)
        metadata: types.GenerateContentResponseUsageMetadata | None = None
        try:
            chunk = first
            while chunk is not None:
                metadata = chunk.usage_metadata or metadata
                if chunk.text:
                    yield chunk.text
                try:
                    with trio.fail_at(deadline):
                        chunk = await anext(stream)
                except StopAsyncIteration:
                    chunk = None
                except trio.TooSlowError:
                    raise self._timeout_error() from None
                except (genai_errors.APIError, httpx.HTTPError) as exc:
                    raise map_error(exc, self.model) from exc
        finally:
            self._record_usage(metadata)  # what was spent, even when the stream broke off
            await _close_stream(stream)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._client.close()  # the SDK's sync httpx client; ours is closed below
        await self._http.aclose()

    # -- internals --------------------------------------------------------------------------
    def _record_usage(self, metadata: types.GenerateContentResponseUsageMetadata | None) -> None:
        spent = usage_of(metadata)
        if spent is None:
            return
        usage.record(self.model, spent)
        if self.observer is not None:
            self.observer.model_tokens(self.model, spent)

    def _timeout_error(self) -> ModelError:
        return ModelError(
            "model_timeout",
            f"Gemini did not answer within {self.timeout_s:g} s.",
            retryable=True,
        )

    async def _with_retries(self, call: Callable[[], Awaitable[T]], deadline: float) -> T:
        """Run ``call`` until it succeeds, fails permanently, runs out of attempts or time."""
        attempt = 0
        while True:
            attempt += 1
            try:
                with trio.fail_at(deadline):
                    return await call()
            except trio.TooSlowError:
                raise self._timeout_error() from None
            except (genai_errors.APIError, httpx.HTTPError) as exc:
                error = map_error(exc, self.model)
                error.__cause__ = exc
            if not error.retryable or attempt >= self.retry.attempts:
                raise error
            delay = self.retry.delay(attempt, error.retry_after)
            if trio.current_time() + delay >= deadline:
                raise error  # the caller's deadline comes first; retry_after tells when
            await trio.sleep(delay)


async def _close_stream(stream: AsyncIterator[Any]) -> None:
    """Close the SDK's stream generator, even from a cancelled scope (bounded)."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        with trio.move_on_after(1) as scope:
            scope.shield = True
            await aclose()


def usage_of(
    metadata: types.GenerateContentResponseUsageMetadata | None,
) -> usage.TokenUsage | None:
    """One answered call's tokens from Gemini's usage metadata (None: none reported)."""
    if metadata is None:
        return None
    return usage.TokenUsage(
        prompt=metadata.prompt_token_count or 0,
        candidates=metadata.candidates_token_count or 0,
        thoughts=metadata.thoughts_token_count or 0,
        calls=1,
    )


def _empty_reason(response: types.GenerateContentResponse) -> str:
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        return f"Gemini blocked the prompt ({feedback.block_reason})."
    candidates = response.candidates or []
    if candidates and candidates[0].finish_reason is not None:
        return f"Gemini returned no text (finish reason {candidates[0].finish_reason})."
    return "Gemini returned no text."


def map_error(exc: Exception, model: str) -> ModelError:
    """An SDK or transport error as a ``ModelError``: 429/5xx/network transient, 4xx permanent."""
    if isinstance(exc, httpx.TimeoutException):
        return ModelError("model_timeout", f"Gemini timed out: {exc!r}", retryable=True)
    if isinstance(exc, httpx.HTTPError):
        return ModelError("model_unavailable", f"Could not reach Gemini: {exc!r}", retryable=True)
    assert isinstance(exc, genai_errors.APIError)
    code = int(exc.code or 0)
    detail = f"{code} {exc.status or ''}".strip() + (f": {exc.message}" if exc.message else "")
    headers = getattr(getattr(exc, "response", None), "headers", None)
    retry_after = parse_retry_after(headers.get("retry-after")) if headers is not None else None
    if code == 429:
        return ModelError(
            "model_rate_limited",
            f"Gemini rate limit or quota exceeded ({detail}).",
            retryable=True,
            retry_after=retry_after,
            status=code,
        )
    if code in TRANSIENT_STATUSES:
        return ModelError(
            "model_unavailable",
            f"Gemini is unavailable ({detail}).",
            retryable=True,
            retry_after=retry_after,
            status=code,
        )
    if code in (401, 403):
        return ModelError(
            "model_unauthorized",
            f"Gemini refused the API key ({detail}). Check STRETTO_GEMINI_API_KEY.",
            status=code,
        )
    if code == 404:
        return ModelError(
            "model_not_found",
            f"Gemini does not know the model {model!r} ({detail}). Check STRETTO_GEMINI_MODEL.",
            status=code,
        )
    if code == 400:
        return ModelError(
            "model_bad_request", f"Gemini rejected the request ({detail}).", status=code
        )
    return ModelError(
        "model_error", f"Gemini failed ({detail}).", retryable=code >= 500, status=code
    )
