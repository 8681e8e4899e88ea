"""Projects through a real socket, on both databases."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.api.test_health_and_errors import assert_error
from tests.fixtures.server import create_project, register_user

if TYPE_CHECKING:
    import httpx


async def test_project_crud(client: httpx.AsyncClient) -> None:
    user = await register_user(client)
    created = await client.post(
        "/api/projects", json={"name": "  Alpha ", "description": "first"}, headers=user.headers
    )
    assert created.status_code == 201
    project = created.json()
    assert set(project) == {"id", "name", "description", "created_at", "updated_at"}
    assert project["name"] == "Alpha"
    assert project["created_at"].endswith("Z")

    fetched = await client.get(f"/api/projects/{project['id']}", headers=user.headers)
    assert fetched.json() == project

    patched = await client.patch(
        f"/api/projects/{project['id']}", json={"description": None}, headers=user.headers
    )
    assert patched.status_code == 200
    assert patched.json()["description"] is None
    assert patched.json()["name"] == "Alpha"

    renamed = await client.patch(
        f"/api/projects/{project['id']}", json={"name": "Beta"}, headers=user.headers
    )
    assert renamed.json()["name"] == "Beta"

    deleted = await client.delete(f"/api/projects/{project['id']}", headers=user.headers)
    assert deleted.status_code == 204
    gone = await client.get(f"/api/projects/{project['id']}", headers=user.headers)
    assert_error(gone, 404, "not_found")


async def test_project_list_pages_with_cursor(client: httpx.AsyncClient) -> None:
    user = await register_user(client)
    ids = [await create_project(client, user, f"p{i}") for i in range(5)]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/projects", params=params, headers=user.headers)).json()
        assert len(page["items"]) <= 2
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)
    assert len(seen) == len(set(seen))


async def test_bad_limit_is_validation_failed(client: httpx.AsyncClient) -> None:
    user = await register_user(client)
    for limit in ("0", "201", "ten"):
        response = await client.get("/api/projects", params={"limit": limit}, headers=user.headers)
        assert_error(response, 400, "validation_failed")


async def test_blank_name_and_empty_patch_are_rejected(client: httpx.AsyncClient) -> None:
    user = await register_user(client)
    blank = await client.post("/api/projects", json={"name": "   "}, headers=user.headers)
    assert_error(blank, 400, "validation_failed")
    missing = await client.post("/api/projects", json={}, headers=user.headers)
    assert assert_error(missing, 400, "validation_failed")["details"] == {"name": "required"}
    pid = await create_project(client, user)
    empty = await client.patch(f"/api/projects/{pid}", json={}, headers=user.headers)
    assert_error(empty, 400, "validation_failed")


async def test_other_users_projects_are_not_found(client: httpx.AsyncClient) -> None:
    owner = await register_user(client)
    intruder = await register_user(client)
    pid = await create_project(client, owner)
    for method in ("GET", "PATCH", "DELETE"):
        body = {"name": "mine"} if method == "PATCH" else None
        response = await client.request(
            method, f"/api/projects/{pid}", headers=intruder.headers, json=body
        )
        assert_error(response, 404, "not_found")
    listed = await client.get("/api/projects", headers=intruder.headers)
    assert listed.json() == {"items": [], "next_cursor": None}
    still = await client.get(f"/api/projects/{pid}", headers=owner.headers)
    assert still.json()["name"] == "demo"


async def test_projects_need_a_token(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/projects"), 401, "unauthorized")
    response = await client.get("/api/projects", headers={"Authorization": "Basic abc"})
    assert_error(response, 401, "unauthorized")
