"""``GET /``: the built-in web console (static files, no build step).

The files live in ``server/static/console/`` (package data, and inside the PyInstaller
executable through build/stretto.spec). They are read once, at import: ``/`` answers
``index.html`` and ``/console/<name>`` the other assets. Every answer carries a strong
``ETag`` (``If-None-Match`` -> 304) with ``Cache-Control: no-cache`` (a browser revalidates
after an upgrade), and a strict Content-Security-Policy: scripts, styles and connections
only from this origin, no inline script or style, no framing.

``STRETTO_CONSOLE=0`` switches it off: every console URL then answers the JSON 404 of any
unknown route. Raises ``NotFound`` only; starts no task.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from quart import Blueprint, Response, request

from server.api.deps import empty_response, services
from server.errors import NotFound

blueprint = Blueprint("console", __name__)

CONSOLE_PREFIX = "/console/"
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True, slots=True)
class Asset:
    """One console file as served: its bytes, content type and strong ETag."""

    body: bytes
    content_type: str
    etag: str

    @property
    def headers(self) -> dict[str, str]:
        return {
            "ETag": self.etag,
            "Cache-Control": "no-cache",
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY",
        }


def load_assets() -> dict[str, Asset]:
    """Every servable file of ``server/static/console`` by name (no subfolders)."""
    folder = resources.files("server").joinpath("static/console")
    assets: dict[str, Asset] = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if not entry.is_file() or suffix not in _TYPES:
            continue
        body = entry.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        assets[entry.name] = Asset(body, _TYPES[suffix], etag)
    return assets


ASSETS = load_assets()


def _answer(name: str) -> Response:
    asset = ASSETS.get(name)
    if asset is None or not services().settings.console:
        raise NotFound("No route matches this URL.")
    if asset.etag in request.headers.get("If-None-Match", ""):
        return empty_response(304, asset.headers)
    return Response(asset.body, status=200, headers=asset.headers, content_type=asset.content_type)


@blueprint.get("/")
async def index() -> Response:
    return _answer("index.html")


@blueprint.get(CONSOLE_PREFIX + "<name>")
async def asset(name: str) -> Response:
    return _answer(name)
