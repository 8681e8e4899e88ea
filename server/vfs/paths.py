"""Path rules of the virtual file system (API.md "Files"). Pure functions.

A path is valid UTF-8 in Unicode NFC, at most 1024 bytes; segments are separated by ``/``,
none empty, ``.``, ``..`` or whitespace only; no backslash, no leading ``/``, and none of
the characters that make a name lie about itself: C0 and C1 controls (NUL, U+0085...),
line and paragraph separators, bidirectional overrides, embeddings, isolates and marks
(U+202E...). Non-NFC paths are refused, not normalised: each file has exactly one name,
the one the client sent, and no two spellings can reach the same file.
"""

from __future__ import annotations

import unicodedata

from server.errors import InvalidPath

MAX_PATH_BYTES = 1024
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


def _character_problem(path: str) -> str | None:
    if path.isascii():  # fast path: only C0 controls and DEL can be wrong
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
            return "contains a NUL or control character"
        return None
    for ch in path:
        if unicodedata.category(ch) in _REFUSED_CATEGORIES:
            if 0xD800 <= ord(ch) <= 0xDFFF:
                return "is not valid UTF-8"
            return "contains a NUL or control character"
        if ch in _BIDI_CONTROLS:
            return "contains a bidirectional control character"
    if not unicodedata.is_normalized("NFC", path):
        return "is not in Unicode NFC (normalise it before sending)"
    return None


def _problem(path: str) -> str | None:
    if not path:
        return "is empty"
    if len(path) > MAX_PATH_BYTES or len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        return f"is longer than {MAX_PATH_BYTES} bytes"
    problem = _character_problem(path)
    if problem is not None:
        return problem
    if "\\" in path:
        return "contains a backslash"
    if path.startswith("/"):
        return "starts with '/'"
    for segment in path.split("/"):
        if segment == "":
            return "has an empty segment"
        if segment in (".", ".."):
            return f"has a '{segment}' segment"
        if segment.isspace():
            return "has a whitespace-only segment"
    return None


def validate_path(path: str, field: str = "path") -> str:
    """Return ``path`` unchanged when it is a valid VFS path; raise ``InvalidPath`` otherwise."""
    problem = _problem(path)
    if problem is not None:
        raise InvalidPath(f"The path {problem}.", {field: problem})
    return path


def validate_prefix(prefix: str) -> str:
    """A listing prefix: empty, or a path that may end with '/'."""
    if prefix == "":
        return prefix
    validate_path(prefix.removesuffix("/"), "prefix")
    return prefix
