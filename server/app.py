"""The quart-trio application: blueprints, error handling, request metrics.

``create_app`` only assembles; it starts nothing. ``server.runtime`` owns the services and
serves the app with hypercorn.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from quart import g, request
from quart_trio import QuartTrio

from server.api import auth, files, health, projects, sse, workflow
from server.api.errors import install_error_handling

if TYPE_CHECKING:
    from quart import Response

    from server.services import Services

# Body size is enforced per route by ``server.api.deps.read_body``; this is the backstop
# for anything else (the largest legitimate body, plus room for framing).
_BODY_BACKSTOP_MARGIN = 64 * 1024


def create_app(services: Services) -> QuartTrio:
    app = QuartTrio("stretto")
    settings = services.settings
    app.config.update(
        MAX_CONTENT_LENGTH=max(settings.max_body_bytes, settings.max_file_bytes)
        + _BODY_BACKSTOP_MARGIN,
        JSON_SORT_KEYS=False,
        PROVIDE_AUTOMATIC_OPTIONS=True,
    )
    app.url_map.merge_slashes = False  # "a//b" is an invalid path, not a redirect
    app.url_map.strict_slashes = False
    app.extensions["stretto"] = services
    install_error_handling(app)
    for module in (health, auth, projects, files, workflow, sse):
        app.register_blueprint(module.blueprint)

    @app.after_request
    async def record_request(response: Response) -> Response:
        rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
        started = g.get("started")
        elapsed = time.perf_counter() - started if started is not None else 0.0
        services.metrics.observe_request(request.method, rule, response.status_code, elapsed)
        return response

    return app
