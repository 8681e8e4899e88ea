"""Which model provider the process uses: the one place that knows every implementation.

``build_provider`` picks Gemini or the offline provider from the settings (as
``server.store.factory`` picks the store), so that ``server.ai.provider`` (the seam) imports
no implementation and the implementations import only the seam.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import trio_asyncio  # noqa: F401  (before httpx/google-genai: it patches asyncio's loop lookup)

from server.ai.provider import LimitedProvider, ModelCallObserver
from server.ai.usage import TokenObserver
from server.fairness import FairLimiter

if TYPE_CHECKING:
    from server.ai.provider import HttpClientFactory, ModelProvider
    from server.config import Settings


class ProviderObserver(ModelCallObserver, TokenObserver, Protocol):
    """Told of every model call and of the tokens it spent (``Metrics``)."""


def build_provider(
    settings: Settings,
    *,
    limiter: FairLimiter | None = None,
    http_client_factory: HttpClientFactory | None = None,
    observer: ProviderObserver | None = None,
) -> LimitedProvider:
    """Gemini when ``settings.gemini_api_key`` is set, else the offline provider.

    google-genai is imported only on the Gemini path (it costs ~50 MB and ~1 s). The result
    bounds calls in flight by ``limiter`` (default: ``settings.ai_concurrency``). The caller
    owns the provider and must ``await provider.aclose()`` at shutdown.
    """
    inner: ModelProvider
    if settings.gemini_api_key:
        from server.ai.gemini import GeminiProvider

        inner = GeminiProvider(settings, http_client_factory=http_client_factory, observer=observer)
    else:
        from server.ai.offline import OfflineProvider

        inner = OfflineProvider(latency_s=settings.offline_latency_ms / 1000.0)
    limiter = limiter or FairLimiter(settings.ai_concurrency)
    return LimitedProvider(inner, limiter, observer)
