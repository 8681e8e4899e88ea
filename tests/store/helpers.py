"""Small helpers shared by the store contract tests."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from server.store.models import FileLimits

if TYPE_CHECKING:
    from server.events.model import StoredEvent
    from server.store.models import FileMeta
    from server.store.protocol import Store

LIMITS = FileLimits(max_file_bytes=1000, max_files=50, max_total_bytes=10_000)


async def put(
    store: Store,
    project_id: str,
    path: str,
    content: bytes = b"x",
    *,
    limits: FileLimits = LIMITS,
    if_match: int | None = None,
    if_none_match_any: bool = False,
) -> tuple[FileMeta, bool, StoredEvent]:
    """``put_file`` with the test limits and a real sha256."""
    return await store.put_file(
        project_id,
        path,
        content,
        content_type="text/plain",
        sha256=hashlib.sha256(content).hexdigest(),
        limits=limits,
        if_match=if_match,
        if_none_match_any=if_none_match_any,
    )


def data(event: StoredEvent) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(event.data)
    return decoded
