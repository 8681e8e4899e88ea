"""Fixtures of the AI tests: the fake Gemini server, providers, a real file service."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from server.ai.gemini import GeminiProvider
from server.ai.offline import OfflineProvider
from server.ai.retry import RetryPolicy
from server.config import Settings
from server.store.models import FileLimits
from server.vfs.service import FileService
from server.workflow.tools.ai_tools import ai_tools
from server.workflow.tools.defaults import default_registry
from server.workflow.tools.registry import ToolContext, ToolRegistry
from tests.ai.fake_gemini import FakeGemini, open_fake_gemini
from tests.fixtures.postgres import BackendConfig, open_migrated_store

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence
    from pathlib import Path

    from server.events.model import StoredEvent
    from server.store.protocol import Store

FAST_RETRY = RetryPolicy(attempts=3, initial_delay=0.001, max_delay=0.01, jitter=0.0)


def gemini_settings(fake: FakeGemini, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "gemini_api_key": "test-key",
        "gemini_base_url": fake.url,
        "gemini_model": "gemini-test",
        "ai_timeout_s": 10.0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def fake_gemini() -> AsyncIterator[FakeGemini]:
    async with open_fake_gemini() as fake:
        yield fake


@pytest.fixture
async def gemini(fake_gemini: FakeGemini) -> AsyncIterator[GeminiProvider]:
    provider = GeminiProvider(gemini_settings(fake_gemini), retry=FAST_RETRY)
    try:
        yield provider
    finally:
        await provider.aclose()


@pytest.fixture
def offline() -> OfflineProvider:
    return OfflineProvider()


@pytest.fixture
def registry() -> ToolRegistry:
    return default_registry(ai_tools())


@dataclass
class RecordingPublisher:
    """Keeps what is published: committed events and transient ones (``step.delta``)."""

    events: list[StoredEvent] = field(default_factory=list)
    transient: list[dict[str, Any]] = field(default_factory=list)

    def publish(self, events: Sequence[StoredEvent]) -> None:
        self.events.extend(events)

    def publish_transient(self, project_id: str, data: Mapping[str, Any]) -> None:
        self.transient.append(dict(data))

    def deltas(self) -> list[str]:
        return [d["text"] for d in self.transient if d["type"] == "step.delta"]


@dataclass
class Project:
    id: str
    store: Store
    files: FileService
    publisher: RecordingPublisher

    async def put(self, path: str, text: str) -> int:
        meta, _ = await self.files.write(self.id, path, text.encode())
        return meta.version

    async def text(self, path: str) -> str:
        return (await self.files.read(self.id, path)).content.decode()

    def context(self, provider: Any, settings: Settings | None = None) -> ToolContext:
        return ToolContext(
            project_id=self.id,
            run_id="run-1",
            step_id="step-1",
            attempt=1,
            files=self.files,
            publisher=self.publisher,
            provider=provider,
            settings=settings or Settings(),
        )


@pytest.fixture
async def project(tmp_path: Path) -> AsyncIterator[Project]:
    """A project on a real SQLite store, with the real FileService."""
    async with open_migrated_store(BackendConfig("sqlite", None, tmp_path)) as store:
        user = await store.create_user("ai@example.com", None, None)
        created = await store.create_project(user.id, "ai", None)
        publisher = RecordingPublisher()
        limits = FileLimits(max_file_bytes=1 << 20, max_files=1000, max_total_bytes=1 << 24)
        yield Project(created.id, store, FileService(store, publisher, limits), publisher)
