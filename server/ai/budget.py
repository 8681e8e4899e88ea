"""Budgets of one model request: prompt size, context bytes, file listing size.

``check_prompt`` rejects what is too big up front (``ValidationFailed``). ``load_context``
and ``project_listing`` read through the file service and stop at their bound, reporting
what they left out instead of failing. The concurrency budget (model calls in flight) is
``LimitedProvider``'s limiter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from server.errors import ValidationFailed

if TYPE_CHECKING:
    from collections.abc import Sequence

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
