"""The shared programs' dialect steps: a foreign-key miss is ``NotFound`` on both backends
(each driver catches its own driver's error), and nothing of the unit stays written."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from server.errors import NotFound
from server.timeutil import new_id
from tests.store.test_runs import make_run

if TYPE_CHECKING:
    from server.store.models import Project
    from server.store.protocol import Store


@pytest.mark.parametrize("max_projects", [None, 3])
async def test_a_project_of_a_missing_user_is_not_found(
    store: Store, max_projects: int | None
) -> None:
    missing = new_id()
    with pytest.raises(NotFound):
        await store.create_project(missing, "p", None, max_projects=max_projects)
    assert (await store.list_projects(missing, 10, None)).items == []


async def test_steps_of_a_missing_run_are_not_found(store: Store, project: Project) -> None:
    run = make_run(project)
    with pytest.raises(NotFound):
        await store.write_run_state(new_steps=run.steps)
    assert await store.get_run(run.id) is None
