"""``CheckedFileAccess``: the file surface tools use (``FileAccess``), with its checks once.

Every public method validates its paths (``server.vfs.paths``) and, for a write, the file's
size, content type and hash, before it calls the subclass's hook. Two subclasses:
``server.vfs.service.FileService`` (the project's files, through the store, published) and
``server.workflow.tools.changeset.ChangesetFiles`` (a review run's changeset). Raises
``InvalidPath``, ``TooLarge`` (one file over ``max_file_bytes``), ``NotFound`` (``read``
of a missing file) and what the hooks raise.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

from server.errors import NotFound
from server.vfs.content_types import content_type_for
from server.vfs.hashing import content_sha256
from server.vfs.paths import validate_path, validate_prefix
from server.vfs.quota import check_file_size
from server.vfs.writes import FileWrite

if TYPE_CHECKING:
    from server.store.models import FileData, FileLimits, FileMeta, Page


@dataclass(frozen=True, slots=True)
class Expect:
    """A write's preconditions: ``If-Match`` (a version) and ``If-None-Match: *``."""

    if_match: int | None = None
    if_none_match_any: bool = False


class CheckedFileAccess(ABC):
    """Validates, then delegates to ``_load``, ``_save``, ``_move``, ``_remove``, ``_list``."""

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
        """(abstract)"""

    @abstractmethod
    async def _save(
        self, project_id: str, w: FileWrite, expect: Expect, run_id: str | None
    ) -> tuple[FileMeta, bool]:
        """(abstract)"""

    @abstractmethod
    async def _move(
        self, project_id: str, src: str, dst: str, expect: Expect, run_id: str | None
    ) -> FileMeta:
        """(abstract)"""

    @abstractmethod
    async def _remove(self, project_id: str, path: str, expect: Expect, run_id: str | None) -> None:
        """(abstract)"""

    @abstractmethod
    async def _list(
        self, project_id: str, prefix: str, limit: int, cursor: str | None
    ) -> Page[FileMeta]:
        """(abstract)"""
