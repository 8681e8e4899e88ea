"""Projects: ownership, pagination, updates with their event, cascade on delete."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from server.errors import NotFound, ValidationFailed
from server.events.model import NewEvent
from server.store.models import Run, RunStatus
from server.timeutil import new_id, rfc3339, utc_now
from tests.store.helpers import data, put

if TYPE_CHECKING:
    from server.store.models import Project, User
    from server.store.protocol import Store


async def test_create_get_and_ownership(store: Store, user: User, other: User) -> None:
    project = await store.create_project(user.id, "site", None)
    assert project.owner_id == user.id
    assert project.created_at == project.updated_at
    assert await store.get_project(user.id, project.id) == project
    assert await store.get_project(other.id, project.id) is None
    assert await store.get_project(user.id, new_id()) is None
    assert await store.project_owner(project.id) == user.id
    assert await store.project_owner(new_id()) is None


async def test_list_projects_newest_first_over_pages(store: Store, user: User, other: User) -> None:
    created = [await store.create_project(user.id, f"p{i}", None) for i in range(5)]
    await store.create_project(other.id, "not mine", None)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await store.list_projects(user.id, 2, cursor)
        pages += 1
        seen.extend(p.id for p in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 3
    # newest first by id (UUIDv7: creation order, up to ids made in the same millisecond)
    assert seen == sorted((p.id for p in created), reverse=True)


async def test_bad_cursor_is_rejected(store: Store, user: User) -> None:
    with pytest.raises(ValidationFailed):
        await store.list_projects(user.id, 2, "%%%not-base64")


async def test_update_project_appends_event(store: Store, user: User, project: Project) -> None:
    renamed, event = await store.update_project(
        user.id, project.id, name="renamed", description=None, set_description=False
    )
    assert renamed.name == "renamed"
    assert renamed.description == "a project"  # kept: set_description is False
    assert renamed.updated_at >= project.updated_at
    assert event.seq == 1
    assert event.type == "project.updated"
    assert data(event) == {
        "type": "project.updated",
        "project_id": project.id,
        "at": data(event)["at"],
        "project": {
            "id": project.id,
            "name": "renamed",
            "description": "a project",
            "created_at": rfc3339(project.created_at),
            "updated_at": rfc3339(renamed.updated_at),
        },
    }
    cleared, second = await store.update_project(
        user.id, project.id, name=None, description=None, set_description=True
    )
    assert (cleared.name, cleared.description, second.seq) == ("renamed", None, 2)
    assert await store.get_project(user.id, project.id) == cleared


async def test_update_and_delete_of_other_owner_not_found(
    store: Store, project: Project, other: User
) -> None:
    with pytest.raises(NotFound):
        await store.update_project(other.id, project.id, name="x", description=None,
                                   set_description=False)  # fmt: skip
    with pytest.raises(NotFound):
        await store.delete_project(other.id, project.id)
    assert await store.project_owner(project.id) == project.owner_id


async def test_delete_project_cascades(store: Store, user: User, project: Project) -> None:
    await put(store, project.id, "a.txt", b"hello")
    run = Run(
        id=new_id(), project_id=project.id, owner_id=user.id, status=RunStatus.PENDING,
        prompt="p", intent=None, plan=None, options={}, error=None, created_at=utc_now(),
    )  # fmt: skip
    await store.create_run(run, [NewEvent(project.id, "run.created", {"type": "run.created"})])
    await store.delete_project(user.id, project.id)

    assert await store.get_project(user.id, project.id) is None
    assert await store.get_file(project.id, "a.txt") is None
    assert await store.get_run(run.id) is None
    assert await store.events_after(project.id, 0, 100) == []
    assert (await store.list_files(project.id, "", 10, None)).items == []
    with pytest.raises(NotFound):
        await store.delete_project(user.id, project.id)
