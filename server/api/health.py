"""Liveness, readiness and the Prometheus scrape endpoint."""

from __future__ import annotations

from quart import Blueprint, Response, request

from server import __version__
from server.api.deps import json_response, services
from server.errors import AppError, NotReady, Unauthorized
from server.observability.metrics import scrape_allowed

blueprint = Blueprint("health", __name__)


@blueprint.get("/api/health")
async def health() -> Response:
    """Liveness: answers without I/O as long as the event loop turns."""
    return json_response({"status": "ok", "version": __version__})


@blueprint.get("/api/ready")
async def ready() -> Response:
    svc = services()
    if svc.lifecycle.draining:
        raise NotReady("The server is shutting down.", {"reason": "shutting_down"})
    if not svc.lifecycle.ready:
        raise NotReady("The server is starting.", {"reason": "starting"})
    try:
        await svc.store.ping()
        pending = await svc.store.pending_migrations()
    except AppError:
        raise NotReady("The database is unreachable.", {"database": "unreachable"}) from None
    if pending:
        raise NotReady("Database migrations are pending.", {"pending_migrations": pending})
    return json_response({"status": "ready", "database": "ok"})


@blueprint.get("/metrics")
async def metrics() -> Response:
    svc = services()
    if not scrape_allowed(svc.settings.metrics_token, request.headers.get("Authorization")):
        raise Unauthorized("/metrics needs 'Authorization: Bearer <metrics token>'.")
    body = svc.metrics.render()
    return Response(body, content_type="text/plain; version=0.0.4; charset=utf-8")
