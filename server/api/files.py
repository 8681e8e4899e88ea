"""Files of a project's virtual file system: list, read, write, move, delete; the kept
versions of a file (``?versions``, ``?version=n``) and restoring one.

Conditional requests: ``ETag: "<version>"``; ``If-None-Match`` on GET -> 304;
``If-Match: "<version>"`` on PUT/PATCH/DELETE -> 412 when stale; ``If-None-Match: *`` on
PUT -> 412 when the file exists.

File bytes are user content served from the API's origin: every read carries
``X-Content-Type-Options: nosniff`` and a sandboxing ``Content-Security-Policy``, and any
type outside a short list of inert ones (HTML, SVG, XML, PDF, unknown...) is sent with
``Content-Disposition: attachment`` so a browser downloads it instead of rendering it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from urllib.parse import quote

from quart import Blueprint, Response, request

from server.api.deps import (
    current_call,
    empty_response,
    json_response,
    page_params,
    read_body,
    read_json,
    services,
    to_response,
)
from server.api.exchange import Answer
from server.api.projects import call_project, owned_project
from server.api.validation import object_schema
from server.errors import ValidationFailed
from server.vfs.history import version_json
from server.vfs.service import file_json

if TYPE_CHECKING:
    from server.api.exchange import Call

blueprint = Blueprint("files", __name__)

MOVE_SCHEMA = object_schema({"path": {"type": "string", "minLength": 1}}, ("path",))
RESTORE_SCHEMA = object_schema(
    {"version": {"type": "integer", "minimum": 1, "maximum": 10**15}}, ("version",)
)


INLINE_TYPES = frozenset(
    {
        "text/plain",
        "text/markdown",
        "text/csv",
        "text/css",
        "text/javascript",
        "text/typescript",
        "text/x-python",
        "text/x-shellscript",
        "text/x-rust",
        "text/x-go",
        "application/json",
        "application/toml",
        "application/yaml",
        "application/sql",
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
    }
)
"""Types a browser shows without running anything; every other type is an attachment."""

FILE_CSP = "default-src 'none'; sandbox"


def content_headers(path: str, content_type: str) -> dict[str, str]:
    """Headers that stop a browser from sniffing, rendering or running a served file."""
    headers = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": FILE_CSP}
    if content_type.split(";", 1)[0].strip().lower() not in INLINE_TYPES:
        name = quote(path.rsplit("/", 1)[-1], safe="")
        headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{name}"
    return headers


def etag(version: int) -> str:
    return f'"{version}"'


def _if_match() -> int | None:
    """The version of ``If-Match: "<version>"``; ``None`` when absent."""
    raw = request.headers.get("If-Match")
    if raw is None:
        return None
    value = raw.strip().removeprefix("W/").strip('"')
    try:
        version = int(value)
    except ValueError:
        raise ValidationFailed(details={"If-Match": 'must be "<version>"'}) from None
    if version < 1:
        raise ValidationFailed(details={"If-Match": "versions start at 1"})
    return version


def _etags(header: str) -> set[str]:
    return {part.strip().removeprefix("W/") for part in header.split(",")}


@blueprint.get("/api/projects/<project_id>/files")
async def list_files(project_id: str) -> Response:
    project = await owned_project(project_id)
    limit, cursor = page_params()
    prefix = request.args.get("prefix", "")
    page = await services().files.list(project.id, prefix, limit, cursor)
    return json_response(
        {"items": [file_json(m) for m in page.items], "next_cursor": page.next_cursor}
    )


def _version_arg(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 15 or int(raw) < 1:
        raise ValidationFailed(details={"version": "must be a version number (1, 2, ...)"})
    return int(raw)


async def _history_read(project_id: str, path: str) -> Response:
    """``?versions`` (the kept versions, a page) or ``?version=n`` (one version's bytes)."""
    history = services().files.history()
    raw = request.args.get("version")
    if raw is None:
        limit, cursor = page_params()
        page = await history.versions(project_id, path, limit, cursor)
        return json_response(
            {"items": [version_json(v) for v in page.items], "next_cursor": page.next_cursor}
        )
    meta, content = await history.read(project_id, path, _version_arg(raw))
    content_type = meta.content_type or "application/octet-stream"
    return Response(
        content,
        status=200,
        content_type=content_type,
        headers={
            "ETag": etag(meta.version),
            "Cache-Control": "no-cache",
            **content_headers(path, content_type),
        },
    )


@blueprint.get("/api/projects/<project_id>/files/<vfspath:path>")
async def read_file(project_id: str, path: str) -> Response:
    call = current_call()
    if is_history_read(call):
        project = await owned_project(project_id)
        return await _history_read(project.id, path)
    return to_response(await file_answer(call, project_id, path))


def is_history_read(call: Call) -> bool:
    """``?versions`` or ``?version=``: answered by ``_history_read`` (Quart only)."""
    return call.has_arg("versions") or call.has_arg("version")


async def file_answer(call: Call, project_id: str, path: str) -> Answer:
    """``GET /api/projects/{id}/files/{path}`` (not a history read), for both layers."""
    project = await call_project(call, project_id)
    files = call.services.files
    if_none_match = call.header(b"if-none-match")
    if if_none_match is not None:
        meta = await files.stat(project.id, path)
        tags = _etags(if_none_match)
        if "*" in tags or etag(meta.version) in tags:
            return Answer(304, {"ETag": etag(meta.version)})
    data = await files.read(project.id, path)
    return Answer(
        200,
        {
            "ETag": etag(data.meta.version),
            "Cache-Control": "no-cache",
            **content_headers(data.meta.path, data.meta.content_type),
        },
        data.content,
        data.meta.content_type,
    )


@blueprint.put("/api/projects/<project_id>/files/<vfspath:path>")
async def write_file(project_id: str, path: str) -> Response:
    project = await owned_project(project_id)
    svc = services()
    if_match = _if_match()
    if_none_match_any = request.headers.get("If-None-Match", "").strip() == "*"
    content = await read_body(svc.files.limits.max_file_bytes)
    meta, created = await svc.files.write(
        project.id, path, content, if_match=if_match, if_none_match_any=if_none_match_any
    )
    return json_response(file_json(meta), 201 if created else 200, {"ETag": etag(meta.version)})


@blueprint.patch("/api/projects/<project_id>/files/<vfspath:path>")
async def move_file(project_id: str, path: str) -> Response:
    project = await owned_project(project_id)
    body = await read_json(MOVE_SCHEMA)
    meta = await services().files.move(project.id, path, body["path"], if_match=_if_match())
    return json_response(file_json(meta), 200, {"ETag": etag(meta.version)})


@blueprint.delete("/api/projects/<project_id>/files/<vfspath:path>")
async def delete_file(project_id: str, path: str) -> Response:
    project = await owned_project(project_id)
    await services().files.delete(project.id, path, if_match=_if_match())
    return empty_response(204)


@blueprint.post("/api/projects/<project_id>/files/<vfspath:path>/restore")
async def restore_file(project_id: str, path: str) -> Response:
    """Write a kept version back as the newest one (``file.changed``)."""
    project = await owned_project(project_id)
    body = await read_json(RESTORE_SCHEMA)
    event = await services().files.history().restore(project.id, path, int(body["version"]))
    data = json.loads(event.data)
    meta = {k: data[k] for k in ("path", "size", "version", "sha256", "content_type")}
    return json_response({**meta, "updated_at": data["at"]}, 200, {"ETag": etag(meta["version"])})
