"""Content type of a VFS file, from its extension. Pure."""

from __future__ import annotations

import mimetypes
import posixpath

_TEXT_TYPES = {
    ".py": "text/x-python",
    ".ts": "text/typescript",
    ".tsx": "text/typescript",
    ".jsx": "text/javascript",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".md": "text/markdown",
    ".json": "application/json",
    ".toml": "application/toml",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".txt": "text/plain",
    ".csv": "text/csv",
    ".html": "text/html",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".sh": "text/x-shellscript",
    ".rs": "text/x-rust",
    ".go": "text/x-go",
    ".sql": "application/sql",
}

_DEFAULT = "application/octet-stream"
_UTF8_TYPES = frozenset(
    {"application/json", "application/toml", "application/yaml", "application/sql", "image/svg+xml"}
)


def content_type_for(path: str) -> str:
    """``text/*`` and JSON-like types get ``; charset=utf-8``."""
    ext = posixpath.splitext(path)[1].lower()
    kind = _TEXT_TYPES.get(ext) or mimetypes.guess_type(path, strict=False)[0] or _DEFAULT
    if kind.startswith("text/") or kind in _UTF8_TYPES:
        return f"{kind}; charset=utf-8"
    return kind
