"""``put_files``: many files in one transaction (imports): all or none, quotas cumulative."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import pytest

from server.errors import NotFound, TooLarge
from server.store.models import FileLimits
from server.vfs.writes import FileWrite
from tests.store.helpers import data, put

if TYPE_CHECKING:
    from server.store.models import Project
    from server.store.protocol import Store


def write(path: str, content: bytes) -> FileWrite:
    return FileWrite(path, content, "text/plain", hashlib.sha256(content).hexdigest())


def writes(**files: bytes) -> list[FileWrite]:
    return [write(path.replace("__", "/"), content) for path, content in files.items()]


async def test_all_files_and_one_event_each_in_order(store: Store, project: Project) -> None:
    await put(store, project.id, "old.txt", b"v1")
    limits = FileLimits(max_file_bytes=100, max_files=10, max_total_bytes=1000)
    replace = write("old.txt", b"v2")
    results = await store.put_files(
        project.id, [*writes(a=b"1", src__b=b"22"), replace], limits=limits
    )
    assert [(m.path, m.version, created) for m, created, _ in results] == [
        ("a", 1, True), ("src/b", 1, True), ("old.txt", 2, False)
    ]  # fmt: skip
    assert [e.seq for _, _, e in results] == [2, 3, 4]  # after the one event of put()
    assert [data(e)["path"] for _, _, e in results] == ["a", "src/b", "old.txt"]
    stored = await store.get_file(project.id, "src/b")
    assert stored is not None
    assert stored.content == b"22"
    assert await store.event_bounds(project.id) == (1, 4)


async def test_a_quota_passed_midway_writes_nothing(store: Store, project: Project) -> None:
    await put(store, project.id, "keep", b"k")
    limits = FileLimits(max_file_bytes=100, max_files=3, max_total_bytes=1000)
    with pytest.raises(TooLarge):
        await store.put_files(project.id, writes(a=b"1", b=b"2", c=b"3"), limits=limits)
    assert await store.get_file_meta(project.id, "a") is None
    assert await store.event_bounds(project.id) == (1, 1)  # no event, no seq spent
    bytes_limit = FileLimits(max_file_bytes=100, max_files=10, max_total_bytes=5)
    with pytest.raises(TooLarge):
        await store.put_files(project.id, writes(a=b"123", b=b"456"), limits=bytes_limit)
    assert await store.get_file_meta(project.id, "a") is None
    # After the failures the log goes on with no gap.
    _, _, event = await put(store, project.id, "next", b"n")
    assert event.seq == 2


async def test_missing_project_and_empty_list(store: Store, project: Project) -> None:
    limits = FileLimits(max_file_bytes=100, max_files=10, max_total_bytes=1000)
    with pytest.raises(NotFound):
        await store.put_files("no-such-project", writes(a=b"1"), limits=limits)
    assert await store.put_files(project.id, [], limits=limits) == []
