"""ChangesetFiles: a review run's view of its project's files (``changes: "review"``).

Writes, moves and deletes go to the run's changeset in the store (``run_changes``), never
to the project, and publish nothing; reads and lists see the run's own staged changes over
the project's files. It has the surface of ``FileService`` that tools use (``FileAccess``);
the executor gives it to the tools of a review run. (It lives here, not in ``server.vfs``,
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
from server.vfs.paths import validate_path, validate_prefix
from server.vfs.quota import check_file_size

if TYPE_CHECKING:
    from server.store.models import FileLimits
    from server.store.protocol import Store

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


class ChangesetFiles:
    def __init__(self, store: Store, limits: FileLimits, run_id: str) -> None:
        self._store = store
        self.limits = limits
        self.run_id = run_id

    async def _visible(self, project_id: str, path: str) -> FileData | None:
        staged = await self._store.get_staged(self.run_id, path)
        if staged is None:
            return await self._store.get_file(project_id, path)
        if staged.content is None:
            return None
        return FileData(_staged_meta(project_id, staged), staged.content)

    async def _stage(
        self, project_id: str, path: str, content: bytes | None, moved_from: str | None = None
    ) -> FileMeta:
        sha = None if content is None else await content_sha256(content)
        ctype = None if content is None else content_type_for(path)
        size = 0 if content is None else len(content)
        change = StagedChange(path, content, size, sha, ctype, None, moved_from, utc_now())
        await self._store.stage_change(self.run_id, project_id, change, limits=self.limits)
        staged = await self._store.get_staged(self.run_id, path)
        assert staged is not None  # just written by this run
        return _staged_meta(project_id, staged)

    async def read(self, project_id: str, path: str) -> FileData:
        validate_path(path)
        data = await self._visible(project_id, path)
        if data is None:
            raise NotFound(f"No file at {path!r}.")
        return data

    async def write(
        self,
        project_id: str,
        path: str,
        content: bytes,
        *,
        if_match: int | None = None,
        if_none_match_any: bool = False,
        run_id: str | None = None,
    ) -> tuple[FileMeta, bool]:
        validate_path(path)
        check_file_size(self.limits, len(content))
        current = await self._visible(project_id, path)
        check_preconditions(
            None if current is None else current.meta.version, if_match, if_none_match_any
        )
        return await self._stage(project_id, path, content), current is None

    async def move(
        self,
        project_id: str,
        src: str,
        dst: str,
        *,
        if_match: int | None = None,
        run_id: str | None = None,
    ) -> FileMeta:
        validate_path(src)
        validate_path(dst, "to")
        current = await self._visible(project_id, src)
        if current is None:
            raise NotFound("File not found.", {"path": src})
        check_preconditions(current.meta.version, if_match, False)
        if await self._visible(project_id, dst) is not None:
            raise Conflict("A file exists at the target path.", {"path": dst})
        meta = await self._stage(project_id, dst, current.content, moved_from=src)
        await self._stage(project_id, src, None)
        return meta

    async def delete(
        self,
        project_id: str,
        path: str,
        *,
        if_match: int | None = None,
        run_id: str | None = None,
    ) -> None:
        validate_path(path)
        current = await self._visible(project_id, path)
        if current is None:
            raise NotFound("File not found.", {"path": path})
        check_preconditions(current.meta.version, if_match, False)
        await self._stage(project_id, path, None)

    async def list(
        self, project_id: str, prefix: str, limit: int, cursor: str | None
    ) -> Page[FileMeta]:
        """The project's files under ``prefix`` with the run's changes laid over them."""
        validate_prefix(prefix)
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
