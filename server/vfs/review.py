"""Review of a run's changeset: list the changes with unified diffs, and apply all or some
of them atomically (discarding is ``Store.end_review``, with the run's status change).

Owns no state: the changeset lives in the store (``run_changes``). Apply goes through
``Store.apply_file_ops``, so the conflict check (every chosen path still at the version
the run saw first), the writes, their ``file.*`` events (with the run id) and dropping the
applied part of the changeset are one transaction. Diffs of large files are computed in a
worker thread and bounded. Raises ``Conflict`` (``details.paths``) and ``ValidationFailed``
(a path not in the changeset).
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

import trio

from server.errors import ValidationFailed
from server.vfs.writes import FileOp, FileWrite

if TYPE_CHECKING:
    from collections.abc import Sequence

    from server.events.model import StoredEvent
    from server.events.publisher import Publisher
    from server.store.models import FileLimits, StagedChange
    from server.store.protocol import Store

MAX_DIFF_BYTES = 256 * 1024
"""A change's diff is cut here (``diff_truncated``)."""
_INLINE_DIFF_BYTES = 64 * 1024
_diff_limiter = trio.CapacityLimiter(2)


def unified_diff(path: str, before: bytes | None, after: bytes | None) -> tuple[str | None, bool]:
    """(diff text or None for binary content, truncated). Pure, CPU-bound."""
    try:
        old = (before or b"").decode("utf-8").splitlines(keepends=True)
        new = (after or b"").decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        return None, False
    a = f"a/{path}" if before is not None else "/dev/null"
    b = f"b/{path}" if after is not None else "/dev/null"
    out: list[str] = []
    size = 0
    for line in difflib.unified_diff(old, new, a, b):
        if not line.endswith("\n"):
            line += "\n\\ No newline at end of file\n"
        size += len(line)
        if size > MAX_DIFF_BYTES:
            return "".join(out), True
        out.append(line)
    return "".join(out), False


async def diff_of(path: str, before: bytes | None, after: bytes | None) -> tuple[str | None, bool]:
    if len(before or b"") + len(after or b"") <= _INLINE_DIFF_BYTES:
        return unified_diff(path, before, after)
    return await trio.to_thread.run_sync(unified_diff, path, before, after, limiter=_diff_limiter)


class Review:
    def __init__(self, store: Store, publisher: Publisher, limits: FileLimits) -> None:
        self._store = store
        self._publisher = publisher
        self._limits = limits

    async def _base(self, project_id: str, path: str, version: int | None) -> bytes | None:
        """The bytes a path had at ``version`` (None: it did not exist)."""
        if version is None:
            return None
        found = await self._store.get_file_version(project_id, path, version)
        return None if found is None else found[1]

    async def changes(self, project_id: str, run_id: str) -> list[dict[str, Any]]:
        """Each change of the run's changeset, by path; a move is one change at its target."""
        staged = await self._store.list_staged(run_id)
        by_path = {s.path: s for s in staged}
        moved_away = {s.moved_from for s in staged if s.moved_from in by_path}
        out: list[dict[str, Any]] = []
        for s in staged:
            if s.path in moved_away and s.content is None:
                continue  # shown as the move at its target
            source = by_path.get(s.moved_from) if s.moved_from else None
            origin = source if source is not None else s
            before = await self._base(project_id, origin.path, origin.base_version)
            if before is None and s.content is None:
                continue  # created and deleted by the run: nothing to apply
            kind = (
                "move" if source is not None
                else "delete" if s.content is None
                else "create" if before is None
                else "modify"
            )  # fmt: skip
            diff, truncated = await diff_of(s.path, before, s.content)
            out.append(
                {
                    "path": s.path,
                    "kind": kind,
                    "from": None if source is None else source.path,
                    "base_version": origin.base_version,
                    "size_before": None if before is None else len(before),
                    "size_after": None if s.content is None else s.size,
                    "diff": diff,
                    "binary": diff is None,
                    "diff_truncated": truncated,
                }
            )
        return out

    async def apply(
        self, project_id: str, run_id: str, paths: Sequence[str] | None
    ) -> tuple[list[StoredEvent], int]:
        """Apply the chosen paths (all when None); returns the events and how many changes
        remain staged. A move's target brings its source along."""
        staged = {s.path: s for s in await self._store.list_staged(run_id)}
        chosen = list(staged) if paths is None else list(dict.fromkeys(paths))
        unknown = [p for p in chosen if p not in staged]
        if unknown:
            raise ValidationFailed(
                "Some paths are not in the run's changes.",
                {f"paths.{p}": "not in the changeset" for p in unknown},
            )
        for p in list(chosen):
            source = staged[p].moved_from
            if source in staged and source not in chosen:
                chosen.append(source)
        ops: list[FileOp] = []
        for p in chosen:
            op = await self._op(project_id, staged[p])
            if op is not None:
                ops.append(op)
        expected = {p: staged[p].base_version for p in chosen}
        events = await self._store.apply_file_ops(
            project_id,
            ops,
            expected=expected,
            limits=self._limits,
            run_id=run_id,
            staged_run=run_id,
            staged_paths=chosen,
        )
        self._publisher.publish(events)
        return events, len(staged) - len(chosen)

    async def _op(self, project_id: str, s: StagedChange) -> FileOp | None:
        if s.content is not None:
            write = FileWrite(s.path, s.content, s.content_type or "", s.sha256 or "")
            return FileOp(s.path, write)
        if await self._base(project_id, s.path, s.base_version) is None:
            return None  # it does not exist in the project: nothing to delete
        return FileOp(s.path, None)
