"""The steps of a file write, written once as programs (``server.store.program``).

Every write keeps a row per version in ``file_versions`` (migration 4), the current state
included, a NULL content marking a path that stopped existing. Retention (count and age,
``FileLimits.history_*``) runs in the same transaction as the write, and the project's quota
counts every kept version. ``files.FileStore`` composes these steps into the ``Store``'s file
operations. Raises ``NotFound``, ``Conflict``, ``VersionMismatch``, ``TooLarge`` (the
transaction then rolls back). Pure: no I/O.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from server.errors import Conflict, NotFound
from server.events.model import NewEvent
from server.store import codec, sql
from server.store.models import FileMeta
from server.store.program import execute, row, value
from server.vfs.quota import check_quota, check_stored_total

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from server.store.models import FileLimits
    from server.store.program import Program
    from server.vfs.writes import FileWrite

DEC = codec.RowDecoder()


def new_events(project_id: str, datas: Sequence[dict[str, Any]]) -> list[NewEvent]:
    return [NewEvent(project_id, d["type"], d) for d in datas]


def latest(project_id: str, path: str) -> Program[int | None]:
    """The newest version number of a path (a deleted one included); None: never written."""
    found = yield value(sql.FV_LATEST, project_id, path)
    return None if found is None else int(found)


def next_version(project_id: str, path: str) -> Program[int]:
    return int((yield value(sql.FV_NEXT, project_id, path)))


def retain(project_id: str, path: str, limits: FileLimits, now: datetime) -> Program[None]:
    """Drop the path's versions beyond the retention of ``limits`` (never the newest)."""
    cutoff = now - timedelta(days=limits.history_days)
    yield execute(sql.FV_PRUNE, project_id, path, limits.history_versions, cutoff)


def check_total(project_id: str, limits: FileLimits, now: datetime) -> Program[None]:
    """Raise ``TooLarge`` when the project's kept bytes exceed its quota, once every aged
    version is dropped."""
    total = int((yield value(sql.FV_TOTAL, project_id)))
    if total > limits.max_total_bytes:  # short: drop every aged version first, then decide
        cutoff = now - timedelta(days=limits.history_days)
        yield execute(sql.FV_PRUNE_AGED, project_id, cutoff)
        total = int((yield value(sql.FV_TOTAL, project_id)))
    check_stored_total(limits, total)


def write(
    project_id: str,
    w: FileWrite,
    *,
    limits: FileLimits,
    run_id: str | None,
    now: datetime,
    if_match: int | None = None,
    if_none_match_any: bool = False,
) -> Program[tuple[FileMeta, bool, dict[str, Any]]]:
    """Create or replace one file (quota and preconditions checked, a version kept);
    returns (meta, created, the ``file.changed`` event's data)."""
    user_bytes = 0
    if limits.max_user_bytes is not None:  # the owner's row is held (``Reserve``)
        owner = yield value(sql.PROJECT_OWNER, project_id)
        if owner is None:
            raise NotFound("Project not found.")
        user_bytes = int((yield value(sql.USER_FILE_BYTES, owner)))
    state = yield row(sql.FILE_QUOTA_STATE, project_id, w.path)
    old_version = None if state["version"] is None else int(state["version"])
    old_size = None if state["size"] is None else int(state["size"])
    codec.check_preconditions(old_version, if_match, if_none_match_any)
    check_quota(limits, len(w.content), old_size=old_size, file_count=int(state["count"]),
                total_bytes=int(state["total"]), user_bytes=user_bytes)  # fmt: skip
    version = yield from next_version(project_id, w.path)
    size = len(w.content)
    yield execute(sql.FILE_UPSERT, project_id, w.path, w.content, size, version, w.sha256,
                  w.content_type, now)  # fmt: skip
    yield execute(sql.FV_INSERT, project_id, w.path, version, w.content, size, w.sha256,
                  w.content_type, run_id, now)  # fmt: skip
    yield from retain(project_id, w.path, limits, now)
    meta = FileMeta(project_id, w.path, size, version, w.sha256, w.content_type, now)
    created = old_version is None
    return meta, created, codec.file_changed_data(meta, created, now, run_id)


def delete(
    project_id: str,
    path: str,
    *,
    limits: FileLimits | None,
    run_id: str | None,
    now: datetime,
    if_match: int | None = None,
) -> Program[dict[str, Any]]:
    """Delete one file (a deleted version kept); returns the ``file.deleted`` event's data."""
    version = yield value(sql.FILE_DELETE, project_id, path)
    if version is None:
        raise NotFound("File not found.", {"path": path})
    codec.check_preconditions(int(version), if_match, False)  # raising rolls back
    tomb = yield from next_version(project_id, path)
    yield execute(sql.FV_TOMBSTONE, project_id, path, tomb, run_id, now)
    if limits is not None:
        yield from retain(project_id, path, limits, now)
    return codec.file_deleted_data(project_id, path, now, run_id)


def move(
    project_id: str,
    src: str,
    dst: str,
    *,
    limits: FileLimits | None,
    run_id: str | None,
    now: datetime,
    if_match: int | None = None,
) -> Program[tuple[FileMeta, dict[str, Any]]]:
    """Move one file: ``src`` gets a deleted version, ``dst`` a new one numbered past both
    its own history and the file's; returns (meta, the ``file.moved`` event's data)."""
    found = yield row(sql.FILE_META, project_id, src)
    if found is None:
        raise NotFound("File not found.", {"path": src})
    codec.check_preconditions(int(found["version"]), if_match, False)
    if (yield value(sql.FILE_EXISTS, project_id, dst)) is not None:
        raise Conflict("A file exists at the target path.", {"path": dst})
    src_next = yield from next_version(project_id, src)
    dst_next = yield from next_version(project_id, dst)
    version = max(int(found["version"]) + 1, dst_next)
    if version > dst_next:  # keep a path's versions gapless: "did not exist" before
        yield execute(sql.FV_TOMBSTONE, project_id, dst, version - 1, None, now)
    meta = DEC.file_meta((yield row(sql.FILE_SET_VERSION, project_id, src, dst, version, now)))
    yield execute(sql.FV_TOMBSTONE, project_id, src, src_next, run_id, now)
    yield execute(sql.FV_INSERT_FROM_FILE, project_id, dst, run_id)
    if limits is not None:
        yield from retain(project_id, src, limits, now)
        yield from retain(project_id, dst, limits, now)
        yield from check_total(project_id, limits, now)
    return meta, codec.file_moved_data(meta, src, now, run_id)
