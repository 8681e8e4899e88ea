"""Which files each step read and wrote, and which of them changed since (retry's check).

``RecordingFiles`` wraps the tools' ``FileAccess`` for one step: every ``read`` (a miss too),
``write``, ``move`` and ``delete`` is noted with the file's version and sha256. The step
stores the log with its outcome (``Step.reads``: ``{"files": [...], "complete": bool}``;
``complete`` is False past ``MAX_FILES`` entries). ``list`` is not noted: listings are not
checked.

``changed_reads`` (pure) is the rule ``POST .../retry`` applies: a file a reused step read
has changed when its current state is none the source run itself read or produced.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from server.errors import NotFound

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from server.store.models import FileData, FileMeta, Page, Step
    from server.workflow.tools.registry import FileAccess

MAX_FILES = 1000
FileState = tuple[int, str] | None  # (version, sha256); None: no such file


class FileLog:
    """The file accesses of one step, in order, without repeats."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self._seen: set[tuple[str, str, int | None]] = set()
        self.complete = True

    def note(self, op: str, path: str, meta: FileMeta | None) -> None:
        version = None if meta is None else meta.version
        key = (op, path, version)
        if key in self._seen:
            return
        if len(self.entries) >= MAX_FILES:
            self.complete = False
            return
        self._seen.add(key)
        sha = None if meta is None else meta.sha256
        self.entries.append({"path": path, "version": version, "sha256": sha, "op": op})

    def to_json(self) -> dict[str, Any]:
        return {"files": list(self.entries), "complete": self.complete}


class RecordingFiles:
    """A ``FileAccess`` that notes every access of one step in a ``FileLog``."""

    def __init__(self, inner: FileAccess, log: FileLog) -> None:
        self._inner = inner
        self.log = log

    async def read(self, project_id: str, path: str) -> FileData:
        try:
            data = await self._inner.read(project_id, path)
        except NotFound:
            self.log.note("read", path, None)
            raise
        self.log.note("read", path, data.meta)
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
        meta, created = await self._inner.write(
            project_id,
            path,
            content,
            if_match=if_match,
            if_none_match_any=if_none_match_any,
            run_id=run_id,
        )
        self.log.note("write", path, meta)
        return meta, created

    async def move(
        self,
        project_id: str,
        src: str,
        dst: str,
        *,
        if_match: int | None = None,
        run_id: str | None = None,
    ) -> FileMeta:
        meta = await self._inner.move(project_id, src, dst, if_match=if_match, run_id=run_id)
        self.log.note("write", src, None)
        self.log.note("write", dst, meta)
        return meta

    async def delete(
        self, project_id: str, path: str, *, if_match: int | None = None, run_id: str | None = None
    ) -> None:
        await self._inner.delete(project_id, path, if_match=if_match, run_id=run_id)
        self.log.note("write", path, None)

    async def list(
        self, project_id: str, prefix: str, limit: int, cursor: str | None
    ) -> Page[FileMeta]:
        return await self._inner.list(project_id, prefix, limit, cursor)

    def __getattr__(self, name: str) -> Any:  # anything else FileAccess grows: unnoted
        return getattr(self._inner, name)


def _entries(step: Step) -> list[Mapping[str, Any]]:
    reads = step.reads or {}
    files = reads.get("files") or []
    return [f for f in files if isinstance(f, dict) and isinstance(f.get("path"), str)]


def _state(entry: Mapping[str, Any]) -> FileState:
    version = entry.get("version")
    return None if version is None else (int(version), str(entry.get("sha256")))


def paths_to_check(reused: Iterable[Step]) -> tuple[list[str], list[str]]:
    """(paths the reused steps read, ids of reused steps whose log is incomplete)."""
    paths: set[str] = set()
    unverifiable: list[str] = []
    for step in reused:
        if step.reads is not None and not step.reads.get("complete", True):
            unverifiable.append(step.id)
        paths.update(e["path"] for e in _entries(step) if e.get("op") == "read")
    return sorted(paths), unverifiable


def changed_reads(
    source_steps: Iterable[Step], paths: Iterable[str], current: Mapping[str, FileState]
) -> list[dict[str, Any]]:
    """The paths whose ``current`` state is none the source run's steps read or wrote, with
    what the run last knew (``known_versions``) and the ``current_version``."""
    known: dict[str, set[FileState]] = {}
    for step in source_steps:
        for entry in _entries(step):
            known.setdefault(entry["path"], set()).add(_state(entry))
    changed = []
    for path in paths:
        now = current.get(path)
        if now not in known.get(path, set()):
            versions = sorted(s[0] for s in known.get(path, set()) if s is not None)
            changed.append(
                {
                    "path": path,
                    "known_versions": versions,
                    "current_version": None if now is None else now[0],
                }
            )
    return changed
