"""Projects: CRUD of the caller's projects (others' projects are 404, never 403)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Blueprint, Response

from server.api.deps import (
    current_call,
    empty_response,
    json_response,
    page_params,
    read_json,
    require_user,
    services,
    to_response,
)
from server.api.exchange import authenticate_call, json_answer
from server.api.validation import object_schema
from server.errors import NotFound, ValidationFailed
from server.timeutil import rfc3339, utc_now

if TYPE_CHECKING:
    from server.api.exchange import Answer, Call
    from server.store.models import Project

blueprint = Blueprint("projects", __name__)

_NAME = {"type": "string", "minLength": 1, "maxLength": 200}
_DESCRIPTION = {"type": ["string", "null"], "maxLength": 5000}
CREATE_SCHEMA = object_schema({"name": _NAME, "description": _DESCRIPTION}, ("name",))
UPDATE_SCHEMA = object_schema({"name": _NAME, "description": _DESCRIPTION})


def project_json(project: Project) -> dict[str, Any]:
    return {
        "id": project.id,
        "name": project.name,
        "description": project.description,
        "created_at": rfc3339(project.created_at),
        "updated_at": rfc3339(project.updated_at),
    }


def _clean_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise ValidationFailed(details={"name": "must not be blank"})
    return name


async def owned_project(project_id: str) -> Project:
    """The caller's project, or ``NotFound`` (also for another user's project)."""
    return await call_project(current_call(), project_id)


async def call_project(call: Call, project_id: str) -> Project:
    """``owned_project`` for any ``Call`` (also below Quart, ``server.api.edge``)."""
    user = await authenticate_call(call)
    project = await call.services.store.get_project(user.user_id, project_id)
    if project is None:
        raise NotFound("No such project.")
    return project


async def project_answer(call: Call, project_id: str) -> Answer:
    """``GET /api/projects/{id}``, for both layers."""
    return json_answer(project_json(await call_project(call, project_id)))


@blueprint.get("/api/projects")
async def list_projects() -> Response:
    user = await require_user()
    limit, cursor = page_params()
    page = await services().store.list_projects(user.user_id, limit, cursor)
    return json_response(
        {"items": [project_json(p) for p in page.items], "next_cursor": page.next_cursor}
    )


@blueprint.post("/api/projects")
async def create_project() -> Response:
    user = await require_user()
    body = await read_json(CREATE_SCHEMA)
    svc = services()
    project = await svc.store.create_project(
        user.user_id,
        _clean_name(body["name"]),
        body.get("description"),
        max_projects=svc.settings.max_projects_per_user,
    )
    return json_response(project_json(project), 201)


@blueprint.get("/api/projects/<project_id>")
async def get_project(project_id: str) -> Response:
    return to_response(await project_answer(current_call(), project_id))


@blueprint.patch("/api/projects/<project_id>")
async def update_project(project_id: str) -> Response:
    user = await require_user()
    body = await read_json(UPDATE_SCHEMA)
    if not body:
        raise ValidationFailed(details={"body": "name or description is required"})
    svc = services()
    project, event = await svc.store.update_project(
        user.user_id,
        project_id,
        name=_clean_name(body["name"]) if "name" in body else None,
        description=body.get("description"),
        set_description="description" in body,
    )
    svc.hub.publish([event])
    return json_response(project_json(project))


@blueprint.delete("/api/projects/<project_id>")
async def delete_project(project_id: str) -> Response:
    """Cancels the project's runs, deletes it with everything in it, ends its streams."""
    project = await owned_project(project_id)
    svc = services()
    await svc.supervisor.cancel_project(project.id)
    await svc.store.delete_project(project.owner_id, project.id)
    svc.hub.publish_transient(
        project.id,
        {"type": "project.deleted", "project_id": project.id, "at": rfc3339(utc_now())},
    )
    svc.hub.close_project(project.id)
    return empty_response(204)
