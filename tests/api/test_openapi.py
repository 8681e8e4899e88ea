"""The OpenAPI document: valid OpenAPI 3.1, the same routes as the app, served and printed
identically, documented in the guide, and the response checker really rejects answers
outside it."""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from openapi_spec_validator import validate

from server.api.openapi import build_document
from server.api.schemas import event_component_name
from server.app import create_app
from server.cli.main import main
from server.events.model import EventType
from tests.fixtures import contract
from tests.fixtures.contract import ContractViolation, check_response, document

if TYPE_CHECKING:
    from tests.fixtures.server import RunningServer

GUIDE = Path(__file__).resolve().parents[2] / "server" / "api" / "README.md"
_AUTOMATIC = {"HEAD", "OPTIONS"}


def test_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    validate(doc)


def app_operations(server: RunningServer) -> set[tuple[str, str]]:
    """(method, templated path) of every rule the app registers."""
    app = create_app(server.services)
    out = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            if method not in _AUTOMATIC:
                out.add((method.lower(), path))
    return out


def doc_operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    methods = {"get", "put", "post", "patch", "delete"}
    return {(m, path) for path, item in doc["paths"].items() for m in item if m in methods}


async def test_every_app_route_is_documented_and_the_reverse(server: RunningServer) -> None:
    in_app = app_operations(server)
    in_doc = doc_operations(document())
    assert in_app - in_doc == set(), "routes missing from the document"
    assert in_doc - in_app == set(), "documented operations the app does not serve"


async def test_served_document_is_the_generated_one(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    response = await client.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == build_document(server.services.tools)


def test_stretto_openapi_prints_the_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["openapi"]) == 0
    assert json.loads(capsys.readouterr().out) == document()


def test_request_schemas_are_the_routes_own() -> None:
    from server.api import auth, projects, sse

    ops = document()["paths"]

    def body(path: str, method: str = "post") -> Any:
        return ops[path][method]["requestBody"]["content"]["application/json"]["schema"]

    assert body("/api/auth/register") == auth.REGISTER_SCHEMA
    assert body("/api/projects") == projects.CREATE_SCHEMA
    assert body("/api/projects/{project_id}", "patch") == projects.UPDATE_SCHEMA
    assert body("/api/sse/tickets") == sse.TICKET_SCHEMA


def test_plan_tools_and_every_event_type_are_components() -> None:
    schemas = document()["components"]["schemas"]
    assert {"Plan", "PlanStep", "Run", "Step", "Error", "SseFrame", "Event"} <= set(schemas)
    for tool in ("vfs.read", "vfs.write", "vfs.list", "vfs.delete", "vfs.move", "vfs.search"):
        assert f"ToolArgs.{tool}" in schemas
        assert f"ToolOutput.{tool}" in schemas
    assert "ToolArgs.ai.generate" in schemas
    assert "ToolOutput.ai.edit" in schemas
    for event_type in EventType:
        name = event_component_name(event_type.value)
        assert schemas[name]["properties"]["type"] == {"const": event_type.value}
    frames = schemas["SseFrame"]["oneOf"]
    assert len(frames) == len(EventType)


def test_headers_and_security_are_documented() -> None:
    doc = document()
    names = {p["name"] for p in doc["components"]["parameters"].values()}
    assert {"If-Match", "If-None-Match", "Idempotency-Key", "Last-Event-ID"} <= names
    assert "X-Request-ID" in names
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearerAuth"]["scheme"] == "bearer"
    assert schemes["streamTicket"] == {**schemes["streamTicket"], "in": "query", "name": "ticket"}
    stream = doc["paths"]["/api/sse/projects/{project_id}"]["get"]
    assert "text/event-stream" in stream["responses"]["200"]["content"]


def test_every_documented_route_is_in_the_guide() -> None:
    guide = GUIDE.read_text()
    missing = [
        f"{method.upper()} {path}"
        for method, path in sorted(doc_operations(document()))
        if f"{method.upper()} {path}" not in guide
    ]
    assert missing == [], "server/api/README.md does not mention these routes"


def _response(status: int, body: Any, content_type: str = "application/json") -> httpx.Response:
    data = json.dumps(body).encode()
    headers = {"content-type": content_type, "x-request-id": "r1"}
    return httpx.Response(status, headers=headers, content=data)


def test_checker_accepts_a_documented_answer() -> None:
    error = {"error": {"code": "not_found", "message": "No such project.", "details": {}}}
    check_response("GET", "/api/projects/p1", _response(404, error), json.dumps(error).encode())


@pytest.mark.parametrize(
    ("method", "path", "status", "body", "problem"),
    [
        ("GET", "/api/projects/p1", 418, {}, "status not documented"),
        ("GET", "/api/projects/p1", 200, {"id": "p1"}, "body at"),
        (
            "GET",
            "/api/projects/p1",
            404,
            {"error": {"code": "email_taken", "message": "m", "details": {}}},
            "error/code",
        ),
        ("GET", "/api/nothing-here", 200, {}, "must answer 404"),
        ("PUT", "/api/projects", 200, {}, "must answer 405"),
    ],
)
def test_checker_rejects_answers_outside_the_document(
    method: str, path: str, status: int, body: Any, problem: str
) -> None:
    with pytest.raises(ContractViolation, match=problem):
        check_response(method, path, _response(status, body), json.dumps(body).encode())


def test_checker_rejects_a_wrong_content_type() -> None:
    with pytest.raises(ContractViolation, match="Content-Type"):
        check_response("GET", "/api/health", _response(200, {}, "text/html"), b"{}")


def test_the_suite_checks_every_response() -> None:
    if os.environ.get("STRETTO_TEST_CONTRACT", "1") == "0":
        pytest.skip("STRETTO_TEST_CONTRACT=0 switched the response checker off")
    assert httpx.AsyncClient.send is contract._checked_send


async def test_a_real_answer_goes_through_the_checker(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wrapper sees real responses: with a document that lacks 401 for ``me``, the
    suite's own client raises."""
    doc = copy.deepcopy(document())
    del doc["paths"]["/api/auth/me"]["get"]["responses"]["401"]
    monkeypatch.setattr(contract, "document", lambda: doc)
    with pytest.raises(ContractViolation, match="status not documented"):
        await client.get("/api/auth/me")
