"""Shared plumbing of the exact text tools (``text.replace``, ``code.rename``, ``project.summary``).

Owns the bounds: at most ``MAX_FILES`` files and ``MAX_BYTES`` bytes are read per call; CPU
work (decoding, scanning, replacing) runs in a worker thread under ``cpu_limiter``, abandoned
when the step is cancelled. Writes are conditional (``if_match`` the version read): a file
changed meanwhile fails the step with ``version_mismatch`` and is not overwritten.

Raises ``ToolError`` (``not_found``, ``too_many_files``, ``version_mismatch``) and lets the
file service's ``AppError``s (quota, path) pass to the executor as permanent failures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from server.errors import NotFound, ToolError, VersionMismatch

if TYPE_CHECKING:
    from collections.abc import Callable

    from server.store.models import FileMeta
    from server.workflow.tools.registry import ToolContext

MAX_FILES = 500
MAX_BYTES = 8 * 1024 * 1024
_PAGE = 200
cpu_limiter = trio.CapacityLimiter(2)
T = TypeVar("T")

PATH_SCHEMA: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 1024}
PREFIX_SCHEMA: dict[str, Any] = {"type": "string", "maxLength": 1024}


@dataclass(frozen=True)
class TextFile:
    path: str
    version: int
    size: int
    text: str | None  # None: not UTF-8 (binary)


async def run_cpu(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a worker thread under the shared limiter; abandoned on cancel."""
    return await trio.to_thread.run_sync(fn, *args, limiter=cpu_limiter, abandon_on_cancel=True)


async def list_paths(ctx: ToolContext, prefix: str) -> list[FileMeta]:
    """Every file under ``prefix``; ``too_many_files`` past ``MAX_FILES``."""
    metas: list[FileMeta] = []
    cursor: str | None = None
    while True:
        page = await ctx.files.list(ctx.project_id, prefix, _PAGE, cursor)
        metas.extend(page.items)
        cursor = page.next_cursor
        if len(metas) > MAX_FILES:
            raise ToolError(
                "too_many_files",
                f"More than {MAX_FILES} files under {prefix or 'the project'!r}; name a folder.",
            )
        if cursor is None:
            return metas


async def read_text(ctx: ToolContext, path: str, budget: list[int]) -> TextFile:
    """The file, decoded when UTF-8; ``budget[0]`` (bytes left) shrinks, ``too_large`` past it."""
    try:
        data = await ctx.files.read(ctx.project_id, path)
    except NotFound:
        raise ToolError("not_found", f"{path} does not exist.") from None
    budget[0] -= len(data.content)
    if budget[0] < 0:
        raise ToolError("too_large", f"The files to process exceed {MAX_BYTES} bytes.")
    text = await run_cpu(_decode, data.content)
    return TextFile(path, data.meta.version, data.meta.size, text)


def _decode(content: bytes) -> str | None:
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        return None


async def targets(ctx: ToolContext, args: Any) -> list[TextFile]:
    """The files an exact tool works on: ``path`` (one file) or every file under ``prefix``."""
    budget = [MAX_BYTES]
    if "path" in args:
        return [await read_text(ctx, args["path"], budget)]
    metas = await list_paths(ctx, args.get("prefix", ""))
    return [await read_text(ctx, meta.path, budget) for meta in metas]


async def write_back(ctx: ToolContext, file: TextFile, text: str) -> int:
    """Write ``text`` if ``file`` is still the version read; its new version."""
    try:
        meta, _ = await ctx.files.write(
            ctx.project_id, file.path, text.encode("utf-8"), if_match=file.version
        )
    except (VersionMismatch, NotFound):
        raise ToolError(
            "version_mismatch",
            f"{file.path} changed while it was being edited (version {file.version} was read); "
            "it was not written.",
        ) from None
    return meta.version


def exactly_one_scope(args: Any) -> dict[str, str]:
    """Plan-time check: ``path`` and ``prefix`` are exclusive."""
    if "path" in args and "prefix" in args:
        return {"path": "give either path or prefix, not both"}
    return {}
