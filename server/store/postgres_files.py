"""The PostgreSQL side of project files and their history (part of ``PostgresStore``).

Every write keeps a row per version in ``file_versions`` (migration 4), the current state
included, a NULL content marking a path that stopped existing. Retention (count and age,
``FileLimits.history_*``) runs in the same transaction as the write, and the project's
quota counts every kept version. Every write first allocates its event seqs, which locks
the project row, so writers of one project queue. Statements come from ``server.store.sql``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from server.errors import Conflict, NotFound
from server.events.model import NewEvent, StoredEvent
from server.store import codec, sql
from server.store.codec import decode_cursor, page_cursor
from server.store.models import (
    FileData,
    FileMeta,
    FileVersion,
    Page,
    RunFileSpan,
    StagedChange,
)
from server.store.postgres_runs import DEC, USER_LOCK, allocate, append_in
from server.timeutil import utc_now
from server.vfs.quota import check_quota, check_staged_totals, check_stored_total
from server.vfs.writes import FileWrite

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from server.store.models import FileLimits
    from server.store.postgres_db import Conn, PostgresDatabase
    from server.vfs.writes import FileOp


async def _next_version(conn: Conn, project_id: str, path: str) -> int:
    return int(await conn.fetchval(sql.FV_NEXT, project_id, path))


async def _latest(conn: Conn, project_id: str, path: str) -> int | None:
    value = await conn.fetchval(sql.FV_LATEST, project_id, path)
    return None if value is None else int(value)


async def _retain(
    conn: Conn, project_id: str, path: str, limits: FileLimits, now: datetime
) -> None:
    cutoff = now - timedelta(days=limits.history_days)
    await conn.execute(sql.FV_PRUNE, project_id, path, limits.history_versions, cutoff)


async def _check_total(conn: Conn, project_id: str, limits: FileLimits, now: datetime) -> None:
    total = int(await conn.fetchval(sql.FV_TOTAL, project_id))
    if total > limits.max_total_bytes:  # short: drop every aged version first, then decide
        cutoff = now - timedelta(days=limits.history_days)
        await conn.execute(sql.FV_PRUNE_AGED, project_id, cutoff)
        total = int(await conn.fetchval(sql.FV_TOTAL, project_id))
    check_stored_total(limits, total)


async def _lock_owner(conn: Conn, project_id: str, limits: FileLimits) -> None:
    """With a per-user byte limit, lock the owner's row before the project's (``allocate``):
    one writer at a time checks a user's total, and the lock order never deadlocks."""
    if limits.max_user_bytes is None:
        return
    owner = await conn.fetchval(sql.PROJECT_OWNER, project_id)
    if owner is None or await conn.fetchval(USER_LOCK, owner) is None:
        raise NotFound("Project not found.")


async def _write(
    conn: Conn,
    project_id: str,
    w: FileWrite,
    *,
    limits: FileLimits,
    run_id: str | None,
    now: datetime,
    if_match: int | None = None,
    if_none_match_any: bool = False,
) -> tuple[FileMeta, bool, dict[str, Any]]:
    user_bytes = 0
    if limits.max_user_bytes is not None:  # the caller holds the user's row (_lock_owner)
        owner = await conn.fetchval(sql.PROJECT_OWNER, project_id)
        user_bytes = int(await conn.fetchval(sql.USER_FILE_BYTES, owner))
    row = await conn.fetchrow(sql.FILE_QUOTA_STATE, project_id, w.path)
    old_version = None if row["version"] is None else int(row["version"])
    old_size = None if row["size"] is None else int(row["size"])
    codec.check_preconditions(old_version, if_match, if_none_match_any)
    check_quota(limits, len(w.content), old_size=old_size, file_count=int(row["count"]),
                total_bytes=int(row["total"]), user_bytes=user_bytes)  # fmt: skip
    version = await _next_version(conn, project_id, w.path)
    await conn.execute(sql.FILE_UPSERT, project_id, w.path, w.content, len(w.content), version,
                       w.sha256, w.content_type, now)  # fmt: skip
    await conn.execute(sql.FV_INSERT, project_id, w.path, version, w.content, len(w.content),
                       w.sha256, w.content_type, run_id, now)  # fmt: skip
    await _retain(conn, project_id, w.path, limits, now)
    meta = FileMeta(project_id, w.path, len(w.content), version, w.sha256, w.content_type, now)
    created = old_version is None
    return meta, created, codec.file_changed_data(meta, created, now, run_id)


