"""Files: versions, preconditions, quotas, atomic replace, moves, listing, gap-free seqs."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import pytest
import trio

from server.errors import Conflict, NotFound, TooLarge, VersionMismatch
from server.store.models import FileLimits
from tests.store.helpers import LIMITS, data, put

if TYPE_CHECKING:
    from server.store.models import Project
    from server.store.protocol import Store


async def test_create_then_replace_bumps_version(store: Store, project: Project) -> None:
    meta, created, event = await put(store, project.id, "src/a.py", b"print(1)")
    assert (meta.version, meta.size, created) == (1, 8, True)
    assert meta.sha256 == hashlib.sha256(b"print(1)").hexdigest()
    assert data(event) == {
        "type": "file.changed", "project_id": project.id, "at": data(event)["at"],
        "path": "src/a.py", "size": 8, "version": 1, "sha256": meta.sha256,
        "content_type": "text/plain", "created": True,
    }  # fmt: skip
    assert event.data == event.data.replace(" ", "")  # compact JSON

    meta2, created2, event2 = await put(store, project.id, "src/a.py", b"print(22)")
    assert (meta2.version, created2, event2.seq) == (2, False, 2)
    assert data(event2)["created"] is False
    stored = await store.get_file(project.id, "src/a.py")
    assert stored is not None
    assert stored.content == b"print(22)"
    assert stored.meta == meta2
    assert await store.get_file_meta(project.id, "src/a.py") == meta2
    assert await store.get_file_meta(project.id, "missing") is None


async def test_binary_content_round_trips(store: Store, project: Project) -> None:
    blob = bytes(range(256))
    await put(store, project.id, "bin", blob)
    stored = await store.get_file(project.id, "bin")
    assert stored is not None
    assert stored.content == blob


async def test_if_match_and_if_none_match(store: Store, project: Project) -> None:
    with pytest.raises(VersionMismatch):
        await put(store, project.id, "a", if_match=1)  # missing file
    await put(store, project.id, "a", b"v1")
    with pytest.raises(VersionMismatch):
        await put(store, project.id, "a", b"v2", if_match=7)
    with pytest.raises(VersionMismatch):
        await put(store, project.id, "a", b"v2", if_none_match_any=True)
    meta, _, _ = await put(store, project.id, "a", b"v2", if_match=1)
    assert meta.version == 2
    stored = await store.get_file(project.id, "a")
    assert stored is not None
    assert stored.content == b"v2"
    # failed writes took no seq: the log is still gap-free
    assert [e.seq for e in await store.events_after(project.id, 0, 10)] == [1, 2]


@pytest.mark.parametrize(
    ("limits", "limit_name"),
    [
        (FileLimits(max_file_bytes=4, max_files=50, max_total_bytes=10_000), "max_file_bytes"),
        (FileLimits(max_file_bytes=100, max_files=50, max_total_bytes=8), "max_total_bytes"),
    ],
)
async def test_failed_quota_leaves_old_content(
    store: Store, project: Project, limits: FileLimits, limit_name: str
) -> None:
    await put(store, project.id, "a", b"old")
    with pytest.raises(TooLarge) as info:
        await put(store, project.id, "a", b"new content", limits=limits)
    assert info.value.details["limit"] == limit_name
    stored = await store.get_file(project.id, "a")
    assert stored is not None
    assert (stored.content, stored.meta.version) == (b"old", 1)
    assert (await store.event_bounds(project.id)) == (1, 1)


async def test_file_count_quota(store: Store, project: Project) -> None:
    limits = FileLimits(max_file_bytes=100, max_files=2, max_total_bytes=1000)
    await put(store, project.id, "a", limits=limits)
    await put(store, project.id, "b", limits=limits)
    await put(store, project.id, "b", b"replace is fine", limits=limits)
    with pytest.raises(TooLarge) as info:
        await put(store, project.id, "c", limits=limits)
    assert info.value.details["limit"] == "max_files"
    assert await store.get_file_meta(project.id, "c") is None


async def test_total_bytes_counts_replacement_once(store: Store, project: Project) -> None:
    # history keeps only the current version: a replacement frees the old bytes
    limits = FileLimits(max_file_bytes=100, max_files=10, max_total_bytes=10, history_versions=1)
    await put(store, project.id, "a", b"12345", limits=limits)
    await put(store, project.id, "a", b"1234567890", limits=limits)  # 10 total, not 15
    with pytest.raises(TooLarge):
        await put(store, project.id, "b", b"1", limits=limits)


async def test_kept_versions_count_against_the_quota(store: Store, project: Project) -> None:
    limits = FileLimits(max_file_bytes=100, max_files=10, max_total_bytes=12, history_versions=2)
    await put(store, project.id, "a", b"12345", limits=limits)
    with pytest.raises(TooLarge) as info:  # 5 kept + 10 new = 15 > 12
        await put(store, project.id, "a", b"1234567890", limits=limits)
    assert info.value.details["total"] == 15
    assert (await store.get_file(project.id, "a")).content == b"12345"  # type: ignore[union-attr]


async def test_move(store: Store, project: Project) -> None:
    await put(store, project.id, "a.txt", b"content")
    await put(store, project.id, "b.txt", b"other")
    with pytest.raises(Conflict):
        await store.move_file(project.id, "a.txt", "b.txt")
    with pytest.raises(NotFound):
        await store.move_file(project.id, "nope", "c.txt")
    with pytest.raises(VersionMismatch):
        await store.move_file(project.id, "a.txt", "c.txt", if_match=5)
    meta, event = await store.move_file(project.id, "a.txt", "dir/c.txt", if_match=1)
    assert (meta.path, meta.version, meta.size) == ("dir/c.txt", 2, 7)
    assert data(event) == {
        "type": "file.moved", "project_id": project.id, "at": data(event)["at"],
        "from": "a.txt", "to": "dir/c.txt", "version": 2,
    }  # fmt: skip
    assert event.seq == 3
    assert await store.get_file(project.id, "a.txt") is None
    moved = await store.get_file(project.id, "dir/c.txt")
    assert moved is not None
    assert moved.content == b"content"


async def test_delete(store: Store, project: Project) -> None:
    await put(store, project.id, "a", b"1")
    with pytest.raises(NotFound):
        await store.delete_file(project.id, "b")
    with pytest.raises(VersionMismatch):
        await store.delete_file(project.id, "a", if_match=2)
    assert await store.get_file_meta(project.id, "a") is not None
    event = await store.delete_file(project.id, "a", if_match=1)
    assert data(event) == {
        "type": "file.deleted",
        "project_id": project.id,
        "at": data(event)["at"],
        "path": "a",
    }
    assert event.seq == 2
    assert await store.get_file(project.id, "a") is None


async def test_list_files_prefix_and_pages(store: Store, project: Project) -> None:
    paths = ["src/b.py", "src/a.py", "src/sub/c.py", "srcx/d.py", "README.md", "src/%_x.py"]
    for path in paths:
        await put(store, project.id, path)
    listed: list[str] = []
    cursor: str | None = None
    while True:
        page = await store.list_files(project.id, "src/", 2, cursor)
        listed.extend(m.path for m in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert listed == ["src/%_x.py", "src/a.py", "src/b.py", "src/sub/c.py"]
    everything = await store.list_files(project.id, "", 100, None)
    assert [m.path for m in everything.items] == sorted(paths)
    assert everything.next_cursor is None


async def test_concurrent_writers_get_gap_free_seqs(store: Store, project: Project) -> None:
    seqs: list[int] = []

    async def write(i: int) -> None:
        _, _, event = await put(store, project.id, f"f{i}.txt", b"x" * i)
        seqs.append(event.seq)

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(write, i)
    assert sorted(seqs) == list(range(1, 21))
    logged = await store.events_after(project.id, 0, 100)
    assert [e.seq for e in logged] == list(range(1, 21))
    assert await store.event_bounds(project.id) == (1, 20)


async def test_concurrent_writers_respect_file_count_quota(store: Store, project: Project) -> None:
    limits = FileLimits(max_file_bytes=100, max_files=5, max_total_bytes=1000)
    results: list[bool] = []

    async def write(i: int) -> None:
        try:
            await put(store, project.id, f"f{i}", limits=limits)
            results.append(True)
        except TooLarge:
            results.append(False)

    async with trio.open_nursery() as nursery:
        for i in range(12):
            nursery.start_soon(write, i)
    assert results.count(True) == 5
    assert len((await store.list_files(project.id, "", 100, None)).items) == 5
    assert LIMITS.max_files > 5
