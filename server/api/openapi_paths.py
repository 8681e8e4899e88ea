"""The paths of the OpenAPI document: every route with its parameters, headers, request
body (the very schemas the route validates with), responses and error codes. Health, auth,
projects and files here; runs, changes and streams in ``openapi_paths_runs``.

Pure. When a route is added to a blueprint, add it here: ``tests/api/test_openapi.py``
fails until the app's routes and the document's paths are the same set.
"""

from __future__ import annotations

from server.api import auth, files, projects, transfer
from server.api.openapi_links import add_links
from server.api.openapi_parts import (
    OPENAPI_PATH,
    empty,
    header_refs,
    json_body,
    operation,
    param,
    query,
)
from server.api.openapi_paths_runs import run_operations
from server.api.schemas import Schema, ref


def paths() -> dict[str, Schema]:
    out = _operations()
    add_links(out)
    return out


def _operations() -> dict[str, Schema]:
    page = [param("Limit"), param("Cursor")]
    pid, fpath = param("ProjectId"), param("FilePath")
    external = {404: ["not_found"]}  # register/login/refresh under external auth
    return {
        "/api/health": {
            "get": operation(
                "health",
                "Liveness (no I/O).",
                {200: json_body(ref("Health"), "Alive.")},
                tag="health",
                auth_="none",
                store=False,
            )
        },
        "/api/ready": {
            "get": operation(
                "ready",
                "Readiness: database reachable, migrations applied, not draining.",
                {200: json_body(ref("Ready"), "Ready.")},
                tag="health",
                auth_="none",
            )
        },
        "/metrics": {
            "get": operation(
                "metrics",
                "Prometheus text exposition.",
                {
                    200: {
                        "description": "Metrics.",
                        "headers": header_refs(),
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
                tag="health",
                auth_="none",
                store=False,
            )
        },
        "/": {
            "get": operation(
                "console",
                "The web console's page (HTML; 404 when `STRETTO_CONSOLE=0`).",
                {
                    200: {
                        "description": "The console.",
                        "headers": header_refs(),
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    },
                    304: {"description": "Not modified.", "headers": header_refs()},
                },
                tag="health",
                auth_="none",
                store=False,
                errors={404: ["not_found"]},
            )
        },
        "/console/{name}": {
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "get": operation(
                "consoleAsset",
                "A file of the web console (JavaScript module, CSS, image).",
                {
                    200: {
                        "description": "The file.",
                        "headers": header_refs(),
                        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    304: {"description": "Not modified.", "headers": header_refs()},
                },
                tag="health",
                auth_="none",
                store=False,
                errors={404: ["not_found"]},
            ),
        },
        "/client/stretto.js": {
            "get": operation(
                "clientScript",
                "The browser client, an ES module (ETag; If-None-Match answers 304).",
                {
                    200: {
                        "description": "stretto.js.",
                        "headers": header_refs(),
                        "content": {"text/javascript": {"schema": {"type": "string"}}},
                    },
                    304: {"description": "Not modified.", "headers": header_refs()},
                },
                tag="health",
                auth_="none",
                store=False,
            )
        },
        OPENAPI_PATH: {
            "get": operation(
                "openapi",
                "This document.",
                {200: json_body({"type": "object"}, "The OpenAPI 3.1 document.")},
                tag="health",
                auth_="none",
                store=False,
            )
        },
        "/api/auth/register": {
            "post": operation(
                "register",
                "Create an account and a session.",
                {201: json_body(ref("Session"), "Registered.")},
                tag="auth",
                auth_="none",
                body=auth.REGISTER_SCHEMA,
                errors={**external, 409: ["email_taken"]},
            )
        },
        "/api/auth/login": {
            "post": operation(
                "login",
                "Open a session.",
                {200: json_body(ref("Session"), "Logged in.")},
                tag="auth",
                auth_="none",
                body=auth.LOGIN_SCHEMA,
                errors={**external, 401: ["invalid_credentials"], 429: ["rate_limited"]},
            )
        },
        "/api/auth/refresh": {
            "post": operation(
                "refresh",
                "Rotate a refresh token (reuse revokes the family).",
                {200: json_body(ref("Session"), "A new pair.")},
                tag="auth",
                auth_="none",
                body=auth.REFRESH_SCHEMA,
                errors={**external, 401: ["unauthorized"]},
            )
        },
        "/api/auth/logout": {
            "post": operation(
                "logout",
                "Revoke the session (refresh-token family).",
                {204: empty("Logged out.")},
                tag="auth",
                body=auth.LOGOUT_SCHEMA,
            )
        },
        "/api/auth/me": {
            "get": operation(
                "me", "The caller.", {200: json_body(ref("Me"), "The user.")}, tag="auth"
            )
        },
        "/api/projects": {
            "get": operation(
                "listProjects",
                "The caller's projects.",
                {200: json_body(ref("ProjectPage"), "A page.")},
                tag="projects",
                params=page,
            ),
            "post": operation(
                "createProject",
                "Create a project.",
                {201: json_body(ref("Project"), "Created.")},
                tag="projects",
                body=projects.CREATE_SCHEMA,
                errors={429: ["rate_limited"]},  # STRETTO_MAX_PROJECTS_PER_USER
            ),
        },
        "/api/projects/{project_id}": {
            "parameters": [pid],
            "get": operation(
                "getProject",
                "A project.",
                {200: json_body(ref("Project"), "The project.")},
                tag="projects",
                errors={404: ["not_found"]},
            ),
            "patch": operation(
                "updateProject",
                "Rename or describe a project (`project.updated`).",
                {200: json_body(ref("Project"), "Updated.")},
                tag="projects",
                body=projects.UPDATE_SCHEMA,
                errors={404: ["not_found"]},
            ),
            "delete": operation(
                "deleteProject",
                "Cancel its runs, delete it, end its streams.",
                {204: empty("Deleted.")},
                tag="projects",
                errors={404: ["not_found"]},
            ),
        },
        "/api/projects/{project_id}/files": {
            "parameters": [pid],
            "get": operation(
                "listFiles",
                "Files under a prefix.",
                {200: json_body(ref("FilePage"), "A page.")},
                tag="files",
                params=[query("prefix", {"type": "string"}), *page],
                errors={404: ["not_found"], 400: ["invalid_path"]},
            ),
        },
        "/api/projects/{project_id}/files/{path}/restore": {
            "parameters": [pid, fpath],
            "post": operation(
                "restoreFile",
                "Write a kept version back as the newest version (`file.changed`).",
                {200: json_body(ref("File"), "Restored.", "ETag")},
                tag="files",
                body=files.RESTORE_SCHEMA,
                errors={
                    400: ["invalid_path"],
                    404: ["not_found"],
                    409: ["conflict"],
                    413: ["too_large"],
                },
            ),
        },
        "/api/projects/{project_id}/files/{path}": {
            "parameters": [pid, fpath],
            "get": operation(
                "readFile",
                "The raw bytes, `Content-Type` by extension. With `?versions`: the kept "
                "versions (a `FileVersionPage`, newest first); with `?version=n`: that "
                "version's bytes.",
                {
                    200: {
                        "description": "The content, or with `?versions` the versions.",
                        "headers": header_refs("ETag"),
                        "content": {
                            "*/*": {"schema": {"type": "string", "format": "binary"}},
                            "application/json": {"schema": ref("FileVersionPage")},
                        },
                    },
                    304: empty("Not modified.", "ETag"),
                },
                tag="files",
                params=[
                    param("IfNoneMatchGet"),
                    query("versions", {"type": "string"}),
                    query("version", {"type": "integer", "minimum": 1, "maximum": 10**15}),
                    *page,
                ],
                errors={400: ["invalid_path", "validation_failed"], 404: ["not_found"]},
            ),
            "put": {
                **operation(
                    "writeFile",
                    "Create or replace a file (raw body; `file.changed`).",
                    {
                        200: json_body(ref("File"), "Replaced.", "ETag"),
                        201: json_body(ref("File"), "Created.", "ETag"),
                    },
                    tag="files",
                    params=[param("IfMatch"), param("IfNoneMatchPut")],
                    errors={
                        400: ["invalid_path", "validation_failed"],
                        404: ["not_found"],
                        412: ["version_mismatch"],
                        413: ["too_large"],
                    },
                ),
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    },
                },
            },
            "patch": operation(
                "moveFile",
                "Move or rename a file (`file.moved`).",
                {200: json_body(ref("File"), "Moved.", "ETag")},
                tag="files",
                params=[param("IfMatch")],
                body=files.MOVE_SCHEMA,
                errors={
                    400: ["invalid_path"],
                    404: ["not_found"],
                    409: ["conflict"],
                    412: ["version_mismatch"],
                    413: ["too_large"],
                },
            ),
            "delete": operation(
                "deleteFile",
                "Delete a file (`file.deleted`).",
                {204: empty("Deleted.")},
                tag="files",
                params=[param("IfMatch")],
                errors={
                    400: ["invalid_path", "validation_failed"],
                    404: ["not_found"],
                    412: ["version_mismatch"],
                },
            ),
        },
        "/api/projects/{project_id}/import": {
            "parameters": [pid],
            "post": {
                **operation(
                    "importProject",
                    "Write every file of a tar, tar.gz or zip archive, all or none "
                    "(`file.changed` each).",
                    {200: json_body(ref("ImportResult"), "Imported.")},
                    tag="files",
                    errors={
                        400: ["validation_failed"],
                        404: ["not_found"],
                        413: ["too_large"],
                        415: ["unsupported_media_type"],
                    },
                ),
                "requestBody": {
                    "required": True,
                    "description": "The archive's bytes. Also accepted as Content-Type: "
                    + ", ".join(sorted(transfer.ARCHIVE_TYPES - {"application/octet-stream"})),
                    "content": {
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    },
                },
            },
        },
        "/api/projects/{project_id}/export": {
            "parameters": [pid],
            "get": operation(
                "exportProject",
                "The project's files as a streamed tar.gz.",
                {
                    200: {
                        "description": "A tar.gz archive.",
                        "headers": header_refs(),
                        "content": {
                            "application/gzip": {"schema": {"type": "string", "format": "binary"}}
                        },
                    }
                },
                tag="files",
                errors={404: ["not_found"]},
            ),
        },
        **run_operations(),
    }
