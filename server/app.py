"""The quart-trio application: blueprints, error handling, request metrics.

``create_app`` only assembles; it starts nothing. The hot routes are answered below Quart
by ``server.api.edge``, in front of the same routes here. ``server.runtime`` owns the services and
serves the app with hypercorn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart_trio import QuartTrio
from werkzeug.routing import PathConverter

from server.api import (
    auth,
    changes,
    client,
    console,
    files,
    health,
    openapi,
    projects,
    sse,
    transfer,
    workflow,
)
from server.api.cors import CorsPolicy, install_cors
from server.api.deps import check_request_target
from server.api.edge import edge_router
from server.api.errors import install_error_handling
from server.observability.http import install_request_observability

if TYPE_CHECKING:
    from server.services import Services

# Body size is enforced per route by ``server.api.deps.read_body``; this is the backstop
# for anything else (the largest legitimate body, plus room for framing).
_BODY_BACKSTOP_MARGIN = 64 * 1024


class VfsPathConverter(PathConverter):
    """Everything after ``files/``, leading slash included, so that a bad path reaches the
    path rules (400 ``invalid_path``) instead of falling through to a 404."""

    regex = ".+?"
    part_isolating = False


def create_app(services: Services) -> QuartTrio:
    app = QuartTrio("stretto")
    settings = services.settings
    app.config.update(
        MAX_CONTENT_LENGTH=max(settings.max_body_bytes, settings.max_file_bytes)
        + _BODY_BACKSTOP_MARGIN,
        JSON_SORT_KEYS=False,
        PROVIDE_AUTOMATIC_OPTIONS=True,
    )
    app.url_map.converters["vfspath"] = VfsPathConverter
    app.url_map.merge_slashes = False  # "a//b" is an invalid path, not a redirect
    app.url_map.strict_slashes = False
    app.extensions["stretto"] = services
    install_request_observability(app, services.metrics)
    install_error_handling(app)
    app.before_request(check_request_target)  # bad %-encoding or NUL: 400 before routes run
    modules = (
        health,
        auth,
        projects,
        files,
        transfer,
        workflow,
        changes,
        sse,
        client,
        openapi,
        console,
    )
    for module in modules:
        app.register_blueprint(module.blueprint)
    policy = CorsPolicy(settings.cors_origin_set)
    edge = edge_router(app, app.asgi_app, services, policy)  # the hot routes below Quart
    app.asgi_app = edge  # type: ignore[method-assign]
    install_cors(app, policy)  # last: it answers preflights before the edge routes
    return app
