"""ChangesetFiles: a review run's view of its project's files (``changes: "review"``).

Writes, moves and deletes go to the run's changeset in the store (``run_changes``), never
to the project, and publish nothing; reads and lists see the run's own staged changes over
the project's files. It has the surface of ``FileService`` that tools use (``FileAccess``),
with the same checks (``CheckedFileAccess``); the executor gives it to the tools of a
review run. (It lives here, not in ``server.vfs``,
because it builds store records: ``vfs`` must not import ``store``.)
Raises what ``FileService`` raises: ``NotFound``, ``Conflict`` (a move onto an existing
path), ``VersionMismatch``, ``TooLarge`` (one file over ``max_file_bytes``), ``InvalidPath``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from server.errors import Conflict, NotFound
from server.store.codec import check_preconditions, decode_cursor, page_cursor
from server.store.models import FileData, FileMeta, Page, StagedChange
from server.timeutil import utc_now
from server.vfs.content_types import content_type_for
from server.vfs.hashing import content_sha256
from server.vfs.service import CheckedFileAccess
from server.vfs.writes import FileWrite

if TYPE_CHECKING:
    from server.store.models import FileLimits
    from server.store.protocol import Store
    from server.vfs.service import Expect

_LIST_PAGE = 200


def _staged_meta(project_id: str, s: StagedChange) -> FileMeta:
    """A staged file as a file: its version is the one it would get when applied."""
    return FileMeta(
        project_id,
        s.path,
        s.size,
        (s.base_version or 0) + 1,
        s.sha256 or "",
        s.content_type or content_type_for(s.path),
        s.staged_at,
    )


class ChangesetFiles(CheckedFileAccess):
    """A review run's files: its staged changes laid over the project's."""

    def __init__(self, store: Store, limits: FileLimits, run_id: str) -> None:
        self._store = store
        self.limits = limits
        self.run_id = run_id

    async def _stage(
        self, project_id: str, path: str, w: FileWrite | None, moved_from: str | None = None
    ) -> FileMeta:
        if w is None:
            change = StagedChange(path, None, 0, None, None, None, moved_from, utc_now())
        else:
            change = StagedChange(path, w.content, len(w.content), w.sha256, w.content_type,
                                  None, moved_from, utc_now())  # fmt: skip
        await self._store.stage_change(self.run_id, project_id, change, limits=self.limits)
        staged = await self._store.get_staged(self.run_id, path)
        assert staged is not None  # just written by this run
        return _staged_meta(project_id, staged)

    # -- hooks of CheckedFileAccess: paths are valid here ----------------------------------------
    async def _load(self, project_id: str, path: str) -> FileData | None:
        staged = await self._store.get_staged(self.run_id, path)
        if staged is None:
            return await self._store.get_file(project_id, path)
        if staged.content is None:
            return None
        return FileData(_staged_meta(project_id, staged), staged.content)

    async def _save(
        self, project_id: str, w: FileWrite, expect: Expect, run_id: str | None
    ) -> tuple[FileMeta, bool]:
        current = await self._load(project_id, w.path)
        version = None if current is None else current.meta.version
        check_preconditions(version, expect.if_match, expect.if_none_match_any)
        return await self._stage(project_id, w.path, w), current is None

    async def _move(
        self, project_id: str, src: str, dst: str, expect: Expect, run_id: str | None
    ) -> FileMeta:
        current = await self._load(project_id, src)
        if current is None:
            raise NotFound("File not found.", {"path": src})
        check_preconditions(current.meta.version, expect.if_match, False)
        if await self._load(project_id, dst) is not None:
            raise Conflict("A file exists at the target path.", {"path": dst})
        sha = await content_sha256(current.content)
        moved = FileWrite(dst, current.content, content_type_for(dst), sha)
        meta = await self._stage(project_id, dst, moved, moved_from=src)
        await self._stage(project_id, src, None)
        return meta

    async def _remove(self, project_id: str, path: str, expect: Expect, run_id: str | None) -> None:
        current = await self._load(project_id, path)
        if current is None:
            raise NotFound("File not found.", {"path": path})
        check_preconditions(current.meta.version, expect.if_match, False)
        await self._stage(project_id, path, None)

    async def _list(
        self, project_id: str, prefix: str, limit: int, cursor: str | None
    ) -> Page[FileMeta]:
        """The project's files under ``prefix`` with the run's changes laid over them."""
        after = decode_cursor(cursor) or ""
        metas: dict[str, FileMeta] = {}
        page_cursor_: str | None = None
        while True:  # bounded by the project's file count quota
            page = await self._store.list_files(project_id, prefix, _LIST_PAGE, page_cursor_)
            metas.update((m.path, m) for m in page.items)
            page_cursor_ = page.next_cursor
            if page_cursor_ is None:
                break
        for staged in await self._store.list_staged(self.run_id):
            if not staged.path.startswith(prefix):
                continue
            if staged.content is None:
                metas.pop(staged.path, None)
            else:
                metas[staged.path] = _staged_meta(project_id, staged)
        paths = sorted(p for p in metas if p > after)[: limit + 1]
        return Page([metas[p] for p in paths[:limit]], page_cursor(paths, limit))
