"""Budgets of one model request: prompt size, context bytes, file listing size.

``check_prompt`` rejects what is too big up front (``ValidationFailed``). ``load_context``
and ``project_listing`` read through the file service and stop at their bound, reporting
what they left out instead of failing. The concurrency budget (model calls in flight) is
``LimitedProvider``'s limiter. ``TokenBudget`` is the per-user daily token budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from server.errors import RateLimited, ValidationFailed
from server.timeutil import utc_now

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from server.store.models import FileData, FileMeta, Page

LISTING_MAX_FILES = 200
LISTING_PAGE = 200
CONTEXT_MAX_FILES = 50


class ReadableFiles(Protocol):
    async def read(self, project_id: str, path: str) -> FileData: ...

    async def list(
        self, project_id: str, prefix: str, limit: int, cursor: str | None
    ) -> Page[FileMeta]: ...


def check_prompt(prompt: object, max_chars: int, field_name: str = "prompt") -> str:
    """The prompt, stripped; ``ValidationFailed`` when missing, empty or too long."""
    if not isinstance(prompt, str):
        raise ValidationFailed("The prompt must be a string.", {field_name: "must be a string"})
    text = prompt.strip()
    if not text:
        raise ValidationFailed("The prompt is empty.", {field_name: "must not be empty"})
    if len(text) > max_chars:
        raise ValidationFailed(
            f"The prompt is longer than {max_chars} characters.",
            {field_name: f"at most {max_chars} characters, got {len(text)}"},
        )
    return text


@dataclass
class Context:
    """Files loaded for a model call. ``omitted``: paths left out (budget, binary)."""

    texts: dict[str, str] = field(default_factory=dict)
    omitted: list[str] = field(default_factory=list)
    bytes_loaded: int = 0


async def load_context(
    files: ReadableFiles, project_id: str, paths: Sequence[str], max_bytes: int
) -> Context:
    """Read ``paths`` in order until ``max_bytes``; later or binary files are omitted.

    A file that does not fit whole is omitted, not cut (a cut file misleads a model).
    Raises the file service's errors (``NotFound``, ``InvalidPath``) for a bad path.
    """
    context = Context()
    for path in list(dict.fromkeys(paths))[:CONTEXT_MAX_FILES]:
        data = await files.read(project_id, path)
        if context.bytes_loaded + len(data.content) > max_bytes:
            context.omitted.append(path)
            continue
        try:
            text = data.content.decode("utf-8")
        except UnicodeDecodeError:
            context.omitted.append(path)
            continue
        context.texts[path] = text
        context.bytes_loaded += len(data.content)
    context.omitted.extend(list(dict.fromkeys(paths))[CONTEXT_MAX_FILES:])
    return context


async def project_listing(
    files: ReadableFiles, project_id: str, max_files: int = LISTING_MAX_FILES
) -> tuple[list[dict[str, Any]], int | None]:
    """The first ``max_files`` files as ``{path, size}``, and the total when all were seen
    (None when the listing was cut)."""
    listing: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = await files.list(project_id, "", min(LISTING_PAGE, max_files), cursor)
        listing.extend({"path": m.path, "size": m.size} for m in page.items)
        cursor = page.next_cursor
        if cursor is None:
            return listing[:max_files], len(listing) if len(listing) <= max_files else None
        if len(listing) >= max_files:
            return listing[:max_files], None


class TokenBudget:
    """How many model tokens each user may spend per UTC day (``daily_tokens``; 0: no budget).

    ``check`` raises ``RateLimited`` (429, ``Retry-After``: the seconds until the next UTC
    midnight) once a user's spending today reached the budget; callers check before a model
    call and ``spend`` what the call reported after it. A call under way when the budget
    runs out finishes: the budget stops the next one. Held in this process's memory (one
    process per SQLite data directory; with several PostgreSQL instances each counts what it
    served).
    """

    def __init__(self, daily_tokens: int, now: Callable[[], datetime] = utc_now) -> None:
        self.daily_tokens = daily_tokens
        self._now = now
        self._day: str | None = None
        self._spent: dict[str, int] = {}

    @property
    def enabled(self) -> bool:
        return self.daily_tokens > 0

    def _today(self) -> dict[str, int]:
        day = self._now().date().isoformat()
        if day != self._day:  # a new UTC day: everyone starts again
            self._day = day
            self._spent = {}
        return self._spent

    def spent(self, user_id: str) -> int:
        return self._today().get(user_id, 0)

    def spend(self, user_id: str, tokens: int) -> None:
        if tokens > 0 and self.enabled:
            spent = self._today()
            spent[user_id] = spent.get(user_id, 0) + tokens

    def check(self, user_id: str) -> None:
        """Raise ``RateLimited`` when ``user_id`` has no tokens left today."""
        if not self.enabled:
            return
        spent = self.spent(user_id)
        if spent < self.daily_tokens:
            return
        now = self._now()
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), now.tzinfo)
        raise RateLimited(
            f"The daily model token budget ({self.daily_tokens} tokens) is spent; it renews at "
            "00:00 UTC.",
            {"budget_tokens": self.daily_tokens, "spent_tokens": spent},
            retry_after=max(1.0, math.ceil((midnight - now).total_seconds())),
        )
