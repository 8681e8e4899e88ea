"""Budgets of one model request: prompt size, context bytes, file listing size.

``check_prompt`` rejects what is too big up front (``ValidationFailed``). ``load_context``,
``project_listing`` and ``relevant_context`` (the files a planning prompt is about) read
through the file service and stop at their bound, reporting what they left out instead of
failing. The concurrency budget (model calls in flight) is
``LimitedProvider``'s limiter. ``TokenBudget`` is the per-user daily token budget.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from server.errors import NotFound, RateLimited, ValidationFailed
from server.timeutil import utc_now

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from server.store.models import FileData, FileMeta, Page

LISTING_MAX_FILES = 200
LISTING_PAGE = 200
CONTEXT_MAX_FILES = 50
SCAN_MAX_FILE_BYTES = 64 * 1024  # larger files are matched by path only
SCAN_MAX_BYTES = 1024 * 1024  # content read to find matching files, per planning
_WORD_RE = re.compile(r"[^\W_][\w.-]*[^\W_]|[^\W_]", re.UNICODE)
_STOPWORDS = frozenset((
    "the", "and", "for", "with", "into", "from", "every", "all", "add", "file", "files", "this",
    "that", "make", "use", "new", "each", "its", "are", "was", "were", "not", "but", "you",
    "your", "can", "should", "would", "will", "please", "then", "also", "only",
))  # fmt: skip


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


def _words(prompt: str) -> list[str]:
    """The prompt's distinct words worth matching (3+ characters, not stopwords), lowered."""
    words: dict[str, None] = {}
    for match in _WORD_RE.finditer(prompt):
        word = match.group(0).lower().strip(".-")
        if len(word) >= 3 and word not in _STOPWORDS:
            words[word] = None
    return list(words)


def named_paths(prompt: str, paths: Sequence[str]) -> list[str]:
    """The ``paths`` the prompt names (whole path, or a file name as a word), in the order
    the prompt names them. Pure."""
    lowered = prompt.lower()
    found: list[tuple[int, str]] = []
    for path in paths:
        # The whole path, or the file name not preceded by a folder (another file's name).
        # ASCII boundaries: a Korean particle may follow a name directly ("app.js에").
        hit = re.search(rf"(?<![A-Za-z0-9_-]){re.escape(path.lower())}(?![a-z0-9_-])", lowered)
        if hit is None:
            name = path.rsplit("/", 1)[-1].lower()
            hit = re.search(rf"(?<![a-z0-9_/.-]){re.escape(name)}(?![a-z0-9_-])", lowered)
        if hit is not None:
            found.append((hit.start(), path))
    return [path for _, path in sorted(found)]


def _path_score(path: str, words: Sequence[str]) -> int:
    lowered = path.lower()
    return sum(2 for word in words if word in lowered)


async def relevant_context(
    files: ReadableFiles,
    project_id: str,
    prompt: str,
    listing: Sequence[Mapping[str, Any]],
    max_bytes: int,
) -> Context:
    """The contents a planning prompt is most likely about, whole files within ``max_bytes``.

    Order: the files the prompt names, then files whose path or content contains its words
    (more distinct words first; content is scanned in files up to ``SCAN_MAX_FILE_BYTES``,
    ``SCAN_MAX_BYTES`` in all). Files that do not fit whole are left out (``omitted``);
    binary files are skipped. Files that vanish meanwhile are skipped.
    """
    paths = [str(item["path"]) for item in listing]
    sizes = {str(item["path"]): int(item["size"]) for item in listing}
    named = named_paths(prompt, paths)
    words = _words(prompt)
    texts: dict[str, str] = {}
    scores: dict[str, int] = {}
    scanned = 0
    for path in paths:
        if path in named:
            continue
        score = _path_score(path, words)
        size = sizes[path]
        if words and size <= SCAN_MAX_FILE_BYTES and scanned + size <= SCAN_MAX_BYTES:
            text = await _read_text(files, project_id, path)
            scanned += size
            if text is not None:
                texts[path] = text
                lowered = text.lower()
                score += sum(1 for word in words if word in lowered)
        if score > 0:
            scores[path] = score
    ranked = named + sorted(scores, key=lambda p: (-scores[p], paths.index(p)))
    context = Context()
    for path in ranked[:CONTEXT_MAX_FILES]:
        if context.bytes_loaded + sizes[path] > max_bytes:
            context.omitted.append(path)
            continue
        text = texts[path] if path in texts else await _read_text(files, project_id, path)
        if text is None:
            continue
        context.texts[path] = text
        context.bytes_loaded += len(text.encode())
    context.omitted.extend(ranked[CONTEXT_MAX_FILES:])
    return context


async def _read_text(files: ReadableFiles, project_id: str, path: str) -> str | None:
    """A file's text; None when it is binary or gone."""
    try:
        data = await files.read(project_id, path)
    except NotFound:
        return None
    try:
        return data.content.decode("utf-8")
    except UnicodeDecodeError:
        return None
