"""``GET /client/stretto.js``: the browser client, served from the package's data.

The file (``server/static/client/stretto.js``) ships as package data and inside the
PyInstaller executable (build/stretto.spec). It is read once, at import; the response
carries a strong ``ETag`` (``If-None-Match`` -> 304) and ``Cache-Control: no-cache`` so a
browser revalidates after an upgrade. Cross-origin pages load it as a module script: the
CORS hook (``server.api.cors``) adds the headers for allowed origins.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from quart import Blueprint, Response, request

from server.api.deps import empty_response

blueprint = Blueprint("client", __name__)

CLIENT_PATH = "/client/stretto.js"
CLIENT_SOURCE = resources.files("server").joinpath("static/client/stretto.js").read_bytes()
CLIENT_ETAG = '"' + hashlib.sha256(CLIENT_SOURCE).hexdigest()[:32] + '"'
_HEADERS = {"ETag": CLIENT_ETAG, "Cache-Control": "no-cache"}


@blueprint.get(CLIENT_PATH)
async def stretto_js() -> Response:
    if CLIENT_ETAG in request.headers.get("If-None-Match", ""):
        return empty_response(304, _HEADERS)
    return Response(
        CLIENT_SOURCE, status=200, headers=_HEADERS, content_type="text/javascript; charset=utf-8"
    )
