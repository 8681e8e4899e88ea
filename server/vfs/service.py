"""FileService: every change to a project's files goes through here.

It validates paths, computes the content hash and type (``CheckedFileAccess``, shared with
review runs' changesets), enforces quotas through the store (inside the write transaction),
and publishes the committed event after commit. The HTTP routes and the workflow's vfs
tools share it, so both behave identically.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from server.errors import NotFound
from server.timeutil import rfc3339
from server.vfs.content_types import content_type_for
from server.vfs.hashing import content_sha256
from server.vfs.history import FileHistory
from server.vfs.paths import validate_path, validate_prefix
from server.vfs.quota import check_file_size
from server.vfs.review import Review
from server.vfs.transfer import ProjectTransfer
from server.vfs.writes import FileWrite

if TYPE_CHECKING:
    from server.events.publisher import Publisher
    from server.store.models import FileData, FileLimits, FileMeta, Page
    from server.store.protocol import Store


def file_json(meta: FileMeta) -> dict[str, Any]:
    """The contract's file object (API.md "Files"), for responses and tool outputs alike."""
    return {
        "path": meta.path,
        "size": meta.size,
        "version": meta.version,
        "sha256": meta.sha256,
        "content_type": meta.content_type,
        "updated_at": rfc3339(meta.updated_at),
    }


@dataclass(frozen=True, slots=True)
class Expect:
    """A write's preconditions: ``If-Match`` (a version) and ``If-None-Match: *``."""

    if_match: int | None = None
    if_none_match_any: bool = False


class CheckedFileAccess(ABC):
    """The file surface tools use (``FileAccess``), with its checks once: every public method
    validates its paths (``server.vfs.paths``) and, for a write, the file's size, content
    type and hash, then calls the subclass's hook (``_load``, ``_save``, ``_move``,
    ``_remove``, ``_list``). Subclasses: ``FileService`` and the review runs'
    ``server.workflow.tools.changeset.ChangesetFiles``. Raises ``InvalidPath``, ``TooLarge``
    (one file over ``max_file_bytes``), ``NotFound`` (``read`` of a missing file) and what
    the hooks raise."""

    limits: FileLimits

    async def read(self, project_id: str, path: str) -> FileData:
        validate_path(path)
        data = await self._load(project_id, path)
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
        """Create or replace; ``run_id`` names the workflow run writing (file history)."""
        validate_path(path)
        check_file_size(self.limits, len(content))
        w = FileWrite(path, content, content_type_for(path), await content_sha256(content))
        return await self._save(project_id, w, Expect(if_match, if_none_match_any), run_id)

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
        return await self._move(project_id, src, dst, Expect(if_match), run_id)

    async def delete(
        self, project_id: str, path: str, *, if_match: int | None = None, run_id: str | None = None
    ) -> None:
        validate_path(path)
        await self._remove(project_id, path, Expect(if_match), run_id)

    async def list(
        self, project_id: str, prefix: str, limit: int, cursor: str | None
    ) -> Page[FileMeta]:
        validate_prefix(prefix)
        return await self._list(project_id, prefix, limit, cursor)

    # -- hooks: paths are valid here -----------------------------------------------------------
    @abstractmethod
    async def _load(self, project_id: str, path: str) -> FileData | None:
        """The file at ``path`` (None: none)."""

    @abstractmethod
    async def _save(
        self, project_id: str, w: FileWrite, expect: Expect, run_id: str | None
    ) -> tuple[FileMeta, bool]:
        """Create or replace ``w.path`` when ``expect`` holds; (meta, created)."""

    @abstractmethod
    async def _move(
        self, project_id: str, src: str, dst: str, expect: Expect, run_id: str | None
    ) -> FileMeta:
        """Move ``src`` to ``dst`` when ``expect`` holds for ``src``."""

    @abstractmethod
    async def _remove(self, project_id: str, path: str, expect: Expect, run_id: str | None) -> None:
        """Delete ``path`` when ``expect`` holds."""

    @abstractmethod
    async def _list(
        self, project_id: str, prefix: str, limit: int, cursor: str | None
    ) -> Page[FileMeta]:
        """A page of the files under ``prefix``."""


class FileService(CheckedFileAccess):
    """The project's files: writes go through the store (quotas in its transaction) and
    their events are published after commit."""

    def __init__(self, store: Store, publisher: Publisher, limits: FileLimits) -> None:
        self._store = store
        self._publisher = publisher
        self.limits = limits

    def review(self) -> Review:
        """A review run's changeset: list with diffs, apply, discard."""
        return Review(self._store, self._publisher, self.limits)

    def history(self) -> FileHistory:
        """Versions of files, restores and run reverts, with these limits and publisher."""
        return FileHistory(self._store, self._publisher, self.limits)

    def transfer(self) -> ProjectTransfer:
        """Whole-project import and export, with these limits and this publisher."""
        return ProjectTransfer(self._store, self._publisher, self.limits)

    async def stat(self, project_id: str, path: str) -> FileMeta:
        validate_path(path)
        meta = await self._store.get_file_meta(project_id, path)
        if meta is None:
            raise NotFound(f"No file at {path!r}.")
        return meta

    # -- hooks of CheckedFileAccess: paths are valid here ----------------------------------------
    async def _load(self, project_id: str, path: str) -> FileData | None:
        return await self._store.get_file(project_id, path)

    async def _save(
        self, project_id: str, w: FileWrite, expect: Expect, run_id: str | None
    ) -> tuple[FileMeta, bool]:
        meta, created, event = await self._store.put_file(
            project_id,
            w.path,
            w.content,
            content_type=w.content_type,
            sha256=w.sha256,
            limits=self.limits,
            if_match=expect.if_match,
            if_none_match_any=expect.if_none_match_any,
            run_id=run_id,
        )
        self._publisher.publish([event])
        return meta, created

    async def _move(
        self, project_id: str, src: str, dst: str, expect: Expect, run_id: str | None
    ) -> FileMeta:
        meta, event = await self._store.move_file(
            project_id, src, dst, if_match=expect.if_match, run_id=run_id, limits=self.limits
        )
        self._publisher.publish([event])
        return meta

    async def _remove(self, project_id: str, path: str, expect: Expect, run_id: str | None) -> None:
        event = await self._store.delete_file(
            project_id, path, if_match=expect.if_match, run_id=run_id, limits=self.limits
        )
        self._publisher.publish([event])

    async def _list(
        self, project_id: str, prefix: str, limit: int, cursor: str | None
    ) -> Page[FileMeta]:
        return await self._store.list_files(project_id, prefix, limit, cursor)