async def _delete(
    conn: Conn,
    project_id: str,
    path: str,
    *,
    limits: FileLimits | None,
    run_id: str | None,
    now: datetime,
    if_match: int | None = None,
) -> dict[str, Any]:
    version = await conn.fetchval(sql.FILE_DELETE, project_id, path)
    if version is None:
        raise NotFound("File not found.", {"path": path})
    codec.check_preconditions(int(version), if_match, False)  # raising rolls back
    tomb = await _next_version(conn, project_id, path)
    await conn.execute(sql.FV_TOMBSTONE, project_id, path, tomb, run_id, now)
    if limits is not None:
        await _retain(conn, project_id, path, limits, now)
    return codec.file_deleted_data(project_id, path, now, run_id)


async def _events(
    conn: Conn, project_id: str, datas: Sequence[dict[str, Any]], now: datetime, seq: int
) -> list[StoredEvent]:
    news = [NewEvent(project_id, d["type"], d) for d in datas]
    return await append_in(conn, news, now, {project_id: seq})


class PostgresFiles:
    """File operations of the ``Store`` protocol on PostgreSQL (mixed into ``PostgresStore``)."""

    _db: PostgresDatabase

    async def list_files(
        self, project_id: str, prefix: str, limit: int, cursor: str | None
    ) -> Page[FileMeta]:
        after = decode_cursor(cursor) or ""

        async def op(conn: Conn) -> Page[FileMeta]:
            rows = await conn.fetch(sql.FILE_LIST, project_id, after, prefix, limit + 1)
            items = [DEC.file_meta(r) for r in rows[:limit]]
            return Page(items, page_cursor([r["path"] for r in rows], limit))

        return await self._db.run(op, transaction=False)

    async def get_file(self, project_id: str, path: str) -> FileData | None:
        async def op(conn: Conn) -> FileData | None:
            row = await conn.fetchrow(sql.FILE_GET, project_id, path)
            return None if row is None else FileData(DEC.file_meta(row), bytes(row["content"]))

        return await self._db.run(op, transaction=False)

    async def get_file_meta(self, project_id: str, path: str) -> FileMeta | None:
        async def op(conn: Conn) -> FileMeta | None:
            row = await conn.fetchrow(sql.FILE_META, project_id, path)
            return None if row is None else DEC.file_meta(row)

        return await self._db.run(op, transaction=False)

    async def put_file(
        self,
        project_id: str,
        path: str,
        content: bytes,
        *,
        content_type: str,
        sha256: str,
        limits: FileLimits,
        if_match: int | None = None,
        if_none_match_any: bool = False,
        run_id: str | None = None,
    ) -> tuple[FileMeta, bool, StoredEvent]:
        async def op(conn: Conn) -> tuple[FileMeta, bool, StoredEvent]:
            now = utc_now()
            await _lock_owner(conn, project_id, limits)
            seq = await allocate(conn, project_id, 1)  # locks the project row
            meta, created, data = await _write(
                conn, project_id, FileWrite(path, content, content_type, sha256), limits=limits,
                run_id=run_id, now=now, if_match=if_match, if_none_match_any=if_none_match_any,
            )  # fmt: skip
            await _check_total(conn, project_id, limits, now)
            [event] = await _events(conn, project_id, [data], now, seq)
            return meta, created, event

        return await self._db.run(op)

    async def put_files(
        self,
        project_id: str,
        files: Sequence[FileWrite],
        *,
        limits: FileLimits,
        run_id: str | None = None,
    ) -> list[tuple[FileMeta, bool, StoredEvent]]:
        if not files:
            return []

        async def op(conn: Conn) -> list[tuple[FileMeta, bool, StoredEvent]]:
            now = utc_now()
            await _lock_owner(conn, project_id, limits)
            seq = await allocate(conn, project_id, len(files))  # locks the project
            written = [  # each quota read sees the writes before it: checked cumulatively
                await _write(conn, project_id, f, limits=limits, run_id=run_id, now=now)
                for f in files
            ]
            await _check_total(conn, project_id, limits, now)
            events = await _events(conn, project_id, [d for *_, d in written], now, seq)
            return [(m, c, e) for (m, c, _), e in zip(written, events, strict=True)]

        return await self._db.run(op)

    async def move_file(
        self,
        project_id: str,
        src: str,
        dst: str,
        *,
        if_match: int | None = None,
        run_id: str | None = None,
        limits: FileLimits | None = None,
    ) -> tuple[FileMeta, StoredEvent]:
        async def op(conn: Conn) -> tuple[FileMeta, StoredEvent]:
            now = utc_now()
            seq = await allocate(conn, project_id, 1)
            row = await conn.fetchrow(sql.FILE_META, project_id, src)
            if row is None:
                raise NotFound("File not found.", {"path": src})
            codec.check_preconditions(int(row["version"]), if_match, False)
            if await conn.fetchval(sql.FILE_EXISTS, project_id, dst):
                raise Conflict("A file exists at the target path.", {"path": dst})
            src_next = await _next_version(conn, project_id, src)
            dst_next = await _next_version(conn, project_id, dst)
            version = max(int(row["version"]) + 1, dst_next)
            if version > dst_next:  # keep a path's versions gapless: "did not exist" before
                await conn.execute(sql.FV_TOMBSTONE, project_id, dst, version - 1, None, now)
            moved = await conn.fetchrow(sql.FILE_SET_VERSION, project_id, src, dst, version, now)
            meta = DEC.file_meta(moved)
            await conn.execute(sql.FV_TOMBSTONE, project_id, src, src_next, run_id, now)
            await conn.execute(sql.FV_INSERT_FROM_FILE, project_id, dst, run_id)
            if limits is not None:
                await _retain(conn, project_id, src, limits, now)
                await _retain(conn, project_id, dst, limits, now)
                await _check_total(conn, project_id, limits, now)
            data = codec.file_moved_data(meta, src, now, run_id)
            [event] = await _events(conn, project_id, [data], now, seq)
            return meta, event

        return await self._db.run(op)

    async def delete_file(
        self,
        project_id: str,
        path: str,
        *,
        if_match: int | None = None,
        run_id: str | None = None,
        limits: FileLimits | None = None,
    ) -> StoredEvent:
        async def op(conn: Conn) -> StoredEvent:
            now = utc_now()
            seq = await allocate(conn, project_id, 1)
            data = await _delete(
                conn, project_id, path, limits=limits, run_id=run_id, now=now, if_match=if_match
            )
            [event] = await _events(conn, project_id, [data], now, seq)
            return event

        return await self._db.run(op)

    # -- history -----------------------------------------------------------------------------
    async def list_file_versions(
        self, project_id: str, path: str, limit: int, cursor: str | None
    ) -> Page[FileVersion]:
        before = codec.int_cursor(cursor)

        async def op(conn: Conn) -> Page[FileVersion]:
            rows = await conn.fetch(sql.FV_LIST, project_id, path, before, limit + 1)
            items = [DEC.file_version(r) for r in rows[:limit]]
            return Page(items, page_cursor([str(r["version"]) for r in rows], limit))

        return await self._db.run(op, transaction=False)

    async def get_file_version(
        self, project_id: str, path: str, version: int
    ) -> tuple[FileVersion, bytes | None] | None:
        async def op(conn: Conn) -> tuple[FileVersion, bytes | None] | None:
            row = await conn.fetchrow(sql.FV_GET, project_id, path, version)
            return None if row is None else (DEC.file_version(row), codec.opt_bytes(row))

        return await self._db.run(op, transaction=False)

    async def run_file_spans(self, project_id: str, run_id: str) -> list[RunFileSpan]:
        async def op(conn: Conn) -> list[RunFileSpan]:
            rows = await conn.fetch(sql.FV_OF_RUN, project_id, run_id)
            return [RunFileSpan(r["path"], int(r["first_version"]), int(r["last_version"]))
                    for r in rows]  # fmt: skip

        return await self._db.run(op, transaction=False)

    async def latest_file_versions(
        self, project_id: str, paths: Sequence[str]
    ) -> dict[str, int | None]:
        async def op(conn: Conn) -> dict[str, int | None]:
            return {p: await _latest(conn, project_id, p) for p in paths}

        return await self._db.run(op, readonly=True)

    async def apply_file_ops(
        self,
        project_id: str,
        ops: Sequence[FileOp],
        *,
        expected: Mapping[str, int | None],
        limits: FileLimits,
        run_id: str | None,
        staged_run: str | None = None,
        staged_paths: Sequence[str] = (),
    ) -> list[StoredEvent]:
        async def op(conn: Conn) -> list[StoredEvent]:
            now = utc_now()
            await _lock_owner(conn, project_id, limits)
            seq = await allocate(conn, project_id, len(ops))  # locks the project
            stale = sorted(
                [p for p, v in expected.items() if await _latest(conn, project_id, p) != v]
            )
            if stale:
                raise Conflict("Files changed since: nothing was applied.", {"paths": stale})
            datas: list[dict[str, Any]] = []
            for change in ops:
                if change.write is None:
                    datas.append(await _delete(conn, project_id, change.path, limits=limits,
                                               run_id=run_id, now=now))  # fmt: skip
                else:
                    *_, data = await _write(conn, project_id, change.write, limits=limits,
                                            run_id=run_id, now=now)  # fmt: skip
                    datas.append(data)
            await _check_total(conn, project_id, limits, now)
            for path in staged_paths:
                await conn.execute(sql.RC_DELETE, staged_run, path)
            return await _events(conn, project_id, datas, now, seq)

        return await self._db.run(op)

    # -- review changesets ---------------------------------------------------------------------
    async def stage_change(
        self, run_id: str, project_id: str, change: StagedChange, *, limits: FileLimits
    ) -> None:
        async def op(conn: Conn) -> None:
            await conn.execute(sql.RC_STAGE, run_id, project_id, change.path, change.content,
                               change.size, change.sha256, change.content_type,
                               change.moved_from, change.staged_at)  # fmt: skip
            count, total = await conn.fetchrow(sql.RC_TOTALS, run_id)
            check_staged_totals(limits, int(count), int(total))  # raising rolls back

        await self._db.run(op)

    async def get_staged(self, run_id: str, path: str) -> StagedChange | None:
        async def op(conn: Conn) -> StagedChange | None:
            row = await conn.fetchrow(sql.RC_GET, run_id, path)
            return None if row is None else DEC.staged(row)

        return await self._db.run(op, transaction=False)

    async def list_staged(self, run_id: str) -> list[StagedChange]:
        async def op(conn: Conn) -> list[StagedChange]:
            return [DEC.staged(r) for r in await conn.fetch(sql.RC_LIST, run_id)]

        return await self._db.run(op, transaction=False)

    async def end_review(
        self, run_id: str, status: str, events: Sequence[NewEvent]
    ) -> list[StoredEvent] | None:
        async def op(conn: Conn) -> list[StoredEvent] | None:
            if await conn.fetchval(sql.RUN_END_REVIEW, run_id, status) is None:
                return None
            await conn.execute(sql.RC_CLEAR, run_id)
            return await append_in(conn, events, utc_now())

        return await self._db.run(op)
