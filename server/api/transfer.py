"""Whole-project import and export (``server.vfs.transfer``).

``POST /api/projects/{id}/import``: the body is a tar, tar.gz or zip archive (at most
``max_import_bytes``, refused with 413 as soon as it passes that); every file is written in
one transaction, or none (400 lists each refused member; 413 for the project's limits).
``GET /api/projects/{id}/export``: the project's files as a streamed tar.gz.
"""

from __future__ import annotations

import re

from quart import Blueprint, Response, request

from server.api.deps import json_response, read_body, services
from server.api.projects import owned_project
from server.errors import UnsupportedMediaType

blueprint = Blueprint("transfer", __name__)

ARCHIVE_TYPES = frozenset(
    {
        "application/gzip",
        "application/x-gzip",
        "application/x-tar",
        "application/x-gtar",
        "application/zip",
        "application/x-zip-compressed",
        "application/octet-stream",
    }
)


@blueprint.post("/api/projects/<project_id>/import")
async def import_project(project_id: str) -> Response:
    project = await owned_project(project_id)
    if request.mimetype not in ARCHIVE_TYPES:
        raise UnsupportedMediaType(
            "The body must be a tar, tar.gz or zip archive.", {"accepted": sorted(ARCHIVE_TYPES)}
        )
    svc = services()
    data = await read_body(svc.settings.max_import_bytes)
    written = await svc.files.transfer().import_archive(project.id, data)
    return json_response(
        {"imported": len(written), "bytes": sum(meta.size for meta in written)}, 200
    )


@blueprint.get("/api/projects/<project_id>/export")
async def export_project(project_id: str) -> Response:
    project = await owned_project(project_id)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", project.name).strip("-.") or "project"
    body = services().files.transfer().export_tar_gz(project.id)
    response = Response(
        body,
        status=200,
        content_type="application/gzip",
        headers={"Content-Disposition": f'attachment; filename="{name}.tar.gz"'},
    )
    response.timeout = None  # a large project takes longer than quart's response timeout
    return response
