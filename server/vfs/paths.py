"""Path rules of the virtual file system (API.md "Files"). Pure functions."""

from __future__ import annotations

from server.errors import InvalidPath

MAX_PATH_BYTES = 1024


def _problem(path: str) -> str | None:
    if not path:
        return "is empty"
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        return f"is longer than {MAX_PATH_BYTES} bytes"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
        return "contains a NUL or control character"
    if "\\" in path:
        return "contains a backslash"
    if path.startswith("/"):
        return "starts with '/'"
    for segment in path.split("/"):
        if segment == "":
            return "has an empty segment"
        if segment in (".", ".."):
            return f"has a '{segment}' segment"
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
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
