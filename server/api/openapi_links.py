"""OpenAPI links between operations: what a response feeds into the next request.

Client generators and schemathesis' stateful phase follow them (register -> refresh ->
logout; project -> files, runs, tickets; ticket -> stream; file -> read/move/delete/
restore; run -> get/cancel/changes/apply/discard/revert). Pure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.api.schemas import Schema


def add_links(paths: dict[str, Schema]) -> None:
    """OpenAPI links for stateful testing and client generators: register -> refresh ->
    logout; project -> files, runs, tickets, stream; file -> read/move/delete; run -> cancel."""

    def link(path: str, method: str, status: str, name: str, target: str, **kw: Schema) -> None:
        response = paths[path][method]["responses"][status]
        response.setdefault("links", {})[name] = {"operationId": target, **kw}

    session = {"requestBody": {"refresh_token": "$response.body#/refresh_token"}}
    for source in ("/api/auth/register", "/api/auth/login", "/api/auth/refresh"):
        status = "201" if source.endswith("register") else "200"
        link(source, "post", status, "Refresh", "refresh", **session)
        link(source, "post", status, "Logout", "logout", **session)
    by_id = {"parameters": {"project_id": "$response.body#/id"}}
    in_body = {"requestBody": {"project_id": "$response.body#/id"}}
    for target in ("getProject", "updateProject", "deleteProject", "listFiles", "writeFile"):
        link("/api/projects", "post", "201", target[0].upper() + target[1:], target, **by_id)
    for target in ("createRun", "createTicket"):
        link("/api/projects", "post", "201", target[0].upper() + target[1:], target, **in_body)
    link(
        "/api/projects", "post", "201", "ListRuns", "listRuns",
        parameters={"query.project_id": "$response.body#/id"},
    )  # fmt: skip
    same_file = {
        "parameters": {"project_id": "$request.path.project_id", "path": "$request.path.path"}
    }
    files_path = "/api/projects/{project_id}/files/{path}"
    for status in ("200", "201"):
        for target in ("readFile", "moveFile", "deleteFile", "restoreFile"):
            link(files_path, "put", status, target[0].upper() + target[1:], target, **same_file)
    link(
        files_path, "patch", "200", "ReadMoved", "readFile",
        parameters={"project_id": "$request.path.project_id", "path": "$response.body#/path"},
    )  # fmt: skip
    by_run = {"parameters": {"run_id": "$response.body#/id"}}
    link("/api/workflow/runs", "post", "202", "GetRun", "getRun", **by_run)
    link("/api/workflow/runs", "post", "202", "CancelRun", "cancelRun", **by_run)
    for target in ("listRunChanges", "applyRunChanges", "discardRunChanges", "revertRun"):
        link("/api/workflow/runs", "post", "202", target[0].upper() + target[1:], target, **by_run)
    link(
        "/api/sse/tickets", "post", "201", "Stream", "streamProject",
        parameters={
            "project_id": "$request.body#/project_id",
            "query.ticket": "$response.body#/ticket",
        },
    )  # fmt: skip
